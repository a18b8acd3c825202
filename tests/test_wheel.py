"""The wheel built from the repository holds everything: a fresh venv with it grades a shipped assignment by id.

No checkout on the path: the venv is new, the command runs from an empty folder, and the
assignment and reference come from the installed package. pip's cache is reused, so only
the first run downloads anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ASSIGNMENTS, ROOT

SHIPPED = sorted(p.name for p in ASSIGNMENTS.iterdir() if (p / "assignment.toml").is_file())


def _run(cmd: list[str], cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADER_ASSIGNMENTS", "VIRTUAL_ENV")}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _source_copy(dest: Path) -> Path:
    """The repository's files (as a fresh clone has them), so the build leaves nothing in the checkout."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """The grader's wheel, built (sdist, then wheel from it) from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = _source_copy(tmp / "source")
    dist = tmp / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=tmp)
    (wheel,) = dist.glob("nngrader-*.whl")
    return wheel


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_grades_a_shipped_assignment_by_id(tmp_path, built_wheel):
    wheel = built_wheel
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for asg in SHIPPED:
        assert {f"nngrader_assignments/{asg}/{f}" for f in ("assignment.toml", "reference.py", "solution.ipynb",
                                                            "starter.ipynb")} <= names, asg
    assert {"grader/cli/__init__.py", "grader/run/runner.py", "grader/render/junit.py", "reference/__init__.py"} <= names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "torch==2.13.0"], cwd=tmp_path)
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import grader, nngrader_assignments; print(grader.__file__); "
                  "print(nngrader_assignments.__path__[0])"], cwd=work).stdout.split()
    assert all(Path(w).is_relative_to(env_dir) for w in where), where
    listed = _run([str(env_dir / "bin" / "grade"), "list"], cwd=work).stdout
    assert sorted(line.split()[0] for line in listed.splitlines()) == SHIPPED, listed
    assert len(SHIPPED) == 5

    shutil.copy(ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb", work / "submission.ipynb")
    _run([str(env_dir / "bin" / "grade"), "submission.ipynb", "--assignment", "sigmoid-2-3-1", "--seed", "5",
          "--format", "json", "--output", "report.json", "--fail-under", "100%"], cwd=work)
    report = json.loads((work / "report.json").read_text())
    assert report["status"] == "graded" and report["score"] == report["max_score"] == 11
    assert Path(report["assignment"]["folder"]).is_relative_to(env_dir)

    # the helper processes computing reference values start from the installed package too
    helpers = _run([str(py), "-c", _HELPERS.format(cache=str(tmp_path / "cache"))], cwd=work).stdout.split()
    assert helpers == ["planner", "entry", "builder", "0", "1"], helpers


_HELPERS = """
import asyncio, os
os.environ["NNGRADER_CACHE_DIR"] = {cache!r}
os.environ["NNGRADER_POOL_SIZE"] = "1"
from grader.pool import store as pool
from grader.pool.child import Builder, Planner
from grader.assignment.load import find_assignment
asg = find_assignment("sigmoid-2-3-1")
async def main():
    planner = Planner(asg, [3])
    await planner.start()
    try:
        return await planner.entry(3)
    finally:
        await planner.close()
entry = asyncio.run(main())
print("planner", "entry" if entry is not None and entry.seed == 3 else "none")
b = Builder(asg)
b.start()
print("builder", b.process.wait(timeout=600), len(pool.entry_seeds(pool.pool_folder(asg))))
"""


_CHECK = """
import numpy as np
from grader import check, use
use("sigmoid-2-3-1")
def sigmoid(a):
    return 1 / (1 + np.exp(-a))
def sigmoid_derivative(a):
    return sigmoid(a) * (1 + sigmoid(a))  # wrong: 1 + for 1 -
print(check("sigmoid"))
print(check("sigmoid_derivative"))
"""


@pytest.mark.slow
def test_a_student_install_has_no_torch_yet_check_runs_and_grade_says_what_to_install(tmp_path, built_wheel):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(built_wheel)], cwd=tmp_path)
    installed = _run([str(py), "-m", "pip", "list", "--format", "json"], cwd=tmp_path).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "torch" not in names and not {n for n in names if n.startswith("nvidia")}, sorted(names)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "student.py").write_text(_CHECK)
    out = _run([str(py), "student.py"], cwd=work).stdout
    assert "PASS sigmoid" in out and "FAIL sigmoid_derivative" in out, out
    assert "Hidden: the final grading adds" in out

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADER_ASSIGNMENTS", "VIRTUAL_ENV")}
    env["NNGRADER_CACHE_DIR"] = str(tmp_path / "cache")
    listed = subprocess.run([str(env_dir / "bin" / "grade"), "list"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0 and "needs PyTorch to load: pip install 'nngrader[torch]'" in listed.stdout
    shutil.copy(ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb", work / "submission.ipynb")
    graded = subprocess.run([str(env_dir / "bin" / "grade"), "submission.ipynb", "--assignment", "sigmoid-2-3-1",
                             "--format", "json", "--output", "report.json"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert graded.returncode == 2, graded.stdout + graded.stderr
    (line,) = graded.stderr.splitlines()  # one line, no traceback
    assert "needs PyTorch" in line and "pip install 'nngrader[torch]'" in line, line
    assert json.loads((work / "report.json").read_text())["status"] == "error"
