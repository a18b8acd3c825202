"""`grade batch` end to end: real notebooks, real kernels, a real SQLite gradebook, real Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.batch.gradebook import Gradebook
from grader.batch.run import grade_batch
from tests.batch_support import (
    ASSIGNMENT,
    KINDS,
    canvas_name,
    make_canvas_zip,
    make_flat,
    make_moodle,
    notebook_bytes,
    roster,
)
from tests.chromium_support import chromium, load

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ["--timeout", "8", "--total-timeout", "60"]


def grade(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The `grade` command in a subprocess, as an instructor runs it (not on a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def current(db: Path) -> dict[str, tuple]:
    """student -> (status, score, reason, seed, checks) of the current runs."""
    book = Gradebook(db, create=False)
    try:
        return {r.student: (r.status, r.score, r.reason, r.seed,
                            [(c["id"], c["status"], c["points"], [d["code"] for d in c["diagnosis"]])
                             for c in r.report["checks"]]) for r in book.current()}
    finally:
        book.close()


def run_count(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM runs").fetchone()[0]


def batch_with_a_first_result(args: list[str], db: Path) -> subprocess.Popen[str]:
    """`grade batch ARGS` started in its own process, once `db` holds its first result (or it ended)."""
    proc = subprocess.Popen([sys.executable, "-c", "from grader.cli import main; main()", "batch", *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            if db.exists() and run_count(db) >= 1:
                break
        except sqlite3.DatabaseError:
            continue
    return proc


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    """A Canvas zip of one student of each kind, graded once with reports."""
    d = tmp_path_factory.mktemp("canvas")
    students = roster(len(KINDS))
    z = make_canvas_zip(d / "submissions.zip", students)
    db, out = d / "gradebook.sqlite", d / "out"
    r = grade("batch", str(z), "--assignment", ASSIGNMENT, "--db", str(db), "--out", str(out),
              "--jobs", "2", "--seed", "11", *LIMITS)
    ids = {kind: canvas_name(s).split("_")[1] for s, kind in students}
    return {"dir": d, "zip": z, "db": db, "out": out, "run": r, "ids": ids}


def test_each_kind_of_submission_gets_its_row(canvas) -> None:
    r, ids = canvas["run"], canvas["ids"]
    assert r.returncode == 1, r.stderr  # some submissions errored: the exit code says so
    assert f"batch: {len(KINDS)} students: 5 graded, 2 errors, 1 timeouts" in r.stdout
    rows = current(canvas["db"])
    assert set(rows) == set(ids.values())
    by_kind = {kind: rows[i] for kind, i in ids.items()}
    assert by_kind["correct"][:2] == ("graded", 11.0)
    assert by_kind["starter"][:2] == ("graded", 0.0)
    assert by_kind["sign"][0] == "graded" and by_kind["sign"][1] < 11
    assert any("sign_flip" in codes for *_, codes in by_kind["sign"][4])
    assert by_kind["scaled"][0] == "graded" and by_kind["scaled"][1] < 11
    assert by_kind["forbidden"][0] == "graded" and by_kind["forbidden"][1] == 11 - 5.5
    assert by_kind["broken"][0] == "error" and "not a notebook" in by_kind["broken"][2]
    assert "/tmp/" not in by_kind["broken"][2]  # the instructor's file name, not a grading folder
    assert by_kind["hostile"][0] == "error" and "kernel" in by_kind["hostile"][2]
    assert by_kind["loop"][0] == "timeout" and "longer than 8 s" in by_kind["loop"][2]


def test_plain_progress_when_not_on_a_terminal(canvas) -> None:
    err = canvas["run"].stderr
    assert "\x1b[" not in err  # no live bar, no escape codes in a CI log
    lines = [line for line in err.splitlines() if line.startswith("batch: ")]
    assert lines[0] == f"batch: {len(KINDS)} to grade"
    assert lines[-1].startswith(f"batch: {len(KINDS)}/{len(KINDS)}  graded 5  errors 2  timeouts 1")
    assert len(lines) <= 12


def test_grades_csv(canvas) -> None:
    table = list(csv.DictReader(io.StringIO((canvas["out"] / "grades.csv").read_text())))
    assert sorted(r["student_id"] for r in table) == sorted(canvas["ids"].values())
    cols = list(table[0])
    assert cols[:8] == ["student_id", "name", "total", "max_total", "penalties", "late_penalty", "override", "final"]
    assert cols[-9:] == ["status", "reason", "submitted", "lateness", "flags", "similar_to", "file", "sha256", "seed"]
    assert {"sigmoid", "gradients.W1", "dL_dW2"} <= set(cols)
    forbidden = next(r for r in table if r["student_id"] == canvas["ids"]["forbidden"])
    assert forbidden["penalties"] == "-5.5" and forbidden["total"] == "5.5"
    assert forbidden["file"] == canvas_name("s007")
    points = [float(forbidden[c]) for c in cols[8:-9]]
    assert sum(points) + float(forbidden["penalties"]) == float(forbidden["total"])
    assert forbidden["name"] == "s007name"


def test_results_jsonl_and_feedback(canvas) -> None:
    lines = (canvas["out"] / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(KINDS)
    reports = [json.loads(line) for line in lines]
    assert all(r["schema"] == "grader.report/1" for r in reports)
    for rep in reports:
        for c in rep["checks"]:
            if c["visibility"] == "hidden":  # (how many trials, never what they were)
                assert not {"expected", "got", "inputs", "values"} & set(c["detail"])
    feedback = canvas["out"] / "feedback"
    for student in canvas["ids"].values():
        md = (feedback / f"{student}.md").read_text()
        page = (feedback / f"{student}.html").read_text()
        assert "Grade:" in md and "Grade:" in page
    hostile = (feedback / f"{canvas['ids']['hostile']}.md").read_text()
    assert "PASS everything" not in hostile  # what the notebook printed is not feedback


def test_report_html_is_self_contained(canvas) -> None:
    page = (canvas["out"] / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert 'id="diagnosis-table"' in page and "sign_flip" in page
    assert canvas["ids"]["sign"] in page.split('id="diagnosis-table"')[1]  # who made the mistake
    problems = page.split('id="problem-table"')[1].split("</table>")[0]
    assert canvas["ids"]["loop"] in problems and canvas["ids"]["broken"] in problems


def test_report_html_renders_in_chromium(canvas, tmp_path: Path) -> None:
    assert chromium() is not None, "chromium is not installed (bash .ci/setup installs it)"
    shot = tmp_path / "report.png"
    checks = {"histogram": "document.getElementById('histogram').naturalWidth",
              "plots": "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length",
              "tables": "document.querySelectorAll('table').length",
              "students": "document.querySelectorAll('#students-table tbody tr').length",
              "title": "document.querySelector('h1').textContent"}
    got = load((canvas["out"] / "report.html").as_uri(), checks, str(shot))
    assert got["errors"] == []
    v = got["values"]
    assert v["histogram"] > 100 and v["plots"] >= 3 and v["tables"] >= 4
    assert v["students"] == len(KINDS) and v["title"] == f"Class report: {ASSIGNMENT}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # The same check catches a page that reaches for the network.
    bad = tmp_path / "bad.html"
    bad.write_text((canvas["out"] / "report.html").read_text().replace(
        "</body>", '<img src="https://cdn.example.com/x.png"></body>'))
    assert load(bad.as_uri(), {})["errors"]


def test_rerun_skips_and_reports_rebuild(canvas, tmp_path: Path) -> None:
    before = run_count(canvas["db"])
    r = grade("batch", str(canvas["zip"]), "--assignment", ASSIGNMENT, "--db", str(canvas["db"]), *LIMITS)
    assert f"(0 graded now, {len(KINDS)} already in" in r.stdout
    assert run_count(canvas["db"]) == before and r.returncode == 1
    out = tmp_path / "again"
    assert grade("report", "--db", str(canvas["db"]), "--out", str(out)).returncode == 0
    assert (out / "grades.csv").read_text() == (canvas["out"] / "grades.csv").read_text()
    assert (out / "results.jsonl").read_text() == (canvas["out"] / "results.jsonl").read_text()
    exported = grade("export", "--db", str(canvas["db"]), "--format", "csv")
    assert exported.stdout == (canvas["out"] / "grades.csv").read_text()
    exported = grade("export", "--db", str(canvas["db"]), "--format", "jsonl")
    assert exported.stdout == (canvas["out"] / "results.jsonl").read_text()


def test_bad_input_is_one_line(canvas, tmp_path: Path) -> None:
    afile = tmp_path / "afile"  # a file where the gradebook's folder would be
    afile.write_text("hi")
    foreign = tmp_path / "other.sqlite"  # another program's database: never written into
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE x (y)")
    newer = tmp_path / "newer.sqlite"  # another version's gradebook: never written into
    shutil.copy(canvas["db"], newer)
    with sqlite3.connect(newer) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    bad_seed = tmp_path / "bad_seed.sqlite"
    shutil.copy(canvas["db"], bad_seed)
    with sqlite3.connect(bad_seed) as c:
        c.execute("UPDATE meta SET value = 'abc' WHERE key = 'batch_seed'")
    cases = [
        ("batch", str(tmp_path / "nope"), "-a", ASSIGNMENT, "--db", str(tmp_path / "x.sqlite")),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--student-regex", "(", "--db", str(tmp_path / "y.sqlite")),
        ("batch", str(canvas["zip"]), "-a", "no-such-assignment", "--db", str(tmp_path / "z.sqlite")),
        ("batch", str(canvas["zip"]), "-a", "sigmoid-2-2-2", "--db", str(canvas["db"])),
        ("report", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "o")),
        ("export", "--db", str(tmp_path / "missing.sqlite"), "--format", "xml"),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--seed", str(2**64), "--db", str(tmp_path / "s.sqlite")),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--total-timeout", "nan", "--db", str(tmp_path / "t.sqlite")),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--timeout", "inf", "--db", str(tmp_path / "t.sqlite")),
        ("batch", "/dev/null", "-a", ASSIGNMENT, "--db", str(tmp_path / "n.sqlite")),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(afile / "gb.sqlite")),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(foreign)),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(bad_seed)),
        ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(newer)),
    ]
    for args in cases:
        r = grade(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("grade: error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr


def test_a_gradebook_row_it_cannot_read_is_one_line_everywhere(canvas, tmp_path: Path) -> None:
    db = tmp_path / "damaged.sqlite"
    shutil.copy(canvas["db"], db)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE runs SET report = '{not json' WHERE id = (SELECT min(id) FROM runs WHERE current = 1)")
    for args in (("export", "--db", str(db)), ("export", "--db", str(db), "--format", "jsonl"),
                 ("report", "--db", str(db), "--out", str(tmp_path / "o")),
                 ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(db)),  # (its summary reads rows)
                 ("batch", str(canvas["zip"]), "-a", ASSIGNMENT, "--db", str(db), "--out", str(tmp_path / "o2"))):
        r = grade(*args)
        assert r.returncode == 3, (args, r.stderr)
        assert r.stderr.startswith("grade: internal error: ") and r.stderr.count("\n") == 1, r.stderr


def test_student_folders_carry_their_files(tmp_path: Path) -> None:
    make_moodle(tmp_path / "src", [("s001", "correct"), ("s002", "correct")])
    folders = sorted((tmp_path / "src").iterdir())
    reader = 'open("weights.txt").read()\n'
    for d in folders:
        nb = json.loads((d / "homework.ipynb").read_text())
        nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None,
                               "outputs": [], "source": reader})
        (d / "homework.ipynb").write_text(json.dumps(nb))
    (folders[0] / "weights.txt").write_text("1 2 3")  # only the first student has the file
    (tmp_path / "src" / "Nobody Here_999_assignsubmission_file_").mkdir()
    summary = grade_batch(tmp_path / "src", ASSIGNMENT, tmp_path / "gb.sqlite", jobs=2, seed=3,
                          cell_timeout=10, total_timeout=60)
    assert summary.students == ["501", "502", "999"]
    rows = {r.student: r for r in Gradebook(tmp_path / "gb.sqlite", create=False).current()}
    assert rows["501"].report["execution"]["cell_errors"] == []
    assert [e["ename"] for e in rows["502"].report["execution"]["cell_errors"]] == ["FileNotFoundError"]
    assert rows["999"].status == "error" and "no notebook" in rows["999"].reason
    assert rows["501"].name == "Student s001" and rows["501"].path.endswith("/homework.ipynb")


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    students = [(f"k{i:02d}", kind) for i, kind in enumerate(["correct", "sign", "scaled", "starter"] * 2)]
    src = tmp_path / "src"
    src.mkdir()
    for s, kind in students:
        (src / f"{s}.ipynb").write_bytes(notebook_bytes(kind, s))
    db = tmp_path / "gb.sqlite"
    # the course first: a roster (with a student who hands in nothing) and an override
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name\n" + "".join(f"{s},Student {s}\n" for s, _ in students) + "k99,Nobody\n")
    assert grade("roster", "import", str(roster), "--db", str(db)).returncode == 0
    assert grade("override", "k01", "--points", "7", "--comment", "agreed", "--db", str(db)).returncode == 0
    args = [sys.executable, "-c", "from grader.cli import main; main()", "batch", str(src), "-a", ASSIGNMENT,
            "--db", str(db), "--jobs", "2", "--seed", "5", *LIMITS]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    recorded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                recorded = run_count(db)
            except sqlite3.DatabaseError:  # (the schema is still being made)
                continue
            if recorded >= 2:
                break
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = run_count(db)
    assert 2 <= recorded < len(students)
    r = grade("batch", str(src), "-a", ASSIGNMENT, "--db", str(db), "--jobs", "2", *LIMITS)
    assert r.returncode == 0, r.stderr
    assert f"({len(students) - recorded} graded now, {recorded} already in" in r.stdout
    rows = current(db)
    assert sorted(rows) == sorted(s for s, _ in students)  # none lost
    assert run_count(db) == len(students)  # none graded twice
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT max(n) FROM (SELECT count(*) n FROM runs WHERE current = 1"
                         " GROUP BY submission_id)").fetchone()[0] == 1
    exported = list(csv.DictReader(io.StringIO(grade("export", "--db", str(db)).stdout)))
    assert sorted(r["student_id"] for r in exported) == sorted([s for s, _ in students] + ["k99"])
    by = {r["student_id"]: r for r in exported}
    assert by["k99"]["status"] == "missing" and by["k01"]["final"] == "7" and "agreed" in by["k01"]["override"]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM overrides").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM roster").fetchone()[0] == len(students) + 1
    # The batch seed was kept: grading everything again reproduces every score.
    again = grade("batch", str(src), "-a", ASSIGNMENT, "--db", str(db), "--jobs", "2", "--regrade", *LIMITS)
    assert again.returncode == 0 and f"({len(students)} graded now, 0 already" in again.stdout
    assert current(db) == rows and run_count(db) == 2 * len(students)


def test_sigterm_stops_cleanly_and_keeps_what_was_graded(tmp_path: Path) -> None:
    src = make_flat(tmp_path / "src", [(f"t{i}", "correct") for i in range(4)])
    db = tmp_path / "gb.sqlite"
    proc = batch_with_a_first_result([str(src), "-a", ASSIGNMENT, "--db", str(db), "--jobs", "1", *LIMITS], db)
    assert proc.poll() is None, "the batch finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; what was graded is in" in err and "Traceback" not in err
    assert 1 <= run_count(db) < 4 and all(v[0] == "graded" for v in current(db).values())


def test_names_that_are_not_utf8_are_graded_under_escaped_ids(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "alice.ipynb").write_bytes(notebook_bytes("starter", "alice"))
    (src / os.fsdecode(b"\xff\xfe.ipynb")).write_bytes(notebook_bytes("starter", "x"))
    s = grade_batch(src, ASSIGNMENT, tmp_path / "gb.sqlite", jobs=2, seed=1, cell_timeout=10, total_timeout=60)
    assert (s.students, s.graded_now) == (["\\xff\\xfe", "alice"], 2)
    rows = current(tmp_path / "gb.sqlite")
    assert rows["\\xff\\xfe"][:2] == rows["alice"][:2] == ("graded", 0.0)


def test_a_batch_run_inside_its_source_leaves_its_gradebook_and_reports_out(tmp_path: Path) -> None:
    src = make_flat(tmp_path / "src", [("alice", "starter")])
    args = ("batch", ".", "-a", ASSIGNMENT, "--out", "reports", "--seed", "3", *LIMITS)
    first = grade(*args, cwd=src)  # the gradebook (default: ./gradebook.sqlite) and reports in SOURCE
    again = grade(*args, cwd=src)
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    assert "1 students: 1 graded" in again.stdout and "0 graded now, 1 already" in again.stdout
    report = json.loads((src / "reports" / "results.jsonl").read_text().splitlines()[0])
    assert report["submission"]["path"] == "alice.ipynb"


def test_flat_folder_and_api(tmp_path: Path) -> None:
    make_flat(tmp_path / "src", [("alice", "correct"), ("bob", "sign")])
    s = grade_batch(tmp_path / "src", ASSIGNMENT, tmp_path / "gb.sqlite", jobs=1, seed=1,
                    cell_timeout=10, total_timeout=60)
    assert (s.students, s.graded_now, s.skipped, s.counts) == (["alice", "bob"], 2, 0, {"graded": 2})
