"""`check()` inside a student's own notebook: the public checks' verdicts on the spot.

- `check`: `check(name)` and `use(assignment)`, judged in the student's kernel with the same
  probe runner and judging as the grader; hidden checks are never run or named.
- `public`: the public checks' inputs and expected values, shipped as `public.json` so a
  student's environment needs no torch (`grade build-public`).

Importing this package is light: no torch, no Jupyter client.
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "public_plans": "grader.selfcheck.public",
    "write_public": "grader.selfcheck.public",
})
