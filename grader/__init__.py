"""Grade neural-network backpropagation notebooks against a PyTorch-autograd reference.

Importing the package is light: `from grader import check` in a student's notebook loads
neither torch nor the Jupyter client; the grading API loads on first use.
"""

from typing import Any

from .errors import GraderError, SpecError, SubmissionError, UnknownAssignment
from .selfcheck import check, use

__all__ = [
    "GraderError",
    "Report",
    "SpecError",
    "SubmissionError",
    "UnknownAssignment",
    "check",
    "grade_notebook",
    "grade_notebook_async",
    "use",
]


def __getattr__(name: str) -> Any:
    """The grading API, imported when first asked for."""
    if name in ("grade_notebook", "grade_notebook_async"):
        from . import grade

        return getattr(grade, name)
    if name == "Report":
        from .report import Report

        return Report
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
