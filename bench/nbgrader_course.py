"""nbgrader on the benchmark's class, for comparison: a course folder, its assignment and submissions.

nbgrader runs from a virtual environment of its own (made under the cache folder by
`grade_speed.py --install-others`, never in the grader's). The assignment is the solution's
cells followed by locked test cells worth the same points as the grader's checks (the given
sample, the functions on fresh random inputs); each submission is one of the benchmark's
notebooks with those test cells appended, as a student's copy of the released notebook has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat

COURSE_CONFIG = """c = get_config()
c.CourseDirectory.course_id = "bench"
c.CourseDirectory.root = {root!r}
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
"""

REFERENCE = '''import numpy as _np
def _sig(a):
    return 1 / (1 + _np.exp(-a))
def _ref(x, t, W1, W2):
    h = _sig(W1 @ x); y = _sig(W2 @ h)
    d2 = (y - t) * y * (1 - y); d1 = (W2.T @ d2) * h * (1 - h)
    return y, d1 @ x.T, d2 @ h.T
_rng = _np.random.default_rng(2026)
'''

TESTS = [
    ("sigmoid", 2, "assert _np.allclose(sigmoid(_np.array([-1.0, 0.0, 2.0])), _sig(_np.array([-1.0, 0.0, 2.0])))\n"
                   "assert _np.allclose(sigmoid_derivative(_np.array([0.5])), _sig(0.5) * (1 - _sig(0.5)))"),
    ("forward", 2, "for _ in range(3):\n"
                   "    _x, _W1, _W2 = _rng.normal(size=(2, 1)), _rng.normal(size=(3, 2)), _rng.normal(size=(1, 3))\n"
                   "    assert _np.allclose(forward(_x, _W1, _W2), _ref(_x, 0, _W1, _W2)[0])"),
    ("gradients", 4, "for _ in range(3):\n"
                     "    _x, _t = _rng.normal(size=(2, 1)), _rng.normal(size=(1, 1))\n"
                     "    _W1, _W2 = _rng.normal(size=(3, 2)), _rng.normal(size=(1, 3))\n"
                     "    _g1, _g2 = gradients(_x, _t, _W1, _W2)\n"
                     "    _, _e1, _e2 = _ref(_x, _t, _W1, _W2)\n"
                     "    assert _np.allclose(_g1, _e1) and _np.allclose(_g2, _e2)"),
    ("variables", 3, "_e = _ref(x0, t, W1, W2)\n"
                     "assert _np.allclose(y, _e[0]) and _np.allclose(dL_dW1, _e[1]) and _np.allclose(dL_dW2, _e[2])"),
]


def _test_cells() -> list[nbformat.NotebookNode]:
    cells = [nbformat.v4.new_code_cell(REFERENCE, metadata={"nbgrader": {
        "grade": False, "solution": False, "locked": True, "grade_id": "reference", "schema_version": 3}})]
    for grade_id, points, source in TESTS:
        cells.append(nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
            "grade": True, "solution": False, "locked": True, "grade_id": grade_id, "points": points,
            "schema_version": 3}}))
    return cells


def make_course(root: Path, venv: Path, solution: Path, submissions: list[Path], timeout: float) -> list[str]:
    """A course folder with assignment `ps1` released and one submission per notebook; the student ids."""
    if root.exists():
        shutil.rmtree(root)
    (root / "source" / "ps1").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(COURSE_CONFIG.format(root=str(root), timeout=int(timeout)))
    source = nbformat.read(solution, as_version=4)
    source.cells += _test_cells()
    nbformat.write(source, root / "source" / "ps1" / "sigmoid.ipynb")
    run(venv, root, "generate_assignment", "ps1", "--force")
    released = nbformat.read(root / "release" / "ps1" / "sigmoid.ipynb", as_version=4)
    locked = [c for c in released.cells if c.get("metadata", {}).get("nbgrader")]
    students = []
    for i, path in enumerate(submissions, 1):
        student = f"s{i:02d}"
        nb = nbformat.read(path, as_version=4)
        nb.cells += [nbformat.from_dict(json.loads(json.dumps(c))) for c in locked]
        folder = root / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "sigmoid.ipynb")
        students.append(student)
    return students


def autograde_command(venv: Path, student: str | None = None) -> list[str]:
    """`nbgrader autograde ps1` for one student, or for all of them."""
    cmd = [str(venv / "bin" / "nbgrader"), "autograde", "ps1", "--create", "--force"]
    return [*cmd, "--student", student] if student else cmd


def environment(venv: Path) -> dict[str, str]:
    """A tool's environment: its virtual environment first on PATH (nbgrader runs `alembic` from
    there; the kernels of nbgrader and Otter are that environment's Python)."""
    return dict(os.environ, PATH=os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]),
                VIRTUAL_ENV=str(venv))


def run(venv: Path, root: Path, *args: str) -> None:
    """Run an nbgrader command in the course folder (raising with its output if it fails)."""
    r = subprocess.run([str(venv / "bin" / "nbgrader"), *args], cwd=root, capture_output=True, text=True,
                       timeout=600, env=environment(venv))
    if r.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed: {(r.stderr or r.stdout)[-500:]}")
