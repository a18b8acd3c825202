"""Benchmark: how long a kernel takes to be ready, started cold and forked from a warm parent.

Starts N kernels each way (interleaved: cold, forked, cold, ...), each in a fresh workspace as
grading does, and prints the median and range of the time from asking for a kernel to its
first answer, the grader's CPU time per kernel, and the time to start the warm parent itself.
Then grades the seed-style notebook N times each way (one after another, one launcher each),
and 2N times each way two at a time (as `--jobs 2` would), in notebooks per second.
Run by hand (as root, for the warm path):  .venv/bin/python bench/kernel_start.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import grade_notebook, grade_notebook_async  # noqa: E402
from grader.kernels.launch import LocalKernelLauncher  # noqa: E402
from grader.kernels.stop import stop_kernel  # noqa: E402
from grader.kernels.warm import WarmKernelLauncher  # noqa: E402
from grader.kernels.workspace import make_workspace  # noqa: E402

NOTEBOOK = ROOT / "tests/notebooks/sigmoid-2-3-1/seed_style.ipynb"


async def ready_time(launcher: LocalKernelLauncher) -> tuple[float, float]:
    """(wall seconds until the kernel answers, grader CPU seconds spent on it)."""
    ws = make_workspace(NOTEBOOK)
    t0, c0 = time.perf_counter(), time.process_time()
    km = await launcher.start(ws)
    kc = km.client(context=km.context)
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        kc.stop_channels()
        await stop_kernel(km)
        ws.cleanup()


async def two_at_a_time(launcher: LocalKernelLauncher, count: int) -> None:
    """Grade the seed-style notebook `count` times, two gradings running at once."""
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            seed = queue.pop()
            await grade_notebook_async(NOTEBOOK, "sigmoid-2-3-1", seed=seed, launcher=launcher)

    await asyncio.gather(worker(), worker())


def line(name: str, values: list[float]) -> str:
    return f"{name:28s} median {statistics.median(values):5.2f} s  ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    cold = LocalKernelLauncher()
    with WarmKernelLauncher() as warm:
        print(f"isolation: {cold.level}; forked kernels: {warm.describe()['start']}")
        t0 = time.perf_counter()
        if warm.warm:
            warm.ensure_parent()
        print(f"{'warm parent start':28s} {time.perf_counter() - t0:5.2f} s (once per launcher)")
        times: dict[str, list[float]] = {"cold": [], "forked": [], "cold cpu": [], "forked cpu": []}
        for _ in range(args.repeat):
            for name, launcher in (("cold", cold), ("forked", warm)):
                wall, cpu = asyncio.run(ready_time(launcher))
                times[name].append(wall)
                times[name + " cpu"].append(cpu)
        for name in ("cold", "forked"):
            print(line(f"kernel ready, {name}", times[name]) +
                  f"  grader CPU {statistics.median(times[name + ' cpu']):.2f} s")
        grades: dict[str, list[float]] = {"cold": [], "forked": []}
        for i in range(args.repeat):
            for name, launcher in (("cold", cold), ("forked", warm)):
                t0 = time.perf_counter()
                grade_notebook(NOTEBOOK, "sigmoid-2-3-1", seed=i, launcher=launcher)
                grades[name].append(time.perf_counter() - t0)
        for name in ("cold", "forked"):
            print(line(f"grade seed_style, {name}", grades[name]))
        for name, launcher in (("cold", cold), ("forked", warm)):
            count = 2 * args.repeat
            t0 = time.perf_counter()
            asyncio.run(two_at_a_time(launcher, count))
            wall = time.perf_counter() - t0
            print(f"{'2 at a time, ' + name:28s} {count} gradings in {wall:5.1f} s: {count / wall:.2f} notebooks/s")


if __name__ == "__main__":
    main()
