"""Course notebooks of every shape, graded end to end (real kernels): a function that writes
into its argument and returns None, functions reading the notebook's global names, a class in
the course's package beside the notebook with its data, a notebook of top-level variables.

Each fixture assignment is what `grade new` drafts from the course's solution, with only its
points and wording changed and the reference's bodies written: the first tests check that.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from grader.assignment.load import load_spec
from grader.authoring.draft import draft
from grader.authoring.validate import validate
from grader.errors import SpecError
from tests.conftest import graded
from tests.course_notebooks import (
    BIKES_USE,
    CS231N,
    FIXTURES,
    GLOBALS,
    VARIABLES,
    XOR,
    bikes_source,
    cs231n_submission,
    globals_source,
    grade_cells,
    variables_source,
    write_notebook,
    xor_source,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


# ---------------------------------------------------------------- each fixture is a draft of `grade new`

WORDING = re.compile(r"^(points|title|label) = .*\n", re.M)


def _solution(shape: str, folder: Path) -> Path:
    folder.mkdir()
    if shape == "cs231n-package":
        return cs231n_submission(folder, "solution")
    source = {"xor-backprop": xor_source, "globals-backprop": globals_source,
              "variables-backprop": variables_source}[shape]
    return write_notebook(folder, "solution", source())


@pytest.mark.parametrize("shape", ["xor-backprop", "globals-backprop", "cs231n-package", "variables-backprop"])
def test_each_fixture_is_the_draft_of_its_solution_with_only_points_and_wording_changed(tmp_path, shape):
    fixture = FIXTURES / shape
    folder = tmp_path / shape
    draft(folder, _solution(shape, tmp_path / "course"))
    drafted = (folder / "assignment.toml").read_text()
    assert WORDING.sub("", drafted) == WORDING.sub("", (fixture / "assignment.toml").read_text())
    # the reference's bodies written (and its docstrings): the draft validates in one round
    shutil.copyfile(fixture / "reference.py", folder / "reference.py")
    result = validate(str(folder))
    assert result.ok, [(f.step, f.message) for f in result.findings if not f.ok]


@pytest.mark.parametrize("shape", ["xor-backprop", "globals-backprop", "cs231n-package", "variables-backprop"])
def test_the_docs_worked_example_of_each_fixture_is_its_spec(shape):
    docs = (FIXTURES.parent.parent / "docs" / "assignments.md").read_text()
    examples = docs[docs.index("### Worked examples"):docs.index("## Files beside the notebook")]
    assert f"`tests/fixtures/{shape}/`" in examples
    spec = (FIXTURES / shape / "assignment.toml").read_text()
    first = spec[spec.index("[[checks]]"):].split("\n\n")[0]
    assert first in examples, first


# ---------------------------------------------------------------- a function that updates its argument


def test_a_function_writing_into_its_argument_and_returning_none_is_graded_on_the_argument(folder):
    report = grade_cells(folder, XOR, "xor-right", xor_source())
    back = report.check("backpropagate")
    assert back.status == "pass", back.message
    assert report.score == report.max_score == 3


def test_wrong_deltas_written_into_the_argument_get_the_usual_diagnosis(folder):
    report = grade_cells(folder, XOR, "xor-sign", xor_source(error="expected[j] - neuron['output']"))
    back = report.check("backpropagate")
    assert back.status == "fail" and back.codes == ["sign_flip"]
    assert "network after backpropagate(...)" in back.message
    assert report.check("forward_propagate").status == "pass"


def test_an_argument_left_without_the_part_read_says_which_part(folder):
    # deltas computed, returned, never written into the network
    cells = xor_source()
    cells[1] = cells[1].split("def backpropagate")[0] + (
        "def backpropagate(network, expected):\n"
        "    out = [(n['output'] - e) * transfer_derivative(n['output']) for n, e in zip(network[-1], expected)]\n"
        "    return out\n"
    )
    cells[2] = ""
    back = grade_cells(folder, XOR, "xor-returned", cells).check("backpropagate")
    assert back.status == "fail"
    assert "network after backpropagate(...) has no 'delta', which the assignment reads" in back.message


# ---------------------------------------------------------------- functions reading the notebook's globals


def test_functions_reading_global_weights_are_called_with_the_spec_values_bound(folder):
    report = grade_cells(folder, GLOBALS, "globals-right", globals_source())
    assert [c.status for c in report.checks] == ["pass"] * 3, [c.message for c in report.checks]


def test_the_globals_are_the_specs_even_when_the_notebook_never_binds_them(folder):
    cells = globals_source()
    cells[2] = "x = np.zeros((1, 4))"  # reset_network() never called: no W1 ... b3 in the notebook
    report = grade_cells(folder, GLOBALS, "globals-unbound", cells)
    assert [c.status for c in report.checks] == ["pass"] * 3, [c.message for c in report.checks]


def test_a_wrong_function_reading_globals_fails_with_its_diagnosis(folder):
    report = grade_cells(folder, GLOBALS, "globals-sign", globals_source(error="2 * (y - a3)"))
    assert report.check("J_W3").status == "pass"
    w1 = report.check("J_W1")
    assert w1.status == "fail" and w1.codes == ["sign_flip"], w1.message


# ---------------------------------------------------------------- spec mistakes in the new keys


@pytest.mark.parametrize("fixture, old, new, says", [
    (XOR, 'argument = "network"', 'argument = "netwrok"', "checks[1]: `argument` 'netwrok' is not one of `args`"),
    (XOR, 'argument = "network"', '# argument = "network"', "checks[1]: `argument_path` needs `argument`"),
    (XOR, 'argument = "network"', 'argument = "network"\ngiven = "network"', "`given` is not supported together with `argument`"),
    (CS231N, 'folders = ["cs231n"]', 'folders = ["../cs231n"]', "folders: '../cs231n' must be a path inside the folder"),
    (GLOBALS, 'target = "J_W3"', 'target = "J_W3"\nkind = "variable"', "checks[0]: `globals` belongs to function and class checks"),
])
def test_mistakes_in_argument_and_globals_are_one_line_naming_the_check(tmp_path, fixture, old, new, says):
    folder = tmp_path / fixture.name
    shutil.copytree(fixture, folder)
    toml = folder / "assignment.toml"
    toml.write_text(toml.read_text().replace(old, new, 1))
    with pytest.raises(SpecError) as e:
        load_spec(folder)
    message = str(e.value)
    assert says in message and "assignment.toml" in message and "\n" not in message, message


# ---------------------------------------------------------------- explanations that point at the right place


def test_a_stub_in_a_cell_with_lines_of_only_spaces_is_located_in_its_cell(folder):
    # IPython empties lines of only spaces in what it runs: the cell is still found, by its line
    stub = "def {name}(network, {arg}):\n    \n    # YOUR CODE HERE\n    \n    raise NotImplementedError\n"
    cells = xor_source()
    cells.insert(1, stub.format(name="forward_propagate", arg="row"))
    cells[2] = stub.format(name="backpropagate", arg="expected")
    cells[3] = ""
    report = grade_cells(folder, XOR, "xor-stubs", cells)
    back = report.check("backpropagate")
    assert "in cell 3, line 5: `raise NotImplementedError`" in back.message, back.message
    assert "outside the notebook's cells" not in back.message


# ---------------------------------------------------------------- a class in the course's package, with data


def test_a_package_and_data_folder_beside_the_notebook_arrive_with_their_structure(folder):
    report = graded(cs231n_submission(folder, "cs231n-right"), str(CS231N))
    assert report.execution.cell_errors == [], report.execution
    assert [c.status for c in report.checks] == ["pass"] * 5, [c.message for c in report.checks]
    # two checks of one class: told apart by what they read of the one method
    assert [c.label for c in report.checks][:2] == ["TwoLayerNet.loss[0]", "TwoLayerNet.loss[1].W1"]


def test_a_wrong_method_in_the_package_is_diagnosed(folder):
    report = graded(cs231n_submission(folder, "cs231n-half-reg", factor="1"), str(CS231N))
    assert report.check("loss").status == "pass"
    w1 = report.check("grads.W1")
    assert w1.status == "fail", w1.message
    assert report.check("grads.b1").status == "pass"


def test_a_package_module_in_python_2_is_reported_as_the_import_that_failed(folder):
    report = graded(cs231n_submission(folder, "cs231n-py2", py2=True), str(CS231N))
    loss = report.check("loss")
    assert loss.status == "error"
    assert "the import in cell 2 raised SyntaxError" in loss.message, loss.message
    assert "defines no class" not in loss.message


# ---------------------------------------------------------------- a notebook of top-level variables only


def test_a_notebook_of_top_level_statements_is_graded_on_its_variables(folder):
    report = grade_cells(folder, VARIABLES, "variables-right", variables_source())
    assert report.score == report.max_score == 11, [(c.id, c.message) for c in report.checks]


def test_a_wrong_error_term_in_top_level_statements_fails_the_values_after_it(folder):
    report = grade_cells(folder, VARIABLES, "variables-sign", variables_source(error="y - y_hat"))
    assert report.check("loss").status == "pass"
    for name in ("delta2", "dW2", "delta1", "dW1"):
        check = report.check(name)
        assert check.status == "fail" and "sign_flip" in check.codes, (name, check.message)


# ---------------------------------------------------------------- a class whose method updates its weights


BIKE_REFERENCE = {
    'raise NotImplementedError("write train in torch")':
        "g = grad(lambda **w: 0.5 * ((run(features, w) - targets) ** 2).sum(dim=1).mean(), **weights)\n"
        "    return {k: v - learning_rate * g[k] for k, v in weights.items()}",
    'raise NotImplementedError("write run in torch")':
        'return sigmoid(features @ weights["weights_input_to_hidden"]) @ weights["weights_hidden_to_output"]',
    "import torch  # noqa: F401 (the bodies are written in torch)": "from reference import grad, sigmoid",
}


def test_a_class_trained_in_place_is_drafted_as_a_state_check_that_validates(tmp_path):
    (tmp_path / "course").mkdir()
    solution = write_notebook(tmp_path / "course", "solution", [*bikes_source(), BIKES_USE])
    folder = tmp_path / "bikes"
    draft(folder, solution)
    spec = (folder / "assignment.toml").read_text()
    assert 'method = "train"\nargs = ["features", "targets"]\nread = "state"' in spec
    assert "state_attributes = { weights_input_to_hidden" in spec
    text = (folder / "reference.py").read_text()
    for stub, body in BIKE_REFERENCE.items():
        text = text.replace(stub, body)
    (folder / "reference.py").write_text(text)
    result = validate(str(folder))
    assert result.ok, [(f.step, f.message) for f in result.findings if not f.ok]


# ---------------------------------------------------------------- check() in the student's own notebook


@pytest.mark.parametrize("shape, cells", [
    ("xor-backprop", xor_source()[:2]),
    ("globals-backprop", globals_source()[:2]),
])
def test_public_checks_of_arguments_and_globals_run_from_public_json(tmp_path, shape, cells):
    from grader.assignment.load import find_assignment
    from grader.judging.judge import judge
    from grader.selfcheck.check import _ask, _runner
    from grader.selfcheck.public import shipped_plans, write_public

    shutil.copytree(FIXTURES / shape, tmp_path / shape)
    asg = find_assignment(str(tmp_path / shape))
    write_public(asg)  # the network (lists of dicts) and the globals travel in public.json
    ns: dict = {}
    for cell in cells:
        exec(cell, ns)
    runner = _runner(ns)
    for p in shipped_plans(asg):
        assert [r.status for r in judge(p, _ask(runner, p, False), "ok")] == ["pass"], p.check.id


def test_the_gradescope_bundle_of_a_package_course_carries_neither_its_package_nor_its_starter(tmp_path):
    import io
    import zipfile

    from grader.assignment.load import find_assignment
    from grader.authoring.bundle import make_bundle

    folder = tmp_path / "cs231n-package"
    draft(folder, cs231n_submission(tmp_path, "course"))  # cs231n/ (the solution's code) and starter/ beside
    shutil.copyfile(FIXTURES / "cs231n-package" / "reference.py", folder / "reference.py")
    names = zipfile.ZipFile(io.BytesIO(make_bundle(find_assignment(str(folder)), grader="nngrader"))).namelist()
    assert sorted(n for n in names if n.startswith("assignments/")) == [
        "assignments/cs231n-package/assignment.toml", "assignments/cs231n-package/reference.py"]
