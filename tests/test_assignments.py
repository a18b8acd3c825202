"""Assignments as data: every shipped one validates, outside ones grade, spec mistakes are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.assignment.load import find_assignment, known_assignments
from grader.assignment.reference import Reference
from grader.authoring.validate import validate
from grader.errors import SpecError, UnknownAssignment
from grader.selfcheck.check import hidden_summary
from tests.conftest import ROOT, graded

EXTERNAL = ROOT / "tests" / "fixtures" / "logistic-external"
SHIPPED = sorted(p.name for p in (ROOT / "assignments").iterdir() if (p / "assignment.toml").is_file())


@pytest.mark.parametrize("assignment", SHIPPED)
def test_every_shipped_assignment_validates(assignment):
    result = validate(assignment, grade=graded)
    assert result.ok, "\n".join(f"{f.step}: {f.message}" for f in result.findings if not f.ok)
    steps = {f.step for f in result.findings}
    assert {"spec", "reference", "environment", "solution.ipynb", "starter.ipynb", "cell limit"} <= steps
    # the notebooks ran in the assignment's kernel environment, which has all they import
    assert not any(s.endswith(" imports") for s in steps)


@pytest.mark.parametrize("assignment", SHIPPED)
@pytest.mark.parametrize("seed", [1234, 77])
def test_solutions_earn_full_marks_with_nothing_to_diagnose_or_flag(assignment, seed):
    report = graded(ROOT / "assignments" / assignment / "solution.ipynb", seed=seed)  # id from metadata
    assert report.status == "graded" and report.assignment["id"] == assignment
    assert [(c.id, c.status, c.codes, c.message) for c in report.checks if c.status != "pass" or c.diagnosis] == []
    assert report.flags == [] and report.execution.cell_errors == []
    assert report.score == report.max_score > 0


@pytest.mark.parametrize("assignment", SHIPPED)
def test_starters_score_zero_and_list_every_check(assignment):
    report = graded(ROOT / "assignments" / assignment / "starter.ipynb")
    assert report.status == "graded" and report.score == 0
    spec = find_assignment(assignment).spec
    expected_ids = {f"{c.id}.{p.key}" if c.parts else c.id for c in spec.checks for p in (c.parts or [None])}
    assert {c.id for c in report.checks} == expected_ids
    hidden = [c for c in report.checks if c.visibility == "hidden"]  # what check() says grading adds
    assert hidden_summary(find_assignment(assignment)) == (len(hidden), pytest.approx(sum(c.max_points for c in hidden)))


def test_an_assignment_outside_the_package_grades_end_to_end_by_path():
    good = graded(EXTERNAL / "solution.ipynb", str(EXTERNAL))
    assert good.assignment["id"] == "logistic-external"
    assert good.score == good.max_score == 6
    behaviour = good.check("train_predict")
    assert behaviour.status == "pass" and "accuracy" in behaviour.message


def test_behaviour_check_fails_a_model_that_never_trains():
    report = graded(EXTERNAL / "untrained.ipynb", str(EXTERNAL))
    assert report.check("train_predict").status == "fail"
    assert report.check("gradients.w").status == "pass"
    b = report.check("gradients.b")
    assert b.status == "fail" and "scaled" in b.codes  # the bias gradient was not averaged


def test_outside_assignments_are_found_through_the_search_path(monkeypatch):
    monkeypatch.setenv("GRADER_ASSIGNMENTS", str(EXTERNAL.parent))
    assert "logistic-external" in known_assignments()
    assert find_assignment("logistic-external").folder == EXTERNAL.resolve()


def test_validate_reports_a_reference_whose_gradients_disagree_with_finite_differences(tmp_path):
    folder = tmp_path / "broken-ref"
    shutil.copytree(EXTERNAL, folder)
    ref = folder / "reference.py"
    ref.write_text(ref.read_text() + (
        "\n\n_right = gradients\n\n\ndef gradients(X, y, w, b):\n"
        "    g = _right(X, y, w, b)\n    return {'w': 2 * g['w'], 'b': g['b']}\n"
    ))
    result = validate(str(folder), notebooks=False)
    assert not result.ok
    bad = [f for f in result.findings if not f.ok]
    assert bad[0].step == "gradients of gradients" and "finite differences" in bad[0].message


def _spec_error(tmp_path: Path, old: str, new: str) -> str:
    folder = tmp_path / "asg"
    shutil.copytree(EXTERNAL, folder, dirs_exist_ok=True)
    toml = folder / "assignment.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError) as e:
        Reference(find_assignment(str(folder)))
    return str(e.value)


@pytest.mark.parametrize(
    "old, new, says",
    [
        ('title = "', 'colour = "blue"\ntitle = "', "colour: unknown field"),
        ("points = 1\n", 'points = "one"\n', "checks[0].points"),
        ('reference = "forward"', 'reference = "fwd"', "checks[0].reference: function 'fwd' is not defined in reference.py"),
        ('inputs = "data"', 'inputs = "dataa"', "checks[0].inputs"),
        ('margin = 0.05', 'margin = 5', "margin"),
        ('generator = "blobs"', 'generator = "blobz"', "inputs.data.generator"),
        ('[[checks]]\ntarget = "forward"', '[[checks]]\ntarget = "forward"\nshape = "loose"', "checks[0].shape"),
    ],
)
def test_spec_mistakes_name_the_file_and_the_field(tmp_path, old, new, says):
    message = _spec_error(tmp_path, old, new)
    assert "assignment.toml" in message
    assert says in message, message
    assert "\n" not in message


def test_a_shape_that_does_not_match_the_generator_fails_validation(tmp_path):
    folder = tmp_path / "asg"
    shutil.copytree(EXTERNAL, folder)
    toml = folder / "assignment.toml"
    toml.write_text(toml.read_text().replace("w = [2, 1]", "w = [3, 1]"))
    result = validate(str(folder), notebooks=False)
    bad = [f.message for f in result.findings if not f.ok]
    assert bad and "w has shape [2, 1], declared [3, 1]" in bad[0]


def test_an_invalid_toml_file_is_one_clear_error(tmp_path):
    folder = tmp_path / "asg"
    folder.mkdir()
    (folder / "assignment.toml").write_text("id = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        find_assignment(str(folder))


def test_a_folder_without_a_spec_is_not_an_assignment(tmp_path):
    with pytest.raises(UnknownAssignment, match="no assignment.toml"):
        find_assignment(str(tmp_path))
