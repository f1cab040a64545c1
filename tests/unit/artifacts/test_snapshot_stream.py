"""Beside a snapshot's dump: the sampler, the hasher that follows a growing file, helper jobs, COPY progress."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from runbook.artifacts.snapshot_stream import Beside, CopyProgress, FileHasher
from runbook.progress import Sampler, Transfer
from runbook.targets.base import DatabaseSettings

MiB = 1024 * 1024


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
