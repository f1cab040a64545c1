"""Find the Django project the way `python manage.py` does, before Django starts.

A part of the Django scripts (runbook/frameworks/backend.py concatenates it after answer.py), run by the
BACKEND's python.
"""

import os
import re
import sys

SETTINGS_RE = re.compile(r"""['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]""")


def settings_from_manage(text):
    """Return the settings module that manage.py sets by default, or None."""
    match = SETTINGS_RE.search(text)
    return match.group(1) if match else None


def use_manage_py(manage):
    """Put manage.py's directory first on sys.path and its default settings in the environment, as it does.

    Returns why the settings module is unknown (None when it is set): the caller decides whether to stop.
    """
    manage_dir = os.path.dirname(os.path.abspath(manage))
    if manage_dir not in sys.path:
        sys.path.insert(0, manage_dir)
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    try:
        with open(manage, encoding="utf-8") as handle:
            module = settings_from_manage(handle.read())
    except OSError as exc:
        return f"DJANGO_SETTINGS_MODULE is not set and {manage} cannot be read: {exc.strerror}"
    if not module:
        return f"DJANGO_SETTINGS_MODULE is not set and {manage} does not set it"
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    return None
