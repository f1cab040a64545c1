"""Atomic runs: put the history rows and migration files back when a run ends any way other than success.

Before the first step the executor captures the "before" of what lies outside the data tables: every row
of the history tables (`django_migrations`, `alembic_version`) with all its columns, and the snapshot's
archive of the migration and version files. A failed, refused or interrupted run puts both back and checks
them by sha256; data rows stay as the steps left them (only `--rollback-on-failure` puts the data back).
Tables that a step created for real stay too, and are listed so the report can say what was left.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.artifacts.snapshot import FILES, Progress, find_files, no_progress
from runbook.database.postgres import HISTORY_QUERIES, Database
from runbook.errors import RunbookError
from runbook.targets.base import Target

TABLE_NAMES_SQL = ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname")
COLUMNS_SQL = ("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
               " AND table_name = %(table)s ORDER BY ordinal_position")
# Said of a table left behind when diagnose cannot be asked for the line that fits.
LEFT_TABLE_FIX = "its migration is not recorded any more: run `runbook diagnose` for the line that fits"


@dataclass
class HistoryTable:
    """All the rows of one history table, every column as text, in a stable order."""

    columns: list[str]
    rows: list[list[str | None]]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.columns, self.rows]).encode()).hexdigest()


@dataclass
class Before:
    """What a run puts back if it does not succeed."""

    history: dict[str, HistoryTable]
    tables: list[str]
    snapshot_id: str = ""
    files: dict[str, Any] | None = None  # the manifest's `files` section
    archive: Path | None = None


@dataclass
class PutBack:
    """What the put-back restored, what it checked, what it left and what went wrong."""

    restored: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"status": "put back" if self.ok else "failed", "restored": list(self.restored),
                "checked": list(self.checked), "left": list(self.left), "problems": list(self.problems)}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def read_history(db: Database) -> dict[str, HistoryTable]:
    """Return every history table that exists, all columns as text, ordered by every column."""
    found: dict[str, HistoryTable] = {}
    for table in HISTORY_QUERIES:
        if not db.table_exists(table):
            continue
        columns = [str(r[0]) for r in db.query(COLUMNS_SQL, {"table": table})[1]]
        listed = ", ".join(f"{{c{i}}}::text" for i in range(len(columns)))
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        rows = db.query(f"SELECT {listed} FROM {{table}} ORDER BY {order}",
                        identifiers={"table": table, **{f"c{i}": c for i, c in enumerate(columns)}})[1]
        found[table] = HistoryTable(columns, [[_text(v) for v in row] for row in rows])
    return found


def table_names(db: Database) -> list[str]:
    return [str(r[0]) for r in db.query(TABLE_NAMES_SQL)[1]]


def capture(db: Database, manifest: dict[str, Any] | None) -> Before:
    """Read the history rows and table names now; take the files from the snapshot just written."""
    before = Before(read_history(db), table_names(db))
    if manifest is not None:
        before.snapshot_id = str(manifest.get("id", ""))
        if manifest.get("files") and (Path(manifest["path"]) / FILES).is_file():
            before.files, before.archive = manifest["files"], Path(manifest["path"]) / FILES
    return before


def _literal(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings: only quotes need doubling


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def history_script(before: dict[str, HistoryTable], now: list[str]) -> str:
    """One multi-statement query (one implicit transaction on either path) that writes the rows back."""
    statements = []
    for table in now:
        if table not in before:
            statements.append(f"DROP TABLE public.{_ident(table)}")  # made by a step: it was not there
    for table, saved in before.items():
        statements.append(f"DELETE FROM public.{_ident(table)}")
        if saved.rows:
            columns = ", ".join(_ident(c) for c in saved.columns)
            values = ",\n".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in saved.rows)
            statements.append(f"INSERT INTO public.{_ident(table)} ({columns}) OVERRIDING SYSTEM VALUE VALUES\n"
                              f"{values}")
    return ";\n".join(statements)


def put_history_back(db: Database, before: Before, outcome: PutBack) -> None:
    """Write the history rows back in one transaction, then read them again and compare by sha256."""
    now = read_history(db)
    missing = sorted(set(before.history) - set(now))
    for table in missing:
        outcome.problems.append(f"history table {table} is gone and was not recreated")
    changed = [t for t in sorted(set(before.history) | set(now)) if t not in missing
               and (t not in before.history or t not in now or before.history[t].sha256() != now[t].sha256())]
    wanted = {t: h for t, h in before.history.items() if t not in missing}
    if changed:
        db.query(history_script({t: wanted[t] for t in changed if t in wanted},
                                [t for t in changed if t not in wanted]))
    after = read_history(db)
    if {t: h.sha256() for t, h in after.items()} != {t: h.sha256() for t, h in wanted.items()}:
        outcome.problems.append("the history rows differ from before the run after writing them back")
        return
    counts = ", ".join(f"{t} {len(h.rows)} rows" for t, h in wanted.items()) or "no history table"
    outcome.restored.append("history rows (" + (", ".join(changed) or "unchanged") + ")")
    outcome.checked.append(f"history rows by sha256 ({counts})")


def put_files_back(target: Target, before: Before, outcome: PutBack, progress: Progress) -> None:
    """Write back the migration files that differ, delete those made since, and compare every sha256."""
    from runbook.artifacts.restore import RestoreOutcome, _restore_files, file_digests

    assert before.files is not None and before.archive is not None
    restored = RestoreOutcome(before.snapshot_id)
    _restore_files(target, before.archive, before.files, restored, progress)
    outcome.restored += restored.restored
    root = before.files["root"]
    digests = file_digests(target, root, find_files(target, root, before.files["patterns"]))
    expected = {f["path"]: f["sha256"] for f in before.files["list"]}
    if digests != expected:
        differ = sorted(p for p in set(expected) | set(digests) if expected.get(p) != digests.get(p))
        outcome.problems.append(f"migration files still differ after writing them back: {', '.join(differ[:5])}")
        return
    outcome.checked.append(f"{len(expected)} migration files by sha256")


def put_back(target: Target, db: Database, before: Before, *, progress: Progress = no_progress,
             fix_line: Callable[[], str | None] | None = None) -> PutBack:
    """Put the history rows and the migration files back as they were before the steps; never the data.

    fix_line, asked only when a step left a table behind, returns the `runbook run ...` line diagnose prints.
    """
    outcome = PutBack()
    hint = f"; once the cause is fixed: runbook restore {before.snapshot_id} --only history,files" \
        if before.snapshot_id else ""
    try:
        put_history_back(db, before, outcome)
    except RunbookError as exc:
        outcome.problems.append(f"could not put the history rows back: {exc.message}{hint}")
    if before.files is None:
        outcome.problems.append("the migration files could not be put back: the playbook takes no snapshot")
    else:
        try:
            put_files_back(target, before, outcome, progress)
        except (RunbookError, OSError) as exc:
            outcome.problems.append(f"could not put the migration files back: {exc}{hint}")
    try:
        made = sorted(set(table_names(db)) - set(before.tables) - set(HISTORY_QUERIES))
    except RunbookError:
        made = []
    if made:
        line = fix_line() if fix_line is not None else None
        fix = f"its migration is not recorded any more; runbook diagnose: {line}" if line else LEFT_TABLE_FIX
        outcome.left += [f"table {t}, created by a step: {fix}" for t in made]
    return outcome
