"""Bounded memory for command output: the report's head-and-tail buffer and the console's unfinished line."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console

from runbook.cli import console as cli
from runbook.targets.capture import HEAD_CHARS, TAIL_CHARS, OutputBuffer


def _reference(chunks: list[str], head: int, tail: int) -> tuple[str, int]:
    """What the buffer must keep, computed the slow obvious way."""
    whole = "".join(chunks)
    kept_tail = whole[head:][-tail:] if len(whole) > head else ""
    return whole[:head] + "|" + kept_tail, max(0, len(whole) - head - tail)


def test_output_buffer_matches_the_obvious_rule_for_any_chunking() -> None:
    rng = random.Random(7)
    for _ in range(200):
        head, tail = rng.randint(0, 30), rng.randint(1, 30)
        chunks = ["".join(rng.choice("abcxyz") for _ in range(rng.randint(0, 25))) for _ in range(rng.randint(0, 12))]
        buffer = OutputBuffer(head=head, tail=tail)
        for chunk in chunks:
            buffer.add(chunk)
        expected, dropped = _reference(chunks, head, tail)
        assert buffer.dropped == dropped
        text = buffer.text()
        if dropped:
            kept_head, _, kept_tail = text.partition(f"\n[... {dropped} characters cut by runbook ...]\n")
            assert kept_head + "|" + kept_tail == expected
        else:
            assert text == expected.replace("|", "", 1)


def test_output_buffer_keeps_the_tail_as_chunks_and_accounts_for_every_character() -> None:
    # 80 MiB in 4 KiB chunks past a full 512 KiB tail. The tail is held as the last chunks (trimming the
    # front costs one chunk, never a copy of the whole tail); its size and what was cut add up exactly.
    buffer = OutputBuffer()
    chunks = [f"{i:07d}" + "x" * 4089 for i in range(20_000)]
    for chunk in chunks:
        buffer.add(chunk)
    assert buffer.truncated and len(buffer._tail) <= TAIL_CHARS // 4096 + 1
    assert buffer._tail_size == TAIL_CHARS and buffer.dropped == 20_000 * 4096 - HEAD_CHARS - TAIL_CHARS
    text = buffer.text()
    assert text.startswith(chunks[0]) and text.endswith(chunks[-1]) and len(text) < 1.1 * 1024 * 1024
    assert f"[... {buffer.dropped} characters cut by runbook ...]" in text


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    sink = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=sink, highlight=False, soft_wrap=True, no_color=True))
    return sink


def test_console_holds_at_most_64_kib_of_an_unfinished_line(printed: io.StringIO) -> None:
    progress = cli.Progress()
    largest = 0
    for _ in range(256):  # 1 MiB with no newline, as a binary dump or one huge JSON line prints
        progress("output", {"stream": "stdout", "text": "y" * 4096})
        largest = max(largest, len(progress.partial["stdout"]))
    assert largest <= cli.PARTIAL_LIMIT
    progress("output", {"stream": "stdout", "text": "end\n"})
    shown = "".join(line.removeprefix("   | ") for line in printed.getvalue().splitlines())
    assert shown == "y" * (256 * 4096) + "end"


def test_console_still_joins_lines_split_across_chunks(printed: io.StringIO) -> None:
    progress = cli.Progress()
    for text in ("Applying shop.0001_initial...", " OK\nApplying", " shop.0002... OK\n"):
        progress("output", {"stream": "stdout", "text": text})
    assert printed.getvalue().splitlines() == ["   | Applying shop.0001_initial... OK", "   | Applying shop.0002... OK"]
