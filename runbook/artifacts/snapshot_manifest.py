"""A snapshot on disk: its directory, its parts, its manifest; listing and loading them back."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.errors import InputError, SnapshotFailed
from runbook.progress import human_size

DUMP, HISTORY, FILES, MANIFEST = "database.dump", "history.json", "files.tar.gz", "manifest.json"
# 2: checksums named by kind (snapshot_tables.checksum_kind); the dump's script transactions recorded.
FORMAT = 2


def new_snapshot_id(playbook: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", playbook).strip(".-") or "run"
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{name}"


def snapshots_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / "snapshots"


def list_snapshots(artifacts_dir: Path) -> list[dict[str, Any]]:
    """Return the manifests of the complete snapshots, oldest first."""
    found = []
    base = snapshots_dir(artifacts_dir)
    if not base.is_dir():
        return []
    for directory in base.iterdir():
        if directory.name.startswith(".") or not (directory / MANIFEST).is_file():
            continue
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {"id": directory.name, "created": "?", "playbook": "?", "parts": [], "damaged": True}
        found.append(manifest)
    return sorted(found, key=lambda m: str(m.get("id", "")))


def load_manifest(artifacts_dir: Path, snapshot_id: str) -> tuple[Path, dict[str, Any]]:
    """Return the directory and manifest of a snapshot; an unknown id is bad input (exit 2)."""
    if not snapshot_id or "/" in snapshot_id or snapshot_id.startswith("."):
        raise InputError(f"no snapshot {snapshot_id!r}", hint="`runbook snapshots` lists them")
    directory = snapshots_dir(artifacts_dir) / snapshot_id
    if not (directory / MANIFEST).is_file():
        raise InputError(f"no snapshot {snapshot_id!r} in {snapshots_dir(artifacts_dir)}",
                         hint="`runbook snapshots` lists them")
    try:
        return directory, json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotFailed(f"snapshot {snapshot_id} is damaged: {MANIFEST} is unreadable ({exc})") from exc


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the few facts about a snapshot that a report shows."""
    facts: dict[str, Any] = {
        "id": manifest["id"],
        "path": manifest.get("path", ""),
        "created": manifest.get("created", ""),
        "size": human_size(sum(p["size"] for p in manifest.get("parts", []))),
        "parts": ", ".join(p["file"] for p in manifest.get("parts", [])),
    }
    database = manifest.get("database")
    if database:
        tables = database.get("tables", {})
        facts["tables"] = f"{len(tables)} tables, {sum(t['rows'] for t in tables.values()):,} rows"
        facts["server_version"] = database.get("server_version", "")
    files = manifest.get("files")
    if files:
        facts["migration_files"] = f"{len(files['list'])} files under {files['root']}"
    return facts


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"file": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}

