"""The default cell time limit of an assignment, measured from what its own solution needs.

`grade validate` and `grade prepare` grade the solution notebook and keep its slowest cell's
time in the cache folder (keyed by the spec's and the solution's sha256, so an edit of either
measures again). A grade without `--timeout` and without the spec's `[policy] cell_timeout`
then gives each cell max(FLOOR_S, FACTOR x that time), at most CELL_TIMEOUT: an endless loop
is stopped in seconds, and slow but honest code (Python loops instead of numpy) still finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from grader.assignment.model import Assignment
from grader.cachefiles import write_atomic
from grader.options import CELL_TIMEOUT, MEASURED_FACTOR, MEASURED_FLOOR, cache_dir
from grader.report import Report

FACTOR = MEASURED_FACTOR  # times the solution's slowest cell
FLOOR_S = MEASURED_FLOOR  # seconds: never less, however fast the solution
LIMITS_DIR_VARIABLE = "NNGRADER_LIMITS_DIR"  # where the measurements are kept (default: CACHE/limits)
_FORMAT = "cell-limit/1"
SOLUTION = "solution.ipynb"

# where a grade's cell limit came from, strongest first
SOURCES = ("option", "spec", "measured", "default")


def limits_dir() -> Path | None:
    """The folder of every assignment's measurement: $NNGRADER_LIMITS_DIR, else the cache's limits/."""
    own = os.environ.get(LIMITS_DIR_VARIABLE)
    if own:
        return Path(own)
    base = cache_dir()
    return base / "limits" if base is not None else None


def limit_from(slowest_s: float) -> float:
    """The cell limit a solution whose slowest cell took `slowest_s` seconds gives."""
    return round(min(CELL_TIMEOUT, max(FLOOR_S, FACTOR * max(0.0, slowest_s))), 1)


def measurement_path(asg: Assignment) -> Path | None:
    """The file of the assignment's measurement for its current spec and solution (None without
    a cache folder or a readable solution)."""
    base = limits_dir()
    if base is None:
        return None
    try:
        solution = hashlib.sha256(asg.path(SOLUTION).read_bytes()).hexdigest()
    except OSError:
        return None
    key = hashlib.sha256(f"{_FORMAT}:{asg.spec_sha256}:{solution}".encode()).hexdigest()
    return base / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', asg.id)}-{key[:24]}.json"


def measured_limit(asg: Assignment) -> float | None:
    """The measured default cell limit, in seconds (None when nothing is measured)."""
    path = measurement_path(asg)
    if path is None:
        return None
    try:
        slowest = float(json.loads(path.read_text(encoding="utf-8"))["slowest_cell_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return limit_from(slowest) if slowest == slowest and slowest >= 0 else None


def cell_limit(asg: Assignment, option: float | None = None) -> tuple[float, str]:
    """The cell limit of a grade and where it came from: `option` (--timeout) if given, else the
    spec's [policy] cell_timeout, else the measured default, else CELL_TIMEOUT."""
    if option is not None:
        return float(option), "option"
    if asg.spec.policy.cell_timeout:
        return float(asg.spec.policy.cell_timeout), "spec"
    measured = measured_limit(asg)
    if measured is not None:
        return measured, "measured"
    return CELL_TIMEOUT, "default"


def store_measurement(asg: Assignment, report: Report) -> float | None:
    """Keep the slowest cell of the solution's `report`; the limit it gives (None, and nothing
    kept, when the solution did not run cleanly or there is no cache folder)."""
    ex = report.execution
    if report.status != "graded" or ex.timed_out or ex.kernel_died or not ex.ran_cells:
        return None
    path = measurement_path(asg)
    if path is None:
        return None
    slowest = float(ex.slowest_cell_s)
    data = {"assignment": asg.id, "spec_sha256": asg.spec_sha256, "slowest_cell_s": round(slowest, 3),
            "cell_limit_s": limit_from(slowest)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, indent=1).encode(), ".tmp-limit-", ".json", mode=0o644)
    except OSError:
        return None
    return limit_from(slowest)


def measure_solution(asg: Assignment, grade: Callable[..., Report]) -> tuple[float, float] | None:
    """Grade the solution notebook with `grade` (grade_notebook) and keep its slowest cell; (that
    time, the limit it gives), or None when there is no solution or it did not run cleanly."""
    path = asg.path(SOLUTION)
    if not path.is_file():
        return None
    report = grade(path, asg, seed=4321, cell_timeout=measuring_limit(asg))
    limit = store_measurement(asg, report)
    return None if limit is None else (report.execution.slowest_cell_s, limit)


def measuring_limit(asg: Assignment) -> float:
    """The cell limit the solution is measured under: the spec's, else CELL_TIMEOUT (never an
    earlier measurement's, which a slower machine could overrun)."""
    return float(asg.spec.policy.cell_timeout or CELL_TIMEOUT)
