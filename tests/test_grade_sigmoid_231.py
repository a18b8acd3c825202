"""Grading the 2-3-1 sigmoid assignment end to end, with real kernels and the torch reference."""

from __future__ import annotations

import pytest

from tests.conftest import ASSIGNMENTS, NOTEBOOKS

NB = NOTEBOOKS / "sigmoid-2-3-1"
ASG = "sigmoid-2-3-1"


def statuses(report):
    return {c.id: c.status for c in report.checks}


def test_solution_scores_full_marks(grade):
    report = grade(ASSIGNMENTS / ASG / "solution.ipynb")  # assignment read from the metadata
    assert report.status == "graded"
    assert report.score == report.max_score == 11
    assert all(c.status == "pass" for c in report.checks)
    assert report.execution.cell_errors == []


def test_starter_scores_zero_without_grader_error(grade):
    report = grade(ASSIGNMENTS / ASG / "starter.ipynb")
    assert report.status == "graded"
    assert report.score == 0
    assert len(report.checks) == 8  # every check listed, including those that could not run
    assert statuses(report)["sigmoid"] == "error"
    assert "NotImplementedError" in report.check("sigmoid").message


def test_seed_style_notebook_passes_what_it_computes_and_reports_the_rest(grade):
    report = grade(NB / "seed_style.ipynb", ASG)
    s = statuses(report)
    assert s["sigmoid"] == "pass"
    assert s["y"] == "pass"
    assert s["forward"] == "missing"
    assert s["gradients.W1"] == s["gradients.W2"] == "missing"
    for target in ("dL_dW1", "dL_dW2"):
        check = report.check(target)
        assert check.status == "fail"
        assert check.codes[0] == "transposed"
        assert "right once transposed" in check.diagnosis[0].message
    assert report.check("dL_dW1").detail["got_shape"] == [2, 3]
    assert report.check("dL_dW1").detail["expected_shape"] == [3, 2]


def test_sign_error_in_output_delta_fails_gradients_as_sign_flip(grade):
    report = grade(NB / "sign_error.ipynb", ASG)
    s = statuses(report)
    assert s["forward"] == s["y"] == "pass"
    for target in ("gradients.W1", "gradients.W2", "dL_dW1", "dL_dW2"):
        assert s[target] == "fail"
        assert "sign_flip" in report.check(target).codes


def test_gradient_scaled_by_two_is_reported_with_its_factor(grade):
    report = grade(NB / "scaled_by_2.ipynb", ASG)
    check = report.check("gradients.W1")
    assert check.status == "fail"
    assert any(code in ("scaled", "variant:loss_without_half") for code in check.codes)
    assert "2" in check.message
    assert statuses(report)["forward"] == "pass"


def test_cells_that_raise_are_recorded_and_the_rest_is_still_graded(grade):
    report = grade(NB / "cell_raises.ipynb", ASG)
    errors = {(e.cell, e.ename) for e in report.execution.cell_errors}
    assert (3, "FileNotFoundError") in errors
    assert (6, "RuntimeError") in errors
    assert report.score == report.max_score  # everything defined around the failing cells counts


def test_a_notebook_without_gradients_reports_them_missing(grade):
    report = grade(NB / "no_gradients.ipynb", ASG)
    s = statuses(report)
    assert s["gradients.W1"] == s["gradients.W2"] == "missing"
    assert s["dL_dW1"] == "missing"
    assert s["forward"] == "pass"
    assert report.check("gradients.W1").points == 0


def test_fake_reports_and_patched_numpy_earn_nothing(grade):
    report = grade(NB / "fake_report.ipynb", ASG)
    assert report.score == 0
    assert all(c.status != "pass" for c in report.checks)


def test_lambdas_methods_matrices_lists_and_cache_tuples_are_understood(grade):
    report = grade(NB / "odd_forms.ipynb", ASG)
    assert report.score == report.max_score, [(c.id, c.message) for c in report.checks if c.status != "pass"]


def test_code_in_a_module_beside_the_notebook_is_importable(grade):
    report = grade(NB / "with-module" / "submission.ipynb", ASG)
    assert report.score == report.max_score


def test_the_same_seed_replays_a_run_exactly(grade):
    a = grade(NB / "scaled_by_2.ipynb", ASG, seed=99)
    b = grade(NB / "scaled_by_2.ipynb", ASG, seed=99, cell_timeout=29.0)  # a distinct, uncached run
    assert a.seed == b.seed == 99
    assert [(c.id, c.status, c.message, c.detail) for c in a.checks] == [
        (c.id, c.status, c.message, c.detail) for c in b.checks
    ]


def test_hidden_checks_reveal_neither_inputs_nor_expected_values(grade):
    report = grade(NB / "scaled_by_2.ipynb", ASG)
    for check in report.checks:
        if check.visibility == "hidden":
            assert "expected" not in check.detail and "got" not in check.detail
            assert "Expected" not in check.message


@pytest.mark.parametrize("shape_policy", ["strict"])
def test_transposed_gradient_credit_is_a_spec_setting(tmp_path, grade, shape_policy):
    """With shape = "allow_transpose" the seed's transposed dL_dW1 earns its point, still diagnosed."""
    import shutil

    folder = tmp_path / "sigmoid-allow-transpose"
    shutil.copytree(ASSIGNMENTS / ASG, folder)
    spec = (folder / "assignment.toml").read_text()
    spec = spec.replace('target = "dL_dW1"', 'target = "dL_dW1"\nshape = "allow_transpose"')
    (folder / "assignment.toml").write_text(spec)
    lenient = grade(NB / "seed_style.ipynb", str(folder)).check("dL_dW1")
    strict = grade(NB / "seed_style.ipynb", ASG).check("dL_dW1")
    assert strict.status == "fail" and strict.codes[0] == "transposed"
    assert lenient.status == "pass" and "transposed" in lenient.codes


def test_input_calls_fail_at_once_instead_of_waiting_for_the_time_limit(grade):
    report = grade(NB / "asks_input.ipynb", ASG)
    (error,) = report.execution.cell_errors
    assert error.cell == 2 and error.ename == "StdinNotImplementedError"
    assert not report.execution.timed_out
    assert report.check("sigmoid").status == "pass"


def test_a_variable_reused_later_is_graded_on_its_earlier_value(grade):
    report = grade(NB / "y_reused_for_plot.ipynb", ASG)
    y = report.check("y")
    assert y.status == "pass" and y.detail["graded_after_cell"] == 2
    assert "assigns y again in cell 5" in y.message
