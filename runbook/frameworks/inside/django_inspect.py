"""Answer runbook's questions about a Django project from inside its backend; print one JSON document.

The entry point of the Django inspection, run by the BACKEND's python (Django 5.x), never imported by
runbook. runbook/frameworks/backend.py sends it as one `python -c SOURCE ARGS`, after the parts it uses:

    answer.py  django_settings.py  django_history.py  django_schema.py  django_proof.py
    [django_restore_schema.py]  django_inspect.py
        [--manage manage.py] [--database default] [--no-schema]
        [--fake-check APP.NAME[,APP.NAME...]] [--makemigrations-check] [--output FILE | --compress]
        [--add-missing-columns APP.NAME[,...]] [--restore-schema APP[,...]]   (the two that change the schema,
        which need django_restore_schema.py)

It reads the migration files, the history rows, the models and the live schema, and computes what is
wrong without calling anything that raises on a broken history (`check_consistent_history`, `migrate`).
Exit codes: 0 answered; 2 Django cannot start; 3 database unreachable; 5 Django not importable; 6 the
migration graph cannot be loaded (a broken migration file).
The last line of stderr always says why it failed.
"""

import argparse
import json
import os
import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the parts concatenated before this one
    from answer import EXIT_CANNOT_START, EXIT_DATABASE, EXIT_NOT_IMPORTABLE, answer_line, fail
    from django_history import load_graph, migrations_part, operation_text
    from django_proof import fake_check
    from django_restore_schema import change_schema
    from django_schema import live_schema, models_part, schema_problems
    from django_settings import use_manage_py

FORMAT = 1


def setup(manage, alias):
    why = use_manage_py(manage)
    if why:
        fail(EXIT_CANNOT_START, why)
    try:
        import django
    except ImportError as exc:
        fail(EXIT_NOT_IMPORTABLE, f"Django is not importable by {sys.executable}: {exc}")
    try:
        django.setup()
        from django.db import connections

        connection = connections[alias]
        connection.ensure_connection()
    except Exception as exc:
        traceback.print_exc()
        text = " ".join(str(exc).split()) or type(exc).__name__
        if type(exc).__name__ == "OperationalError":
            fail(EXIT_DATABASE, f"Django cannot reach database {alias!r}: {text}")
        fail(EXIT_CANNOT_START, f"Django cannot start ({os.environ['DJANGO_SETTINGS_MODULE']}): "
                                f"{type(exc).__name__}: {text}")
    return django, connection


def makemigrations_check(loader):
    """Return what `makemigrations --check --dry-run` would write, without its history check."""
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.questioner import MigrationQuestioner
    from django.db.migrations.state import ProjectState

    # The base questioner never prompts and never exits (the non-interactive one exits 3 on a
    # non-nullable field without default, which is still a change to report).
    autodetector = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps),
                                         MigrationQuestioner(specified_apps=set(), dry_run=True))
    changes = autodetector.changes(graph=loader.graph)
    found = {app: [{"name": m.name, "operations": [operation_text(op) for op in m.operations]}
                   for m in migrations] for app, migrations in sorted(changes.items())}
    conflicts = {app: sorted(names) for app, names in loader.detect_conflicts().items()}
    return {"clean": not found and not conflicts, "changes": found, "conflicts": conflicts}



def inspect(args):
    django, connection = setup(args.manage, args.database)
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    loader = load_graph(MigrationLoader, connection)
    history, problems = migrations_part(loader, recorder)
    document = {"format": FORMAT, "framework": "django", "django": django.get_version(),
                "python": sys.version.split()[0], "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
                "database": args.database, "vendor": connection.vendor, **history}
    models = models_part(connection, args.database)
    document["models"] = models
    tables = live_schema(connection) if not args.no_schema or args.fake_check else {}
    if not args.no_schema:
        document["schema"] = {"tables": tables}
        problems += schema_problems(models, tables)
    document["problems"] = problems
    if args.fake_check:
        # @unapplied: every migration without a history row, inferred from the schema, so that `diagnose`
        # needs one Django start, not two.
        requested = [n.strip() for part in args.fake_check for n in part.split(",") if n.strip()]
        document["fake_check"] = fake_check(loader, connection, args.database, tables, requested)
    if args.makemigrations_check:
        document["makemigrations"] = makemigrations_check(loader)
    if args.restore_schema or args.add_missing_columns:
        document.update(change_schema(loader, connection, args))
    return document


def main(argv):
    parser = argparse.ArgumentParser(prog="runbook-inspect")
    parser.add_argument("--manage", default="manage.py")
    parser.add_argument("--database", default="default")
    parser.add_argument("--output")
    parser.add_argument("--fake-check", action="append", default=[])
    parser.add_argument("--makemigrations-check", action="store_true")
    parser.add_argument("--add-missing-columns", action="append", default=[])
    parser.add_argument("--restore-schema", action="append", default=[])
    parser.add_argument("--no-schema", action="store_true")
    parser.add_argument("--compress", action="store_true")
    args = parser.parse_args(argv)
    if (args.restore_schema or args.add_missing_columns) and "change_schema" not in globals():
        fail(EXIT_CANNOT_START, "--restore-schema and --add-missing-columns need django_restore_schema.py, "
                                "which runbook sends with them")
    try:
        document = inspect(args)
    except SystemExit:
        raise
    except Exception as exc:
        traceback.print_exc()
        fail(EXIT_CANNOT_START, f"inspection failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
    emit(json.dumps(document, sort_keys=True, default=str), args)


def emit(text, args):
    """Print the answer; --compress makes it one marked line that survives noise and output limits."""
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif args.compress:
        sys.stdout.write(answer_line(text))
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
