#!/usr/bin/env python3
"""Time `runbook diagnose` against one `manage.py showmigrations` on a large Django project.

Generates a project of 60 apps with 10 migrations each (600 migrations, a few cross-app dependencies)
under /var/tmp/runbook-bench-diagnose, brings up a Compose stack of its own on 127.0.0.1:25619, applies
every migration, then prints the best wall time of each command and their ratio (target: under 2x).
With --corpus the project is the real-world corpus of the tests instead (Wagtail, django-oscar,
django-allauth: about 370 migrations), and diagnose is also timed with every history row deleted, where
it infers from the schema how far each app got. Exits 0 whatever the figures: they are read, not asserted.

    .venv/bin/python scripts/benchmark_diagnose.py [--apps 60] [--migrations 10] [--corpus] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STACK = Path(os.environ.get("RUNBOOK_BENCH_DIAGNOSE_DIR", "/var/tmp/runbook-bench-diagnose"))
PROJECT = STACK.name
PORT = 25619
RUNBOOK = str(Path(sys.executable).parent / "runbook")
COMPOSE = ["docker", "compose"] if subprocess.run(["docker", "compose", "version"],
                                                  capture_output=True).returncode == 0 else ["docker-compose"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), cwd=STACK, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[:5])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def best(argv: list[str], repeat: int, codes: tuple[int, ...] = (0,)) -> float:
    """Best wall time of repeat runs: the one least disturbed by the neighbours."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = sh(*argv, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in codes:
            raise SystemExit(f"benchmark: {' '.join(argv[:5])} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return min(times)


def app_files(index: int, migrations: int) -> dict[str, str]:
    """One app: a model that each migration after the first grows by one field."""
    name = f"app{index:02d}"
    fields = [f"    f{n:02d} = models.IntegerField(default=0)\n" for n in range(2, migrations + 1)]
    files = {f"{name}/__init__.py": "", f"{name}/migrations/__init__.py": "",
             f"{name}/models.py": "from django.db import models\n\n\nclass Item(models.Model):\n"
                                  "    title = models.CharField(max_length=100)\n" + "".join(fields)}
    for n in range(1, migrations + 1):
        deps = [(name, f"{n - 1:04d}_step")] if n > 1 else []
        if n == 1 and index > 0:
            deps.append((f"app{index - 1:02d}", "0001_step"))  # a chain across apps, as real projects have
        if n == 1:
            op = ("migrations.CreateModel('Item', [('id', models.BigAutoField(primary_key=True, serialize=False)),"
                  " ('title', models.CharField(max_length=100))])")
        else:
            op = f"migrations.AddField('item', 'f{n:02d}', models.IntegerField(default=0))"
        files[f"{name}/migrations/{n:04d}_step.py"] = (
            "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
            f"    initial = {n == 1}\n    dependencies = {deps!r}\n    operations = [{op}]\n")
    return files


def write_project(apps: int, migrations: int, corpus: bool) -> None:
    app = STACK / "app"
    shutil.rmtree(app, ignore_errors=True)
    if corpus:
        shutil.copytree(REPO / "tests" / "projects" / "corpus", app, ignore=shutil.ignore_patterns("__pycache__"))
        return
    shutil.copytree(REPO / "tests" / "projects" / "shop", app, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("customer", "customer_contact", "catalog"):
        shutil.rmtree(app / name)
    settings = app / "shop" / "settings.py"
    text = settings.read_text()
    for name in ("customer", "customer_contact", "catalog"):
        text = text.replace(f'    "{name}",\n', "")
    names = [f"app{i:02d}" for i in range(apps)]
    settings.write_text(text + f"\nINSTALLED_APPS += {names!r}\n")
    for index in range(apps):
        for path, content in app_files(index, migrations).items():
            (app / path).parent.mkdir(parents=True, exist_ok=True)
            (app / path).write_text(content)


def up() -> None:
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["environment"]["PGPORT"] = str(PORT)
    spec["services"]["backend"]["environment"]["DB_PORT"] = str(PORT)
    spec["services"]["backend"]["volumes"] = ["./app:/srv/app"]
    (STACK / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    sh(*COMPOSE, "down", "-v", check=False)
    sh(*COMPOSE, "up", "-d")
    db = container("db")
    for _ in range(180):
        ready = sh("docker", "exec", db, "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PORT), check=False)
        if ready.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("benchmark: the database never became ready")


def container(service: str) -> str:
    out = sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--filter", f"label=com.docker.compose.service={service}").stdout.split()
    if len(out) != 1:
        raise SystemExit(f"benchmark: expected one {service} container, found {len(out)}")
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=60)
    parser.add_argument("--migrations", type=int, default=10, help="migrations per app")
    parser.add_argument("--corpus", action="store_true", help="the real-world corpus instead of a generated project")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    STACK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(STACK / ".runbook", ignore_errors=True)
    write_project(args.apps, args.migrations, args.corpus)
    up()
    try:
        backend = container("backend")
        sh("docker", "exec", "-w", "/srv/app", backend, "python", "manage.py", "migrate", "--noinput")
        show = best(["docker", "exec", "-w", "/srv/app", backend, "python", "manage.py", "showmigrations"],
                    args.repeat)
        diagnose = best([RUNBOOK, "diagnose"], args.repeat)
        if args.corpus:
            print("project: the real-world corpus (Wagtail, django-oscar, django-allauth), all applied")
        else:
            print(f"project: {args.apps} apps, {args.apps * args.migrations} migrations (+ Django's own), all applied")
        print(f"runbook diagnose:                     {diagnose:.2f} s")
        print(f"docker exec manage.py showmigrations: {show:.2f} s")
        print(f"ratio: {diagnose / show:.2f}x (target: under 2x)")
        if args.corpus:
            sh("docker", "exec", "-e", "PGPASSWORD=runbook-secret", container("db"), "psql", "-h", "127.0.0.1",
               "-p", str(PORT), "-U", "runbook",
               "-d", "shop", "-qc", "DELETE FROM django_migrations")
            lost = best([RUNBOOK, "diagnose"], args.repeat, codes=(3,))
            print(f"runbook diagnose, every history row deleted (inferred from the schema): {lost:.2f} s, "
                  f"{lost / show:.2f}x one showmigrations (reported)")
    finally:
        if not args.keep:
            sh(*COMPOSE, "down", "-v", check=False)


if __name__ == "__main__":
    main()
