"""Notebooks written the way students write them, graded end to end.

Correct solutions in unusual but legitimate forms (1-D or row vectors, lambdas, np.matrix,
Python floats and lists, odd gradient keys, dicts of numbered weights, (output, cache)
returns, in-place updates, globals, plotting and Colab cells that fail) must earn full marks
without hard-coding or consistency alarms; notebooks with realistic mistakes must fail the
right checks with the right diagnosis.
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.assignment.load import find_assignment
from grader.judging.judge import normalise_key, select_part
from grader.judging.rerun_sample import assignment_source
from grader.plan.checks import targets_of
from grader.run.probe import Value
from grader.run.tolerant import tolerant_imports
from tests.conftest import NOTEBOOKS, graded

REALISTIC = NOTEBOOKS / "realistic"

# (assignment, notebook): full marks expected on every seed tried
CORRECT = [
    ("sigmoid-2-3-1", "s231_rowvec_lambdas"),  # 1-D x, scalar t, lambdas, pip/matplotlib/colab cells
    ("sigmoid-2-3-1", "s231_globals_reuse"),  # a global cache, a training cell, a broken plot cell
    ("sigmoid-2-3-1", "s231_matrix_class"),  # np.matrix, staticmethods, keys "W1_grad"
    ("sigmoid-2-3-1", "s231_row_convention"),  # one sample as a row: x (1, 2), h = x @ W1.T
    ("exp-output-2-2-1", "exp_flat_floats"),  # 1-D vectors, Python floats and ints, keys "dW1"
    ("exp-output-2-2-1", "exp_odd_keys"),  # forward_pass -> (p, cache), backward -> keys "W1_grad"
    ("exp-output-2-2-1", "exp_colab_imports"),  # google.colab and seaborn imported before numpy
    ("relu-sigmoid-3-3-1", "relu_lambdas_tuple"),  # lambdas, int relu', (1,1) loss, tuple of grads
    ("relu-sigmoid-3-3-1", "relu_flat_inputs"),  # 1-D convention throughout, keys "dL/dW1"
    ("sigmoid-2-2-2", "s222_scalar_math"),  # math.exp on scalars, forward -> (o1, o2), lists
    ("sigmoid-2-2-2", "s222_named_keys"),  # gradients -> {"w1": .., ..., "w8": .., "b1": .., "b2": ..}
    ("tanh-softmax-gaussians", "tanh_inplace_cache"),  # (A2, cache), in-place update on "dW1" keys
    ("tanh-softmax-gaussians", "tanh_lowercase_keys"),  # params["w1"], grads "dw1", predict -> list
]

# (assignment, notebook, score, {target: (status, first diagnosis code)})
MISTAKES = [
    ("sigmoid-2-3-1", "s231_sign_error", 5.0, {
        "gradients.W1": ("fail", "sign_flip"), "gradients.W2": ("fail", "sign_flip"),
        "dL_dW1": ("fail", "sign_flip"), "dL_dW2": ("fail", "sign_flip"), "forward": ("pass", None),
    }),
    ("sigmoid-2-3-1", "s231_global_output", 6.0, {
        "sigmoid_derivative": ("fail", "variant:derivative_of_input"),  # written for s = sigmoid(a)
        "gradients.W2": ("fail", "hardcoded"),  # reads the notebook's y and h, not its arguments
        "gradients.W1": ("fail", "wrong"), "forward": ("pass", None), "dL_dW1": ("pass", None),
    }),
    ("exp-output-2-2-1", "exp_derivative_of_input", 8.0, {
        "gradients.W1": ("fail", "wrong"), "gradients.b1": ("fail", "wrong"),
        "gradients.W2": ("pass", None), "gradients.b2": ("pass", None), "dJ_dW1": ("fail", "wrong"),
    }),
    ("relu-sigmoid-3-3-1", "relu_mask_missing_loops", 13.0, {
        "gradients.W1": ("fail", "variant:relu_mask_missing"),
        "gradients.b1": ("fail", "variant:relu_mask_missing"),
        "gradients.W2": ("pass", None), "dL_dW1": ("fail", "wrong"),  # the sample hides it: no credit
    }),
    ("sigmoid-2-2-2", "s222_fixed_targets", 3.0, {
        "gradients.w": ("fail", "hardcoded"), "gradients.b": ("fail", "hardcoded"),
        "dL_dw7": ("fail", "hardcoded"), "forward": ("pass", None),
    }),
    ("sigmoid-2-2-2", "s222_tuple_forward_bias", 0.0, {  # forward -> (o1, o2) with b2 left out of o2
        "forward": ("fail", "wrong"), "o": ("fail", "wrong"),
        "gradients.w": ("fail", "wrong"), "gradients.b": ("fail", "wrong"),
        "dL_dw7": ("fail", "wrong"),  # one wrong number is not "1.204 times the right one"
    }),
    ("tanh-softmax-gaussians", "tanh_mean_cost", 14.0, {
        "cost": ("fail", "variant:mean_over_all_entries"), "gradients.W1": ("pass", None),
    }),
    ("tanh-softmax-gaussians", "tanh_bias_not_summed", 14.0, {
        "gradients.b1": ("fail", "shape_mismatch"), "gradients.b2": ("fail", "shape_mismatch"),
        "gradients.W1": ("pass", None),
    }),
]

SEEDS = (1234, 7)


def _path(assignment: str, name: str):
    return REALISTIC / assignment / f"{name}.ipynb"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("assignment", "name"), CORRECT)
def test_correct_solutions_in_unusual_forms_earn_full_marks(assignment, name, seed):
    report = graded(_path(assignment, name), seed=seed)
    failing = {c.id: c.message for c in report.checks if c.status != "pass"}
    assert report.score == report.max_score, failing
    codes = {d.code for c in report.checks for d in c.diagnosis}
    assert not codes & {"hardcoded", "inconsistent", "wrong", "shape_mismatch"}, codes
    assert not report.flags


@pytest.mark.parametrize(("assignment", "name", "score", "expected"), MISTAKES)
def test_realistic_mistakes_fail_the_right_checks(assignment, name, score, expected):
    report = graded(_path(assignment, name), seed=SEEDS[0])
    by_target: dict[str, list] = {}
    for c in report.checks:
        by_target.setdefault(c.target, []).append(c)
    assert report.score == score, {c.id: c.message for c in report.checks if c.status != "pass"}
    for target, (status, code) in expected.items():
        for c in by_target[target]:
            assert c.status == status, (target, c.message)
            first = c.diagnosis[0].code if c.diagnosis else None
            if status == "pass" and code is None:
                assert not [d for d in c.diagnosis if d.code != "unstable"], (target, c.diagnosis)
            else:
                assert first == code, (target, c.diagnosis)


def test_a_backward_pass_that_follows_a_tuple_returning_forward_is_consistent_with_it():
    report = graded(_path("sigmoid-2-2-2", "s222_tuple_forward_bias"), seed=SEEDS[0])
    for c in report.checks:
        if c.target.startswith("gradients."):
            assert c.detail["consistent_with_forward"] is True
            assert "matches your forward pass" in c.message
            assert "inconsistent" not in {d.code for d in c.diagnosis}


def test_a_bias_not_summed_over_samples_is_only_caught_by_batches_of_several():
    report = graded(_path("tanh-softmax-gaussians", "tanh_bias_not_summed"), seed=SEEDS[0])
    b1 = next(c for c in report.checks if c.id == "gradients.b1")
    assert "2 of 3 random inputs" in b1.message  # the batch of one sample cannot show it


def test_a_variable_reassigned_later_is_graded_on_the_value_it_had_and_says_which():
    report = graded(_path("sigmoid-2-3-1", "s231_output_reused"), seed=SEEDS[0])
    y = next(c for c in report.checks if c.id == "y")
    assert y.status == "pass" and y.detail["graded_after_cell"] == 2
    assert "assigns y again in cell 5" in y.message
    assert report.score == report.max_score


def test_functions_written_for_row_vectors_pass_and_say_so():
    report = graded(_path("sigmoid-2-3-1", "s231_row_convention"), seed=SEEDS[0])
    for c in report.checks:
        if c.target in ("gradients.W1", "gradients.W2"):
            assert c.status == "pass" and c.detail.get("vectors") == "row", c.message
            assert "rows (1xn)" in c.message
        if c.target == "forward":  # x @ W1.T works on a 1-D x too, and 1-D is tried first
            assert c.status == "pass" and "as the notebook writes them" in c.message


def test_functions_written_for_1d_vectors_pass_and_say_so():
    report = graded(_path("relu-sigmoid-3-3-1", "relu_flat_inputs"), seed=SEEDS[0])
    grads = {c.target: c for c in report.checks if c.target.startswith("gradients.")}
    assert all(c.status == "pass" for c in grads.values())
    # as called with column vectors, dW2 comes out 3x1 and dW1 9x3; with 1-D vectors they are right
    for target in ("gradients.W1", "gradients.b1", "gradients.W2"):
        assert grads[target].detail.get("vectors") == "flat"
        assert "1-D arrays" in grads[target].message


# ---------------------------------------------------------------- the pieces, directly


@pytest.mark.parametrize("key", ["W1", "dW1", "dL_dW1", "dLdW1", "dJ/dW1", "grad_W1", "W1_grad",
                                 "w1_gradient", "grads_W1", "delta_W1", "dL/dW1"])
def test_gradient_key_spellings_all_name_the_same_parameter(key):
    assert normalise_key(key) == "w1"


def test_numbered_entries_of_a_dict_make_up_a_vector_part():
    check = next(c for c in find_assignment("sigmoid-2-2-2").spec.checks if c.id == "gradients")
    target_w, target_b = targets_of(check)
    keys = [f"dw{i}" for i in range(1, 9)] + ["db1", "db2"]
    value = Value("dict", keys=keys, items=[Value("array", array=np.array(float(i))) for i in range(10)])
    w, _ = select_part(value, target_w, np.zeros(8))
    b, _ = select_part(value, target_b, np.zeros(2))
    assert w is not None and w.array.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert b is not None and b.array.tolist() == [8, 9]
    # an incomplete numbering is not a vector
    partial = Value("dict", keys=keys[:5], items=value.items[:5])
    assert select_part(partial, target_w, np.zeros(8))[0] is None


def test_an_unavailable_import_does_not_stop_the_rest_of_its_cell():
    source = "from google.colab import drive\nimport seaborn as sns, numpy as np\nx = np.ones(2)\ndrive.mount('/d')"
    ns: dict = {}
    with pytest.raises(ModuleNotFoundError, match="google"):  # using it raises the import's own error
        exec(tolerant_imports(source), ns)
    assert ns["x"].tolist() == [1.0, 1.0] and ns["np"] is np
    with pytest.raises(ModuleNotFoundError, match="seaborn"):
        ns["sns"].set_theme()
    assert tolerant_imports("import numpy as np\n%matplotlib inline") == "import numpy as np\n%matplotlib inline"


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix, as notebooks use it
def test_a_fresh_sample_takes_the_notebooks_own_form_of_each_variable():
    ns = {"x": np.array([1, 2]), "b2": 2, "W": [[1, 2], [3, 4]], "m": np.asmatrix([[1], [2]])}
    exec(assignment_source({"x": np.array([[0.5], [0.25]]), "b2": np.array([[0.3]]),
                            "W": np.ones((2, 2)), "m": np.array([[3.0], [4.0]]), "t": 0.7}), ns)
    assert ns["x"].shape == (2,) and ns["x"].tolist() == [0.5, 0.25]
    assert type(ns["b2"]) is float and ns["b2"] == 0.3
    assert ns["W"] == [[1.0, 1.0], [1.0, 1.0]]
    assert isinstance(ns["m"], np.matrix) and ns["m"].tolist() == [[3.0], [4.0]]
    assert ns["t"] == 0.7
    assert not [k for k in ns if k.startswith("_grader")]
