"""Judging: what the notebook's answers are worth, all of it in the grader's process.

- `answer`: finding the answer where the student put it (the whole value, or one element of a
  returned tuple or dict).
- `compare`: a value against the expected one: type, then shape, then values within tolerance.
- `diagnose`: what is wrong with a failed comparison, in the student's terms.
- `consistency`: whether a gradient is the gradient of the student's own forward pass and loss.
- `localise`: where a wrong answer first goes wrong, from the student's intermediate values.
- `rerun`: the hard-coding re-run, the notebook run again on a fresh sample; its parts
  `rerun_sample` (the fresh sample wherever the notebook binds it), `rerun_kernel` (the
  refresh's kernel-side code) and `rerun_judge` (do the re-run's values follow the sample?).
- `snapshots`: the value a variable had before a later cell overwrote it with a non-answer.
- `labels`: names for checks, distinct among an assignment's checks.
- `reproduce`: a one-line call that reproduces a public check.
- `judge`: judging one check: pick the answer, compare, explain.
- `score`: points of the passing checks, then the policy's penalties for flags.

Importing the package loads none of these: the stage is imported module by module.
"""
