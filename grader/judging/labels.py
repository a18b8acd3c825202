"""Names for checks as every output format shows them, distinct among an assignment's checks.

A check's `label` in the spec wins. Otherwise a check is named by its target (`sigmoid`,
`dL_dW1`) when no other check has that target; checks sharing a target are told apart by what
they read (`TwoLayerNet.loss[0]`, `TwoLayerNet.loss[1]`), then by their input set (a function
checked on the given sample and again on random inputs), then by reference, then by id.
"""

from __future__ import annotations

from collections import Counter

from grader.assignment.tables import Check
from grader.report import CheckResult


def read_of(c: Check) -> str:
    """What a check reads, as a student would write it: `TwoLayerNet.loss[1]`, `network after
    backpropagate`, `NeuralNetwork after train`, `forward`."""
    take = f"[{c.take!r}]" if isinstance(c.take, (int, str)) else ""
    if c.kind == "class":
        return f"{c.target} after {c.method}" if c.read == "state" else f"{c.target}.{c.method}{take}"
    if c.argument is not None:
        return f"{c.argument} after {c.target}"
    return f"{c.target}{take}"


# Ways to tell apart checks sharing a target, the plainest first: what each reads (the loss and
# the gradients of one `loss` method), then the input set (`update on step`), then the reference.
_APART = (
    read_of,
    lambda c: f"{read_of(c)} on {c.inputs}",
    lambda c: f"{read_of(c)} ({c.reference})",
    lambda c: f"{read_of(c)} on {c.inputs} ({c.reference})",
)


def check_labels(checks: list[Check]) -> dict[str, str]:
    """Check id -> its label (without the `(hidden)` every format adds for hidden checks)."""
    shared = Counter(c.target for c in checks)
    labels: dict[str, str] = {}
    for c in checks:
        if c.label:
            labels[c.id] = c.label
        elif shared[c.target] == 1:
            labels[c.id] = c.target
        else:
            group = [o for o in checks if o.target == c.target and not o.label]
            apart = next((f for f in _APART if len({f(o) for o in group}) == len(group)), _APART[1])
            labels[c.id] = apart(c)
    # still the same (same target, same input set): the check's id tells them apart
    counts = Counter(labels.values())
    for c in checks:
        if counts[labels[c.id]] > 1 and not c.label:
            labels[c.id] = f"{c.target} [{c.id}]" if c.id != c.target else labels[c.id]
    counts = Counter(labels.values())
    seen: Counter[str] = Counter()
    for c in checks:  # last resort (explicit labels repeated): number them
        if counts[labels[c.id]] > 1:
            seen[labels[c.id]] += 1
            labels[c.id] = f"{labels[c.id]} #{seen[labels[c.id]]}"
    return labels


def label_results(results: list[CheckResult], checks: list[Check]) -> None:
    """Give every result its check's label; a part of a result is `label.key` (`gradients.W1`)."""
    labels = check_labels(checks)
    for r in results:
        check_id, dot, key = r.id.partition(".")
        if check_id not in labels:  # (an id with a dot of its own)
            check_id, key = next(((i, r.id[len(i) + 1:]) for i in labels if r.id.startswith(i + ".")), (r.id, ""))
            dot = "." if key else ""
        base = labels.get(check_id, r.target)
        r.label = f"{base}{dot}{key}" if dot else base

