"""Submissions that are not regular files: links to other students' notebooks, to the
assignment's solution or to system files, devices and named pipes.

The grader may run as root. Nothing such a "notebook" points to may be read, hashed or
graded: each is refused in one line (exit 2 for `grade`, one error row in a batch, score 0
in the Gradescope results), promptly, with the grader's memory flat.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from grader.batch.run import grade_batch
from grader.errors import SubmissionError
from grader.files import NotRegularFile, copy_regular, read_regular
from grader.submission.notebook import read_submission
from tests.adversarial.helpers import ASSIGNMENT, ROOT, run_grade
from tests.batch_support import notebook_bytes
from tests.ci_support import ci_env, gradescope_results
from tests.ci_support import run_grade as cli_grade

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"
MB = 2**20


def _hostile(folder: Path) -> dict[str, Path]:
    """One of each kind of non-regular notebook, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "solution_link": folder / "solution_link.ipynb",
        "passwd_link": folder / "passwd_link.ipynb",
        "zero_link": folder / "zero_link.ipynb",
        "dangling_link": folder / "dangling_link.ipynb",
        "fifo": folder / "fifo.ipynb",
    }
    made["solution_link"].symlink_to(SOLUTION)
    made["passwd_link"].symlink_to("/etc/passwd")
    made["zero_link"].symlink_to("/dev/zero")
    made["dangling_link"].symlink_to(folder / "nowhere.ipynb")
    os.mkfifo(made["fifo"])
    return made


@pytest.mark.parametrize("kind, says", [
    ("solution_link", "symbolic link"), ("passwd_link", "symbolic link"), ("zero_link", "symbolic link"),
    ("dangling_link", "symbolic link"), ("fifo", "named pipe"),
])
def test_reading_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str, says: str):
    path = _hostile(tmp_path)[kind]
    with pytest.raises(SubmissionError, match=says):
        read_submission(path)


def test_reading_refuses_a_device_and_a_socket(tmp_path: Path):
    with pytest.raises(SubmissionError, match="is a device"):
        read_submission("/dev/zero")
    import socket

    sock_path = tmp_path / "s.ipynb"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        with pytest.raises(SubmissionError, match="socket"):
            read_submission(sock_path)
    finally:
        s.close()


def test_a_link_through_a_linked_folder_is_read_when_the_file_itself_is_regular(tmp_path: Path):
    """Only the last component must not be a link: a course's folder reached through a link is fine."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "hw.ipynb").write_bytes(SOLUTION.read_bytes())
    (tmp_path / "alias").symlink_to(real)
    assert read_submission(tmp_path / "alias" / "hw.ipynb").nb.cells


def test_reads_and_copies_stop_at_their_limit(tmp_path: Path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (MB + 1))
    with pytest.raises(NotRegularFile, match="over the 1 MB limit"):
        read_regular(big, MB)
    with pytest.raises(NotRegularFile):
        copy_regular(big, tmp_path / "copy.bin", MB)
    assert not (tmp_path / "copy.bin").exists()
    copy_regular(big, tmp_path / "copy.bin", 2 * MB)
    assert (tmp_path / "copy.bin").read_bytes() == big.read_bytes()


@pytest.mark.parametrize("kind", ["solution_link", "zero_link", "fifo"])
def test_grade_refuses_a_link_device_or_pipe_in_one_line_promptly(tmp_path: Path, kind: str):
    path = _hostile(tmp_path / "in")[kind]
    out = tmp_path / "report.json"
    p, peak = run_grade([str(path), "--assignment", ASSIGNMENT, "--format", "json", "-o", str(out)], timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "not a regular file" in p.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["score"] == 0
    assert _sha(SOLUTION) not in out.read_text()  # the linked file was never read, not even hashed
    assert peak < 400 * MB


def test_grade_of_a_device_path_is_refused(tmp_path: Path):
    p, peak = run_grade(["/dev/zero", "--assignment", ASSIGNMENT], timeout=60)
    assert p.returncode == 2 and "is a device" in p.stderr and peak < 400 * MB


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_batch_gives_each_linked_piped_or_device_notebook_one_error_row_and_reads_none(tmp_path: Path):
    src = tmp_path / "class"
    src.mkdir()
    (src / "alice.ipynb").write_bytes(notebook_bytes("sign", "alice"))
    (src / "bob.ipynb").symlink_to(src / "alice.ipynb")  # a classmate's notebook
    (src / "carol.ipynb").symlink_to(SOLUTION)  # the shipped solution
    (src / "dave.ipynb").symlink_to("/etc/passwd")  # a system file
    (src / "erin.ipynb").symlink_to("/dev/zero")
    os.mkfifo(src / "frank.ipynb")
    (src / "data.csv").symlink_to("/etc/shadow")  # a "data file" travelling with everyone
    # per-student folders: one a link to another student's folder
    (src / "gina").mkdir()
    (src / "gina" / "hw.ipynb").write_bytes(notebook_bytes("correct", "gina"))
    (src / "hank").symlink_to(src / "gina")
    db = tmp_path / "gradebook.sqlite"
    summary = grade_batch(src, ASSIGNMENT, db, jobs=2, seed=5)
    with sqlite3.connect(db) as con:
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT s.student, r.status, r.score, r.sha256, r.reason || ' ' || r.report FROM runs r"
            " JOIN submissions s ON s.id = r.submission_id WHERE r.current = 1")}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank"}, rows
    assert rows["alice"][1] < 11 and rows["gina"][1] == 11
    for student in ("bob", "carol", "dave", "erin", "frank", "hank"):
        status, score, sha, report = rows[student]
        assert status == "error" and score == 0, (student, rows[student][:2])
        assert ("symbolic link" in (report or "")) or ("named pipe" in (report or "")), student
    shas = {r[2] for r in rows.values()}
    assert _sha(SOLUTION) not in shas and _sha(Path("/etc/passwd")) not in shas
    assert sorted(summary.students) == sorted(rows) and summary.failed == 6


def test_run_autograder_gives_zero_to_a_link_to_its_own_solution(tmp_path: Path):
    bundle = tmp_path / "autograder.zip"
    p = cli_grade("gradescope-bundle", ASSIGNMENT, "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    root = tmp_path / "autograder"
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(source)
        names = z.namelist()
        for info in z.infolist():
            (source / info.filename).chmod((info.external_attr >> 16) & 0o777)
    # the bundle carries no notebook: there is no solution inside it to point at
    assert not [n for n in names if n.endswith(".ipynb")]
    (root / "submission").mkdir()
    (root / "submission" / "hw.ipynb").symlink_to(SOLUTION)
    p = subprocess.run([str(source / "run_autograder")], cwd=source, env=ci_env(tmp_path, AUTOGRADER_ROOT=str(root)),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    results = gradescope_results((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "symbolic link" in json.dumps(results)


def test_a_class_csv_never_names_a_system_file(tmp_path: Path):
    """grades.csv and results.jsonl from a batch with a linked system file carry no trace of its content."""
    src = tmp_path / "class"
    src.mkdir()
    (src / "dave.ipynb").symlink_to("/etc/passwd")
    out = tmp_path / "out"
    p, _ = run_grade(["batch", str(src), "--assignment", ASSIGNMENT, "--db", str(tmp_path / "g.sqlite"),
                      "--out", str(out)])
    assert p.returncode in (0, 1, 3), p.stdout + p.stderr
    text = (out / "grades.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["student_id"] for r in rows] == ["dave"] and rows[0]["status"] == "error"
    assert _sha(Path("/etc/passwd")) not in text and "root:" not in text


def test_a_course_folder_is_copied_with_its_structure_but_never_through_a_link(tmp_path: Path, monkeypatch):
    from grader.kernels import workspace as ws_module
    from grader.kernels.workspace import make_workspace

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "solution.py").write_text("ANSWER = 42\n")
    student = tmp_path / "student"
    package = student / "cs231n" / "classifiers"
    package.mkdir(parents=True)
    (package / "neural_net.py").write_text("class TwoLayerNet: ...\n")
    (student / "cs231n" / "datasets").mkdir()
    (student / "cs231n" / "datasets" / "batch_1").write_bytes(b"\0" * 64)  # data without a suffix
    (student / "cs231n" / "linked.py").symlink_to(secret / "solution.py")
    (student / "cs231n" / "linked_folder").symlink_to(secret)
    (student / "data").symlink_to(secret)  # a declared folder that is a link: left out whole
    (student / "nb.ipynb").write_text("{}")
    ws = make_workspace(student / "nb.ipynb", folders=["cs231n", "data", "data/inner"])
    try:
        copied = sorted(str(p.relative_to(ws.work)) for p in ws.work.rglob("*") if p.is_file())
        # the structure kept; links, and what they lead to, never
        assert copied == ["cs231n/classifiers/neural_net.py", "cs231n/datasets/batch_1", "nb.ipynb"], copied
        assert not any(p.is_symlink() for p in ws.work.rglob("*"))
    finally:
        ws.cleanup()
    monkeypatch.setattr(ws_module, "FOLDER_MAX_FILES", 1)  # past a bound: the rest left out
    ws = make_workspace(student / "nb.ipynb", folders=["cs231n"])
    try:
        assert len([p for p in (ws.work / "cs231n").rglob("*") if p.is_file()]) == 1
    finally:
        ws.cleanup()
