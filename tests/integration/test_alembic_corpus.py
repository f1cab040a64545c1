"""A real-world corpus for Alembic: the revision folders of real projects from PyPI, on PostgreSQL.

Each project's wheel is downloaded on the host (pinned; the containers reach no index) and its revision
files are copied, untouched, into tests/projects/alembic_corpus, whose alembic.ini and minimal env.py are
ours (theirs need the application). Where the revision files import their package (optuna does), the
package and its dependencies are installed into the backend from wheels downloaded on the host.
For each project: upgraded on an empty database; diagnosed healthy; broken into a true two-heads
conflict (a revision of ours on the parent of their head); repaired by the line diagnose prints,
alembic-linearize when only their line is applied, alembic-merge-heads when both are.

One stack, `alembrcorpus` (db on 127.0.0.1:25851, database `corpus`); a fresh database per case.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from diagnosis import assert_healthy, diagnose_then_run_its_line
from stack import (
    REPO,
    alembic_versions,
    db_settings,
    empty_database,
    in_backend,
    reset_app,
    running_stack,
    service_container,
)

from runbook.frameworks.alembic.graph import RevisionGraph
from runbook.frameworks.alembic.version_files import parse_revision

pytestmark = pytest.mark.integration

CORPUS = REPO / "tests" / "projects" / "alembic_corpus"
PROJECT = "alembrcorpus"
DB_PORT = 25851
DB = db_settings(DB_PORT, "corpus")
OURS = "c0ffee000001"


@dataclass(frozen=True)
class Project:
    wheel: str  # the pinned requirement whose wheel ships the revision folder
    versions: str  # the folder inside the wheel
    runtime: tuple[str, ...] = ()  # installed in the backend: what the revision files import
    naming: dict[str, str] | None = None  # their models' MetaData naming convention, which revisions rely on


PROJECTS = {
    "phoenix": Project("arize-phoenix==20.26.1", "phoenix/db/migrations/versions/", naming={
        # phoenix/db/models.py, Base.metadata
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_`%(constraint_name)s`",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }),
    "optuna": Project("optuna==5.1.0", "optuna/storages/_rdb/alembic/versions/",
                      ("optuna==5.1.0", "numpy==2.2.6", "colorlog==6.12.0", "tqdm==4.70.1", "PyYAML==6.0.4")),
}


def _download(directory: Path, requirements: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "-d", str(directory), *requirements], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"cannot download {' '.join(requirements)} on the host: {proc.stderr[-1000:]}")


def _wheel(directory: Path, requirement: str) -> Path:
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    [found] = [p for p in directory.glob("*.whl") if p.name.lower().startswith(stem)]
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("alembic-corpus-wheels")
    wanted = {p.wheel for p in PROJECTS.values()} | {r for p in PROJECTS.values() for r in p.runtime}
    _download(directory, sorted(wanted))
    return directory


@pytest.fixture(scope="module")
def stack(tmp_path_factory, wheels: Path) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT, CORPUS, "corpus") as directory:
        runtime = sorted({r for p in PROJECTS.values() for r in p.runtime})
        staged = directory / "app" / "_wheels"
        staged.mkdir()
        for requirement in runtime:
            shutil.copy(_wheel(wheels, requirement), staged)
        code, output = service_container(PROJECT, "backend").exec_run(
            ["sh", "-c", "/opt/venv/bin/pip install -q --no-index --no-deps /srv/app/_wheels/*.whl"])
        assert code == 0, output.decode()
        shutil.rmtree(staged)
        yield directory


def _versions(directory: Path) -> Path:
    return directory / "app" / "migrations" / "versions"


def _use(directory: Path, wheels: Path, project: Project) -> dict[str, str]:
    """A fresh database and the project's revision files, copied untouched from its wheel."""
    empty_database(DB)
    shutil.rmtree(directory / ".runbook", ignore_errors=True)
    reset_app(directory, CORPUS)
    if project.naming:
        (directory / "app" / "naming_convention.json").write_text(json.dumps(project.naming))
    versions = _versions(directory)
    versions.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel(wheels, project.wheel)) as wheel:
        for name in wheel.namelist():
            if name.startswith(project.versions) and name.endswith(".py") and "/" not in name[len(project.versions):]:
                (versions / Path(name).name).write_bytes(wheel.read(name))
    return _files(directory)


def _files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(_versions(directory).glob("*.py"))}


def _graph(directory: Path) -> RevisionGraph:
    revisions = (parse_revision(p.read_text(), p.name) for p in sorted(_versions(directory).glob("*.py")))
    return RevisionGraph(r for r in revisions if r is not None)


def _conflict(directory: Path) -> tuple[str, str]:
    """Write a revision of ours on the parent of their head: two unlabelled heads sharing an ancestor."""
    graph = _graph(directory)
    [head] = graph.heads()
    parent = graph.revisions[head].down_revisions[0]
    (_versions(directory) / f"{OURS}_runbook_corpus_conflict.py").write_text(f'''"""runbook corpus conflict

Revision ID: {OURS}
Revises: {parent}
Create Date: 2026-12-02 00:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

revision = "{OURS}"
down_revision = "{parent}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("runbook_corpus_conflict", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("runbook_corpus_conflict")
''')
    return head, parent


@pytest.mark.parametrize("name", sorted(PROJECTS))
@pytest.mark.parametrize("applied", [False, True], ids=["linearize", "merge"])
def test_a_real_project_is_healthy_then_its_conflict_is_repaired_by_the_printed_line(
        stack: Path, wheels: Path, runbook_cli: list[str], name: str, applied: bool) -> None:
    theirs = _use(stack, wheels, PROJECTS[name])
    assert len(theirs) >= 5
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    [head] = _graph(stack).heads()
    assert alembic_versions(DB) == [head]
    assert_healthy(runbook_cli, stack)

    their_head, parent = _conflict(stack)
    if applied:
        in_backend(PROJECT, "alembic", "upgrade", "heads")
        assert alembic_versions(DB) == sorted([their_head, OURS])
    playbook = "alembic-merge-heads" if applied else "alembic-linearize"
    proc = diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-multiple-heads",
                                      f"runbook run {playbook} --yes")

    after = _files(stack)
    assert {k: v for k, v in after.items() if k in theirs} == theirs, "a file of the real project changed"
    [final] = _graph(stack).heads()
    assert alembic_versions(DB) == [final]
    if applied:
        assert final not in (head, OURS)
    else:
        assert final == OURS and f'down_revision = "{their_head}"' in proc.stdout.replace("'", '"')
    assert_healthy(runbook_cli, stack)
