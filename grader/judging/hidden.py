"""What a hidden check may show: only what the grader chose to reveal.

During a hidden call the notebook's code holds the hidden inputs, and anything it produces can
carry them out: an exception's message or class name (a class built from the inputs), the line
that raised (one of many, chosen by the inputs), the shape of a returned array, the keys of a
dict, a value's size, error figures against the hidden expected value. So a hidden check's
result keeps only grader-side facts: its status and points, how many random inputs it was
tried on and failed, and per diagnosis its code with a sentence the grader builds from the
spec and its own conclusions (a sign, a simple factor, which rows are wrong, which arguments
are ignored, a declared mistake); every other sentence is replaced by a fixed one. Nothing the
student's code produced during a hidden call reaches any output format.

Public checks are untouched: their inputs are the student's to see.
"""

from __future__ import annotations

import builtins
from dataclasses import replace

from grader.report import CheckResult, Diagnosis

# The diagnoses whose sentences hold what the notebook's code produced during the hidden call
# (an exception's class, message and place; the shape it returned): replaced by fixed ones.
# Every other sentence the grader builds for a hidden check from the spec, its own
# conclusions and the fixed words describing a value's kind, and is shown as it is.
_SAID = {
    "exception": "{label} raised {exception} on a hidden input (for hidden checks its message and place "
                 "are not shown: call it yourself on inputs of the same kind to see them)",
    "shape_mismatch": "{label} has the wrong shape on a hidden input",
}
# What a value that is not numbers was, from the runner's fixed vocabulary of kinds.
_KIND_SAID = {
    "too_big": "{label} returned a value too large to read",
    "none": "{label} returned None, not numbers",
    "str": "{label} returned text, not numbers",
    "unconvertible": "{label} returned something that could not be read as numbers",
}
# Exception classes named as they are: Python's own (a fixed vocabulary; a class the notebook
# builds, whose name could spell the inputs, is "an exception").
_BUILTIN_EXCEPTIONS = frozenset(
    name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)
) | {"LinAlgError"}
# Detail keys that are grader-side facts (never a shape, size, value or text of the answer):
# counts and tolerances, which element was taken, and the grader's yes/no conclusions.
_DETAIL = ("trials", "failed_trials", "rtol", "atol", "took", "vectors", "goes_wrong_at", "graded_after_cell")
_CONCLUSIONS = ("consistent_with_forward", "hardcoded", "follows_sample")
_KINDS = ("too_big", "none", "str", "unconvertible", "seq", "dict", "object")


def hidden_view(result: CheckResult) -> CheckResult:
    """A hidden check's result as every output shows it (public checks are returned as they are)."""
    if result.visibility != "hidden":
        return result
    label = result.label or result.target
    detail = {k: result.detail[k] for k in _DETAIL if k in result.detail and _plain(result.detail[k])}
    detail.update({k: result.detail[k] for k in _CONCLUSIONS if isinstance(result.detail.get(k), bool)})
    kind = result.detail.get("answer_kind")
    if kind in _KINDS:
        detail["answer_kind"] = kind
    said = [_said(d, label, result.detail) for d in result.diagnosis]
    if all(s is None for s in said):
        return replace(result, detail=detail)
    diagnosis = [d if s is None else Diagnosis(d.code, s + ".") for d, s in zip(result.diagnosis, said)]
    head = diagnosis[0].message.rstrip(".")
    message = head if result.status != "fail" else f"{_scope(detail)}: {head}"
    return replace(result, message=message, diagnosis=diagnosis, detail=detail)


def _said(d: Diagnosis, label: str, detail: dict[str, object]) -> str | None:
    """The fixed sentence replacing a diagnosis's own, or None to keep it."""
    if d.code == "exception":
        name = detail.get("exception")
        exception = name if isinstance(name, str) and name in _BUILTIN_EXCEPTIONS else "an exception"
        return _SAID["exception"].format(label=label, exception=exception)
    if d.code == "shape_mismatch":
        return _SAID["shape_mismatch"].format(label=label)
    kind = detail.get("answer_kind")
    if d.code == "wrong" and isinstance(kind, str) and "failed_trials" not in detail:
        return _KIND_SAID.get(kind, "{label} did not return numbers").format(label=label)
    return None


def _scope(detail: dict[str, object]) -> str:
    n = detail.get("trials")
    failed = detail.get("failed_trials")
    if isinstance(n, int) and n > 1 and isinstance(failed, int) and 0 < failed <= n:
        return f"wrong on {failed} of {n} random inputs"
    return "wrong on a random input"


def _plain(value: object) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)
