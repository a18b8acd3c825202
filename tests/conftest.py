"""Shared fixtures: real notebooks graded by real kernels, each graded once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from grader import grade_notebook
from grader.report import Report

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "tests" / "notebooks"
ASSIGNMENTS = ROOT / "assignments"

_cache: dict[tuple[Any, ...], Report] = {}

# A private PostgreSQL server per session and a fresh database per test (`postgres_server`, `pg_url`).
pytest_plugins = ["tests.pg_support"]

# Cell limits measured from solutions (`grade validate`, `grade prepare`) change the limit every
# later grade of that assignment gets: the suite keeps them away from the user's cache, and each
# test has its own (so one test's measurement never shortens another's limit). Every `grade`
# started in a subprocess inherits the setting.
_LIMITS = tempfile.TemporaryDirectory(prefix="nngrader-test-limits-")
os.environ["NNGRADER_LIMITS_DIR"] = _LIMITS.name


@pytest.fixture(autouse=True)
def _own_cell_limits(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("NNGRADER_LIMITS_DIR", str(tmp_path_factory.mktemp("limits")))


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its reaper does not)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def graded(path: str | Path, assignment: str | None = None, *, seed: int = 1234, **kw: Any) -> Report:
    """Grade a notebook (cached per session: grading is deterministic for a seed)."""
    key = (str(path), assignment, seed, tuple(sorted(kw.items())))
    if key not in _cache:
        _cache[key] = grade_notebook(path, assignment, seed=seed, **kw)
    return _cache[key]


@pytest.fixture
def grade():
    """The `graded` function, as a fixture."""
    return graded
