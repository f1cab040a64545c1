"""Put a snapshot back: prove its parts, restore the database in one transaction, then the files, then check.

The order is the safety argument. Every part is checked against the manifest's size and sha256 before
anything is touched, except the dump's sha256, which is checked by the restore itself as it reads the
dump (restore_dump): the transaction commits only when it matches, so a damaged snapshot changes nothing.
The database goes back in a single transaction that first drops every object of the public schema
(tables made after the snapshot too) and then replays the dump, so it either ends exactly as snapshotted
or stays as it was. Only then are the migration files written back, and the result is compared with the
manifest (restore_check): history rows, every table's row count and checksum, every file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.artifacts.restore_check import check_restored, file_digests
from runbook.artifacts.restore_dump import checked_while_read, load_dump
from runbook.artifacts.snapshot import locked_session
from runbook.artifacts.snapshot_files import find_files, read_archive
from runbook.artifacts.snapshot_manifest import DUMP, FILES, FORMAT, HISTORY, file_entry, load_manifest
from runbook.config import Config
from runbook.database.postgres import Database
from runbook.errors import InputError, RestoreFailed, RunbookError, SnapshotFailed
from runbook.progress import OnTransfer, Progress, no_progress, no_transfer
from runbook.targets.base import Target


@dataclass
class RestoreOutcome:
    """What a restore did and what its check found; `problems` empty means: exactly as snapshotted."""

    snapshot: str
    restored: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "status": "restored" if self.ok else "failed",
                "restored": "; ".join(self.restored), "checked": "; ".join(self.checked),
                "problems": list(self.problems)}


def verify_parts(snapshot_id: str, directory: Path, manifest: dict[str, Any], *,
                 without_sha256: frozenset[str] = frozenset()) -> None:
    """Raise SnapshotFailed unless every part is on disk with the manifest's size and sha256.

    The parts named in without_sha256 are checked by size only: their sha256 is checked as they are read.
    """
    version = manifest.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise InputError(f"snapshot {snapshot_id} has manifest format {version}; this runbook reads up to {FORMAT}",
                         hint="restore it with the runbook version that took it, or a newer one")
    parts = manifest.get("parts") or []
    if not parts:
        raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: its manifest lists no parts")
    for part in parts:
        path = directory / part["file"]
        if not path.is_file():
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} is missing")
        if path.stat().st_size != part["size"]:
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} size differs "
                                 f"({path.stat().st_size} bytes, the manifest says {part['size']})")
        if part["file"] not in without_sha256 and file_entry(path)["sha256"] != part["sha256"]:
            raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {part['file']} sha256 differs")


PARTS = ("database", "history", "files")


def parse_only(text: str | None) -> frozenset[str]:
    """Return the parts `--only` names (comma-separated); every part when not given. Unknown: exit 2."""
    if text is None:
        return frozenset(PARTS)
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(PARTS))
    if unknown or not names:
        raise InputError(f"--only takes {', '.join(PARTS)} (comma-separated), not {text!r}",
                         hint="for example: --only history,files")
    return frozenset(names)


def restore_snapshot(target: Target, db: Database, config: Config, snapshot_id: str,
                     *, progress: Progress = no_progress, only: frozenset[str] = frozenset(PARTS),
                     on_transfer: OnTransfer = no_transfer) -> RestoreOutcome:
    """Verify, restore and check one snapshot (or only some of its parts); the caller holds the run lock.

    A dump that is not restored (`--only history,files`) is not read, so only its size is checked.
    """
    directory, manifest = load_manifest(config.artifacts_dir(), snapshot_id)
    parts = {p["file"] for p in manifest.get("parts") or []}
    restoring = "database" in only and DUMP in parts
    streamed = restoring and checked_while_read(manifest.get("database"))
    unread = frozenset({DUMP}) if streamed or not restoring else frozenset()
    verify_parts(snapshot_id, directory, manifest, without_sha256=unread)
    hashed = sorted(parts - unread)
    progress(f"snapshot {snapshot_id}: {', '.join(hashed) or 'no part'} match their sha256"
             + (f"; {DUMP}'s is checked as it is read" if streamed else ""))
    outcome = RestoreOutcome(snapshot_id)
    loaded = None
    if restoring:
        sha256 = next(p["sha256"] for p in manifest["parts"] if p["file"] == DUMP) if streamed else None
        loaded = load_dump(target, db, directory / DUMP, sha256=sha256, progress=progress, on_transfer=on_transfer)
        outcome.restored.append("database")
    elif "database" in only:
        outcome.notes.append("the snapshot has no database dump: the database was not restored")
    elif "history" in only and HISTORY in parts:
        _restore_history(db, json.loads((directory / HISTORY).read_text()), outcome, progress)
    elif "history" in only:
        raise InputError(f"snapshot {snapshot_id} holds no history rows", hint="restore it whole, without --only")
    if "files" in only and FILES in parts and manifest.get("files"):
        _restore_files(target, directory / FILES, manifest["files"], outcome, progress)
    checked = dict(manifest)
    if "database" not in only or DUMP not in parts:
        checked.pop("database", None)  # the data was left alone: its rows are not compared
    if "files" not in only:
        checked.pop("files", None)
    history = "history" in only or ("database" in only and DUMP in parts)
    check_restored(target, db, directory, checked, outcome, history=history, loaded=loaded)
    outcome.notes.extend(w for w in target.warnings if w not in outcome.notes)
    return outcome


def restore_now(config: Config, target: Target, snapshot_id: str,
                *, progress: Progress = no_progress, only: frozenset[str] = frozenset(PARTS),
                on_transfer: OnTransfer = no_transfer) -> RestoreOutcome:
    """`runbook restore ID`: the same restore under the run lock, so it cannot race a run."""
    load_manifest(config.artifacts_dir(), snapshot_id)  # an unknown id fails before any lock or connection
    with locked_session(config, target, f"restore {snapshot_id}") as db:
        return restore_snapshot(target, db, config, snapshot_id, progress=progress, only=only,
                                on_transfer=on_transfer)


# The history rows as the snapshot holds them (django_migrations: app, name; alembic_version: the revision),
# written back by one statement each (one transaction): rows not in the snapshot go, missing ones come back,
# rows in both keep their id and time.
HISTORY_WRITE = {
    "django_migrations": (
        "WITH wanted AS (SELECT x->>0 AS app, x->>1 AS name FROM jsonb_array_elements(%(rows)s::jsonb) x),"
        " gone AS (DELETE FROM django_migrations d WHERE NOT EXISTS"
        " (SELECT 1 FROM wanted w WHERE w.app = d.app AND w.name = d.name) RETURNING 1)"
        " INSERT INTO django_migrations (app, name, applied) SELECT w.app, w.name, now() FROM wanted w"
        " WHERE NOT EXISTS (SELECT 1 FROM django_migrations d WHERE d.app = w.app AND d.name = w.name)"),
    "alembic_version": (
        "WITH wanted AS (SELECT x->>0 AS v FROM jsonb_array_elements(%(rows)s::jsonb) x),"
        " gone AS (DELETE FROM alembic_version a WHERE a.version_num NOT IN (SELECT v FROM wanted) RETURNING 1)"
        " INSERT INTO alembic_version (version_num) SELECT v FROM wanted"
        " WHERE v NOT IN (SELECT version_num FROM alembic_version)"),
}


def _restore_history(db: Database, history: dict[str, Any], outcome: RestoreOutcome, progress: Progress) -> None:
    """Write the snapshot's history rows back, leaving every data table alone; rows kept keep their time."""
    for table, rows in history.items():
        if table not in HISTORY_WRITE:
            continue
        if not db.table_exists(table):
            raise RestoreFailed(f"history table {table} does not exist any more; restore the snapshot whole")
        db.query(HISTORY_WRITE[table], {"rows": json.dumps(rows)})
    outcome.restored.append("history rows (" + ", ".join(f"{t} {len(r)}" for t, r in history.items()) + ")")
    progress("history rows written back; the data tables were not touched")


def _restore_files(target: Target, archive: Path, info: dict[str, Any], outcome: RestoreOutcome,
                   progress: Progress) -> None:
    root, wanted = info["root"], read_archive(archive)
    present = find_files(target, root, info["patterns"])
    digests = file_digests(target, root, present)
    written = deleted = 0
    try:
        for relative, data in sorted(wanted.items()):
            if digests.get(relative) != hashlib.sha256(data).hexdigest():
                target.write_file("backend", posixpath.join(root, relative), data)
                written += 1
        for relative in sorted(set(present) - set(wanted)):  # made after the snapshot
            target.delete_file("backend", posixpath.join(root, relative))
            deleted += 1
    except (RunbookError, OSError) as exc:
        raise RestoreFailed(f"the database is restored, but writing the migration files back failed "
                            f"after {written} written, {deleted} deleted: {exc}") from exc
    outcome.restored.append(f"migration files ({written} written, {deleted} deleted, "
                            f"{len(wanted) - written} unchanged)")
    progress(f"migration files: {written} written back, {deleted} made after the snapshot deleted")
