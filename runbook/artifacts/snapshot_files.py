"""The backend's migration files: found by glob, archived by one tar in the service, read back."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import tarfile
import time
from pathlib import Path
from typing import Any

from runbook.alembic_ini import read_config
from runbook.artifacts.snapshot_dump import first_error
from runbook.config import Config
from runbook.errors import RunbookError, SnapshotFailed
from runbook.targets.base import Target

MIGRATION_PATTERN = "**/migrations/*.py"
# Directories under the backend workdir that hold other people's migrations (virtualenvs, packages).
SKIP_DIRS = {"site-packages", "dist-packages", "node_modules", "__pycache__"}


def backend_root(target: Target, config: Config) -> str:
    """Return the backend's working directory as an absolute path in the service."""
    result = target.exec("backend", ["pwd"], workdir=config.backend.workdir, timeout=60)
    root = result.stdout.strip()
    if result.exit_code != 0 or not root.startswith("/"):
        raise SnapshotFailed(first_error(result, "`pwd` in the backend"))
    return root


def file_patterns(target: Target, root: str, extra: list[str]) -> list[str]:
    """Django's migrations, Alembic's versions (from alembic.ini), and the playbook's own globs."""
    patterns = [MIGRATION_PATTERN]
    try:
        ini = target.read_file("backend", posixpath.join(root, "alembic.ini")).decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError):
        ini = None
    except RunbookError:
        ini = None
    if ini is not None:
        with contextlib.suppress(RunbookError):
            for location in read_config(ini, workdir=root).versions_dirs():
                relative = posixpath.relpath(posixpath.join(root, location), root)
                patterns.append(posixpath.join(relative, "*.py"))
    return list(dict.fromkeys([*patterns, *extra]))


def find_files(target: Target, root: str, patterns: list[str]) -> list[str]:
    """Return the paths (relative to root) of the files matching the patterns, outside virtualenvs."""
    found: set[str] = set()
    for pattern in patterns:
        directory, glob = root, pattern
        if pattern.startswith("../"):  # Alembic versions beside the workdir rather than under it
            directory = posixpath.normpath(posixpath.join(root, posixpath.dirname(pattern)))
            glob = posixpath.basename(pattern)
        for path in target.list_files("backend", directory, glob):
            relative = posixpath.relpath(path, root)
            folders = relative.split("/")[:-1]
            if any(f in SKIP_DIRS or (f.startswith(".") and f != "..") for f in folders):
                continue
            found.add(relative)
    return sorted(found)


def _archive_with_tar(target: Target, root: str, files: list[str], dest: Path) -> bool:
    """One `tar` in the backend for all files; False when the service has no tar."""
    result = target.exec_to_file("backend", ["tar", "-C", root, "-czf", "-", *(f"./{f}" for f in files)],
                                 dest, timeout=600)
    if result.exit_code in (126, 127):
        return False
    if result.exit_code != 0:
        raise SnapshotFailed(first_error(result, "tar of the migration files"))
    return True


def _archive_file_by_file(target: Target, root: str, files: list[str], dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for relative in files:
            data = target.read_file("backend", posixpath.join(root, relative))
            member = tarfile.TarInfo(relative)
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            tar.addfile(member, io.BytesIO(data))
    os.chmod(dest, 0o600)


def read_archive(path: Path) -> dict[str, bytes]:
    """Return {relative path: bytes} of a files archive (migration files are small)."""
    contents = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                contents[posixpath.normpath(member.name)] = handle.read()
    return contents


def archive_files(target: Target, root: str, files: list[str], dest: Path) -> None:
    """Write the backend's files (relative to root) into the tar.gz dest: one tar, or file by file."""
    if not files or not _archive_with_tar(target, root, files, dest):
        _archive_file_by_file(target, root, files, dest)


def take_files(target: Target, root: str, patterns: list[str], dest: Path) -> dict[str, Any]:
    files = find_files(target, root, patterns)
    archive_files(target, root, files, dest)
    contents = read_archive(dest)
    if sorted(contents) != files:
        missing = sorted(set(files) - set(contents))
        raise SnapshotFailed(f"the migration files archive lacks {', '.join(missing[:5]) or 'some files'}")
    listing = [{"path": p, "size": len(contents[p]), "sha256": hashlib.sha256(contents[p]).hexdigest()}
               for p in files]
    return {"root": root, "patterns": patterns, "list": listing}

