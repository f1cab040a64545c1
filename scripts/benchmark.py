#!/usr/bin/env python3
"""Measure runbook against the shell commands it replaces, on one Compose stack, in one run.

Every figure is a ratio of two timings taken here and now, so it means something on a shared, noisy
machine. Prints a table; exits 0 whatever the figures (targets are read, not asserted).

    .venv/bin/python scripts/benchmark.py [--scale 70] [--small-scale 5] [--repeat 3] [--keep]

Needs the Docker engine and image (scripts/install-docker.sh, scripts/build-images.sh) and runbook
installed in the interpreter's environment (scripts/setup-venv.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STACK = Path(os.environ.get("RUNBOOK_BENCH_DIR", "/var/tmp/runbook-bench"))
PROJECT = STACK.name
PORT = 25522
RUNBOOK = str(Path(sys.executable).parent / "runbook")
COMPOSE = ["docker", "compose"] if subprocess.run(["docker", "compose", "version"],
                                                  capture_output=True).returncode == 0 else ["docker-compose"]


def sh(*argv: str, cwd: Path = STACK, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[:4])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def timed(*argv: str, repeat: int = 1, **kw) -> float:
    """Best wall time of repeat runs (the least disturbed by the neighbours)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        sh(*argv, **kw)
        best = min(best, time.perf_counter() - start)
    return best


def container(service: str) -> str:
    out = sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--filter", f"label=com.docker.compose.service={service}").stdout.split()
    if len(out) != 1:
        raise SystemExit(f"benchmark: expected one {service} container, found {len(out)}")
    return out[0]


def up() -> None:
    STACK.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["environment"]["PGPORT"] = str(PORT)
    spec["services"]["backend"]["environment"]["DB_PORT"] = str(PORT)
    spec["services"]["backend"]["volumes"] = ["./app:/srv/app"]
    (STACK / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.rmtree(STACK / "app", ignore_errors=True)
    shutil.rmtree(STACK / ".runbook", ignore_errors=True)
    shutil.copytree(REPO / "tests" / "projects" / "shop", STACK / "app")
    sh(*COMPOSE, "down", "-v", check=False)
    sh(*COMPOSE, "up", "-d")
    for _ in range(180):
        if sh("docker", "exec", container("db"), "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PORT),
              check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("benchmark: the database never became ready")


def steps_playbook(count: int) -> Path:
    path = STACK / f"bench-{count}.yml"
    steps = [{"name": f"step {i}", "run": ["true"]} for i in range(count)]
    path.write_text(yaml.safe_dump({"name": f"bench-{count}", "description": "trivial steps",
                                    "snapshot": {"database": False, "history": False}, "steps": steps}))
    return path


def shell_script(name: str, lines: list[str]) -> Path:
    path = STACK / f"{name}.sh"
    path.write_text("set -e\n" + "\n".join(lines) + "\n")
    return path


def peak_rss_mb(*argv: str) -> tuple[float, float]:
    """Run a command; return its wall time and the peak RSS of that process alone, in MB.

    os.wait4 gives the rusage of the one child waited for, not RUSAGE_CHILDREN's maximum over every
    child this script ever reaped (which would report the largest earlier command instead).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=STACK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[:3])} failed:\n{out.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def startup(*argv: str, runs: int = 20) -> tuple[float, float]:
    """Median and best wall time of many runs of a quick command, like hyperfine."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sh(*argv)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def pgbench(db: str, scale: int) -> int:
    """(Re)create the pgbench tables at this scale; return the database size in bytes."""
    # Over the container's unix socket, which trusts local users like the official image.
    sh("docker", "exec", db, "pgbench", "-i", "-q", "-s", str(scale), "-U", "runbook", "shop", timeout=3600)
    return int(sh("docker", "exec", db, "psql", "-tA", "-U", "runbook", "-d", "shop", "-c",
                  "SELECT pg_database_size('shop')").stdout.strip())


def raw_dump(db: str, path: Path) -> float:
    start = time.perf_counter()
    with path.open("wb") as out:
        subprocess.run(["docker", "exec", db, "pg_dump", "-Fc", "-U", "runbook", "shop"], stdout=out, check=True)
    return time.perf_counter() - start


def note(text: str) -> None:
    print(f"benchmark: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def row(name: str, runbook: float, reference: float, unit: str, target: str) -> str:
    return f"| {name} | {runbook:.2f} {unit} | {reference:.2f} {unit} | {runbook / reference:.2f}x | {target} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    parser.add_argument("--small-scale", type=int, default=5,
                        help="pgbench scale of the small database that shows memory does not grow with size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    up()
    backend, db = container("backend"), container("db")
    lines = ["| measure | runbook | reference | ratio | target |", "|---|--:|--:|--:|---|"]

    note("20- and 40-step runs, docker exec and compose exec scripts")
    # Per-step overhead: 20 trivial steps, against the same 20 commands through docker exec / compose exec.
    bench20, bench40 = steps_playbook(20), steps_playbook(40)
    run20 = timed(RUNBOOK, "run", str(bench20), "--yes", "--quiet", repeat=args.repeat)
    run40 = timed(RUNBOOK, "run", str(bench40), "--yes", "--quiet", repeat=args.repeat)
    docker_script = shell_script("docker-exec-20", [f"docker exec {backend} true"] * 20)
    compose_script = shell_script("compose-exec-20", [" ".join([*COMPOSE, "exec", "-T", "backend", "true"])] * 20)
    docker20 = timed("bash", str(docker_script), repeat=args.repeat)
    compose20 = timed("bash", str(compose_script), repeat=args.repeat)
    lines.append(row("20 steps, whole run", run20, docker20, "s", "within 1.10x of `docker exec`"))
    lines.append(row("20 steps vs compose exec", run20, compose20, "s", "several times faster (< 1x)"))
    per_step = (run40 - run20) / 20
    lines.append(row("per step (40-step minus 20-step run)", per_step * 1000, docker20 / 20 * 1000, "ms",
                     "within 1.10x of one `docker exec`"))

    note("start-up")
    # Start-up: median of 20 runs (the best one in brackets).
    for argv in (["--help"], ["list"]):
        median, best = startup(RUNBOOK, *argv)
        lines.append(f"| `runbook {' '.join(argv)}` (median of 20; best {best:.2f} s) | {median:.2f} s | | | "
                     "under 0.3 s |")

    # Snapshot of a pgbench database against the raw pg_dump (best of --repeat each), at two sizes: peak
    # memory must not grow with the size.
    dump = STACK / "raw.dump"
    for scale in (args.small_scale, args.scale):
        note(f"pgbench scale {scale}, raw pg_dump, runbook snapshot")
        size = pgbench(db, scale)
        # Alternated and repeated: a neighbour's burst of load then slows one of each pair, not a whole side.
        raw, snap_time, rss = float("inf"), float("inf"), 0.0
        for _ in range(args.repeat):
            raw = min(raw, raw_dump(db, dump))
            wall, peak = peak_rss_mb(RUNBOOK, "snapshot")
            snap_time, rss = min(snap_time, wall), max(rss, peak)
        lines.append(row(f"snapshot of {size / 2**30:.2f} GiB (time)", snap_time, raw, "s",
                         "throughput at least 0.9x raw (ratio at most 1.11x)"))
        lines.append(f"| peak memory of the runbook process, snapshot of {size / 2**30:.2f} GiB | {rss:.0f} MB "
                     "| | | under 100 MB |")

    note("restore")
    # Restore of that snapshot against raw pg_restore.
    snapshot_id = sorted((STACK / ".runbook" / "snapshots").iterdir())[-1].name
    restore_time = timed(RUNBOOK, "restore", snapshot_id, "--yes")
    start = time.perf_counter()
    with dump.open("rb") as src:
        subprocess.run(["docker", "exec", "-i", db, "pg_restore", "--clean", "--if-exists", "--single-transaction",
                        "-U", "runbook", "-d", "shop"], stdin=src, check=True, capture_output=True)
    raw_restore = time.perf_counter() - start
    lines.append(row("restore of that snapshot", restore_time, raw_restore, "s", "reported"))
    dump.unlink()

    note("fix-history and diagnose")
    # fix-history end to end on the broken history of the demo.
    sh("docker", "exec", db, "psql", "-q", "-U", "runbook", "-d", "shop", "-c",
       "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers")
    sh("docker", "exec", backend, "python", "manage.py", "migrate", "--noinput")
    sh("docker", "exec", backend, "python", "manage.py", "seed", "--rows", "1000")
    sh("docker", "exec", db, "psql", "-q", "-U", "runbook", "-d", "shop", "-c",
       "DELETE FROM django_migrations WHERE app = 'customer'")
    fix = timed(RUNBOOK, "run", "fix-history", "--yes", "--quiet")
    showmigrations = timed("docker", "exec", backend, "python", "manage.py", "showmigrations", repeat=args.repeat)
    lines.append(row("fix-history end to end (vs one showmigrations)", fix, showmigrations, "s", "reported"))
    diagnose_time = timed(RUNBOOK, "diagnose", repeat=args.repeat)
    lines.append(row("diagnose of the repaired stack (vs one showmigrations)", diagnose_time, showmigrations, "s",
                     "under 2x"))

    print(f"runbook benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    print("\n".join(lines))
    if not args.keep:
        sh(*COMPOSE, "down", "-v", check=False)


if __name__ == "__main__":
    main()
