"""Diagnosing a failed comparison: say *what* is wrong, in the student's terms.

Each diagnosis has a stable code (DESIGN.md) and a sentence. Diagnoses never change a score
by themselves; the scoring policy decides that. Messages name the student's own functions
and variables and never show hidden inputs or expected values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from grader.judging.compare import Comparison, align, matches
from grader.report import Diagnosis
from grader.run.probe import shape_str

MAX_LISTED = 4  # elements named in one message


@dataclass
class Failure:
    """One failing trial of a target, as diagnosis sees it."""

    comparison: Comparison
    trial: int
    variants: dict[str, np.ndarray] = field(default_factory=dict)  # variant name -> its value here


def _cap(text: str) -> str:
    """Capitalise a sentence that starts with a plain word (never a student's identifier)."""
    return "The" + text[3:] if text.startswith("the ") else text


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def diagnose(
    label: str,
    failures: list[Failure],
    rtol: float,
    atol: float,
    *,
    variants: Sequence[tuple[str, str]] = (),
    axes: Sequence[str] = (),
    names: tuple[str, str] = ("y", "t"),
    hidden: bool = False,
) -> list[Diagnosis]:
    """Explain why `label` failed, most specific explanation first.

    `variants` are (name, message) of the wrong answers the assignment declares; each failure
    carries the variant's value on its inputs. `axes` name the rows / columns of a matrix;
    `names` are the assignment's own names for the prediction and the target.
    """
    first = failures[0].comparison
    if first.problem == "transposed":
        return [_transposed(label, first, rtol, atol)]
    if first.problem == "shape":
        return [
            Diagnosis(
                "shape_mismatch",
                _cap(f"{label}") + f" has shape {shape_str(first.got_raw_shape)}, but shape "
                f"{shape_str(first.expected.shape)} is expected.",
            )
        ]
    variant = match_variant(failures, variants, rtol, atol)
    if variant is not None:
        return [variant]
    if first.problem == "nan":
        return [_nan(label, failures, axes)]
    found = _sign_or_scale(label, failures, rtol, atol, names)
    if found:
        return [found]
    if (
        first.got is not None
        and first.got.ndim == 2
        and first.got.shape[0] == first.got.shape[1]
        and matches(first.got.T, first.expected, rtol, atol)
    ):
        return [_transposed(label, first, rtol, atol)]
    return [_wrong(label, failures, axes, hidden)]


def match_variant(
    failures: list[Failure], variants: Sequence[tuple[str, str]], rtol: float, atol: float
) -> Diagnosis | None:
    """The first declared variant the student's value equals (within tolerance) on every failing trial."""
    for name, message in variants:
        hit = True
        for f in failures:
            value = f.variants.get(name)
            got = f.comparison.got
            if value is None or got is None:
                hit = False
                break
            aligned, how = align(got, value)
            if aligned is None or not matches(aligned, value, rtol, atol):
                hit = False
                break
            # a variant that coincides with the right answer here explains nothing
            if matches(value, f.comparison.expected, rtol, atol):
                hit = False
                break
        if hit:
            return Diagnosis(f"variant:{name}", message)
    return None


def _transposed(label: str, c: Comparison, rtol: float, atol: float) -> Diagnosis:
    assert c.got is not None
    right = matches(c.got.T, c.expected, rtol, atol) if c.got.ndim == 2 else False
    shapes = (
        _cap(f"{label}") + f" has shape {shape_str(c.got_raw_shape)}, the transpose of the expected "
        f"{shape_str(c.expected.shape)}: a gradient has the shape of what it is the gradient of"
    )
    if c.got.shape == c.expected.shape:  # square: only the values show it
        shapes = _cap(f"{label}") + " holds the transpose of the expected matrix"
    tail = "; its values are right once transposed." if right else "; even transposed, its values are not right."
    return Diagnosis("transposed", shapes + tail)


def _nan(label: str, failures: list[Failure], axes: Sequence[str]) -> Diagnosis:
    first = failures[0].comparison
    assert first.got is not None
    mask = ~np.isfinite(first.got)
    for f in failures[1:]:  # elements non-finite on any trial of the same shape
        g = f.comparison.got
        if g is not None and g.shape == mask.shape:
            mask = mask | ~np.isfinite(g)
    where = "" if first.got.ndim == 0 else f" (at {_where(label, mask, axes)})"
    return Diagnosis(
        "nan_or_inf",
        _cap(f"{label} is nan or infinite where the true value is finite{where}: look for overflow "
             "(exp of a large number), a division by zero or 0/0."),
    )


def _ratio(c: Comparison) -> float | None:
    """Least-squares factor k with got ~ k * expected."""
    if c.got is None or c.got.shape != c.expected.shape:
        return None
    denom = float(np.sum(c.expected * c.expected))
    if denom == 0 or not np.isfinite(denom):
        return None
    return float(np.sum(c.got * c.expected) / denom)


def _sign_or_scale(label: str, failures: list[Failure], rtol: float, atol: float,
                   names: tuple[str, str] = ("y", "t")) -> Diagnosis | None:
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
    if sum(f.comparison.expected.size for f in failures) == 1 and not _is_simple(k):
        return None  # any single wrong number is *some* multiple of the right one: that explains nothing
    every = " on every input tried" if len(failures) > 1 else ""
    y, t = names
    if abs(k + 1) < 1e-6:
        return Diagnosis(
            "sign_flip",
            _cap(f"{label}") + f" has the right magnitude but the opposite sign{every}: check the sign of the "
            f"error term ({y} - {t}, not {t} - {y}) and of each step of the chain rule.",
        )
    kr = _nice(k)
    hint = ""
    if abs(abs(k) - 2) < 1e-6:
        hint = (f" On a squared loss a factor 2 means the 1/2 of L = 1/2 ({y} - {t})^2 was dropped "
                "(or the loss has no 1/2 and one was added to its derivative).")
    elif abs(abs(k) - 0.5) < 1e-6:
        hint = (" On a squared loss a factor 1/2 means a 1/2 was added that the loss does not have "
                f"(the 2 from d/d{y} ({y} - {t})^2 was dropped).")
    sign = ", with the opposite sign" if k < 0 else ""
    return Diagnosis("scaled", _cap(f"{label}") + f" is {kr} times the correct value{sign}{every} (factor c = {kr}).{hint}")


def _is_simple(k: float) -> bool:
    """Whether k is a small fraction such as 2, -1, 1/2 or 3/4 (what a dropped factor gives)."""
    return any(abs(k * den - round(k * den)) < 1e-6 and abs(round(k * den)) <= 16 for den in (1, 2, 3, 4, 8))


def _nice(k: float) -> str:
    for den in (1, 2, 3, 4, 8):
        num = k * den
        if abs(num - round(num)) < 1e-6:
            return str(int(round(num))) if den == 1 else f"{int(round(num))}/{den}"
    return f"{k:.4g}"


def axis_phrase(name: str, k: int) -> str:
    """`hidden unit` and row 2 -> `hidden unit 3`; a name with `{}` is a template for the 1-based index."""
    return name.format(k + 1) if "{}" in name else f"{name} {k + 1}"


def _where(label: str, mask: np.ndarray, axes: Sequence[str]) -> str:
    """Which elements a boolean mask marks, as rows, columns or elements, named by the axes."""
    idx = [tuple(int(i) for i in b) for b in np.argwhere(mask)]
    if mask.ndim == 2 and mask.size > 1:
        rows_all = [r for r in range(mask.shape[0]) if mask[r].all()]
        cols_all = [c for c in range(mask.shape[1]) if mask[:, c].all()]
        row_axis = axes[0] if axes else ""
        col_axis = axes[1] if len(axes) > 1 else ""
        if mask.shape[1] > 1 and rows_all and mask.sum() == len(rows_all) * mask.shape[1]:
            return _lines("row", rows_all, label, row_axis)
        if mask.shape[0] > 1 and cols_all and mask.sum() == len(cols_all) * mask.shape[0]:
            return _lines("column", cols_all, label, col_axis)
    shown = ", ".join(_element(i, mask.shape, axes) for i in idx[:MAX_LISTED])
    more = f" and {len(idx) - MAX_LISTED} more" if len(idx) > MAX_LISTED else ""
    return f"{shown}{more}"


def _lines(kind: str, which: list[int], label: str, axis: str) -> str:
    parts = []
    for r in which[:MAX_LISTED]:
        parts.append(f"{kind} {r} of {label}" + (f", i.e. {axis_phrase(axis, r)}" if axis else ""))
    more = f" and {len(which) - MAX_LISTED} more {kind}s" if len(which) > MAX_LISTED else ""
    return "; ".join(parts) + more


def _element(i: tuple[int, ...], shape: tuple[int, ...], axes: Sequence[str]) -> str:
    names = []
    if axes:
        # a column vector (n, 1) named by one axis: the row is what matters
        dims = [d for d, n in enumerate(shape) if n > 1] if len(axes) < len(shape) else list(range(len(shape)))
        for a, d in zip(axes, dims):
            if shape[d] > 1:  # a dimension of size 1 needs no name
                names.append(axis_phrase(a, i[d]))
    return _fmt_index(i) + (f" ({', '.join(names)})" if names else "")


def _wrong(label: str, failures: list[Failure], axes: Sequence[str], hidden: bool = False) -> Diagnosis:
    c = failures[0].comparison
    total = c.expected.size
    where = ""
    if total > 1 and c.bad_mask is not None:
        mask = c.bad_mask.copy()
        for f in failures[1:]:
            m = f.comparison.bad_mask
            if m is not None and m.shape == mask.shape:
                mask |= m
        n_bad = int(mask.sum())
        if n_bad == total:
            where = f" Every element is off; the worst is {_element(c.worst, c.expected.shape, axes)}."
        else:
            where = f" Wrong: {_where(label, mask, axes)} ({n_bad} of {total} elements); the rest is right."
    if hidden:  # error figures measure the answer against a hidden expected value: where, not how much
        return Diagnosis("wrong", _cap(f"{label}") + f" is not right.{where}")
    return Diagnosis(
        "wrong",
        _cap(f"{label}") + f" is not right: largest absolute error {c.max_abs:.3g}, largest relative error "
        f"{_rel(c.max_rel)}.{where}",
    )


def _rel(r: float) -> str:
    return "infinite (the true value is 0)" if not np.isfinite(r) else f"{r:.3g}"


# ------------------------------------------------------------- beyond one comparison


def hardcoded_function(name: str, ignored: Sequence[str] = (), given: Sequence[str] = (), n_args: int = 0) -> Diagnosis:
    """A function right on the notebook's own sample but wrong on fresh inputs, and which arguments it ignores."""
    head = f"{name} gives the right answer on the notebook's given sample but not on fresh inputs"
    if ignored and n_args and len(ignored) == n_args:
        why = ("it returns that same answer whatever its arguments: compute it from the arguments "
               "instead of typing in numbers or reading the notebook's variables.")
    elif ignored:
        pairs = ", ".join(a if a == g else f"{a} (it reads {g})" for a, g in zip(ignored, given))
        why = f"it ignores its argument{'s' if len(ignored) > 1 else ''} {pairs} and uses the notebook's given values instead."
    else:
        why = "it must compute from its arguments, not from the notebook's variables or typed-in numbers."
    return Diagnosis("hardcoded", f"{head}: {why}")


def hardcoded_variable(name: str, unchanged: bool, inputs: Sequence[str]) -> Diagnosis:
    """A variable that does not follow when the given sample changes (`inputs`: those it does not follow)."""
    given = ", ".join(inputs)
    if unchanged:
        return Diagnosis(
            "hardcoded",
            f"{name} is right for the given sample, but when the notebook was re-run with other values "
            f"of {given}, it kept the same value: compute it from {given} instead of typing in the result.",
        )
    return Diagnosis(
        "hardcoded",
        f"{name} is right for the given sample, but when the notebook was re-run with other values, it "
        f"still used the old {given}: compute it from the variable{'s' if len(inputs) > 1 else ''} {given}, "
        "not from typed-in numbers or values worked out earlier.",
    )


def unstable(name: str, where: str, hint: str) -> Diagnosis:
    """A function that overflows (nan/inf) on extreme but valid inputs."""
    tail = f" {hint}" if hint else (" Rewrite it so that it never takes exp of a large positive number "
                                    "(for example with exp(-|a|)).")
    return Diagnosis(
        "unstable",
        f"{name} returns nan or inf for extreme but valid inputs{where}, where the true value is finite "
        f"(an overflow).{tail}",
    )


def unstable_overflow(name: str, hint: str) -> Diagnosis:
    """A function whose values survive extreme inputs only because an overflow gave inf in a harmless place."""
    tail = f" {hint}" if hint else ""
    return Diagnosis(
        "unstable",
        f"{name} overflows for extreme but valid inputs (numpy warns: overflow, e.g. exp of a large number); "
        f"its results are still right there, but only because inf landed where it does no harm.{tail}",
    )
