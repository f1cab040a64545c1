"""The snapshot stage: what is captured before any step changes anything.

Every part is written under `.runbook/snapshots/<id>/` and listed in `manifest.json` with its size
and sha256, so a later restore can prove the files are the ones captured.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.database import Database
from runbook.lock import ensure_private_dir


def new_snapshot_id(playbook: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{playbook}"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"file": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def take_snapshot(db: Database, artifacts_dir: Path, playbook: str,
                  history: dict[str, list[list[Any]]]) -> dict[str, Any]:
    """Write the history rows and a manifest; return the manifest for the report."""
    snapshot_id = new_snapshot_id(playbook)
    directory = ensure_private_dir(artifacts_dir / "snapshots" / snapshot_id)
    history_path = directory / "history.json"
    _write_private(history_path, json.dumps(history, indent=2, default=str).encode())
    manifest = {
        "id": snapshot_id,
        "path": str(directory),
        "playbook": playbook,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "server_version": db.server_version(),
        "parts": [_file_entry(history_path)],
    }
    _write_private(directory / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest
