"""Real services for the integration tests: a PostgreSQL cluster on loopback and a copy of the sample project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "tests" / "projects" / "shop"
PG_DIR = os.environ.get("RUNBOOK_TEST_PG_DIR", "/var/tmp/runbook-pg")
PG_PORT = int(os.environ.get("RUNBOOK_TEST_PG_PORT", "25431"))
PG_PASSWORD = os.environ.get("RUNBOOK_PG_PASSWORD", "runbook-secret")


@pytest.fixture(scope="session")
def runbook_cli() -> list[str]:
    """The installed console script next to this interpreter: the tests drive runbook as a user does."""
    script = Path(sys.executable).parent / "runbook"
    if not script.exists():
        pytest.fail(f"no runbook console script at {script}; install the package (scripts/test.sh does)")
    return [str(script)]


@pytest.fixture(scope="session")
def local_pg() -> dict[str, object]:
    """Start (or reuse) the throwaway cluster of scripts/start-postgres.sh; fail, never skip, without it."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "start-postgres.sh"), PG_DIR, str(PG_PORT)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not start PostgreSQL on 127.0.0.1:{PG_PORT}:\n{proc.stderr[-2000:]}")
    return {"host": "127.0.0.1", "port": PG_PORT, "user": "runbook", "password": PG_PASSWORD}


@pytest.fixture
def fresh_db(local_pg):
    """A new empty database for one test, dropped afterwards."""
    name = f"shop_{uuid.uuid4().hex[:10]}"
    admin = dict(local_pg, dbname="postgres")
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield dict(local_pg, dbname=name)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def shop_project(tmp_path: Path) -> Path:
    """A private copy of the sample Django project, so runs cannot touch the repository's files."""
    target = tmp_path / "shop"
    shutil.copytree(SHOP, target, ignore=shutil.ignore_patterns("__pycache__", ".runbook"))
    return target


# The modules that take over a minute, longest first: seconds each alone on the 2-core machine, 2026-12-03
# (corpus 956 while the machine was busy, the others while it was quiet). With two pytest-xdist workers that
# each take one whole module at a time in collection order (scripts/test.sh: `--dist loadfile
# --no-loadscope-reorder`), a long module started last would leave one worker idle while the other finishes
# it; started first, the short modules fill in beside them.
LONGEST_FIRST = [
    "test_corpus_repairs.py",  # 956
    "test_atomic_faults.py",  # 577
    "test_alembic_corpus.py",  # 182
    "test_fix_history.py",  # 176
    "test_atomic_alembic.py",  # 136
    "test_alembic_playbooks.py",  # 124
    "test_alembic_branches.py",  # 91
    "test_fake_conflict.py",  # 90
    "test_reset_playbooks.py",  # 62
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the integration modules first, the longest of them first; the unit tests fill in at the end."""
    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(name)
        return (1, 0) if item.path.is_relative_to(Path(__file__).parent) else (2, 0)

    items.sort(key=rank)  # stable: the order inside each module, and of the modules ranked alike, is kept
