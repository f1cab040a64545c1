"""Commands in the containers of a Compose project: run, streamed to and from files, timed out and stopped.

Every command runs under a small `sh` wrapper that carries a marker, so a timeout or Ctrl-C can find and stop
it inside the container (a dropped API connection alone would not). A file streams through the exec's raw
socket where the transport allows it (hijack.py), else through the SDK's own stream (the ssh:// path).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from runbook.errors import EnvironmentNotReady, InputError, RunbookError, StepFailed
from runbook.targets.base import ExecResult, OutputCallback, create_output_file, open_source
from runbook.targets.compose.containers import Containers, first_line, reason
from runbook.targets.compose.docker_sdk import docker
from runbook.targets.compose.hijack import STDOUT, HijackedExec, UnsupportedTransport
from runbook.targets.compose.streams import Output, StreamPump, tar_stream

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


class Execs:
    """Run commands in the services' containers, each under a marked wrapper so that it can be stopped."""

    def __init__(self, containers: Containers, *, stream_via_sdk: bool = False):
        self.containers = containers
        self._stream_via_sdk = stream_via_sdk

    @property
    def _api(self) -> Any:
        return self.containers.client.api

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
            workdir = self.containers.absolute(service, workdir)
        started = time.monotonic()
        container, exec_id = self.create(service, wrapped, environment, workdir, user)
        output = Output(on_output)
        deadline = None if timeout is None else started + timeout
        timed_out = self._pump_sdk(service, container, exec_id, token, argv, output, deadline)
        output.finish()
        exit_code, ran = (124, True) if timed_out else self.outcome(exec_id, service)
        if not ran and output.empty:
            # Docker sometimes drops its own "unable to find user" message: never leave a bare 126.
            output("stderr", f"runbook: the command could not start in {container.name} (exit {exit_code}); "
                   f"check user {user or '(default)'!r} and workdir {workdir or '(default)'!r}\n".encode())
        return output.result(exit_code, started, timed_out)

    def _pump_sdk(self, service: str, container: Any, exec_id: str, token: str, argv: Sequence[str],
                  emit: Callable[[str, bytes], None], deadline: float | None) -> bool:
        """Start the exec through the SDK's demuxed stream and pass its chunks on; return True on timeout."""
        pump: StreamPump | None = None
        timed_out = False
        try:
            with self.containers.talking(f"starting {shlex.join(argv)[:80]} in {container.name}", service):
                pump = StreamPump(self._api.exec_start(exec_id, stream=True, demux=True))
            timed_out = not pump.drain(emit, deadline)
            if timed_out:
                self.stop(container, token)
                pump.drain(emit, time.monotonic() + DRAIN_AFTER_STOP)
        except BaseException:
            # Ctrl-C, SIGTERM turned into an exception, a lost connection: stop the command, then re-raise.
            with contextlib.suppress(Exception):
                self.stop(container, token)
            raise
        finally:
            if pump is not None:
                pump.close()
        if pump.error is not None and not timed_out:
            raise EnvironmentNotReady(
                f"lost the connection to the Docker daemon at {self.containers.docker_host} while running "
                f"{shlex.join(argv)} in {self.containers.service_name(service)}: {reason(pump.error)}",
                hint="check that Docker is still running",
            ) from pump.error
        return timed_out

    def create(
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
            container = self.containers.container(service)
            try:
                with self.containers.talking(f"creating a command in {container.name}",
                                             passthrough=(docker.errors.APIError,)):
                    created = self._api.exec_create(
                        container.id, list(argv), stdout=True, stderr=True, stdin=stdin, tty=False,
                        environment=dict(environment) if environment else None,
                        workdir=workdir or None, user=user or "",
                    )
                return container, created["Id"]
            except docker.errors.APIError as exc:
                # 404: recreated since we looked; 409: stopped or paused since. Look again once.
                if exc.status_code in (404, 409) and attempt == 1:
                    self.containers.forget(service)
                    continue
                raise EnvironmentNotReady(
                    f"cannot run a command in {container.name}: {reason(exc)}",
                    hint=f"check `docker compose ps {self.containers.service_name(service)}`",
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
        if urlparse(self.containers.docker_host).scheme not in ("unix", "tcp", "http", "https"):
            return False
        tls = str(getattr(self._api, "base_url", "")).startswith("https")
        return not (stdin and tls)

    def _exec_streaming(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None,
                        timeout: float | None, *, source: Any, sink: Any) -> ExecResult:
        """Run argv with source (a file) on stdin and stdout to sink or kept, in constant memory; no TTY."""
        if not argv:
            raise InputError(f"empty command for service {service!r}")
        token = uuid.uuid4().hex
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        output = Output(sink=sink)
        if self.hijack_supported(stdin=source is not None):
            exit_code, timed_out = self._stream_hijacked(service, argv, env, token, deadline, source, output)
        else:
            exit_code, timed_out = self._stream_sdk(service, argv, env, token, deadline, source, output)
        output.finish()
        return output.result(exit_code, started, timed_out)

    def _stream_hijacked(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None, token: str,
                         deadline: float | None, source: Any, output: Output) -> tuple[int, bool]:
        """Stream over the exec's raw socket: one thread, stdin and stdout interleaved."""
        wrapped = ["sh", "-c", WRAPPER, "runbook-exec", f"{MARKER}={token}", *argv]
        container, exec_id = self.create(service, wrapped, {**(env or {}), MARKER: token}, None, None,
                                         stdin=source is not None)
        conn: HijackedExec | None = None
        timed_out = False
        try:
            with self.containers.talking(f"starting {shlex.join(argv)[:80]} in {container.name}", service):
                raw = self._api.exec_start(exec_id, socket=True, tty=False)
            try:
                conn = HijackedExec(raw, source, lambda stream, data: output(
                    "stdout" if stream == STDOUT else "stderr", data))
            except UnsupportedTransport as exc:
                with contextlib.suppress(Exception):
                    raw.close()
                raise EnvironmentNotReady(
                    f"streaming a file through {self.containers.docker_host} is not supported ({exc})",
                    hint=f"set {STREAM_VIA_SDK_ENV}=1 to stream through the Docker SDK instead") from None
            with self.containers.talking(f"streaming {shlex.join(argv)[:80]} in {container.name}", service):
                timed_out = not conn.pump(deadline)
                if timed_out:
                    conn.stop_sending()
                    self.stop(container, token)
                    conn.pump(time.monotonic() + DRAIN_AFTER_STOP)
        except BaseException:
            # Ctrl-C, a full disk, a lost connection: stop the command in the container, then re-raise.
            with contextlib.suppress(Exception):
                self.stop(container, token)
            raise
        finally:
            if conn is not None:
                conn.close()
        if conn.mid_frame and not timed_out:
            raise EnvironmentNotReady(
                f"the output of {shlex.join(argv)} in {service} stopped in the middle of a frame",
                hint="check that Docker is still running")
        return (124 if timed_out else self.outcome(exec_id, service)[0]), timed_out

    def _stream_sdk(self, service: str, argv: Sequence[str], env: Mapping[str, str] | None, token: str,
                    deadline: float | None, source: Any, output: Output) -> tuple[int, bool]:
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
            container, exec_id = self.create(service, wrapped, environment, None, None)
            timed_out = self._pump_sdk(service, container, exec_id, token, argv, output, deadline)
            return (124 if timed_out else self.outcome(exec_id, service)[0]), timed_out
        finally:
            if upload is not None:
                with contextlib.suppress(RunbookError):
                    self.run_helper(service, ["rm", "-rf", "--", upload])

    def _upload(self, service: str, source: Any, token: str) -> str:
        """Copy an open file into a new private directory in the service; return the directory."""
        directory = f"/tmp/.runbook-{token}"
        # Made by the exec's default user, who must be able to read the file: its owner is that user too.
        code, out, err = self.run_helper(service, ["sh", "-c", 'mkdir -m 700 -- "$1" && id -u && id -g',
                                                   "runbook-upload", directory])
        fields = out.split()
        if code != 0 or len(fields) != 2:
            raise StepFailed(f"cannot make {directory} in {service}: {first_line(err) or f'exit {code}'}")
        size = os.fstat(source.fileno()).st_size
        self.containers.put_archive(service, directory,
                                    tar_stream(source, "stdin", size, int(fields[0]), int(fields[1])))
        return directory

    def outcome(self, exec_id: str, service: str | None = None) -> tuple[int, bool]:
        """Return the exit code and whether a process ever started (a bad user or workdir stops it)."""
        # The stream can end a moment before the daemon records the exit.
        for _ in range(250):
            with self.containers.talking("reading the exit code of a command", service):
                info = self._api.exec_inspect(exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return (-1 if code is None else int(code)), bool(info.get("Pid"))
            time.sleep(0.02)
        return -1, True

    def run_helper(self, service: str, argv: Sequence[str],
                   timeout: float = HELPER_TIMEOUT) -> tuple[int, bytes, bytes]:
        """Run a short helper command to completion; return exit code, stdout and stderr bytes."""
        container, exec_id = self.create(service, argv, None, None, None)
        out, err = self.collect(exec_id, f"{argv[0]} in {container.name}", service, timeout)
        return self.outcome(exec_id, service)[0], out, err

    def collect(self, exec_id: str, what: str, service: str | None, timeout: float,
                passthrough: tuple[type[BaseException], ...] = ()) -> tuple[bytes, bytes]:
        """Start an exec and gather its output; a helper that hangs is an error, not a hung run."""
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        with self.containers.talking(f"running {what}", service, passthrough):
            pump = StreamPump(self._api.exec_start(exec_id, stream=True, demux=True))
        try:
            finished = pump.drain(lambda stream, chunk: chunks[stream].append(chunk), time.monotonic() + timeout)
        finally:
            pump.close()
        if not finished:
            raise EnvironmentNotReady(f"{what} did not finish within {timeout:.0f} s",
                                      hint="check the container with `docker compose top`")
        if pump.error is not None:
            raise EnvironmentNotReady(f"lost the connection to the Docker daemon at {self.containers.docker_host} "
                                      f"while running {what}: {reason(pump.error)}",
                                      hint="check that Docker is still running") from pump.error
        return b"".join(chunks["stdout"]), b"".join(chunks["stderr"])

    def stop(self, container: Any, token: str) -> None:
        """Stop one exec's processes inside the container: TERM, then KILL after a grace period."""
        script = STOPPER.format(token=token, marker=MARKER, rounds=int(TERM_GRACE * 10))
        try:
            with self.containers.talking(f"stopping a command in {container.name}",
                                         passthrough=(docker.errors.APIError,)):
                exec_id = self._api.exec_create(container.id, ["sh", "-c", script], user="0")["Id"]
                self.collect(exec_id, f"the stopper in {container.name}", None, TERM_GRACE + HELPER_TIMEOUT,
                             passthrough=(docker.errors.APIError,))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: the container stopped, and the command with it
                self.containers.warnings.add(f"could not stop a command in {container.name}: {reason(exc)}; "
                                             "check `ps` in the container")
        except EnvironmentNotReady as exc:
            self.containers.warnings.add(f"could not stop a command in {container.name}: {exc.message}; "
                                         "check `ps` in the container")
