"""The assignment as data: what an assignment folder declares, how it is found and loaded, the
inputs the grader chooses, and the torch reference that computes the expected values.

- `tables`: the tables of `assignment.toml` (input sets and distributions, checks and their
  parts, intermediates, variants, policy, environment), each validated and frozen.
- `model`: `Spec`, the whole `assignment.toml` checked across its tables, and `Assignment`,
  a loaded folder with its spec and fingerprint.
- `load`: `load_spec`, `find_assignment`, `known_assignments`: a spec read, completed with
  its inferred defaults and remembered on disk; assignments found by id ($GRADER_ASSIGNMENTS,
  courses' packages, the shipped ones) or by folder.
- `defaults`: what a spec may leave out, inferred from its reference, and the checks of the
  reference's results made when a spec loads.
- `aliases`: the built-in aliases, the names students commonly give the usual functions.
- `inputs`: the inputs the grader chooses: literal values, random draws, a generator's.
- `tensors`: torch, imported once under a lock; grader values to tensors and back.
- `reference`: an assignment's `reference.py` loaded, checked against the spec, and called.
- `requirements`: the packages an assignment's kernel environment holds.

Importing the package is light: the names below load on first use, and torch only when a
reference computes.
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "Assignment": "grader.assignment.model",
    "Spec": "grader.assignment.model",
    "Check": "grader.assignment.tables",
    "load_spec": "grader.assignment.load",
    "find_assignment": "grader.assignment.load",
    "find_known_assignment": "grader.assignment.load",
    "known_assignments": "grader.assignment.load",
    "Reference": "grader.assignment.reference",
})
