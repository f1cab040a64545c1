"""`runbook run --rehearse`: the whole playbook against a throwaway copy of the database and of the files.

The real database is only read: the snapshot stage dumps it as in a real run, and the copy is restored
from that very dump (so a rehearsal also proves the snapshot restores). The backend's project directory
is copied with `cp -a` to a temporary directory; every backend command runs there with the environment
variables that name the database pointed at the copy. Whatever happens, the copy is dropped and the
temporary directory deleted, and the real history rows and migration files are checked unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from runbook.config import Config
from runbook.errors import EnvironmentNotReady, InputError, RunbookError

if TYPE_CHECKING:
    from runbook.database.postgres import Database
    from runbook.frameworks.context import RunContext
    from runbook.results import RunResult
    from runbook.targets.base import Target

# Names that hold a database name are about the database; a user or host that happens to share the
# database's name ("shop" as both) must keep its value.
_DATABASE_WORDS = ("DB", "DATABASE")
_NOT_A_NAME = ("USER", "PASS", "HOST", "PORT", "ROLE", "SCHEMA")
_URL_SCHEMES = ("postgres", "postgresql")
_MAX_IDENTIFIER = 63
_DROP_ATTEMPTS = 5
_DROP_PAUSE = 2.0  # seconds between tries of DROP DATABASE
# Options of `runbook` and `runbook run` that take a value: a value equal to "--rehearse" is not the flag.
_VALUE_OPTIONS = {"--var", "--report", "--project-dir", "--target", "--compose-file", "--project-name"}

Note = Callable[[str], None]


class RealChanged(RunbookError):
    """The real history rows or migration files changed during a rehearsal."""


def copy_name(dbname: str, short_id: str) -> str:
    """Return the name of the copy: `<db>_rehearsal_<id>`, cut to PostgreSQL's 63 bytes."""
    suffix = f"_rehearsal_{short_id}"
    head = dbname.encode()[: _MAX_IDENTIFIER - len(suffix.encode())].decode(errors="ignore")
    return head + suffix


def _is_postgres_url(value: str) -> bool:
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    # SQLAlchemy spells the driver after a plus: postgresql+psycopg://
    return scheme.split("+", 1)[0] in _URL_SCHEMES


def _repoint_url(value: str, dbname: str, copy: str) -> str | None:
    """Return the URL with its database replaced by copy, or None when it names another database."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.path.lstrip("/") != dbname:
        return None
    return urlunsplit(parts._replace(path="/" + copy))


def _names_a_database(name: str) -> bool:
    upper = name.upper()
    return any(w in upper for w in _DATABASE_WORDS) and not any(w in upper for w in _NOT_A_NAME)


def database_overrides(env: Mapping[str, str], dbname: str, copy: str,
                       configured: Sequence[str] | None = None) -> dict[str, str]:
    """Return the variables to set so the backend uses copy instead of dbname.

    With `configured` names (backend.database_env) exactly those change: a postgres URL gets the copy as its
    path, anything else becomes the copy's name. Without, every database-named variable whose value is
    dbname and every postgres URL whose path is dbname changes.
    """
    overrides: dict[str, str] = {}
    if configured:
        for name in configured:
            value = env.get(name, "")
            repointed = _repoint_url(value, dbname, copy) if _is_postgres_url(value) else None
            overrides[name] = repointed if repointed is not None else copy
        return overrides
    for name, value in sorted(env.items()):
        if _is_postgres_url(value):
            repointed = _repoint_url(value, dbname, copy)
            if repointed is not None:
                overrides[name] = repointed
        elif value == dbname and _names_a_database(name):
            overrides[name] = copy
    return overrides


def real_run_command(argv: Sequence[str], destructive: bool) -> str:
    """Return the command line of the real run: this one without --rehearse, with --yes when needed."""
    kept: list[str] = []
    previous = ""
    for arg in argv:
        if arg == "--rehearse" and previous not in _VALUE_OPTIONS:
            previous = arg
            continue
        kept.append(arg)
        previous = arg
    if destructive and not any(a in ("--yes", "-y") for a in kept):
        kept.append("--yes")
    return shlex.join(["runbook", *kept])


def backend_environment(target: Target, config: Config) -> dict[str, str]:
    """Return the environment backend commands see: the container's (or this host's) plus runbook.yml's."""
    return {**target.environment("backend"), **config.backend.env}


class Rehearsal:
    """The copy a rehearsal runs on: made after the snapshot, torn down in the executor's `finally`."""

    def __init__(self, config: Config, target: Target, note: Note, real_command: str = ""):
        self.config = config
        self.target = target
        self.note = note
        self.short_id = uuid.uuid4().hex[:8]
        self.facts: dict[str, Any] = {"real_command": real_command}
        self.real: Database | None = None
        self.copy_db: Database | None = None
        self.copy: str = ""
        self.created = False
        self.overrides: dict[str, str] = {}
        self.files_root = ""  # the real project directory in the backend
        self.files_copy = ""  # its copy
        self._local_tmp: Path | None = None
        # The real history or files changed: the rehearsal did not stay on its copy.
        self.alarms: list[str] = []

    @property
    def made_copies(self) -> bool:
        return self.created or bool(self.files_copy)

    # --- before the snapshot: refuse early, before minutes of pg_dump -----------------------------------

    def check(self, ctx: RunContext) -> None:
        """Refuse (exit 2) when the backend cannot be pointed at a copy; exit 4 when no copy can be made."""
        self.real = ctx.database
        dbname = ctx.database.settings.dbname
        self.copy = copy_name(dbname, self.short_id)
        env = backend_environment(self.target, self.config)
        self.overrides = database_overrides(env, dbname, self.copy, self.config.backend.database_env)
        if not self.overrides:
            raise InputError(f"cannot point the backend at a copy: no variable of its environment names "
                             f"database {dbname!r}", hint="set backend.database_env in runbook.yml")
        user = ctx.database.settings.user
        rows = ctx.database.query("SELECT CASE WHEN rolcreatedb OR rolsuper THEN 1 ELSE 0 END"
                                  " FROM pg_roles WHERE rolname = current_user")[1]
        if not rows or int(rows[0][0]) != 1:
            raise EnvironmentNotReady(
                f"role {user!r} may not create databases, so a rehearsal cannot make its copy of {dbname!r}",
                hint=f"grant it: ALTER ROLE {user} CREATEDB, or run without --rehearse")

    # --- after the snapshot: make the copies --------------------------------------------------------------

    def enter(self, ctx: RunContext, manifest: dict[str, Any]) -> RunContext:
        """Make the database and file copies from the snapshot; return the context the steps run in."""
        from runbook.artifacts.restore_dump import checked_while_read, load_dump
        from runbook.artifacts.snapshot import DUMP
        from runbook.database.connection import open_database
        from runbook.frameworks.context import RunContext

        assert self.real is not None
        dump = Path(manifest["path"]) / DUMP
        self.created = True  # before CREATE: a Ctrl-C as it returns must still drop it (DROP ... IF EXISTS)
        try:
            self.real.query("CREATE DATABASE {copy}", identifiers={"copy": self.copy})
        except RunbookError as exc:
            raise EnvironmentNotReady(f"cannot create the rehearsal database {self.copy}: {exc.message}",
                                      hint="the role needs CREATEDB") from exc
        self.facts["database"] = f"{self.copy} (a copy of {self.real.settings.dbname}, from snapshot "\
                                 f"{manifest['id']})"
        settings = dataclasses.replace(self.real.settings, dbname=self.copy)
        self.copy_db = open_database(self.target, settings, f"runbook rehearsal {self.short_id}")
        self.note(f"restoring snapshot {manifest['id']} into {self.copy}")
        # The copy also proves the snapshot: its dump is checked against the manifest's sha256 as it is read.
        sha256 = next((p["sha256"] for p in manifest.get("parts") or [] if p["file"] == DUMP), None) \
            if checked_while_read(manifest.get("database")) else None
        load_dump(self.target, self.copy_db, dump, sha256=sha256, progress=self.note)
        config, target = self._copy_files()
        self.facts["backend_env"] = ", ".join(f"{k}" for k in sorted(self.overrides))
        self.note(f"the backend runs in {self.files_copy} with {self.facts['backend_env']} pointed at "
                  f"{self.copy}")
        return RunContext(config, target, self.copy_db, dict(ctx.variables), dict(ctx.kept))

    def _copy_files(self) -> tuple[Config, Target]:
        backend = self.config.backend.model_copy(deep=True)
        backend.env = {**backend.env, **self.overrides}
        root = self.target.workdir
        if root is not None:  # the backend's files are on this host: copy them here
            from runbook.targets.local import LocalTarget

            self._local_tmp = Path(tempfile.mkdtemp(prefix=f"runbook-rehearsal-{self.short_id}-"))
            copy = self._local_tmp / Path(root).name
            self.files_root, self.files_copy = str(root), str(copy)  # set first: a Ctrl-C mid-copy deletes it
            artifacts = self.config.artifacts_dir()

            def skip_artifacts(directory: str, names: list[str]) -> set[str]:
                # The snapshot just taken may sit under the workdir: a copy of it helps nobody.
                return {n for n in names if Path(directory, n).resolve() == artifacts}

            try:
                shutil.copytree(root, copy, symlinks=True, ignore=skip_artifacts)
            except OSError as exc:
                raise EnvironmentNotReady(f"cannot copy {root} to {copy} for the rehearsal: {exc}",
                                          hint="free some space in the temporary directory") from exc
            backend.workdir = self.files_copy
            config = self.config.model_copy(update={"backend": backend})
            target: Target = LocalTarget(config)
        else:
            from runbook.artifacts.snapshot import backend_root, first_error
            from runbook.frameworks.backend import exec_options

            self.files_root = backend_root(self.target, self.config)
            base = f"/tmp/runbook-rehearsal-{self.short_id}"
            self.files_copy = f"{base}/{self.files_root.rstrip('/').rsplit('/', 1)[-1] or 'app'}"
            options = exec_options(self.config, "backend")
            result = self.target.exec("backend", ["sh", "-c", 'mkdir -m 700 -p -- "$1" && cp -a -- "$2" "$3"',
                                                  "runbook-copy", base, self.files_root, self.files_copy],
                                      user=options.user, timeout=self.config.step_timeout)
            if result.exit_code != 0:
                raise EnvironmentNotReady(first_error(result, f"copying {self.files_root} to {self.files_copy} "
                                                              "in the backend"),
                                          hint="the backend needs sh, cp -a and a writable /tmp")
            backend.workdir = self.files_copy
            config = self.config.model_copy(update={"backend": backend})
            target = self.target
        self.facts["files"] = f"{self.files_copy} (a copy of {self.files_root})"
        return config, target

    def prove(self, ctx: RunContext, framework: str) -> None:
        """Ask the backend, under the rehearsal's environment, which database it uses; refuse unless the copy."""
        from runbook.errors import Refused
        from runbook.frameworks.backend import run_script, split_manage

        if framework not in ("django", "alembic"):
            return
        interpreter, manage = split_manage(list(ctx.config.backend.manage))
        if framework == "django":
            args = ["django", manage]
        else:
            from runbook.frameworks.alembic.inspection import config_file

            args = ["alembic", config_file(list(ctx.config.backend.alembic))]
        found = run_script(ctx, "which_database.py", args, interpreter=interpreter,
                           what="asking the backend which database it uses")
        where = f"{found.get('host') or 'localhost'}:{found.get('port') or 'default port'}"
        if found.get("name") == self.copy:
            self.facts["isolation"] = f"the backend connects to {self.copy} at {where} ({found.get('where')})"
            self.note(f"proven: {self.facts['isolation']}")
            return
        if framework == "django":
            fix = ("make DATABASES['default']['NAME'] come from an environment variable and name it in "
                   "backend.database_env in runbook.yml, or give a settings module that does in backend.env "
                   "(DJANGO_SETTINGS_MODULE)")
        else:
            fix = ("make env.py build its URL from an environment variable (or sqlalchemy.url from one) and name "
                   "it in backend.database_env in runbook.yml")
        raise Refused(f"the rehearsal would not stay on its copy: under the rehearsal's environment the backend "
                      f"connects to database {found.get('name') or '(none)'!r} at {where} "
                      f"({found.get('where') or framework}), not to the copy {self.copy!r}", hint=fix)

    def pin_env(self, service: str, env: dict[str, str]) -> dict[str, str]:
        """Point a step's command at the copy, even when the step sets the same variables itself."""
        if not self.created:
            return env
        if service == "db":
            return {**env, "PGDATABASE": self.copy}  # psql and friends in the db service, unless given -d
        if service == "backend":
            return {**env, **self.overrides}
        return env

    # --- always: tear down and prove the real things were left alone ----------------------------------------

    def leave(self, result: RunResult, manifest: dict[str, Any] | None) -> None:
        """Capture the copy's history, drop it, delete the files' copy, and check the real history and files."""
        if self.copy_db is not None:
            with contextlib.suppress(RunbookError, KeyboardInterrupt):
                result.history_after = self.copy_db.history()
            with contextlib.suppress(Exception):
                self.copy_db.close()
        if self.created:
            self._attempt(f"drop the rehearsal database {self.copy}", self._drop,
                          f"DROP DATABASE {self.copy} WITH (FORCE)")
        if self.files_copy:
            self._attempt(f"delete {self.files_copy}", self._delete_files, f"rm -rf {self.files_copy}")
        if self.real is not None and result.history_before:
            self._attempt("check the real history rows", lambda: self._check_history(result), "")
        if manifest is not None and manifest.get("files"):
            self._attempt("check the real migration files", lambda: self._check_files(manifest["files"]), "")
        result.rehearsed_on = dict(self.facts)

    def _attempt(self, what: str, action: Callable[[], None], by_hand: str) -> None:
        # A second Ctrl-C must not leave a copy behind silently: every part is tried and reported.
        try:
            action()
        except RealChanged as exc:
            self.alarms.append(str(exc))
            self.facts.setdefault("real_changed", []).append(str(exc))
            self.note(str(exc))
        except (Exception, KeyboardInterrupt) as exc:
            reason = exc.message if isinstance(exc, RunbookError) else (str(exc) or type(exc).__name__)
            problem = f"could not {what}: {reason}" + (f"; do it by hand: {by_hand}" if by_hand else "")
            self.facts.setdefault("problems", []).append(problem)
            self.note(problem)

    def _drop(self) -> None:
        assert self.real is not None
        # WITH (FORCE) waits only 5 s for the sessions it terminates to exit; on a loaded server a backend
        # (an autovacuum worker on the fresh copy, a Django process still closing) can take longer, and
        # PostgreSQL then says the database "is being accessed by other users". A few more tries cost seconds.
        for attempt in range(_DROP_ATTEMPTS):
            try:
                self.real.query("DROP DATABASE IF EXISTS {copy} WITH (FORCE)", identifiers={"copy": self.copy})
            except RunbookError:
                if attempt + 1 == _DROP_ATTEMPTS:
                    raise
                time.sleep(_DROP_PAUSE)
                continue
            left = self.real.query("SELECT count(*) FROM pg_database WHERE datname = %(name)s",
                                   {"name": self.copy})[1]
            if not int(left[0][0]):
                self.facts["database"] = f"{self.facts.get('database', self.copy)}, dropped"
                return
            time.sleep(_DROP_PAUSE)
        raise RuntimeError("it is still there")

    def _delete_files(self) -> None:
        if self._local_tmp is not None:
            shutil.rmtree(self._local_tmp)
        else:
            from runbook.frameworks.backend import exec_options

            base = self.files_copy.rsplit("/", 1)[0]
            result = self.target.exec("backend", ["rm", "-rf", "--", base],
                                      user=exec_options(self.config, "backend").user, timeout=600)
            if result.exit_code != 0:
                raise RuntimeError(result.stderr.strip() or f"exit {result.exit_code}")
        self.facts["files"] = f"{self.facts.get('files', self.files_copy)}, deleted"

    def _check_history(self, result: RunResult) -> None:
        assert self.real is not None
        if self.real.history() != result.history_before:
            raise RealChanged("the REAL migration history changed during the rehearsal: something outside "
                               "the copy wrote to it", hint="set backend.database_env in runbook.yml")
        self.facts.setdefault("real_checked", []).append(
            "history rows unchanged (" + ", ".join(f"{t} {len(r)}" for t, r in result.history_before.items()) + ")")

    def _check_files(self, files: dict[str, Any]) -> None:
        from runbook.artifacts.restore import file_digests
        from runbook.artifacts.snapshot import find_files

        expected = {f["path"]: f["sha256"] for f in files["list"]}
        digests = file_digests(self.target, files["root"], find_files(self.target, files["root"], files["patterns"]))
        if digests != expected:
            differ = sorted(p for p in set(expected) | set(digests) if expected.get(p) != digests.get(p))
            raise RealChanged(f"the REAL migration files changed during the rehearsal: {', '.join(differ[:5])}")
        self.facts.setdefault("real_checked", []).append(f"{len(expected)} migration files unchanged (sha256)")

