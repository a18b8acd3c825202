"""Grading one notebook, end to end: the stages put together.

- `grade`: `grade_notebook` / `grade_notebook_async`: read the submission, plan the checks,
  start a kernel in the assignment's environment, execute, probe, re-run with a fresh sample,
  judge, score, and return the `Report`; any failure of the grader's own becomes a report with
  `status: "error"` and the failing stage.
- `limits`: the default cell limit measured from the assignment's solution (kept in the cache),
  and which limit a grade uses: --timeout, the spec's, the measured one, else 30 s.
- `selection`: grading some checks only (`--check NAME`, `--public`).
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "grade_notebook": "grader.grading.grade",
    "grade_notebook_async": "grader.grading.grade",
    "select_checks": "grader.grading.selection",
    "cell_limit": "grader.grading.limits",
})
