"""A one-line call that reproduces a public check on the inputs it used.

Only for public checks: their inputs are the student's to see. Hidden checks' inputs never
leave the grader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_ELEMENTS = 64  # larger inputs make no one-line snippet


def literal(value: Any) -> str | None:
    """Python source for an input (`np.array([[0.5, -1.25]])`, a dict of them, a number), or None."""
    if isinstance(value, np.ndarray):
        if value.size > MAX_ELEMENTS:
            return None
        # repr of each float: the shortest text that reads back as exactly the same number
        return f"np.array({_nested(value.tolist())})"
    if isinstance(value, dict):
        items = [(k, literal(v)) for k, v in value.items()]
        if any(v is None for _, v in items):
            return None
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in items) + "}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return None


def _nested(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_nested(v) for v in x) + "]"
    return repr(float(x))


def call_snippet(name: str, args: list[Any]) -> str | None:
    """`sigmoid(np.array([...]))`: the call a check made, as one line, or None if it would not fit."""
    parts = [literal(a) for a in args]
    if any(p is None for p in parts) or not name.isidentifier():
        return None
    text = f"{name}({', '.join(parts)})"  # type: ignore[arg-type]
    return text if sum(np.size(a) for a in args if isinstance(a, np.ndarray)) <= MAX_ELEMENTS else None
