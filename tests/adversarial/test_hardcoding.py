"""Hard-coded answers and answers not handed in: no credit, wherever the notebook hides them.

Each hostile notebook types in the right values of y, dL_dW1 and dL_dW2 for the given sample
and hides the sample from the re-run in its own way (a compound statement, globals(), exec, a
setup function, walrus) or hides the typing (a conditional, an overwrite the grader would
rescue). Its honest twin, the same notebook computing those values, must keep full marks:
that shows the fresh sample really reached the notebook.
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from grader.judging.rerun_sample import instrument
from tests.conftest import graded

from .helpers import ADVERSARIAL, ASSIGNMENT, assert_no_unearned_credit, passed

FUNCTIONS = {"sigmoid", "sigmoid_derivative"}
VARIABLES = ("y", "dL_dW1", "dL_dW2")
COMPUTED = """h = sigmoid(W1 @ x0)
y = sigmoid(W2 @ h)
delta2 = (y - t) * y * (1 - y)
dL_dW2 = delta2 @ h.T
dL_dW1 = ((W2.T @ delta2) * h * (1 - h)) @ x0.T"""

# notebooks whose cell 3 assigns the given sample in its own way and whose cell 4 types the answers
HIDDEN_SAMPLE = ["hc_if_true", "hc_for_loop", "hc_tuple_unpacking", "hc_globals", "hc_exec",
                 "hc_setup_global", "hc_walrus"]


def grade_attack(name: str, **kw: object):
    """Grade an attack notebook (cached per session)."""
    return graded(ADVERSARIAL / f"{name}.ipynb", ASSIGNMENT, **kw)


def honest_twin(name: str, tmp_path, cell: int = 3) -> object:
    """The attack notebook with its typed-answers cell (0-based `cell`) replaced by the computation."""
    nb = nbformat.read(ADVERSARIAL / f"{name}.ipynb", as_version=4)
    nb.cells[cell].source = COMPUTED
    path = tmp_path / f"{name}_honest.ipynb"
    nbformat.write(nb, path)
    return graded(path, ASSIGNMENT)


@pytest.mark.parametrize("name", HIDDEN_SAMPLE)
def test_typed_answers_are_caught_wherever_the_given_sample_is_assigned(name: str):
    r = grade_attack(name)
    assert_no_unearned_credit(r, FUNCTIONS)
    for target in VARIABLES:
        c = r.check(target)
        assert c.status == "fail" and c.codes[0] == "hardcoded", (target, c.message)
        assert "kept the same value" in c.message


@pytest.mark.parametrize("name", HIDDEN_SAMPLE)
def test_the_same_notebook_computing_its_answers_keeps_full_marks(name: str, tmp_path):
    r = honest_twin(name, tmp_path)
    assert passed(r) >= set(VARIABLES) | FUNCTIONS, {c.id: c.message for c in r.checks if c.status != "pass"}
    assert not {d.code for c in r.checks for d in c.diagnosis} & {"hardcoded", "wrong"}


def test_answers_given_only_for_the_given_sample_and_none_otherwise_are_hardcoded():
    r = grade_attack("hc_conditional_none")
    assert_no_unearned_credit(r, FUNCTIONS)
    for target in VARIABLES:
        c = r.check(target)
        assert c.status == "fail" and c.codes[0] == "hardcoded"
        assert "it was None" in c.message


def test_answers_given_only_for_the_given_sample_and_junk_otherwise_earn_nothing():
    r = grade_attack("hc_conditional_junk")
    assert_no_unearned_credit(r, FUNCTIONS)
    for target in VARIABLES:  # zeros, random numbers, a scaled typed value: none follows the inputs
        c = r.check(target)
        assert c.status == "fail" and c.points == 0 and c.codes[0] in ("hardcoded", "wrong"), c.message
        assert "does not follow" in c.message


def test_a_rescued_typed_value_is_re_run_tested_after_its_own_cell():
    r = grade_attack("hc_rescued_none")
    assert_no_unearned_credit(r, FUNCTIONS)
    for target in VARIABLES:
        c = r.check(target)
        assert c.status == "fail" and c.codes[0] == "hardcoded"
        assert c.detail["graded_after_cell"] == 4 and "after cell 4" in c.message


def test_a_rescued_computed_value_still_passes(tmp_path):
    r = honest_twin("hc_rescued_none", tmp_path)
    for target in VARIABLES:
        c = r.check(target)
        assert c.status == "pass" and c.detail["graded_after_cell"] == 4, c.message


def test_the_last_of_several_candidate_formulas_is_the_one_graded():
    r = grade_attack("candidates_last_wrong")
    y = r.check("y")
    assert y.status == "fail" and "graded_after_cell" not in y.detail
    assert "cells 4, 5, 6 and 7" in y.message  # it says which assignment was graded


def test_the_last_earlier_answer_counts_when_the_final_value_is_no_answer(tmp_path):
    nb = nbformat.read(ADVERSARIAL / "candidates_last_wrong.ipynb", as_version=4)
    # the handed-in value becomes a plot's data: the last earlier answer (cell 6, right) counts ...
    nb.cells[6].source = "y = np.linspace(-5, 5, 50)"
    right = tmp_path / "plot_last.ipynb"
    nbformat.write(nb, right)
    assert graded(right, ASSIGNMENT).check("y").detail.get("graded_after_cell") == 6
    # ... and only the last: with cell 6's formula wrong, cell 4's right one does not count
    nb.cells[5].source = "y = W2 @ sigmoid(W1 @ x0)"
    wrong = tmp_path / "plot_last_wrong_before.ipynb"
    nbformat.write(nb, wrong)
    assert graded(wrong, ASSIGNMENT).check("y").status == "fail"


def test_a_function_is_judged_in_one_vector_convention_for_all_its_parts():
    r = grade_attack("convention_switch")
    w1, w2 = r.check("gradients.W1"), r.check("gradients.W2")
    assert not (w1.status == "pass" and w2.status == "pass")  # W1 from 1-D calls and W2 from rows: never both
    assert w1.detail.get("vectors") == w2.detail.get("vectors")


# ---------------------------------------------------------------- the cell transform, directly


def _calls_after(code: str, line: str) -> bool:
    lines = code.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip() == line)
    return lines[i + 1].strip() == "R()"


@pytest.mark.parametrize("source, bound", [
    ("if True:\n    x0 = 1", "x0 = 1"),
    ("for _ in range(1):\n    x0 = 1", "x0 = 1"),
    ("with open('f') as fh:\n    x0, W1 = (1, 2)", "x0, W1 = (1, 2)"),
    ("try:\n    x0 = 1\nexcept Exception:\n    pass", "x0 = 1"),
    ("globals()['x0'] = 1", "globals()['x0'] = 1"),
    ("exec('x0 = 1')", "exec('x0 = 1')"),
    ("print((x0 := 1))", "print((x0 := 1))"),
    ("def setup():\n    global x0\n    x0 = 1", "x0 = 1"),
])
def test_the_refresh_follows_every_statement_that_may_bind_the_sample(source: str, bound: str):
    assert _calls_after(instrument(source, ["x0", "W1"], "R()"), bound)


def test_the_transform_keeps_magics_and_leaves_other_code_alone():
    code = instrument("%matplotlib inline\nz = 1 + 2\ndef f(x0):\n    x0 = 2\n    return x0", ["x0"], "R()")
    assert "run_line_magic('matplotlib', 'inline')" in code
    assert _calls_after(code, "z = 1 + 2") is False  # binds nothing watched, calls nothing
    assert "    R()" not in code  # a function's own x0 is not the notebook's
    timed = instrument("%%time\nx0 = 1\ny = x0", ["x0"], "R()")
    body = ast.literal_eval(ast.parse(timed).body[0].value.args[2])  # type: ignore[attr-defined]
    assert body.splitlines() == ["x0 = 1", "R()", "y = x0"]


def test_a_cell_the_transform_cannot_read_is_left_as_it_is():
    assert instrument("x0 = (1", ["x0"], "R()") == "x0 = (1"
    deep = "z = " + "+".join(["1"] * 20000)
    assert instrument(deep, ["x0"], "R()") in (deep, deep.replace("+", " + "))


def test_typed_answers_with_the_notebooks_own_wrong_functions_elsewhere_earn_nothing():
    # the re-run values are what the notebook's functions give on the fresh sample, but those
    # functions do not give the graded values on the given one: the values were typed in
    r = grade_attack("hc_own_function")
    assert_no_unearned_credit(r, {"sigmoid", "sigmoid_derivative"})
    for target in VARIABLES:
        c = r.check(target)
        assert c.status == "fail" and c.points == 0, c.message
