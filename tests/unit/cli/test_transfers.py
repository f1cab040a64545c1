"""The console display of a long copy: plain lines without a terminal, a bar on one."""

from __future__ import annotations

import io

from rich.console import Console

from runbook.cli.transfers import TransferDisplay
from runbook.progress import Transfer

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
