"""Course-style assignments graded end to end (real kernels): the answer found where a
submission puts it, optional arguments, classes, and messages in the assignment's own names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.render import render
from tests.conftest import graded
from tests.course_notebooks import (
    BIKES,
    LAB,
    LAB_CONVENTIONS,
    PLANAR,
    TWO_LAYER,
    bikes_source,
    grade_cells,
    lab_source,
    planar_source,
    two_layer_source,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("course")


@pytest.mark.parametrize("convention", sorted(LAB_CONVENTIONS))
def test_every_return_convention_of_the_forward_pass_is_graded_right(folder, convention):
    report = grade_cells(folder, LAB, f"lab-{convention}", lab_source(LAB_CONVENTIONS[convention]))
    forward = report.check("simple_feed_forward")
    assert forward.status == "pass", forward.message
    if convention == "alone":
        assert "took" not in forward.detail
    else:  # the feedback says which element was taken
        position = LAB_CONVENTIONS[convention].split(", ").index("y_hat")
        assert f"item {position} of the returned tuple" in forward.message
    assert report.score == report.max_score == 3


def test_a_wrong_output_in_a_tuple_fails_and_the_most_plausible_element_is_judged(folder):
    # no output sigmoid: y_hat == z2, and no element of the tuple is the answer
    report = grade_cells(folder, LAB, "lab-no-sigmoid", lab_source("z1, x1, z2, y_hat", output="z2"))
    forward = report.check("simple_feed_forward")
    assert forward.status == "fail"
    assert "judged item 3 of the returned tuple" in forward.message
    assert forward.detail["took"].startswith("judged item 3")


def test_a_tuple_with_nothing_of_the_answers_shape_says_what_came_back(folder):
    report = grade_cells(folder, LAB, "lab-hidden-only", lab_source("z1, x1"))
    forward = report.check("simple_feed_forward")
    assert forward.status == "fail" and forward.codes == ["shape_mismatch"]
    assert "returned a tuple of 2 arrays of shapes (5,), (5,); none has the expected shape (1,)" in forward.message
    data = json.loads(render(report, "json"))
    shown = next(c for c in data["checks"] if c["id"] == "simple_feed_forward")
    assert "max_abs_error" not in shown["detail"]  # no error figures where none was computed


def test_a_sign_error_is_explained_in_the_labs_own_names(folder):
    report = grade_cells(folder, LAB, "lab-sign", lab_source("y_hat", error="y - y_hat"))
    assert report.check("simple_feed_forward").status == "pass"
    for part in ("simple_backpropagation.w1", "simple_backpropagation.w2"):
        check = report.check(part)
        assert check.status == "fail" and check.codes == ["sign_flip"]
        assert "(y_hat - y, not y - y_hat)" in check.message
        assert "(y - t" not in check.message


@pytest.mark.parametrize("signature", ["A2, Y", "A2, Y, parameters", "AL, Y, parameters=None"])
def test_both_signatures_of_compute_cost_are_graded_right(folder, signature):
    source = planar_source(signature)
    if signature.startswith("AL"):
        source = [c.replace("np.log(A2)", "np.log(AL)").replace("1 - A2", "1 - AL") for c in source]
    report = grade_cells(folder, PLANAR, "planar-" + signature.replace(", ", "-").replace("=", ""), source)
    assert report.check("compute_cost").status == "pass", report.check("compute_cost").message
    forward = report.check("forward_propagation")
    assert forward.status == "pass" and "item 0 of the returned tuple" in forward.message
    assert report.score == report.max_score == 2


def test_a_signature_that_does_not_fit_is_said_plainly(folder):
    report = grade_cells(folder, PLANAR, "planar-lambd", planar_source("A2, Y, parameters, lambd"))
    cost = report.check("compute_cost")
    assert cost.status == "fail"
    assert cost.message == ("compute_cost takes 4 arguments; the assignment passes A2, Y "
                            "(and parameters when it takes them)")


def test_a_wrong_cost_fails_with_either_signature(folder):
    report = grade_cells(folder, PLANAR, "planar-sign", planar_source("A2, Y, parameters", sign=""))
    cost = report.check("compute_cost")
    assert cost.status == "fail" and cost.codes == ["sign_flip"]


def test_a_cs231n_style_class_is_built_filled_and_its_loss_and_gradients_graded(folder):
    report = grade_cells(folder, TWO_LAYER, "two-layer", two_layer_source())
    assert [(c.id, c.status) for c in report.checks if c.status != "pass"] == []
    assert report.score == report.max_score == 5


def test_a_cs231n_style_class_with_a_wrong_regularisation_gradient_fails_those_parts(folder):
    report = grade_cells(folder, TWO_LAYER, "two-layer-reg", two_layer_source(factor="1"))
    status = {c.id: c.status for c in report.checks}
    assert status == {"loss": "pass", "grads.W1": "fail", "grads.b1": "pass", "grads.W2": "fail", "grads.b2": "pass"}


def test_a_class_keeping_its_weights_elsewhere_is_told_which_attribute_is_missing(folder):
    report = grade_cells(folder, TWO_LAYER, "two-layer-attr", two_layer_source(attribute="weights"))
    loss = report.check("loss")
    assert loss.status == "fail" and "has no attribute 'params'" in loss.message
    assert report.score == 0


def test_a_udacity_style_train_step_moves_the_weights_by_the_references_update(folder):
    report = grade_cells(folder, BIKES, "bikes", bikes_source())
    assert [(c.id, c.status, c.message) for c in report.checks if c.status != "pass"] == []
    assert report.score == report.max_score == 3


@pytest.mark.parametrize("step", ["-=", "*="])
def test_a_train_step_that_moves_the_weights_the_wrong_way_fails(folder, step):
    report = grade_cells(folder, BIKES, "bikes" + {"-=": "-minus", "*=": "-times"}[step], bikes_source(step))
    assert report.check("run").status == "pass"
    for part in ("train.w_ih", "train.w_ho"):
        assert report.check(part).status == "fail", part
    assert "weights_hidden_to_output after one train step" in report.check("train.w_ho").message


def test_a_second_function_whose_signature_does_not_fit_is_said_plainly(folder):
    import nbformat

    from tests.course_notebooks import FIXTURES

    external = FIXTURES / "logistic-external"
    nb = nbformat.read(external / "solution.ipynb", as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("def predict(X, params):", "def predict(X, params, threshold):")
    path = folder / "predict-threshold.ipynb"
    nbformat.write(nb, path)
    report = graded(path, str(external))
    behaviour = report.check("train_predict")
    assert behaviour.status == "fail"
    assert behaviour.message == "predict takes 3 arguments; the assignment passes X_test, what train returned"
    assert report.check("forward").status == "pass"
