"""Fault tests on a real Compose stack (the shop project): a destructive built-in playbook stopped by SIGINT
or SIGTERM at every step boundary, or in the middle of a step that deletes files, exits 130 with a report,
and leaves the history rows and migration files identical to before (sha256) and the data rows unchanged.
The db container killed during a step: exit 1 or 4, one line, a report, and the files put back.

The run is stopped at a known moment by the test-only hook of runbook/engine/faults.py: with
RUNBOOK_TEST_PAUSE_AT=<event> it writes a marker file there and waits for the signal.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from diagnosis import table_rows
from stack import (
    db_settings,
    manage,
    pause_env,
    playbook_steps,
    recreate_database,
    report_of,
    reset_app,
    run_cli,
    running_stack,
    service_container,
    start_cli,
    step_boundaries,
    wait_for_pause,
    wait_for_stack,
)

pytestmark = pytest.mark.integration

PROJECT = "atomic-faults"
DB_PORT = 25700
DB = db_settings(DB_PORT)
TEMPLATES = {"reset": "atomic_tpl_reset", "fix": "atomic_tpl_fix"}

RESET = ["reset-all-migrations", "--yes", "--var", "force=true"]
FIX = ["fix-history", "--yes"]


def _step_of(playbook: str, action: str) -> int:
    return next(n for n, step in enumerate(playbook_steps(playbook), 1) if step.get("action") == action)


# reset-all-migrations: its regenerate step deletes the migration files (shop has 5 besides __init__.py).
RESET_POINTS = [*step_boundaries("reset-all-migrations"), "delete-file-1", "delete-file-4"]
# fix-history: its apply-missing step applies customer.0001_initial for real.
FIX_POINTS = step_boundaries("fix-history")
APPLY_STEP = _step_of("fix-history", "django.apply-missing")


def _guides_world() -> None:
    """fix-history's case: customer_contact.0002 recorded, its dependency customer.0001 never ran."""
    for app in ("contenttypes", "auth", "admin", "sessions"):
        manage(PROJECT, "migrate", app, "--noinput")
    manage(PROJECT, "migrate", "catalog", "0002", "--noinput")
    manage(PROJECT, "migrate", "customer_contact", "0001", "--noinput")
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO catalog_category (name) SELECT 'c' || i FROM generate_series(1, 20) AS i")
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('customer_contact', '0002_alter_customercontact_customer', now())")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT) as directory:
        # Each case starts from a template database made once: CREATE DATABASE ... TEMPLATE takes a second.
        manage(PROJECT, "migrate", "--noinput")
        manage(PROJECT, "seed", "--rows", "200")
        recreate_database(DB, TEMPLATES["reset"], "shop")
        recreate_database(DB, "shop")
        _guides_world()
        recreate_database(DB, TEMPLATES["fix"], "shop")
        yield directory


def _start(stack: Path, case: str) -> None:
    recreate_database(DB, "shop", TEMPLATES[case])
    reset_app(stack)
    for path in (stack / ".runbook").glob("reports/*"):
        path.unlink()


def _state(stack: Path) -> dict:
    files = {str(p.relative_to(stack)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((stack / "app").glob("*/migrations/*.py"))}
    with psycopg.connect(**DB) as conn:
        history = conn.execute("SELECT id, app, name, applied FROM django_migrations ORDER BY id").fetchall()
    return {"files": files, "history": history, "data": table_rows(DB)}


def _report(stack: Path) -> dict:
    return report_of(stack)[0]


def _stop_at(stack: Path, runbook_cli: list[str], tmp_path: Path, args: list[str], point: str,
             sig: signal.Signals) -> tuple[str, str, dict]:
    marker = tmp_path / "paused"
    proc = start_cli(runbook_cli, stack, "run", *args, env=pause_env(point, marker))
    wait_for_pause(marker, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:] + err
    assert "Traceback" not in out + err
    return out, err, _report(stack)


# Every point of reset-all-migrations, one signal each, alternating: both reach the same handler, and
# fix-history below takes both at each of its points. (Both at every point here cost CI three minutes.)
RESET_CASES = [(point, [signal.SIGINT, signal.SIGTERM][i % 2]) for i, point in enumerate(RESET_POINTS)]


@pytest.mark.parametrize(("point", "sig"), RESET_CASES, ids=[f"{p}-{s.name}" for p, s in RESET_CASES])
def test_reset_all_migrations_stopped_changes_nothing(stack, runbook_cli, tmp_path, point, sig) -> None:
    _start(stack, "reset")
    before = _state(stack)
    out, err, report = _stop_at(stack, runbook_cli, tmp_path, RESET, point, sig)
    assert _state(stack) == before, out[-3000:]
    assert report["status"] == "interrupted" and report["exit_code"] == 130
    assert report["putback"]["status"] == "put back", report["putback"]
    assert "put back as before the run" in out


# squash-reset of catalog (0001, 0002 -> a new 0001_initial): 5 steps; step 2 deletes and regenerates files.
# One signal per point, alternating, as for reset-all-migrations.
SQUASH_CASES = [(point, [signal.SIGINT, signal.SIGTERM][i % 2]) for i, point in enumerate(
    [*step_boundaries("squash-reset"), "delete-file-1", "delete-file-2"])]


@pytest.mark.parametrize(("point", "sig"), SQUASH_CASES, ids=[f"{p}-{s.name}" for p, s in SQUASH_CASES])
def test_squash_reset_stopped_changes_nothing(stack, runbook_cli, tmp_path, point, sig) -> None:
    _start(stack, "reset")
    before = _state(stack)
    out, err, report = _stop_at(stack, runbook_cli, tmp_path, ["squash-reset", "--yes", "--var", "app=catalog"],
                                point, sig)
    assert _state(stack) == before, out[-3000:]
    assert report["status"] == "interrupted" and report["putback"]["status"] == "put back", report["putback"]


FAKE_CASES = [(point, [signal.SIGTERM, signal.SIGINT][i % 2])
              for i, point in enumerate(step_boundaries("fake-initial"))]


@pytest.mark.parametrize(("point", "sig"), FAKE_CASES, ids=[f"{p}-{s.name}" for p, s in FAKE_CASES])
def test_fake_initial_stopped_puts_history_back(stack, runbook_cli, tmp_path, point, sig) -> None:
    _start(stack, "reset")
    with psycopg.connect(**DB) as conn:  # a restored dump without catalog's rows: its tables are there
        conn.execute("DELETE FROM django_migrations WHERE app = 'catalog'")
    before = _state(stack)
    out, err, report = _stop_at(stack, runbook_cli, tmp_path, ["fake-initial", "--yes"], point, sig)
    assert _state(stack) == before, out[-3000:]
    assert report["status"] == "interrupted" and report["putback"]["status"] == "put back", report["putback"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", FIX_POINTS)
def test_fix_history_stopped_puts_history_back(stack, runbook_cli, tmp_path, point, sig) -> None:
    _start(stack, "fix")
    before = _state(stack)
    out, err, report = _stop_at(stack, runbook_cli, tmp_path, FIX, point, sig)
    after = _state(stack)
    assert after["files"] == before["files"] and after["history"] == before["history"], out[-3000:]
    assert report["putback"]["status"] == "put back", report["putback"]
    applied = point.startswith("after-step-") and int(point.rsplit("-", 1)[1]) >= APPLY_STEP
    # The apply-missing step created customer_customer for real: it stays, empty, and the report says so.
    assert set(after["data"]) - set(before["data"]) == ({"customer_customer"} if applied else set())
    # Django's post_migrate adds the new app's content type and permissions: rows a step wrote for real,
    # which stay (only --rollback-on-failure restores data). Every row there before is still there.
    grown = {"django_content_type", "auth_permission"} if applied else set()
    for table, rows in before["data"].items():
        if table in grown:
            assert set(rows) <= set(after["data"][table]), table
        else:
            assert after["data"][table] == rows, table
    left = " ".join(report["putback"]["left"])
    assert ("table customer_customer, created by a step" in left) == applied
    assert ("left: table customer_customer" in out) == applied
    # With the table there, the history put back is the guide's state once more: diagnose's line fits it.
    assert ("runbook diagnose: runbook run fix-history --yes" in left) == applied


def test_db_killed_during_a_step_puts_the_files_back(stack, runbook_cli, tmp_path) -> None:
    _start(stack, "reset")
    before = _state(stack)
    marker = tmp_path / "paused"
    proc = start_cli(runbook_cli, stack, "run", *RESET, env=pause_env("delete-file-2", marker))
    wait_for_pause(marker, proc)
    db = service_container(PROJECT, "db")
    try:
        db.kill()
        marker.unlink()  # the run goes on with its database gone
        out, err = proc.communicate(timeout=300)
        assert proc.returncode in (1, 4), out[-3000:] + err
        [line] = err.strip().splitlines()
        assert line.startswith("runbook: error: ") and "Traceback" not in out + err
        report = _report(stack)
        assert report["exit_code"] == proc.returncode
        files = {str(p.relative_to(stack)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted((stack / "app").glob("*/migrations/*.py"))}
        assert files == before["files"]
        assert any("migration files" in r for r in report["putback"]["restored"]), report["putback"]
    finally:
        db.start()
        wait_for_stack(stack, DB)
    after = _state(stack)
    assert after["history"] == before["history"] and after["data"] == before["data"]


# ---- a rehearsal proves the backend talks to the copy before any step ----

def _rehearse(runbook_cli: list[str], stack: Path, playbook: str) -> subprocess.CompletedProcess:
    return run_cli(runbook_cli, stack, "run", playbook, "--rehearse", env={"COLUMNS": "250"}, timeout=300)


def _pending_world() -> None:
    recreate_database(DB, "shop")
    manage(PROJECT, "migrate", "auth", "--noinput")


@pytest.mark.parametrize("playbook", ["fix-history", "apply-migrations"])
def test_rehearsal_refuses_when_settings_name_the_database(stack, runbook_cli, playbook) -> None:
    if playbook == "fix-history":
        _start(stack, "fix")
    else:
        _start(stack, "reset")
        _pending_world()
    settings = stack / "app" / "shop" / "settings.py"
    settings.write_text(settings.read_text().replace('os.environ.get("DB_NAME", "shop")', '"shop"'))
    before = _state(stack)
    with psycopg.connect(**DB) as conn:
        schema = conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                              " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
    proc = _rehearse(runbook_cli, stack, playbook)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("runbook: error: the rehearsal would not stay on its copy: under the rehearsal's "
                           "environment the backend connects to database 'shop' at 127.0.0.1:")
    assert "backend.database_env" in line and "DJANGO_SETTINGS_MODULE" in line
    assert _state(stack) == before
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                            " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall() == schema
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_rehearsal_%'").fetchone()[0] == 0
    report = _report(stack)
    assert report["status"] == "refused" and all(s["status"] == "not-run" for s in report["steps"])


def test_rehearsal_proves_the_backend_uses_the_copy(stack, runbook_cli) -> None:
    _start(stack, "reset")
    _pending_world()
    before = _state(stack)
    proc = _rehearse(runbook_cli, stack, "apply-migrations")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "proven: the backend connects to shop_rehearsal_" in proc.stdout
    assert _state(stack) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_fix_history_stopped_while_migrate_runs_puts_history_back(stack, runbook_cli, sig) -> None:
    """No pause: the signal arrives while the apply-missing step's real `migrate` runs, as a person's Ctrl-C."""
    _start(stack, "fix")
    before = _state(stack)
    proc = start_cli(runbook_cli, stack, "run", *FIX)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"-> step {APPLY_STEP}/"):
            break
    else:
        pytest.fail(f"step {APPLY_STEP} never started:\n" + "".join(seen[-40:]))
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, "".join(seen)[-2000:] + out[-3000:] + err
    after = _state(stack)
    assert after["files"] == before["files"] and after["history"] == before["history"], out[-3000:]
    assert _report(stack)["putback"]["status"] == "put back"
