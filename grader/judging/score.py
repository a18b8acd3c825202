"""Scoring: points of passing checks, then the assignment's policy for whole-submission flags.

`penalties` is the one list of what a flag costs; `total` records each penalty's points on
its flag (`Flag.points`, negative), so a report says where every point went and
`deductions` gives every output format the same penalty lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from grader.report import CheckResult, Flag, Report

if TYPE_CHECKING:  # (only for hints: rendering a report needs no spec machinery)
    from grader.assignment.tables import Policy

# Flag code -> (the penalty it is charged as, the fraction of the maximum score the policy
# takes for it); each penalty is charged once. A new penalty is one entry here; every output
# format shows it as its own line. An import check that got no genuine answer (tampered, or
# no kernel or time left to ask) is charged as a forbidden import: it cannot be told apart.
PENALTIES: dict[str, tuple[str, Callable[[Policy], float]]] = {
    "forbidden_import": ("forbidden_import", lambda policy: policy.forbidden_import_penalty),
    "imports_unchecked": ("forbidden_import", lambda policy: policy.forbidden_import_penalty),
    "numerical_gradient": ("numerical_gradient", lambda policy: policy.numerical_penalty()),
}


def _penalty(flag: Flag) -> tuple[str, Callable[[Policy], float]] | None:
    if flag.code == "probe_tampered" and flag.target == "imports":
        return PENALTIES["imports_unchecked"]
    return PENALTIES.get(flag.code)


def penalties(flags: list[Flag], policy: Policy, max_score: float, earned: float) -> list[tuple[Flag, float]]:
    """(flag, points taken) for each penalised flag code, in flag order.

    A penalty takes at most what is left of `earned`, so the checks' points less the
    penalties' points is exactly the score.
    """
    out: list[tuple[Flag, float]] = []
    seen: set[str] = set()
    left = max(0.0, earned)
    for f in flags:
        penalty = _penalty(f)
        if penalty is None or penalty[0] in seen:
            continue
        seen.add(penalty[0])
        taken = round(min(penalty[1](policy) * max_score, left), 6)
        left -= taken
        out.append((f, taken))
    return out


def total(checks: list[CheckResult], flags: list[Flag], policy: Policy, max_score: float) -> float:
    """The score: passing points, less the penalties the policy attaches to flags (noted on the flags)."""
    earned = max(0.0, min(sum(c.points for c in checks), max_score))
    score = earned
    for f, taken in penalties(flags, policy, max_score, earned):
        f.points = -taken
        score -= taken
    return round(max(0.0, min(score, max_score)), 6)


def deductions(report: Report) -> list[tuple[Flag, float]]:
    """The report's penalty lines: (flag, points taken, >= 0), as every output format shows them."""
    return [(f, -f.points) for f in report.flags if f.points is not None]
