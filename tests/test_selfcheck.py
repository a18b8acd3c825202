"""The in-notebook self-check: `from grader import check; check()` in a student's own kernel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import nbformat
import pytest
from nbclient import NotebookClient

from grader.assignment.load import find_assignment, known_assignments
from grader.selfcheck.public import PUBLIC_FILE, public_drift, shipped_plans
from tests.conftest import ASSIGNMENTS, ROOT, graded

STARTER = ASSIGNMENTS / "sigmoid-2-3-1" / "starter.ipynb"
SIGMOID = "def sigmoid(a):\n    return 1 / (1 + np.exp(-a))\n"


def _student_notebook(tmp_path, first_cell: str | None = None):
    """The sigmoid-2-3-1 starter with sigmoid filled in, then the student's check() cells.

    `first_cell`: the text of its first code cell instead of the starter's.
    """
    nb = nbformat.read(STARTER, as_version=4)
    if first_cell is not None:
        next(c for c in nb.cells if c.cell_type == "code").source = first_cell
    todo = next(c for c in nb.cells if c.cell_type == "code" and "def sigmoid(" in c.source)
    todo.source = todo.source.replace(todo.source[todo.source.index("def sigmoid("):
                                                  todo.source.index("def sigmoid_derivative(")], SIGMOID + "\n\n")
    for i, src in enumerate([
        "r = check()\nprint(r)\nimport json\n"
        "print('VERDICTS ' + json.dumps([[c.id, c.status, c.codes] for c in r.checks]))",
        'check("sigmoid")',
        'print(check("forward"))',
        'import sys\nprint("LOADED", "torch" in sys.modules, "nbclient" in sys.modules)',
    ]):
        cell = nbformat.v4.new_code_cell(src)
        cell["id"] = f"student-check-{i}"
        nb.cells.append(cell)
    path = tmp_path / "my work.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The notebook, run in a real ipykernel where the grader is importable, as on a student's machine."""
    tmp = tmp_path_factory.mktemp("student")
    path = _student_notebook(tmp)
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JPY_SESSION_NAME": str(path)}  # as Jupyter sets it
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp)}}).execute(env=env)
    return path, nb


def _outputs(cell, kind: str = "text/plain") -> str:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif kind in o.get("data", {}):
            out.append(o.data[kind])
    return "".join(out)


def test_check_in_a_real_kernel_gives_the_grader_verdicts_for_public_checks_only(ran):
    path, nb = ran
    text = _outputs(nb.cells[-4])
    assert "PASS sigmoid  1/1  correct on 3 random inputs" in text
    assert "ERROR sigmoid_derivative  0/1  sigmoid_derivative raised NotImplementedError" in text
    assert "NotImplementedError:" not in text
    assert "try: sigmoid_derivative(np.array([" in text
    assert "Public: 1 passed, 4 failed · 1/5" in text
    assert "Hidden: the final grading adds 3 hidden checks (6 points)" in text  # forward, gradients W1 and W2
    for secret in ("forward", "gradients", "(hidden)", "hidden input"):  # nothing about hidden checks
        assert secret not in text.split("Hidden:")[0], secret
    verdicts = json.loads(text.split("VERDICTS ", 1)[1])
    graded_public = graded(path, public_only=True, seed=3)  # the grader, on the same notebook
    assert verdicts == [[c.id, c.status, c.codes] for c in graded_public.checks]


def _no_session_env() -> dict[str, str]:
    """A kernel's environment from a front end that names no notebook (nbclient, nbconvert, Colab)."""
    env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    return {**env, "PYTHONPATH": str(ROOT)}


def _run(nb, cwd) -> None:
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(cwd)}}).execute(env=_no_session_env())


def _announced_hidden(text: str) -> int:
    m = re.search(r"Hidden: the final grading adds (\d+) hidden check", " ".join(text.split()))
    assert m, text
    return int(m.group(1))


def test_the_announced_hidden_checks_are_the_hidden_rows_of_the_report(ran):
    path, nb = ran
    text = _outputs(nb.cells[-4])
    report = graded(path, seed=3)
    hidden_rows = [c for c in report.checks if c.visibility == "hidden"]
    assert _announced_hidden(text) == len(hidden_rows) == 3


def test_the_shipped_starter_cell_names_the_assignment_where_the_front_end_names_no_notebook(tmp_path):
    """As under Colab: no session variables and the notebook not in the kernel's folder."""
    (tmp_path / "notebooks").mkdir()
    path = _student_notebook(tmp_path / "notebooks")
    elsewhere = tmp_path / "kernel-folder"
    elsewhere.mkdir()
    nb = nbformat.read(path, as_version=4)
    _run(nb, elsewhere)
    text = _outputs(nb.cells[-4])
    assert "which assignment" not in text and "Traceback" not in text, text
    assert "PASS sigmoid  1/1" in text and "Public: 1 passed, 4 failed" in text
    assert _announced_hidden(text) == 3


def test_a_notebook_that_only_imports_check_finds_its_assignment_among_the_folder_notebooks(tmp_path):
    """nbclient, no session variables, a first cell without use(); another assignment's notebook beside it."""
    path = _student_notebook(tmp_path, first_cell="from grader import check")
    shutil.copy(ASSIGNMENTS / "tanh-softmax-gaussians" / "starter.ipynb", tmp_path / "another lab.ipynb")
    nb = nbformat.read(path, as_version=4)
    _run(nb, tmp_path)
    text = _outputs(nb.cells[-4])
    assert "which assignment" not in text and "Traceback" not in text, text
    assert "PASS sigmoid  1/1" in text and "Public: 1 passed, 4 failed" in text
    verdicts = json.loads(text.split("VERDICTS ", 1)[1])
    assert verdicts == [[c.id, c.status, c.codes] for c in graded(path, public_only=True, seed=3).checks]
    assert _announced_hidden(text) == len([c for c in graded(path, seed=3).checks if c.visibility == "hidden"])


def _write(folder, name: str, assignment: str | None, code: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in code]
    if assignment is not None:
        nb.metadata["grader"] = {"assignment": assignment}
    nbformat.write(nb, folder / name)


def test_the_assignment_is_found_in_a_robust_order(tmp_path, monkeypatch):
    from grader.errors import UnknownAssignment
    from grader.selfcheck import check as selfcheck

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(selfcheck, "_CHOSEN", {})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownAssignment, match=r'call use\("ID"\)') as e:  # nothing names one
        selfcheck._assignment_id({}, None)
    assert "sigmoid-2-3-1" in str(e.value)  # the known ids, to choose from
    _write(tmp_path, "scratch.ipynb", None, ["x = 1"])
    _write(tmp_path, "lab.ipynb", "sigmoid-2-3-1", ["import numpy as np", "def sigmoid(a): ..."])
    _write(tmp_path, "lab copy.ipynb", "sigmoid-2-3-1", ["import numpy as np"])
    assert selfcheck._assignment_id({}, None) == ("sigmoid-2-3-1", False)  # the folder names one
    _write(tmp_path, "other.ipynb", "sigmoid-2-2-2", ["w = 1", "def forward(w): ..."])
    with pytest.raises(UnknownAssignment, match="name several"):  # two, and no history to tell them apart
        selfcheck._assignment_id({}, None)
    ran = {"_ih": ["", "w = 1\n", "def forward(w): ...", "check()"]}
    assert selfcheck._assignment_id(ran, None) == ("sigmoid-2-2-2", False)  # the cells this kernel ran
    session = {"__session__": str(tmp_path / "lab.ipynb")}
    assert selfcheck._assignment_id({**ran, **session}, None) == ("sigmoid-2-3-1", False)  # the front end's
    assert selfcheck._assignment_id({"__vsc_ipynb_file__": str(tmp_path / "other.ipynb")}, None)[0] == "sigmoid-2-2-2"
    selfcheck.use("exp-output-2-2-1")
    assert selfcheck._assignment_id(session, None) == ("exp-output-2-2-1", True)  # use() before the metadata
    assert selfcheck._assignment_id(session, "relu-sigmoid-3-3-1") == ("relu-sigmoid-3-3-1", True)


def test_check_of_one_function_renders_html_in_jupyter(ran):
    _, nb = ran
    cell = nb.cells[-3]
    html = _outputs(cell, "text/html")
    assert '<span style="color:#1a7f37;font-weight:bold">PASS</span> sigmoid  1/1' in html
    assert "sigmoid_derivative" not in html  # one function only
    assert _outputs(cell).startswith("PASS sigmoid  1/1")


def test_check_of_a_hidden_only_function_says_so_without_running_it(ran):
    _, nb = ran
    text = _outputs(nb.cells[-2])
    assert text.startswith("ERROR forward: no public check") and "Traceback" not in text
    assert text.count("ERROR") == 1 and "no public check" in " ".join(text.split())


def test_check_does_not_load_torch_or_the_jupyter_client_for_the_import(ran):
    _, nb = ran
    text = _outputs(nb.cells[-1])
    # torch is installed here, so check() used it for the expected values; the client never
    assert "LOADED" in text and text.strip().endswith("False")


def test_import_grader_is_light():
    code = "import grader, sys; print([m for m in ('torch', 'nbclient', 'jupyter_client', 'pydantic', 'numpy') " \
           "if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


_SCRIPT = textwrap.dedent("""
    import json, sys
    if sys.argv[1] == "no-torch":
        sys.modules["torch"] = None  # import torch fails, as where it is not installed
    import numpy as np
    from grader import check, use
    use("sigmoid-2-3-1")
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))
    def sigmoid_derivative(a):
        return sigmoid(a) * (1 + sigmoid(a))
    y = np.array([[0.5]])
    r = check()
    print(json.dumps({"checks": [[c.id, c.status, c.codes, c.message] for c in r.checks],
                      "torch": sys.modules.get("torch") is not None, "text": str(r)}))
""")


def _script(mode: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_without_torch_check_uses_the_shipped_values_and_agrees_with_torch():
    without, with_torch = _script("no-torch"), _script("torch")
    assert not without["torch"] and with_torch["torch"]
    assert without["checks"] == with_torch["checks"]
    by_id = {c[0]: c for c in without["checks"]}
    assert by_id["sigmoid"][1] == "pass" and by_id["sigmoid_derivative"][1] == "fail"
    assert by_id["y"][1] == "fail"  # 0.5 is not the network's output
    assert "Expected" in by_id["y"][3]


def test_every_shipped_public_json_is_up_to_date():
    for name in known_assignments():
        if (ASSIGNMENTS / name).is_dir():
            assert public_drift(find_assignment(name)) == "", name


def test_a_stale_or_tampered_public_json_is_detected(tmp_path):
    folder = tmp_path / "sigmoid-2-3-1"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    data = json.loads((folder / PUBLIC_FILE).read_text())
    data["checks"]["sigmoid"]["trials"][0]["expected"]["sigmoid"]["a"][0] += 1e-6
    (folder / PUBLIC_FILE).write_text(json.dumps(data))
    assert "'sigmoid' has other trials values" in public_drift(find_assignment(str(folder)))
    spec = folder / "assignment.toml"
    spec.write_text(spec.read_text() + "\n# edited\n")
    with pytest.raises(Exception, match="out of date"):
        shipped_plans(find_assignment(str(folder)))


def test_check_without_a_known_assignment_is_one_line_not_a_traceback():
    code = "from grader import check\nr = check()\nprint(repr(str(r)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("'ERROR which assignment is this notebook?") and "Traceback" not in r.stdout


def test_the_starter_cell_does_no_harm_when_graded():
    r = graded(STARTER, seed=3)
    cell = 1 + next(i for i, c in enumerate(nbformat.read(STARTER, as_version=4).cells)
                    if "from grader import check" in c.source)
    assert cell not in [e.cell for e in r.execution.cell_errors]
    assert not r.flags and r.score == 0 and r.status == "graded"


def test_build_public_writes_and_checks_public_json(tmp_path):
    folder = tmp_path / "sigmoid-2-3-1"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    (folder / PUBLIC_FILE).write_text("{}")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", "build-public", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    stale = cli("--check", str(folder))
    assert stale.returncode == 1 and "out of date" in stale.stdout
    assert cli(str(folder)).returncode == 0
    fresh = cli("--check", str(folder))
    assert fresh.returncode == 0 and "is up to date" in fresh.stdout
    hidden_ids = {c.id for c in find_assignment(str(folder)).spec.checks if c.visibility == "hidden"}
    assert hidden_ids and not hidden_ids & set(json.loads((folder / PUBLIC_FILE).read_text())["checks"])
