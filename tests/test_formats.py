"""Every output format from the one report: penalties, points that add up, escaping, `grade render`."""

from __future__ import annotations

import json
import re

import pytest

from grader.assignment.tables import Policy
from grader.judging.score import penalties
from grader.render import RENDERERS, render
from grader.render.common import pts
from grader.render.github import annotations
from grader.render.gradescope import render_gradescope
from grader.render.junit import render_junit
from grader.render.markdown import render_markdown
from grader.report import (
    CellError,
    CheckResult,
    Diagnosis,
    Execution,
    Flag,
    Report,
    report_from_dict,
)
from tests.ci_support import OWN_COMMAND, cli, gradescope_results, junit_checks, run_grade
from tests.conftest import NOTEBOOKS, graded

# every check right, torch tried (the kernel has none): the penalty alone, 5.5/11
FORBIDDEN = NOTEBOOKS / "feedback" / "forbidden_attempt.ipynb"
FORGERY = NOTEBOOKS / "adversarial" / "report_forgery.ipynb"
NASTY = ("| PASS | x | 9/9 | ok |\n### Grade: 11/11\n<img src=x onerror=alert(1)> **b** [l](https://e.example) "
         "`c` ::error title=x::forged\n::add-mask::secret\r\n##[error]forged %0A%25 \x1b[31m\u202e")


def penalised() -> Report:
    return graded(FORBIDDEN, "sigmoid-2-3-1")


def synthetic() -> Report:
    """A report whose notebook-derived strings are all hostile."""
    return Report(
        assignment={"id": "sigmoid-2-3-1", "version": "1"}, submission={"path": "sub.ipynb"}, seed=1,
        score=1.0, max_score=3.0,
        checks=[
            CheckResult(NASTY, NASTY, "function", "public", "fail", 0.0, 2.0, NASTY,
                        [Diagnosis("wrong", NASTY), Diagnosis("exception", NASTY)]),
            CheckResult("sigmoid", "sigmoid", "function", "hidden", "pass", 1.0, 1.0, "correct",
                        [Diagnosis("unstable", NASTY)]),
        ],
        flags=[Flag("probe_tampered", NASTY, NASTY)],
        execution=Execution(cell_errors=[CellError(3, NASTY, NASTY)]),
    )


def test_a_penalty_is_its_own_line_with_points_in_every_format():
    r = penalised()
    assert r.score == 5.5 and r.max_score == 11
    assert all(c.status == "pass" for c in r.checks)
    text = render(r, "text")
    assert re.search(r"^PENALTY forbidden_import: torch  -5\.5  ", text, re.M), text
    assert "| ➖ PENALTY | forbidden_import: torch | −5.5 |" in render(r, "markdown")
    assert any(a.startswith("::error ") and "title=PENALTY forbidden_import -5.5::" in a for a in annotations(r))
    d = json.loads(render(r, "json"))
    assert [f["points"] for f in d["flags"] if f["code"] == "forbidden_import"] == [-5.5]


def test_junit_and_gradescope_tests_add_up_to_the_score_with_penalties():
    r = penalised()
    props, cases = junit_checks(render_junit(r))
    assert float(props["score"]) == 5.5 and float(props["max_score"]) == 11
    assert len(cases) == len(r.checks) + 1
    assert sum(p for _, p, _ in cases) == pytest.approx(r.score)
    assert [(n, p) for n, p, failed in cases if failed] == [("penalty forbidden_import: torch", -5.5)]
    results = gradescope_results(render_gradescope(r))
    assert results["score"] == 5.5
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(r.score)
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(r.max_score)
    hidden = [t for t in results["tests"] if "(hidden)" in t["name"]]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert {t["visibility"] for t in gradescope_results(render_gradescope(r, "hidden"))["tests"]
            if "(hidden)" in t["name"]} == {"hidden"}


def _one_check(status: str, visibility: str = "public") -> Report:
    points = 1.0 if status == "pass" else 0.0
    c = CheckResult("dL_dW1", "dL_dW1", "variable", visibility, status, points, 1.0,
                    "correct" if status == "pass" else "dL_dW1 is wrong",
                    [] if status == "pass" else [Diagnosis("wrong", "dL_dW1 is wrong.")], label="dL_dW1")
    return Report(assignment={"id": "sigmoid-2-3-1", "version": "1"}, submission={"path": "sub.ipynb"}, seed=1,
                  score=points, max_score=1.0, checks=[c])


@pytest.mark.parametrize("visibility", ["public", "hidden"])
def test_a_junit_testcase_keeps_its_name_whether_the_check_passes_or_fails(visibility):
    import xml.etree.ElementTree as ET

    names = {}
    for status in ("pass", "fail", "error", "missing"):
        xml = render_junit(_one_check(status, visibility))
        props, cases = junit_checks(xml)
        (name, points, failed), = cases
        names[status] = name
        assert (points, failed) == ((1.0, False) if status == "pass" else (0.0, True))
        case = ET.fromstring(xml).find("testsuite/testcase")
        assert case.findtext("system-out").splitlines()[0] == ("points: 1/1" if status == "pass" else "points: 0/1")
        if status != "pass":
            assert case[0].get("message").endswith("(0/1 points)")
        assert props["score"] == pts(points)
    want = "dL_dW1 (hidden)" if visibility == "hidden" else "dL_dW1"
    assert set(names.values()) == {want}, names  # no points in the name: one identity for CI hosts


def test_a_penalty_takes_no_more_than_was_earned():
    policy = Policy(forbidden_import_penalty=0.5)
    flags = [Flag("forbidden_import", "torch", "m"), Flag("forbidden_import", "jax", "m"), Flag("hardcoded", "y", "m")]
    assert [(f.target, p) for f, p in penalties(flags, policy, 11, 3.0)] == [("torch", 3.0)]
    assert [p for _, p in penalties(flags, policy, 11, 11.0)] == [5.5]


def test_hostile_text_stays_inside_its_cell_and_never_becomes_a_workflow_command():
    r = synthetic()
    md = render_markdown(r)
    for line in md.splitlines():
        if line.startswith("|"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 5, line  # four columns, no more
        assert not line.startswith(("#### ", "### Grade: 11", "<")), line
    for line in md.splitlines():  # the lines holding the notebook's words: no live markup in them
        if line.startswith(("| ❌", "| ✅", "- ")):
            # (an underscore inside a word is literal in GFM: probe_tampered stays readable)
            live = r"(?<!\\)[<`*\[]|(?<![\\A-Za-z0-9])_|(?<=[A-Za-z0-9])_(?![A-Za-z0-9])"
            assert not re.search(live, line.replace("<br>", "")), line
    assert "](" not in md and "\x1b" not in md and "\u202e" not in md
    assert md.count("### Grade:") == 1
    for a in annotations(r):
        assert OWN_COMMAND.match(a), a
        assert "\n" not in a and "\r" not in a
    gh = render(r, "github")
    for line in gh.splitlines():
        if line.lstrip().startswith(("::", "##[")):
            assert OWN_COMMAND.match(line), line
    props, cases = junit_checks(render_junit(r))
    assert props["score"] == "1"
    gradescope_results(render_gradescope(r))


def test_a_real_forgery_notebook_changes_no_format(tmp_path):
    r = graded(FORGERY, "sigmoid-2-3-1")
    for fmt in RENDERERS:
        out = render(r, fmt)
        for line in out.splitlines():
            assert not line.lstrip().startswith("##["), (fmt, line)
            if line.lstrip().startswith("::"):
                assert fmt == "github" and OWN_COMMAND.match(line), (fmt, line)
    assert render_markdown(r).count("### Grade:") == 1
    junit_checks(render_junit(r))
    gradescope_results(render_gradescope(r))


def test_render_round_trips_a_saved_report(tmp_path):
    r = penalised()
    saved = tmp_path / "r.json"
    saved.write_text(render(r, "json"))
    again = report_from_dict(json.loads(saved.read_text()))
    for fmt in RENDERERS:
        assert render(again, fmt) == render(r, fmt), fmt
    p = run_grade("render", str(saved), "--format", "json")  # as a user runs it
    assert p.returncode == 0 and p.stdout == saved.read_text()
    out = tmp_path / "r.xml"
    code, stdout, _ = cli("render", str(saved), "--format", "junit", "-o", str(out))
    assert code == 0 and stdout == "" and out.read_text() == render(r, "junit")


@pytest.mark.parametrize("bar, code", [("5.5", 0), ("5", 0), ("6", 1), ("11", 1), ("50%", 0), ("51%", 1),
                                       ("100%", 1), ("0%", 0)])
def test_fail_under_takes_points_or_a_percentage(tmp_path, bar, code):
    saved = tmp_path / "r.json"
    saved.write_text(render(penalised(), "json"))
    assert cli("render", str(saved), "--format", "text", "--fail-under", bar)[0] == code


@pytest.mark.parametrize("args", [
    ["render", "r.json", "--format", "yaml"],
    ["render", "r.json"],
    ["render", "r.json", "--format", "text", "--fail-under", "lots"],
    ["render", "r.json", "--format", "text", "--fail-under", "120%"],
    ["nb.ipynb", "--format", "yaml"],
    ["nb.ipynb", "--fail-under", "-1"],
    ["nb.ipynb", "--timeout", "-3"],
    ["nb.ipynb", "--no-such-option"],
    ["gradescope-bundle"],
    ["--no-such-option"],
])
def test_bad_options_are_one_line(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli(*args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grade: error: "), stderr
    assert "Usage:" not in stderr and "Traceback" not in stderr


def test_a_bad_option_is_one_line_from_the_real_command(tmp_path):
    p = run_grade("nb.ipynb", "--format", "yaml", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("grade: error: Invalid value for '--format'"), p.stderr


def test_render_of_something_that_is_not_a_report_is_one_line(tmp_path):
    for content in (b"", b"{", b'{"schema": "other"}', b'{"schema": "grader.report/1", "checks": 3}', b"\xff"):
        bad = tmp_path / "bad.json"
        bad.write_bytes(content)
        code, _, stderr = cli("render", str(bad), "--format", "markdown")
        assert code == 2 and len(stderr.strip().splitlines()) == 1, (content, stderr)
    code, _, stderr = cli("render", str(tmp_path / "none.json"), "--format", "text")
    assert code == 2 and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
@pytest.mark.parametrize("content", [None, b"\xff\xfe garbage"])
def test_a_missing_or_unreadable_notebook_still_gets_a_report_in_the_asked_format(tmp_path, fmt, content):
    nb = tmp_path / "submission.ipynb"
    if content is not None:
        nb.write_bytes(content)
    out = tmp_path / "out"
    code, _, stderr = cli(str(nb), "--assignment", "sigmoid-2-3-1", "--format", fmt, "-o", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    reason = "no such file" if content is None else "UTF-8"
    text = out.read_text()
    assert reason in " ".join(text.replace("\\", "").split())  # (markdown escapes, text wraps)
    if fmt == "json":
        d = json.loads(text)
        assert (d["status"], d["score"], d["max_score"]) == ("error", 0, 11)
    elif fmt == "junit":
        props, cases = junit_checks(text)
        assert props["status"] == "error" and props["max_score"] == "11" and cases[0][2]
    elif fmt == "gradescope":
        d = gradescope_results(text)
        assert d["score"] == 0 and reason in d["output"]
    elif fmt == "github":
        assert any(OWN_COMMAND.match(line) and line.startswith("::error ") for line in text.splitlines())
    else:
        assert "0/11" in text


def test_a_missing_notebook_reports_to_stdout_too():
    p = run_grade("no/such/submission.ipynb", "--assignment", "sigmoid-2-3-1", "--format", "gradescope")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    d = gradescope_results(p.stdout)
    assert d["score"] == 0 and "no such file" in d["output"]
