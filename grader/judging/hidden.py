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

from dataclasses import replace

from grader.report import CheckResult, Diagnosis

# What each diagnosis says on a hidden check; `{label}` is the check's own name (the spec's).
_SAID = {
    "exception": "{label} raised an exception on a hidden input (for hidden checks its type, "
                 "message and place are not shown; call it yourself on inputs of the same kind to see it).",
    "shape_mismatch": "{label} has the wrong shape on a hidden input.",
    "wrong": "{label} is not right on a hidden input.",
}
# Diagnoses whose sentences the grader builds from the spec and its own conclusions alone (names
# the spec gives, its time limits, a sign, a simple factor, the transpose of the expected shape,
# positions within the expected shape, which arguments a function ignores): shown as they are.
_GRADERS_OWN = ("missing", "timeout", "kernel_died", "probe_tampered", "numerical_gradient", "unstable",
                "forbidden_import", "sign_flip", "scaled", "transposed", "nan_or_inf", "hardcoded", "inconsistent")
# What a value that is not numbers was, from the runner's fixed vocabulary of kinds.
_KIND_SAID = {
    "too_big": "{label} returned a value too large to read.",
    "none": "{label} returned None, not numbers.",
    "str": "{label} returned text, not numbers.",
    "unconvertible": "{label} returned something that could not be read as numbers.",
}
_PASS_NOTES = {"transposed": "{label} is transposed; accepted for this check."}
# Detail keys that are grader-side facts (never a shape, size, value or text of the answer):
# counts and tolerances, and the grader's yes/no conclusions.
_DETAIL = ("trials", "failed_trials", "rtol", "atol")
_CONCLUSIONS = ("consistent_with_forward", "hardcoded", "follows_sample")
_KINDS = ("too_big", "none", "str", "unconvertible", "seq", "dict", "object")


def hidden_view(result: CheckResult) -> CheckResult:
    """A hidden check's result as every output shows it (public checks are returned as they are)."""
    if result.visibility != "hidden":
        return result
    label = result.label or result.target
    detail = {k: result.detail[k] for k in _DETAIL if k in result.detail and _plain(result.detail[k])}
    detail.update({k: result.detail[k] for k in _CONCLUSIONS if isinstance(result.detail.get(k), bool)})
    if result.detail.get("answer_kind") in _KINDS:
        detail["answer_kind"] = result.detail["answer_kind"]
    if result.status == "pass":
        notes = [Diagnosis(d.code, _PASS_NOTES[d.code].format(label=label)) if d.code in _PASS_NOTES else d
                 for d in result.diagnosis if d.code in _PASS_NOTES or d.code in _GRADERS_OWN]
        return replace(result, message=_scope(detail, passed=True), diagnosis=notes, detail=detail)
    compared = "failed_trials" in result.detail  # judged by comparing numbers of the expected shape
    diagnosis = [Diagnosis(d.code, _said(d, label, detail, compared)) for d in result.diagnosis]
    head = diagnosis[0].message if diagnosis else f"{label} is not right."
    if result.status != "fail":  # an error: what happened, not how many inputs it was wrong on
        return replace(result, message=head.rstrip("."), diagnosis=diagnosis, detail=detail)
    return replace(result, message=f"{_scope(detail, passed=False)}: {head}", diagnosis=diagnosis, detail=detail)


def _said(d: Diagnosis, label: str, detail: dict[str, object], compared: bool) -> str:
    if d.code.startswith("variant:") or d.code in _GRADERS_OWN:
        return d.message  # the assignment's own sentence for a mistake it declares, or the grader's
    if d.code == "wrong" and compared:
        return d.message  # from comparing values, built for hidden checks: where, never how much
    kind = detail.get("answer_kind")
    if d.code == "wrong" and isinstance(kind, str):
        return _KIND_SAID.get(kind, "{label} did not return numbers.").format(label=label)
    return _SAID.get(d.code, _SAID["wrong"]).format(label=label)


def _scope(detail: dict[str, object], passed: bool) -> str:
    n = detail.get("trials")
    n = n if isinstance(n, int) and n > 0 else None
    if passed:
        return f"correct on {n} random inputs" if n and n > 1 else "correct"
    failed = detail.get("failed_trials")
    if n and n > 1 and isinstance(failed, int) and 0 < failed <= n:
        return f"wrong on {failed} of {n} random inputs"
    return "wrong on a random input" if n else "not right on a hidden input"


def _plain(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
