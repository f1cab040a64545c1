"""Progress of long copies: the console display, the sampler, and the hasher that follows a growing file."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest
from rich.console import Console

from runbook.artifacts.snapshot_stream import Beside, CopyProgress, FileHasher
from runbook.cli.transfers import TransferDisplay
from runbook.progress import Sampler, Transfer
from runbook.targets.base import DatabaseSettings

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain_display(clock: Clock) -> tuple[TransferDisplay, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return TransferDisplay(console, delay=3.0, every=10.0, clock=clock), out


def test_without_a_terminal_a_long_copy_prints_a_plain_line_now_and_then() -> None:
    clock = Clock()
    display, out = plain_display(clock)
    for at, done in ((0, 0), (1, 100), (2.5, 250), (3, 300), (5, 500), (12, 1200), (13, 1300), (23, 2300)):
        clock.now = 100.0 + at
        display(Transfer("snapshot", done * MiB, 2800 * MiB, "of the tables read"))
    clock.now = 125.0
    display(Transfer("snapshot", 2800 * MiB, 2800 * MiB, "of the tables read", finished=True))
    assert out.getvalue().splitlines() == [
        # after `delay` seconds, then every `every` seconds: rate and time left from the mean so far
        "snapshot: 300.0 MiB of 2.7 GiB of the tables read, 100.0 MiB/s, about 25 s left",
        "snapshot: 1.3 GiB of 2.7 GiB of the tables read, 100.0 MiB/s, about 15 s left",
        "snapshot: 2.2 GiB of 2.7 GiB of the tables read, 100.0 MiB/s, about 5 s left",
    ]


def test_a_short_copy_shows_nothing_and_an_unknown_total_shows_no_time_left() -> None:
    clock = Clock()
    display, out = plain_display(clock)
    display(Transfer("restore", 0, 10 * MiB))
    clock.now += 2.9
    display(Transfer("restore", 10 * MiB, 10 * MiB, finished=True))
    assert out.getvalue() == ""
    display(Transfer("snapshot", 0))
    clock.now += 4
    display(Transfer("snapshot", 8 * MiB, None, "of dump written"))
    assert out.getvalue() == "snapshot: 8.0 MiB of dump written, 2.0 MiB/s\n"


def test_on_a_terminal_a_bar_shows_bytes_rate_and_time_left_and_goes_away_at_the_end() -> None:
    clock = Clock()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    display = TransferDisplay(console, delay=3.0, clock=clock)
    display(Transfer("restore", 0, 100 * MiB, "of the dump read"))
    clock.now += 4
    display(Transfer("restore", 40 * MiB, 100 * MiB, "of the dump read"))
    assert display._bar is not None
    display._bar.refresh()
    assert "restore of the dump read" in out.getvalue() and "40.0/100.0 MiB" in out.getvalue()
    display(Transfer("restore", 100 * MiB, 100 * MiB, "of the dump read", finished=True))
    assert display._bar is None


def test_the_sampler_reports_the_end_whatever_ended_the_copy() -> None:
    seen: list[Transfer] = []
    with pytest.raises(RuntimeError), Sampler(seen.append, lambda: Transfer("snapshot", 7), interval=60):
        raise RuntimeError("the copy failed")
    assert seen == [Transfer("snapshot", 7, finished=True)]


def test_the_hasher_follows_a_file_while_it_is_written(tmp_path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"")
    blocks = [os.urandom(n) for n in (1, 4096, 3 * MiB + 7, 0, 65536, 12345)]
    started = threading.Event()

    def write() -> None:
        with path.open("ab", buffering=0) as fh:
            for block in blocks:
                started.set()
                fh.write(block)

    hasher = FileHasher(path)
    writer = Beside(write, "writer")
    started.wait()
    writer.result()
    size, digest = hasher.finish()
    data = b"".join(blocks)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_helper_job_hands_its_error_to_the_caller() -> None:
    def fail() -> None:
        raise ValueError("in the helper")

    with pytest.raises(ValueError, match="in the helper"):
        Beside(fail, "failing").result()
    assert Beside(lambda: 42, "answer").result() == 42


def test_the_tables_read_by_pg_dump_count_in_full_once_it_moved_past_them() -> None:
    copy = CopyProgress(DatabaseSettings(), "runbook dump x")
    copy.sizes = {1: (800, 1000.0), 2: (100, 0.0), 3: (100, 50.0)}  # table 2 was never analyzed
    assert copy.advance([]) == 0
    assert copy.advance([(1, 250, 9999)]) == 200  # a quarter of its estimated rows
    assert copy.advance([(1, 2000, 9999)]) == 800  # more rows than estimated: the table, no more
    assert copy.advance([(2, 0, 30)]) == 800 + 30  # no estimate: its bytes instead
    assert copy.advance([]) == 830  # between two tables: the last look stands
    assert copy.advance([(3, 25, 0)]) == 800 + 100 + 50
