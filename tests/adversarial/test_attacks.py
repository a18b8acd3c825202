"""Each attack notebook: no unearned credit, the grader stays up, and the report says what happened.

Every attack notebook defines a correct `sigmoid` before its attack cell (cell 3), and most
define a correct `sigmoid_derivative` after it, so these tests also pin down that what ran
before (and after) an attack is still graded.
"""

from __future__ import annotations

import pytest

from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.limits import Limits
from tests.conftest import graded

from .helpers import (
    ADVERSARIAL,
    ASSIGNMENT,
    assert_no_unearned_credit,
    auto_isolation,
    cell_error,
    passed,
)

BOTH = {"sigmoid", "sigmoid_derivative"}
# The memory bomb meets a smaller limit than the default 2 GB: touching fresh memory can
# cost seconds per 100 MB on a virtual machine, and the limit, not its size, is the point.
SMALL_MEMORY = LocalKernelLauncher(limits=Limits(memory_mb=1024))


def grade_attack(name: str, **kw: object):
    """Grade an attack notebook (cached per session)."""
    return graded(ADVERSARIAL / f"{name}.ipynb", ASSIGNMENT, **kw)


def test_infinite_loop_is_interrupted_and_the_rest_still_runs():
    r = grade_attack("infinite_loop", cell_timeout=5)
    assert passed(r) == BOTH
    assert_no_unearned_credit(r, BOTH)
    e = r.execution
    assert e.timed_out and e.timed_out_cells == [3]
    assert cell_error(r, 3)[0] == "Timeout"
    assert 2 in e.ran_cells and 4 in e.ran_cells
    assert not e.kernel_died


def test_loop_that_ignores_interrupts_is_killed_and_skipped():
    r = grade_attack("uninterruptible_loop", cell_timeout=5)
    assert passed(r) == BOTH
    e = r.execution
    assert e.timed_out and e.timed_out_cells == [3] and 3 in e.skipped_cells
    assert e.restarts >= 1
    assert "did not stop when interrupted" in cell_error(r, 3)[1]


def test_memory_bomb_hits_the_memory_limit_and_the_kernel_goes_on():
    r = grade_attack("memory_bomb", cell_timeout=20, launcher=SMALL_MEMORY)
    assert r.execution.isolation["memory_mb"] == 1024
    assert passed(r) == BOTH
    ename, evalue = cell_error(r, 3)
    assert ename == "MemoryError" or "memory" in evalue


def test_children_together_over_the_memory_limit_are_stopped():
    iso = auto_isolation()
    if not str(iso["memory_limit"]).startswith("cgroup"):
        pytest.skip("no cgroup here: memory is limited per process only (the report says so)")
    # (a generous cell limit: on a loaded machine the children may take many seconds to fill
    # the memory; the cell ends when they are killed or their 20 s sleep ends, not at the limit)
    r = grade_attack("memory_bomb_children", cell_timeout=60)
    assert passed(r) == BOTH
    assert any("memory limit" in ev for ev in r.execution.limit_events)


def test_fork_bomb_is_contained():
    iso = auto_isolation()
    if str(iso["process_limit"]).startswith("NOT"):
        pytest.skip("no process limit binds here (root without cgroups); the report says so")
    r = grade_attack("fork_bomb", cell_timeout=10)
    assert passed(r) == BOTH
    assert_no_unearned_credit(r, BOTH)
    assert 3 in {e.cell for e in r.execution.cell_errors}
    if str(iso["process_limit"]).startswith("cgroup"):
        assert any("process limit" in ev for ev in r.execution.limit_events)


@pytest.mark.parametrize("name, cause", [("os_exit", "status 0"), ("segfault", "SIGSEGV")])
def test_kernel_death_is_reported_and_the_rest_is_graded(name: str, cause: str):
    r = grade_attack(name)
    assert passed(r) == BOTH
    e = r.execution
    assert e.kernel_died and e.skipped_cells == [3] and e.restarts == 1
    ename, evalue = cell_error(r, 3)
    assert ename == "KernelDied" and cause in evalue
    assert 4 in e.ran_cells


def test_patched_numpy_and_print_earn_nothing():
    r = grade_attack("patch_numpy")
    assert passed(r) == {"sigmoid"}
    assert_no_unearned_credit(r, {"sigmoid"})
    assert r.score == 1
    # the wrong answers are judged as wrong, not as "could not be read"
    assert {c.status for c in r.checks if c.target != "sigmoid"} == {"fail"}


def test_patched_json_is_found_to_be_the_cell_that_broke_the_kernel():
    r = grade_attack("patch_json", cell_timeout=10)
    assert passed(r) == {"sigmoid"}
    assert cell_error(r, 3)[0] == "KernelUnresponsive"
    assert r.execution.skipped_cells == [3]
    assert {c.status for c in r.checks if c.target != "sigmoid"} == {"fail"}


def test_hostile_return_values_earn_nothing_and_do_not_hang_the_grader():
    r = grade_attack("hostile_returns")
    assert_no_unearned_credit(r, {"sigmoid"})
    assert passed(r) == {"sigmoid"}
    by = {c.target: c for c in r.checks}
    assert "too large" in by["forward"].message  # a billion-element view is never copied
    assert by["sigmoid_derivative"].status in ("fail", "error")  # __eq__ that says yes counts for nothing
    assert by["dL_dW2"].status == "error"  # an __array__ that never returns hits the probe's time limit


def test_redefined_names_do_not_reach_the_probe():
    r = grade_attack("redefine_names")
    assert passed(r) == {"sigmoid"}
    assert_no_unearned_credit(r, {"sigmoid"})


def test_replacing_the_probe_runner_is_detected_and_earns_nothing():
    r = grade_attack("replace_runner")
    assert passed(r) == set()
    assert r.score == 0
    assert "probe_tampered" in {f.code for f in r.flags}


def test_wiping_the_namespace_and_imports_earns_nothing():
    r = grade_attack("reset_namespace", cell_timeout=10)
    assert_no_unearned_credit(r, {"sigmoid"})
    assert r.status == "graded"
    assert 3 in {e.cell for e in r.execution.cell_errors}


def test_function_that_kills_the_kernel_loses_only_its_own_check():
    r = grade_attack("probe_kills_kernel")
    by = {c.target: c for c in r.checks}
    assert by["forward"].status == "error" and by["forward"].codes == ["kernel_died"]
    # a fresh kernel ran the notebook again: the checks after it are still graded
    assert {"sigmoid", "sigmoid_derivative", "gradients.W1", "gradients.W2"} <= passed(r)
    assert_no_unearned_credit(r, {"sigmoid", "sigmoid_derivative", "gradients.W1", "gradients.W2"})
    assert any("status 3" in ev for ev in r.execution.limit_events)
