"""Grading some checks only: `--check NAME` (repeatable) and `--public`.

A name matches a check by id, target (the function or variable) or label. Only what the
chosen checks need is planned and run: hidden inputs of checks left out are never drawn,
and the hard-coding re-run happens only when a chosen check is one it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grader.assignment.model import Assignment
from grader.assignment.tables import Check
from grader.errors import UnknownAssignment
from grader.judging.labels import check_labels


def check_points(check: Check) -> float:
    """The points a check is worth (its parts' together)."""
    return sum(p.points for p in check.parts) if check.parts else check.points


def select_checks(asg: Assignment, names: Sequence[str] | None = None, public_only: bool = False) -> list[Check]:
    """The assignment's checks matching any of `names` (all if none), public ones only with `public_only`.

    Raises UnknownAssignment (an unusable command) for a name that matches no check.
    """
    checks = list(asg.spec.checks)
    labels = check_labels(checks)
    if names:
        chosen: list[Check] = []
        for n in names:
            hits = [c for c in checks if n in (c.id, c.target, labels[c.id])]
            if not hits:
                shown = [c for c in checks if c.visibility == "public" or not public_only]
                known = ", ".join(dict.fromkeys(c.target for c in shown)) or "(none)"
                which = "public checks" if public_only else "checks"
                raise UnknownAssignment(f"assignment {asg.id} has no check named {n[:80]!r} (its {which}: {known})")
            chosen += [c for c in hits if c not in chosen]
        checks = [c for c in checks if c in chosen]  # in the assignment's order
    if public_only:
        kept = [c for c in checks if c.visibility == "public"]
        if names and not kept:
            raise UnknownAssignment(f"{', '.join(n[:80] for n in names)}: no public check of assignment "
                                    f"{asg.id} has that name (it is checked on hidden inputs only)")
        checks = kept
    return checks


def selection_info(asg: Assignment, names: Sequence[str] | None, public_only: bool) -> dict[str, Any] | None:
    """The report's `selection` (None for a full grading)."""
    if not names and not public_only:
        return None
    return {"checks": list(names or []), "public_only": public_only, "full_max_score": asg.max_score}
