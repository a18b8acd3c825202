"""Diagnosing a failed comparison: say *what* is wrong, in the student's terms.

Each diagnosis has a stable code (DESIGN.md) and a sentence. Diagnoses never change a score
by themselves; the scoring policy decides that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import Comparison, matches
from .probe import shape_str
from .report import Diagnosis


@dataclass
class Failure:
    """One failing trial of a target, as diagnosis sees it."""

    comparison: Comparison
    trial: int


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def diagnose(label: str, failures: list[Failure], rtol: float, atol: float) -> list[Diagnosis]:
    """Explain why `label` failed, most specific explanation first."""
    first = failures[0].comparison
    if first.problem == "transposed":
        return [_transposed(label, first, rtol, atol)]
    if first.problem == "shape":
        return [
            Diagnosis(
                "shape_mismatch",
                f"{label} has shape {shape_str(first.got_raw_shape)}, but shape "
                f"{shape_str(first.expected.shape)} is expected.",
            )
        ]
    if first.problem == "nan":
        assert first.got is not None
        bad = np.argwhere(~np.isfinite(first.got))
        where = ", ".join(_fmt_index(tuple(int(i) for i in b)) for b in bad[:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        scalar = first.got.ndim == 0
        return [
            Diagnosis(
                "nan_or_inf",
                f"{label} is nan or infinite"
                + ("" if scalar else f" at {where}{more}")
                + " where the true value is finite: look for overflow (exp of a large number) or 0/0.",
            )
        ]
    found = _sign_or_scale(label, failures, rtol, atol)
    if found:
        return [found]
    if (
        first.got is not None
        and first.got.ndim == 2
        and first.got.shape[0] == first.got.shape[1]
        and matches(first.got.T, first.expected, rtol, atol)
    ):
        return [_transposed(label, first, rtol, atol)]
    return [_wrong(label, first)]


def _transposed(label: str, c: Comparison, rtol: float, atol: float) -> Diagnosis:
    assert c.got is not None
    right = matches(c.got.T, c.expected, rtol, atol) if c.got.ndim == 2 else False
    shapes = (
        f"{label} has shape {shape_str(c.got_raw_shape)}, but it must have the shape "
        f"{shape_str(c.expected.shape)} (the shape of what it is the gradient of / the expected result)"
    )
    if c.got.shape == c.expected.shape:  # square: only the values show it
        shapes = f"{label} holds the transpose of the expected matrix"
    tail = "; its values are right once transposed." if right else "; even transposed, its values are not right."
    return Diagnosis("transposed", shapes + tail)


def _ratio(c: Comparison) -> float | None:
    """Least-squares factor k with got ~ k * expected."""
    if c.got is None or c.got.shape != c.expected.shape:
        return None
    denom = float(np.sum(c.expected * c.expected))
    if denom == 0 or not np.isfinite(denom):
        return None
    return float(np.sum(c.got * c.expected) / denom)


def _sign_or_scale(label: str, failures: list[Failure], rtol: float, atol: float) -> Diagnosis | None:
    ks = []
    for f in failures:
        k = _ratio(f.comparison)
        if k is None or not np.isfinite(k) or abs(k) < 1e-12:
            return None
        # a scaled answer fits k * expected closely (looser than grading: k itself is estimated)
        if not matches(f.comparison.got, k * f.comparison.expected, max(rtol, 1e-4), atol):
            return None
        ks.append(k)
    k = ks[0]
    if any(abs(x - k) > 1e-3 * max(1.0, abs(k)) for x in ks):
        return None  # not one constant across inputs
    if abs(k + 1) < 1e-6:
        return Diagnosis(
            "sign_flip",
            f"{label} has the right magnitude but the opposite sign: check the sign of the error term "
            "(y - t versus t - y) or of the update.",
        )
    kr = _nice(k)
    hint = ""
    if abs(abs(k) - 2) < 1e-6:
        hint = " A factor 2 on a squared loss usually means the 1/2 in L = 1/2 (y - t)^2 was dropped (or the loss has no 1/2 and it was kept)."
    elif abs(abs(k) - 0.5) < 1e-6:
        hint = " A factor 1/2 on a squared loss usually means a 1/2 was added that the loss does not have, or the 2 from d/dy (y - t)^2 was dropped."
    sign = " and the opposite sign" if k < 0 else ""
    return Diagnosis("scaled", f"{label} is {kr} times the correct value{sign}.{hint}")


def _nice(k: float) -> str:
    for den in (1, 2, 3, 4, 8):
        num = k * den
        if abs(num - round(num)) < 1e-6:
            return str(int(round(num))) if den == 1 else f"{int(round(num))}/{den}"
    return f"{k:.4g}"


def _wrong(label: str, c: Comparison) -> Diagnosis:
    total = c.expected.size
    if total <= 1:
        where = ""
    elif c.n_bad == total:
        where = f" Every element is off; the worst is at {_fmt_index(c.worst)}."
    else:
        where = f" {c.n_bad} of {total} elements are off; the worst is at {_fmt_index(c.worst)}."
    return Diagnosis(
        "wrong",
        f"{label} is not right: largest absolute error {c.max_abs:.3g}, largest relative error "
        f"{_rel(c.max_rel)}.{where}",
    )


def _rel(r: float) -> str:
    return "infinite (the true value is 0)" if not np.isfinite(r) else f"{r:.3g}"
