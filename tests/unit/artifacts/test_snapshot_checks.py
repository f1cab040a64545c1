"""The pure checks around snapshots: rows read back from a dump, restore differences, the lock holder."""

from __future__ import annotations

from runbook.artifacts.restore_check import differences
from runbook.artifacts.restore_dump import loaded_rows
from runbook.artifacts.snapshot_dump import DumpReport, parse_read_back, parse_report, size_problems, stream_problem
from runbook.artifacts.snapshot_tables import TABLES_SQL, table_stats
from runbook.database.postgres import describe_holder, run_application_name

TABLES = {"customer": {"rows": 3, "checksum": "c1"}, "Odd x": {"rows": 0, "checksum": "c2"}}
MANIFEST = {
    "database": {"tables": TABLES},
    "files": {"root": "/srv/app", "patterns": [], "list": [{"path": "a/migrations/0001_initial.py", "sha256": "f1"}]},
}
HISTORY = {"django_migrations": [["1", "customer", "0001_initial", "t"]]}


def test_rows_read_back_are_counted_from_line_numbers_per_public_table() -> None:
    # grep -n's lines: rows lie between a COPY line and its `\.`; only the end of a COPY counts inside it.
    lines = ["8:-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)",
             "40:COPY public.customer ", "44:\\.",
             '50:COPY public."Odd x" ', "51:\\.",
             '60:COPY public."we""ird.x" ', "62:\\.",
             "70:COPY audit.log ", "71:COPY public.customer ", "72:BEGIN;", "90:\\.",  # rows of another schema
             "95:COPY public.p_1 ", "98:\\.", "99:COPY public.p_1 ", "101:\\.",
             "120:BEGIN;", "121:SELECT pg_catalog.lo_open(", "125:SELECT pg_catalog.lo_open("]
    found = parse_read_back(lines)
    assert found.rows == {"customer": 3, "Odd x": 0, 'we"ird.x': 1, "p_1": 3}
    assert found.dumped_by == "15.18 (Debian 15.18-0+deb12u1)"
    assert (found.large_objects, found.transaction_blocks) == (2, 1)


def test_the_report_of_the_dump_command_is_read_apart_from_the_tools_own_messages() -> None:
    report = parse_report("pg_dump: warning: something\nrunbook-dump-exit 0\nrunbook-read-exit 1\n"
                          "runbook-sha256 abc\nrunbook-line 5:COPY public.error_log \n"
                          "pg_restore: error: could not read input file: end of file\n")
    assert (report.dump_exit, report.read_exit, report.sha256) == (0, 1, "abc")
    assert report.lines == ["5:COPY public.error_log "]
    assert report.stderr == "pg_dump: warning: something\npg_restore: error: could not read input file: end of file"
    # pg_restore gave up: its error is named, not the pg_dump that then died of SIGPIPE.
    report.dump_exit = 141
    assert stream_problem(report, 4096, "abc", b"PGDMP") == (
        "reading all of database.dump back with pg_restore exited 1: pg_restore: error: could not read input "
        "file: end of file")


def test_a_stream_whose_bytes_on_disk_differ_from_what_pg_restore_read_is_refused() -> None:
    good = DumpReport(dump_exit=0, read_exit=0, sha256="a" * 64)
    assert stream_problem(good, 4096, "a" * 64, b"PGDMP") is None
    assert "database.dump on disk is not what pg_restore read back" in stream_problem(good, 4096, "b" * 64, b"PGDMP")
    assert "not a pg_dump custom-format archive" in stream_problem(good, 6, "a" * 64, b"hello")
    failed = DumpReport(dump_exit=1, read_exit=1, stderr="pg_restore: error: too short\npg_dump: error: boom")
    assert stream_problem(failed, 0, "", b"") == "pg_dump exited 1: pg_dump: error: boom"
    stopped = DumpReport(exit_code=70, stderr="mktemp: failed")
    assert stream_problem(stopped, 0, "", b"") == "the dump command exited 70: mktemp: failed"


def test_a_dump_holding_other_row_counts_is_a_problem() -> None:
    assert size_problems(4096, TABLES, {"customer": 3, "Odd x": 0}, True) == []
    assert size_problems(4096, TABLES, {"customer": 2, "Odd x": 0}, True) == [
        "database.dump holds 2 rows of table customer, the database had 3"]
    # Without one exported snapshot only an empty dump of a table with rows is proof of a problem.
    assert size_problems(4096, TABLES, {"customer": 2, "Odd x": 0}, False) == []
    assert size_problems(4096, TABLES, {"customer": 0, "Odd x": 0}, False) == [
        "database.dump holds 0 rows of table customer, the database had 3"]
    assert size_problems(0, TABLES, {"customer": 3, "Odd x": 0}, True) == ["database.dump is empty (0 bytes)"]
    assert size_problems(4096, TABLES, {"customer": 3}, True) == ["database.dump holds no data for table Odd x"]


def test_restore_matching_the_manifest_has_no_differences() -> None:
    problems, checked = differences(MANIFEST, TABLES, HISTORY, HISTORY, {"a/migrations/0001_initial.py": "f1"})
    assert problems == []
    assert checked == ["2 tables, 3 rows (2 checksummed)", "history rows (django_migrations 1)", "1 migration files"]


def test_restore_differences_name_each_mismatch() -> None:
    now = {"customer": {"rows": 2, "checksum": "zz"}, "Odd x": {"rows": 0, "checksum": "other"},
           "after_snapshot": {"rows": 1, "checksum": "x"}}
    history_now = {"django_migrations": [["2", "customer", "0002_more", "t"]]}
    digests = {"a/migrations/0001_initial.py": "changed", "a/migrations/0002_new.py": "n"}
    problems, _ = differences(MANIFEST, now, HISTORY, history_now, digests)
    assert problems == [
        "tables not in the snapshot: after_snapshot",
        "Odd x: same row count, different contents",
        "customer: 2 rows, the snapshot had 3",
        "django_migrations rows differ from the snapshot (missing 1 customer 0001_initial t; "
        "extra 2 customer 0002_more t)",
        "migration files differ: a/migrations/0001_initial.py, a/migrations/0002_new.py",
    ]
    missing, _ = differences(MANIFEST, {"customer": TABLES["customer"]}, HISTORY, {}, None)
    assert missing == ["tables missing: Odd x", "django_migrations rows differ from the snapshot "
                                                "(missing 1 customer 0001_initial t)"]


def test_the_lock_holder_names_pid_host_and_start_whatever_the_playbook_name() -> None:
    name = run_application_name(4242, "db-host-1", "2026-12-02T05:00:00Z", "a-very-long-playbook-name" * 4)
    assert name.startswith("runbook pid 4242 on db-host-1 since 2026-12-02T05:00:00Z a-very")
    assert len(name.encode()) <= 63
    assert describe_holder(name, "127.0.0.1/32", "2026-12-02T05:00:01Z") == (
        f"{name} (client 127.0.0.1/32, connected at 2026-12-02T05:00:01Z)")
    assert describe_holder(None, None, None) == "a session with no name (a local socket client, connected at ?)"


def test_rows_loaded_by_the_restore_are_read_from_its_last_line() -> None:
    assert loaded_rows('runbook-loaded { "big" : 7000000, "Odd x" : 0 }\n') == {"big": 7_000_000, "Odd x": 0}
    assert loaded_rows("runbook-loaded {}\n") is None  # track_counts off: every table is counted instead
    assert loaded_rows("") is None


def test_a_check_reads_only_the_tables_it_must() -> None:
    asked: list[str] = []

    def query(text: str) -> list[list[object]]:
        asked.append(text)
        if text == TABLES_SQL:
            return [["big", 10**10, True], ["small", 10, True], ["new", 10, True]]
        return [[0, 5, "h:1"], [1, 2, None]]  # the statement's tables, in the order they were asked

    stats = table_stats(query, {"big": None, "small": "h"}, known={"big": 70, "small": 5})
    assert stats == {"big": {"rows": 70, "checksum": None, "loaded": True}, "small": {"rows": 5, "checksum": "h:1"},
                     "new": {"rows": 2, "checksum": None}}
    assert 'FROM public."big"' not in asked[1]  # its rows are known and it has no checksum: not read
    assert 'FROM public."small" t' in asked[1] and 'FROM public."new"' in asked[1]
