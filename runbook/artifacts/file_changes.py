"""The migration files a run changed, as one unified diff per file for the report.

The files are the ones a snapshot archives (Django's migrations, Alembic's versions, the playbook's own
globs), read from the backend the same way: before the steps (from the snapshot's archive when there is
one, so nothing is read twice) and once more after the run. Every created, deleted or edited file gets
its diff, whichever step or command changed it, so no playbook has to produce diffs of its own.
"""

from __future__ import annotations

import difflib
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from runbook.artifacts.snapshot import FILES, archive_files, backend_root, file_patterns, find_files, read_archive
from runbook.config import Config
from runbook.errors import RunbookError
from runbook.targets.base import Target

# Per file: a regenerated 0001_initial is a few hundred lines; a diff longer than this is cut in the middle.
MAX_DIFF_LINES = 400
# For the whole run: a reset of many apps must not make a report of megabytes.
MAX_TOTAL_BYTES = 512 * 1024


def read_files(target: Target, root: str, patterns: list[str]) -> dict[str, bytes]:
    """Return {relative path: bytes} of the backend's files under root that match the patterns."""
    files = find_files(target, root, patterns)
    with tempfile.TemporaryDirectory(prefix="runbook-files-") as scratch:
        archive = Path(scratch) / FILES
        archive_files(target, root, files, archive)
        return read_archive(archive)


def _text(data: bytes | None) -> list[str] | None:
    if data is None:
        return []
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _cap(lines: list[str], limit: int) -> tuple[list[str], str]:
    if len(lines) <= limit:
        return lines, ""
    head, tail = lines[: limit // 2], lines[-(limit // 2):]
    cut = len(lines) - len(head) - len(tail)
    return [*head, f"[... {cut} diff lines cut here ...]\n", *tail], f"{len(lines)} diff lines; {cut} cut"


def file_diffs(before: dict[str, bytes], after: dict[str, bytes], *, max_lines: int = MAX_DIFF_LINES,
               max_total: int = MAX_TOTAL_BYTES) -> list[dict[str, Any]]:
    """Return one entry per created, deleted or changed file: path, change, counts, diff and a cut note."""
    entries: list[dict[str, Any]] = []
    total = 0
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        change = "created" if old is None else "deleted" if new is None else "modified"
        entry: dict[str, Any] = {"path": path, "change": change, "added": 0, "removed": 0, "diff": "", "note": ""}
        old_lines, new_lines = _text(old), _text(new)
        if old_lines is None or new_lines is None:
            entry["note"] = "not UTF-8 text: no diff shown"
            entries.append(entry)
            continue
        lines = list(difflib.unified_diff(old_lines, new_lines, "/dev/null" if old is None else f"a/{path}",
                                          "/dev/null" if new is None else f"b/{path}"))
        lines = [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
        entry["added"] = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        entry["removed"] = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        shown, entry["note"] = _cap(lines, max_lines)
        text = "".join(shown)
        if total + len(text.encode()) > max_total:
            entry["note"] = "the report's room for diffs is used up: see the file itself or the snapshot"
        else:
            entry["diff"] = text
            total += len(text.encode())
        entries.append(entry)
    return entries


class FileWatch:
    """Read the files before the steps and after the run; say what changed, never fail the run."""

    def __init__(self, target: Target, config: Config, extra: list[str]):
        self.target, self.config, self.extra = target, config, extra
        self.before: dict[str, bytes] | None = None
        self.root, self.patterns = "", list(extra)

    def start(self, manifest: dict[str, Any] | None) -> str | None:
        """Take the before state (the snapshot's archive when it has one); return a note when it cannot."""
        try:
            if manifest and manifest.get("files") and (Path(manifest["path"]) / FILES).is_file():
                self.root, self.patterns = manifest["files"]["root"], list(manifest["files"]["patterns"])
                self.before = read_archive(Path(manifest["path"]) / FILES)
            else:
                self.root = backend_root(self.target, self.config)
                self.patterns = file_patterns(self.target, self.root, self.extra)
                self.before = read_files(self.target, self.root, self.patterns)
        except (RunbookError, OSError, tarfile.TarError) as exc:
            return f"the migration files could not be read before the steps, so no file diff is shown: {exc}"
        return None

    def follow(self, target: Target, config: Config) -> None:
        """Read the after state from a copy of the files (a rehearsal): the same paths under its root."""
        self.target, self.root = target, backend_root(target, config)

    def finish(self) -> tuple[list[dict[str, Any]], str | None]:
        """Return the diffs since start, and a note when the files could not be read again."""
        if self.before is None:
            return [], None
        try:
            after = read_files(self.target, self.root, self.patterns)
        except (RunbookError, OSError, tarfile.TarError) as exc:
            return [], f"the migration files could not be read after the run, so no file diff is shown: {exc}"
        return file_diffs(self.before, after), None
