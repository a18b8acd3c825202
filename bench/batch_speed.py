"""Benchmark: a generated class graded by `grade batch`, sequentially and in parallel.

Makes N submissions of sigmoid-2-3-1 (correct, wrong, broken, hostile and hanging ones, in
turn; see tests/batch_support.py), grades them with --jobs 1 and with --jobs equal to the
number of cores, and prints wall time, submissions per minute and the grader's memory: its
resident size after the first tenth of the batch and at the end (flat means no growth per
submission). With --class20, the benchmark's class of bench/submissions.py instead (10 right,
10 wrong or hostile, an endless loop among them; 10 s per cell, as nbgrader was given), with
notebooks per second, the grader's own CPU time and the load average before and after.
With --plain N, N right and wrong notebooks (no hostile, broken or hanging ones: no limit is
met), with notebooks per second and where the machine's CPU went: the grader process, the
child computing the reference values, and the warm parent with every kernel forked from it
(read from /proc every 50 ms; the machine's total from /proc/stat).
The runs pass a fixed cell limit (the measured default of grader/grading/limits.py does not
apply): a class's time then leans on the one loop's limit, which a measured limit (about 5 s
for sigmoid-2-3-1's solution, after `grade validate` or `grade prepare`) keeps short without
--timeout.
Run by hand:  .venv/bin/python bench/batch_speed.py [-n 100] [--class20] [--plain 64] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.batch.run import grade_batch  # noqa: E402
from tests.batch_support import ASSIGNMENT, make_flat, roster  # noqa: E402


class _Memory:
    """A progress sink that samples the grader's resident size as results come."""

    def __init__(self, total: int, skipped: int):
        self.total, self.done, self.samples = total, 0, []

    def add(self, result: object) -> None:
        self.done += 1
        self.samples.append(psutil.Process().memory_info().rss / 2**20)

    def close(self) -> None:
        pass


def run_class20(jobs: int) -> None:
    """Grade the 20 submissions of bench/submissions.py with --jobs `jobs`; print the figures."""
    from submissions import write_submissions

    with tempfile.TemporaryDirectory() as d:
        paths = write_submissions(Path(d) / "src")
        load = os.getloadavg()[0]
        cpu, t = os.times(), time.monotonic()
        s = grade_batch(Path(d) / "src", ASSIGNMENT, Path(d) / "gb.sqlite", jobs=jobs, seed=1,
                        cell_timeout=10)
        wall = time.monotonic() - t
        used = sum(os.times()[:2]) - sum(cpu[:2])
    print(f"--jobs {jobs}: {len(paths)} submissions in {wall:.1f} s ({len(paths) / wall:.2f}/s), {s.counts}; "
          f"grader CPU {used:.1f} s; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")


class _CpuByRole:
    """Samples the CPU time of this process's descendants, by role, while a batch runs."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.last: dict[tuple[int, str], tuple[int, float]] = {}  # (pid, start) -> (parent, CPU-s)
        self.cmd: dict[tuple[int, str], str] = {}  # the grader's direct children's command lines
        self.stop = threading.Event()
        self.own = 0.0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                key = (int(name), fields[19])
                self.last[key] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick)
                if int(fields[1]) == os.getpid() and key not in self.cmd:
                    self.cmd[key] = _cmdline(int(name))

    def _loop(self) -> None:
        while not self.stop.is_set():
            self._sample()
            time.sleep(0.05)
        self.own = time.thread_time()  # the sampling's own CPU, not the grader's

    def __enter__(self) -> _CpuByRole:
        self._sample()
        self.before = dict(self.last)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def roles(self) -> dict[str, float]:
        """CPU-s used during the run: the reference child, and the kernels' side (the warm
        parent, every process forked from it); the grader's own is measured by os.times."""
        parent = {pid: ppid for (pid, _), (ppid, _) in self.last.items()}
        command = {pid: cmd for (pid, _), cmd in self.cmd.items()}
        me = os.getpid()
        out = {"reference values (child process)": 0.0, "kernels (warm parent and its forks)": 0.0}
        for key, (_, cpu) in self.last.items():
            used = cpu - self.before.get(key, (0, 0.0))[1]
            chain, pid = [], key[0]
            while pid in parent and pid != me and len(chain) < 10:
                chain.append(pid)
                pid = parent[pid]
            if pid != me or not chain or used <= 0:
                continue
            cmd = command.get(chain[-1], "")  # the grader's direct child this process descends from
            if "grader.pool.child" in cmd:
                out["reference values (child process)"] += used
            elif "-I" in cmd.split():
                out["kernels (warm parent and its forks)"] += used
        return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return ""


def _busy() -> float:
    """CPU-s the whole machine has spent busy since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_plain(n: int, jobs: int, plan_ahead: bool = True) -> None:
    """Grade n right and wrong notebooks (no limit met); print the rate and where the CPU went."""
    from tests.batch_support import notebook_bytes

    kinds = ("correct", "sign", "scaled", "starter")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        src.mkdir()
        for i in range(n):
            (src / f"s{i:03d}.ipynb").write_bytes(notebook_bytes(kinds[i % len(kinds)], f"s{i:03d}"))
        busy, cpu, t = _busy(), os.times(), time.monotonic()
        with _CpuByRole() as roles:
            s = grade_batch(src, ASSIGNMENT, Path(d) / "gb.sqlite", jobs=jobs, seed=1, cell_timeout=10,
                            plan_ahead=plan_ahead)
        wall = time.monotonic() - t
        grader = sum(os.times()[:2]) - sum(cpu[:2]) - roles.own
        machine = _busy() - busy - roles.own
    print(f"--jobs {jobs}, reference values {'in a child' if plan_ahead else 'in the grader'}: "
          f"{n} right and wrong notebooks in {wall:.1f} s ({n / wall:.2f}/s), {s.counts}")
    print(f"  machine busy {machine:.1f} CPU-s of {wall * (os.cpu_count() or 1):.1f} "
          f"({machine / n:.2f} CPU-s per notebook)")
    print(f"  grader process {grader:.1f} CPU-s ({grader / n:.2f} per notebook)")
    for role, used in roles.roles().items():
        print(f"  {role} {used:.1f} CPU-s ({used / n:.2f} per notebook)")


def run(src: Path, jobs: int, n: int) -> None:
    mem: list[_Memory] = []

    def sink(total: int, skipped: int) -> _Memory:
        mem.append(_Memory(total, skipped))
        return mem[-1]

    with tempfile.TemporaryDirectory() as d:
        t = time.monotonic()
        s = grade_batch(src, ASSIGNMENT, Path(d) / "gb.sqlite", jobs=jobs, seed=1, cell_timeout=5,
                        total_timeout=60, progress=sink)
        wall = time.monotonic() - t
    samples = mem[0].samples
    early = samples[max(0, len(samples) // 10 - 1)]
    print(f"--jobs {jobs}: {n} submissions in {wall:.0f} s ({60 * n / wall:.1f}/min), {s.counts}; "
          f"grader RSS {early:.0f} MB after {len(samples) // 10 or 1}, {samples[-1]:.0f} MB at the end "
          f"(max {max(samples):.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100, help="Number of submissions.")
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, os.cpu_count() or 1])
    parser.add_argument("--class20", action="store_true", help="Grade the benchmark's 20 submissions.")
    parser.add_argument("--plain", type=int, metavar="N", help="Grade N right and wrong notebooks; CPU by role.")
    parser.add_argument("--plan-ahead", choices=["on", "off", "both"], default="on",
                        help="With --plain: reference values in a child process (both: off and on, in turn).")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.plain:
        choice = {"on": [True], "off": [False], "both": [False, True]}[args.plan_ahead]
        for jobs in args.jobs:
            for ahead in choice:
                run_plain(args.plain, jobs, ahead)
        return
    if args.class20:
        sys.path.insert(0, str(ROOT / "bench"))
        for jobs in args.jobs:
            run_class20(jobs)
        return
    with tempfile.TemporaryDirectory() as d:
        src = make_flat(Path(d) / "src", roster(args.n))
        for jobs in args.jobs:
            run(src, jobs, args.n)


if __name__ == "__main__":
    main()
