"""Benchmark and proof at scale: a few hundred submissions graded three ways, the same results.

Makes N submissions of sigmoid-2-3-1 (300 by default): in turn one of the batch tests' kinds
(tests/batch_support.py: correct, wrong, broken, hostile, hanging, forbidden; as
bench/batch_speed.py makes them) and one of the benchmark's class (bench/submissions.py: right
ones in other wordings, wrong, hostile); each notebook is signed by its student, so each has
its own hash and seed. Then grades them with the `grade batch` command, three times, with the
same batch seed:

1. locally, `--jobs J`;
2. on a loopback Dask cluster this script starts (`dask scheduler` and two `dask worker`s, one
   thread each), `--scheduler`;
3. locally again, killed with SIGKILL once half the results are in, then the same command
   again (it resumes, and sweeps what the killed run left in its temporary folder).

and checks: the same per-student results in the three gradebooks (status, score, and each
check's status, points and diagnosis codes), exactly one current result per submission, none
lost, none graded twice; every report written (and report.html loaded in Chromium if it is
installed); nothing of the killed run left after the resumed one. Prints a markdown table: wall
time, notebooks/s, the grader's peak resident memory (the `grade` process alone), the statuses;
and the verdict. Exit status 0 when every check holds.

Run by hand:  .venv/bin/python bench/batch_scale.py [-n 300] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.submissions import submissions  # noqa: E402
from tests.batch_support import ASSIGNMENT, notebook_bytes, roster  # noqa: E402

GRADE = [sys.executable, "-c", "from grader.cli import main; main()", "batch"]
DASK = str(Path(sys.executable).with_name("dask"))
# A mark only grader-made temporary folders carry (workspaces, kernels' folders, staging).
TEMP_PREFIXES = ("grader-", "gk-")


def make_class(folder: Path, n: int) -> dict[str, str]:
    """Write n signed submissions into `folder`; student -> kind."""
    folder.mkdir(parents=True, exist_ok=True)
    bench = submissions()
    kinds: dict[str, str] = {}
    for i, (student, kind) in enumerate(roster(n)):
        if i % 2 == 0:  # the batch tests' kinds, in turn
            data = notebook_bytes(kind, student)
        else:  # the benchmark's class, in turn, signed so that each notebook is unique
            kind, _, nb = bench[(i // 2) % len(bench)]
            nb = nbformat.from_dict(json.loads(nbformat.writes(nb)))
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"Submitted by {student}"))
            data = nbformat.writes(nb).encode()
        (folder / f"{student}.ipynb").write_bytes(data)
        kinds[student] = kind
    return kinds


@dataclass
class Run:
    """One `grade batch` command's outcome."""

    name: str
    wall: float = 0.0
    peak_rss: int = 0
    codes: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def results(db: Path) -> int:
    """Results recorded so far (0 while the gradebook is being made)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def grade(run: Run, args: list[str], env: dict[str, str],
          stop: Callable[[], bool] | None = None) -> subprocess.Popen[bytes]:
    """Run `grade batch ARGS` to its end (or SIGKILL it once `stop()`), sampling its memory."""
    t = time.monotonic()
    log = open(Path(env["BENCH_LOG"]), "ab")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*GRADE, *args], env=env, stdout=log, stderr=log)
    me = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            run.peak_rss = max(run.peak_rss, me.memory_info().rss)  # the grader only
        except psutil.Error:
            pass
        if stop is not None and stop():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    log.close()
    run.wall += time.monotonic() - t
    run.codes.append(proc.returncode)
    return proc


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A loopback Dask scheduler and two workers (one thread each), started and stopped here."""

    def __init__(self, folder: Path, env: dict[str, str]):
        folder.mkdir()
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        env = {**env, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self.procs = [subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
             "127.0.0.1:0"], env=env, cwd=folder, stdout=subprocess.DEVNULL,
            stderr=open(folder / "scheduler.log", "w"))]  # noqa: SIM115
        for i in range(2):
            self.procs.append(subprocess.Popen(
                [DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--name", f"w{i}", "--local-directory", str(folder / f"w{i}")],
                env=env, cwd=folder, stdout=subprocess.DEVNULL,
                stderr=open(folder / f"worker{i}.log", "w")))  # noqa: SIM115
        from distributed import Client

        with Client(self.address, timeout="120s") as c:
            c.wait_for_workers(2, timeout=300)

    def workers_rss(self) -> int:
        """The workers' resident memory now (with the warm parents they hold)."""
        total = 0
        for p in self.procs[1:]:
            try:
                me = psutil.Process(p.pid)
                total += sum(q.memory_info().rss for q in [me, *me.children()])
            except psutil.Error:
                continue
        return total

    def warm_processes(self) -> list[psutil.Process]:
        """The workers' warm parents and what was forked from them (they carry its source)."""
        out = []
        for p in self.procs[1:]:
            with contextlib.suppress(psutil.Error):
                out += [q for q in psutil.Process(p.pid).children(recursive=True)
                        if "PRELOAD = (" in " ".join(_cmdline(q))]
        return out

    def stop(self) -> None:
        """Stop the workers, then the scheduler (SIGTERM: a normal shutdown)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def current(db: Path) -> dict[str, tuple]:
    """student -> (status, score, [(check, status, points, codes)]) of the current runs."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT s.student, r.status, r.score, r.report FROM runs r JOIN submissions s "
                         "ON s.id = r.submission_id WHERE r.current").fetchall()
    out = {}
    for student, status, score, report in rows:
        checks = [(k["id"], k["status"], k["points"], [d["code"] for d in k["diagnosis"]])
                  for k in json.loads(report)["checks"]]
        out[student] = (status, score, checks)
    return out


def integrity(db: Path, students: set[str]) -> list[str]:
    """What is wrong with a gradebook: lost, unknown, duplicated or twice-current submissions."""
    problems = []
    with sqlite3.connect(db) as c:
        per = dict(c.execute("SELECT s.student, count(*) FROM runs r JOIN submissions s "
                             "ON s.id = r.submission_id WHERE r.current GROUP BY s.student"))
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
    lost, extra = students - set(per), set(per) - students
    twice = [s for s, k in per.items() if k != 1]
    if lost:
        problems.append(f"{len(lost)} submissions without a result (e.g. {sorted(lost)[:3]})")
    if extra:
        problems.append(f"{len(extra)} unknown students")
    if twice:
        problems.append(f"{len(twice)} submissions with several current results")
    if runs != len(students):
        problems.append(f"{runs} results recorded for {len(students)} submissions (each once expected)")
    return problems


def report_problems(out: Path, n: int) -> list[str]:
    """What is missing from the reports: the files, or (with Chromium) a page that renders."""
    problems = [f"{out.name}/{f} missing" for f in ("report.html", "grades.csv", "results.jsonl")
                if not (out / f).is_file()]
    if not problems and len(list((out / "feedback").glob("*.html"))) != n:
        problems.append(f"{out.name}: not one feedback page per student")
    from tests.chromium_support import chromium, load

    if not problems and chromium() is not None:
        got = load((out / "report.html").as_uri(),
                   {"students": "document.querySelectorAll('#students-table tbody tr').length",
                    "images": "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"})
        if got["errors"] or got["values"]["students"] != n or got["values"]["images"] < 3:
            problems.append(f"{out.name}/report.html does not render in Chromium: {got}")
    return problems


def leftovers(tmp: Path) -> list[str]:
    """Grader-made folders in a temporary folder."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(TEMP_PREFIXES))


def differences(a: dict[str, tuple], b: dict[str, tuple]) -> list[str]:
    """Students whose results differ between two gradebooks, with the first difference."""
    out = []
    for s in sorted(set(a) | set(b)):
        if a.get(s) != b.get(s):
            out.append(f"{s}: {a.get(s, 'missing')!s:.200} != {b.get(s, 'missing')!s:.200}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="Number of submissions (300).")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the local runs (2).")
    parser.add_argument("--timeout", type=float, default=5, help="Cell time limit, seconds (5).")
    parser.add_argument("--total-timeout", type=float, default=60, help="Per-submission limit (60).")
    parser.add_argument("--seed", type=int, default=2026, help="The batch seed (2026).")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temporary one).")
    args = parser.parse_args()
    if args.n < 2:
        parser.error("-n must be at least 2")
    work = args.keep or Path(tempfile.mkdtemp(prefix="batch-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ok = bench(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


def bench(args: argparse.Namespace, work: Path) -> bool:
    """Make the class, grade it three ways, check and print; whether every check held."""
    load0 = os.getloadavg()
    src = work / "src"
    kinds = make_class(src, args.n)
    students = set(kinds)
    base = ["-a", ASSIGNMENT, "--seed", str(args.seed), "--timeout", str(args.timeout),
            "--total-timeout", str(args.total_timeout), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_LOG": str(work / "grade.log")}
    runs: list[Run] = []
    problems: list[str] = []

    local = Run(f"local, `--jobs {args.jobs}`")
    grade(local, [str(src), *base, "--db", str(work / "local.sqlite"), "--out", str(work / "local-out"),
                  "--jobs", str(args.jobs)], env)
    runs.append(local)
    print(f"local run done in {local.wall:.0f} s", file=sys.stderr)

    remote = Run("Dask, 2 workers × 1 thread")
    cluster = Cluster(work / "dask", env)
    try:
        grade(remote, [str(src), *base, "--db", str(work / "dask.sqlite"), "--out", str(work / "dask-out"),
                       "--scheduler", cluster.address], env)
        remote.notes.append(f"workers {cluster.workers_rss() / 2**20:.0f} MB at the end")
        warm = cluster.warm_processes()
    finally:
        cluster.stop()
    time.sleep(2)
    stray = [p for p in warm if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if stray:
        problems.append(f"{len(stray)} warm parents or kernels outlived the stopped workers")
    with sqlite3.connect(work / "dask.sqlite") as c:
        starts = [json.loads(e).get("kernel_start") for (e,) in c.execute("SELECT environment FROM runs")]
    remote.notes.append(f"kernels: {starts.count('forked')} forked, {starts.count('cold')} cold")
    runs.append(remote)
    print(f"Dask run done in {remote.wall:.0f} s", file=sys.stderr)

    killed = Run("local, `kill -9` at half, then resumed")
    tmp = work / "tmp-killed"  # the killed run's temporary folder: what it leaves is found there
    tmp.mkdir()
    kenv = {**env, "TMPDIR": str(tmp)}
    db = work / "killed.sqlite"
    kargs = [str(src), *base, "--db", str(db), "--out", str(work / "killed-out"), "--jobs", str(args.jobs)]
    grade(killed, kargs, kenv, stop=lambda: results(db) >= args.n // 2)
    at_kill = results(db)
    left = leftovers(tmp)
    killed.notes.append(f"{at_kill} results before the kill; it left {len(left)} temporary folders")
    grade(killed, kargs, kenv)
    after = leftovers(tmp)
    if after:
        problems.append(f"the resumed run left {len(after)} temporary folders: {after[:3]}")
    killed.notes.append(f"{len(after)} left after the resumed run")
    runs.append(killed)

    books = {"local": work / "local.sqlite", "dask": work / "dask.sqlite", "killed": db}
    for name, path in books.items():
        problems += [f"{name}: {p}" for p in integrity(path, students)]
    ref = current(books["local"])
    for name in ("dask", "killed"):
        diff = differences(ref, current(books[name]))
        problems += [f"local vs {name}: {d}" for d in diff[:5]]
        if len(diff) > 5:
            problems.append(f"local vs {name}: {len(diff) - 5} more students differ")
    for out in ("local-out", "dask-out", "killed-out"):
        problems += report_problems(work / out, args.n)
    bad_codes = [(r.name, r.codes) for r in runs if r.codes[-1] not in (0, 1)]  # (1: some error rows)
    problems += [f"{name}: exit codes {codes}" for name, codes in bad_codes]

    statuses: dict[str, int] = {}
    for status, *_ in ref.values():
        statuses[status] = statuses.get(status, 0) + 1
    load1 = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} at the start, "
          f"{load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f} at the end")
    print(f"{args.n} submissions of {ASSIGNMENT}, batch seed {args.seed}, cell limit {args.timeout:g} s, "
          f"submission limit {args.total_timeout:g} s; results: "
          + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print()
    print("| run | wall | notebooks/s | grader peak RSS | exit codes | notes |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.name} | {r.wall:.0f} s | {args.n / r.wall:.2f} | {r.peak_rss / 2**20:.0f} MB | "
              f"{', '.join(map(str, r.codes))} | {'; '.join(r.notes)} |")
    print()
    if problems:
        print("Verdict: FAILED")
        for p in problems:
            print(f"- {p}")
        return False
    from tests.chromium_support import chromium

    rendered = " (report.html rendered in Chromium)" if chromium() is not None else ""
    print("Verdict: the three gradebooks agree on every student (status, score, every check's status, "
          "points and codes); one current result per submission, none lost, none graded twice; "
          f"all reports written{rendered}; nothing of the killed run left.")
    return True


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


if __name__ == "__main__":
    main()
