"""Saying where a wrong gradient first goes wrong, from the student's own intermediate values."""

from __future__ import annotations

import numpy as np

from grader.judging.localise import verdict
from tests.conftest import NOTEBOOKS

TRUTHS = [np.array([[1.0], [2.0]]), np.array([[0.5], [0.25]]), np.array([[3.0]])]
LABELS = ["the pre-activations", "the activations", "dL/da2"]


def test_the_first_wrong_value_in_computation_order_is_named_after_the_right_ones():
    found = [(2, "delta", np.array([[9.0]])), (0, "z", np.array([[1.0, 2.0]])), (1, "h", TRUTHS[1])]
    sentence = verdict(found, TRUTHS, LABELS)
    assert sentence.startswith("Your z, h are right; delta is the first")
    assert "it should be dL/da2" in sentence


def test_a_value_under_another_intermediate_s_name_is_a_naming_difference_not_a_mistake():
    found = [(0, "a_2", TRUTHS[1]), (2, "delta", TRUTHS[2])]  # a_2 holds the activations
    assert "first" not in verdict(found, TRUTHS, LABELS)


def test_all_intermediates_right_points_at_the_last_step():
    found = [(0, "z", TRUTHS[0]), (1, "h", TRUTHS[1].T)]
    assert "the mistake is in the last step" in verdict(found, TRUTHS, LABELS)


def test_nothing_to_say_without_intermediates():
    assert verdict([], TRUTHS, LABELS) == ""


def test_a_seed_style_notebook_with_a_wrong_hidden_delta_is_told_which_step(grade):
    report = grade(NOTEBOOKS / "sigmoid-2-3-1" / "wrong_hidden_delta.ipynb")
    check = report.check("dL_dW1")
    assert check.status == "fail"
    where = check.detail["goes_wrong_at"]
    assert where.startswith("Your a_1, a_2, a_3, delta_2 are right; delta_1 is the first")
    assert where in check.message and where in check.diagnosis[0].message
    assert report.check("dL_dW2").status == "pass"


def test_the_saturated_seed_is_told_its_output_delta_is_where_it_goes_wrong(grade):
    report = grade(NOTEBOOKS / "relu-sigmoid-3-3-1" / "seed_rounded_output.ipynb")
    where = report.check("dL_dW1").detail["goes_wrong_at"]
    assert "dL_dA2 are right; dL_dZ2 is the first" in where


def test_a_transposed_result_gets_no_search_for_a_wrong_step(grade):
    report = grade(NOTEBOOKS / "sigmoid-2-3-1" / "seed_style.ipynb", "sigmoid-2-3-1")
    check = report.check("dL_dW1")
    assert check.codes == ["transposed"] and "goes_wrong_at" not in check.detail
