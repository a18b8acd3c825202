"""Grading one notebook, end to end: the stages put together.

- `grade`: `grade_notebook` / `grade_notebook_async`: read the submission, resolve the
  assignment, start the first kernel in the assignment's environment, hand over to the stages,
  and return the `Report`.
- `stages`: plan the checks, execute, probe, re-run with a fresh sample, judge, score; any
  failure of the grader's own becomes a report with `status: "error"` and the failing stage
  (imported once the first kernel is started, so that it loads while the kernel boots).
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
