"""The recording target: runs nothing, records every command and file operation, answers from a script.

Like invoke's `MockContext`: `runbook run --dry-run` sends the real executor's commands here, and the
executor's unit tests script what each command answers. It never touches Docker, a process or a database;
its files live in a dict.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runbook.targets.base import (
    DatabaseSettings,
    ExecResult,
    MissingFile,
    OutputCallback,
    Warnings,
    create_output_file,
)

# What a scripted command answers: one result every time, results in turn (the last one repeating),
# or a function of the call itself.
Answer = ExecResult | Sequence[ExecResult] | Callable[["Call"], ExecResult]


@dataclass(frozen=True)
class Call:
    """One operation asked of the target, exactly as it was asked."""

    operation: str  # exec | exec_to_file | exec_from_file | read_file | write_file | list_files | delete_file
    service: str
    argv: tuple[str, ...] = ()
    path: str = ""  # the file read, written, listed (the directory) or deleted; the file streamed in or out
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    timeout: float | None = None
    data: bytes | None = None  # what write_file was asked to write

    @property
    def command(self) -> str:
        """The argv as one shell-quoted line, the form answers are scripted by."""
        return shlex.join(self.argv)


class RecordingTarget:
    """A target that records what it is asked and answers success with empty output unless scripted.

    `answers` maps a command line to its Answer. The exact line wins; otherwise the longest scripted line
    the command starts with (word by word), so `"python manage.py migrate"` also answers
    `python manage.py migrate shop 0002`.
    """

    name = "recording"
    # Nothing runs anywhere; answering like a remote service keeps host-only paths (the local pg_dump) out.
    on_this_host = False

    def __init__(self, answers: Mapping[str, Answer] | None = None, *, files: Mapping[str, bytes] | None = None,
                 settings: DatabaseSettings | None = None, workdir: str | None = None,
                 environments: Mapping[str, Mapping[str, str]] | None = None,
                 facts: Mapping[str, str] | None = None):
        self.answers = dict(answers or {})
        self.files = dict(files or {})
        self.settings = settings or DatabaseSettings(via="recording: no connection")
        self.workdir = workdir
        self.environments = {service: dict(env) for service, env in (environments or {}).items()}
        self.facts = dict(facts or {})
        self.calls: list[Call] = []
        self.warnings = Warnings()
        self._turns: dict[str, int] = {}

    # --- what the tests read back ---------------------------------------------------------------------

    def commands(self, operation: str = "exec") -> list[str]:
        """Return the command lines asked for, in order, of one kind of operation."""
        return [call.command for call in self.calls if call.operation == operation]

    def warn(self, text: str) -> None:
        """Raise a warning once, as a real target does when it finds something odd about the stack."""
        self.warnings.add(text)

    # --- the Target protocol ------------------------------------------------------------------------

    def exec(self, service: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
             workdir: str | None = None, user: str | None = None, timeout: float | None = None,
             on_output: OutputCallback | None = None) -> ExecResult:
        call = Call("exec", service, tuple(argv), env=dict(env or {}), workdir=workdir, user=user, timeout=timeout)
        result = self._answer(call)
        if on_output is not None:
            for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                if text:
                    on_output(stream, text)  # type: ignore[arg-type]
        return result

    def exec_to_file(self, service: str, argv: Sequence[str], dest: Path, *, env: Mapping[str, str] | None = None,
                     timeout: float | None = None) -> ExecResult:
        result = self._answer(Call("exec_to_file", service, tuple(argv), path=str(dest), env=dict(env or {}),
                                   timeout=timeout))
        # The caller asked for the output in dest, as the real targets put it there: the scripted stdout.
        with create_output_file(dest) as sink:
            sink.write(result.stdout.encode())
        return ExecResult(result.exit_code, "", result.stderr, result.duration, result.timed_out)

    def exec_from_file(self, service: str, argv: Sequence[str], src: Path | BinaryIO, *,
                       env: Mapping[str, str] | None = None, timeout: float | None = None) -> ExecResult:
        name = str(src)
        if not isinstance(src, Path):  # a file the caller opened: the command reads it all, as a real one would
            src.read()
            name = str(getattr(src, "name", "<stream>"))
        return self._answer(Call("exec_from_file", service, tuple(argv), path=name, env=dict(env or {}),
                                 timeout=timeout))

    def read_file(self, service: str, path: str) -> bytes:
        full = self._path(path)
        self.calls.append(Call("read_file", service, path=full))
        if full not in self.files:
            raise MissingFile(f"cannot read {full} in {service}: no such file in the recording target",
                              path=full, service=service)
        return self.files[full]

    def write_file(self, service: str, path: str, data: bytes) -> None:
        full = self._path(path)
        self.calls.append(Call("write_file", service, path=full, data=data))
        self.files[full] = data

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        base = self._path(directory).rstrip("/")
        self.calls.append(Call("list_files", service, path=base))
        found = []
        for path in self.files:
            if path.startswith(base + "/") and _matches(path[len(base) + 1:], pattern):
                found.append(path)
        return sorted(found)

    def delete_file(self, service: str, path: str) -> None:
        full = self._path(path)
        self.calls.append(Call("delete_file", service, path=full))
        self.files.pop(full, None)

    def streams_stdin(self) -> bool:
        return True

    def database_settings(self) -> DatabaseSettings:
        return self.settings

    def describe(self) -> dict[str, str]:
        return {"target": "recording", **self.facts}

    def check_ready(self, services: Sequence[str]) -> None:
        """Every service is ready: nothing here can be down."""

    def environment(self, service: str) -> dict[str, str]:
        """Return the environment given for the service, or none."""
        return dict(self.environments.get(service, {}))

    # --- inside -------------------------------------------------------------------------------------

    def _answer(self, call: Call) -> ExecResult:
        self.calls.append(call)
        key = self._scripted_key(call.command)
        if key is None:
            return ExecResult(0)
        answer = self.answers[key]
        if isinstance(answer, ExecResult):
            return answer
        if callable(answer):
            return answer(call)
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return answer[min(turn, len(answer) - 1)]

    def _scripted_key(self, command: str) -> str | None:
        if command in self.answers:
            return command
        prefixes = [key for key in self.answers if command.startswith(key + " ")]
        return max(prefixes, key=len) if prefixes else None

    def _path(self, path: str) -> str:
        if self.workdir and not path.startswith("/"):
            return posixpath.normpath(posixpath.join(self.workdir, path))
        return posixpath.normpath(path)


def _matches(relative: str, pattern: str) -> bool:
    """Match a path below the listed directory as pathlib's glob does: `**/` is any folders, `*` stays in one."""
    if pattern.startswith("**/"):
        parts = relative.split("/")
        return any(_matches("/".join(parts[start:]), pattern[3:]) for start in range(len(parts)))
    return relative.count("/") == pattern.count("/") and fnmatch.fnmatchcase(relative, pattern)
