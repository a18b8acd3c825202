"""Grade neural-network backpropagation notebooks against a PyTorch-autograd reference."""

from .errors import GraderError, SpecError, SubmissionError, UnknownAssignment
from .grade import grade_notebook, grade_notebook_async
from .report import Report

__all__ = [
    "GraderError",
    "Report",
    "SpecError",
    "SubmissionError",
    "UnknownAssignment",
    "grade_notebook",
    "grade_notebook_async",
]
