"""The exp-output-2-2-1 assignment (2-2-1, sigmoid hidden layer with biases, output p = exp(z)).

Graded with real kernels: the solution earns full marks, the starter earns 0 without the
grader failing, and the mistakes the seed document and the topic invite are caught: the
seed's partial answer (one element of each gradient, by hand), the output's derivative taken
as a sigmoid's p (1 - p), the 1/2 of the loss dropped, and weight gradients transposed.
"""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest
import torch

from grader.assignment.inputs import draw
from grader.assignment.load import find_assignment
from grader.assignment.reference import Reference
from grader.assignment.tensors import to_torch
from grader.report import CheckResult, Report
from tests.conftest import ASSIGNMENTS, NOTEBOOKS

ID = "exp-output-2-2-1"
FOLDER = ASSIGNMENTS / ID
FIXTURES = NOTEBOOKS / ID
PARAMS = ("W1", "b1", "W2", "b2")
GRADIENT_TARGETS = ("gradients.W1", "gradients.b1", "gradients.W2", "gradients.b2", "dJ_dW1", "dJ_dW2")

# The seed's sample, as column vectors (y, symbolic in the seed, is fixed to 1).
GIVEN = {
    "x": [[0.5], [-0.5]],
    "W1": [[4.0, 4.0], [1.0, -2.0]],
    "b1": [[2.0], [-1.0]],
    "W2": [[-3.0, -1.0]],
    "b2": [[2.0]],
    "y": [[1.0]],
}
ARGS = ("x", "y", "W1", "b1", "W2", "b2")


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(find_assignment(ID))


def _given() -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in GIVEN.items()}


def _checks(report: Report) -> dict[str, CheckResult]:
    return {c.id: c for c in report.checks}


# --- the reference ---------------------------------------------------------------------------


def test_reference_reproduces_the_seed_numbers(ref: Reference) -> None:
    g = _given()
    z1 = g["W1"] @ g["x"] + g["b1"]
    assert z1.flatten().tolist() == pytest.approx([2.0, 0.5])
    p = float(ref.function("forward")(g["x"], g["W1"], g["b1"], g["W2"], g["b2"]))
    assert p == pytest.approx(0.282, abs=1e-3)
    assert math.log(p) == pytest.approx(-1.265, abs=1e-3)
    grads = ref.function("gradients")(*(g[a] for a in ARGS))
    # the seed's symbolic answers at y = 1: -0.248442 y + 0.070060644 and -0.01250582 + 0.04434689 y
    assert float(grads["W2"][0, 0]) == pytest.approx(-0.248442 + 0.070060644, abs=1e-3)
    assert float(grads["W1"][0, 0]) == pytest.approx(-0.01250582 + 0.04434689, abs=1e-3)
    assert {k: tuple(v.shape) for k, v in grads.items()} == {k: tuple(g[k].shape) for k in PARAMS}


def test_starter_and_solution_give_the_spec_sample() -> None:
    given = find_assignment(ID).spec.inputs["given"].variables
    for name, value in GIVEN.items():
        assert np.array_equal(np.asarray(given[name], dtype=float), value), name
    for notebook in ("starter.ipynb", "solution.ipynb"):
        nb = nbformat.read(FOLDER / notebook, as_version=4)
        assert nb.metadata["grader"]["assignment"] == ID
        sample = next(c for c in nb.cells if c.cell_type == "code" and "from grader import check" not in c.source)
        ns: dict[str, object] = {}
        exec(sample.source, ns)  # the given-sample cell only: imports numpy and assigns arrays
        for name, value in GIVEN.items():
            assert np.array_equal(np.asarray(ns[name]), value), (notebook, name)


def test_reference_gradients_match_central_differences(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    rng = np.random.default_rng(2024)
    objective = ref.function("objective")
    eps = 1e-6
    for trial in range(6):
        inputs = {k: to_torch(v) for k, v in draw(spec.inputs["network"], rng, trial).items()}
        grads = ref.function("gradients")(*(inputs[a] for a in ARGS))
        for name in PARAMS:
            numeric = torch.zeros_like(inputs[name])
            for i in range(inputs[name].numel()):
                args = {k: v.clone() for k, v in inputs.items()}
                args[name].view(-1)[i] += eps
                up = objective(*(args[a] for a in ARGS))
                args[name].view(-1)[i] -= 2 * eps
                down = objective(*(args[a] for a in ARGS))
                numeric.view(-1)[i] = (up - down) / (2 * eps)
            assert torch.allclose(grads[name], numeric, rtol=1e-6, atol=1e-9), (trial, name)


def test_hidden_inputs_have_the_given_sample_shapes() -> None:
    spec = find_assignment(ID).spec
    rng = np.random.default_rng(5)
    for trial in range(3):
        inputs = draw(spec.inputs["network"], rng, trial)
        assert {k: np.shape(v) for k, v in inputs.items()} == {k: np.shape(v) for k, v in GIVEN.items()}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _numpy_backprop(x, y, W1, b1, W2, b2, *, dp_dz, dJ_dp_factor=1.0, hidden_deriv=None, output=np.exp):
    """Hand-written backprop in numpy, with the pieces a student might get wrong swapped in."""
    z1 = W1 @ x + b1
    a1 = _sigmoid(z1)
    p = output(W2 @ a1 + b2)
    delta2 = dJ_dp_factor * (p - y) * dp_dz(p)
    d_act = a1 * (1 - a1) if hidden_deriv is None else hidden_deriv(a1)
    delta1 = (W2.T @ delta2) * d_act
    return {"W1": delta1 @ x.T, "b1": delta1, "W2": delta2 @ a1.T, "b2": delta2}


def test_variants_compute_the_mistakes_their_messages_describe(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    rng = np.random.default_rng(17)
    cases = {
        "gradients": {"dp_dz": lambda p: p},
        "gradients_output_as_sigmoid": {"dp_dz": lambda p: p * (1 - p)},
        "gradients_output_derivative_dropped": {"dp_dz": np.ones_like},
        "gradients_hidden_sigma_for_sigma_prime": {"dp_dz": lambda p: p, "hidden_deriv": lambda a: a},
        "gradients_loss_without_half": {"dp_dz": lambda p: p, "dJ_dp_factor": 2.0},
        "gradients_sigmoid_output": {"dp_dz": lambda p: p * (1 - p), "output": _sigmoid},
    }
    for trial in range(3):
        inputs = draw(spec.inputs["network"], rng, trial)
        args = [inputs[a] for a in ARGS]
        truth = ref.call("gradients", args)
        assert np.allclose(
            ref.call("forward_sigmoid_output", args[:1] + args[2:]),
            _sigmoid(inputs["W2"] @ _sigmoid(inputs["W1"] @ inputs["x"] + inputs["b1"]) + inputs["b2"]),
        )
        for fn, how in cases.items():
            got = ref.call(fn, args)
            want = _numpy_backprop(*args, **how)
            for k in PARAMS:
                assert np.allclose(got[k], want[k], rtol=1e-12, atol=1e-14), (fn, k)
            if fn != "gradients":  # a variant that equals the truth could never be told apart
                assert not np.allclose(got["W1"], truth["W1"]), fn


def test_every_variant_is_declared_with_an_existing_function(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    names = {v.name for v in spec.variants}
    assert names == {
        "sigmoid_output",
        "output_as_sigmoid",
        "output_derivative_dropped",
        "sigma_for_sigma_prime",
        "loss_without_half",
    }
    check_ids = {c.id for c in spec.checks} | {f"{c.id}.{p.key}" for c in spec.checks for p in c.parts}
    for v in spec.variants:
        assert v.message.strip()
        assert set(v.checks) <= check_ids, v.name
        for fn in v.replace.values():
            assert callable(ref.function(fn))


# --- grading real notebooks ------------------------------------------------------------------


def test_starter_scores_zero_without_grader_error(grade) -> None:
    report = grade(FOLDER / "starter.ipynb")
    assert report.status == "graded"
    assert report.score == 0
    checks = _checks(report)
    assert len(checks) == 9  # every check listed, including those that could not run
    assert checks["sigmoid"].status == checks["forward"].status == "error"
    assert "NotImplementedError" in checks["gradients.W1"].message
    assert checks["p"].status == "fail"
    assert report.execution.cell_errors == []


def test_output_derivative_taken_as_a_sigmoids_fails_every_gradient(grade) -> None:
    """dp/dz written as p (1 - p) (the sigmoid habit) instead of exp(z) = p."""
    report = grade(FIXTURES / "output_as_sigmoid.ipynb", ID)
    checks = _checks(report)
    for target in ("sigmoid", "forward", "p"):
        assert checks[target].status == "pass", target
    for target in GRADIENT_TARGETS:
        assert checks[target].status == "fail", target
        assert "variant:output_as_sigmoid" in checks[target].codes, (target, checks[target].codes)
    assert "p (1 - p)" in checks["dJ_dW1"].message
    assert report.score == 4


def test_seed_style_partial_answer_is_missing_the_function_and_has_the_wrong_shape(grade) -> None:
    """Like the seed: only dJ/dW1_11 and dJ/dW2_11 worked out, as single numbers, and no function."""
    report = grade(FIXTURES / "partial.ipynb", ID)
    checks = _checks(report)
    assert checks["p"].status == checks["forward"].status == "pass"
    for part in PARAMS:
        assert checks[f"gradients.{part}"].status == "missing"
    for target, shape in (("dJ_dW1", [2, 2]), ("dJ_dW2", [1, 2])):
        assert checks[target].status == "fail"
        assert checks[target].codes == ["shape_mismatch"]
        assert checks[target].detail["expected_shape"] == shape
    assert report.score == 4


def test_transposed_weight_gradients_are_named_transposed(grade) -> None:
    report = grade(FIXTURES / "transposed.ipynb", ID)
    checks = _checks(report)
    for target in ("gradients.W1", "gradients.W2", "dJ_dW1", "dJ_dW2"):
        assert checks[target].status == "fail", target
        assert checks[target].codes[0] == "transposed", target
        assert "right once transposed" in checks[target].message
    assert checks["gradients.b1"].status == checks["gradients.b2"].status == "pass"
    assert checks["dJ_dW2"].detail["got_shape"] == [2, 1]


def test_dropping_the_half_of_the_loss_is_explained(grade) -> None:
    report = grade(FIXTURES / "loss_without_half.ipynb", ID)
    checks = _checks(report)
    assert checks["p"].status == "pass"
    for target in GRADIENT_TARGETS:
        assert checks[target].status == "fail", target
        assert {"variant:loss_without_half", "scaled"} & set(checks[target].codes), target
        assert "1/2" in checks[target].message, target
