"""The class as every report shows it: the gradebook's current rows, each student's final grade
(roster, lateness, overrides) and the similar pairs, read once from one gradebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grader.assignment.model import Assignment
from grader.batch.gradebook import Gradebook, Row
from grader.course import similarity
from grader.course.grades import Grade, class_grades


@dataclass
class ClassView:
    """Rows, grades (one per student, `missing` ones included) and similar pairs."""

    rows: list[Row]
    grades: list[Grade]
    state: dict[str, Any] = field(default_factory=dict)
    pairs: list[similarity.Pair] = field(default_factory=list)

    def similar(self, student: str) -> list[similarity.Pair]:
        """The pairs this student is in."""
        return [p for p in self.pairs if student in (p.a, p.b)]


def view_of(rows: list[Row], state: dict[str, Any] | None = None,
            starter: tuple[str, set[int]] | None = None) -> ClassView:
    """The class view of some rows (no roster, deadline or override unless `state` gives them)."""
    state = state or {}
    top = max((r.max_score for r in rows), default=0.0)
    subs = {r.student: (r.provenance.code_sha256, similarity.decode(r.provenance.fingerprints))
            for r in rows if r.provenance.code_sha256}
    return ClassView(rows, class_grades(rows, state, top), state, similarity.similar_pairs(subs, starter))


def load(book: Gradebook) -> ClassView:
    """The class view of a gradebook."""
    rows = list(book.current())
    starter = (book.meta("starter_code_sha256") or "", similarity.decode(book.meta("starter_fingerprints")))
    return view_of(rows, book.course.state(), starter)


def keep_starter(book: Gradebook, asg: Assignment) -> None:
    """The starter notebook's code in the gradebook's meta, so similarity never counts it."""
    try:
        code = similarity.code_of(asg.path("starter.ipynb").read_bytes())
    except OSError:  # (an assignment without a starter: nothing to leave out)
        return
    book.set_meta("starter_code_sha256", similarity.code_hash(code))
    book.set_meta("starter_fingerprints", similarity.encode(similarity.fingerprints(code)))
