"""The relu-sigmoid-3-3-1 assignment (3-3-1, ReLU hidden layer, sigmoid output, L = (A2 - Y)^2).

On the seed's sample the output sigmoid is saturated (Z2 = 18.3): the true gradients are tiny
(about 1e-7 .. 1e-6) but not zero, and the seed, rounding sigmoid(18.3) to 1, reports every
gradient as 0. The tolerances must fail that answer and the feedback must say why. Graded
with real kernels: the solution earns full marks, the starter 0, and the seed's mistake and
other realistic wrong answers are caught and explained.
"""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
import torch

from grader.assignment.inputs import draw
from grader.assignment.load import find_assignment
from grader.assignment.reference import Reference
from grader.assignment.tensors import to_torch
from grader.judging.compare import within
from grader.plan.checks import plan
from grader.report import CheckResult, Report
from reference import derivative, sigmoid
from tests.conftest import ASSIGNMENTS, NOTEBOOKS

ID = "relu-sigmoid-3-3-1"
FOLDER = ASSIGNMENTS / ID
FIXTURES = NOTEBOOKS / ID
PARAMS = ("W1", "b1", "W2", "b2")
SAMPLE_GRADIENTS = ("dL_dW1", "dL_db1", "dL_dW2", "dL_db2")
HIDDEN_GRADIENTS = ("gradients.W1", "gradients.b1", "gradients.W2", "gradients.b2")

GIVEN = {
    "x": [[20.0], [3.0], [4.0]],
    "W1": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]],
    "b1": [[0.1], [0.2], [0.3]],
    "W2": [[0.2, 0.4, 0.6]],
    "b2": [[0.5]],
    "Y": [[18.0]],
}
ARGS = ("x", "Y", "W1", "b1", "W2", "b2")


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(find_assignment(ID))


def _given() -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in GIVEN.items()}


def _checks(report: Report) -> dict[str, CheckResult]:
    return {c.id: c for c in report.checks}


def _network_inputs(ref: Reference, rng: np.random.Generator, trial: int) -> dict[str, np.ndarray]:
    spec = find_assignment(ID).spec
    return draw(spec.inputs["network"], rng, trial, ref.function("draw_network"))


# --- the reference ---------------------------------------------------------------------------


def test_reference_reproduces_the_seed_numbers(ref: Reference) -> None:
    g = _given()
    z1 = g["W1"] @ g["x"] + g["b1"]
    assert z1.flatten().tolist() == pytest.approx([3.9, 12.1, 20.3])
    z2 = g["W2"] @ torch.relu(z1) + g["b2"]
    assert float(z2) == pytest.approx(18.3)
    A2 = float(ref.function("forward")(g["x"], g["W1"], g["b1"], g["W2"], g["b2"]))
    assert A2 == pytest.approx(1.0, abs=1e-7) and A2 < 1.0
    assert float(ref.function("objective")(*(g[a] for a in ARGS))) == pytest.approx(289.0, rel=1e-8)
    assert float(ref.function("relu_derivative")(z1).min()) == 1.0  # every hidden unit is on
    # the derivative of the sigmoid at 18.3 is about 1.1e-8, not 0
    assert float(derivative(sigmoid, torch.tensor(18.3, dtype=torch.float64))) == pytest.approx(1.1283e-8, rel=1e-3)


def test_true_gradients_on_the_sample_are_tiny_but_not_zero(ref: Reference) -> None:
    grads = ref.function("gradients")(*(_given()[a] for a in ARGS))
    assert float(grads["W1"][0, 0]) == pytest.approx(-1.5344e-6, rel=1e-3)
    assert float(grads["b2"][0, 0]) == pytest.approx(-3.8361e-7, rel=1e-3)
    for name, g in grads.items():
        assert (g < 0).all(), name  # every gradient is negative: A2 must grow towards Y
        assert float(g.abs().max()) < 1e-5, name


def test_tolerances_on_the_sample_fail_an_all_zero_answer(ref: Reference) -> None:
    """Every element of every sample gradient check rejects 0, so the seed's answer fails."""
    asg = find_assignment(ID)
    for p in plan(asg, ref, seed=1):
        if p.check.id not in SAMPLE_GRADIENTS:
            continue
        (target,) = p.targets
        expected = p.trials[0].expected[target.id]
        assert not within(np.zeros_like(expected), expected, target.rtol, target.atol).any(), target.id
        # and a correct value computed in float64 numpy, sigma' = s (1 - s), passes
        assert within(expected * (1 + 1e-7), expected, target.rtol, target.atol).all(), target.id


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


def test_hidden_inputs_are_well_conditioned(ref: Reference) -> None:
    """Away from the ReLU kink, some units on and some off, and the output sigmoid not saturated."""
    rng = np.random.default_rng(99)
    for trial in range(200):
        d = _network_inputs(ref, rng, trial)
        assert {k: np.shape(v) for k, v in d.items()} == {k: np.shape(v) for k, v in GIVEN.items()}
        z1 = d["W1"] @ d["x"] + d["b1"]
        z2 = d["W2"] @ np.maximum(z1, 0) + d["b2"]
        assert np.abs(z1).min() >= 0.1
        assert (z1 > 0).any() and (z1 < 0).any()
        assert abs(z2.item()) <= 4.0
        assert 0 <= d["Y"].item() <= 1


def test_reference_gradients_match_central_differences(ref: Reference) -> None:
    rng = np.random.default_rng(2024)
    objective = ref.function("objective")
    eps = 1e-6
    for trial in range(6):
        inputs = {k: to_torch(v) for k, v in _network_inputs(ref, rng, trial).items()}
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


def test_reference_activations(ref: Reference) -> None:
    z = torch.tensor([-2.0, -0.5, 0.5, 3.0], dtype=torch.float64)
    assert ref.function("relu")(z).tolist() == [0.0, 0.0, 0.5, 3.0]
    assert ref.function("relu_derivative")(z).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert float(ref.function("loss")(torch.tensor([[0.25]]), torch.tensor([[1.0]]))) == pytest.approx(0.5625)


def _numpy_backprop(x, Y, W1, b1, W2, b2, *, out_deriv=None, hidden_deriv=None, dL_dA2_factor=2.0):
    """Hand-written backprop in numpy, with the pieces a student might get wrong swapped in."""
    Z1 = W1 @ x + b1
    A1 = np.maximum(Z1, 0)
    Z2 = W2 @ A1 + b2
    A2 = 1 / (1 + np.exp(-Z2))
    dZ2 = dL_dA2_factor * (A2 - Y) * (A2 * (1 - A2) if out_deriv is None else out_deriv(Z2, A2))
    dZ1 = (W2.T @ dZ2) * ((Z1 > 0).astype(float) if hidden_deriv is None else hidden_deriv(Z1, A1))
    return {"W1": dZ1 @ x.T, "b1": dZ1, "W2": dZ2 @ A1.T, "b2": dZ2}


VARIANT_MISTAKES = {
    "gradients": {},
    "gradients_sigma_for_sigma_prime": {"out_deriv": lambda Z2, A2: A2},
    "gradients_relu_for_relu_prime": {"hidden_deriv": lambda Z1, A1: A1},
    "gradients_relu_mask_missing": {"hidden_deriv": lambda Z1, A1: np.ones_like(Z1)},
    "gradients_loss_with_half": {"dL_dA2_factor": 1.0},
}


def test_variants_compute_the_mistakes_their_messages_describe(ref: Reference) -> None:
    rng = np.random.default_rng(23)
    for trial in range(3):
        d = _network_inputs(ref, rng, trial)
        args = [d[a] for a in ARGS]
        truth = ref.call("gradients", args)
        for fn, how in VARIANT_MISTAKES.items():
            got = ref.call(fn, args)
            want = _numpy_backprop(*args, **how)
            for k in PARAMS:
                assert np.allclose(got[k], want[k], rtol=1e-12, atol=1e-14), (fn, k)
            if fn != "gradients":  # a variant that equals the truth could never be told apart
                assert not np.allclose(got["W1"], truth["W1"]), fn


def test_rounded_sigmoid_variant_is_the_seeds_all_zero_answer(ref: Reference) -> None:
    args = [_given()[a] for a in ARGS]
    rounded = ref.function("gradients_sigmoid_rounded")(*args)
    for name, g in rounded.items():
        assert torch.count_nonzero(g) == 0, name
    # away from saturation it changes nothing: only the rounding to 1 (or 0) matters
    rng = np.random.default_rng(4)
    d = _network_inputs(ref, rng, 0)
    rounded = ref.call("gradients_sigmoid_rounded", [d[a] for a in ARGS])
    truth = ref.call("gradients", [d[a] for a in ARGS])
    for name in PARAMS:
        assert np.allclose(rounded[name], truth[name], rtol=1e-12, atol=0), name


def test_variants_are_declared_for_checks_that_exist(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    assert {v.name for v in spec.variants} == {
        "sigmoid_rounded",
        "sigma_for_sigma_prime",
        "relu_for_relu_prime",
        "relu_mask_missing",
        "loss_with_half",
    }
    check_ids = {c.id for c in spec.checks}
    references = {c.reference for c in spec.checks}
    for v in spec.variants:
        assert set(v.checks) <= check_ids, v.name
        assert set(v.replace) <= references, v.name
        for fn in v.replace.values():
            assert callable(ref.function(fn))
    rounded = next(v for v in spec.variants if v.name == "sigmoid_rounded")
    assert "1.1e-8" in rounded.message


# --- grading real notebooks ------------------------------------------------------------------


def test_starter_scores_zero_without_grader_error(grade) -> None:
    report = grade(FOLDER / "starter.ipynb")
    assert report.status == "graded"
    assert report.score == 0
    checks = _checks(report)
    assert len(checks) == 15  # every check listed, including those that could not run
    for target in ("relu", "relu_derivative", "sigmoid", "loss", "forward", *HIDDEN_GRADIENTS):
        assert checks[target].status == "error", target
        assert "NotImplementedError" in checks[target].message
    for target in ("A2", "L", *SAMPLE_GRADIENTS):
        assert checks[target].status == "fail", target
    assert report.execution.cell_errors == []


def test_seed_mistake_all_zero_gradients_fail_and_feedback_names_the_tiny_derivative(grade) -> None:
    """The seed rounds sigmoid(18.3) to 1, so sigma'(18.3) = 1 (1 - 1) = 0 and every gradient is 0."""
    report = grade(FIXTURES / "seed_rounded_output.ipynb", ID)
    checks = _checks(report)
    # rounding A2 to 1 is within tolerance, and so is L = 289; the functions are all right
    for target in ("relu", "relu_derivative", "sigmoid", "loss", "forward", *HIDDEN_GRADIENTS, "A2", "L"):
        assert checks[target].status == "pass", (target, checks[target].message)
    for target in SAMPLE_GRADIENTS:
        c = checks[target]
        assert c.status == "fail", target
        assert c.detail["got"] is not None and not np.any(c.detail["got"]), target
        assert c.codes[0] == "variant:sigmoid_rounded", (target, c.codes)
        assert "1.1e-8" in c.message and "not 0" in c.message, c.message
        assert "tiny but not zero" in c.diagnosis[0].message
    assert report.score == 18 - 4


def test_sigma_used_for_sigma_prime_is_explained(grade) -> None:
    """dL/dZ2 = dL/dA2 * sigma(Z2): the activation where its derivative belongs."""
    report = grade(FIXTURES / "sigma_for_sigma_prime.ipynb", ID)
    checks = _checks(report)
    for target in ("forward", "A2", "L"):
        assert checks[target].status == "pass", target
    for target in (*HIDDEN_GRADIENTS, *SAMPLE_GRADIENTS):
        assert checks[target].status == "fail", target
        assert checks[target].codes[0] == "variant:sigma_for_sigma_prime", (target, checks[target].codes)
    assert "sigma'(Z2)" in checks["gradients.W2"].message


def test_transposed_weight_gradients_are_named_transposed(grade) -> None:
    report = grade(FIXTURES / "transposed.ipynb", ID)
    checks = _checks(report)
    for target in ("gradients.W1", "gradients.W2", "dL_dW1", "dL_dW2"):
        assert checks[target].status == "fail", target
        assert checks[target].codes[0] == "transposed", (target, checks[target].codes)
        assert "right once transposed" in checks[target].message
    for target in ("gradients.b1", "gradients.b2", "dL_db1", "dL_db2"):
        assert checks[target].status == "pass", target
    assert checks["dL_dW2"].detail["got_shape"] == [3, 1]


def test_a_half_in_the_loss_is_explained_on_loss_and_gradients(grade) -> None:
    report = grade(FIXTURES / "loss_with_half.ipynb", ID)
    checks = _checks(report)
    assert checks["forward"].status == checks["A2"].status == "pass"
    for target in ("loss", "L", *HIDDEN_GRADIENTS, *SAMPLE_GRADIENTS):
        c = checks[target]
        assert c.status == "fail", target
        assert {"variant:loss_with_half", "scaled"} & set(c.codes), (target, c.codes)
        assert "1/2" in c.message, c.message
    assert checks["loss"].codes[0] == "variant:loss_with_half"


def test_relu_derivative_returning_relu_is_explained_on_the_function_and_the_gradients(grade) -> None:
    """relu_derivative(z) written as max(0, z): the activation instead of its slope."""
    report = grade(FIXTURES / "relu_derivative_is_relu.ipynb", ID)
    checks = _checks(report)
    for target in ("relu", "forward", "A2", "L", "gradients.W2", "gradients.b2", "dL_dW2", "dL_db2"):
        assert checks[target].status == "pass", target  # the output layer does not use relu'
    for target in ("relu_derivative", "gradients.W1", "gradients.b1", "dL_dW1", "dL_db1"):
        assert checks[target].status == "fail", target
        assert checks[target].codes[0] == "variant:relu_for_relu_prime", (target, checks[target].codes)
    assert "relu'(z) is 1 for a positive z" in checks["relu_derivative"].message
    assert report.score == 12


def test_sample_values_typed_in_from_printed_output_are_flagged_hardcoded(grade) -> None:
    """Right numbers on the given sample that do not follow when the sample changes."""
    report = grade(FIXTURES / "typed_numbers.ipynb", ID)
    checks = _checks(report)
    for target in ("relu", "relu_derivative", "sigmoid", "loss", "forward", *HIDDEN_GRADIENTS):
        assert checks[target].status == "pass", target
    for target in ("A2", "L", *SAMPLE_GRADIENTS):
        assert checks[target].status == "fail", target
        assert checks[target].codes == ["hardcoded"], (target, checks[target].codes)
    assert report.score == 12
