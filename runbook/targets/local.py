"""The local target: commands run on this host through subprocess (a server with a virtualenv, no Docker)."""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from runbook.config import Config
from runbook.errors import ConfigError, EnvironmentNotReady
from runbook.targets.base import (
    DatabaseSettings,
    ExecResult,
    OutputCallback,
    Warnings,
    create_output_file,
    file_error,
    open_source,
)
from runbook.targets.capture import OutputBuffer, exec_result

_URL_SCHEMES = ("postgres", "postgresql")
# What libpq's URL gives that has a field of its own; anything else (sslmode, ...) is passed on as it is.
_OWN_FIELDS = ("host", "port", "user", "password", "dbname")


def _settings_from_url(url: str, settings: DatabaseSettings) -> None:
    """Overlay what a postgresql:// URL says on settings, parsed by libpq's own rules (host=, sslmode, ...)."""
    scheme, _, rest = url.partition("://") if "://" in url else ("", "", url)
    if scheme.lower() not in _URL_SCHEMES:
        raise ConfigError(f"database.url must start with postgresql://, got {scheme}://")
    try:
        # libpq knows the scheme in lower case only.
        params = conninfo_to_dict(f"{scheme.lower()}://{rest}")
    except ProgrammingError as exc:
        # libpq's message may quote the whole URL, password and all: it stays out of the line.
        raise ConfigError("database.url is not a valid PostgreSQL URL",
                          hint="write it as postgresql://user:password@host:port/dbname?sslmode=...") from exc
    port = str(params.get("port") or "")
    if port and not port.isdigit():
        raise ConfigError(f"database.url must name one port, got {port!r}", hint="give one host and one port")
    settings.host = str(params.get("host") or settings.host)
    settings.port = int(port) if port else settings.port
    settings.user = str(params.get("user") or settings.user)
    settings.password = str(params["password"]) if params.get("password") else settings.password
    settings.dbname = str(params.get("dbname") or settings.dbname)
    settings.parameters.update({k: str(v) for k, v in params.items() if k not in _OWN_FIELDS})


def settings_from_config(config: Config, fallback: DatabaseSettings | None = None) -> DatabaseSettings | None:
    """Return database settings given in runbook.yml, or None when it gives none."""
    db = config.database
    if not any((db.url, db.host, db.port, db.user, db.name, db.password, db.password_env)):
        return fallback
    base = fallback or DatabaseSettings()
    settings = DatabaseSettings(host=base.host, port=base.port, user=base.user,
                                password=base.password, dbname=base.dbname, via="tcp (runbook.yml)")
    if db.url:
        _settings_from_url(db.url, settings)
    settings.host = db.host or settings.host
    settings.port = db.port or settings.port
    settings.user = db.user or settings.user
    settings.dbname = db.name or settings.dbname
    if db.password is not None:
        settings.password = db.password
    if db.password_env:
        if db.password_env not in os.environ:
            raise ConfigError(f"database.password_env names {db.password_env}, which is not set",
                              hint=f"export {db.password_env}=... before running")
        settings.password = os.environ[db.password_env]
    return settings


class LocalTarget:
    """Run everything on the host; the service name only labels where a step belongs."""

    name = "local"
    on_this_host = True

    def __init__(self, config: Config):
        self.config = config
        self.warnings = Warnings()
        root = Path(config.backend.workdir or config.project_dir)
        self._root = root if root.is_absolute() else (config.project_dir / root).resolve()

    @property
    def workdir(self) -> str:
        return str(self._root)

    def environment(self, service: str) -> dict[str, str]:
        # Every command starts with this process's environment (see _run).
        return dict(os.environ)

    def streams_stdin(self) -> bool:
        return True  # a pipe

    def check_ready(self, services: Sequence[str]) -> None:
        if not self._root.is_dir():
            raise EnvironmentNotReady(f"backend workdir {self._root} does not exist",
                                      hint="set backend.workdir in runbook.yml")

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
        if user:
            raise ConfigError("the local target cannot switch user; remove `user:` or use the compose target")
        # A relative workdir (backend.workdir, a step's own) is relative to the project dir, as in a container
        # it is relative to the service's working directory; joining it to self.workdir would apply it twice.
        cwd = (self.config.project_dir / workdir).resolve() if workdir else self._root
        return self._run(argv, cwd, env, subprocess.DEVNULL, subprocess.PIPE, timeout, on_output)

    def exec_to_file(
        self,
        service: str,
        argv: Sequence[str],
        dest: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        # The command writes straight into the file: no byte of it passes through this process.
        with create_output_file(dest) as sink:
            result = self._run(argv, self._root, env, subprocess.DEVNULL, sink, timeout, None)
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
            return self._run(argv, self._root, env, source, subprocess.PIPE, timeout, None)

    def _run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None, stdin: Any, stdout: Any,
             timeout: float | None, on_output: OutputCallback | None) -> ExecResult:
        full_env = {**os.environ, **(env or {})}
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=full_env, stdin=stdin,
                stdout=stdout, stderr=subprocess.PIPE, start_new_session=True,
            )
        except FileNotFoundError:
            if not cwd.is_dir():
                return ExecResult(126, "", f"working directory {cwd} does not exist\n",
                                  time.monotonic() - started)
            return ExecResult(127, "", f"{argv[0]}: command not found in {cwd}\n", time.monotonic() - started)
        except OSError as exc:
            return ExecResult(126, "", f"{argv[0]}: {exc.strerror}\n", time.monotonic() - started)
        buffers = {"stdout": OutputBuffer(), "stderr": OutputBuffer()}
        try:
            timed_out = self._pump(proc, buffers, on_output, started, timeout)
        except BaseException:
            # Ctrl-C or SIGTERM: the command's whole process group goes too, then the caller decides.
            self._stop(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            proc.stderr.close()
        code = proc.wait()
        return exec_result(124 if timed_out else code, buffers, started, timed_out)

    def _pump(self, proc, buffers, on_output, started: float, timeout: float | None) -> bool:
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in buffers}
        selector = selectors.DefaultSelector()
        open_streams = 0
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if pipe is not None:  # stdout is None when it goes straight into a file
                selector.register(pipe, selectors.EVENT_READ, name)
                open_streams += 1
        with selector:
            while open_streams:
                remaining = None if timeout is None else timeout - (time.monotonic() - started)
                if remaining is not None and remaining <= 0:
                    self._stop(proc)
                    return True
                wait = remaining if remaining is None else min(remaining, 1.0)
                for key, _ in selector.select(timeout=wait):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    stream = key.data
                    if not chunk:
                        selector.unregister(key.fileobj)
                        open_streams -= 1
                        chunk_text = decoders[stream].decode(b"", final=True)
                    else:
                        chunk_text = decoders[stream].decode(chunk)
                    if chunk_text:
                        buffers[stream].add(chunk_text)
                        if on_output:
                            on_output(stream, chunk_text)
        return False

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self._root / p

    def read_file(self, service: str, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except OSError as exc:
            raise file_error("read", service, str(self._path(path)), exc) from exc

    def write_file(self, service: str, path: str, data: bytes) -> None:
        target = self._path(path)
        tmp = target.with_name(f".{target.name}.runbook-tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the same fault may stop the clean-up too
                tmp.unlink(missing_ok=True)
            raise file_error("write", service, str(self._path(path)), exc) from exc

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        base = self._path(directory)
        try:
            if not base.is_dir():
                return []
            return sorted(str(p) for p in base.glob(pattern) if p.is_file())
        except OSError as exc:
            raise file_error("list", service, str(self._path(directory)), exc) from exc

    def delete_file(self, service: str, path: str) -> None:
        try:
            self._path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise file_error("delete", service, str(self._path(path)), exc) from exc

    def database_settings(self) -> DatabaseSettings:
        settings = settings_from_config(self.config)
        if settings is None:
            env = os.environ
            port = env.get("PGPORT", "5432")
            if not port.isdigit():
                raise ConfigError(f"PGPORT must be a port number, got {port!r}", hint="fix or unset PGPORT")
            settings = DatabaseSettings(
                host=env.get("PGHOST", "127.0.0.1"), port=int(port),
                user=env.get("PGUSER", "postgres"), password=env.get("PGPASSWORD"),
                dbname=env.get("PGDATABASE", env.get("PGUSER", "postgres")), via="tcp (PG* environment)",
            )
        return settings

    def describe(self) -> dict[str, str]:
        return {"target": "local", "workdir": self.workdir}
