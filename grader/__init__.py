"""Grade neural-network backpropagation notebooks against a PyTorch-autograd reference.

Importing the package is light: `from grader import check` in a student's notebook loads
neither torch nor the Jupyter client; the grading API loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grader.errors import GraderError, SpecError, SubmissionError, UnknownAssignment
from grader.lazy import lazy_exports
from grader.selfcheck.check import check, use

if TYPE_CHECKING:
    from grader.grading.grade import grade_notebook, grade_notebook_async
    from grader.report import Report

__all__ = [
    "GraderError",
    "Report",
    "SpecError",
    "SubmissionError",
    "UnknownAssignment",
    "check",
    "grade_notebook",
    "grade_notebook_async",
    "submit",
    "use",
]

# Loaded on first use: `grade --help` and `grade list` need none of the kernel or torch machinery.
__getattr__ = lazy_exports(__name__, {
    "grade_notebook": "grader.grading.grade",
    "grade_notebook_async": "grader.grading.grade",
    "Report": "grader.report",
    "submit": "grader.service.client",  # (the standard library only: a notebook's kernel needs nothing more)
})
