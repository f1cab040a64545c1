"""The pure parts of --rehearse: which variables point the backend at the copy, and the real-run command."""

from __future__ import annotations

from runbook.artifacts.report import rehearsal_lines
from runbook.engine.rehearsal import backend_environment, copy_name, database_overrides, real_run_command


def test_the_backend_environment_is_the_targets_with_runbook_yml_on_top() -> None:
    from types import SimpleNamespace

    from runbook.config import Config

    asked: list[str] = []

    def environment(service: str) -> dict[str, str]:
        asked.append(service)
        return {"DB_NAME": "shop", "PATH": "/usr/bin"}

    config = Config()
    config.backend.env = {"DB_NAME": "pinned"}
    target = SimpleNamespace(environment=environment)
    assert backend_environment(target, config) == {"DB_NAME": "pinned", "PATH": "/usr/bin"}  # type: ignore[arg-type]
    assert asked == ["backend"]


def test_a_database_named_variable_with_the_name_is_pointed_at_the_copy() -> None:
    env = {"DB_NAME": "shop", "DB_USER": "runbook", "DB_HOST": "127.0.0.1", "PATH": "/usr/bin"}
    assert database_overrides(env, "shop", "shop_rehearsal_1") == {"DB_NAME": "shop_rehearsal_1"}


def test_a_user_or_password_equal_to_the_database_name_keeps_its_value() -> None:
    env = {"POSTGRES_DB": "shop", "POSTGRES_USER": "shop", "DB_PASSWORD": "shop", "PGHOST": "shop",
           "DB_PORT": "shop", "APP_NAME": "shop"}
    assert database_overrides(env, "shop", "c") == {"POSTGRES_DB": "c"}


def test_pgdatabase_and_database_named_variables_are_found() -> None:
    env = {"PGDATABASE": "shop", "DATABASE_NAME": "shop", "MYAPP_DB": "shop", "OTHER_DB": "shopping"}
    assert database_overrides(env, "shop", "c") == {"PGDATABASE": "c", "DATABASE_NAME": "c", "MYAPP_DB": "c"}


def test_a_postgres_url_gets_the_copy_as_its_path_and_keeps_the_rest() -> None:
    env = {
        "DATABASE_URL": "postgres://runbook:s3cret@db:5432/shop?sslmode=disable",
        "SQLALCHEMY_URL": "postgresql+psycopg://u@h/shop",
        "ANALYTICS_URL": "postgresql://u@h/analytics",  # another database: left alone
        "REDIS_URL": "redis://h/shop",  # not PostgreSQL
    }
    assert database_overrides(env, "shop", "shop_rehearsal_ab") == {
        "DATABASE_URL": "postgres://runbook:s3cret@db:5432/shop_rehearsal_ab?sslmode=disable",
        "SQLALCHEMY_URL": "postgresql+psycopg://u@h/shop_rehearsal_ab",
    }


def test_nothing_found_is_an_empty_answer() -> None:
    assert database_overrides({"APP_NAME": "shop", "PATH": "/bin"}, "shop", "c") == {}


def test_configured_names_change_exactly_those() -> None:
    env = {"NAME_OF_DB": "shop", "DB_NAME": "shop", "URL": "postgresql://u@h/shop"}
    assert database_overrides(env, "shop", "c", ["NAME_OF_DB", "URL", "MISSING"]) == {
        "NAME_OF_DB": "c", "URL": "postgresql://u@h/c", "MISSING": "c"}


def test_the_copy_name_fits_postgres_identifiers() -> None:
    assert copy_name("shop", "1a2b3c4d") == "shop_rehearsal_1a2b3c4d"
    long = copy_name("x" * 70, "1a2b3c4d")
    assert len(long.encode()) == 63 and long.endswith("_rehearsal_1a2b3c4d")
    assert len(copy_name("é" * 40, "1a2b3c4d").encode()) <= 63


def test_the_real_command_drops_rehearse_and_adds_yes_for_a_destructive_playbook() -> None:
    argv = ["--project-dir", "/srv", "run", "fix-history", "--rehearse", "--var", "app=a b"]
    assert real_run_command(argv, destructive=True) == \
        "runbook --project-dir /srv run fix-history --var 'app=a b' --yes"
    assert real_run_command(["run", "x", "--rehearse", "-y"], destructive=True) == "runbook run x -y"
    assert real_run_command(["run", "x", "--rehearse"], destructive=False) == "runbook run x"


def test_a_value_that_reads_like_the_flag_stays() -> None:
    assert real_run_command(["run", "x", "--var", "--rehearse", "--rehearse"], destructive=False) == \
        "runbook run x --var --rehearse"


def test_the_report_lines_say_what_was_rehearsed_and_what_was_checked() -> None:
    lines = rehearsal_lines({"database": "shop_rehearsal_1 (a copy of shop), dropped",
                             "files": "/tmp/r/app (a copy of /srv/app), deleted",
                             "real_checked": ["history rows unchanged (django_migrations 20)"]})
    assert lines == ["rehearsed on database shop_rehearsal_1 (a copy of shop), dropped",
                     "rehearsed on files /tmp/r/app (a copy of /srv/app), deleted",
                     "the real database and migration files were not touched "
                     "(checked: history rows unchanged (django_migrations 20))"]
    alarm = rehearsal_lines({"real_changed": ["the REAL migration history changed"]})
    assert alarm == ["the REAL migration history changed"]


def test_pinned_env_wins_over_a_step_and_reaches_the_db_service() -> None:
    from runbook.config import Config
    from runbook.engine.rehearsal import Rehearsal

    rehearsal = Rehearsal(Config(), target=None, note=lambda text: None)  # type: ignore[arg-type]
    assert rehearsal.pin_env("backend", {"DB_NAME": "shop"}) == {"DB_NAME": "shop"}  # no copy yet
    rehearsal.created, rehearsal.copy, rehearsal.overrides = True, "shop_rehearsal_1", {"DB_NAME": "shop_rehearsal_1"}
    assert rehearsal.pin_env("backend", {"DB_NAME": "shop", "X": "1"}) == {"DB_NAME": "shop_rehearsal_1", "X": "1"}
    assert rehearsal.pin_env("db", {}) == {"PGDATABASE": "shop_rehearsal_1"}


class _BusyServer:
    """A server whose DROP DATABASE fails `busy` times, as when a terminated session outlives FORCE's 5 s."""

    def __init__(self, busy: int) -> None:
        self.busy, self.exists, self.drops = busy, True, 0

    def query(self, text: str, params: object = None, identifiers: object = None) -> tuple:
        from runbook.errors import StepFailed

        if text.startswith("DROP DATABASE"):
            self.drops += 1
            if self.drops <= self.busy:
                raise StepFailed('SQL failed: database "shop_rehearsal_1" is being accessed by other users')
            self.exists = False
            return [], [], "DROP DATABASE"
        return ["count"], [[1 if self.exists else 0]], "SELECT 1"


def _leaving(server: _BusyServer, monkeypatch) -> tuple:
    from runbook.config import Config
    from runbook.engine import rehearsal as module
    from runbook.results import RunResult

    monkeypatch.setattr(module, "_DROP_PAUSE", 0)
    notes: list[str] = []
    rehearsal = module.Rehearsal(Config(), target=None, note=notes.append)  # type: ignore[arg-type]
    rehearsal.real, rehearsal.created, rehearsal.copy = server, True, "shop_rehearsal_1"  # type: ignore[assignment]
    result = RunResult(playbook="fix-history", description="d", project="p", target={}, user="u", host="h",
                       started="2026-12-03T00:00:00Z")
    rehearsal.leave(result, None)
    return result, notes


def test_a_copy_still_busy_after_force_is_dropped_on_a_later_try(monkeypatch) -> None:
    server = _BusyServer(busy=2)
    result, notes = _leaving(server, monkeypatch)
    assert server.drops == 3 and not server.exists and notes == []
    assert result.rehearsed_on["database"].endswith(", dropped")


def test_a_copy_that_cannot_be_dropped_is_reported_with_the_command_to_type(monkeypatch) -> None:
    server = _BusyServer(busy=99)
    result, notes = _leaving(server, monkeypatch)
    assert server.exists and server.drops == 5
    assert notes == ['could not drop the rehearsal database shop_rehearsal_1: SQL failed: database '
                     '"shop_rehearsal_1" is being accessed by other users; do it by hand: DROP DATABASE '
                     'shop_rehearsal_1 WITH (FORCE)']
    assert result.rehearsed_on["problems"] == notes
