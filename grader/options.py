"""Defaults of a grading run that the CLI shows without importing the grader's heavy parts."""

from __future__ import annotations

import os
from pathlib import Path

CELL_TIMEOUT = 30.0  # seconds per cell
TOTAL_TIMEOUT = 300.0  # seconds for a whole submission: cells, probes and the re-run
ISOLATION_LEVELS = ("sandbox", "namespace", "process")  # strongest first


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
