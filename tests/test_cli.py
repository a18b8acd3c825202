"""The `grade` command as a user runs it: exit codes, formats, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ASSIGNMENTS, NOTEBOOKS, ROOT

SOLUTION = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_json_report_follows_the_schema_and_goes_to_a_file(tmp_path):
    out = tmp_path / "reports" / "r.json"
    r = run(str(SOLUTION), "--format", "json", "--output", str(out), "--seed", "7")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    d = json.loads(out.read_text())
    assert d["schema"] == "grader.report/1"
    assert set(d) >= {"schema", "assignment", "submission", "seed", "score", "max_score", "status",
                      "duration_s", "execution", "checks", "flags"}
    assert d["assignment"]["id"] == "sigmoid-2-3-1" and len(d["assignment"]["spec_sha256"]) == 64
    assert len(d["submission"]["sha256"]) == 64
    assert d["seed"] == 7 and d["status"] == "graded" and d["score"] == d["max_score"]
    assert set(d["execution"]) >= {"cell_errors", "timed_out", "kernel_died"}
    check = d["checks"][0]
    assert set(check) >= {"id", "target", "kind", "visibility", "status", "points", "max_points",
                          "message", "diagnosis", "detail"}


def test_text_output_has_a_line_per_check_and_the_total():
    r = run(str(NOTEBOOKS / "sigmoid-2-3-1" / "sign_error.ipynb"), "--assignment", "sigmoid-2-3-1", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "FAIL gradients.W1 (hidden)" in r.stdout
    assert "PASS forward (hidden)" in r.stdout
    assert "Score: 5/11" in r.stdout


def test_fail_under_exits_one_below_the_bar_and_zero_at_it():
    nb = str(NOTEBOOKS / "sigmoid-2-3-1" / "no_gradients.ipynb")
    assert run(nb, "--fail-under", "6", "--seed", "1").returncode == 1
    assert run(nb, "--fail-under", "5", "--seed", "1").returncode == 0


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"this is not json", "not valid JSON"),
        (b'{"hello": "world"}', "not a notebook"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
    ],
)
def test_unusable_files_exit_two_with_one_line(tmp_path, content, expected):
    bad = tmp_path / "bad.ipynb"
    bad.write_bytes(content)
    r = run(str(bad), "--assignment", "sigmoid-2-3-1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_missing_path_and_directory_exit_two(tmp_path):
    for target in (tmp_path / "nope.ipynb", tmp_path):
        r = run(str(target), "--assignment", "sigmoid-2-3-1")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_unknown_assignment_exits_two_listing_the_known_ids():
    r = run(str(NOTEBOOKS / "sigmoid-2-3-1" / "seed_style.ipynb"))  # no metadata, no --assignment
    assert r.returncode == 2
    assert "sigmoid-2-3-1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run(str(SOLUTION), "--assignment", "no-such-assignment")
    assert r.returncode == 2 and "known assignments" in r.stderr and "sigmoid-2-3-1" in r.stderr


def test_bad_option_exits_two():
    assert run(str(SOLUTION), "--format", "yaml").returncode == 2
    assert run(str(SOLUTION), "--timeout", "-3").returncode == 2


def test_list_shows_assignments_with_points():
    r = run("list")
    assert r.returncode == 0
    assert any(line.startswith("sigmoid-2-3-1") and "11 pts" in line for line in r.stdout.splitlines())


def test_isolation_level_can_be_chosen_and_is_reported(tmp_path):
    out = tmp_path / "r.json"
    r = run(str(SOLUTION), "--isolation", "process", "--format", "json", "-o", str(out), "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["execution"]["isolation"]["level"] == "process"
    text = run(str(SOLUTION), "--isolation", "process", "--seed", "2").stdout
    assert "isolation level process" in text
