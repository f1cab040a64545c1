"""The parts of the target interface every target shares: warnings, and file errors as one line."""

from __future__ import annotations

import errno

import pytest

from runbook.errors import RunbookError, StepFailed
from runbook.targets.base import FileAccessError, MissingFile, Warnings, file_error


def test_warnings_are_kept_once_in_order_and_told_as_they_come() -> None:
    warnings = Warnings()
    heard: list[str] = []
    warnings.add("before anyone listens")
    warnings.listen(heard.append)
    warnings.add("second")
    warnings.add("second")
    warnings.add("third")
    assert warnings == ["before anyone listens", "second", "third"]
    assert list(warnings) == ["before anyone listens", "second", "third"]
    assert (len(warnings), warnings[0], warnings[-1], "third" in warnings) == (3, "before anyone listens", "third",
                                                                               True)
    assert heard == ["second", "third"]  # each once, and none from before listening
    assert warnings != ["second", "third"] and Warnings() == [] and Warnings() != ()


def test_a_missing_file_is_its_own_kind_of_file_error() -> None:
    error = file_error("read", "backend", "/srv/app/alembic.ini",
                       FileNotFoundError(errno.ENOENT, "No such file or directory"))
    assert isinstance(error, MissingFile) and isinstance(error, FileAccessError)
    assert isinstance(error, StepFailed) and isinstance(error, RunbookError) and not isinstance(error, OSError)
    assert (error.path, error.service, error.exit_code) == ("/srv/app/alembic.ini", "backend", 1)
    assert str(error) == "cannot read /srv/app/alembic.ini in backend: No such file or directory (check the path)"


@pytest.mark.parametrize(("exc", "hint"), [
    (PermissionError(errno.EACCES, "Permission denied"), "check the owner and mode"),
    (IsADirectoryError(errno.EISDIR, "Is a directory"), "name a file, not a directory"),
    (OSError(errno.ENOSPC, "No space left on device"), "free some space"),
    (OSError(errno.EROFS, "Read-only file system"), "mount it writable"),
    (FileExistsError(errno.EEXIST, "File exists"), "a file stands where a directory is needed"),
    (OSError(errno.EIO, "Input/output error"), "check the path and the service"),
])
def test_every_file_error_names_the_path_the_reason_and_a_fix(exc: OSError, hint: str) -> None:
    error = file_error("write", "backend", "/srv/app/x.py", exc)
    assert type(error) is FileAccessError
    assert error.message == f"cannot write /srv/app/x.py in backend: {exc.strerror}"
    assert error.hint is not None and hint in error.hint
    assert "\n" not in str(error)
