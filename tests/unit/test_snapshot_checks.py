"""The pure checks around snapshots: rows read back from a dump, restore differences, the lock holder."""

from __future__ import annotations

from runbook.database import describe_holder, run_application_name
from runbook.restore import differences
from runbook.snapshot_dump import parse_row_counts, size_problems

TABLES = {"customer": {"rows": 3, "checksum": "c1"}, "Odd x": {"rows": 0, "checksum": "c2"}}
MANIFEST = {
    "database": {"tables": TABLES},
    "files": {"root": "/srv/app", "patterns": [], "list": [{"path": "a/migrations/0001_initial.py", "sha256": "f1"}]},
}
HISTORY = {"django_migrations": [["1", "customer", "0001_initial", "t"]]}


def test_rows_read_back_are_parsed_per_table_with_the_exit_status() -> None:
    status, counts = parse_row_counts('rows 3 public.customer\nrows 0 public."Odd x"\nrows 2 public.p_1\n'
                                      "runbook-exit 0\n")
    assert status == 0 and counts == {"customer": 3, "Odd x": 0, "p_1": 2}
    assert parse_row_counts("rows 1 public.t\n")[0] is None  # cut before pg_restore ended: not a success


def test_a_dump_holding_other_row_counts_is_a_problem() -> None:
    assert size_problems(4096, TABLES, {"customer": 3, "Odd x": 0}, True) == []
    assert size_problems(4096, TABLES, {"customer": 2, "Odd x": 0}, True) == [
        "database.dump holds 2 rows of table customer, the database had 3"]
    # Without one exported snapshot only an empty dump of a table with rows is proof of a problem.
    assert size_problems(4096, TABLES, {"customer": 2}, False) == []
    assert size_problems(4096, TABLES, {"customer": 0}, False) == [
        "database.dump holds 0 rows of table customer, the database had 3"]
    assert size_problems(0, TABLES, {}, True) == ["database.dump is empty (0 bytes)"]


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
