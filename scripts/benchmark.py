#!/usr/bin/env python3
"""Measure runbook against the shell commands it replaces, on one Compose stack, in one run.

Every figure is a ratio of two timings taken here and now, so it means something on a shared, noisy
machine: runbook and the bare tool run one after the other, `--repeat` times (alternated, so that a burst
of load slows one pair, not a whole side), and a ratio is the median of the pairs' ratios. Prints a table;
exits 0 whatever the figures (targets are read, not asserted).

    nice -n 10 .venv/bin/python scripts/benchmark.py [--scale 70] [--small-scale 5] [--big-scale 700]
                                                     [--repeat 3] [--snapshot-only] [--keep]

`--big-scale 700` adds the ~10 GiB database (off by default and outside CI: generating it takes minutes).
Needs the Docker engine and image (scripts/install-docker.sh, scripts/build-images.sh) and runbook
installed in the interpreter's environment (scripts/setup-venv.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass
class Run:
    """One timed command: wall time, the runbook process's peak RSS and CPU, the db container's CPU."""

    wall: float
    rss_mb: float = 0.0
    cpu: float = 0.0  # seconds: the process's own (user + system) plus the db container's


def container_cpu(container_id: str) -> float:
    """CPU seconds the container has used so far (cgroup v1 or v2); 0 when neither can be read."""
    full = sh("docker", "inspect", "-f", "{{.Id}}", container_id).stdout.strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{full}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat")
    if v2.exists():
        usage = dict(line.split() for line in v2.read_text().splitlines())
        return int(usage["usage_usec"]) / 1e6
    return 0.0


def measured(db: str, *argv: str, stdin: Path | None = None, stdout: Path | None = None) -> Run:
    """Run a command; return its wall time, its peak RSS alone (MB) and the CPU it and the db container used.

    os.wait4 gives the rusage of the one child waited for, not RUSAGE_CHILDREN's maximum over every
    child this script ever reaped (which would report the largest earlier command instead).
    """
    cpu_before = container_cpu(db)
    start = time.perf_counter()
    with contextlib.ExitStack() as files:
        src = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        dest = files.enter_context(stdout.open("wb")) if stdout else subprocess.PIPE
        # One pipe to read to its end (stdout, or stderr when stdout is a file), then wait4: not reaped before.
        proc = subprocess.Popen(list(argv), cwd=STACK, stdin=src, stdout=dest,
                                stderr=subprocess.PIPE if stdout else subprocess.STDOUT)
        pipe = proc.stderr if stdout else proc.stdout
        text = pipe.read() if pipe else b""
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[:3])} failed:\n{text.decode(errors='replace')[-3000:]}")
    cpu = container_cpu(db) - cpu_before + usage.ru_utime + usage.ru_stime
    return Run(wall, usage.ru_maxrss / 1024, cpu)  # ru_maxrss is in KiB on Linux


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
    # Over the container's unix socket, which trusts local users like the official image. Niced: at
    # --big-scale it runs for minutes on a machine others share.
    sh("docker", "exec", db, "nice", "-n", "10", "pgbench", "-i", "-q", "-s", str(scale), "-U", "runbook", "shop",
       timeout=4 * 3600)
    return int(psql(db, "SELECT pg_database_size('shop')"))


def psql(db: str, query: str) -> str:
    return sh("docker", "exec", db, "psql", "-tA", "-U", "runbook", "-d", "shop", "-c", query).stdout.strip()


def disk_read_rate(db: str) -> str:
    """The disk's sequential read rate under the database, by dd past the page cache (iflag=direct)."""
    path = "$PGDATA/" + psql(db, "SELECT pg_relation_filepath('pgbench_accounts')")
    proc = sh("docker", "exec", db, "sh", "-c", f'dd if="{path}" of=/dev/null bs=1M count=1024 iflag=direct',
              check=False)
    found = [line for line in proc.stderr.splitlines() if "copied" in line]
    return found[-1].split(",")[-1].strip() if found else f"unknown ({proc.stderr.strip()[:80]})"


@dataclass
class Case:
    """One database size: snapshot and restore, runbook against the bare tool, pair by pair."""

    size: int
    snapshot: list[tuple[Run, Run]]
    restore: list[tuple[Run, Run]]
    dump_sizes: tuple[int, int]

    @property
    def peak_mb(self) -> float:
        return max(ours.rss_mb for ours, _ in self.snapshot + self.restore)


def snapshot_case(db: str, scale: int, repeat: int) -> Case:
    """Dump, then restore, with runbook and with the bare tool, alternated, `repeat` times each."""
    note(f"pgbench scale {scale}")
    size = pgbench(db, scale)
    raw = STACK / "raw.dump"
    snapshots = STACK / ".runbook" / "snapshots"
    pairs = []
    for i in range(repeat):
        note(f"scale {scale}: snapshot {i + 1}/{repeat}: `docker exec db pg_dump -Fc > file`, `runbook snapshot`")
        shutil.rmtree(snapshots, ignore_errors=True)  # one snapshot on disk at a time: 10 GiB makes big dumps
        bare = measured(db, "docker", "exec", db, "pg_dump", "-Fc", "-U", "runbook", "shop", stdout=raw)
        pairs.append((measured(db, RUNBOOK, "snapshot"), bare))
    [snapshot_id] = [p.name for p in snapshots.iterdir()]
    ours_size = (snapshots / snapshot_id / "database.dump").stat().st_size
    restores = []
    for i in range(repeat):
        note(f"scale {scale}: restore {i + 1}/{repeat}: `pg_restore --clean --single-transaction`, `runbook restore`")
        bare = measured(db, "docker", "exec", "-i", db, "pg_restore", "--clean", "--if-exists",
                        "--single-transaction", "-U", "runbook", "-d", "shop", stdin=raw)
        restores.append((measured(db, RUNBOOK, "restore", snapshot_id, "--yes"), bare))
    return Case(size, pairs, restores, (ours_size, raw.stat().st_size))


def paired(name: str, pairs: list[tuple[Run, Run]], reference: str, target: str, what: str = "wall") -> str:
    """A table row: the medians of each side and the median of the pairs' ratios (their range in brackets)."""
    ours = [getattr(a, what) for a, _ in pairs]
    theirs = [getattr(b, what) for _, b in pairs]
    ratios = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return (f"| {name} | {statistics.median(ours):.2f} s | {statistics.median(theirs):.2f} s ({reference}) | "
            f"{statistics.median(ratios):.2f}x{spread} | {target} |")


def case_rows(case: Case, snapshot_target: str, restore_target: str) -> list[str]:
    gib = f"{case.size / 2**30:.2f} GiB"
    n = len(case.snapshot)
    ours, theirs = case.dump_sizes
    return [
        paired(f"snapshot of {gib} (median of {n})", case.snapshot, "`docker exec db pg_dump -Fc > file`",
               snapshot_target),
        paired("CPU of that snapshot (runbook process + db container)", case.snapshot, "CPU of `pg_dump -Fc`",
               "reported", what="cpu"),
        f"| dump size, {gib} | {ours / 2**20:.1f} MiB (gzip 1) | {theirs / 2**20:.1f} MiB (gzip 6) | "
        f"{ours / theirs:.2f}x | reported |",
        paired(f"restore of that snapshot, with checks (median of {n})", case.restore,
               "`pg_restore --clean --single-transaction`", restore_target),
        paired("CPU of that restore (runbook process + db container)", case.restore, "CPU of `pg_restore`",
               "reported", what="cpu"),
    ]


def note(text: str) -> None:
    print(f"benchmark: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def row(name: str, runbook: float, reference: float, unit: str, target: str) -> str:
    return f"| {name} | {runbook:.2f} {unit} | {reference:.2f} {unit} | {runbook / reference:.2f}x | {target} |"


def steps_rows(lines: list[str], backend: str, repeat: int) -> None:
    note("20- and 40-step runs, docker exec and compose exec scripts")
    # Per-step overhead: 20 trivial steps, against the same 20 commands through docker exec / compose exec.
    bench20, bench40 = steps_playbook(20), steps_playbook(40)
    run20 = timed(RUNBOOK, "run", str(bench20), "--yes", "--quiet", repeat=repeat)
    run40 = timed(RUNBOOK, "run", str(bench40), "--yes", "--quiet", repeat=repeat)
    docker_script = shell_script("docker-exec-20", [f"docker exec {backend} true"] * 20)
    compose_script = shell_script("compose-exec-20", [" ".join([*COMPOSE, "exec", "-T", "backend", "true"])] * 20)
    docker20 = timed("bash", str(docker_script), repeat=repeat)
    compose20 = timed("bash", str(compose_script), repeat=repeat)
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


def fix_history_rows(lines: list[str], backend: str, db: str, repeat: int) -> None:
    note("fix-history and diagnose")
    # fix-history end to end on the broken history of the demo.
    sh("docker", "exec", db, "psql", "-q", "-U", "runbook", "-d", "shop", "-c",
       "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers")
    sh("docker", "exec", backend, "python", "manage.py", "migrate", "--noinput")
    sh("docker", "exec", backend, "python", "manage.py", "seed", "--rows", "1000")
    sh("docker", "exec", db, "psql", "-q", "-U", "runbook", "-d", "shop", "-c",
       "DELETE FROM django_migrations WHERE app = 'customer'")
    fix = timed(RUNBOOK, "run", "fix-history", "--yes", "--quiet")
    showmigrations = timed("docker", "exec", backend, "python", "manage.py", "showmigrations", repeat=repeat)
    lines.append(row("fix-history end to end (vs one showmigrations)", fix, showmigrations, "s", "reported"))
    diagnose_time = timed(RUNBOOK, "diagnose", repeat=repeat)
    lines.append(row("diagnose of the repaired stack (vs one showmigrations)", diagnose_time, showmigrations, "s",
                     "under 2x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GiB)")
    parser.add_argument("--small-scale", type=int, default=5, help="pgbench scale of the small database")
    parser.add_argument("--big-scale", type=int, default=0,
                        help="pgbench scale of the big database (700 is about 10 GiB; 0, the default: none)")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs per measure")
    parser.add_argument("--big-repeat", type=int, default=1, help="pairs of runs at --big-scale")
    parser.add_argument("--snapshot-only", action="store_true", help="only the snapshot and restore measures")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    up()
    backend, db = container("backend"), container("db")
    lines = ["| measure | runbook | reference | ratio | target |", "|---|--:|--:|--:|---|"]

    if not args.snapshot_only:
        steps_rows(lines, backend, args.repeat)

    # Snapshot and restore of pgbench databases against the bare tools, at two or three sizes: peak
    # memory must not grow with the size.
    cases = [snapshot_case(db, args.small_scale, args.repeat)]
    lines += case_rows(cases[-1], "at most 1.5x", "reported")
    cases.append(snapshot_case(db, args.scale, args.repeat))
    lines += case_rows(cases[-1], "at most 1.0x", "at most 1.1x")
    rate = disk_read_rate(db)
    if args.big_scale:
        cases.append(snapshot_case(db, args.big_scale, args.big_repeat))
        lines += case_rows(cases[-1], "at most 1.0x", "at most 1.1x")
    lines.append("| peak memory of the runbook process (snapshot, restore) | "
                 + ", ".join(f"{c.peak_mb:.0f} MB at {c.size / 2**30:.2f} GiB" for c in cases)
                 + " | | | under 100 MB at 10 GiB |")
    lines.append(f"| disk read rate under the database (`dd iflag=direct`, 1 GiB) | {rate} | | | reported |")
    (STACK / "raw.dump").unlink(missing_ok=True)

    if not args.snapshot_only:
        fix_history_rows(lines, backend, db, args.repeat)

    print(f"runbook benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    print("\n".join(lines))
    if not args.keep:
        sh(*COMPOSE, "down", "-v", check=False)


if __name__ == "__main__":
    main()
