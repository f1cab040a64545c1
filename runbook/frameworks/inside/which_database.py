"""Say which database the backend's own code connects to, under the environment it was started with.

Shipped as package data and run by the BACKEND's python, never imported by runbook: runbook/frameworks/backend.py
sends answer.py, django_settings.py and this file as one `python -c SOURCE ARGS`:

    answer.py  django_settings.py  which_database.py  django manage.py --compress
    answer.py  django_settings.py  which_database.py  alembic alembic.ini --compress

Django: the default connection's NAME, HOST and PORT after django.setup(). Alembic: the URL env.py builds,
caught where env.py hands it to SQLAlchemy, before anything connects. The answer never holds a password.
Exit codes: 0 answered; 5 the framework is not importable; 7 no manage.py / alembic.ini.
"""

import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the parts concatenated before this one
    from answer import EXIT_NO_PROJECT, EXIT_NOT_IMPORTABLE, answer_line, fail
    from django_settings import use_manage_py


def answer(data):
    sys.stdout.write(answer_line(json.dumps(data)))
    sys.exit(0)


def django_answer(manage):
    if not os.path.isfile(manage):
        fail(EXIT_NO_PROJECT, f"{manage} not found in {os.getcwd()}")
    use_manage_py(manage)  # without a settings module, django.setup() below says so
    try:
        import django
    except ImportError as exc:
        fail(EXIT_NOT_IMPORTABLE, f"django is not importable by {sys.executable}: {exc}")
    django.setup()
    from django.db import connections

    settings = connections["default"].settings_dict
    answer({"name": str(settings.get("NAME") or ""), "host": str(settings.get("HOST") or ""),
            "port": str(settings.get("PORT") or ""), "where": os.environ.get("DJANGO_SETTINGS_MODULE", "")})


class Found(Exception):
    pass


def alembic_answer(config_path):
    if not os.path.isfile(config_path):
        fail(EXIT_NO_PROJECT, f"{config_path} not found in {os.getcwd()}")
    try:
        import sqlalchemy
        from alembic import command
        from alembic.config import Config
        from sqlalchemy.engine import make_url
    except ImportError as exc:
        fail(EXIT_NOT_IMPORTABLE, f"alembic is not importable by {sys.executable}: {exc}")

    def from_url(url, *args, **kwargs):
        raise Found(url)

    def from_config(configuration, prefix="sqlalchemy.", **kwargs):
        raise Found(configuration.get(prefix + "url"))

    # env.py imports these names when it runs, so patching the modules first catches its URL.
    modules = [sqlalchemy, sqlalchemy.engine]
    try:
        import sqlalchemy.ext.asyncio as asyncio_module

        modules.append(asyncio_module)
    except ImportError:
        pass
    for module in modules:
        for name in ("create_engine", "create_async_engine"):
            if hasattr(module, name):
                setattr(module, name, from_url)
        for name in ("engine_from_config", "async_engine_from_config"):
            if hasattr(module, name):
                setattr(module, name, from_config)
    config = Config(config_path)
    try:
        command.current(config)
    except Found as found:
        url = make_url(found.args[0]) if found.args[0] else None
        if url is None:
            answer({"name": "", "host": "", "port": "", "where": "env.py (no URL)"})
        answer({"name": url.database or "", "host": url.host or "", "port": str(url.port or ""),
                "where": "the URL env.py builds"})
    answer({"name": "", "host": "", "port": "", "where": "env.py made no engine"})


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--compress"]
    if len(args) != 2 or args[0] not in ("django", "alembic"):
        fail(2, "usage: which_database.py django|alembic PATH")
    (django_answer if args[0] == "django" else alembic_answer)(args[1])
