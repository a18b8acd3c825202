"""Benchmark: a generated class graded by `grade batch`, sequentially and in parallel.

Makes N submissions of sigmoid-2-3-1 (correct, wrong, broken, hostile and hanging ones, in
turn; see tests/batch_support.py), grades them with --jobs 1 and with --jobs equal to the
number of cores, and prints wall time, submissions per minute and the grader's memory: its
resident size after the first tenth of the batch and at the end (flat means no growth per
submission). With --class20, the benchmark's class of bench/submissions.py instead (10 right,
10 wrong or hostile, an endless loop among them; 10 s per cell, as nbgrader was given), with
notebooks per second, the grader's own CPU time and the load average before and after.
Run by hand:  .venv/bin/python bench/batch_speed.py [-n 100] [--class20] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
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
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
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
