"""Reading a submission: the notebook file's bytes to a validated nbformat-4 notebook, or one
clear sentence why not.

- `notebook`: `read_submission` (the file, its digest and the assignment its metadata names),
  `parse_cell` (a cell's code as Python, IPython magics tolerated).
- `choose`: `choose_notebook` (which notebook of a repository a CI job grades: the one named,
  else the one whose metadata names the assignment; never a guess among several).
"""

from grader.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "Submission": "grader.submission.notebook",
    "read_submission": "grader.submission.notebook",
    "parse_cell": "grader.submission.notebook",
    "choose_notebook": "grader.submission.choose",
})
