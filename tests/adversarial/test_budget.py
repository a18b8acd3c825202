"""One time limit for everything a submission's code does: cells, probes, consistency, re-run.

Timing assertions are generous bounds (other tests share the machine); the statuses are what
is pinned: what could not be checked in time is an error, never a pass.
"""

from __future__ import annotations

import pytest

from grader.run.budget import Budget
from tests.conftest import graded

from .helpers import ADVERSARIAL, ASSIGNMENT

SLACK = 30.0  # kernel start-ups, the grader's own work, interrupts: not part of the budget


def test_a_forward_that_sleeps_at_every_call_cannot_outlast_the_time_limit():
    r = graded(ADVERSARIAL / "slow_forward.ipynb", ASSIGNMENT, total_timeout=12)
    forward = r.check("forward")  # four calls of 4 s each do not fit in what the cells leave
    assert forward.status == "error" and forward.codes == ["timeout"]
    assert "time limit ran out" in forward.message
    assert {r.check("sigmoid").status, r.check("sigmoid_derivative").status} == {"pass"}
    assert r.duration_s < 12 + SLACK
    assert any("time ran out" in ev for ev in r.execution.limit_events)


def test_the_consistency_check_shares_the_limit_too():
    r = graded(ADVERSARIAL / "slow_forward_consistency.ipynb", ASSIGNMENT, total_timeout=15)
    for target in ("gradients.W1", "gradients.W2"):
        assert r.check(target).status in ("fail", "error")
    assert r.duration_s < 15 + SLACK  # 54 calls of 1 s each would have taken a minute


def test_the_re_run_gets_only_what_is_left_of_the_limit():
    r = graded(ADVERSARIAL / "slow_given_sample.ipynb", ASSIGNMENT, total_timeout=5)
    for target in ("y", "dL_dW1", "dL_dW2"):
        c = r.check(target)  # its 3 s cell does not fit twice in 5 s: nothing is confirmed
        assert c.status != "pass"
        if c.status == "fail":
            assert c.codes[0] == "hardcoded" and "time limit ran out" in c.message
    assert r.duration_s < 5 + SLACK


def test_with_time_enough_the_same_notebook_has_full_marks():
    r = graded(ADVERSARIAL / "slow_given_sample.ipynb", ASSIGNMENT, total_timeout=60)
    assert r.score == r.max_score, {c.id: c.message for c in r.checks if c.status != "pass"}


@pytest.mark.parametrize("total, share", [(5, 1.25), (20, 5.0), (300, 30.0)])
def test_the_cells_leave_a_share_of_the_budget_for_probing(total: float, share: float):
    b = Budget(total)
    assert b.probe_share() == share and 0 < b.final_reserve() <= 1


def test_time_held_back_is_not_available_until_released():
    b = Budget(10)
    b.charge(4)
    b.hold(3)
    assert b.left() == 3
    b.charge(5)
    assert b.exhausted and b.left() == 0
    b.release()
    assert b.left() == 1
