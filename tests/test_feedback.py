"""Feedback that says why: each diagnosis code on a notebook that makes that mistake (real kernels),
and none but a pass on the shipped solution notebooks."""

from __future__ import annotations

import pytest

from tests.conftest import NOTEBOOKS, graded

FB = NOTEBOOKS / "feedback"
ASG = "sigmoid-2-3-1"
GRADIENT_TARGETS = ["gradients.W1", "gradients.W2", "dL_dW1", "dL_dW2"]


def report(name: str):
    return graded(FB / f"{name}.ipynb", ASG)


def codes(rep, check_id: str) -> list[str]:
    return rep.check(check_id).codes


def messages(rep, check_id: str) -> str:
    return " ".join(d.message for d in rep.check(check_id).diagnosis)


def test_a_flipped_error_term_is_a_sign_flip():
    rep = report("sign_flip")
    for t in GRADIENT_TARGETS:
        assert codes(rep, t)[0] == "sign_flip"


def test_a_halved_gradient_is_scaled_by_one_half():
    rep = report("scaled_half")
    for t in GRADIENT_TARGETS:
        assert codes(rep, t)[0] == "scaled"
        assert "c = 1/2" in messages(rep, t) and "a 1/2 was added" in messages(rep, t)


def test_a_doubled_gradient_is_the_loss_without_its_half():
    rep = report("loss_without_half")
    for t in GRADIENT_TARGETS:
        assert codes(rep, t)[0] == "variant:loss_without_half"
        assert "L = 1/2 (y - t)^2" in messages(rep, t)


def test_sigma_used_for_its_derivative_is_a_declared_variant():
    rep = report("sigma_for_prime")
    for t in GRADIENT_TARGETS:
        assert codes(rep, t)[0] == "variant:sigma_for_sigma_prime"


def test_a_transposed_gradient_is_transposed():
    rep = report("transposed")
    for t in ("gradients.W1", "dL_dW1"):
        assert codes(rep, t) == ["transposed"]
        assert "2x3" in messages(rep, t) and "3x2" in messages(rep, t)
    assert rep.check("gradients.W2").status == "pass"


def test_a_gradient_of_the_wrong_shape_says_both_shapes_where_the_inputs_are_public():
    rep = report("shape_mismatch")
    for t in ("gradients.W1", "dL_dW1"):
        assert codes(rep, t) == ["shape_mismatch"]
    assert "3x1" in messages(rep, "dL_dW1") and "3x2" in messages(rep, "dL_dW1")
    # a shape the notebook returned during a hidden call is the notebook's to choose: not shown
    assert "wrong shape" in messages(rep, "gradients.W1") and "3x1" not in messages(rep, "gradients.W1")


def test_nan_in_one_row_is_located_by_hidden_unit():
    rep = report("nan_row")
    for t in ("gradients.W1", "dL_dW1"):
        assert codes(rep, t)[0] == "nan_or_inf"
        assert "row 2 of" in messages(rep, t) and "the weights into hidden unit 3" in messages(rep, t)


def test_a_wrong_row_is_localised_and_the_backward_pass_does_not_match_the_forward():
    rep = report("wrong_row")
    assert codes(rep, "dL_dW1") == ["wrong"]
    assert "row 2 of dL_dW1, i.e. the weights into hidden unit 3" in messages(rep, "dL_dW1")
    assert codes(rep, "gradients.W1") == ["wrong", "inconsistent"]
    assert "Your forward pass is right; the backward pass does not match it" in messages(rep, "gradients.W1")
    assert rep.check("gradients.W2").status == "pass"


def test_a_backward_pass_that_follows_a_wrong_forward_pass_is_said_to_be_consistent():
    rep = report("linear_output")
    assert codes(rep, "forward") == ["variant:linear_output"]
    for t in ("gradients.W1", "gradients.W2"):
        assert "inconsistent" not in codes(rep, t)
        assert "Your backward pass matches your forward pass" in rep.check(t).message
        assert rep.check(t).detail["consistent_with_forward"] is True


def test_a_function_that_returns_the_sample_answer_is_hardcoded():
    rep = report("hardcoded_function")
    for t in ("gradients.W1", "gradients.W2"):
        assert codes(rep, t)[0] == "hardcoded"
        assert "same answer whatever its arguments" in messages(rep, t)
        assert rep.check(t).points == 0
    # its variables are right on the sample, but do not follow a fresh one: zero by the policy
    for t in ("dL_dW1", "dL_dW2"):
        assert codes(rep, t)[0] == "hardcoded" and rep.check(t).points == 0
    assert rep.check("y").status == "pass" and rep.check("y").diagnosis == []


def test_a_function_reading_the_notebooks_sample_instead_of_its_argument_is_hardcoded():
    rep = report("uses_notebook_x0")
    for t in ("gradients.W1", "gradients.W2"):
        assert codes(rep, t)[0] == "hardcoded"
        assert "ignores its argument x (it reads x0)" in messages(rep, t)
    # its variables are computed on the sample, so they are right and follow a fresh one
    assert all(rep.check(t).status == "pass" and not rep.check(t).diagnosis for t in ("y", "dL_dW1", "dL_dW2"))


def test_a_function_wrong_only_where_the_sample_hides_it_is_not_called_hardcoded():
    # the error is in hidden unit 2, whose gradient on the given sample is ~1e-23: right there,
    # wrong on fresh inputs, yet it computes from its arguments; a plain mistake
    rep = report("wrong_unit_2")
    # its variable follows a fresh sample, wrongly: explained, not called hard-coded, and no
    # credit (a given-sample value earns credit only from a computation right on fresh inputs)
    sample = rep.check("dL_dW1")
    assert sample.status == "fail" and sample.points == 0 and sample.codes == ["wrong"]
    assert "a mistake that the given sample hides" in sample.diagnosis[0].message
    assert codes(rep, "gradients.W1") == ["wrong", "inconsistent"]
    assert "row 1 of the dL/dW1 returned by gradients, i.e. the weights into hidden unit 2" in messages(rep, "gradients.W1")


def test_typed_in_results_without_functions_are_hardcoded():
    rep = report("hardcoded_variables")
    for t in ("y", "dL_dW1", "dL_dW2"):
        c = rep.check(t)
        assert c.codes == ["hardcoded"] and c.status == "fail" and c.points == 0
        assert "kept the same value" in c.message
    assert rep.score == 0


def test_seed_000_computes_its_variables_but_its_sigmoid_derivative_is_unstable():
    rep = report("seed000")
    # top-level variables computed from the sample follow a fresh one: not hard-coded
    assert rep.check("y").status == "pass" and rep.check("y").diagnosis == []
    sd = rep.check("sigmoid_derivative")
    assert sd.status == "pass" and sd.points == 1  # a diagnosis alone does not cost points
    assert sd.codes == ["unstable"]
    assert "large negative inputs" in sd.diagnosis[0].message and "s * (1 - s)" in sd.diagnosis[0].message
    # 1/(1+exp(1000)) is 0, right, but only through an overflow: flagged, at no cost
    sig = rep.check("sigmoid")
    assert sig.status == "pass" and sig.codes == ["unstable"] and "overflows" in sig.diagnosis[0].message
    assert codes(rep, "dL_dW1") == ["transposed"]


@pytest.mark.parametrize("name", ["forbidden_top", "forbidden_in_function", "forbidden_importlib"])
def test_torch_is_a_forbidden_import_however_it_is_imported(name):
    rep = report(name)
    flags = [(f.code, f.target) for f in rep.flags]
    assert flags == [("forbidden_import", "torch")]
    # the kernel's environment has no torch: the import fails where it is made (the cell, or
    # the function when the grader calls it), so the autograd gradients earn nothing
    said = [e.evalue for e in rep.execution.cell_errors] + [c.message for c in rep.checks]
    assert any("No module named 'torch'" in m for m in said)
    assert all(c.status != "pass" for c in rep.checks if c.target.startswith("gradients"))
    assert rep.check("sigmoid").status == "pass"
    assert rep.score == 0  # what passed, less the policy's penalty of half the maximum
    assert "by hand" in rep.flags[0].message


def test_a_torch_import_that_fails_is_still_penalised():
    rep = graded(NOTEBOOKS / "feedback" / "forbidden_attempt.ipynb", "sigmoid-2-3-1")
    assert [(f.code, f.target) for f in rep.flags] == [("forbidden_import", "torch")]
    assert all(c.status == "pass" for c in rep.checks)  # by hand, and right
    assert rep.score == pytest.approx(rep.max_score * 0.5)
