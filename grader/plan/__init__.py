"""The check plan: what to ask a notebook, on which inputs, expecting what; decided before
any kernel starts, and all of it in the grader's process.

- `checks`: `plan` / `plan_check`: each check's scored targets (the whole check, or each part
  of a structured result), its trials on inputs the grader draws from the run's seed, the
  expected values the reference computes on them, the values of the declared wrong variants,
  and the unscored calls on the given sample and on extreme inputs; `probe_items` turns a
  check's plan into what the run stage asks the kernel.
- `items`: `ProbeItem`, one call of a student function or read of a variable, and `RESULT`,
  where a pipeline passes its first call's result on.

Importing the package is light: `plan` loads on first use.
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "plan": "grader.plan.checks",
    "plan_check": "grader.plan.checks",
    "probe_items": "grader.plan.checks",
    "CheckPlan": "grader.plan.checks",
    "ProbeItem": "grader.plan.items",
})
