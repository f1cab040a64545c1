"""Reports of a run: Markdown for people, a JSON twin for tools, written atomically under .runbook/reports/.

Rendering is pure; `write_report` is the one function that touches the disk. Everything shown goes
through a `Redactor` first, so a secret cannot reach a report by any field.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import os
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from runbook.fsutil import fsync_dir
from runbook.redact import Redactor
from runbook.results import RunResult

RUN_MARKS = {"done": "✅", "dry-run": "📝", "interrupted": "⚠️", "refused": "⛔"}  # anything else: ❌
STEP_MARKS = {"ok": "✅ ok", "failed": "❌ failed", "interrupted": "⚠️ interrupted", "skipped": "⏭️ skipped",
              "not-run": "⬜ not run"}
HEAD_LINES = TAIL_LINES = 200
MAX_STREAM_BYTES = 64 * 1024
# Colours and cursor moves from tools that think they talk to a terminal.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LANGUAGES = {"sql": "sql", "action": "text"}  # every other kind is an argv command


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=False,  # Markdown, not HTML; the few HTML bits escape explicitly with |e
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _cell
    env.filters["oneline"] = _oneline
    return env


def render_markdown(result: RunResult, redactor: Redactor) -> str:
    """Render the Markdown report of a run, every secret masked."""
    redactor = _run_redactor(result, redactor)
    text = _environment().get_template("report.md.j2").render(**_context(_redacted(result, redactor)))
    # Second pass over the finished page: a fragment that only looks like a secret once assembled.
    return redactor.text(text).rstrip("\n") + "\n"


def render_json(result: RunResult, redactor: Redactor) -> str:
    """Render the JSON twin of the report, every secret masked."""
    data = _redacted(result, _run_redactor(result, redactor))
    return json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n"


def report_basename(result: RunResult) -> str:
    """Return `<UTC time>-<playbook>`, safe as a file name, e.g. `20261122T013000Z-fix-history`."""
    try:
        when = datetime.fromisoformat(result.started)
    except (TypeError, ValueError):
        when = datetime.now(UTC)  # a run that broke before it recorded its start still needs a name
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", result.playbook).strip(".-") or "run"
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{name}"


def write_report(result: RunResult, reports_dir: Path, redactor: Redactor) -> tuple[Path, Path]:
    """Write `<basename>.md` and `.json` atomically, mode 0600, in a 0700 reports_dir; return both paths."""
    markdown, data = render_markdown(result, redactor), render_json(result, redactor)
    _make_private_dir(reports_dir)
    md_path, json_path = _claim_names(reports_dir, report_basename(result))
    try:
        _write_atomic(md_path, markdown)
        _write_atomic(json_path, data)
    except BaseException:
        for path in (md_path, json_path):
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:  # only our own empty placeholder
                    path.unlink()
        raise
    fsync_dir(reports_dir)
    return md_path, json_path


def summary_lines(result: RunResult, redactor: Redactor | None = None) -> list[str]:
    """Return the few plain lines the console prints at the end of a run."""
    lines = [f"{'rehearsal of ' if result.rehearsal else ''}{result.playbook}: {_label(result.status)} "
             f"(exit {result.exit_code}, {format_duration(result.duration)})"]
    if result.error:
        lines.append(f"error: {_oneline(result.error)}")
    stopped = _stopped_at(result.to_dict()["steps"])
    if stopped:
        lines.append(f"stopped at step {stopped[0]}: {stopped[1]}")
    lines.append(f"steps: {_counts(result.steps, 'ok')}")
    lines.append(f"checks: {_counts(result.checks, 'passed')}")
    snapshot_id = result.snapshot.get("id")
    rolled_back = result.rollback.get("status") == "restored"
    if snapshot_id and result.rehearsal:
        lines.append(f"snapshot: {snapshot_id} (of the real database; the copy was restored from it)")
    elif snapshot_id:
        undo = "" if result.status in ("done", "dry-run") or rolled_back else f" (undo: runbook restore {snapshot_id})"
        lines.append(f"snapshot: {snapshot_id}{undo}")
    if result.rollback:
        lines.append(_rollback_headline(result.rollback))
    if result.putback:
        lines.extend(putback_lines(result.putback))
    if result.rehearsal:
        lines.extend(rehearsal_lines(result.rehearsed_on))
    lines += [f"note: {_oneline(note)}" for note in result.notes]
    return [redactor.text(line) for line in lines] if redactor else lines


def rehearsal_lines(facts: dict[str, Any]) -> list[str]:
    """Return what a rehearsal ran on and what it proved about the real database and files."""
    lines = []
    if facts.get("database"):
        lines.append(f"rehearsed on database {facts['database']}")
    if facts.get("files"):
        lines.append(f"rehearsed on files {facts['files']}")
    checked = "; ".join(facts.get("real_checked", []))
    if facts.get("real_changed"):
        lines.extend(facts["real_changed"])
    else:
        lines.append("the real database and migration files were not touched"
                     + (f" (checked: {checked})" if checked else ""))
    lines.extend(facts.get("problems", []))
    return lines


def putback_lines(putback: dict[str, Any]) -> list[str]:
    """Say what a run that did not succeed put back, what it checked and what it left."""
    lines = []
    restored = "; ".join(putback.get("restored") or []) or "nothing"
    if putback.get("status") == "put back":
        lines.append(f"put back as before the run: {restored} (checked: {'; '.join(putback.get('checked') or [])})")
    else:
        lines.append(f"put-back FAILED: {_oneline('; '.join(putback.get('problems') or ['unknown']))}"
                     + (f" (put back: {restored})" if putback.get("restored") else ""))
    lines += [f"left: {_oneline(item)}" for item in putback.get("left") or []]
    lines.append("data rows were left as the steps made them (only --rollback-on-failure restores the data)")
    return lines


def _rollback_headline(rollback: dict[str, Any]) -> str:
    snapshot_id = rollback.get("snapshot") or "?"
    if rollback.get("status") == "restored":
        return (f"rolled back: the data is back as of snapshot {snapshot_id}; "
                "every write made since the snapshot is gone")
    reason = rollback.get("error") or "; ".join(rollback.get("problems") or []) or "unknown"
    return f"rollback FAILED: {_oneline(reason)}"


def format_duration(seconds: float) -> str:
    """Return a duration the way people say it: `0.4 s`, `2 min 05 s`, `1 h 02 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _run_redactor(result: RunResult, redactor: Redactor) -> Redactor:
    # A value under a secret-named variable is masked everywhere, even if the caller forgot to add it;
    # a copy, so rendering stays free of side effects.
    copy = Redactor(redactor.secrets)
    copy.learn(result.to_dict())
    return copy


def _redacted(result: RunResult, redactor: Redactor) -> dict[str, Any]:
    raw = result.to_dict()
    data = redactor.value({k: v for k, v in raw.items() if not k.startswith("history_")})
    # Table names are keys but not secrets: `password_resets` must not mask its own rows.
    for key in ("history_before", "history_after"):
        data[key] = {table: redactor.value(rows) for table, rows in raw[key].items()}
    return {k: data[k] for k in raw}  # the JSON keeps the field order of RunResult


def _context(d: dict[str, Any]) -> dict[str, Any]:
    status = d["status"]
    steps = [_step_view("Step", i, s) for i, s in enumerate(d["steps"], 1)]
    checks = [_step_view("Check", i, s) for i, s in enumerate(d["checks"], 1)]
    callouts = []
    if d["error"]:
        callouts.append(f"**Error:** {_oneline(d['error'])}")
    stopped = _stopped_at(d["steps"])
    if stopped:
        callouts.append(f"**Stopped at:** step {stopped[0]}, {stopped[1]}")
    rollback = d["rollback"]
    if d["rehearsal"]:
        callouts.append("**Rehearsal:** " + "; ".join(_oneline(line) for line in rehearsal_lines(d["rehearsed_on"])))
        if d["rehearsed_on"].get("real_command") and status == "done":
            callouts.append(f"**The real run:** `{d['rehearsed_on']['real_command']}`")
    elif d["snapshot"].get("id") and status not in ("done", "dry-run") and rollback.get("status") != "restored":
        callouts.append(f"**To undo:** `runbook restore {d['snapshot']['id']}` puts back the snapshot "
                        "taken before the steps ran.")
    if d.get("putback"):
        callouts.insert(0, f"**{'Put back' if d['putback'].get('status') == 'put back' else 'Put-back FAILED'}:** "
                        + _oneline(putback_lines(d["putback"])[0]))
    facts = [("playbook", d["playbook"]), ("project", d["project"])]
    if d["rehearsal"]:
        facts.append(("rehearsal", "yes: on a copy of the database and the files"))
    facts += [(_target_label(k), v) for k, v in d["target"].items()]
    facts += [("user", d["user"]), ("host", d["host"]), ("started", d["started"]), ("ended", d["ended"]),
              ("duration", format_duration(d["duration"])), ("result", _label(status)),
              ("exit code", d["exit_code"])] + ([("error", d["error"])] if d["error"] else [])
    return {
        "mark": RUN_MARKS.get(status, "❌"),
        "label": ("rehearsal " if d["rehearsal"] else "").upper() + _label(status).upper(),
        "playbook": d["playbook"],
        "description": d["description"],
        "callouts": callouts,
        "facts": facts,
        "problems": [f"{v['title']}: {p}" for v in steps + checks for p in v["problems"]],
        "variables": [(k, _show(v)) for k, v in d["variables"].items()],
        "snapshot": [(k, _show(v)) for k, v in d["snapshot"].items()],
        "rollback": {"ok": rollback.get("status") == "restored", "headline": _rollback_headline(rollback),
                     "checked": rollback.get("checked", "") if rollback.get("status") == "restored" else "",
                     "facts": [(k, _show(v)) for k, v in rollback.items() if v not in ("", [], None)]}
        if rollback else None,
        "putback": {"ok": d["putback"].get("status") == "put back", "lines": putback_lines(d["putback"]),
                    "snapshot": d["putback"].get("snapshot", "")} if d.get("putback") else None,
        "notes": d["notes"],
        "steps": steps,
        "checks": checks,
        "history": _history(d["history_before"], d["history_after"]),
        "files": [_file_view(f) for f in d.get("files", [])],
    }


def _file_view(f: dict[str, Any]) -> dict[str, Any]:
    counts = f"+{f['added']} -{f['removed']}" if f["diff"] or f["added"] or f["removed"] else ""
    summary = f"{f['path']}: {f['change']}" + (f" ({counts})" if counts else "")
    return {"summary": summary, "note": f["note"], "diff": _fenced(f["diff"], "diff") if f["diff"] else ""}


def _stopped_at(steps: list[dict[str, Any]]) -> tuple[int, str] | None:
    for number, step in enumerate(steps, 1):
        if step["status"] in ("failed", "interrupted"):
            exit_code = "" if step["exit_code"] is None else f", exit {step['exit_code']}"
            return number, f"{step['name']} ({step['status']}{exit_code})"
    return None


def _counts(steps: list[Any], ok_word: str) -> str:
    counts = Counter(s.status for s in steps)
    order = ["ok", "failed", "interrupted", "skipped", "not-run"]
    parts = [f"{counts[st]} {ok_word if st == 'ok' else st.replace('-', ' ')}" for st in order if counts[st]]
    return ", ".join(parts) or "none ran"


def _step_view(kind: str, number: int, s: dict[str, Any]) -> dict[str, Any]:
    mark = STEP_MARKS.get(s["status"], s["status"])
    if kind == "Check" and s["status"] == "ok":
        mark = "✅ passed"
    exit_code = "—" if s["exit_code"] is None else str(s["exit_code"])
    duration = format_duration(s["duration"])
    streams = []
    for label in ("stdout", "stderr"):
        text, note = _cut(s[label])
        if text:
            streams.append({"label": label, "note": note, "block": _fenced(text, "text")})
    notes = [s["note"]] if s["note"] else []
    if s["truncated"]:
        notes.append("The output was cut while it was captured; the report holds what was kept.")
    return {
        "title": f"{kind.lower()} {number} ({s['name']})",
        "number": number,
        "name": s["name"],
        "mark": mark,
        "service": s["service"] or "—",
        "exit": exit_code,
        "duration": duration,
        "summary": f"{kind} {number}. {s['name']}: {mark} (exit {exit_code}, {duration})",
        "open": s["status"] in ("failed", "interrupted"),
        "command": _fenced(s["command"], _LANGUAGES.get(s["kind"], "sh")) if s["command"] else "",
        "streams": streams,
        "notes": notes,
        "problems": s["problems"],
    }


def _history(before: dict[str, list], after: dict[str, list]) -> list[dict[str, str]]:
    views = []
    for table in dict.fromkeys([*before, *after]):
        old, new = _rows(before.get(table)), _rows(after.get(table))
        if old is None or new is None:
            when = "before" if old is None else "after"
            views.append({"table": table, "summary": f"not captured {when} the run", "diff": ""})
        elif old == new:
            views.append({"table": table, "summary": f"unchanged ({len(old)} rows)", "diff": ""})
        else:
            added = sum((Counter(new) - Counter(old)).values())
            removed = sum((Counter(old) - Counter(new)).values())
            diff = difflib.unified_diff(old, new, f"{table} before", f"{table} after", lineterm="")
            summary = f"{added} added, {removed} removed ({len(old)} rows before, {len(new)} after)"
            views.append({"table": table, "summary": summary, "diff": _fenced("\n".join(diff), "diff")})
    return views


def _label(status: str) -> str:
    return status.replace("-", " ")  # verify-failed -> verify failed


def _target_label(key: str) -> str:
    return key if key.startswith("target") else f"target {key}".replace("_", " ")


def _rows(rows: list | None) -> list[str] | None:
    if rows is None:
        return None
    # Sorted, so rows deleted and inserted again (a new id) do not show as moved.
    return sorted(" ".join(str(c) for c in row) if isinstance(row, list) else str(row) for row in rows)


def _cut(text: str) -> tuple[str, str]:
    """Return the text to show (head and tail kept) and a note saying how much was cut, if any."""
    text = _ANSI_RE.sub("", text).replace("\r\n", "\n")
    lines = text.splitlines(keepends=True)
    size = len(text.encode())
    if len(lines) <= HEAD_LINES + TAIL_LINES and size <= MAX_STREAM_BYTES:
        return text, ""
    if len(lines) > HEAD_LINES + TAIL_LINES:
        head, tail = "".join(lines[:HEAD_LINES]), "".join(lines[-TAIL_LINES:])
    else:  # few but long lines: the size alone decides, and the two halves cannot overlap
        head = tail = text
    half = MAX_STREAM_BYTES // 2
    head = head.encode()[:half].decode(errors="ignore")
    tail = tail.encode()[-half:].decode(errors="ignore")
    cut_lines = len(lines) - len(head.splitlines()) - len(tail.splitlines())
    cut = _size(size - len((head + tail).encode())) + (f", {cut_lines:,} lines" if cut_lines > 0 else "")
    kept = head + ("" if head.endswith("\n") else "\n") + f"[... {cut} cut here ...]\n" + tail
    note = f"{len(lines):,} lines, {_size(size)}; the middle ({cut}) is cut from this report"
    return kept, note


def _fenced(text: str, language: str = "") -> str:
    # A fence longer than any backtick run inside, so output holding ``` cannot close the block.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{language}\n{body}{fence}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _oneline(value: Any) -> str:
    return " ".join(str(value).split())


def _cell(value: Any) -> str:
    # A pipe ends a table cell and a newline ends the row; `<` could open an HTML tag.
    text = str(value).strip()
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", "<br>") if text else "—"


def _make_private_dir(path: Path) -> None:
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it in between
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    os.chmod(path, 0o700)


def _claim_names(directory: Path, base: str) -> tuple[Path, Path]:
    # Exclusive creation of empty placeholders: two runs in the same second get different names.
    for n in itertools.count(1):
        stem = base if n == 1 else f"{base}-{n}"
        md_path, json_path = directory / f"{stem}.md", directory / f"{stem}.json"
        if not _claim(md_path):
            continue
        if _claim(json_path):
            return md_path, json_path
        md_path.unlink()
    raise AssertionError("unreachable")


def _claim(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

