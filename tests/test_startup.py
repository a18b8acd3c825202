"""What `grade` imports before it does anything: help, version and list start light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "nbclient", "jupyter_client", "zmq", "rich", "ipykernel", "matplotlib")

# Runs the CLI in a fresh interpreter, then reports which modules it had imported by the end
# (its arguments passed explicitly: the plain exit, so the atexit handler runs).
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
from grader.cli import main
main(args=sys.argv[1:])
"""


def _modules(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, env=env)
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("MODULES "))
    return r, {m.split(".")[0] for m in json.loads(line[len("MODULES "):])}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list"], ["notebook", "--help"],
                                  ["render", "--help"]])
def test_light_commands_import_no_kernel_or_torch_machinery(args, tmp_path):
    # an assignment's inferred defaults come from running its reference once (torch); after
    # that first load they are remembered, so only a fresh cache pays for torch
    env = {**os.environ, "NNGRADER_CACHE_DIR": str(tmp_path)}
    _modules(*args, env=env)
    r, modules = _modules(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_help_and_version_do_not_load_specs():
    for args in (["--help"], ["--version"]):
        _, modules = _modules(*args)
        assert "pydantic" not in modules


def test_the_probe_sees_heavy_imports():
    # the check above can fail: grading a missing notebook loads the grading machinery
    r, modules = _modules("/nonexistent/x.ipynb", "--assignment", "sigmoid-2-3-1")
    assert r.returncode == 2
    assert "pydantic" in modules and "jupyter_client" in modules


# Grades the solution in a fresh interpreter and reports which modules were loaded when the
# first kernel was spawned, and whether the grade went on to the end.
_AT_FIRST_SPAWN = """
import json, sys
import grader.kernels.launch as launch
real, seen = launch.LocalKernelLauncher.start, []
async def start(self, workspace):
    seen.append(sorted(sys.modules))
    return await real(self, workspace)
launch.LocalKernelLauncher.start = start
from grader.grading.grade import grade_notebook
report = grade_notebook(sys.argv[1], "sigmoid-2-3-1")
print(json.dumps({"status": report.status, "score": report.score, "first": seen[0], "starts": len(seen)}))
"""


def test_the_first_kernel_is_spawned_before_numpy_nbformat_and_the_stages_load():
    solution = ROOT / "assignments" / "sigmoid-2-3-1" / "solution.ipynb"
    r = subprocess.run([sys.executable, "-c", _AT_FIRST_SPAWN, str(solution)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "graded" and out["score"] == 11.0, r.stderr
    assert out["starts"] == 2  # and the re-run's kernel after it
    first = set(out["first"])
    assert not first & {"numpy", "nbformat", "torch", "nbclient", "grader.grading.stages", "grader.judging.rerun",
                        "grader.pool.store"}, sorted(first & {"numpy", "nbformat", "torch", "nbclient"})


def test_grading_imports_torch_only_when_it_computes():
    code = ("import sys; import grader.grading.grade, grader.plan.checks, grader.assignment.reference; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_a_remembered_spec_is_inferred_again_when_its_reference_changes(tmp_path, monkeypatch):
    import shutil

    from grader.assignment.load import load_spec
    from grader.errors import SpecError
    from tests.conftest import ASSIGNMENTS

    monkeypatch.setenv("NNGRADER_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "sigmoid-2-3-1"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    first = load_spec(folder)
    assert list((tmp_path / "cache" / "specs").glob("*.json"))  # remembered
    assert load_spec(folder).spec == first.spec  # ... and read back the same
    ref = folder / "reference.py"
    ref.write_text(ref.read_text() + "\n\ndef sigmoid(z):\n    raise ValueError('broken on purpose')\n")
    with pytest.raises(SpecError, match="broken on purpose"):
        load_spec(folder)  # not the remembered table: the reference is run again
