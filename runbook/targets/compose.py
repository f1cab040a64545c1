"""The compose target: commands and files in the containers of a running Compose project, via the docker SDK.

Containers are found by Compose's labels, so stacks started by Compose v1 and v2 both work and no docker
CLI output is ever parsed. Every command runs under a small `sh` wrapper that carries a marker, so a
timeout or Ctrl-C can find and stop it inside the container (a dropped API connection alone would not).
Every call to the Docker API goes through `_talking`, which turns whatever the SDK or its transport raises
into one EnvironmentNotReady line.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import posixpath
import queue
import shlex
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import requests.exceptions

from runbook.config import Config
from runbook.errors import EnvironmentNotReady, InputError, RunbookError, StepFailed
from runbook.targets.base import DatabaseSettings, ExecResult, OutputCallback, create_output_file, open_source
from runbook.targets.capture import OutputBuffer, exec_result
from runbook.targets.compose_project import (
    PROJECT_LABEL,
    ComposeProject,
    ContainerInfo,
    container_env,
    glob_depth,
    group_by_service,
    match_glob,
    pick_container,
    resolve_project,
    settings_from_container,
)
from runbook.targets.docker_sdk import docker
from runbook.targets.hijack import STDOUT, HijackedExec, UnsupportedTransport
from runbook.targets.local import settings_from_config

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Lets the stopper find every process of one exec, even those that left the wrapper's process tree.
MARKER = "RUNBOOK_EXEC_ID"
# How long the stopper waits after SIGTERM before SIGKILL, and how long we then wait for the stream to end.
TERM_GRACE = 3.0
DRAIN_AFTER_STOP = 10.0
# A helper command (list, probe, delete, the stopper) that takes longer than this means a stuck container.
HELPER_TIMEOUT = 60.0
# Set to 1 to stream files through the SDK's own exec stream even where the raw socket would do: the
# path an ssh:// DOCKER_HOST always takes, forced so that it can be tested on a local daemon.
STREAM_VIA_SDK_ENV = "RUNBOOK_STREAM_VIA_SDK"
# Names the file a command reads as stdin on that path.
STDIN_FILE_ENV = "RUNBOOK_STDIN_FILE"
TAR_CHUNK = 256 * 1024
# check_ready trusts a container list younger than this (the executor calls it right after describe()).
FRESH_LIST = 1.0

# $0 names the wrapper in error messages ("runbook-exec: 1: foo: not found"); $1 is the marker, shifted
# away; "$@" is the argv, never re-parsed by a shell. The marker in the wrapper's command line finds it
# whoever it runs as (another user's environment is unreadable without CAP_SYS_PTRACE). Not `exec "$@"`:
# the wrapper stays as the parent, so the command is found even if it rewrites its own command line.
# Only builtins: no process is forked besides the command itself.
WRAPPER = 'shift; "$@"; exit $?'

# Run as root in the same container: TERM then KILL every process whose command line or environment
# carries the marker (the wrapper, and daemonised children re-parented away from it) and all their
# descendants. A zombie counts as gone: PID 1 of many images (`sleep infinity`, a shell) never reaps
# re-parented children.
STOPPER = r"""
t={token}
table=$(for s in /proc/[0-9]*/stat; do
  {{ read -r l < "$s"; }} 2>/dev/null || continue
  r=${{l##*") "}}; set -- $r; d=${{s%/stat}}; echo "${{d#/proc/}} $2"
done)
set_=" "
for d in /proc/[0-9]*; do
  p=${{d#/proc/}}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' < "$d/cmdline" 2>/dev/null | grep -qx "{marker}=$t" ||
     tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "{marker}=$t"; then set_="$set_$p "; fi
done
changed=1
while [ "$changed" = 1 ]; do
  changed=0
  while read -r p pp; do
    case "$set_" in *" $p "*) continue ;; esac
    case "$set_" in *" $pp "*) set_="$set_$p "; changed=1 ;; esac
  done <<EOF
$table
EOF
done
pids=$(echo $set_)
[ -n "$pids" ] || exit 0
kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt {rounds} ]; do
  alive=""
  for p in $pids; do
    {{ read -r l < "/proc/$p/stat"; }} 2>/dev/null || continue
    case ${{l##*") "}} in Z*) ;; *) alive="$alive $p" ;; esac
  done
  [ -n "$alive" ] || exit 0
  sleep 0.1 2>/dev/null || sleep 1
  i=$((i + 1))
done
kill -KILL $alive 2>/dev/null
exit 0
"""

# Print the absolute directory, then the files under it as NUL-separated `./relative` paths.
LISTER = 'cd -- "$1" 2>/dev/null || exit 3; pwd; shift; exec find . -mindepth 1 "$@" -type f -print0'
# Print "uid gid mode" of the file, or "uid gid" of its (created) parent directory.
PROBE = (
    'if [ -e "$1" ]; then stat -c "%u %g %a" -- "$1"; '
    'else mkdir -p -- "$2" && stat -c "%u %g" -- "$2"; fi'
)


class ComposeTarget:
    """Run commands and touch files in the services of one running Compose project."""

    name = "compose"

    def __init__(
        self,
        config: Config,
        *,
        project_name: str | None = None,
        compose_file: str | None = None,
        client_factory: Callable[[], Any] = docker.from_env,
        stream_via_sdk: bool = False,
    ):
        self.config = config
        # Things the report should show the user: a choice runbook made, a change that will not last.
        self.warnings: list[str] = []
        # Called with each new warning as it is raised, so the console can show it at once.
        self.on_warning: Callable[[str], None] | None = None
        self._stream_via_sdk = stream_via_sdk
        self._project_name = project_name
        self._compose_file = compose_file
        self._client_factory = client_factory
        self._client: Any = None
        self._project: ComposeProject | None = None
        self._containers: dict[str, Any] = {}
        self._listed_at = float("-inf")  # when the project's containers were last listed (monotonic)

    # --- Docker and the project ----------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    @property
    def client(self) -> Any:
        """The docker SDK client, made on first use; an unreachable daemon is EnvironmentNotReady."""
        if self._client is None:
            try:
                self._client = self._client_factory()
            except Exception as exc:  # DockerException, paramiko and socket errors alike
                raise self._unreachable(exc) from exc
        return self._client

    @property
    def project(self) -> ComposeProject:
        if self._project is None:
            self._project = resolve_project(
                self.config.project_dir,
                project_name=self._project_name,
                configured_name=self.config.compose.project,
                compose_file=self._compose_file,
                configured_file=self.config.compose.file,
            )
        return self._project

    def service_name(self, service: str) -> str:
        """Map the playbook's `db` / `backend` to the project's service names."""
        if service == "db":
            return self.config.services.db
        if service == "backend":
            return self.config.services.backend
        return service

    def container(self, service: str) -> Any:
        """Return the docker SDK container that runs service (cached until check_ready or a failure)."""
        name = self.service_name(service)
        if name not in self._containers:
            self._resolve([service])
        return self._containers[name]

    def _resolve(self, services: Sequence[str]) -> None:
        """Find the containers of services with one container list; inspect only those not known yet."""
        project = self.project
        with self._talking(f"listing the containers of project {project.name!r}"):
            summaries = self.client.api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project.name}"})
        self._listed_at = time.monotonic()
        found = group_by_service(ContainerInfo.from_summary(s) for s in summaries)
        for service in services:
            name = self.service_name(service)
            try:
                info, warning = pick_container(project, name, found)
            except EnvironmentNotReady:
                self._containers.pop(name, None)
                raise
            if warning:
                self._warn(warning)
            known = self._containers.get(name)
            if known is not None and known.id == info.id:
                continue  # listed as running a moment ago, same container: its inspect data still holds
            try:
                with self._talking(f"inspecting container {info.name}", passthrough=(docker.errors.NotFound,)):
                    self._containers[name] = self.client.containers.get(info.id)
            except docker.errors.NotFound as exc:
                raise EnvironmentNotReady(f"container {info.name} of service {name!r} went away",
                                          hint="run again once the stack is up") from exc

    def check_ready(self, services: Sequence[str]) -> None:
        known = all(self.service_name(s) in self._containers for s in services)
        if known and time.monotonic() - self._listed_at < FRESH_LIST:
            return  # describe() listed them a moment ago
        # A fresh list says whether each service still runs; a container seen before is not inspected again.
        self._resolve(services)

    def describe(self) -> dict[str, str]:
        info = {"target": "compose", "project": "", "compose_file": "", "docker_host": self.docker_host}
        try:
            info["project"] = self.project.name
            info["compose_file"] = str(self.project.compose_file or "")
        except RunbookError as exc:
            info["project"] = f"(unknown: {exc.message})"
        try:
            self._resolve([r for r in ("db", "backend") if self.service_name(r) not in self._containers])
        except RunbookError as exc:
            if self._client is None:  # no daemon: do not wait for it twice
                info["db"] = info["backend"] = f"(unavailable: {exc.message})"
                return info
        for role in ("db", "backend"):
            try:
                info[role] = self.container(role).name
            except RunbookError as exc:
                info[role] = f"(unavailable: {exc.message})"
        return info

    # --- commands ------------------------------------------------------------------------------------

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        if not argv:
            raise InputError(f"empty command for service {service!r}")
        token = uuid.uuid4().hex
        wrapped = ["sh", "-c", WRAPPER, "runbook-exec", f"{MARKER}={token}", *argv]
        environment = {**(env or {}), MARKER: token}
        if workdir and not workdir.startswith("/"):
            workdir = self._absolute(self.container(service), workdir)
        started = time.monotonic()
        container, exec_id = self._exec_create(service, wrapped, environment, workdir, user)
        buffers = {"stdout": OutputBuffer(), "stderr": OutputBuffer()}
        decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in buffers}

        def emit(stream: str, chunk: bytes, final: bool = False) -> None:
            text = decoders[stream].decode(chunk, final=final)
            if text:
                buffers[stream].add(text)
                if on_output:
                    on_output(stream, text)  # type: ignore[arg-type]

        deadline = None if timeout is None else started + timeout
        timed_out = self._pump_sdk(service, container, exec_id, token, argv, emit, deadline)
        for stream in buffers:
            emit(stream, b"", final=True)
        exit_code, ran = (124, True) if timed_out else self._outcome(exec_id, service)
        if not ran and not (buffers["stdout"].text() or buffers["stderr"].text()):
            # Docker sometimes drops its own "unable to find user" message: never leave a bare 126.
            emit("stderr", f"runbook: the command could not start in {container.name} (exit {exit_code}); "
                 f"check user {user or '(default)'!r} and workdir {workdir or '(default)'!r}\n".encode())
        return exec_result(exit_code, buffers, started, timed_out)

    def _pump_sdk(self, service: str, container: Any, exec_id: str, token: str, argv: Sequence[str],
                  emit: Callable[[str, bytes], None], deadline: float | None) -> bool:
        """Start the exec through the SDK's demuxed stream and pass its chunks on; return True on timeout."""
        pump: _StreamPump | None = None
        timed_out = False
        try:
            with self._talking(f"starting {shlex.join(argv)[:80]} in {container.name}", service):
                pump = _StreamPump(self.client.api.exec_start(exec_id, stream=True, demux=True))
            timed_out = not pump.drain(emit, deadline)
            if timed_out:
                self._stop(container, token)
                pump.drain(emit, time.monotonic() + DRAIN_AFTER_STOP)
        except BaseException:
            # Ctrl-C, SIGTERM turned into an exception, a lost connection: stop the command, then re-raise.
            with contextlib.suppress(Exception):
                self._stop(container, token)
            raise
        finally:
            if pump is not None:
                pump.close()
        if pump.error is not None and not timed_out:
            raise EnvironmentNotReady(
                f"lost the connection to the Docker daemon at {self.docker_host} while running "
                f"{shlex.join(argv)} in {self.service_name(service)}: {_reason(pump.error)}",
                hint="check that Docker is still running",
            ) from pump.error
        return timed_out

    def _exec_create(
        self,
        service: str,
        argv: Sequence[str],
        environment: Mapping[str, str] | None,
        workdir: str | None,
        user: str | None,
        stdin: bool = False,
    ) -> tuple[Any, str]:
        """Create an exec in the service's container, re-resolving once if the container changed."""
        for attempt in (1, 2):
            container = self.container(service)
            try:
                with self._talking(f"creating a command in {container.name}", passthrough=(docker.errors.APIError,)):
                    created = self.client.api.exec_create(
                        container.id, list(argv), stdout=True, stderr=True, stdin=stdin, tty=False,
                        environment=dict(environment) if environment else None,
                        workdir=workdir or None, user=user or "",
                    )
                return container, created["Id"]
            except docker.errors.APIError as exc:
                # 404: recreated since we looked; 409: stopped or paused since. Look again once.
                if exc.status_code in (404, 409) and attempt == 1:
                    self._containers.pop(self.service_name(service), None)
                    continue
                raise EnvironmentNotReady(
                    f"cannot run a command in {container.name}: {_reason(exc)}",
                    hint=f"check `docker compose ps {self.service_name(service)}`",
                ) from exc
        raise AssertionError("unreachable")

    def exec_to_file(
        self,
        service: str,
        argv: Sequence[str],
        dest: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        with create_output_file(dest) as sink:
            result = self._exec_streaming(service, argv, env, timeout, source=None, sink=sink)
            sink.flush()
            os.fsync(sink.fileno())
        return result

    def exec_from_file(
        self,
        service: str,
        argv: Sequence[str],
        src: Path | BinaryIO,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        with open_source(src) as source:
            return self._exec_streaming(service, argv, env, timeout, source=source, sink=None)

    def hijack_supported(self, stdin: bool) -> bool:
        """Say whether the exec's raw socket can carry the stream: not over ssh://, nor stdin over TLS."""
        if self._stream_via_sdk or os.environ.get(STREAM_VIA_SDK_ENV) == "1":
            return False
        if urlparse(self.docker_host).scheme not in ("unix", "tcp", "http", "https"):
            return False
        tls = str(getattr(self.client.api, "base_url", "")).startswith("https")
        return not (stdin and tls)

    def _exec_streaming(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None,
                        timeout: float | None, *, source: Any, sink: Any) -> ExecResult:
        """Run argv with source (a file) on stdin and stdout to sink or kept, in constant memory; no TTY."""
        if not argv:
            raise InputError(f"empty command for service {service!r}")
        token = uuid.uuid4().hex
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        buffers = {"stdout": OutputBuffer(), "stderr": OutputBuffer()}
        decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in buffers}

        def keep(name: str, data: bytes | memoryview) -> None:
            if name == "stdout" and sink is not None:
                sink.write(data)
            else:
                buffers[name].add(decoders[name].decode(data))

        if self.hijack_supported(stdin=source is not None):
            exit_code, timed_out = self._stream_hijacked(service, argv, env, token, deadline, source, keep)
        else:
            exit_code, timed_out = self._stream_sdk(service, argv, env, token, deadline, source, keep)
        for name in buffers:
            buffers[name].add(decoders[name].decode(b"", final=True))
        return exec_result(exit_code, buffers, started, timed_out)

    def _stream_hijacked(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None, token: str,
                         deadline: float | None, source: Any,
                         keep: Callable[[str, memoryview], None]) -> tuple[int, bool]:
        """Stream over the exec's raw socket: one thread, stdin and stdout interleaved."""
        wrapped = ["sh", "-c", WRAPPER, "runbook-exec", f"{MARKER}={token}", *argv]
        container, exec_id = self._exec_create(service, wrapped, {**(env or {}), MARKER: token}, None, None,
                                               stdin=source is not None)
        conn: HijackedExec | None = None
        timed_out = False
        try:
            with self._talking(f"starting {shlex.join(argv)[:80]} in {container.name}", service):
                raw = self.client.api.exec_start(exec_id, socket=True, tty=False)
            try:
                conn = HijackedExec(raw, source, lambda stream, data: keep(
                    "stdout" if stream == STDOUT else "stderr", data))
            except UnsupportedTransport as exc:
                with contextlib.suppress(Exception):
                    raw.close()
                raise EnvironmentNotReady(
                    f"streaming a file through {self.docker_host} is not supported ({exc})",
                    hint=f"set {STREAM_VIA_SDK_ENV}=1 to stream through the Docker SDK instead") from None
            with self._talking(f"streaming {shlex.join(argv)[:80]} in {container.name}", service):
                timed_out = not conn.pump(deadline)
                if timed_out:
                    conn.stop_sending()
                    self._stop(container, token)
                    conn.pump(time.monotonic() + DRAIN_AFTER_STOP)
        except BaseException:
            # Ctrl-C, a full disk, a lost connection: stop the command in the container, then re-raise.
            with contextlib.suppress(Exception):
                self._stop(container, token)
            raise
        finally:
            if conn is not None:
                conn.close()
        if conn.mid_frame and not timed_out:
            raise EnvironmentNotReady(
                f"the output of {shlex.join(argv)} in {service} stopped in the middle of a frame",
                hint="check that Docker is still running")
        return (124 if timed_out else self._outcome(exec_id, service)[0]), timed_out

    def _stream_sdk(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None, token: str,
                    deadline: float | None, source: Any,
                    keep: Callable[[str, bytes], None]) -> tuple[int, bool]:
        """Stream through the SDK's own demuxed stream, which works over every transport (ssh:// too).

        The SDK cannot write to an exec's stdin, so a source file is first copied into the container
        (a tar streamed by put_archive) and the command reads it from there; the copy is removed after.
        """
        environment = {**(env or {}), MARKER: token}
        wrapper = WRAPPER
        upload = None
        if source is not None:
            upload = self._upload(service, source, token)
            environment[STDIN_FILE_ENV] = posixpath.join(upload, "stdin")
            wrapper = f'shift; "$@" < "${STDIN_FILE_ENV}"; exit $?'
        try:
            wrapped = ["sh", "-c", wrapper, "runbook-exec", f"{MARKER}={token}", *argv]
            container, exec_id = self._exec_create(service, wrapped, environment, None, None)
            timed_out = self._pump_sdk(service, container, exec_id, token, argv, keep, deadline)
            return (124 if timed_out else self._outcome(exec_id, service)[0]), timed_out
        finally:
            if upload is not None:
                with contextlib.suppress(RunbookError):
                    self._run(service, ["rm", "-rf", "--", upload])

    def _upload(self, service: str, source: Any, token: str) -> str:
        """Copy an open file into a new private directory in the service; return the directory."""
        directory = f"/tmp/.runbook-{token}"
        # Made by the exec's default user, who must be able to read the file: its owner is that user too.
        code, out, err = self._run(service, ["sh", "-c", 'mkdir -m 700 -- "$1" && id -u && id -g',
                                             "runbook-upload", directory])
        fields = out.split()
        if code != 0 or len(fields) != 2:
            raise StepFailed(f"cannot make {directory} in {service}: {_first_line(err) or f'exit {code}'}")
        size = os.fstat(source.fileno()).st_size
        self._put(self.container(service), service, directory,
                  _tar_stream(source, "stdin", size, int(fields[0]), int(fields[1])))
        return directory

    def _outcome(self, exec_id: str, service: str | None = None) -> tuple[int, bool]:
        """Return the exit code and whether a process ever started (a bad user or workdir stops it)."""
        # The stream can end a moment before the daemon records the exit.
        for _ in range(250):
            with self._talking("reading the exit code of a command", service):
                info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return (-1 if code is None else int(code)), bool(info.get("Pid"))
            time.sleep(0.02)
        return -1, True

    def _run(self, service: str, argv: Sequence[str], timeout: float = HELPER_TIMEOUT) -> tuple[int, bytes, bytes]:
        """Run a short helper command to completion; return exit code, stdout and stderr bytes."""
        container, exec_id = self._exec_create(service, argv, None, None, None)
        out, err = self._collect(exec_id, f"{argv[0]} in {container.name}", service, timeout)
        return self._outcome(exec_id, service)[0], out, err

    def _collect(self, exec_id: str, what: str, service: str | None, timeout: float,
                 passthrough: tuple[type[BaseException], ...] = ()) -> tuple[bytes, bytes]:
        """Start an exec and gather its output; a helper that hangs is an error, not a hung run."""
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        with self._talking(f"running {what}", service, passthrough):
            pump = _StreamPump(self.client.api.exec_start(exec_id, stream=True, demux=True))
        try:
            finished = pump.drain(lambda stream, chunk: chunks[stream].append(chunk), time.monotonic() + timeout)
        finally:
            pump.close()
        if not finished:
            raise EnvironmentNotReady(f"{what} did not finish within {timeout:.0f} s",
                                      hint="check the container with `docker compose top`")
        if pump.error is not None:
            raise EnvironmentNotReady(f"lost the connection to the Docker daemon at {self.docker_host} while "
                                      f"running {what}: {_reason(pump.error)}",
                                      hint="check that Docker is still running") from pump.error
        return b"".join(chunks["stdout"]), b"".join(chunks["stderr"])

    def _stop(self, container: Any, token: str) -> None:
        """Stop one exec's processes inside the container: TERM, then KILL after a grace period."""
        script = STOPPER.format(token=token, marker=MARKER, rounds=int(TERM_GRACE * 10))
        try:
            with self._talking(f"stopping a command in {container.name}", passthrough=(docker.errors.APIError,)):
                exec_id = self.client.api.exec_create(container.id, ["sh", "-c", script], user="0")["Id"]
                self._collect(exec_id, f"the stopper in {container.name}", None, TERM_GRACE + HELPER_TIMEOUT,
                              passthrough=(docker.errors.APIError,))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: the container stopped, and the command with it
                self._warn(f"could not stop a command in {container.name}: {_reason(exc)}; "
                           "check `ps` in the container")
        except EnvironmentNotReady as exc:
            self._warn(f"could not stop a command in {container.name}: {exc.message}; check `ps` in the container")

    # --- files ---------------------------------------------------------------------------------------

    def read_file(self, service: str, path: str) -> bytes:
        container = self.container(service)
        target = self._absolute(container, path)
        for _ in range(8):  # follow a few symlinks, as open() would
            with self._archive(service, target) as tar:
                member = tar.next()
                if member is None or member.isdir():
                    raise IsADirectoryError(f"{target} in {service} is a directory")
                if member.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(target), member.linkname))
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    raise StepFailed(f"{target} in {service} is not a regular file")
                return handle.read()
        raise StepFailed(f"{path} in {service}: too many levels of symbolic links")

    def write_file(self, service: str, path: str, data: bytes) -> None:
        container = self.container(service)
        target = self._absolute(container, path)
        uid, gid, mode = self._owner_and_mode(service, target)
        member = tarfile.TarInfo(posixpath.basename(target))
        member.size, member.mode, member.uid, member.gid = len(data), mode, uid, gid
        member.mtime = int(time.time())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.addfile(member, io.BytesIO(data))
        self._put(container, service, posixpath.dirname(target), buffer.getvalue())
        self._note_persistence(service, target)

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        container = self.container(service)
        depth = glob_depth(pattern)
        args = ["-maxdepth", str(depth)] if depth is not None else []
        code, out, err = self._run(
            service, ["sh", "-c", LISTER, "runbook-list", self._absolute(container, directory), *args]
        )
        if code == 3:  # no such directory: nothing matches, as with pathlib
            return []
        if code not in (0, 1) or b"\n" not in out:  # 1: some subdirectory was unreadable
            raise StepFailed(f"cannot list {directory} in {service}: {_first_line(err) or f'exit {code}'}")
        base, _, listing = out.partition(b"\n")
        root = base.decode("utf-8", "surrogateescape")
        found = []
        for raw in listing.split(b"\0"):
            relative = raw.decode("utf-8", "surrogateescape").removeprefix("./")
            if relative and match_glob(relative, pattern):
                found.append(posixpath.join(root, relative))
        return sorted(found)

    def delete_file(self, service: str, path: str) -> None:
        container = self.container(service)
        target = self._absolute(container, path)
        code, _, err = self._run(service, ["rm", "-f", "--", target])
        if code != 0:
            raise StepFailed(f"cannot delete {target} in {service}: {_first_line(err) or f'exit {code}'}")
        self._note_persistence(service, target)

    def copy_out(self, service: str, path: str, dest_dir: str | Path) -> Path:
        """Copy a file or directory out of the service into dest_dir; return the local path."""
        container = self.container(service)
        source = self._absolute(container, path)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        with self._archive(service, source) as tar:
            tar.extractall(dest, filter="data")
        return dest / posixpath.basename(source.rstrip("/"))

    def copy_in(self, service: str, src: str | Path, path: str) -> None:
        """Copy a local file or directory into the service as path (a directory's contents go in path)."""
        container = self.container(service)
        target = self._absolute(container, path)
        uid, gid, _ = self._owner_and_mode(service, target)

        def owned(member: tarfile.TarInfo) -> tarfile.TarInfo:
            member.uid, member.gid, member.uname, member.gname = uid, gid, "", ""
            return member

        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w") as tar:
                tar.add(str(src), arcname=posixpath.basename(target), filter=owned)
            spool.seek(0)
            self._put(container, service, posixpath.dirname(target), spool)
        self._note_persistence(service, target)

    def is_persistent(self, service: str, path: str) -> bool:
        """Return True when path lies on a bind mount or volume, so a change survives a recreate."""
        container = self.container(service)
        target = self._absolute(container, path)
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Type", "bind") not in ("bind", "volume"):
                continue  # tmpfs and the like go with the container
            destination = str(mount.get("Destination") or "").rstrip("/")
            if destination and (target == destination or target.startswith(destination + "/")):
                return True
            if mount.get("Destination") == "/":
                return True
        return False

    def _note_persistence(self, service: str, path: str) -> None:
        if not self.is_persistent(service, path):
            self._warn(
                f"{path} in {self.service_name(service)} is not on a bind mount or volume: "
                "the change is lost when the container is recreated"
            )

    def _owner_and_mode(self, service: str, target: str) -> tuple[int, int, int]:
        """Keep an existing file's owner and mode; a new one gets 0644 and its directory's owner."""
        code, out, err = self._run(service, ["sh", "-c", PROBE, "runbook-probe", target,
                                             posixpath.dirname(target)])
        fields = out.decode(errors="replace").split()
        if code != 0:
            if b"mkdir" in err:
                raise StepFailed(f"cannot create the directory of {target} in {service}: {_first_line(err)}")
            return 0, 0, 0o644  # no stat(1) in the image: root-owned, 0644
        uid, gid = int(fields[0]), int(fields[1])
        mode = int(fields[2], 8) & 0o7777 if len(fields) > 2 else 0o644
        return uid, gid, mode

    def _put(self, container: Any, service: str, directory: str, data: Any) -> None:
        tmpfs = _tmpfs_holding(container, directory)
        if tmpfs:
            # The daemon would write beneath the mount, where nothing in the container sees it.
            raise StepFailed(f"cannot write into {directory} in {service}: it is on the tmpfs mount {tmpfs}, "
                             "which Docker's archive API cannot reach")
        try:
            with self._talking(f"writing into {directory} in {container.name}", service,
                               passthrough=(docker.errors.APIError,)):
                container.put_archive(directory, data)
        except docker.errors.APIError as exc:
            raise StepFailed(f"cannot write into {directory} in {service}: {_reason(exc)}") from exc

    @contextlib.contextmanager
    def _archive(self, service: str, path: str) -> Iterator[tarfile.TarFile]:
        """Fetch path from the container as a tar archive spooled to a temporary file."""
        container = self.container(service)
        tmpfs = _tmpfs_holding(container, path)
        if tmpfs:
            raise StepFailed(f"cannot read {path} in {service}: it is on the tmpfs mount {tmpfs}, "
                             "which Docker's archive API cannot reach")
        with tempfile.TemporaryFile() as spool:
            try:
                with self._talking(f"reading {path} in {container.name}", service,
                                   passthrough=(docker.errors.APIError,)):
                    chunks, _ = container.get_archive(path)
                    for chunk in chunks:
                        spool.write(chunk)
            except docker.errors.NotFound as exc:
                raise FileNotFoundError(2, f"no such file in {self.service_name(service)}", path) from exc
            except docker.errors.APIError as exc:
                raise StepFailed(f"cannot read {path} in {service}: {_reason(exc)}") from exc
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r") as tar:
                yield tar

    @staticmethod
    def _absolute(container: Any, path: str) -> str:
        """Resolve path like a command in the container would: relative to its working directory."""
        base = (container.attrs.get("Config") or {}).get("WorkingDir") or "/"
        return posixpath.normpath(posixpath.join(base, path))

    # --- the database --------------------------------------------------------------------------------

    def database_settings(self) -> DatabaseSettings:
        db = self.config.database
        if db.url or db.host:
            configured = settings_from_config(self.config)
            assert configured is not None
            return configured
        found = self._settings_from_container(self.container("db"))
        merged = settings_from_config(self.config, fallback=found)
        if merged is None:
            return found
        # Credentials from runbook.yml, address from the container: say how the connection is made.
        merged.via, merged.extra = found.via, dict(found.extra)
        return merged

    def _settings_from_container(self, container: Any) -> DatabaseSettings:
        settings = settings_from_container(container.attrs, container.name, self.docker_host)
        settings.extra["service"] = self.config.services.db
        password_file = container_env(container.attrs).get("POSTGRES_PASSWORD_FILE")
        if settings.password is None and password_file:
            with contextlib.suppress(OSError, RunbookError):
                settings.password = self.read_file("db", password_file).decode().rstrip("\r\n")
        return settings

    # --- helpers -------------------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)

    def _unreachable(self, exc: BaseException) -> EnvironmentNotReady:
        return EnvironmentNotReady(
            f"cannot reach the Docker daemon at {self.docker_host}: {_reason(exc)}",
            hint="start Docker or set DOCKER_HOST",
        )

    @contextlib.contextmanager
    def _talking(self, doing: str, service: str | None = None,
                 passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Turn whatever the Docker SDK or its transport raises while doing something into one line (exit 4).

        Errors in passthrough are left to the caller, who knows what they mean there.
        """
        try:
            yield
        except passthrough:
            raise
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise self._unreachable(exc) from exc
        except docker.errors.APIError as exc:
            if service is not None and exc.status_code in (404, 409):
                name = self.service_name(service)
                self._containers.pop(name, None)
                raise EnvironmentNotReady(f"service {name} stopped during the step ({_reason(exc)})",
                                          hint=f"start it with `docker compose up -d {name}`") from exc
            raise EnvironmentNotReady(f"the Docker daemon at {self.docker_host} answered an error while {doing}: "
                                      f"{_reason(exc)}",
                                      hint="check `docker compose ps` and the daemon's log") from exc
        except _transport_errors() as exc:
            raise EnvironmentNotReady(f"lost touch with the Docker daemon at {self.docker_host} while {doing}: "
                                      f"{_reason(exc)}", hint="check that Docker is running and reachable") from exc


class _StreamPump:
    """Read an exec's demuxed stream in a thread, so the caller can wait with a deadline and take Ctrl-C."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=256)  # bounded: back-pressure
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.finished = False
        self._thread = threading.Thread(target=self._read, name="runbook-exec-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for out, err in self._stream:
                if out:
                    self._put(("stdout", out))
                if err:
                    self._put(("stderr", err))
        except Exception as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._put(("end", b""))

    def _put(self, item: tuple[str, bytes]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def drain(self, emit: Callable[[str, bytes], None], deadline: float | None) -> bool:
        """Pass chunks to emit until the stream ends (True) or the deadline passes (False)."""
        while not self.finished:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                kind, chunk = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "end":
                self.finished = True
            else:
                emit(kind, chunk)
        return True

    def close(self) -> None:
        self._stop.set()
        if not self.finished:
            # Shuts the socket down, which also ends a read blocked in the thread.
            with contextlib.suppress(Exception):
                self._stream.close()
        self._thread.join(timeout=2)


def _tmpfs_holding(container: Any, path: str) -> str | None:
    """Return the tmpfs mount that holds path, if any."""
    attrs = container.attrs
    mounts = [m.get("Destination") for m in attrs.get("Mounts") or [] if m.get("Type") == "tmpfs"]
    mounts += list((attrs.get("HostConfig") or {}).get("Tmpfs") or {})
    for mount in mounts:
        mount = str(mount or "").rstrip("/")
        if mount and (path == mount or path.startswith(mount + "/")):
            return mount
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The errors the SDK and its transports raise; paramiko counts only when ssh:// loaded it."""
    kinds: list[type[BaseException]] = [docker.errors.DockerException, requests.exceptions.RequestException,
                                        TimeoutError, EOFError]
    paramiko = sys.modules.get("paramiko")
    if paramiko is not None:
        kinds.append(paramiko.SSHException)
    return tuple(kinds)


def _tar_stream(source: Any, name: str, size: int, uid: int, gid: int) -> Iterator[bytes]:
    """Yield a one-file tar archive of an open file chunk by chunk, never holding the file in memory."""
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.uid, member.gid = size, 0o600, uid, gid
    member.mtime = int(time.time())
    yield member.tobuf(format=tarfile.PAX_FORMAT)
    left = size
    while left > 0:
        block = source.read(min(TAR_CHUNK, left))
        if not block:
            raise StepFailed(f"{getattr(source, 'name', 'the file')} shrank while it was being copied")
        left -= len(block)
        yield block
    # Pad the member to a 512-byte block, then the two zero blocks that end an archive.
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def _reason(exc: BaseException) -> str:
    """Return a short one-line reason: the innermost OS error if there is one, else the message."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        for arg in getattr(seen, "args", ()):
            if isinstance(arg, OSError) and arg.strerror:
                return arg.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return _first_line(str(exc.explanation))
    return _first_line(str(exc)) or type(exc).__name__


def _first_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
