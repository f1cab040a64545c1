"""Atomic runs without a database: the put-back SQL, what the console says, and the edges around them
(flock errors, the artifacts directory, half-written snapshots, `restore --only`)."""

from __future__ import annotations

import errno
import fcntl
from pathlib import Path

import pytest

from runbook.artifacts.lock import RunLock
from runbook.artifacts.putback import HistoryTable, history_script
from runbook.artifacts.report import putback_lines, summary_lines
from runbook.artifacts.restore import PARTS, parse_only
from runbook.config import Config
from runbook.errors import ConfigError, EnvironmentNotReady, InputError
from runbook.playbook.model import Snapshot
from runbook.redact import MASK, Redactor
from runbook.results import RunResult


def test_history_script_writes_every_column_back_quoted_and_drops_tables_made_since():
    saved = {"django_migrations": HistoryTable(["id", "app", "name", "applied"],
                                               [["1", "shop", "0001_it's", "2026-01-01 00:00:00+00"],
                                                ["2", "shop", "0002", None]])}
    script = history_script(saved, ["alembic_version"])
    assert script.startswith('DROP TABLE public."alembic_version";\nDELETE FROM public."django_migrations";')
    assert ('INSERT INTO public."django_migrations" ("id", "app", "name", "applied") OVERRIDING SYSTEM VALUE VALUES'
            in script)
    assert "('1', 'shop', '0001_it''s', '2026-01-01 00:00:00+00')" in script and "('2', 'shop', '0002', NULL)" in script
    # One query string: one implicit transaction on psycopg and on psql, no BEGIN that could stay open.
    assert "BEGIN" not in script and "COMMIT" not in script


def test_history_table_digest_changes_with_any_value():
    a = HistoryTable(["app", "name"], [["shop", "0001"]])
    assert a.sha256() == HistoryTable(["app", "name"], [["shop", "0001"]]).sha256()
    assert a.sha256() != HistoryTable(["app", "name"], [["shop", "0002"]]).sha256()


def _result(**extra) -> RunResult:
    return RunResult(playbook="p", description="", project="/p", target={}, user="u", host="h",
                     started="2026-01-01T00:00:00Z", status="interrupted", exit_code=130, **extra)


def test_console_says_what_was_put_back_what_was_left_and_that_data_stays():
    putback = {"status": "put back", "snapshot": "S1", "restored": ["history rows (django_migrations)"],
               "checked": ["history rows by sha256 (django_migrations 3 rows)", "9 migration files by sha256"],
               "left": ["table customer_customer, created by a step: ..."], "problems": []}
    lines = summary_lines(_result(putback=putback))
    assert ("put back as before the run: history rows (django_migrations) (checked: history rows by sha256 "
            "(django_migrations 3 rows); 9 migration files by sha256)") in lines
    assert "left: table customer_customer, created by a step: ..." in lines
    assert any("only --rollback-on-failure restores the data" in line for line in lines)
    failed = putback_lines({"status": "failed", "restored": [], "problems": ["could not put the history rows back"]})
    assert failed[0] == "put-back FAILED: could not put the history rows back"


def test_summary_lines_are_masked_by_the_runs_redactor():
    result = _result(notes=["the password hunter2-secret-x leaked"])
    assert all("hunter2-secret-x" not in line for line in summary_lines(result, Redactor(["hunter2-secret-x"])))
    assert any(MASK in line for line in summary_lines(result, Redactor(["hunter2-secret-x"])))


def test_a_flock_error_other_than_would_block_is_one_line_exit_4(tmp_path, monkeypatch):
    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(EnvironmentNotReady) as info:
        RunLock(tmp_path / ".runbook", "p").acquire()
    assert info.value.exit_code == 4 and "No locks available" in str(info.value)


@pytest.mark.parametrize("artifacts", [".", "..", "./"])
def test_artifacts_may_not_be_the_project_directory_or_above(tmp_path, artifacts):
    config = Config(project_dir=tmp_path / "project", artifacts=artifacts)
    with pytest.raises(ConfigError) as info:
        config.artifacts_dir()
    assert info.value.exit_code == 2 and "artifacts" in str(info.value)
    assert Config(project_dir=tmp_path, artifacts="backups/runbook").artifacts_dir() == tmp_path / "backups/runbook"


def test_a_snapshot_stopped_by_any_exception_leaves_no_partial_directory(tmp_path, monkeypatch):
    from runbook.artifacts import snapshot

    def boom(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(snapshot, "backend_root", boom)
    config = Config(project_dir=tmp_path)
    with pytest.raises(ValueError):
        target = type("Target", (), {"name": "local"})()
        snapshot.take_snapshot(target, None, config, "p", Snapshot(database=False, history=False))  # type: ignore[arg-type]
    assert [p.name for p in Path(tmp_path / ".runbook" / "snapshots").iterdir()] == []


def test_restore_only_parses_its_parts():
    assert parse_only(None) == frozenset(PARTS)
    assert parse_only("history, files") == {"history", "files"}
    for bad in ("", "data", "history,tables"):
        with pytest.raises(InputError):
            parse_only(bad)
