"""The tanh-softmax-gaussians assignment (2-2-2 tanh/softmax classifier of two Gaussians).

Graded with real kernels: the solution earns full marks (train/predict included), the starter
earns 0 without the grader failing, and the seed's own mistake, the softmax derivative taken
elementwise as (A2 - Y)(softmax'(Z2) + 1), is caught by the gradient check although the
network it trains classifies as well as a correct one.
"""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
import torch

from grader.assignment.load import find_assignment
from grader.assignment.reference import Reference
from grader.assignment.tensors import to_torch
from grader.report import Report
from tests.conftest import ASSIGNMENTS, NOTEBOOKS, graded

ID = "tanh-softmax-gaussians"
FOLDER = ASSIGNMENTS / ID
FIXTURES = NOTEBOOKS / ID
SHAPES = {"W1": (2, 2), "b1": (2, 1), "W2": (2, 2), "b2": (2, 1)}


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(find_assignment(ID))


def _checks(report: Report) -> dict[str, object]:
    return {c.id: c for c in report.checks}


def _batch(ref: Reference, seed: int, trial: int) -> dict[str, object]:
    return to_torch(ref.function("draw_batch")(np.random.default_rng(seed), trial))


def test_generators_produce_the_declared_shapes(ref: Reference) -> None:
    rng = np.random.default_rng(0)
    for trial, m in enumerate((7, 1, 32)):
        d = ref.function("draw_batch")(rng, trial)
        assert d["X"].shape == (2, m) and d["Y"].shape == (2, m) and d["A2"].shape == (2, m)
        assert np.array_equal(d["Y"].sum(axis=0), np.ones(m))  # one-hot columns
        assert np.allclose(d["A2"].sum(axis=0), 1) and (d["A2"] > 0).all()
        assert {k: v.shape for k, v in d["params"].items()} == SHAPES
    step = ref.function("draw_step")(rng, 0)
    assert {k: v.shape for k, v in step["grads"].items()} == SHAPES
    train = ref.function("draw_training")(rng, 0)
    assert train["X"].shape == (2, 200) and train["X_test"].shape == (2, 500)
    assert isinstance(train["epochs"], int) and isinstance(train["seed"], int)


def test_data_follow_the_two_gaussians(ref: Reference) -> None:
    X, Y = ref.function("gaussians")(np.random.default_rng(1), 20000)
    labels = Y.argmax(axis=0)
    for k, (mean, std) in enumerate(((1.0, 0.5), (2.0, 0.2))):
        pts = X[:, labels == k]
        assert np.allclose(pts.mean(axis=1), mean, atol=0.02)
        assert np.allclose(pts.std(axis=1), std, atol=0.02)


def test_reference_gradients_match_central_differences(ref: Reference) -> None:
    forward, cost = ref.function("forward"), ref.function("cost")
    eps = 1e-6
    for trial in range(3):
        d = _batch(ref, 5, trial)
        grads = ref.function("gradients")(d["X"], d["Y"], d["params"])
        for name, value in d["params"].items():
            numeric = torch.zeros_like(value)
            for idx in np.ndindex(*value.shape):
                p = {k: v.clone() for k, v in d["params"].items()}
                p[name][idx] += eps
                up = cost(forward(d["X"], p), d["Y"])
                p[name][idx] -= 2 * eps
                down = cost(forward(d["X"], p), d["Y"])
                numeric[idx] = (up - down) / (2 * eps)
            assert torch.allclose(grads[name], numeric, rtol=1e-6, atol=1e-9), (trial, name)


def test_elementwise_variant_is_the_seeds_formula(ref: Reference) -> None:
    """The variant's gradients are those of dJ/dZ2 = (A2 - Y)(A2 (1 - A2) + 1) / m, back-propagated."""
    for trial in range(3):
        d = _batch(ref, 9, trial)
        X, Y, p = d["X"], d["Y"], d["params"]
        m = X.shape[1]
        A1 = torch.tanh(p["W1"] @ X + p["b1"])
        A2 = torch.softmax(p["W2"] @ A1 + p["b2"], dim=0)
        dZ2 = (A2 - Y) * (A2 * (1 - A2) + 1) / m
        dZ1 = (p["W2"].T @ dZ2) * (1 - A1**2)
        seed = {"W1": dZ1 @ X.T, "b1": dZ1.sum(1, keepdim=True), "W2": dZ2 @ A1.T, "b2": dZ2.sum(1, keepdim=True)}
        variant = ref.function("gradients_elementwise_softmax")(X, Y, p)
        true = ref.function("gradients")(X, Y, p)
        for k in SHAPES:
            assert torch.allclose(variant[k], seed[k], rtol=1e-10, atol=1e-14), (trial, k)
        assert not torch.allclose(variant["W2"], true["W2"])


def test_other_variants_scale_the_parts_they_name(ref: Reference) -> None:
    d = _batch(ref, 4, 0)
    X, Y, p, A2 = d["X"], d["Y"], d["params"], d["A2"]
    m = X.shape[1]
    true = ref.function("gradients")(X, Y, p)
    summed = ref.function("gradients_sum_not_mean")(X, Y, p)
    assert all(torch.allclose(summed[k], m * true[k]) for k in SHAPES)
    assert float(ref.function("cost_sum_not_mean")(A2, Y)) == pytest.approx(m * float(ref.function("cost")(A2, Y)))
    squared = float(((A2 - Y) ** 2).sum() / (2 * m))
    assert float(ref.function("cost_squared_without_half")(A2, Y)) == pytest.approx(
        float(ref.function("cost")(A2, Y)) + squared
    )
    wrong_axis = ref.function("forward_softmax_over_samples")(X, p)
    assert torch.allclose(wrong_axis.sum(dim=1), torch.ones(2, dtype=torch.float64))


def test_elementwise_derivative_still_trains_as_well(ref: Reference) -> None:
    """Why only a gradient check can catch the seed: training with its gradients reaches the
    accuracy correct training reaches, within the behaviour check's margin."""
    margin = next(c.margin for c in find_assignment(ID).spec.checks if c.kind == "behaviour")
    rng = np.random.default_rng(2)
    for trial in range(2):
        d = to_torch(ref.function("draw_training")(rng, trial))
        right = ref.function("reference_accuracy")(
            d["X"], d["Y"], d["lr"], d["epochs"], d["seed"], d["X_test"], d["Y_test"]
        )
        params = ref.function("init_params")(d["seed"])
        for _ in range(d["epochs"]):
            grads = ref.function("gradients_elementwise_softmax")(d["X"], d["Y"], params)
            params = ref.function("update")(params, grads, d["lr"])
        seed_acc = ref.function("accuracy")(ref.function("predict")(d["X_test"], params), d["Y_test"])
        assert right > 0.9
        assert seed_acc >= right - margin


def test_reference_training_is_deterministic_for_a_seed(ref: Reference) -> None:
    d = to_torch(ref.function("draw_training")(np.random.default_rng(3), 0))
    a = ref.function("train")(d["X"], d["Y"], d["lr"], 20, 17)
    b = ref.function("train")(d["X"], d["Y"], d["lr"], 20, 17)
    c = ref.function("train")(d["X"], d["Y"], d["lr"], 20, 18)
    assert all(torch.equal(a[k], b[k]) for k in SHAPES)
    assert not torch.equal(a["W1"], c["W1"])


def test_starter_given_sample_matches_the_reference(ref: Reference) -> None:
    nb = nbformat.read(FOLDER / "starter.ipynb", as_version=4)
    assert nb.metadata["grader"]["assignment"] == ID
    sample = next(c for c in nb.cells if c.cell_type == "code" and "from grader import check" not in c.source)
    ns: dict[str, object] = {}
    exec(sample.source, ns)  # the given-sample cell only: numpy arrays and a data generator
    given = ref.function("given_sample")(None, 0)
    assert np.array_equal(ns["X0"], given["X"]) and np.array_equal(ns["Y0"], given["Y"])
    for k in SHAPES:
        assert np.array_equal(ns["params0"][k], given["params"][k]), k
    assert ns["lr0"] == given["lr"]
    X, Y = ns["make_gaussians"](1000, np.random.default_rng(0))
    assert X.shape == (2, 1000) and np.array_equal(Y.sum(axis=0), np.ones(1000))


def test_starter_scores_zero_without_grader_error() -> None:
    report = graded(FOLDER / "starter.ipynb")
    assert report.status == "graded"
    assert report.score == 0
    assert not report.execution.cell_errors  # the stubs only raise when called
    checks = _checks(report)
    assert len(checks) == 14
    for cid in ("forward_given", "gradients.W1", "update.b2", "train_predict"):
        assert checks[cid].status == "error" and "NotImplementedError" in checks[cid].message, cid


def test_seed_elementwise_softmax_derivative_fails_the_gradient_check() -> None:
    report = graded(FIXTURES / "seed_elementwise_softmax.ipynb")
    checks = _checks(report)
    for k in SHAPES:
        c = checks[f"gradients.{k}"]
        assert c.status == "fail" and c.points == 0, k
        assert c.codes[0] == "variant:softmax_derivative_elementwise", (k, c.codes)
        assert "Jacobian" in c.diagnosis[0].message
        # its backward pass is not the derivative of its own (right) forward pass and cost
        assert "inconsistent" in c.codes, k
    # the rest of the notebook is right, and its network trains as well as a correct one
    for cid in ("forward_given", "forward", "cost_given", "cost", "update.W1", "predict", "train_predict"):
        assert checks[cid].status == "pass", (cid, checks[cid].message)
    assert report.score == report.max_score - 6


def test_gradients_without_the_mean_are_named() -> None:
    report = graded(FIXTURES / "mean_forgotten.ipynb")
    checks = _checks(report)
    for k in SHAPES:
        assert checks[f"gradients.{k}"].codes[0] == "variant:mean_forgotten", k
    # m times the gradient with lr 0.5 on 200 samples overshoots: training fails as well
    assert checks["train_predict"].status == "fail"
    assert checks["cost"].status == "pass"


def test_textbook_softmax_is_right_but_flagged_unstable() -> None:
    """exp(Z) / sum exp(Z) is correct on ordinary inputs (full marks) but overflows to nan
    when Z2 reaches ~800; the stability check says so and says what to write instead."""
    report = graded(FIXTURES / "naive_softmax.ipynb")
    assert report.score == report.max_score
    forward = _checks(report)["forward"]
    assert forward.codes == ["unstable"]
    assert "maximum" in forward.diagnosis[0].message


def test_a_train_that_never_returns_is_stopped_and_the_rest_still_graded() -> None:
    report = graded(FIXTURES / "train_never_returns.ipynb")
    assert report.status == "graded"
    checks = _checks(report)
    behaviour = checks["train_predict"]
    assert behaviour.status == "error" and behaviour.codes == ["timeout"]
    assert report.score == report.max_score - behaviour.max_points


def test_gradients_by_torch_autograd_earn_nothing_and_are_flagged() -> None:
    report = graded(FIXTURES / "torch_autograd.ipynb")
    assert [f.code for f in report.flags] == ["forbidden_import"]
    # the kernel's environment has no torch: the gradients that need it fail, and the flag says why
    checks = _checks(report)
    assert all(checks[f"gradients.{k}"].status != "pass" for k in SHAPES)
    said = [e.evalue for e in report.execution.cell_errors] + [c.message for c in report.checks]
    assert any("No module named 'torch'" in m for m in said)
    penalty = find_assignment(ID).spec.policy.forbidden_import_penalty
    earned = sum(c.points for c in report.checks)
    assert report.score == pytest.approx(max(0.0, earned - report.max_score * penalty))


def test_squared_error_without_its_half_is_named_in_cost_and_gradients() -> None:
    report = graded(FIXTURES / "squared_without_half.ipynb")
    checks = _checks(report)
    for cid in ("cost_given", "cost", *(f"gradients.{k}" for k in SHAPES)):
        assert checks[cid].codes[0] == "variant:squared_error_without_half", cid
    # the gradients are those of the notebook's own (wrong) cost: not inconsistent
    assert all("inconsistent" not in checks[f"gradients.{k}"].codes for k in SHAPES)
    assert checks["forward"].status == "pass" and checks["train_predict"].status == "pass"
