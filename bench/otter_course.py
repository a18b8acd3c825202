"""Otter-Grader on the benchmark's class, for comparison: an autograder zip and submissions for it.

Otter runs from a virtual environment of its own (made under the cache folder by
`grade_speed.py --install-others`, never in the grader's). The master notebook, in Otter's
format, is the solution's cells followed by one question per check of the nbgrader course
(`nbgrader_course.TESTS`: the same checks, points and `np.allclose` tolerance). Each test case
carries the reference it compares with: Otter runs test cases in the notebook's globals after
it has run, and a submission has no reference cell. `otter assign` turns the master into the
autograder zip and the released notebook once; both are cached by the master's content and
Otter's version. Each submission is one of the benchmark's notebooks put into the released
notebook's frame, as a student's copy has it: Otter's first cell (`grader = otter.Notebook(…)`)
before it, the `grader.check(…)` cells after it, Otter's notebook metadata.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from bench.nbgrader_course import REFERENCE, TESTS, environment

NAME = "sigmoid"  # the assignment's name in Otter, and the notebook's file name

CONFIG = f"""# ASSIGNMENT CONFIG
name: {NAME}
init_cell: true
check_all_cell: false
export_cell: false
run_tests: true
solutions_pdf: false
template_pdf: false
generate:
  pdf: false
"""


def master_notebook(solution: Path) -> NotebookNode:
    """The solution as an Otter master notebook: its cells, then one question per check."""
    nb = nbformat.read(solution, as_version=4)
    cells = [nbformat.v4.new_raw_cell(CONFIG), *nb.cells]
    for name, points, source in TESTS:
        cells += [
            nbformat.v4.new_raw_cell(f"# BEGIN QUESTION\nname: {name}\npoints: {points}"),
            nbformat.v4.new_markdown_cell(f"The `{name}` check."),
            nbformat.v4.new_raw_cell("# BEGIN TESTS"),
            nbformat.v4.new_code_cell(REFERENCE + source),
            nbformat.v4.new_raw_cell("# END TESTS"),
            nbformat.v4.new_raw_cell("# END QUESTION"),
        ]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"  # fixed ids (new cells get random ones), so the content key is stable
    nb.cells = cells
    return nb


def otter_version(venv: Path) -> str:
    """The version of Otter installed in `venv` (from its package metadata, without importing it)."""
    found = sorted(venv.glob("lib/python*/site-packages/otter_grader-*.dist-info"))
    if not found:
        raise RuntimeError(f"otter-grader is not installed in {venv}")
    return found[-1].name.removeprefix("otter_grader-").removesuffix(".dist-info")


def assign(venv: Path, solution: Path, cache: Path) -> Path:
    """A folder with `autograder.zip` and the released `sigmoid.ipynb`, made by `otter assign` once."""
    master = nbformat.writes(master_notebook(solution))
    key = hashlib.sha256(f"{otter_version(venv)}\n{master}".encode()).hexdigest()[:16]
    done = cache / f"otter-{key}"
    if (done / "autograder.zip").exists() and (done / f"{NAME}.ipynb").exists():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        (work / f"{NAME}.ipynb").write_text(master)
        r = subprocess.run([str(venv / "bin" / "otter"), "assign", "--no-pdfs", f"{NAME}.ipynb", "dist"],
                           cwd=work, capture_output=True, text=True, timeout=900, env=environment(venv))
        zips = sorted((work / "dist" / "autograder").glob("*.zip"))
        if r.returncode != 0 or not zips:
            raise RuntimeError(f"otter assign failed: {(r.stderr or r.stdout)[-500:]}")
        out = work / "out"
        out.mkdir()
        shutil.copy(zips[-1], out / "autograder.zip")
        shutil.copy(work / "dist" / "student" / f"{NAME}.ipynb", out / f"{NAME}.ipynb")
        shutil.rmtree(done, ignore_errors=True)
        out.rename(done)  # whole or not at all: a run stopped halfway leaves no half-built entry
    return done


def as_submission(nb: NotebookNode, released: NotebookNode) -> NotebookNode:
    """A benchmark notebook in the released notebook's frame: Otter's first cell, its checks."""
    init = [c for c in released.cells if c.cell_type == "code" and "otter.Notebook(" in c.source]
    checks = [c for c in released.cells if c.cell_type == "code" and c.source.startswith("grader.check(")]
    if len(init) != 1 or len(checks) != len(TESTS):
        raise RuntimeError("the released Otter notebook has not the expected first cell and checks")
    out = copy.deepcopy(nb)
    out.cells = [copy.deepcopy(init[0]), *out.cells, *copy.deepcopy(checks)]
    out.metadata["otter"] = copy.deepcopy(released.metadata["otter"])
    return out


def make_class(root: Path, venv: Path, solution: Path, submissions: list[Path], cache: Path) -> tuple[Path, list[Path]]:
    """The autograder zip and, in `root`, one Otter submission per notebook (the solution's first)."""
    built = assign(venv, solution, cache)
    released = nbformat.read(built / f"{NAME}.ipynb", as_version=4)
    if root.exists():
        shutil.rmtree(root)
    paths = []
    for path in [solution, *submissions]:
        # one folder each, named as the notebook: `otter run` names every results file the same
        folder = root / path.stem
        folder.mkdir(parents=True)
        nbformat.write(as_submission(nbformat.read(path, as_version=4), released), folder / f"{NAME}.ipynb")
        paths.append(folder / f"{NAME}.ipynb")
    return built / "autograder.zip", paths


def run_command(venv: Path, autograder: Path, submission: Path) -> list[str]:
    """`otter run` of one submission, its results written beside it."""
    return [str(venv / "bin" / "otter"), "run", "--no-logo", "-a", str(autograder),
            "-o", str(submission.parent), str(submission)]


def graded(submission: Path) -> bool:
    """Whether `otter run` wrote its results for this submission."""
    return (submission.parent / "results.json").exists()
