"""The Markdown and JSON reports: what a person needs, no secret, safe files."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from runbook.artifacts.report import (
    render_json,
    render_markdown,
    report_basename,
    summary_lines,
    write_report,
)
from runbook.redact import MASK, Redactor
from runbook.results import RunResult, StepResult

PASSWORD = "Hunter2-very-secret"
MIGRATIONS = "django_migrations"


def make_result(**changes) -> RunResult:
    result = RunResult(
        playbook="fix-history",
        description="Repair InconsistentMigrationHistory",
        project="shop",
        target={"kind": "compose", "compose_project": "shop"},
        user="ops",
        host="srv1",
        started="2026-11-22T01:30:00+00:00",
        ended="2026-11-22T01:30:12+00:00",
        duration=12.3,
        status="done",
        exit_code=0,
        variables={"app": "customer", "DB_PASSWORD": PASSWORD},
        snapshot={"id": "20261122T013000Z-fix-history", "path": "/p/.runbook/snapshots/x", "database": True},
        history_before={MIGRATIONS: [["customer_contact", "0002_contact"], ["admin", "0001_initial"]]},
        history_after={MIGRATIONS: [["customer", "0001_initial"], ["customer_contact", "0002_contact"],
                                     ["admin", "0001_initial"]]},
        steps=[
            StepResult("inspect graph", "action", None, "inspect_graph()", "ok", 0, '{"apps": 3}', "", 0.4),
            StepResult(
                "apply dependency", "manage", "backend", "python manage.py migrate customer 0001",
                "ok", 0, "Applying customer.0001_initial... OK\n", "", 1.5,
            ),
        ],
        checks=[StepResult("history consistent", "manage", "backend", "python manage.py migrate --check",
                           "ok", 0)],
        notes=["3 tables have no history rows"],
    )
    for key, value in changes.items():
        setattr(result, key, value)
    return result


def failed_step(**changes) -> StepResult:
    step = StepResult(
        "apply dependency", "manage", "backend", "python manage.py migrate customer 0001", "failed", 1,
        "", "django.db.utils.ProgrammingError: relation \"billings\" already exists\n", 2.0,
        ["exit code 1, expected 0"],
    )
    for key, value in changes.items():
        setattr(step, key, value)
    return step


def test_done_report_has_the_essentials():
    md = render_markdown(make_result(), Redactor())
    first_line = md.splitlines()[0]
    assert first_line.startswith("# ") and "DONE" in first_line and "fix-history" in first_line
    for fact in ("| project | shop |", "| target kind | compose |", "| user | ops |", "| host | srv1 |",
                 "| duration | 12.3 s |", "| result | done |", "| exit code | 0 |"):
        assert fact in md
    assert "| id | 20261122T013000Z-fix-history |" in md
    assert "- 3 tables have no history rows" in md
    assert "| 2 | apply dependency | ✅ ok | backend | 0 | 1.5 s |" in md
    assert "history consistent | ✅ passed" in md
    assert "Applying customer.0001_initial... OK" in md
    assert "runbook restore" not in md  # nothing to undo after a good run


@pytest.mark.parametrize(
    ("status", "exit_code", "label"),
    [("failed", 1, "FAILED"), ("verify-failed", 3, "VERIFY FAILED"), ("interrupted", 130, "INTERRUPTED"),
     ("refused", 2, "REFUSED"), ("error", 4, "ERROR")],
)
def test_unsuccessful_results_render_their_status(status, exit_code, label):
    result = make_result(status=status, exit_code=exit_code, error="something broke")
    md = render_markdown(result, Redactor())
    assert label in md.splitlines()[0]
    assert f"| exit code | {exit_code} |" in md
    assert "> **Error:** something broke" in md
    assert "runbook restore 20261122T013000Z-fix-history" in md


def test_failed_step_is_pointed_at_and_opened():
    interrupted = StepResult("fake dependant", "sql", "db", "DELETE FROM django_migrations", "not-run")
    result = make_result(status="failed", exit_code=1, steps=[failed_step(), interrupted])
    md = render_markdown(result, Redactor())
    assert "**Stopped at:** step 1, apply dependency (failed, exit 1)" in md
    assert "- step 1 (apply dependency): exit code 1, expected 0" in md
    assert "| 1 | apply dependency | ❌ failed | backend | 1 | 2.0 s |" in md
    assert "| 2 | fake dependant | ⬜ not run | db | — |" in md
    assert "<details open>\n<summary>Step 1. apply dependency" in md
    assert 'relation "billings" already exists' in md


def test_interrupted_run_renders():
    step = failed_step(status="interrupted", exit_code=None)
    result = make_result(status="interrupted", exit_code=130, steps=[step])
    md = render_markdown(result, Redactor())
    assert "INTERRUPTED" in md.splitlines()[0]
    assert "⚠️ interrupted" in md
    assert "**Stopped at:** step 1, apply dependency (interrupted)" in md


def test_secrets_never_reach_markdown_or_json():
    leaky = failed_step(
        command=f"psql postgresql://app:{PASSWORD}@db/shop",
        stdout=f"connecting with {PASSWORD}\n",
        stderr="PGPASSWORD=other-secret-1 psql failed\nurl postgres://app:other-secret-2@db/x\n",
        problems=[f"stdout contained {PASSWORD}"],
    )
    result = make_result(status="failed", exit_code=1, error=f"bad password {PASSWORD}", steps=[leaky],
                         target={"kind": "local", "database_url": "postgresql://app:other-secret-3@db/x"})
    # The caller's redactor does not know the password: the variable name alone must be enough.
    for text in (render_markdown(result, Redactor()), render_json(result, Redactor())):
        for secret in (PASSWORD, "other-secret-1", "other-secret-2", "other-secret-3"):
            assert secret not in text
        assert MASK in text
    assert PASSWORD not in "\n".join(summary_lines(result, Redactor([PASSWORD])))
    assert result.variables["DB_PASSWORD"] == PASSWORD  # rendering does not change the result


def test_known_secret_in_output_is_masked():
    result = make_result(variables={}, steps=[failed_step(stdout="token is s3kr1t-value\n")])
    md = render_markdown(result, Redactor(["s3kr1t-value"]))
    assert "s3kr1t-value" not in md
    assert f"token is {MASK}" in md


def test_json_twin_is_the_result():
    data = json.loads(render_json(make_result(), Redactor()))
    assert list(data) == list(make_result().to_dict())
    assert data["variables"] == {"app": "customer", "DB_PASSWORD": MASK}
    assert data["steps"][1]["stdout"] == "Applying customer.0001_initial... OK\n"
    assert data["history_after"]["django_migrations"][0] == ["customer", "0001_initial"]


def test_history_diff_shows_added_and_removed_rows():
    before = [["customer_contact", "0002_contact"], ["healthcare", "0003_a"]]
    after = [["customer", "0001_initial"], ["customer_contact", "0002_contact"]]
    result = make_result(history_before={MIGRATIONS: before}, history_after={MIGRATIONS: after})
    md = render_markdown(result, Redactor())
    assert "**django_migrations**: 1 added, 1 removed" in md
    diff = re.search(r"```diff\n(.*?)```", md, re.S)
    assert diff is not None
    lines = diff.group(1).splitlines()
    assert "+customer 0001_initial" in lines
    assert "-healthcare 0003_a" in lines
    assert " customer_contact 0002_contact" in lines


def test_history_unchanged_and_not_captured():
    before = {"django_migrations": [["admin", "0001_initial"]], "alembic_version": [["abc123"]]}
    after = {"django_migrations": [["admin", "0001_initial"]]}
    md = render_markdown(make_result(history_before=before, history_after=after), Redactor())
    assert "**django_migrations**: unchanged (1 rows)" in md
    assert "**alembic_version**: not captured after the run" in md
    md = render_markdown(make_result(history_before={}, history_after={}), Redactor())
    assert "## Migration history\n\nNot captured." in md


def test_table_named_like_a_secret_keeps_its_rows():
    rows = {"password_resets": [["0001_initial"]]}
    md = render_markdown(make_result(history_before=rows, history_after=rows), Redactor())
    assert "**password_resets**: unchanged (1 rows)" in md


def test_long_output_is_cut_with_a_note():
    stdout = "".join(f"line {i}\n" for i in range(10_000))
    md = render_markdown(make_result(steps=[failed_step(stdout=stdout)]), Redactor())
    assert "line 0\n" in md and "line 199\n" in md
    assert "line 9999\n" in md and "line 9800\n" in md
    assert "line 5000\n" not in md
    assert "10,000 lines" in md
    assert "9,600 lines cut here" in md


def test_huge_lines_are_cut_to_a_bounded_size():
    stdout = ("x" * 10_000 + "\n") * 100  # few lines, ~1 MB
    md = render_markdown(make_result(steps=[failed_step(stdout=stdout)]), Redactor())
    assert len(md.encode()) < 100 * 1024
    assert "cut here" in md


def test_output_with_backticks_cannot_break_the_fence():
    stdout = "before\n```\n# not a heading\n`````\nafter\n"
    md = render_markdown(make_result(steps=[failed_step(stdout=stdout)]), Redactor())
    block = re.search(r"^(`{6,})text\n(.*?)^\1$", md, re.S | re.M)
    assert block is not None, "expected a fence longer than the longest backtick run"
    assert block.group(2) == stdout


def test_html_in_names_is_escaped_in_summaries():
    md = render_markdown(make_result(steps=[failed_step(name="drop <b>x</b> | y")]), Redactor())
    assert "<summary>Step 1. drop &lt;b&gt;x&lt;/b&gt; | y" in md
    assert "| drop &lt;b>x&lt;/b> \\| y |" in md


def test_empty_snapshot_and_no_steps():
    md = render_markdown(make_result(status="refused", exit_code=2, snapshot={}, steps=[], checks=[]),
                         Redactor())
    assert "## Snapshot\n\nNo snapshot." in md
    assert "No steps ran." in md
    assert "## Output" not in md


def test_report_basename_is_utc_and_filesystem_safe():
    assert report_basename(make_result()) == "20261122T013000Z-fix-history"
    shifted = make_result(started="2026-11-22T02:30:00+01:00", playbook="../weird name")
    assert report_basename(shifted) == "20261122T013000Z-weird-name"
    assert re.fullmatch(r"\d{8}T\d{6}Z-fix-history", report_basename(make_result(started="")))


def test_write_report_is_private_and_atomic(tmp_path):
    old_umask = os.umask(0o022)
    try:
        reports = tmp_path / "project" / ".runbook" / "reports"
        md_path, json_path = write_report(make_result(), reports, Redactor())
    finally:
        os.umask(old_umask)
    assert md_path == reports / "20261122T013000Z-fix-history.md"
    assert json_path == reports / "20261122T013000Z-fix-history.json"
    for directory in (reports, reports.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "project").stat().st_mode) == 0o700  # created by us, so private
    for path in (md_path, json_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert md_path.read_text(encoding="utf-8").startswith("# ✅ DONE: fix-history")
    assert json.loads(json_path.read_text(encoding="utf-8"))["playbook"] == "fix-history"
    assert sorted(p.name for p in reports.iterdir()) == [json_path.name, md_path.name]  # no temp files


def test_write_report_tightens_an_existing_dir_but_not_its_parent(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    write_report(make_result(), reports, Redactor())
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_same_second_runs_get_suffixes(tmp_path):
    paths = [write_report(make_result(), tmp_path, Redactor()) for _ in range(3)]
    names = [md.name for md, _ in paths]
    assert names == [
        "20261122T013000Z-fix-history.md",
        "20261122T013000Z-fix-history-2.md",
        "20261122T013000Z-fix-history-3.md",
    ]
    assert [js.stem for _, js in paths] == [md.stem for md, _ in paths]


def test_summary_lines():
    result = make_result(
        status="failed", exit_code=1, error="step 1 failed",
        steps=[failed_step(), StepResult("next", "sql", "db", "SELECT 1")],
        checks=[],
    )
    lines = summary_lines(result)
    assert 3 <= len([line for line in lines if not line.startswith("note: ")]) <= 6
    assert lines[-1] == "note: 3 tables have no history rows"  # notes are listed at the end of a run too
    assert lines[0] == "fix-history: failed (exit 1, 12.3 s)"
    assert "error: step 1 failed" in lines
    assert "steps: 1 failed, 1 not run" in lines
    assert "checks: none ran" in lines
    assert any("runbook restore 20261122T013000Z-fix-history" in line for line in lines)
    done = summary_lines(make_result())
    assert done[0] == "fix-history: done (exit 0, 12.3 s)"
    assert "steps: 2 ok" in done and "checks: 1 passed" in done
