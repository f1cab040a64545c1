"""Say where each installed Django app keeps its migrations, and whether that is the project's own code.

Shipped as package data and run by the BACKEND's python, never imported by runbook: runbook/frameworks/backend.py
sends answer.py, django_settings.py and this file as one `python -c SOURCE ARGS`:

    answer.py  django_settings.py  django_locate.py  manage.py --compress

A local app's migrations live under the working directory, not in site-packages.
"""

import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the parts concatenated before this one
    from answer import answer_line
    from django_settings import use_manage_py


def locate():
    # Imported here, once use_manage_py has put the settings in place: django.setup() needs them.
    import django

    django.setup()
    from importlib import import_module

    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    root = os.path.realpath(os.getcwd()).rstrip(os.sep) + os.sep
    found = []
    for config in apps.get_app_configs():
        name, _ = MigrationLoader.migrations_module(config.label)
        entry = {"app": config.label, "module": name, "path": None, "local": False, "files": []}
        try:
            module = import_module(name) if name else None
        except ImportError:
            module = None
        paths = list(getattr(module, "__path__", None) or [])
        if paths:
            path = os.path.realpath(paths[0])
            parts = path.split(os.sep)
            entry["path"] = path
            entry["local"] = path.startswith(root) and "site-packages" not in parts and "dist-packages" not in parts
            entry["files"] = sorted(f for f in os.listdir(path) if f.endswith(".py") and f != "__init__.py")
        found.append(entry)
    return {"root": root, "apps": found}


if __name__ == "__main__":
    use_manage_py(sys.argv[1])  # without a settings module, django.setup() says so
    sys.stdout.write(answer_line(json.dumps(locate())))
