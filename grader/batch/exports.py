"""`grade export`: the gradebook in each format, and feedback files named for each LMS's upload."""

from __future__ import annotations

from pathlib import Path

from grader.batch.classview import ClassView
from grader.batch.reports import feedback_html, grades_csv, results_jsonl, similarity_csv
from grader.course import exports
from grader.errors import GraderError


def canvas_column(view: ClassView, column: str | None) -> str:
    """The Canvas assignment column: as given, else the only one the Canvas roster listed."""
    if column:
        return column
    listed = list(view.state.get("canvas_columns") or [])
    if len(listed) == 1:
        return listed[0]
    if listed:
        raise GraderError("give --column: the Canvas roster lists " + ", ".join(repr(c) for c in listed))
    raise GraderError("give --column 'Assignment name (assignment id)' as Canvas names the assignment "
                      "(its gradebook export's header), or import a Canvas roster that lists it")


def export_text(view: ClassView, fmt: str, column: str | None = None) -> str:
    """The text of one export format (csv, jsonl, canvas, moodle, similarity)."""
    if fmt == "csv":
        return grades_csv(view.rows, view)
    if fmt == "jsonl":
        return results_jsonl(view.rows, view)
    if fmt == "similarity":
        return similarity_csv(view)
    if fmt == "canvas":
        return exports.canvas_csv(view.grades, canvas_column(view, column))
    if fmt == "moodle":
        return exports.moodle_csv(view.grades)
    if fmt == "brightspace":
        if not column:
            raise GraderError("give --column NAME: the grade item's name as Brightspace shows it")
        return exports.brightspace_csv(view.grades, column)
    raise GraderError(f"unknown export format {fmt!r}")


def write_lms_feedback(view: ClassView, fmt: str, folder: Path) -> list[Path]:
    """Each student's feedback page, named as the LMS's bulk feedback upload expects (zip the
    folder's content to upload it); a student the LMS cannot match gets none."""
    if fmt not in ("canvas", "moodle"):
        raise GraderError("--feedback goes with --format canvas or moodle")
    written = []
    for g in view.grades:
        if g.flags:  # not on the roster, or dropped: the LMS has no one to give it to
            continue
        key = g.row.provenance.lms_key if g.row is not None else ""
        if fmt == "canvas":
            name = exports.canvas_feedback_name(key)
        else:
            name = exports.moodle_feedback_name(key, g.student, g.name) if g.student.isdigit() else None
        if name is None:
            continue
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(feedback_html(g.row, g), encoding="utf-8")
        written.append(target)
    return written
