"""Kernel environments: real ones, built with the normal cache (once; later runs reuse them).

The default environment has what course notebooks import and nothing of the grader; an
assignment pinned to numpy 1 runs code numpy 2 rejects; two graders building one
environment at once end with one good environment; a bad requirement is one clear line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.assignment.load import load_spec
from grader.errors import SpecError
from grader.kernels import envs
from grader.kernels.envs import EnvBuildError, KernelEnv, ensure_env, resolve_requirements
from grader.kernels.launch import ISOLATION_LEVELS, LocalKernelLauncher
from tests.conftest import ASSIGNMENTS, graded

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"
GRADE = [sys.executable, "-c", "from grader.cli import main; main()"]


def _run_grade(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if env_dir is not None:
        env[envs.ENV_DIR_VARIABLE] = str(env_dir)
    return subprocess.run([*GRADE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


def _assignment(tmp: Path, environment: str, name: str = "env-test") -> Path:
    """A copy of sigmoid-2-3-1 with an `[environment]` table of its own."""
    folder = tmp / name
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    spec = folder / "assignment.toml"
    text = spec.read_text().replace('id = "sigmoid-2-3-1"', f'id = "{name}"', 1)
    shipped = 'environment = { packages = ["numpy"] }'
    assert shipped in text
    lines = [line for line in text.splitlines() if not line.startswith(shipped)]
    spec.write_text("\n".join(lines) + "\n\n[environment]\n" + environment + "\n")
    return folder


def _with_cells(tmp: Path, sources: list[str], name: str = "submission.ipynb") -> Path:
    """The assignment's solution notebook with `sources` appended as code cells."""
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.extend(nbformat.v4.new_code_cell(s) for s in sources)
    path = tmp / name
    nbformat.write(nb, path)
    return path


def _errors(report) -> dict[int, tuple[str, str]]:
    return {e.cell: (e.ename, e.evalue) for e in report.execution.cell_errors}


# ---------------------------------------------------------------- requirements and keys


def test_default_requirements_hold_course_packages_and_no_autograd_library():
    reqs = resolve_requirements()
    assert {"numpy", "scipy", "matplotlib", "pandas", "scikit-learn", "ipykernel"} <= set(reqs)
    assert not any(r.startswith(("torch", "jax", "tensorflow")) for r in reqs)


def test_declared_package_replaces_the_default_entry_of_its_name():
    reqs = resolve_requirements(["NumPy>=1.24,<2", "sympy"])
    assert "numpy<2,>=1.24" in reqs and "numpy" not in reqs and "sympy" in reqs
    # naming a default package unpinned is the default environment itself
    assert resolve_requirements(["numpy", "matplotlib"]) == resolve_requirements()
    assert envs.env_key(resolve_requirements(["numpy"])) == envs.env_key(resolve_requirements())


def test_without_the_default_only_what_the_kernel_needs_is_added():
    assert resolve_requirements(["sympy"], include_default=False) == ("ipykernel", "numpy", "sympy")


def test_key_depends_on_requirements_not_their_order():
    a = envs.env_key(["numpy", "scipy"])
    assert a == envs.env_key(["scipy", "numpy"])
    assert a != envs.env_key(["numpy", "scipy<1.10"])


def test_invalid_requirement_is_a_spec_error_naming_it(tmp_path: Path):
    folder = _assignment(tmp_path, 'packages = ["numpy >>> 2"]')
    with pytest.raises(SpecError) as e:
        load_spec(folder)
    assert "environment.packages" in str(e.value) and "numpy >>> 2" in str(e.value)
    assert "\n" not in str(e.value)


def test_env_root_follows_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(envs.ENV_DIR_VARIABLE, str(tmp_path / "e"))
    assert envs.env_root() == tmp_path / "e"
    monkeypatch.delenv(envs.ENV_DIR_VARIABLE)
    assert envs.env_root().parts[-2:] == ("nngrader", "envs")


# ---------------------------------------------------------------- real environments


@pytest.fixture(scope="session")
def default_env() -> KernelEnv:
    """The default kernel environment (in the normal cache: built once, then reused)."""
    return ensure_env()


@pytest.fixture(scope="session")
def numpy1_env() -> KernelEnv:
    return ensure_env(["numpy<2", "scikit-learn"])


def test_default_env_has_course_packages_and_nothing_of_the_grader(default_env: KernelEnv):
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
            "['numpy', 'scipy', 'sklearn', 'pandas', 'matplotlib', 'ipykernel', 'torch', 'grader', "
            "'reference', 'nngrader_assignments', 'jax', 'tensorflow']}))")
    out = subprocess.run([default_env.python, "-I", "-c", code], capture_output=True, text=True, check=True,
                         cwd="/", env={"PATH": "/usr/bin:/bin"})
    found = json.loads(out.stdout)
    assert all(found[m] for m in ("numpy", "scipy", "sklearn", "pandas", "matplotlib", "ipykernel"))
    assert not any(found[m] for m in ("torch", "grader", "reference", "nngrader_assignments", "jax", "tensorflow"))
    assert default_env.packages["numpy"].split(".")[0] == "2"


def test_built_env_is_reused_without_building(default_env: KernelEnv, monkeypatch: pytest.MonkeyPatch):
    def no_build(*a: object, **k: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(envs, "_build", no_build)
    assert ensure_env() == default_env


@pytest.mark.parametrize("level", ISOLATION_LEVELS)
def test_kernel_runs_from_the_default_env_at_every_level(level: str, default_env: KernelEnv, tmp_path: Path):
    launcher = LocalKernelLauncher(isolation=level)
    grader_venv = os.path.realpath(sys.prefix)
    # a course's own helper file beside the notebook, unedited, as courses ship them
    (tmp_path / "course_utils.py").write_text(
        "import sklearn\nimport sklearn.linear_model\n\n"
        "def fit():\n    X, y = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]\n"
        "    return sklearn.linear_model.LogisticRegression().fit(X, y).score(X, y)\n")
    nb = _with_cells(tmp_path, [
        "import scipy, pandas\nfrom course_utils import fit\nassert fit() > 0.5",
        f"import sys, os\nassert os.path.realpath(sys.prefix) == {str(default_env.path)!r}, sys.prefix",
        "import torch",
        "import grader",
        "import reference",
        # the sandbox shows the kernel nothing of the grader's own environment
        f"import os\nassert {level == 'sandbox'} is False or not os.path.exists({grader_venv!r})",
    ])
    r = graded(nb, "sigmoid-2-3-1", launcher=launcher)
    n = len(nbformat.read(SOLUTION, as_version=4).cells)
    errors = _errors(r)
    assert n + 1 not in errors and n + 2 not in errors and n + 6 not in errors, errors
    assert errors[n + 3] == ("ModuleNotFoundError", "No module named 'torch'")
    assert errors[n + 4] == ("ModuleNotFoundError", "No module named 'grader'")
    assert errors[n + 5] == ("ModuleNotFoundError", "No module named 'reference'")
    assert r.execution.isolation["level"] == level
    # the attempt is still reported, so the feedback says why the cell failed
    assert "torch" in {f.target for f in r.flags if f.code == "forbidden_import"}
    assert all(c.status == "pass" for c in r.checks), [(c.target, c.message) for c in r.checks]
    assert r.environment["hash"] == default_env.key
    assert r.environment["packages"]["numpy"] == default_env.packages["numpy"]


def test_report_names_the_environment_in_json_and_text(default_env: KernelEnv):
    r = graded(SOLUTION, "sigmoid-2-3-1")
    d = r.to_dict()
    assert d["environment"]["hash"] == default_env.key
    assert d["environment"]["python"] == default_env.python_version
    assert "numpy" in d["environment"]["packages"] and d["environment"]["requirements"]
    from grader.render import RENDERERS

    text = RENDERERS["text"](r)
    head = [ln for ln in text.splitlines() if ln.startswith("Environment:")]
    assert head == [f"Environment: {default_env.key} (Python {default_env.python_version}; "
                    f"numpy {default_env.packages['numpy']})"]


# np.float_ and np.asfarray were removed in numpy 2.0
NUMPY1_CELL = "legacy = np.float_(1.5) + np.asfarray([2.0])[0]"


def test_numpy1_assignment_runs_a_cell_numpy2_rejects(tmp_path: Path, numpy1_env: KernelEnv):
    assert numpy1_env.packages["numpy"].startswith("1.")
    folder = _assignment(tmp_path, 'packages = ["numpy<2", "scikit-learn"]')
    nb = _with_cells(tmp_path, [NUMPY1_CELL, "assert legacy == 3.5"])
    r = graded(nb, str(folder))
    assert r.execution.cell_errors == []
    assert r.environment["hash"] == numpy1_env.key and r.environment["packages"]["numpy"].startswith("1.")
    # the report holds the version of every declared package, so a regrade can rebuild it
    assert r.environment["packages"]["scikit-learn"] == numpy1_env.packages["scikit-learn"]
    assert "numpy<2" in r.environment["requirements"]
    assert r.score == r.max_score, [(c.target, c.message) for c in r.checks]
    # the same cell in the default environment (numpy 2) fails
    r2 = graded(nb, "sigmoid-2-3-1")
    assert any(e.ename == "AttributeError" and "np.float_" in e.evalue for e in r2.execution.cell_errors)


def test_probe_runner_works_on_the_oldest_supported_numpy(tmp_path: Path):
    env = ensure_env(["numpy==1.24.*"], include_default=False)
    assert env.packages["numpy"].startswith("1.24.")
    folder = _assignment(tmp_path, 'packages = ["numpy==1.24.*"]\ninclude_default = false')
    for name in ("solution.ipynb", "starter.ipynb"):
        r = graded(folder / name, str(folder))
        assert r.status == "graded" and r.environment["hash"] == env.key
        assert r.score == (r.max_score if name == "solution.ipynb" else 0), [(c.target, c.message) for c in r.checks]


_BUILD = """
import json, sys
from grader.kernels.envs import ensure_env
env = ensure_env([], include_default=False)
print(json.dumps({"path": str(env.path), "key": env.key}))
"""


def test_two_graders_building_one_env_end_with_one_good_env(tmp_path: Path):
    root = tmp_path / "envs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), envs.ENV_DIR_VARIABLE: str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert results[0] == results[1]
    entries = sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))
    assert entries == [results[0]["key"]]  # one environment, no partial build left
    python = Path(results[0]["path"]) / "bin" / "python"
    check = subprocess.run([str(python), "-I", "-c", "import numpy, ipykernel; print(numpy.__version__)"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    manifest = json.loads((Path(results[0]["path"]) / envs.MANIFEST).read_text())
    assert manifest["packages"]["numpy"] == check.stdout.strip()


def test_partial_build_left_by_a_killed_grader_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(envs.ENV_DIR_VARIABLE, str(tmp_path))
    reqs = resolve_requirements([], include_default=False)
    (tmp_path / envs.env_key(reqs) / "bin").mkdir(parents=True)  # no manifest: not complete
    env = ensure_env([], include_default=False)
    assert (env.path / envs.MANIFEST).is_file() and Path(env.python).exists()


BAD = "nngrader-no-such-package-d41d8cd9"


def test_bad_requirement_is_one_clear_line(tmp_path: Path):
    folder = _assignment(tmp_path, f'packages = ["{BAD}"]')
    r = _run_grade("env", "build", str(folder), env_dir=tmp_path / "envs")
    assert r.returncode == 2 and r.stdout == ""
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("grade: error: cannot build the kernel environment for assignment env-test")
    assert f"requirement '{BAD}'" in lines[0]
    assert not [p for p in (tmp_path / "envs").iterdir() if not p.name.endswith(".lock")]  # nothing half-built
    # grading a notebook against it says the same, in one line, with a report
    g = _run_grade(str(SOLUTION), "--assignment", str(folder), "--format", "json", env_dir=tmp_path / "envs")
    assert g.returncode == 2 and len(_error_lines(g.stderr)) == 1 and BAD in g.stderr
    assert json.loads(g.stdout)["status"] == "error"


def _error_lines(stderr: str) -> list[str]:
    """stderr without the build's progress lines (its start and its end, the error last)."""
    lines = stderr.strip().splitlines()
    progress = [ln for ln in lines if ln.startswith(("building the kernel environment", "built the kernel"))]
    assert lines[: len(progress)] == progress, stderr
    return lines[len(progress):]


def test_api_build_error_names_the_requirement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(envs.ENV_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(EnvBuildError) as e:
        ensure_env(["numpy", BAD], include_default=False)
    assert f"'{BAD}'" in str(e.value) and "'numpy'" not in str(e.value) and "\n" not in str(e.value)


def test_env_build_list_and_prune_commands(tmp_path: Path):
    root = tmp_path / "envs"
    folder = _assignment(tmp_path, 'packages = []\ninclude_default = false', name="tiny")
    b = _run_grade("env", "build", str(folder), env_dir=root)
    assert b.returncode == 0, b.stderr
    key = envs.env_key(resolve_requirements([], include_default=False))
    assert b.stdout.startswith(f"tiny: {key} (Python ") and str(root / key) in b.stdout
    listed = _run_grade("env", "list", env_dir=root)
    assert listed.returncode == 0 and key in listed.stdout and "no known assignment" in listed.stdout
    kept = _run_grade("env", "prune", env_dir=root)  # in use by no known assignment: removed
    assert kept.returncode == 0 and f"removed {root / key}" in kept.stdout and not (root / key).exists()
    assert "no kernel environments" in _run_grade("env", "list", env_dir=root).stdout
    assert _run_grade("env", "build", env_dir=root).returncode == 2


def test_prune_keeps_environments_known_assignments_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(envs.ENV_DIR_VARIABLE, str(tmp_path))
    tiny = ensure_env([], include_default=False)
    assert envs.prune_envs(keep=[tiny.key]) == [] and tiny.path.exists()
    assert envs.prune_envs() == [tiny.path] and envs.list_envs() == []


def test_validate_builds_the_env_and_fails_a_notebook_importing_what_it_lacks(tmp_path: Path):
    from grader.authoring.validate import validate

    folder = _assignment(tmp_path, 'packages = ["numpy"]')
    nb = nbformat.read(folder / "solution.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sympy  # not in the default environment"))
    nbformat.write(nb, folder / "solution.ipynb")
    result = validate(str(folder), grade=graded)
    by = {f.step: f for f in result.findings}
    assert by["environment"].ok and envs.env_key(resolve_requirements()) in by["environment"].message
    bad = by["solution.ipynb imports"]
    assert not bad.ok and "No module named 'sympy'" in bad.message and "[environment] packages" in bad.message
    assert not result.ok
