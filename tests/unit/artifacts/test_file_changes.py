"""One diff per changed migration file, capped, and how the report shows it."""

from __future__ import annotations

import json

from runbook.artifacts.file_changes import file_diffs
from runbook.artifacts.report import render_json, render_markdown
from runbook.redact import Redactor
from runbook.results import RunResult

OLD = b"from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n    dependencies = []\n"


def test_created_deleted_and_modified_files_each_get_a_diff() -> None:
    before = {"a/migrations/0001_initial.py": OLD, "a/migrations/0002_x.py": b"x = 1\n", "same.py": b"s\n"}
    after = {"a/migrations/0001_initial.py": OLD.replace(b"[]", b"[('b', '0001')]"),
             "a/migrations/0003_new.py": b"y = 2", "same.py": b"s\n"}
    entries = {e["path"]: e for e in file_diffs(before, after)}
    assert sorted(entries) == ["a/migrations/0001_initial.py", "a/migrations/0002_x.py", "a/migrations/0003_new.py"]
    modified, deleted, created = (entries["a/migrations/0001_initial.py"], entries["a/migrations/0002_x.py"],
                                  entries["a/migrations/0003_new.py"])
    assert (modified["change"], modified["added"], modified["removed"]) == ("modified", 1, 1)
    assert "-    dependencies = []\n+    dependencies = [('b', '0001')]\n" in modified["diff"]
    assert modified["diff"].startswith("--- a/a/migrations/0001_initial.py\n+++ b/a/migrations/0001_initial.py\n")
    assert deleted["change"] == "deleted" and deleted["diff"].endswith("+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n")
    assert created["change"] == "created" and created["diff"].endswith("+y = 2\n\\ No newline at end of file\n")


def test_long_diffs_are_cut_with_a_note_and_the_total_is_bounded() -> None:
    big = "".join(f"line {i}\n" for i in range(1000)).encode()
    [entry] = file_diffs({}, {"m/0001_initial.py": big}, max_lines=100)
    assert entry["added"] == 1000
    assert "diff lines cut here" in entry["diff"] and entry["note"] == "1003 diff lines; 903 cut"
    assert len(entry["diff"].splitlines()) == 101
    first, second = file_diffs({}, {"a.py": big, "b.py": big}, max_lines=5000, max_total=15000)
    assert first["diff"] and not second["diff"] and "room for diffs is used up" in second["note"]


def test_binary_files_are_named_without_a_diff() -> None:
    [entry] = file_diffs({"x.py": b"\xff\xfe"}, {"x.py": b"\xff"})
    assert entry["change"] == "modified" and entry["diff"] == "" and "not UTF-8" in entry["note"]


def test_the_report_shows_each_file_in_details_and_the_json_keeps_it() -> None:
    result = RunResult(playbook="squash-reset", description="d", project="p", target={}, user="u", host="h",
                       started="2026-01-01T00:00:00Z", status="done", exit_code=0,
                       files=file_diffs({"t/migrations/0002_a.py": b"a\n"}, {"t/migrations/0001_initial.py": b"b\n"}))
    text = render_markdown(result, Redactor())
    assert "## Files changed" in text
    assert "<summary>t/migrations/0001_initial.py: created (+1 -0)</summary>" in text
    assert "<summary>t/migrations/0002_a.py: deleted (+0 -1)</summary>" in text
    assert "```diff\n--- /dev/null\n+++ b/t/migrations/0001_initial.py\n@@ -0,0 +1 @@\n+b\n```" in text
    assert [f["change"] for f in json.loads(render_json(result, Redactor()))["files"]] == ["created", "deleted"]
    assert "## Files changed" not in render_markdown(RunResult(
        playbook="x", description="d", project="p", target={}, user="u", host="h", started="s"), Redactor())
