"""One run per project: a second lock is refused, and a dead holder never leaves a stale lock."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from runbook.artifacts.lock import RunLock
from runbook.errors import LockHeld
from runbook.fsutil import ensure_private_dir


def test_second_lock_refused_naming_holder(tmp_path):
    artifacts = tmp_path / ".runbook"
    with RunLock(artifacts, "fix-history"), pytest.raises(LockHeld) as info:
        RunLock(artifacts, "fake-initial").acquire()
    message = str(info.value)
    assert "playbook fix-history" in message
    assert f"host {socket.gethostname()}" in message
    assert f"pid {os.getpid()}" in message
    started = message.split("started ", 1)[1].split()[0].rstrip(",)")
    assert len(started) == len("2024-01-01T00:00:00Z") and started.endswith("Z")
    assert info.value.exit_code == 5


def test_lock_can_be_taken_again_after_release(tmp_path):
    lock = RunLock(tmp_path, "a")
    lock.acquire()
    lock.release()
    again = RunLock(tmp_path, "b")
    again.acquire()
    with pytest.raises(LockHeld):
        RunLock(tmp_path, "c").acquire()
    again.release()
    lock.acquire()
    lock.release()


def test_artifacts_dir_is_private(tmp_path):
    artifacts = tmp_path / "deep" / ".runbook"
    with RunLock(artifacts, "a") as lock:
        assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700
        assert stat.S_IMODE(lock.path.stat().st_mode) & 0o077 == 0
    existing = tmp_path / "open"
    existing.mkdir(mode=0o755)
    ensure_private_dir(existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700


def test_lock_of_a_killed_process_is_free_at_once(tmp_path):
    artifacts = tmp_path / ".runbook"
    holder = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from runbook.artifacts.lock import RunLock
        RunLock(Path({str(artifacts)!r}), "child-run").acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as info:
            RunLock(artifacts, "parent").acquire()
        assert f"pid {child.pid}" in str(info.value)
        assert "playbook child-run" in str(info.value)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # No stale lock: the kernel dropped the flock with the process.
    with RunLock(artifacts, "parent"):
        pass
