"""Pure helpers of the compose target and the database path: the streamed tar, error kinds, service flags."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runbook.database.postgres import is_network_failure
from runbook.engine.prepare import Options, load_project_config
from runbook.errors import StepFailed
from runbook.targets.compose.streams import TAR_CHUNK, tar_stream


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, TAR_CHUNK, TAR_CHUNK * 3 + 7])
def test_streamed_tar_is_a_valid_archive_of_the_file(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    chunks = list(tar_stream(io.BytesIO(data), "stdin", size, 999, 998))
    assert max(len(c) for c in chunks) <= TAR_CHUNK + 2 * tarfile.BLOCKSIZE  # never the whole file at once
    blob = b"".join(chunks)
    assert len(blob) % tarfile.BLOCKSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.size, member.uid, member.gid, member.mode) == ("stdin", size, 999, 998, 0o600)
        assert tar.extractfile(member).read() == data


def test_streamed_tar_refuses_a_file_that_shrank() -> None:
    with pytest.raises(StepFailed, match="shrank while it was being copied"):
        list(tar_stream(io.BytesIO(b"short"), "stdin", 100, 0, 0))


@pytest.mark.parametrize(("text", "network"), [
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
    ("connection failed: connection to server at \"10.0.0.9\", port 5432 failed: timeout expired", True),
    ('connection failed: could not translate host name "db" to address: Name or service not known', True),
    ('connection failed: FATAL:  password authentication failed for user "runbook"', False),
    ('connection failed: FATAL:  database "nope" does not exist', False),
    ('connection failed: FATAL:  no pg_hba.conf entry for host "10.1.1.1"', False),
])
def test_network_failures_are_told_from_answers(text: str, network: bool) -> None:
    assert is_network_failure(RuntimeError(text)) is network


def test_service_flags_override_the_config(tmp_path: Path) -> None:
    (tmp_path / "runbook.yml").write_text("services:\n  db: postgres\n  backend: web\n")
    config = load_project_config(Options(project_dir=tmp_path, backend_service="app"))
    assert (config.services.db, config.services.backend) == ("postgres", "app")
    config = load_project_config(Options(project_dir=tmp_path, db_service="pg"))
    assert (config.services.db, config.services.backend) == ("pg", "web")
