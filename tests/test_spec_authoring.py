"""Short specs, spec mistakes caught at load with one clear line, and `grade new`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.assignment.load import find_assignment, load_spec
from grader.authoring.draft import draft, stub_source
from grader.authoring.validate import validate
from grader.errors import SpecError, UnknownAssignment

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assignments"
FIXTURE = ROOT / "tests" / "fixtures" / "two-layer-lab"

SOLUTION_CELLS = [
    "import numpy as np\n",
    "x = np.array([[1.0], [2.0]])\nW1 = [[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2]]\n"
    "W2 = [[0.3, -0.1, 0.2]]\ny = [[1.0]]\n",
    "def sigmoid(z):\n    \"\"\"The logistic function.\"\"\"\n    return 1 / (1 + np.exp(-z))\n",
    "def forward(x, W1, W2):\n    \"\"\"The output of the 2-3-1 network.\"\"\"\n"
    "    # BEGIN SOLUTION\n    h = sigmoid(np.dot(W1, x))\n    return sigmoid(np.dot(W2, h))\n"
    "    # END SOLUTION\n",
    "def loss(y_hat, y):\n    return 0.5 * np.sum((y_hat - y) ** 2)\n",
    "print(loss(forward(x, W1, W2), y))\n",
]

# as an nbgrader solution marks every part the students write: the course's own code is unmarked
MARKED_CELLS = [
    *SOLUTION_CELLS[:2],
    SOLUTION_CELLS[2].replace("    return 1", "    # BEGIN SOLUTION\n    return 1") + "    # END SOLUTION\n",
    SOLUTION_CELLS[3],
    SOLUTION_CELLS[4].replace("    return", "    # BEGIN SOLUTION\n    return") + "    # END SOLUTION\n",
    SOLUTION_CELLS[5],
]

REFERENCE_BODIES = {
    'raise NotImplementedError("write sigmoid in torch")': "return torch.sigmoid(z)",
    'raise NotImplementedError("write forward in torch")': "return torch.sigmoid(W2 @ torch.sigmoid(W1 @ x))",
    'raise NotImplementedError("write loss in torch")': "return 0.5 * torch.sum((y_hat - y) ** 2)",
}


def _notebook(cells: list[str]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                            "language": "python"}},
            "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": c,
                       "id": f"c{i}"} for i, c in enumerate(cells)]}


def _drafted(tmp_path: Path) -> Path:
    solution = tmp_path / "lab-solution.ipynb"
    solution.write_text(json.dumps(_notebook(MARKED_CELLS)))
    folder = tmp_path / "three-function-lab"
    draft(folder, solution)
    ref = folder / "reference.py"
    text = ref.read_text()
    for stub, body in REFERENCE_BODIES.items():
        text = text.replace(stub, body)
    ref.write_text(text)
    return folder


# ---------------------------------------------------------------- shorter specs


def test_shipped_specs_use_the_defaults_and_stay_short():
    lengths = {p.parent.name: len(p.read_text().splitlines()) for p in SHIPPED.glob("*/assignment.toml")}
    assert lengths and all(n <= 155 for n in lengths.values()), lengths


def test_args_reference_aliases_and_parts_are_inferred():
    spec = find_assignment("relu-sigmoid-3-3-1").spec
    grads = next(c for c in spec.checks if c.id == "gradients")
    assert grads.reference == "gradients" and grads.args == ["x", "Y", "W1", "b1", "W2", "b2"]
    assert [p.key for p in grads.parts] == ["W1", "b1", "W2", "b2"]  # the reference's dict, in its order
    assert "forward_pass" in grads.consistency.forward_aliases and grads.consistency.loss_args == ["Y"]
    assert grads.parts[0].aliases[:3] == ["dL_dW1", "dW1", "grad_W1"]
    dw1 = next(c for c in spec.checks if c.id == "dL_dW1")
    assert (dw1.reference, dw1.part) == ("gradients", "W1") and "grad_W1" in dw1.aliases
    assert dw1.axes == grads.parts[0].axes
    relu_d = next(c for c in spec.checks if c.id == "relu_derivative")
    assert "relu_prime" in relu_d.aliases


def _edited(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(SHIPPED / name, folder)
    toml = folder / "assignment.toml"
    toml.write_text(edit(toml.read_text()))
    return folder


def test_other_inferred_defaults_match_the_docs():
    tanh = find_assignment("tanh-softmax-gaussians").spec
    update = next(c for c in tanh.checks if c.id == "update")
    assert [(p.key, p.points, p.label) for p in update.parts] == [(k, 0.5, "") for k in ("W1", "b1", "W2", "b2")]
    cons = next(c for c in tanh.checks if c.id == "gradients").consistency
    assert (cons.forward, cons.forward_check, cons.forward_args, cons.reference_loss, cons.loss_args) == (
        "forward", "forward", ["X", "params"], "cost", ["Y"])
    assert "compute_cost" in cons.loss_aliases
    sig = find_assignment("sigmoid-2-3-1").spec
    assert sig.checks[0].stable_hint.startswith("Never take exp of a large positive number: with e = exp(-|a|)")
    assert all(im.checks == ["dL_dW1", "dL_dW2"] for im in sig.intermediates)
    grads = next(c for c in sig.checks if c.id == "gradients")
    assert grads.parts[0].label == "the dL/dW1 returned by gradients"


def test_the_docs_example_is_the_fixture_and_fits_on_one_screen():
    docs = (ROOT / "docs" / "assignments.md").read_text()
    block = docs.split("## A complete small example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == (FIXTURE / "assignment.toml").read_text()
    assert len(block.splitlines()) < 40
    spec = load_spec(FIXTURE).spec
    assert [c.target for c in spec.checks] == ["sigmoid", "forward", "gradients"]
    assert spec.checks[0].args == ["z"] and "logistic" in spec.checks[0].aliases
    assert [(p.key, p.points) for p in spec.checks[2].parts] == [("W1", 2), ("W2", 1)]


def test_the_three_function_fixture_validates_with_its_notebooks():
    result = validate(str(FIXTURE))
    assert result.ok, [(f.step, f.message) for f in result.findings if not f.ok]


def test_builtin_aliases_can_be_extended_and_switched_off(tmp_path):
    folder = _edited(tmp_path, "sigmoid-2-3-1", lambda s: s.replace(
        "[policy]", '[aliases]\nsigmoid = ["my_sigmoid"]\n\n[policy]'))
    sig = load_spec(folder).spec.checks[0]
    assert "sigma" in sig.aliases and sig.aliases[-1] == "my_sigmoid"
    off = _edited(tmp_path / "off", "sigmoid-2-3-1", lambda s: s.replace(
        'title = "', 'builtin_aliases = false\ntitle = "'))
    assert load_spec(off).spec.checks[0].aliases == []


def test_a_three_function_lab_fits_in_under_40_lines(tmp_path):
    folder = _drafted(tmp_path)
    assert len((folder / "assignment.toml").read_text().splitlines()) < 40
    spec = load_spec(folder).spec
    assert [c.target for c in spec.checks] == ["sigmoid", "forward", "loss"]
    assert spec.checks[1].args == ["x", "W1", "W2"]
    assert spec.checks[1].inputs == "sample"  # the values the solution calls forward with


def test_in_a_marked_solution_the_unmarked_functions_are_the_courses_and_left_out(tmp_path):
    solution = tmp_path / "lab-solution.ipynb"
    solution.write_text(json.dumps(_notebook(SOLUTION_CELLS)))  # only forward holds a marked block
    folder = tmp_path / "lab"
    draft(folder, solution)
    spec = (folder / "assignment.toml").read_text()
    assert 'target = "forward"' in spec and 'target = "sigmoid"' not in spec
    assert "# sigmoid: left out (given by the course: no solution block in it)" in spec
    cells = [c["source"] for c in json.loads((folder / "starter.ipynb").read_text())["cells"]]
    assert cells[2] == SOLUTION_CELLS[2] and "raise NotImplementedError" in cells[3]


# ---------------------------------------------------------------- spec mistakes, one line each


@pytest.mark.parametrize("edit, says", [
    # a dict-valued input needs a generator
    (lambda s: s.replace('t = [[-2]]', 't = [[-2]]\nparams = { W1 = [[1.0]] }'),
     "inputs.given: params: a table here is a random distribution ({dist = ...}); for a dict-valued input "
     "write a generator function"),
    # paths as the docs write them
    (lambda s: s.replace('trials = 3\nextreme', 'trials = "three"\nextreme', 1), "checks[0].trials"),
    # a part the reference does not return
    (lambda s: s.replace("parts.W2 = {", "parts.W3 = {"), "checks[3].parts: 'W3' is not a key of what gradients() returns"),
    # a single part the reference does not return
    (lambda s: s.replace('target = "y"\n', 'target = "y"\npart = "nope"\n'), "checks[4].part: forward() returns a single array"),
])
def test_spec_mistakes_are_one_line_naming_the_field(tmp_path, edit, says):
    with pytest.raises(SpecError) as e:
        load_spec(_edited(tmp_path, "sigmoid-2-3-1", edit))
    message = str(e.value)
    assert says in message and "assignment.toml" in message and "\n" not in message, message


def test_every_error_is_listed_not_only_the_first_five(tmp_path):
    def edit(s: str) -> str:
        return s.replace('target = "sigmoid"', 'target = "sigmoid"\na1 = 1\na2 = 2\na3 = 3\na4 = 4\na5 = 5\na6 = 6')
    with pytest.raises(SpecError) as e:
        load_spec(_edited(tmp_path, "sigmoid-2-3-1", edit))
    assert all(f"checks[0].a{i}: unknown field" in str(e.value) for i in range(1, 7)), str(e.value)


def test_a_reference_returning_a_dict_for_a_single_answer_is_caught_at_load(tmp_path):
    folder = _edited(tmp_path, "sigmoid-2-3-1", lambda s: s.replace(
        'target = "y"\naliases = ["y_hat", "output", "y_pred"]\ninputs = "given"\nargs = ["x0", "W1", "W2"]\n'
        'reference = "forward"', 'target = "y"\ninputs = "given"\nargs = ["x0", "t", "W1", "W2"]\n'
        'reference = "gradients"\ntake = 0'))
    spec = load_spec(folder).spec  # no crash: the dict's keys become the check's parts
    assert [p.key for p in spec.checks[4].parts] == ["W1", "W2"]


def test_shapes_take_a_per_trial_list_and_name_keys_the_generator_lacks(tmp_path):
    folder = _edited(tmp_path, "tanh-softmax-gaussians", lambda s: s.replace(
        'generator = "draw_batch"', 'generator = "draw_batch"\nshapes = { X = [[2, 7], [2, 1], [2, 32]], Q = [4, 5] }'))
    bad = [f.message for f in validate(str(folder), notebooks=False).findings if not f.ok]
    assert bad and all("has shape" not in m for m in bad), bad
    assert any("'Q'" in m and "does not produce" in m for m in bad), bad


def test_shapes_reach_into_a_generated_dict_and_undeclared_shapes_are_reported(tmp_path):
    folder = _edited(tmp_path, "tanh-softmax-gaussians", lambda s: s.replace(
        'generator = "draw_step"', 'generator = "draw_step"\nshapes = { "params.W1" = [2, 2], "params.b9" = [2, 1] }'))
    bad = [f.message for f in validate(str(folder), notebooks=False).findings if not f.ok]
    assert len(bad) == 1 and "'params.b9'" in bad[0] and "params.W1" in bad[0], bad
    shipped = validate("tanh-softmax-gaussians", notebooks=False)
    assert shipped.ok
    assert any("first: " in f.message and "params.W1 [2, 2]" in f.message for f in shipped.findings)


def test_an_unknown_assignment_points_at_the_folder_option():
    with pytest.raises(UnknownAssignment, match=r"--assignment ./FOLDER.*GRADER_ASSIGNMENTS"):
        find_assignment("epfl-ex12")


# ---------------------------------------------------------------- grade new


def test_marked_solution_lines_become_stubs_and_unmarked_bodies_too():
    marked = stub_source(SOLUTION_CELLS[3])
    assert "sigmoid(np.dot" not in marked and "raise NotImplementedError" in marked
    assert marked.startswith("def forward(x, W1, W2):\n    \"\"\"The output")
    plain = stub_source(SOLUTION_CELLS[4])
    assert "np.sum" not in plain and plain.startswith("def loss(y_hat, y):\n    raise NotImplementedError")
    compile(marked, "cell", "exec")
    compile(plain, "cell", "exec")


def test_grade_new_drafts_an_assignment_that_validates_once_the_reference_is_written(tmp_path):
    folder = _drafted(tmp_path)
    starter = json.loads((folder / "starter.ipynb").read_text())
    assert starter["metadata"]["grader"]["assignment"] == "three-function-lab"
    assert "def sigmoid(z):" in (folder / "reference.py").read_text()
    result = validate(str(folder))
    assert result.ok, [(f.step, f.message) for f in result.findings if not f.ok]


def test_grade_new_refuses_an_existing_assignment(tmp_path):
    from grader.errors import GraderError

    folder = _drafted(tmp_path)
    with pytest.raises(GraderError, match="already holds an assignment.toml"):
        draft(folder, folder / "solution.ipynb")


def test_a_reference_failing_on_its_inputs_is_an_error_at_load(tmp_path):
    folder = _edited(tmp_path, "sigmoid-2-3-1", lambda s: s.replace(
        'args = ["x0", "W1", "W2"]\nreference = "forward"', 'args = ["x0", "W1"]\nreference = "forward"'))
    with pytest.raises(SpecError) as e:
        load_spec(folder)
    assert "checks[4].reference: forward() fails on input set 'given': TypeError" in str(e.value)
    assert "\n" not in str(e.value)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_grade_new_on_the_command_line(tmp_path):
    solution = tmp_path / "solution.ipynb"
    solution.write_text(json.dumps(_notebook(SOLUTION_CELLS)))
    r = _cli("new", "lab", "--from", str(solution), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "grade validate lab" in r.stdout
    assert {p.name for p in (tmp_path / "lab").iterdir()} >= {"assignment.toml", "reference.py", "solution.ipynb",
                                                              "starter.ipynb"}
    again = _cli("new", "lab", "--from", str(solution), cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already holds" in again.stderr


@pytest.mark.parametrize("content, says", [
    ("not json", "cannot be read as a notebook"),
    (json.dumps(_notebook(["x = 1\n"])), "defines no function, class or computed variable to check"),
])
def test_grade_new_refuses_what_it_cannot_draft_from_in_one_line(tmp_path, content, says):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(content)
    r = _cli("new", "lab", "--from", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    assert not (tmp_path / "lab").exists()


def test_in_a_marked_cell_only_the_marked_blocks_become_stubs():
    cell = ("def helper(a):\n    return a + 1\n\n\ndef answer(a):\n    \"\"\"Doc.\"\"\"\n    # BEGIN SOLUTION\n"
            "    return helper(a) * 2\n    # END SOLUTION\n")
    out = stub_source(cell)
    assert "return a + 1" in out and "helper(a) * 2" not in out and '"""Doc."""' in out
    assert "    raise NotImplementedError" in out
    compile(out, "cell", "exec")


def test_a_draft_copies_small_values_draws_large_ones_and_survives_a_failing_cell(tmp_path):
    cells = ["import seaborn_not_installed as sns",  # raises: the rest still runs
             "import numpy as np\nnp.random.seed(0)\nX = np.random.normal(2.0, 3.0, size=(3, 3000))\n"
             "y = (np.random.rand(1, 3000) > 0.5).astype(int)\nw = np.array([[0.5, -1.0, 2.0]])",
             "def score(X, w):\n    return w @ X\n\ndef accuracy(X, y, w):\n    return np.mean((w @ X > 0) == y)",
             "print(score(X, w).shape, accuracy(X, y, w))"]
    solution = tmp_path / "solution.ipynb"
    solution.write_text(json.dumps(_notebook(cells)))
    draft(tmp_path / "big", solution)
    spec = (tmp_path / "big" / "assignment.toml").read_text()
    assert "w = [[0.5, -1.0, 2.0]]" in spec  # small: the solution's own value
    assert 'X = { dist = "normal", mean = ' in spec and "shape = [3, 3000] }" in spec  # large: drawn like it
    assert "rng.integers(0, 2, size=(1, 3000))" in (tmp_path / "big" / "reference.py").read_text()  # integer labels


def test_a_function_updating_a_dict_in_place_is_drafted_as_an_argument_check(tmp_path):
    cells = ["import numpy as np",
             "def update_parameters(parameters, grads, learning_rate=1.2):\n"
             "    for key in parameters:\n        parameters[key] -= learning_rate * grads['d' + key]",
             "parameters = {'W1': np.ones((2, 2)), 'b1': np.zeros((2, 1))}\n"
             "grads = {'dW1': np.full((2, 2), 0.5), 'db1': np.ones((2, 1))}\n"
             "update_parameters(parameters, grads)"]
    solution = tmp_path / "solution.ipynb"
    solution.write_text(json.dumps(_notebook(cells)))
    draft(tmp_path / "update", solution)
    spec = (tmp_path / "update" / "assignment.toml").read_text()
    assert 'argument = "parameters"' in spec and "argument_path" not in spec  # the whole dict, part by key
    assert "learning_rate" not in spec  # its default kept
    reference = (tmp_path / "update" / "reference.py").read_text()
    assert "def update_parameters(parameters, grads):" in reference
    assert "'W1': np.array([[1.0, 1.0], [1.0, 1.0]])" in reference  # as the solution passed it, before the call


@pytest.mark.parametrize("solution", [*sorted(SHIPPED.glob("*/solution.ipynb")),
                                      ROOT / "tests" / "fixtures" / "logistic-external" / "solution.ipynb"],
                         ids=lambda p: p.parent.name)
def test_every_shipped_solution_drafts_a_spec_that_parses_and_leaves_training_out(tmp_path, solution):
    import tomllib

    draft(tmp_path / "drafted", solution)
    spec = tomllib.loads((tmp_path / "drafted" / "assignment.toml").read_text())
    assert spec["checks"] and all(c["inputs"] in spec["inputs"] for c in spec["checks"])
    assert not any(c["target"].startswith("train") for c in spec["checks"])
