"""After a restore: read the database and the files back and compare them with the snapshot's manifest."""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.artifacts.snapshot_files import find_files
from runbook.artifacts.snapshot_manifest import HISTORY
from runbook.artifacts.snapshot_tables import checksum_kind, history_rows, reading, table_stats
from runbook.database.postgres import Database
from runbook.errors import EnvironmentNotReady, RunbookError
from runbook.targets.base import Target

if TYPE_CHECKING:
    from runbook.artifacts.restore import RestoreOutcome


def file_digests(target: Target, root: str, files: list[str]) -> dict[str, str]:
    """Return {relative path: sha256} of files in the backend: one sha256sum, or file by file without it."""
    if not files:
        return {}
    result = target.exec("backend", ["sha256sum", "--", *files], workdir=root, timeout=600)
    if result.exit_code == 0 and not result.truncated:
        digests = {}
        for line in result.stdout.splitlines():
            digest, _, name = line.partition("  ")
            if name:
                digests[posixpath.normpath(name)] = digest.strip()
        if sorted(digests) == sorted(files):
            return digests
    return {f: hashlib.sha256(target.read_file("backend", posixpath.join(root, f))).hexdigest() for f in files}


def check_restored(target: Target, db: Database, directory: Path, manifest: dict[str, Any],
                   outcome: RestoreOutcome, *, history: bool = True, loaded: dict[str, int] | None = None) -> None:
    """Read the live state back and compare it with the manifest; every difference is a problem.

    Each table is checksummed the way its snapshot was (a format-1 manifest's md5 too), and only the
    tables the snapshot checksummed; the others are counted, unless `loaded` holds the rows the server
    loaded into them in the restore's own transaction.
    """
    history_path = directory / HISTORY
    history_then = json.loads(history_path.read_text()) if history and history_path.exists() else None
    now: dict[str, Any] = {}
    history_now: dict[str, Any] = {}
    try:
        with reading(db, f"runbook check {outcome.snapshot}") as (query, _):
            database = manifest.get("database")
            kinds = {name: checksum_kind(t.get("checksum")) for name, t in (database or {}).get("tables", {}).items()}
            now = table_stats(query, kinds, loaded) if database else {}
            if history_then is not None:
                history_now = history_rows(query)
    except EnvironmentNotReady:
        raise
    except RunbookError as exc:
        outcome.problems.append(f"could not read the database back: {exc}")
        return
    files = manifest.get("files")
    digests = None
    if files:
        digests = file_digests(target, files["root"], find_files(target, files["root"], files["patterns"]))
    problems, checked = differences(manifest, now, history_then, history_now, digests)
    outcome.problems += problems
    outcome.checked += checked


def differences(manifest: dict[str, Any], tables_now: dict[str, Any], history_then: dict[str, Any] | None,
                history_now: dict[str, Any], digests: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """Compare what was read back with the manifest; return the differences and what was checked."""
    problems: list[str] = []
    checked: list[str] = []
    database = manifest.get("database")
    if database:
        before, now = database["tables"], tables_now
        extra, missing = sorted(set(now) - set(before)), sorted(set(before) - set(now))
        if extra:
            problems.append(f"tables not in the snapshot: {', '.join(extra)}")
        if missing:
            problems.append(f"tables missing: {', '.join(missing)}")
        summed = 0
        for name in sorted(set(now) & set(before)):
            if now[name]["rows"] != before[name]["rows"]:
                problems.append(f"{name}: {now[name]['rows']} rows, the snapshot had {before[name]['rows']}")
            elif before[name]["checksum"] and now[name]["checksum"] != before[name]["checksum"]:
                problems.append(f"{name}: same row count, different contents")
            summed += now[name]["rows"]
        hashed = sum(1 for t in before.values() if t["checksum"])
        loaded = sum(1 for name in before if now.get(name, {}).get("loaded"))
        checked.append(f"{len(before)} tables, {summed:,} rows ({hashed} checksummed"
                       + (f", {loaded} counted by the server as the restore loaded them)" if loaded else ")"))
    if history_then is not None:
        for table in sorted(set(history_then) | set(history_now)):
            if history_then.get(table) != history_now.get(table):
                then, now_rows = history_then.get(table) or [], history_now.get(table) or []
                gone = [" ".join(map(str, r)) for r in then if r not in now_rows]
                new = [" ".join(map(str, r)) for r in now_rows if r not in then]
                detail = "; ".join(([f"missing {', '.join(gone[:3])}"] if gone else [])
                                   + ([f"extra {', '.join(new[:3])}"] if new else []))
                problems.append(f"{table} rows differ from the snapshot" + (f" ({detail})" if detail else ""))
        checked.append("history rows (" + ", ".join(f"{t} {len(r)}" for t, r in history_then.items()) + ")")
    files = manifest.get("files")
    if files and digests is not None:
        expected = {f["path"]: f["sha256"] for f in files["list"]}
        if digests != expected:
            differ = sorted(p for p in set(expected) | set(digests) if expected.get(p) != digests.get(p))
            problems.append(f"migration files differ: {', '.join(differ[:5])}")
        checked.append(f"{len(expected)} migration files")
    return problems, checked
