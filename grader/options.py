"""Defaults of a grading run that the CLI shows without importing the grader's heavy parts."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click

CELL_TIMEOUT = 30.0  # seconds per cell
TOTAL_TIMEOUT = 300.0  # seconds for a whole submission: cells, probes and the re-run
# the default per-cell limit measured from an assignment's solution: FACTOR x its slowest cell,
# at least FLOOR, at most CELL_TIMEOUT (see grader/grading/limits.py)
MEASURED_FACTOR = 10.0
MEASURED_FLOOR = 5.0  # seconds
CELL_TIMEOUT_HELP = ("Seconds per cell (default: the assignment's policy.cell_timeout, else "
                     f"{MEASURED_FACTOR:g}x its solution's slowest cell as measured by 'grade validate' or "
                     f"'grade prepare' ({MEASURED_FLOOR:g} s to {CELL_TIMEOUT:g} s), else {CELL_TIMEOUT:g}).")
ISOLATION_LEVELS = ("sandbox", "namespace", "process")  # strongest first


MAX_SEED = 2**63 - 1  # a seed is stored in SQLite (a signed 64-bit integer) and in reports


class Seconds(click.FloatRange):
    """A time limit on the command line: a finite number of seconds, at least `minimum`, at most a
    week (click's own range lets nan through, and inf would reach the kernel as an overflow)."""

    name = "seconds"

    def __init__(self, minimum: float):
        super().__init__(min=minimum, max=7 * 24 * 3600.0)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, or click's one-line usage error."""
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return number


SEED = click.IntRange(0, MAX_SEED)


CACHE_DIR_VARIABLE = "NNGRADER_CACHE_DIR"


def user_cache_dir() -> Path | None:
    """The user's cache folder for the grader (None where the user has no home folder)."""
    import platformdirs

    try:
        return Path(platformdirs.user_cache_dir("nngrader"))
    except (RuntimeError, KeyError):
        return None


def cache_dir() -> Path | None:
    """Where the grader remembers what it worked out once: $NNGRADER_CACHE_DIR, else the user's cache."""
    base = os.environ.get(CACHE_DIR_VARIABLE)
    return Path(base) if base else user_cache_dir()
