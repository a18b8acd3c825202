"""The sigmoid-2-2-2 assignment (2-2-2 sigmoid network, scalar weights, shared biases).

Graded with real kernels: the solution earns full marks, the starter earns 0 without the
grader failing, and the seed's own mistakes are caught: the minus sign dropped on its last
line (dL/dw3 = -0.00282 handed in as positive), and a shared bias counted through one unit only.
"""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
import torch

from grader.assignment.inputs import draw
from grader.assignment.load import find_assignment
from grader.assignment.reference import Reference
from grader.assignment.tensors import to_numpy, to_torch
from grader.report import Report
from tests.conftest import ASSIGNMENTS, NOTEBOOKS, graded

ID = "sigmoid-2-2-2"
FOLDER = ASSIGNMENTS / ID
FIXTURES = NOTEBOOKS / ID

# The seed's given sample.
GIVEN = {
    "x": [1.0, 2.0],
    "target": [0.0, 1.0],
    "w": [0.1, 0.2, 0.3, 0.4, 0.2, 0.1, 0.4, 0.3],
    "b": [0.1, 0.2],
}


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(find_assignment(ID))


def _given_tensors() -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in GIVEN.items()}


def _checks(report: Report) -> dict[str, object]:
    return {c.id: c for c in report.checks}


def test_reference_reproduces_the_seed_numbers(ref: Reference) -> None:
    g = _given_tensors()
    o = to_numpy(ref.function("forward")(g["x"], g["w"], g["b"]))
    assert np.allclose(o, [0.6001, 0.6657], atol=1e-4)
    grads = ref.function("gradients")(g["x"], g["target"], g["w"], g["b"])
    assert float(grads["w"][6]) == pytest.approx(-0.0961, abs=1e-4)
    # the seed's intermediate -2.81e-3 is right; its final "0.00281" lost the sign
    assert float(grads["w"][2]) == pytest.approx(-0.00282, abs=1e-5)
    assert float(ref.function("dL_dw7")(g["x"], g["target"], g["w"], g["b"])) == float(grads["w"][6])
    assert float(ref.function("dL_dw3")(g["x"], g["target"], g["w"], g["b"])) == float(grads["w"][2])


def test_starter_given_sample_matches_the_spec() -> None:
    spec = find_assignment(ID).spec
    given = spec.inputs["given"].variables
    for name, value in GIVEN.items():
        assert np.array_equal(np.asarray(given[name], dtype=float), value), name
    ns: dict[str, object] = {}
    nb = nbformat.read(FOLDER / "starter.ipynb", as_version=4)
    sample = next(c for c in nb.cells if c.cell_type == "code" and "from grader import check" not in c.source)
    exec(sample.source, ns)  # the given-sample cell only: imports numpy and assigns arrays
    for name, value in GIVEN.items():
        assert np.array_equal(np.asarray(ns[name]), value), name
    assert nb.metadata["grader"]["assignment"] == ID


def test_reference_gradients_match_central_differences(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    rng = np.random.default_rng(7)
    loss = ref.function("loss")
    eps = 1e-6
    for trial in range(5):
        inputs = {k: to_torch(v) for k, v in draw(spec.inputs["network"], rng, trial).items()}
        grads = ref.function("gradients")(inputs["x"], inputs["target"], inputs["w"], inputs["b"])
        for name in ("w", "b"):
            numeric = torch.zeros_like(inputs[name])
            for i in range(inputs[name].numel()):
                args = {k: v.clone() for k, v in inputs.items()}
                args[name][i] += eps
                up = loss(args["x"], args["target"], args["w"], args["b"])
                args[name][i] -= 2 * eps
                down = loss(args["x"], args["target"], args["w"], args["b"])
                numeric[i] = (up - down) / (2 * eps)
            assert torch.allclose(grads[name], numeric, rtol=1e-6, atol=1e-9), (trial, name)


def test_shared_bias_gradient_sums_both_paths(ref: Reference) -> None:
    """dL/db1 is the sum of the paths through h1 and h2 (and dL/db2 through o1 and o2):
    the two 'counted once' variants add up to the true gradient, and each differs from it."""
    rng = np.random.default_rng(3)
    spec = find_assignment(ID).spec
    for trial in range(3):
        d = draw(spec.inputs["network"], rng, trial)
        args = [to_torch(d[k]) for k in ("x", "target", "w", "b")]
        true = ref.function("gradients")(*args)
        first = ref.function("gradients_bias_first_unit")(*args)
        second = ref.function("gradients_bias_second_unit")(*args)
        assert torch.allclose(first["b"] + second["b"], true["b"], rtol=1e-12, atol=1e-15)
        assert torch.equal(first["w"], true["w"]) and torch.equal(second["w"], true["w"])
        assert not torch.allclose(first["b"], true["b"])


def test_variant_gradients_differ_from_the_truth_on_random_targets(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    rng = np.random.default_rng(11)
    d = draw(spec.inputs["network"], rng, 0)
    args = [to_torch(d[k]) for k in ("x", "target", "w", "b")]
    true = ref.function("gradients")(*args)
    half = ref.function("gradients_half_loss")(*args)
    assert torch.allclose(2 * half["w"], true["w"]) and torch.allclose(2 * half["b"], true["b"])
    for name in ("gradients_plus_first_error", "gradients_sigmoid_for_derivative"):
        wrong = ref.function(name)(*args)
        assert not torch.allclose(wrong["w"], true["w"]), name


def test_plus_in_first_error_is_invisible_on_the_given_targets(ref: Reference) -> None:
    """With t1 = 0, (o1 + t1)^2 = (o1 - t1)^2: only fresh targets expose the seed's typo."""
    g = _given_tensors()
    args = (g["x"], g["target"], g["w"], g["b"])
    true, typo = ref.function("gradients")(*args), ref.function("gradients_plus_first_error")(*args)
    assert torch.allclose(true["w"], typo["w"]) and torch.allclose(true["b"], typo["b"])


def test_every_declared_variant_function_exists(ref: Reference) -> None:
    spec = find_assignment(ID).spec
    names = {v.name for v in spec.variants}
    assert {"shared_bias_counted_once", "loss_with_half", "plus_in_first_error"} <= names
    for v in spec.variants:
        for original, replacement in v.replace.items():
            assert callable(ref.function(original)) and callable(ref.function(replacement))


def test_starter_scores_zero_without_grader_error() -> None:
    report = graded(FOLDER / "starter.ipynb")
    assert report.status == "graded"
    assert report.score == 0
    checks = _checks(report)
    assert checks["forward"].status == "error"
    assert "NotImplementedError" in checks["forward"].message
    assert checks["o"].status == "fail"


def test_seed_sign_dropped_on_dL_dw3_is_a_sign_flip() -> None:
    report = graded(FIXTURES / "seed_sign_dropped.ipynb")
    checks = _checks(report)
    assert checks["dL_dw3"].status == "fail"
    assert checks["dL_dw3"].codes == ["sign_flip"]
    assert checks["dL_dw3"].points == 0
    # everything else in the seed is right
    for cid in ("forward", "gradients.w", "gradients.b", "o", "dL_dw7"):
        assert checks[cid].status == "pass", (cid, checks[cid].message)
    assert report.score == report.max_score - 1
    # the seed computes its numbers from the given sample: nothing is flagged as typed in
    assert all("hardcoded" not in c.codes for c in report.checks)


def test_shared_bias_counted_once_fails_the_bias_gradient() -> None:
    report = graded(FIXTURES / "shared_bias_once.ipynb")
    checks = _checks(report)
    assert checks["gradients.b"].status == "fail"
    assert checks["gradients.b"].points == 0
    assert checks["gradients.w"].status == "pass"
    assert checks["dL_dw7"].status == "pass" and checks["dL_dw3"].status == "pass"
    # hidden check: the feedback names no expected values
    assert "expected" not in checks["gradients.b"].detail


def test_shared_bias_counted_once_is_named_by_its_variant() -> None:
    report = graded(FIXTURES / "shared_bias_once.ipynb")
    b = _checks(report)["gradients.b"]
    assert b.codes[0] == "variant:shared_bias_counted_once"
    assert "shared" in b.diagnosis[0].message
    # and the bias gradient is not the gradient of the notebook's own (right) forward pass
    assert "inconsistent" in b.codes


def test_answers_typed_in_from_a_hand_computation_are_flagged_hardcoded() -> None:
    """Seed 003 is a hand computation: numbers typed into the notebook are right on the given
    sample, but do not follow when the notebook is re-run on another sample."""
    report = graded(FIXTURES / "typed_answers.ipynb")
    checks = _checks(report)
    for cid in ("o", "dL_dw7", "dL_dw3"):
        assert checks[cid].status == "fail" and "hardcoded" in checks[cid].codes, cid
    for cid in ("forward", "gradients.w", "gradients.b"):
        assert checks[cid].status == "pass", cid


def test_sigmoid_for_derivative_variant_uses_s_where_s_prime_belongs(ref: Reference) -> None:
    """With s(z) in place of s'(z): dL/dw7 = 2 (o2 - t2) o2 h1 instead of 2 (o2 - t2) o2 (1 - o2) h1."""
    g = _given_tensors()
    x, t, w, b = g["x"], g["target"], g["w"], g["b"]
    h1 = torch.sigmoid(w[0] * x[0] + w[1] * x[1] + b[0])
    o2 = ref.function("forward")(x, w, b)[1]
    variant = ref.function("dL_dw7_sigmoid_for_derivative")(x, t, w, b)
    assert float(variant) == pytest.approx(float(2 * (o2 - t[1]) * o2 * h1), rel=1e-12)
    right = ref.function("dL_dw7")(x, t, w, b)
    assert float(right) == pytest.approx(float(2 * (o2 - t[1]) * o2 * (1 - o2) * h1), rel=1e-12)
