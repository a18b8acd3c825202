"""Comparing a student's value with the expected one: type, then shape, then values.

Tolerance, elementwise in float64: |got - expected| <= atol + rtol * |expected|.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grader.run.probe import Value


@dataclass
class Comparison:
    """The outcome of comparing one value, with the numbers feedback needs."""

    ok: bool
    problem: str = ""  # "" | not_numeric | shape | transposed | nan | values
    got: np.ndarray | None = None  # as compared (reshaped / transposed where allowed)
    got_raw_shape: tuple[int, ...] = ()
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    transposed: bool = False  # the student's value is the transpose of the expected one
    reshaped: bool = False  # only size-1 dimensions differed
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: tuple[int, ...] = ()
    n_bad: int = 0
    bad_mask: np.ndarray | None = None


def numeric(value: Value) -> np.ndarray | None:
    """The value as a float64 array, if it is numeric."""
    if value.kind == "array":
        return value.array
    if value.kind == "seq" and value.array is not None:
        return value.array
    return None


def within(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise tolerance test; NaN never passes unless expected is NaN too."""
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(got - expected) <= atol + rtol * np.abs(expected)
    same_inf = np.isinf(got) & np.isinf(expected) & (np.sign(got) == np.sign(expected))
    both_nan = np.isnan(got) & np.isnan(expected)
    return close | same_inf | both_nan


def matches(got: np.ndarray | None, expected: np.ndarray, rtol: float, atol: float) -> bool:
    """Same shape and every element within tolerance."""
    return got is not None and got.shape == expected.shape and bool(within(got, expected, rtol, atol).all())


def align(got: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Bring got to expected's shape where only size-1 dimensions differ; else say why not."""
    if got.shape == expected.shape:
        return got, ""
    if got.ndim == 2 and expected.ndim == 2 and got.shape == expected.shape[::-1]:
        return None, "transposed"
    if got.size == expected.size and _core(got.shape) == _core(expected.shape):
        return got.reshape(expected.shape), "reshaped"
    return None, "shape"


def _core(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def compare(
    value: Value,
    expected: np.ndarray,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    allow_transpose: bool = False,
) -> Comparison:
    """Compare a probed value with its expected array."""
    got = numeric(value)
    if got is None:
        return Comparison(False, "not_numeric", expected=expected)
    aligned, how = align(got, expected)
    c = Comparison(False, got_raw_shape=got.shape, expected=expected)
    if how == "transposed":
        c.transposed = True
        if not allow_transpose:
            c.problem = "transposed"
            c.got = got
            _errors(c, got.T, expected, rtol, atol)  # how close it is once transposed
            return c
        aligned = got.T
    elif how == "shape":
        c.problem = "shape"
        c.got = got
        return c
    c.reshaped = how == "reshaped"
    assert aligned is not None
    c.got = aligned
    bad = _errors(c, aligned, expected, rtol, atol)
    if bad.any():
        c.problem = "values" if np.isfinite(aligned[bad]).all() else "nan"
    c.ok = not bad.any()
    return c


def _errors(c: Comparison, got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    ok = within(got, expected, rtol, atol)
    bad = ~ok
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        abs_err = np.abs(got - expected)
        rel_err = np.where(expected != 0, abs_err / np.abs(expected), np.where(abs_err == 0, 0.0, np.inf))
    abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)
    rel_err = np.where(np.isnan(rel_err), np.inf, rel_err)
    c.n_bad = int(bad.sum())
    c.bad_mask = bad
    if abs_err.size:
        c.max_abs = float(abs_err.max())
        c.max_rel = float(rel_err.max())
        # worst: the element furthest outside its tolerance
        excess = np.where(bad, abs_err / (atol + rtol * np.abs(expected)), -1.0)
        c.worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), expected.shape))
    return bad
