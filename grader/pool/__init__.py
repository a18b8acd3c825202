"""Hidden cases computed ahead: per assignment version, many runs' hidden inputs and reference
values on disk, so a grade replays the reference without importing torch.

- `store`: the pool on disk (its key, entries written whole, a seed chosen at random,
  `PooledReference` replaying one entry).
- `child`: the child processes that compute entries away from the grading process: the
  `Builder` filling a pool while grades run, the `Planner` computing a batch's next runs.
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "choose_seed": "grader.pool.store",
    "read_entry": "grader.pool.store",
    "fill": "grader.pool.store",
    "Builder": "grader.pool.child",
    "Planner": "grader.pool.child",
})
