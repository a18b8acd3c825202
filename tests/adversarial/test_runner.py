"""Attacks on the probe runner, its requests and the kernel's start-up, graded by real kernels.

Each notebook is written as a student out to raise their score would write it: shadowing or
patching what the runner calls, rewriting the grader's requests on their way, planting code
that a fresh kernel would run at start, hiding a computation's inputs in an error message,
or computing gradients by finite differences where backpropagation is asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader import grade_notebook
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.workspace import make_workspace
from tests.conftest import graded

from .helpers import (
    ADVERSARIAL,
    ASSIGNMENT,
    assert_no_unearned_credit,
    cell_error,
    passed,
    report_json,
    run_grade,
)
from .test_isolation import available_levels

SETUP = {"sigmoid"}
RIGHT = {"sigmoid", "sigmoid_derivative"}


def grade_attack(name: str, **kw: object):
    """Grade an attack notebook (cached per session)."""
    path = ADVERSARIAL / f"{name}.ipynb"
    if not path.exists():
        path = ADVERSARIAL / name / "submission.ipynb"
    return graded(path, ASSIGNMENT, **kw)


def flag_codes(r) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in r.flags:
        out.setdefault(f.code, set()).add(f.target)
    return out


# ---------------------------------------------------------------- names the runner uses


@pytest.mark.parametrize("name", ["shadow_any", "shadow_builtins", "patch_builtins_module", "hide_import"])
def test_shadowed_or_patched_builtins_do_not_bend_the_runner(name: str):
    r = grade_attack(name)
    # the runner still works: the right function passes, the wrong one fails
    right = RIGHT if name == "hide_import" else SETUP
    assert passed(r) == right
    assert {c.status for c in r.checks if c.target not in right and c.target.startswith("sigmoid")} <= {"fail"}
    # the module imported by a built name is not in the kernel's environment: nothing to hide
    assert cell_error(r, 3) == ("ModuleNotFoundError", "No module named 'torch'")
    assert "forbidden_import" not in flag_codes(r) and "probe_tampered" not in flag_codes(r)
    assert r.score == len(right)  # what the notebook computed itself, one point each


# ---------------------------------------------------------------- requests rewritten on their way


def test_import_check_emptied_by_an_input_transformer_is_tampered_and_penalised():
    r = grade_attack("transformer_empties_import_check")
    flags = flag_codes(r)
    assert "imports" in flags.get("probe_tampered", set())
    assert passed(r) == RIGHT
    assert r.score == 0  # 2 points, less half of 11: scored as if torch had been found


@pytest.mark.parametrize("name", ["transformer_rewrites_probe", "ast_transformer"])
def test_probe_pointed_at_another_function_earns_nothing(name: str):
    r = grade_attack(name)
    by = {c.target: c for c in r.checks}
    assert by["sigmoid_derivative"].status != "pass"
    assert_no_unearned_credit(r, SETUP)
    assert "probe_tampered" in flag_codes(r)


def test_answers_forged_by_a_pre_run_cell_hook_are_tampered():
    r = grade_attack("pre_run_cell_forges")
    assert passed(r) == set()
    assert r.score == 0
    flags = flag_codes(r)
    assert {"sigmoid", "imports"} <= flags["probe_tampered"]


def test_builtins_and_numpy_patched_before_each_request_change_nothing():
    r = grade_attack("pre_run_cell_patches")
    assert passed(r) == RIGHT
    assert cell_error(r, 3) == ("ModuleNotFoundError", "No module named 'torch'")  # not in the kernel
    assert "probe_tampered" not in flag_codes(r)


# ---------------------------------------------------------------- start-up of first and revived kernels


def test_startup_file_planted_before_a_restart_never_runs():
    r = grade_attack("startup_then_exit")
    by = {c.target: c for c in r.checks}
    assert r.execution.restarts == 1 and r.execution.skipped_cells == [4]
    assert by["forward"].status == "missing"  # the planted forward never ran
    assert passed(r) >= RIGHT
    assert_no_unearned_credit(r, RIGHT)


def test_startup_file_planted_before_a_revival_never_runs():
    r = grade_attack("startup_then_exit_in_probe")
    by = {c.target: c for c in r.checks}
    assert by["forward"].status == "missing"
    assert_no_unearned_credit(r, RIGHT)
    assert passed(r) == RIGHT


@pytest.mark.parametrize("name", ["kernel_config_beside", "ipython_config_beside"])
def test_ipython_config_beside_the_notebook_is_not_read(name: str):
    r = grade_attack(name)
    by = {c.target: c for c in r.checks}
    assert by["forward"].status == "missing"
    assert passed(r) == RIGHT


@pytest.mark.parametrize("name", ["launcher_beside", "numpy_beside"])
def test_modules_beside_the_notebook_shadow_nothing_and_its_own_module_imports(name: str):
    r = grade_attack(name)
    assert r.status == "graded"
    assert not r.execution.kernel_died and not r.execution.cell_errors
    assert {"sigmoid", "sigmoid_derivative", "forward"} <= passed(r)


@pytest.mark.parametrize("level", available_levels())
def test_every_isolation_level_starts_clean(level: str):
    launcher = LocalKernelLauncher(isolation=level)
    for name in ("launcher_beside", "kernel_config_beside", "startup_then_exit"):
        path = ADVERSARIAL / f"{name}.ipynb"
        path = path if path.exists() else ADVERSARIAL / name / "submission.ipynb"
        r = grade_notebook(path, ASSIGNMENT, seed=7, launcher=launcher)
        by = {c.target: c for c in r.checks}
        assert RIGHT <= passed(r), (level, name)
        if name != "launcher_beside":
            assert by["forward"].status == "missing", (level, name)


def test_a_kernel_that_cannot_be_restarted_is_the_submissions_failure(capfd: pytest.CaptureFixture[str]):
    class FailsAfterFirst(LocalKernelLauncher):
        starts = 0

        def argv(self, workspace=None, cgroup=None):
            FailsAfterFirst.starts += 1
            if FailsAfterFirst.starts > 1:  # as a kernel the notebook's code had broken would
                return [self.python, "-c", "import os; os._exit(3)"]
            return super().argv(workspace, cgroup)

    r = grade_notebook(ADVERSARIAL / "os_exit.ipynb", ASSIGNMENT, seed=3,
                       launcher=FailsAfterFirst(isolation="process"))
    assert r.status == "graded"
    assert passed(r) == set() and r.score == 0  # no kernel is left to check anything
    assert {c.status for c in r.checks} <= {"error", "missing"}
    assert cell_error(r, 3)[0] == "KernelDied"
    assert 4 in r.execution.skipped_cells
    assert any("could not be prepared" in ev for ev in r.execution.limit_events)
    assert "Traceback" not in capfd.readouterr().err


def test_a_first_kernel_that_cannot_start_is_the_graders_failure(capfd: pytest.CaptureFixture[str]):
    class NeverStarts(LocalKernelLauncher):
        def argv(self, workspace=None, cgroup=None):
            return [self.python, "-c", "import os; os._exit(3)"]

    r = grade_notebook(ADVERSARIAL / "os_exit.ipynb", ASSIGNMENT, seed=3, launcher=NeverStarts(isolation="process"))
    assert r.status == "error" and r.error_stage == "running the notebook"
    assert "could not start a Python kernel" in r.error
    assert "Traceback" not in capfd.readouterr().err


def test_a_launcher_beside_the_notebook_gives_a_report_on_the_command_line(tmp_path: Path):
    out = tmp_path / "r.json"
    result, _ = run_grade([str(ADVERSARIAL / "launcher_beside" / "submission.ipynb"), "--format", "json",
                           "-o", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert report_json(out)["status"] == "graded"


# ---------------------------------------------------------------- what a hidden check's error shows


def test_hidden_check_errors_show_neither_the_message_nor_where_it_was_raised():
    """The exception's message and line are chosen by the notebook's code while it holds the hidden
    inputs: a hidden check names only Python's own exception class (docs/security.md)."""
    r = grade_attack("raise_with_inputs")
    hidden = [c for c in r.checks if c.visibility == "hidden" and c.target.split(".")[0] in ("forward", "gradients")]
    assert hidden and all(c.status == "error" and c.codes == ["exception"] for c in hidden)
    fwd = next(c for c in hidden if c.target == "forward")
    assert fwd.message.startswith("forward raised ValueError on a hidden input")
    for c in hidden:
        text = c.message + " ".join(d.message for d in c.diagnosis) + repr(c.detail)
        for leak in ("cell 3", "cell 4", "line", "raise ", "x=[", "[[", "array("):
            assert leak not in text, (c.id, leak, text)
    assert_no_unearned_credit(r, RIGHT)


# ---------------------------------------------------------------- finite differences


@pytest.mark.parametrize("name", ["numerical_gradient_inplace", "numerical_gradient_copies"])
def test_finite_difference_gradients_are_flagged_and_penalised(name: str):
    r = grade_attack(name)
    assert "gradients" in flag_codes(r).get("numerical_gradient", set())
    grads = [c for c in r.checks if c.target.startswith("gradients")]
    assert grads and all("numerical_gradient" in c.codes for c in grads)
    earned = sum(c.points for c in r.checks)
    assert r.score == pytest.approx(max(0.0, earned - 0.5 * r.max_score))


def test_backprop_that_loops_over_samples_and_units_is_not_flagged():
    r = grade_attack("backprop_loops")
    assert "numerical_gradient" not in flag_codes(r)
    grads = [c for c in r.checks if c.target.startswith("gradients")]
    assert grads and all(c.status == "pass" for c in grads)
    assert r.score == sum(c.points for c in r.checks)


def test_kernel_start_folders_are_fresh_read_only_and_outside_the_work_folder(tmp_path: Path):
    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}")
    ws = make_workspace(nb)
    try:
        launcher = LocalKernelLauncher(isolation="process")
        first = ws.new_kernel_dirs()
        env = launcher.kernel_env(ws)
        assert env["PYTHONSAFEPATH"] == "1"
        for key in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "XDG_CONFIG_HOME"):
            assert env[key].startswith(str(first.root)) and not env[key].startswith(str(ws.work))
        startup = first.ipython / "profile_default" / "startup"
        assert startup.is_dir() and not list(startup.iterdir())
        assert not (startup.stat().st_mode & 0o222) and not (first.cwd.stat().st_mode & 0o222)
        second = ws.new_kernel_dirs()
        assert second.root != first.root and launcher.kernel_env(ws)["IPYTHONDIR"] == str(second.ipython)
        bwrap = launcher._bwrap_args(ws, probe=False)
        mounts = list(zip(bwrap, bwrap[1:], bwrap[2:]))
        assert ("--ro-bind", str(ws.runtime), str(ws.runtime)) in mounts
        assert ("--bind", str(second.root), str(second.root)) in mounts
        for d in (second.cwd, second.ipython / "profile_default", second.root / "jupyter"):
            assert ("--ro-bind", str(d), str(d)) in mounts
            assert mounts.index(("--ro-bind", str(d), str(d))) > mounts.index(("--bind", str(second.root),
                                                                               str(second.root)))
        assert bwrap[bwrap.index("--chdir") + 1] == str(second.cwd)
    finally:
        ws.cleanup()
    assert not ws.root.exists()
