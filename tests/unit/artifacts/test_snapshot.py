"""Snapshot pieces that need no database: the frame decoder, streaming on the local target, part checks."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import pytest

from runbook.artifacts.report import render_markdown, summary_lines
from runbook.artifacts.restore import RestoreOutcome, verify_parts
from runbook.artifacts.snapshot_dump import pg_client
from runbook.artifacts.snapshot_manifest import file_entry, list_snapshots, load_manifest, new_snapshot_id, summary
from runbook.artifacts.snapshot_tables import checksum_kind, stats_sql
from runbook.config import Config
from runbook.errors import InputError, SnapshotFailed
from runbook.redact import Redactor
from runbook.results import RunResult
from runbook.targets.base import DatabaseSettings
from runbook.targets.compose.hijack import STDERR, STDOUT, FrameDecoder
from runbook.targets.local import LocalTarget


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


@pytest.mark.parametrize("step", [1, 3, 7, 8, 9, 64, 10_000])
def test_frames_decode_whatever_the_chunking(step):
    stream = (frame(STDOUT, b"hello ") + frame(STDERR, b"oops\n") + frame(STDOUT, b"")
              + frame(STDOUT, bytes(range(256)) * 40) + frame(STDERR, b"bye"))
    got: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
    decoder = FrameDecoder(lambda s, data: got[s].extend(data))
    for i in range(0, len(stream), step):
        decoder.feed(stream[i:i + step])
    assert bytes(got[STDOUT]) == b"hello " + bytes(range(256)) * 40
    assert bytes(got[STDERR]) == b"oops\nbye"
    assert not decoder.mid_frame


def test_a_stream_cut_inside_a_frame_is_noticed():
    decoder = FrameDecoder(lambda s, data: None)
    decoder.feed(frame(STDOUT, b"0123456789")[:12])
    assert decoder.mid_frame


def test_local_exec_to_file_streams_stdout_into_a_private_file(tmp_path):
    target = LocalTarget(Config(project_dir=tmp_path))
    dest = tmp_path / "out.bin"
    code = ("import sys; sys.stderr.write('note\\n')\n"
            "for i in range(64): sys.stdout.buffer.write(bytes([i % 251]) * 65536)")
    result = target.exec_to_file("db", [sys.executable, "-c", code], dest)
    assert result.exit_code == 0 and result.stderr == "note\n" and result.stdout == ""
    assert dest.stat().st_size == 64 * 65536
    assert dest.stat().st_mode & 0o777 == 0o600
    back = target.exec_from_file("db", ["sha256sum"], dest)
    assert back.exit_code == 0
    assert back.stdout.split()[0] == hashlib.sha256(dest.read_bytes()).hexdigest()


def test_local_exec_to_file_times_out(tmp_path):
    target = LocalTarget(Config(project_dir=tmp_path))
    result = target.exec_to_file("db", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "x",
                                 timeout=0.5)
    assert result.timed_out and result.exit_code == 124


def test_exec_from_file_survives_a_command_that_stops_reading(tmp_path):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(4 * 1024 * 1024))
    result = LocalTarget(Config(project_dir=tmp_path)).exec_from_file("db", ["head", "-c", "5"], src)
    assert result.exit_code == 0


def _snapshot(tmp_path: Path, snapshot_id: str, playbook: str = "manual") -> Path:
    directory = tmp_path / ".runbook" / "snapshots" / snapshot_id
    directory.mkdir(parents=True)
    (directory / "database.dump").write_bytes(b"PGDMP" + os.urandom(1000))
    (directory / "history.json").write_text("{}")
    parts = [file_entry(directory / name) for name in ("database.dump", "history.json")]
    manifest = {"id": snapshot_id, "playbook": playbook, "created": "2026-01-01T00:00:00Z", "parts": parts,
                "path": str(directory)}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_verify_parts_names_the_damaged_part(tmp_path):
    directory = _snapshot(tmp_path, "S1")
    _, manifest = load_manifest(tmp_path / ".runbook", "S1")
    verify_parts("S1", directory, manifest)
    data = bytearray((directory / "database.dump").read_bytes())
    data[500] ^= 0xFF
    (directory / "database.dump").write_bytes(bytes(data))
    with pytest.raises(SnapshotFailed, match="snapshot S1 is damaged: database.dump sha256 differs"):
        verify_parts("S1", directory, manifest)
    data[500] ^= 0xFF
    (directory / "database.dump").write_bytes(bytes(data))
    (directory / "history.json").unlink()
    with pytest.raises(SnapshotFailed, match="history.json is missing"):
        verify_parts("S1", directory, manifest)


def test_a_dump_checked_as_it_is_read_is_only_measured_before(tmp_path):
    directory = _snapshot(tmp_path, "S1")
    _, manifest = load_manifest(tmp_path / ".runbook", "S1")
    data = bytearray((directory / "database.dump").read_bytes())
    data[500] ^= 0xFF
    (directory / "database.dump").write_bytes(bytes(data))
    verify_parts("S1", directory, manifest, without_sha256=frozenset({"database.dump"}))
    (directory / "database.dump").write_bytes(bytes(data[:-1]))
    with pytest.raises(SnapshotFailed, match="database.dump size differs"):
        verify_parts("S1", directory, manifest, without_sha256=frozenset({"database.dump"}))


def test_a_snapshot_from_a_newer_runbook_is_refused_in_one_line(tmp_path):
    directory = _snapshot(tmp_path, "S1")
    _, manifest = load_manifest(tmp_path / ".runbook", "S1")
    verify_parts("S1", directory, {**manifest, "format": 1})  # format 1 (and no format at all) still reads
    with pytest.raises(InputError) as info:
        verify_parts("S1", directory, {**manifest, "format": 3})
    assert str(info.value) == ("snapshot S1 has manifest format 3; this runbook reads up to 2 (restore it with "
                               "the runbook version that took it, or a newer one)")
    assert info.value.exit_code == 2


def test_unknown_snapshot_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="no snapshot"):
        load_manifest(tmp_path, "nope")
    with pytest.raises(InputError):
        load_manifest(tmp_path, "../etc")


def test_list_snapshots_skips_partial_ones_and_sorts(tmp_path):
    _snapshot(tmp_path, "20260102T000000000000Z-b", "b")
    _snapshot(tmp_path, "20260101T000000000000Z-a", "a")
    (tmp_path / ".runbook" / "snapshots" / ".20260103T000000000000Z-c.partial").mkdir()
    found = list_snapshots(tmp_path / ".runbook")
    assert [m["playbook"] for m in found] == ["a", "b"]
    assert summary(found[0])["parts"] == "database.dump, history.json"


def test_snapshot_ids_are_safe_names():
    assert new_snapshot_id("fix history").endswith("Z-fix-history")
    assert "/" not in new_snapshot_id("a/../b") and " " not in new_snapshot_id("a b")


def test_stats_sql_sums_each_table_as_told():
    text = stats_sql([("small", "h"), ('we"ird', "t"), ("old", "md5"), ("huge", None)])
    assert "'h:' || coalesce(sum(hash_record_extended(t, 0)), 0) AS checksum FROM public.\"small\" t" in text
    assert "'t:' || coalesce(sum(hashtextextended(t::text, 0)), 0) AS checksum FROM public.\"we\"\"ird\" t" in text
    assert "(SELECT md5(t::text) AS h FROM public.\"old\" t) s" in text
    assert "NULL::text AS checksum FROM public.\"huge\"" in text


def test_a_checksum_names_how_it_was_computed():
    assert [checksum_kind(v) for v in ("h:-12", "t:5", "0cc175b9c0f1b6a831c399e269772661", None, "")] == [
        "h", "t", "md5", None, None]


def test_report_says_the_data_is_back():
    result = RunResult(playbook="p", description="", project="/p", target={}, user="u", host="h",
                       started="2026-01-01T00:00:00Z", status="verify-failed", exit_code=3, error="verification failed",
                       snapshot={"id": "S1"})
    result.rollback = RestoreOutcome("S1", restored=["database"], checked=["3 tables, 10 rows"]).to_dict()
    page = render_markdown(result, Redactor())
    head = page.split("## Run")[0]
    assert "rolled back: the data is back as of snapshot S1" in head and "3 tables, 10 rows" in head
    assert "To undo" not in page
    assert ("rolled back: the data is back as of snapshot S1; every write made since the snapshot is gone"
            in summary_lines(result))
    assert "every write made since the snapshot is gone" in head
    result.rollback = {"snapshot": "S1", "status": "failed", "error": "boom"}
    page = render_markdown(result, Redactor())
    assert "rollback FAILED: boom" in page.split("## Run")[0] and "runbook restore S1" in page


def test_migration_files_django_alembic_and_extra_globs_but_no_virtualenvs(tmp_path):
    from runbook.artifacts.snapshot_files import file_patterns, find_files

    for path in ["shop/migrations/0001_initial.py", "shop/migrations/__init__.py", "shop/models.py",
                 "apps/deep/migrations/0002_x.py", ".venv/lib/python3.11/site-packages/django/migrations/0001.py",
                 "venv/lib/python3.11/site-packages/x/migrations/0001.py", "node_modules/m/migrations/1.py",
                 "db/alembic/versions/abc123_first.py", "db/alembic/env.py", "extra/notes.txt"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("# x\n")
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/db/alembic\n"
                                          "file_template = %%(rev)s_%%(slug)s\n")
    target = LocalTarget(Config(project_dir=tmp_path))
    root = str(tmp_path)
    patterns = file_patterns(target, root, ["extra/*.txt"])
    assert patterns == ["**/migrations/*.py", "db/alembic/versions/*.py", "extra/*.txt"]
    assert find_files(target, root, patterns) == [
        "apps/deep/migrations/0002_x.py", "db/alembic/versions/abc123_first.py", "extra/notes.txt",
        "shop/migrations/0001_initial.py", "shop/migrations/__init__.py"]


def test_pg_dump_on_the_host_connects_with_the_urls_libpq_parameters(tmp_path):
    target = LocalTarget(Config(project_dir=tmp_path))
    settings = DatabaseSettings(host="127.0.0.1", port=25431, user="app", password="pw", dbname="shop",
                                parameters={"sslmode": "require", "sslrootcert": "/etc/ca.pem",
                                            "options": "-c search_path=app", "keepalives": "1"})
    env = pg_client(target, settings).env
    assert env["PGHOST"] == "127.0.0.1" and env["PGPORT"] == "25431" and env["PGPASSWORD"] == "pw"
    assert env["PGSSLMODE"] == "require" and env["PGSSLROOTCERT"] == "/etc/ca.pem"
    # The URL's options and runbook's own both reach the server.
    assert env["PGOPTIONS"] == "-c search_path=app -c client_min_messages=warning"
    assert list(target.warnings) == ["database.url's keepalives cannot reach pg_dump, pg_restore and psql on this "
                                     "host (no PG* variable carries them): they connect without"]
