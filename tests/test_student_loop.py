"""Feedback a student can act on: raised cells, reproducible public checks, labels, narrow
terminals with colour, and grading some checks only (`--check`, `--public`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import grader.grading.grade as grade_module
import grader.plan.checks as plan_module
from grader.assignment.tables import Check
from grader.judging.labels import check_labels
from grader.render import RENDERERS
from tests.conftest import ASSIGNMENTS, NOTEBOOKS, ROOT, graded

HALF_DONE = NOTEBOOKS / "student" / "half_done.ipynb"  # sigmoid-2-3-1, worked on up to the forward pass
TANH_STARTER = ASSIGNMENTS / "tanh-softmax-gaussians" / "starter.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FORMATS = ("text", "markdown", "github", "junit", "gradescope")


def _all_formats(report) -> dict[str, str]:
    return {f: RENDERERS[f](report) for f in FORMATS}


# ------------------------------------------------------------------ a cell that raised


def test_a_variable_whose_cell_raised_is_reported_with_that_cell_and_exception():
    r = graded(HALF_DONE, seed=5)
    y = r.check("y")
    assert y.status == "error" and y.codes == ["exception"]
    assert "cell 6, which defines it, raised NotImplementedError" in y.message
    grads = r.check("dL_dW1")
    assert grads.codes == ["exception"]
    assert "cell 7, which defines it, raised NameError: name 'y' is not defined" in grads.message
    for c in (y, grads, r.check("dL_dW2")):  # not sent looking for a naming problem
        text = " ".join([c.message, *(d.message for d in c.diagnosis)])
        assert "no variable named" not in text and "defines no variable" not in text


def test_a_missing_name_no_cell_tried_to_define_is_still_missing():
    r = graded(HALF_DONE, seed=5)
    assert r.check("gradients.W1").status == "missing"  # no cell defines gradients at all


# ------------------------------------------------------------------ empty exception messages


def test_an_empty_exception_message_leaves_no_trailing_colon_in_any_format():
    r = graded(HALF_DONE, seed=5)
    assert r.check("forward").message.startswith("forward raised NotImplementedError")
    starter = graded(ASSIGNMENTS / "sigmoid-2-3-1" / "starter.ipynb", seed=5)
    assert starter.check("sigmoid").message.startswith("sigmoid raised NotImplementedError (")
    for report in (r, starter):
        for fmt, text in _all_formats(report).items():
            assert "NotImplementedError:" not in text, fmt
            assert "NotImplementedError" in text, fmt
    assert "cell 6: NotImplementedError\n" in RENDERERS["text"](r)


# ------------------------------------------------------------------ public checks reproduce


def test_a_failed_public_check_gives_a_call_that_reproduces_what_the_grader_got():
    r = graded(HALF_DONE, seed=5)
    c = r.check("sigmoid_derivative")
    assert c.status == "fail"
    call = c.detail["call"]
    assert call.startswith("sigmoid_derivative(np.array([") and "\n" not in call

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    def sigmoid_derivative(a):  # the notebook's own (wrong) function
        return sigmoid(a) * (1 + sigmoid(a))

    got = eval(call, {"np": np, "sigmoid_derivative": sigmoid_derivative})  # noqa: S307 (the grader's own text)
    assert np.allclose(got, np.array(c.detail["got"]), rtol=1e-6)
    for fmt, text in _all_formats(r).items():
        assert "try: sigmoid_derivative(np.array([" in text.replace("\\", ""), fmt


def test_hidden_checks_never_show_a_call_or_inputs():
    for report in (graded(HALF_DONE, seed=5), graded(TANH_STARTER, seed=5)):
        hidden = [c for c in report.checks if c.visibility == "hidden"]
        assert hidden and all(c.status != "pass" for c in hidden)
        for c in hidden:
            assert "call" not in c.detail and "expected" not in c.detail and "got" not in c.detail
        public_calls = sum("call" in c.detail for c in report.checks if c.status != "pass")
        for fmt, text in _all_formats(report).items():
            copies = 2 if fmt in ("github", "junit") else 1  # (these also carry the text report)
            assert text.replace("\\", "").count("try:") == copies * public_calls, fmt


def test_a_public_check_that_raised_also_shows_its_call():
    starter = graded(TANH_STARTER, seed=5)
    forward = starter.check("forward_given")
    assert forward.status == "error" and forward.detail["call"].startswith("forward(np.array([[")


# ------------------------------------------------------------------ labels


def test_checks_on_the_same_function_have_distinct_labels_in_every_format():
    r = graded(TANH_STARTER, seed=5)
    labels = [c.label for c in r.checks]
    assert len(set(labels)) == len(labels) and all(labels)
    assert r.check("forward_given").label == "forward on the given sample"
    assert r.check("forward").label == "forward on random batches"
    for fmt, text in _all_formats(r).items():
        plain = text.replace("\\", "")
        assert "forward on the given sample" in plain and "forward on random batches" in plain, fmt
    assert json.loads(RENDERERS["json"](r))["checks"][0]["label"] == "forward on the given sample"


def test_default_labels_tell_apart_checks_the_spec_does_not_label():
    def mk(**kw):
        return Check(reference="f", **kw)

    checks = [mk(target="update", inputs="step"), mk(id="update_again", target="update", inputs="step"),
              mk(id="update_big", target="update", inputs="big"), mk(target="sigmoid", inputs="a"),
              mk(id="x1", target="x", inputs="a", label="same"), mk(id="x2", target="x", inputs="a", label="same")]
    labels = check_labels(checks)
    assert labels["sigmoid"] == "sigmoid"
    assert labels["update_big"] == "update on big"
    assert len(set(labels.values())) == len(checks)
    assert labels["x1"] != labels["x2"] and labels["x1"].startswith("same")


# ------------------------------------------------------------------ --check and --public


def test_public_only_grades_the_public_checks_and_draws_no_hidden_inputs(monkeypatch):
    planned: list[str] = []
    real = plan_module.plan_check

    def spy(asg, reference, check, seed):
        planned.append(check.id)
        return real(asg, reference, check, seed)

    monkeypatch.setattr(plan_module, "plan_check", spy)
    r = grade_module.grade_notebook(HALF_DONE, seed=5, public_only=True)
    assert planned == ["sigmoid", "sigmoid_derivative", "y", "dL_dW1", "dL_dW2"]
    assert {c.visibility for c in r.checks} == {"public"}
    assert r.max_score == 5 and r.selection == {"checks": [], "public_only": True, "full_max_score": 11}
    text = RENDERERS["text"](r)
    assert "(partial: public checks only; the full grading is out of 11)" in text
    assert text.rstrip("\n").splitlines()[-1] == "1 passed, 4 failed · 1/5 (partial)"
    assert "(hidden)" not in text
    for fmt in ("markdown", "github", "junit", "gradescope"):
        assert "1/5 (partial: some checks only)" in RENDERERS[fmt](r), fmt


def test_one_check_grades_that_check_only(monkeypatch):
    planned: list[str] = []
    real = plan_module.plan_check
    monkeypatch.setattr(plan_module, "plan_check",
                        lambda asg, ref, check, seed: planned.append(check.id) or real(asg, ref, check, seed))
    r = grade_module.grade_notebook(HALF_DONE, seed=5, checks=["sigmoid_derivative"])
    assert planned == ["sigmoid_derivative"]
    assert [c.id for c in r.checks] == ["sigmoid_derivative"] and r.max_score == 1
    # the same inputs as in a full grading with that seed: a partial run reproduces the full one
    assert r.check("sigmoid_derivative").detail["call"] == graded(HALF_DONE, seed=5).check("sigmoid_derivative").detail["call"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=full)


def test_check_and_public_on_the_command_line():
    r = _cli(str(HALF_DONE), "--check", "sigmoid", "--check", "y", "--format", "json", "--seed", "5")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [c["id"] for c in d["checks"]] == ["sigmoid", "y"]
    assert d["selection"] == {"checks": ["sigmoid", "y"], "public_only": False, "full_max_score": 11}
    bad = _cli(str(HALF_DONE), "--check", "sigmoidd", "--format", "json")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "no check named 'sigmoidd'" in bad.stderr and "Traceback" not in bad.stderr
    hidden_only = _cli(str(HALF_DONE), "--check", "forward", "--public")
    assert hidden_only.returncode == 2 and "hidden inputs only" in hidden_only.stderr


def test_a_full_grading_has_no_selection_in_its_report():
    r = graded(HALF_DONE, seed=5)
    assert r.selection is None and "selection" not in r.to_dict()
    assert "partial" not in RENDERERS["text"](r)


# ------------------------------------------------------------------ the terminal


@pytest.fixture(scope="module")
def saved_report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "half_done.json"
    path.write_text(RENDERERS["json"](graded(HALF_DONE, seed=5)))
    return path


def test_text_wraps_to_an_80_column_terminal_without_breaking_words(saved_report):
    r = _cli("render", str(saved_report), "--format", "text", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80
    wide = _cli("render", str(saved_report), "--format", "text", env={"COLUMNS": "400"}).stdout
    assert max(len(line) for line in wide.splitlines()) > 80
    assert r.stdout.split() == wide.split()  # the same words: only where lines break changed
    assert all(line.startswith((" ", "PASS", "FAIL", "ERROR", "MISSING", "Notebook:", "Assignment:", "Environment:", "cell ",
                                "Score:", "Ran ", "1 passed")) for line in lines)
    assert lines[-1] == "1 passed, 7 failed · 1/11"


def test_colour_on_a_terminal_respects_no_color_and_force_color(saved_report):
    plain = _cli("render", str(saved_report), "--format", "text", env={"COLUMNS": "80"}).stdout
    assert "\x1b[" not in plain  # not a terminal: no colour
    forced = _cli("render", str(saved_report), "--format", "text", env={"COLUMNS": "80", "FORCE_COLOR": "1"}).stdout
    assert "\x1b[32mPASS\x1b[0m sigmoid" in forced and "\x1b[31mFAIL\x1b[0m sigmoid_derivative" in forced
    assert ANSI.sub("", forced) == plain
    both = _cli("render", str(saved_report), "--format", "text",
                env={"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    assert both == plain
    to_file = saved_report.parent / "out.txt"
    _cli("render", str(saved_report), "--format", "text", "-o", str(to_file), env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in to_file.read_text()  # a file never gets colour


def test_colour_markup_in_notebook_text_stays_inert(saved_report, tmp_path):
    d = json.loads(saved_report.read_text())
    d["checks"][0]["message"] = "[red]PASS[/red] \x1b[32mfake\x1b[0m [link=x]y[/link]"
    p = tmp_path / "r.json"
    p.write_text(json.dumps(d))
    out = _cli("render", str(p), "--format", "text", env={"FORCE_COLOR": "1", "COLUMNS": "200"}).stdout
    line = next(x for x in out.splitlines() if "sigmoid  1/1" in x)
    assert "[red]PASS[/red]" in ANSI.sub("", line) and "fake" in line and "\x1b[32mfake" not in line

