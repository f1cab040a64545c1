"""Snapshot and restore on the local target: the host's pg_dump, pg_restore and psql against a real cluster."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from stack import django_backend, local_manage, run_local, write_local_config

pytestmark = pytest.mark.integration


def _state(db: dict) -> dict[str, object]:
    with psycopg.connect(**db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        state: dict[str, object] = {"tables": tables}
        for table in tables:
            state[table] = conn.execute(sql.SQL(
                "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t").format(
                sql.Identifier(table))).fetchone()
    return state


def _files(project: Path) -> dict[str, str]:
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(project.glob("**/migrations/*.py"))}


def test_local_snapshot_and_restore(shop_project: Path, fresh_db: dict, runbook_cli: list[str]) -> None:
    local_manage(shop_project, fresh_db, "migrate", "--noinput")
    local_manage(shop_project, fresh_db, "seed", "--rows", "500")
    with psycopg.connect(**fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE local_extra AS SELECT i AS id, md5(i::text) AS v FROM generate_series(1, 4000) i")
    write_local_config(shop_project, fresh_db, "SHOP_DB_PASSWORD",
                       {"workdir": ".", "manage": [sys.executable, "manage.py"]})
    state, files = _state(fresh_db), _files(shop_project)

    proc = run_local(runbook_cli, shop_project, fresh_db, "snapshot")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [snapshot_id] = [p.name for p in (shop_project / ".runbook" / "snapshots").iterdir()]
    manifest = json.loads((shop_project / ".runbook" / "snapshots" / snapshot_id / "manifest.json").read_text())
    assert manifest["target"] == "local" and manifest["database"]["consistent"] is True
    assert manifest["database"]["tables"]["local_extra"]["rows"] == 4000
    assert sorted(f["path"] for f in manifest["files"]["list"]) == sorted(files)
    assert manifest["files"]["root"] == str(shop_project.resolve())

    with psycopg.connect(**fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM catalog_product WHERE id % 2 = 0")
        conn.execute("DROP TABLE local_extra")
        conn.execute("CREATE TABLE local_after (id int)")
    (shop_project / "catalog" / "migrations" / "0003_after.py").write_text("# after\n")

    proc = run_local(runbook_cli, shop_project, fresh_db, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"the data is back as of snapshot {snapshot_id}" in proc.stdout
    assert _state(fresh_db) == state
    assert _files(shop_project) == files
    assert "runbook-secret" not in proc.stdout + proc.stderr


def test_relative_backend_workdir_on_the_local_target(tmp_path: Path, shop_project: Path, fresh_db: dict,
                                                     runbook_cli: list[str]) -> None:
    # The Django project sits in a subdirectory of the project dir, as `workdir: app` in runbook.yml says.
    project = tmp_path / "deploy"
    project.mkdir()
    app = project / "app"
    shop_project.rename(app)
    local_manage(app, fresh_db, "migrate", "--noinput")
    local_manage(app, fresh_db, "seed", "--rows", "20")
    write_local_config(project, fresh_db, "SHOP_DB_PASSWORD", django_backend(fresh_db, workdir="app"))
    with psycopg.connect(**fresh_db) as conn:
        deleted = conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact') "
                               "RETURNING name").fetchall()
    assert len(deleted) == 3

    proc = run_local(runbook_cli, project, fresh_db, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app/app" not in proc.stdout + proc.stderr
    with psycopg.connect(**fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM django_migrations "
                            "WHERE app IN ('customer', 'customer_contact')").fetchone()[0] == 3
    [snapshot] = (project / ".runbook" / "snapshots").iterdir()
    manifest = json.loads((snapshot / "manifest.json").read_text())
    # The snapshot found the backend's root (`pwd` in backend.workdir) and archived the app's migrations.
    assert manifest["files"]["root"] == str(app.resolve())
    assert sorted(f["path"] for f in manifest["files"]["list"]) == sorted(_files(app))
