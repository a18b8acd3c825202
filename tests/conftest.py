"""Shared fixtures: real notebooks graded by real kernels, each graded once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grader import grade_notebook
from grader.report import Report

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "tests" / "notebooks"
ASSIGNMENTS = ROOT / "assignments"

_cache: dict[tuple[Any, ...], Report] = {}


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
