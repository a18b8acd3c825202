"""Diagnosis of failed comparisons, on constructed values (no kernel): each code and its wording."""

from __future__ import annotations

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.judging.compare import compare
from grader.judging.diagnose import Failure, axis_phrase, diagnose, hardcoded_variable, unstable
from grader.judging.rerun_sample import assignment_source, with_fresh_sample
from grader.run.imports import flags_for, imported_modules, static_findings
from grader.run.probe import Value

RTOL, ATOL = 1e-5, 1e-8
W1_AXES = ["the weights into hidden unit {}", "the weights from input {}"]
EXPECTED = np.array([[0.5, -1.25], [2.0, 0.75], [-0.3, 1.5]])


def fail(got: np.ndarray, expected: np.ndarray = EXPECTED, trial: int = 0, **variants: np.ndarray) -> Failure:
    c = compare(Value("array", array=np.asarray(got, dtype=float)), expected, RTOL, ATOL)
    assert not c.ok
    return Failure(c, trial, dict(variants))


def codes(diags) -> list[str]:
    return [d.code for d in diags]


def test_sign_flip_is_named_on_every_trial():
    other = EXPECTED * 3 + 1
    d = diagnose("dL_dW1", [fail(-EXPECTED), fail(-other, other, 1)], RTOL, ATOL)
    assert codes(d) == ["sign_flip"]
    assert "opposite sign" in d[0].message and d[0].message.startswith("dL_dW1")


@pytest.mark.parametrize(
    ("factor", "shown", "hint"),
    [(2.0, "2", "1/2 of L = 1/2 (y - t)^2 was dropped"), (0.5, "1/2", "a 1/2 was added"), (3.0, "3", "")],
)
def test_scaled_reports_the_factor_and_the_half_of_a_squared_loss(factor, shown, hint):
    (d,) = diagnose("dL_dW1", [fail(factor * EXPECTED)], RTOL, ATOL)
    assert d.code == "scaled"
    assert f"is {shown} times the correct value" in d.message and f"c = {shown}" in d.message
    if hint:
        assert hint in d.message
    else:
        assert "squared loss" not in d.message


def test_a_factor_that_changes_between_inputs_is_not_scaled():
    other = EXPECTED + 2
    d = diagnose("dL_dW1", [fail(2 * EXPECTED), fail(3 * other, other, 1)], RTOL, ATOL)
    assert codes(d) == ["wrong"]


def test_transposed_names_both_shapes_and_whether_the_values_are_right():
    (d,) = diagnose("dL_dW1", [fail(EXPECTED.T)], RTOL, ATOL)
    assert d.code == "transposed"
    assert "2x3" in d.message and "3x2" in d.message and "right once transposed" in d.message
    (d,) = diagnose("dL_dW1", [fail(EXPECTED.T + 1)], RTOL, ATOL)
    assert "even transposed, its values are not right" in d.message


def test_a_square_matrix_holding_the_transpose_is_transposed():
    sq = np.array([[1.0, 2.0], [3.0, 4.0]])
    (d,) = diagnose("dL_dW", [fail(sq.T, sq)], RTOL, ATOL)
    assert d.code == "transposed" and "holds the transpose" in d.message


def test_shape_mismatch_says_both_shapes():
    (d,) = diagnose("the dL/dW1 returned by gradients", [fail(np.ones((3, 1)))], RTOL, ATOL)
    assert d.code == "shape_mismatch"
    assert "shape 3x1" in d.message and "shape 3x2 is expected" in d.message
    assert d.message.startswith("The dL/dW1")


def test_nan_or_inf_names_the_elements_and_their_row():
    got = EXPECTED.copy()
    got[2, :] = np.nan
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL, axes=W1_AXES)
    assert d.code == "nan_or_inf"
    assert "row 2 of dL_dW1, i.e. the weights into hidden unit 3" in d.message
    got = EXPECTED.copy()
    got[0, 1] = np.inf
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL, axes=["hidden unit", "input"])
    assert "[0, 1] (hidden unit 1, input 2)" in d.message


def test_a_declared_variant_explains_the_value_it_gives():
    variant = EXPECTED * np.array([[1.0], [1.0], [0.25]])
    d = diagnose(
        "dL_dW1", [fail(variant, variant=variant)], RTOL, ATOL,
        variants=[("other", "never matches"), ("variant", "You used sigma for sigma'.")],
    )
    assert codes(d) == ["variant:variant"] and d[0].message == "You used sigma for sigma'."


def test_a_variant_must_match_on_every_failing_trial():
    other = EXPECTED + 1
    variant = [EXPECTED * 2, other * 2]
    d = diagnose(
        "g", [fail(variant[0], variant=variant[0]), fail(other * 5, other, 1, variant=variant[1])], RTOL, ATOL,
        variants=[("variant", "x")],
    )
    assert "variant:variant" not in codes(d)


def test_a_variant_wins_over_a_plain_factor():
    d = diagnose("g", [fail(2 * EXPECTED, loss_without_half=2 * EXPECTED)], RTOL, ATOL,
                 variants=[("loss_without_half", "The 1/2 was dropped.")])
    assert codes(d) == ["variant:loss_without_half"]


def test_wrong_localises_a_row_with_the_axis_names():
    got = EXPECTED.copy()
    got[2, :] += np.array([0.7, -0.2])
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL, axes=W1_AXES)
    assert d.code == "wrong"
    assert "row 2 of dL_dW1, i.e. the weights into hidden unit 3" in d.message
    assert "2 of 6 elements" in d.message


def test_wrong_localises_a_column_and_single_elements():
    got = EXPECTED.copy()
    got[:, 1] += np.array([0.7, -0.2, 0.1])
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL, axes=W1_AXES)
    assert "column 1 of dL_dW1, i.e. the weights from input 2" in d.message
    got = EXPECTED.copy()
    got[1, 0] += 0.3
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL, axes=["hidden unit", "input"])
    assert "[1, 0] (hidden unit 2, input 1)" in d.message and "1 of 6 elements" in d.message


def test_wrong_everywhere_names_the_worst_element():
    got = EXPECTED + np.array([[0.1, 0.1], [0.1, 5.0], [0.1, 0.1]])
    (d,) = diagnose("dL_dW1", [fail(got)], RTOL, ATOL)
    assert "Every element is off; the worst is [1, 1]" in d.message


def test_axis_phrases_take_a_template_or_a_noun():
    assert axis_phrase("hidden unit", 2) == "hidden unit 3"
    assert axis_phrase("the weights into hidden unit {}", 0) == "the weights into hidden unit 1"


def test_messages_about_hidden_checks_carry_no_numbers_of_the_inputs():
    d = hardcoded_variable("dL_dW1", True, ["x0", "W1"])
    assert d.code == "hardcoded" and "kept the same value" in d.message
    d = unstable("sigmoid_derivative", " (large negative inputs, such as -1000)", "Use s * (1 - s).")
    assert d.code == "unstable" and "Use s * (1 - s)." in d.message


# ---------------------------------------------------------------- forbidden imports, statically


@pytest.mark.parametrize(
    "source",
    [
        "import torch",
        "import numpy as np, torch.nn as nn",
        "from torch.autograd import grad",
        "def f(x):\n    import torch\n    return torch.tensor(x)",
        "m = __import__('torch')",
        "import importlib\nt = importlib.import_module('torch.autograd')",
        "from importlib import import_module\nt = import_module('torch')",
        "%matplotlib inline\nimport torch",
        "this is not python\nimport torch",
    ],
)
def test_every_way_of_importing_a_module_is_seen(source):
    assert "torch" in imported_modules(source)


def test_static_findings_name_the_first_cell_and_only_forbidden_modules():
    found = static_findings(["import numpy", "", "import jax.numpy as jnp", "import torch\nimport jax"],
                            ["torch", "jax", "autograd"])
    assert found == {"jax": 3, "torch": 4}
    assert imported_modules("from . import x\nimport numpy") == {"numpy"}


def test_one_flag_per_module_found_statically_or_in_the_kernel():
    flags = flags_for({"torch": 2}, ["torch", "jax"], ["torch", "jax", "autograd"])
    assert [(f.code, f.target) for f in flags] == [("forbidden_import", "torch"), ("forbidden_import", "jax")]
    assert "cell 2" in flags[0].message and "loaded while the notebook ran" in flags[1].message


# ---------------------------------------------------------------- re-running with a fresh sample


def test_the_fresh_sample_is_refreshed_in_place_wherever_the_cells_bind_it():
    src = "import numpy as np\nif True:\n    x0 = np.array([1, 2])\nW1 = np.ones((3, 2))\ny = W1 @ x0"
    nb = new_notebook(cells=[new_markdown_cell("x0 = 1"), new_code_cell("print(1)"), new_code_cell(src),
                             new_code_cell("z = x0")])
    out = with_fresh_sample(nb, ["x0", "W1"], "R()")
    assert len(out.cells) == len(nb.cells)  # in place: cell numbers stay the same
    lines = out.cells[2].source.splitlines()
    assert lines[lines.index("    x0 = np.array([1, 2])") + 1] == "    R()"
    assert lines[lines.index("W1 = np.ones((3, 2))") + 1] == "R()"
    assert lines[-1] == "y = W1 @ x0"  # binds neither name, calls nothing
    assert out.cells[0].source == "x0 = 1" and nb.cells[2].source == src  # markdown and the original untouched


def test_fresh_values_round_trip_exactly():
    v = np.array([[0.1 + 1e-17, -3.3333333333333335]])
    ns: dict = {}
    exec(assignment_source({"v": v, "t": 0.7}), ns)
    assert np.array_equal(ns["v"], v) and ns["t"] == 0.7


# ---------------------------------------------------------------- the spec fields diagnosis reads


def _copy_assignment(tmp_path, edit):
    import shutil

    from tests.conftest import ASSIGNMENTS

    folder = tmp_path / "sigmoid-2-3-1"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    toml = folder / "assignment.toml"
    toml.write_text(edit(toml.read_text()))
    return folder


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s.replace('given = "given"', 'given = "nope"', 1), "checks[2].given"),
        (lambda s: s.replace('extreme = "extreme"', 'extreme = "nope"', 1), "checks[0].extreme"),
        (lambda s: s.replace('given_args = ["x0", "W1", "W2"]', 'given_args = ["x0", "W1"]'), "checks[2].given_args"),
        (lambda s: s.replace('fresh = "given_fresh"', 'fresh = "activation"'), "rerun.fresh"),
    ],
)
def test_diagnosis_fields_naming_unknown_input_sets_are_spec_errors(tmp_path, edit, field):
    from grader.assignment.load import load_spec
    from grader.errors import SpecError

    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_spec(_copy_assignment(tmp_path, edit))


def test_a_consistency_loss_missing_from_the_reference_is_a_spec_error(tmp_path):
    from grader.assignment.load import load_spec
    from grader.assignment.reference import Reference
    from grader.errors import SpecError
    from grader.plan.checks import plan

    asg = load_spec(_copy_assignment(tmp_path, lambda s: s.replace('"loss_of_output"', '"no_such_loss"')))
    with pytest.raises(SpecError, match="consistency.reference_loss"):
        plan(asg, Reference(asg), 1)


def test_variants_are_computed_per_trial_for_the_checks_whose_reference_they_replace():
    from grader.assignment.load import find_assignment
    from grader.assignment.reference import Reference
    from grader.plan.checks import plan

    asg = find_assignment("sigmoid-2-3-1")
    plans = {p.check.id: p for p in plan(asg, Reference(asg), 7)}
    grads = plans["gradients"]
    assert [n for n, _ in grads.variants][:1] == ["loss_without_half"]
    for trial in grads.trials:
        assert np.allclose(trial.variants["gradients.W1"]["loss_without_half"], 2 * trial.expected["gradients.W1"])
    assert [n for n, _ in plans["sigmoid_derivative"].variants] == ["sigma_for_sigma_prime", "derivative_of_input"]
    assert plans["sigmoid"].variants == []
    assert grads.given is not None and plans["sigmoid"].extreme is not None and grads.extreme is None


def test_the_hardcoding_policy_decides_whether_a_flagged_variable_keeps_its_points():
    from grader.judging.rerun_judge import _flag
    from grader.report import CheckResult

    def passing() -> CheckResult:
        return CheckResult("y", "y", "variable", "public", "pass", 1.0, 1.0, "matches the expected value")

    d = hardcoded_variable("y", True, ["x0"])
    kept, zeroed = passing(), passing()
    _flag(kept, d, scores_zero=False)
    _flag(zeroed, d, scores_zero=True)
    assert (kept.status, kept.points, kept.codes) == ("pass", 1.0, ["hardcoded"])
    assert (zeroed.status, zeroed.points, zeroed.codes) == ("fail", 0.0, ["hardcoded"])


def test_finite_differences_move_one_element_of_a_possibly_nested_input():
    from grader.judging.consistency import _with_element, get_path

    inputs = {"X": np.ones((2, 3)), "params": {"W1": np.zeros((2, 2)), "b1": np.zeros((2, 1))}}
    moved = _with_element(inputs, "params.W1", (1, 0), 1e-6)
    assert get_path(moved, "params.W1")[1, 0] == 1e-6 and get_path(moved, "params.W1").sum() == 1e-6
    assert inputs["params"]["W1"].sum() == 0  # the trial's own inputs are untouched
    assert get_path(moved, "X") is not inputs["X"]
