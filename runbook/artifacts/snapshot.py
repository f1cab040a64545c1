"""The snapshot stage: what is captured before any step changes anything.

A snapshot is a directory `.runbook/snapshots/<id>/` (0700; every file 0600):
  database.dump   `pg_dump -Fc`, run where the server's own tools are (in the db service; on the host
                  for the local target), streamed to disk in constant memory
  history.json    the migration history rows (django_migrations, alembic_version)
  files.tar.gz    the backend's migration files, paths relative to its working directory
  manifest.json   each part's size and sha256; every public table's row count and checksum; the server
It is built as `.<id>.partial` and renamed when whole, so a snapshot directory that exists is complete.
When the database is reachable over TCP, the dump, the counts and the history rows all come from one
exported transaction snapshot, so the manifest describes exactly what the dump holds.

The work is split by job: snapshot_manifest (the directory and its manifest), snapshot_tables (counts,
checksums, history rows through SQL), snapshot_dump (pg_dump and its proof), snapshot_files (migration
files). This module runs the stage and keeps the names other modules import from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from runbook.artifacts.lock import RunLock
from runbook.artifacts.snapshot_dump import first_error, pg_client, take_database
from runbook.artifacts.snapshot_files import (
    archive_files,
    backend_root,
    file_patterns,
    find_files,
    read_archive,
    take_files,
)
from runbook.artifacts.snapshot_manifest import (
    DUMP,
    FILES,
    FORMAT,
    HISTORY,
    MANIFEST,
    file_entry,
    human_size,
    list_snapshots,
    load_manifest,
    new_snapshot_id,
    snapshots_dir,
    summary,
    write_private,
)
from runbook.artifacts.snapshot_stream import Beside
from runbook.artifacts.snapshot_tables import plain_history
from runbook.config import Config
from runbook.database.postgres import Database
from runbook.errors import EnvironmentNotReady, RunbookError, SnapshotFailed
from runbook.fsutil import ensure_private_dir, fsync_dir
from runbook.playbook.model import Snapshot
from runbook.progress import OnTransfer, Progress, no_progress, no_transfer
from runbook.targets.base import Target

# Imported from here by the rest of runbook (putback, file_changes, rehearsal, restore, cli, executor).
__all__ = [
    "DUMP", "FILES", "HISTORY", "MANIFEST", "Progress", "archive_files", "backend_root", "file_patterns",
    "find_files", "first_error", "human_size", "list_snapshots", "load_manifest", "locked_session",
    "no_progress", "pg_client", "read_archive", "snapshot_now", "summary", "take_snapshot",
]


def _files_part(target: Target, config: Config, extra: list[str], dest: Path) -> dict[str, Any]:
    root = backend_root(target, config)
    return take_files(target, root, file_patterns(target, root, extra), dest)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def take_snapshot(target: Target, db: Database, config: Config, playbook: str, spec: Snapshot,
                  *, progress: Progress = no_progress, on_transfer: OnTransfer = no_transfer) -> dict[str, Any]:
    """Capture what spec asks for; return the manifest. Any failure leaves no snapshot and raises.

    The migration files are archived in a helper thread while the database is dumped in this one.
    """
    snapshot_id = new_snapshot_id(playbook)
    base = ensure_private_dir(snapshots_dir(config.artifacts_dir()))
    partial = base / f".{snapshot_id}.partial"
    directory = base / snapshot_id
    ensure_private_dir(partial)
    files: Beside[dict[str, Any]] | None = None
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT, "id": snapshot_id, "path": str(directory), "playbook": playbook,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "target": target.name,
        }
        files = Beside(lambda: _files_part(target, config, list(spec.files), partial / FILES), "files")
        history = None
        entries: dict[str, dict[str, Any]] = {}
        if spec.database:
            manifest["database"], history = take_database(target, db, partial, snapshot_id, spec.history,
                                                          progress, on_transfer)
            # Hashed as it was written: the dump is not read again.
            entries[DUMP] = {"file": DUMP, "size": manifest["database"].pop("size"),
                             "sha256": manifest["database"].pop("sha256")}
        if spec.history:
            if history is None:
                history = plain_history(db.history())
            write_private(partial / HISTORY, json.dumps(history, indent=2).encode())
            progress("history rows: " + (", ".join(f"{t} {len(r)}" for t, r in history.items()) or "none"))
        manifest["files"] = files.result()
        progress(f"migration files: {len(manifest['files']['list'])} under {manifest['files']['root']}")
        manifest["parts"] = [entries.get(name) or file_entry(partial / name) for name in (DUMP, HISTORY, FILES)
                             if (partial / name).exists()]
        write_private(partial / MANIFEST, json.dumps(manifest, indent=2).encode())
        for part in manifest["parts"]:  # written and synced by now; this only makes sure of it
            _fsync(partial / part["file"])
        fsync_dir(partial)
        os.replace(partial, directory)
        fsync_dir(base)
    except BaseException as exc:
        # Whatever stopped it (a bug, SystemExit, a signal too), no half-written snapshot stays behind.
        if files is not None:
            files.wait(30)  # a few short commands in the backend: let them end before the directory goes
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, EnvironmentNotReady | SnapshotFailed):
            raise
        if isinstance(exc, RunbookError):
            raise SnapshotFailed(f"snapshot failed: {exc.message}", hint=exc.hint) from exc
        if isinstance(exc, OSError | tarfile.TarError | psycopg.Error):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
            raise SnapshotFailed(f"snapshot failed: {reason}") from exc
        raise
    return manifest


# --- a session outside a run: `runbook snapshot` and `runbook restore` ---------------------------------------

@contextlib.contextmanager
def locked_session(config: Config, target: Target, purpose: str) -> Iterator[Database]:
    """Hold the run lock (host and database) and yield the database, as a run does."""
    lock = RunLock(config.artifacts_dir(), purpose)
    lock.acquire()
    db: Database | None = None
    try:
        target.check_ready(["db", "backend"])
        from runbook.database.connection import open_database

        db = open_database(target, target.database_settings(), f"runbook {purpose} pid {os.getpid()}")
        db.lock_run()
        yield db
    finally:
        if db is not None:
            db.close()
        lock.release()


def snapshot_now(config: Config, target: Target, *, progress: Progress = no_progress,
                 on_transfer: OnTransfer = no_transfer) -> dict[str, Any]:
    """`runbook snapshot`: everything a playbook could ask for, under the playbook name "manual"."""
    with locked_session(config, target, "snapshot") as db:
        return take_snapshot(target, db, config, "manual", Snapshot(), progress=progress, on_transfer=on_transfer)
