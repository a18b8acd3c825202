"""Writing an assignment: drafting it, proving it, and packing it for Gradescope.

- `draft`: `grade new FOLDER --from solution.ipynb` drafts a spec, a torch reference to write,
  and a starter with the solution's code stubbed out; `draft_spec` drafts its checks from what
  the solution does when `trace` runs it once (the values its functions are called with).
- `validate`: `grade validate` checks that the spec loads, the reference runs on every input
  set, autograd agrees with finite differences, the solution earns full marks and the
  starter earns 0.
- `bundle`: a Gradescope autograder (`setup.sh`, `run_autograder`, the assignment) built from
  the same assignment.
- `wheel`: this grader as a wheel, built from its source tree, for the bundle to carry.
"""

from grader.lazy import lazy_exports

# (`draft` and `validate` are both a module and its main function: import them from the module)
__getattr__ = lazy_exports(__name__, {"make_bundle": "grader.authoring.bundle"})
