"""The run command as a person meets it, on the local target against a real PostgreSQL: report copies,
exit codes, what the terminal shows."""

from __future__ import annotations

import json
import os
import re
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest
from stack import run_local, write_local_config

pytestmark = pytest.mark.integration

QUICK = """\
name: quick
description: One harmless step.
snapshot: {database: false, history: true}
steps:
  - name: greet
    run: [echo, hello]
"""


def _project(root: Path, db: dict, playbook: str = QUICK) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "quick.yml").write_text(playbook)
    write_local_config(project, db, "CLI_TEST_DB_PASSWORD")
    return project


def _env(db: dict, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNBOOK_TRACEBACK", "NO_COLOR")}
    return {**env, "CLI_TEST_DB_PASSWORD": db["password"], **extra}


def _run(cli: list[str], project: Path, db: dict, *args: str) -> subprocess.CompletedProcess:
    return run_local(cli, project, db, *args, password_env="CLI_TEST_DB_PASSWORD", timeout=120)


def test_report_copy_is_private_and_a_failed_copy_is_one_line_exit_2(tmp_path, fresh_db, runbook_cli):
    project = _project(tmp_path, fresh_db)
    proc = _run(runbook_cli, project, fresh_db, "run", "quick.yml", "--report", "copy.md")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [report] = (project / ".runbook" / "reports").glob("*-quick.md")
    assert (project / "copy.md").read_bytes() == report.read_bytes()
    assert stat.S_IMODE((project / "copy.md").stat().st_mode) == 0o600

    # The run went well, the copy did not: exit 2, one line, and the report is where it always is.
    before = set((project / ".runbook" / "reports").glob("*-quick*.md"))
    proc = _run(runbook_cli, project, fresh_db, "run", "quick.yml", "--report", "no/such/dir/copy.md")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    [newest] = set((project / ".runbook" / "reports").glob("*-quick*.md")) - before
    assert line.startswith("runbook: error: cannot copy the report to no/such/dir/copy.md: ")
    assert line.endswith(f"(the report is still at {newest})")
    assert json.loads(newest.with_suffix(".json").read_text())["status"] == "done"


def test_history_after_is_kept_when_there_was_none_before(tmp_path, fresh_db, runbook_cli):
    # An empty database: no history table before; the step creates it, and the report must show its rows.
    project = _project(tmp_path, fresh_db, QUICK.replace("""    run: [echo, hello]
""", """    sql: >
      CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255), name varchar(255),
      applied timestamptz DEFAULT now());
      INSERT INTO django_migrations (app, name) VALUES ('shop', '0001_initial')
"""))
    proc = _run(runbook_cli, project, fresh_db, "run", "quick.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [twin] = (project / ".runbook" / "reports").glob("*-quick.json")
    record = json.loads(twin.read_text())
    assert record["history_before"] == {}
    assert [row[:2] for row in record["history_after"]["django_migrations"]] == [["shop", "0001_initial"]]


ROLLBACK = """\
name: half-done
description: The second step reads a kept output that is not there, after the first changed data.
snapshot: {database: true, history: true}
steps:
  - name: change data
    sql: "UPDATE accounts SET balance = 0 RETURNING id"
    keep: changed
  - name: use what was kept
    run: [echo, "{{ kept.changed.not_there }}"]
"""


def test_rollback_on_failure_restores_after_a_step_that_cannot_render(tmp_path, fresh_db, runbook_cli):
    import psycopg

    with psycopg.connect(**fresh_db) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)")
        conn.execute("INSERT INTO accounts SELECT i, i * 10 FROM generate_series(1, 5) i")
    project = _project(tmp_path, fresh_db, ROLLBACK)
    proc = _run(runbook_cli, project, fresh_db, "run", "quick.yml", "--rollback-on-failure")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "rolled back" in proc.stdout
    with psycopg.connect(**fresh_db) as conn:
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0] == 150
    [twin] = (project / ".runbook" / "reports").glob("*-half-done.json")
    record = json.loads(twin.read_text())
    assert record["rollback"]["status"] == "restored"
    assert [s["status"] for s in record["steps"]] == ["ok", "failed"]


def test_no_rollback_when_the_lock_is_held(tmp_path, fresh_db, runbook_cli):
    import fcntl

    project = _project(tmp_path, fresh_db, ROLLBACK)
    (project / ".runbook").mkdir(mode=0o700)
    with open(project / ".runbook" / "run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = _run(runbook_cli, project, fresh_db, "run", "quick.yml", "--rollback-on-failure")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "== rollback" not in proc.stdout and "rolled back" not in proc.stdout
    assert not (project / ".runbook" / "snapshots").exists()
    [twin] = (project / ".runbook" / "reports").glob("*-half-done.json")
    assert json.loads(twin.read_text())["rollback"] == {}


SLOW = QUICK.replace("run: [echo, hello]", 'run: [sh, -c, "echo hello; sleep 1.6; echo bye"]')
# Select Graphic Rendition parameters that set a colour (not bold, dim or a reset).
_COLOUR = re.compile(r"^(3[0-8]|4[0-8]|9[0-7]|10[0-7])$")


def _run_in_pty(cmd: list[str], cwd: Path, env: dict[str, str], answer: bytes | None = None,
                timeout: float = 120) -> tuple[int, str]:
    """Run cmd with stdin, stdout and stderr on a pseudo-terminal; type `answer` at the y/N prompt."""
    master, slave = os.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**env, "COLUMNS": "160", "TERM": "xterm"}, stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side is gone
                break
            if not chunk:
                break
            out += chunk
            if answer is not None and b"[y/N]" in out:
                os.write(master, answer)
                answer = None
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, out.decode("utf-8", "replace")


def _colours(text: str) -> list[str]:
    return [params for params in re.findall(r"\x1b\[([0-9;]*)m", text)
            if any(_COLOUR.match(p) for p in params.split(";"))]


def test_a_terminal_shows_a_live_status_line_for_the_running_step(tmp_path, fresh_db, runbook_cli):
    project = _project(tmp_path, fresh_db, SLOW)
    code, out = _run_in_pty([*runbook_cli, "run", "quick.yml"], project, _env(fresh_db))
    assert code == 0, out
    assert "-> step 1/1 [backend] greet" in out
    assert "hello" in out and "bye" in out
    # The live line: spinner, step, service and the seconds so far, redrawn while the step runs.
    assert re.search(r"[\u2800-\u28ff] step 1/1 greet \[backend\] 1 s", out), out
    assert "quick: done (exit 0" in out
    assert _colours(out), "a terminal without NO_COLOR gets colours"


def test_no_color_turns_colours_off_on_a_terminal(tmp_path, fresh_db, runbook_cli):
    project = _project(tmp_path, fresh_db, SLOW)
    code, out = _run_in_pty([*runbook_cli, "run", "quick.yml"], project, _env(fresh_db, NO_COLOR="1"))
    assert code == 0, out
    assert "quick: done (exit 0" in out and "step 1/1 greet [backend]" in out
    assert _colours(out) == []


def test_without_a_terminal_progress_is_plain_lines(tmp_path, fresh_db, runbook_cli):
    project = _project(tmp_path, fresh_db, SLOW)
    proc = subprocess.run([*runbook_cli, "run", "quick.yml"], cwd=project, env=_env(fresh_db),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout
    lines = proc.stdout.splitlines()
    start = lines.index("-> step 1/1 [backend] greet")
    assert lines[start + 1:start + 3] == ["   | hello", "   | bye"]
    assert re.fullmatch(r"   ok \(\d+\.\d\d s\)", lines[start + 3])


@pytest.mark.parametrize("answer", [b"n\n", b"\x04"], ids=["no", "ctrl-d"])
def test_a_refused_confirmation_is_exit_2_and_runs_nothing(tmp_path, fresh_db, runbook_cli, answer):
    project = _project(tmp_path, fresh_db, "destructive: true\n" + SLOW)
    code, out = _run_in_pty([*runbook_cli, "run", "quick.yml"], project, _env(fresh_db, NO_COLOR="1"),
                            answer=answer)
    assert code == 2, out
    assert "Run destructive playbook quick? [y/N]" in out
    assert "runbook: error: not confirmed; nothing was run" in out
    assert "Traceback" not in out and "aborted" not in out
    assert not (project / ".runbook").exists()


def test_a_confirmed_destructive_run_runs(tmp_path, fresh_db, runbook_cli):
    project = _project(tmp_path, fresh_db, "destructive: true\n" + QUICK)
    code, out = _run_in_pty([*runbook_cli, "run", "quick.yml"], project, _env(fresh_db, NO_COLOR="1"),
                            answer=b"y\n")
    assert code == 0, out
    assert "quick: done (exit 0" in out
