"""Scoring: points of passing checks, then the assignment's policy for whole-submission flags."""

from __future__ import annotations

from .report import CheckResult, Flag
from .spec import Policy


def total(checks: list[CheckResult], flags: list[Flag], policy: Policy, max_score: float) -> float:
    """The score: passing points, less the penalties the policy attaches to flags."""
    score = sum(c.points for c in checks)
    # an import check that got no genuine answer counts as a forbidden import
    unknown = any(f.code in ("probe_tampered", "imports_unchecked") and f.target == "imports" for f in flags)
    if unknown or any(f.code == "forbidden_import" for f in flags):
        score -= policy.forbidden_import_penalty * max_score
    if any(f.code == "numerical_gradient" for f in flags):
        score -= policy.numerical_penalty() * max_score
    return round(max(0.0, min(score, max_score)), 6)
