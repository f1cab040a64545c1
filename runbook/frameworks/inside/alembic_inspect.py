"""Answer runbook's questions about an Alembic project from inside its backend; print one JSON document.

Shipped as package data and run by the BACKEND's python, never imported by runbook: runbook/frameworks/backend.py
sends answer.py and this file as one `python -c SOURCE ARGS`:

    answer.py  alembic_inspect.py  [--config alembic.ini] [--name alembic] [--compare] [--compress]

Reads the revision scripts through alembic's ScriptDirectory (runbook reads alembic_version itself); with
--compare, runs env.py to compare the live schema with its target_metadata (read only).
Exit codes: 0 answered; 2 the scripts cannot be read; 5 alembic not importable.
"""

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # defined by the part concatenated before this one
    from answer import EXIT_CANNOT_START, EXIT_NOT_IMPORTABLE, answer_line, fail

FORMAT = 1


def as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def load_config(config_path, section="alembic"):
    from alembic.config import Config

    return Config(config_path, ini_section=section)


def inspect(config_path, section="alembic"):
    try:
        from alembic.script import ScriptDirectory
    except ImportError as exc:
        fail(EXIT_NOT_IMPORTABLE, f"alembic is not importable by {sys.executable}: {exc}")
    if not os.path.isfile(config_path):
        fail(EXIT_CANNOT_START, f"{config_path} not found in {os.getcwd()}")
    try:
        script = ScriptDirectory.from_config(load_config(config_path, section))
        heads = sorted(script.get_heads())
    except Exception as exc:
        fail(EXIT_CANNOT_START, f"alembic cannot read the scripts of {config_path}: {type(exc).__name__}: {exc}")
    revisions, error = [], None
    try:
        for rev in script.walk_revisions():
            revisions.append({
                "revision": rev.revision, "down_revision": as_list(rev.down_revision),
                "branch_labels": sorted(rev.branch_labels or ()), "is_head": rev.revision in heads,
                # Declared in this file (branch_labels above also holds those inherited from below).
                "declared_labels": sorted(getattr(rev, "_orig_branch_labels", None) or ()),
                # Resolved to revision ids (depends_on may name a branch label).
                "depends_on": sorted(getattr(rev, "_resolved_dependencies", None) or ()),
                "path": os.path.relpath(rev.path) if rev.path else None, "doc": rev.doc or "",
            })
    except Exception as exc:  # a cycle or a down_revision that names no script
        error = f"{type(exc).__name__}: {exc}"
    try:
        locations = [str(p) for p in script._version_locations]
    except Exception:  # a private attribute: only informative
        locations = []
    return {"format": FORMAT, "framework": "alembic", "config": config_path, "script_location": script.dir,
            "heads": heads, "version_locations": locations,
            "revisions": revisions, "error": error}


def compare(config_path, section="alembic"):
    """Return the differences between the live schema and env.py's target_metadata, or None without one.

    Runs env.py the way `alembic check` does, but with a work function that compares and returns no step:
    it neither resolves nor writes alembic_version, so it also answers when that table names an unknown
    revision. Returns (differences, error).
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = load_config(config_path, section)
    script = ScriptDirectory.from_config(config)
    found = {}

    def work(heads, context):
        metadata = context.opts.get("target_metadata")
        if metadata is None:
            found["diffs"] = None
        else:
            found["diffs"] = [" ".join(str(d).split())[:300] for d in compare_metadata(context, metadata)]
        return []

    try:
        with EnvironmentContext(config, script, fn=work, dont_mutate=True):
            script.run_env()
    except Exception as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return found.get("diffs"), None


def main(argv):
    parser = argparse.ArgumentParser(prog="runbook-alembic-inspect")
    parser.add_argument("--config", default="alembic.ini")
    parser.add_argument("--name", default="alembic", help="the section of the ini file")
    parser.add_argument("--compress", action="store_true")
    parser.add_argument("--compare", action="store_true", help="compare the live schema with the models")
    args = parser.parse_args(argv)
    document = inspect(args.config, args.name)
    if args.compare:
        document["schema_diffs"], document["compare_error"] = compare(args.config, args.name)
    text = json.dumps(document, sort_keys=True, default=str)
    if args.compress:
        sys.stdout.write(answer_line(text))
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
