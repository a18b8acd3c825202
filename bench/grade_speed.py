"""Benchmark: how long grading takes and how much memory the grader uses.

Grades every shipped solution notebook and a few test notebooks N times each, one after
another, and prints per-notebook wall time (median, max) and the grader's peak RSS.
Run by hand:  .venv/bin/python bench/grade_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import grade_notebook  # noqa: E402


def notebooks() -> list[tuple[Path, str | None]]:
    """The notebooks to grade: every solution and starter, and the seed-style 2-3-1 notebook."""
    out: list[tuple[Path, str | None]] = []
    for folder in sorted((ROOT / "assignments").iterdir()):
        for name in ("solution.ipynb", "starter.ipynb"):
            if (folder / name).is_file():
                out.append((folder / name, folder.name))
    out.append((ROOT / "tests/notebooks/sigmoid-2-3-1/seed_style.ipynb", "sigmoid-2-3-1"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    all_times = []
    for path, asg in notebooks():
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            report = grade_notebook(path, asg, seed=i)
            times.append(time.perf_counter() - t0)
        all_times += times
        rel = path.relative_to(ROOT)
        print(f"{str(rel):60s} median {statistics.median(times):5.2f} s  max {max(times):5.2f} s  "
              f"score {report.score:g}/{report.max_score:g}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"all: {len(all_times)} gradings, median {statistics.median(all_times):.2f} s, "
          f"total {sum(all_times):.1f} s; grader peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
