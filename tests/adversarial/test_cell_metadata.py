"""Cell metadata never decides what runs: grading executes what the student wrote.

nbclient leaves out cells tagged `skip-execution` by default; a notebook whose cells carry
that tag (valid metadata, set by some front ends) must be graded on all of its code.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.adversarial.helpers import ASSIGNMENT, ROOT
from tests.conftest import graded

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"


@pytest.mark.parametrize("tags", [["skip-execution"], ["skip-execution", "raises-exception"], ["hide-input"]])
def test_tagged_cells_still_run(tmp_path: Path, tags: list[str]):
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata["tags"] = list(tags)
    path = tmp_path / "tagged.ipynb"
    nbformat.write(nb, path)
    report = graded(path, ASSIGNMENT)
    assert report.score == report.max_score, [(c.id, c.message) for c in report.checks if c.status != "pass"]
    code_cells = [i for i, c in enumerate(nb.cells, 1) if c.cell_type == "code"]
    assert report.execution.skipped_cells == [] and report.execution.ran_cells == code_cells
