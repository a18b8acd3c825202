"""Names for checks as every output format shows them, distinct among an assignment's checks.

A check's `label` in the spec wins. Otherwise a check is named by its target (`sigmoid`,
`dL_dW1`) when no other check has that target; checks sharing a target (a function checked
on the given sample and again on random inputs) are told apart by their input set, then by id.
"""

from __future__ import annotations

from collections import Counter

from grader.assignment.tables import Check
from grader.report import CheckResult


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
            labels[c.id] = f"{c.target} on {c.inputs}"
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

