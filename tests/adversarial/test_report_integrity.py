"""The report cannot be forged, the grader cannot be crashed, and a notebook cannot choose the assignment.

- Text the notebook chooses (exception messages and class names, dict keys, cell errors,
  file names) is inert in every format: no line of the text report starts with it, no
  escape sequence or control character survives, no CI workflow command can be formed.
- Whatever fails while grading one submission becomes a report (status "error", the stage,
  what was graded before, the traceback for maintainers) and exit code 3, never a traceback.
- A notebook's metadata names an assignment only by the id of one the grader knows.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import grader.grading.stages
from grader import grade_notebook
from grader.cli import main
from grader.errors import UnknownAssignment
from grader.inert import inert
from grader.plan.items import ProbeItem
from grader.render import render
from grader.run.probe import (
    _answers,
    decode_value,
    genuine_body,
    mime_for,
    probe_request,
)
from tests.conftest import ASSIGNMENTS, graded

from .helpers import ADVERSARIAL, ASSIGNMENT, assert_no_unearned_credit, run_grade

FORGERY = ADVERSARIAL / "report_forgery.ipynb"
# How a line of the text report may begin: the grader's own words, or an indent.
LINE_STARTS = ("Notebook: ", "Assignment: ", "Environment: ", "ERROR ", "cell ", "Note: ", "Limit: ", "PASS ", "FAIL ",
               "MISSING ", "      ", "Score: ", "Ran in ", "forbidden_import: ", "probe_tampered: ",
               "hardcoded: ", "PENALTY ")
SUMMARY = re.compile(r"\d+ passed, \d+ failed · -?[\d.]+/[\d.]+( \(partial\))?")  # the last line: numbers only
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def assert_inert_text(text: str, n_checks: int) -> None:
    """Every line is the grader's; one verdict line per check; one score line; nothing active."""
    lines = text.splitlines()
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    for ln in lines:
        assert ln.startswith(LINE_STARTS) or SUMMARY.fullmatch(ln), f"a line the grader did not write: {ln!r}"
        assert not ln.lstrip().startswith(("::", "```", "~~~", "<!--")), ln
    assert "##[" not in text
    verdicts = [ln for ln in lines if ln.startswith(("PASS ", "FAIL ", "ERROR ", "MISSING "))
                and not ln.startswith("ERROR could not")]
    assert len(verdicts) == n_checks
    assert sum(bool(SUMMARY.fullmatch(ln)) for ln in lines) <= 1
    assert sum(ln.startswith("Score: ") for ln in lines) == 1


def test_forged_lines_in_messages_names_and_keys_stay_inside_their_own_line():
    r = graded(FORGERY, ASSIGNMENT, seed=5)
    assert_no_unearned_credit(r, {"sigmoid"})
    text = render(r, "text")
    assert_inert_text(text, len(r.checks))
    assert text.splitlines()[-3] == f"Score: {r.score:g}/{r.max_score:g}"
    assert SUMMARY.fullmatch(text.splitlines()[-1])  # the summary line ends the report


def test_forged_text_reaches_no_file_or_json_as_control_characters(tmp_path):
    out_txt, out_json = tmp_path / "r.txt", tmp_path / "r.json"
    for args in (["-o", str(out_txt)], ["--format", "json", "-o", str(out_json)]):
        res, _ = run_grade([str(FORGERY), "--seed", "5", *args])
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    data = json.loads(out_json.read_text())
    assert_inert_text(out_txt.read_text(), len(data["checks"]))

    def strings(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for k, v in x.items():
                yield k
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)

    for s in strings(data):
        assert not CONTROL.search(s) and "\n" not in s and "\x1b" not in s, repr(s)
        assert not s.lstrip().startswith("::") and "##[" not in s


@pytest.mark.parametrize("hostile", [
    "\nPASS forward 2/2\nScore: 11/11",
    "\x1b[2J\x1b[H\x1b[32mPASS\x1b[0m",
    "\x1b]8;;http://x\x07link\x1b]8;;\x07",
    "::error file=a.py::forged",
    "  ::add-mask::secret",
    "##[error]legacy command",
    "right\u202eto left\u2066isolate\u2069",
    "a\u2028b\u2029c\u0085d\x00e\x7ff",
    "x" * 100_000,
    "<!-- hide the rest",
    "--> <details><summary>",
    "<img src=x onerror=alert(1)>",
])
def test_inert_removes_every_way_out_of_a_line(hostile):
    s = inert(hostile, 500)
    assert len(s) <= 500
    assert not CONTROL.search(s) and "\n" not in s and "\r" not in s and "\x1b" not in s
    assert "::" not in s and "##[" not in s
    assert not re.search(r"<[A-Za-z!/?]|-->", s)


# ---------------------------------------------------------------- crashes become reports


@pytest.mark.parametrize("shape", [[2**70, 2**70], [-1, 5], [10**12] * 3, list(range(1, 100)), ["1", 2], [True]])
def test_forged_answer_shapes_are_refused_not_crashed_on(shape):
    v = decode_value({"t": "array", "shape": shape, "b64": "AAAAAAAAAAA="})
    assert v.kind in ("too_big", "unconvertible")


def test_answers_with_forged_shapes_are_read_without_error_and_two_claims_are_refused():
    request = probe_request("_grader_probe_x", [ProbeItem("a#0", "variable", ["a"])])
    body = {"nonce": request.nonce, "digest": request.digest,
            "answers": [{"id": "a#0", "found": "a", "value": {"t": "array", "shape": [2**64, 2**64], "b64": ""}}]}
    out = {"output_type": "display_data", "data": {mime_for(request.nonce): body}}
    assert genuine_body([out, out], request) is None  # two claims: neither is the answer
    assert genuine_body([out], request) is body
    answers = _answers(body)
    assert answers["a#0"].value.kind in ("too_big", "unconvertible")


def test_code_nested_beyond_the_parser_is_graded_not_crashed_on():
    r = graded(ADVERSARIAL / "deep_expression.ipynb", ASSIGNMENT, seed=3, cell_timeout=5, total_timeout=60)
    assert r.status == "graded"
    assert {c.target for c in r.checks if c.status == "pass"} == {"sigmoid", "sigmoid_derivative"}


def test_thousands_of_nested_folders_are_removed_after_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    r = grade_notebook(ADVERSARIAL / "deep_folders.ipynb", ASSIGNMENT, seed=1, cell_timeout=20)
    assert r.status == "graded" and r.score == 2
    assert list(tmp_path.iterdir()) == [], "the run's temporary folder was left behind"


def test_a_variable_that_hangs_with_interrupts_ignored_costs_its_checks_only():
    r = graded(ADVERSARIAL / "array_ignores_interrupt.ipynb", ASSIGNMENT, seed=2, cell_timeout=5, total_timeout=60)
    assert r.status == "graded"
    assert {c.target for c in r.checks if c.status == "pass"} == {"sigmoid", "sigmoid_derivative"}
    assert all(c.status in ("error", "missing") for c in r.checks if c.target in ("y", "dL_dW1", "dL_dW2"))


def test_a_failure_inside_grading_is_a_report_with_the_stage_and_what_was_graded(monkeypatch):
    async def broken(*args, **kwargs):
        raise ZeroDivisionError("a grader bug")

    monkeypatch.setattr(grader.grading.stages, "localise", broken)
    r = grade_notebook(ASSIGNMENTS / ASSIGNMENT / "solution.ipynb", ASSIGNMENT, seed=4)
    assert r.status == "error"
    assert r.error_stage == "locating wrong intermediate values"
    assert "ZeroDivisionError: a grader bug" in r.error
    assert "Traceback" in r.error_traceback and "broken" in r.error_traceback
    assert r.checks and r.score == sum(c.points for c in r.checks) > 0  # graded before the failure
    assert r.execution.ran_cells
    d = json.loads(render(r, "json"))
    assert d["status"] == "error" and d["error_stage"] == r.error_stage and "\n" in d["error_traceback"]
    text = render(r, "text")
    assert "ERROR could not finish grading (while locating wrong intermediate values)" in text
    assert "Traceback" not in text


def test_the_command_exits_three_with_a_report_when_grading_fails(monkeypatch, tmp_path):
    async def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(grader.grading.stages, "check_consistency", broken)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, [str(ASSIGNMENTS / ASSIGNMENT / "solution.ipynb"), "--format", "json",
                                    "-o", str(out), "--seed", "1"])
    assert res.exit_code == 3, res.output
    assert json.loads(out.read_text())["status"] == "error"
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_exit_three_is_not_the_exit_of_a_low_score(monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(grader.grading.stages, "localise", broken)
    res = CliRunner().invoke(main, [str(ASSIGNMENTS / ASSIGNMENT / "solution.ipynb"), "--seed", "1",
                                    "--fail-under", "1"])
    assert res.exit_code == 3


# ---------------------------------------------------------------- who chooses the assignment


def unwrapped(text: str) -> str:
    """The text report with its wrapped lines joined again."""
    return re.sub(r"\n {6}", " ", text)


def _student_repo(tmp_path: Path) -> Path:
    """A repository holding a notebook and an assignment folder of its own whose reference leaves a mark."""
    repo = tmp_path / "repo"
    (repo / "myasg").mkdir(parents=True)
    shutil.copy(ADVERSARIAL / "names_own_assignment.ipynb", repo / "submission.ipynb")
    shutil.copy(ASSIGNMENTS / ASSIGNMENT / "assignment.toml", repo / "myasg" / "assignment.toml")
    marker = tmp_path / "IMPORTED"
    reference = (ASSIGNMENTS / ASSIGNMENT / "reference.py").read_text()
    (repo / "myasg" / "reference.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n{reference}")
    return repo


def _with_declared(repo: Path, value: object) -> Path:
    nb = json.loads((repo / "submission.ipynb").read_text())
    nb["metadata"]["grader"] = {"assignment": value}
    path = repo / "submission.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("declared", ["myasg", "./myasg", "myasg/assignment.toml", "{repo}/myasg",
                                      "../repo/myasg", "{repo}/myasg/"])
def test_a_notebook_cannot_name_a_folder_as_its_assignment(tmp_path, declared):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, declared.format(repo=repo))
    res, _ = run_grade([str(nb.name)], cwd=repo)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "not one the grader knows" in res.stderr
    assert not (tmp_path / "IMPORTED").exists(), "the submission's reference code ran in the grader"


def test_the_api_refuses_a_folder_named_by_the_notebook_too(tmp_path, monkeypatch):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, "myasg")
    monkeypatch.chdir(repo)
    with pytest.raises(UnknownAssignment):
        grade_notebook(nb, seed=1)
    assert not (tmp_path / "IMPORTED").exists()


def test_a_folder_chosen_on_the_command_line_is_used_and_named_in_the_report(tmp_path):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, "myasg")
    res, _ = run_grade([str(nb), "--assignment", str(repo / "myasg"), "--seed", "3"])
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "IMPORTED").exists()  # the instructor chose it
    assert f"Assignment: {ASSIGNMENT} version 1 from {(repo / 'myasg').resolve()}" in unwrapped(res.stdout)


def test_a_known_id_in_the_metadata_is_graded_and_its_source_shown(tmp_path):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, ASSIGNMENT)
    res, _ = run_grade([str(nb), "--seed", "3"], cwd=repo)
    assert res.returncode == 0, res.stderr
    assert f"from {(ASSIGNMENTS / ASSIGNMENT).resolve()} (seed 3)" in unwrapped(res.stdout)
    assert not (tmp_path / "IMPORTED").exists()


def test_a_bare_name_on_the_command_line_is_an_id_never_a_folder_here(tmp_path):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, ASSIGNMENT)
    res, _ = run_grade([nb.name, "--assignment", "myasg"], cwd=repo)
    assert res.returncode == 2 and "write ./myasg" in res.stderr
    assert not (tmp_path / "IMPORTED").exists()


@pytest.mark.parametrize("declared", [{"path": "myasg"}, ["myasg"], 7, ""])
def test_metadata_that_is_not_an_id_is_ignored(tmp_path, declared):
    repo = _student_repo(tmp_path)
    nb = _with_declared(repo, declared)
    res, _ = run_grade([str(nb)], cwd=repo)
    assert res.returncode == 2 and "Pass --assignment" in res.stderr
    assert not (tmp_path / "IMPORTED").exists()


def test_hidden_checks_never_show_names_keys_or_lengths_the_notebook_chose():
    r = graded(ADVERSARIAL / "leak_through_names.ipynb", ASSIGNMENT, seed=8)
    hidden = [c for c in r.checks if c.visibility == "hidden"]
    assert hidden and all(c.status != "pass" for c in hidden)
    for c in hidden:
        shown = " ".join([c.message, *(d.message for d in c.diagnosis), json.dumps(c.detail)])
        assert "LEAK" not in shown, shown
    text = render(r, "text") + render(r, "json")
    assert "LEAK" not in text
    # a public check may still say what came back
    y = next(c for c in r.checks if c.target == "y")
    assert y.status == "fail" and "shape 7" in y.message
