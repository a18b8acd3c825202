"""The course's model without kernels: rosters, the late policy, overrides, the gradebook's
migration from version 1, similarity and the histogram's bins (real SQLite throughout)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from grader.batch.classview import load
from grader.batch.gradebook import SCHEMA_VERSION, Gradebook
from grader.batch.plots import score_bins
from grader.course import similarity
from grader.course.late import LatePolicy, lateness, parse_time
from grader.course.roster import read_roster
from grader.errors import GraderError
from tests.batch_support import STARTER, notebook_bytes
from tests.test_batch import grade
from tests.test_batch_gradebook import _result

DUE = parse_time("2026-03-01T23:59Z")
HOUR = 3600.0


def test_canvas_roster_skips_points_possible_and_the_test_student(tmp_path: Path) -> None:
    f = tmp_path / "canvas.csv"
    f.write_text("Student,ID,SIS User ID,SIS Login ID,Section,HW1 (12)\n    Points Possible,,,,,10\n"
                 "\"Lovelace, Ada\",101,S1,ada,Sec 1,\n\"Student, Test\",999,,,Sec 1,\n")
    [ada] = read_roster(f)
    assert (ada.id, ada.name, ada.sis_user_id, ada.sis_login_id, ada.section) == ("101", "Lovelace, Ada", "S1", "ada",
                                                                                   "Sec 1")


def test_moodle_worksheet_and_participants_and_plain_csv(tmp_path: Path) -> None:
    ws = tmp_path / "worksheet.csv"
    ws.write_text("Identifier,Full name,Email address,Status,Grade\nParticipant 7,Ada L,ada@x,Submitted,\n")
    assert [(s.id, s.name, s.email) for s in read_roster(ws)] == [("7", "Ada L", "ada@x")]
    parts = tmp_path / "participants.csv"
    parts.write_text("First name,Surname,ID number,Email address\nAda,Lovelace,u1,ada@x\n")
    assert [(s.id, s.name) for s in read_roster(parts)] == [("u1", "Ada Lovelace")]
    plain = tmp_path / "plain.csv"
    plain.write_text("id,name,email,section,submitted\nalice,Alice,a@x,A,2026-03-01T10:00Z\n")
    [alice] = read_roster(plain, "csv")
    assert (alice.id, alice.section, alice.submitted) == ("alice", "A", "2026-03-01T10:00Z")


@pytest.mark.parametrize("text, words", [
    ("id,name\nalice,A\nalice,B\n", "listed twice"),
    ("name,email\nA,a@x\n", "no column id"),
    ("Identifier,Full name\nbob,Bob\n", "is not 'Participant N'"),
    ("", "empty"),
])
def test_a_bad_roster_is_one_clear_error(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "r.csv"
    f.write_text(text)
    with pytest.raises(GraderError, match=words):
        read_roster(f)


def test_a_later_roster_marks_dropped_students_and_keeps_their_results(tmp_path: Path) -> None:
    book = Gradebook(tmp_path / "gb.sqlite")
    book.record(_result("bob", "h1", 3.0))
    (tmp_path / "r1.csv").write_text("id,name\nalice,Alice\nbob,Bob\ncarol,Carol\n")
    (tmp_path / "r2.csv").write_text("id,name\nalice,Alice\ndave,Dave\n")
    assert book.course.import_roster(read_roster(tmp_path / "r1.csv"))["added"] == 3
    counts = book.course.import_roster(read_roster(tmp_path / "r2.csv"))
    assert (counts["added"], counts["dropped"]) == (1, 2)
    grades = {g.student: g for g in load(book).grades}
    assert set(grades) == {"alice", "bob", "dave"}  # carol dropped with nothing handed in: no row
    assert grades["bob"].flags == ["dropped from the roster"] and grades["bob"].final == 3.0
    assert grades["alice"].status == grades["dave"].status == "missing" and grades["alice"].final == 0.0
    assert {s: st for s, (_, st) in book.course.roster().items()} == {
        "alice": "active", "bob": "dropped", "carol": "dropped", "dave": "active"}


@pytest.mark.parametrize("late_h, state, percent", [
    (-1, "on_time", 0), (0.2, "on_time", 0),  # within the 15-minute grace
    (1, "late", 10), (24.1, "late", 20), (100, "late", 50),  # capped at 50%
    (24 * 7 + 1, "no_credit", 100),
])
def test_the_late_policy(late_h: float, state: str, percent: float) -> None:
    p = LatePolicy.parse("10%/day", "15m", "50%", "7d")
    lt = lateness(DUE, DUE + late_h * HOUR, "zip", p, 10.0, 10.0)
    assert lt.state == state and lt.penalty == pytest.approx(percent / 10)


def test_lateness_never_takes_more_than_the_score_and_says_when_the_time_is_unknown() -> None:
    p = LatePolicy.parse("5%/hour")
    assert lateness(DUE, DUE + 30 * HOUR, "", p, 10.0, 1.0).penalty == 1.0
    unknown = lateness(DUE, None, "", p, 10.0, 10.0, marked_late=True)
    assert unknown.state == "unknown" and unknown.penalty == 0 and "marks it late" in unknown.note
    assert lateness(None, DUE, "", p, 10.0, 10.0).state == "none"


@pytest.mark.parametrize("args", [("--penalty", "ten"), ("--cap", "150%"), ("--grace", "soon"),
                                  ("--due", "next monday")])
def test_a_bad_deadline_is_one_line_exit_2(tmp_path: Path, args: tuple[str, str]) -> None:
    r = grade("deadline", "set", *args, "--db", str(tmp_path / "gb.sqlite"))
    assert r.returncode == 2 and r.stderr.startswith("grade: error: ") and r.stderr.count("\n") == 1, r.stderr


def test_overrides_are_checked_kept_as_history_and_withdrawn(tmp_path: Path) -> None:
    db = tmp_path / "gb.sqlite"
    book = Gradebook(db)
    book.record(_result("alice", "h1", 1.0))
    book.close()
    for args, words in ((("alice", "--points", "2"), "needs --comment"),
                        (("alice", "--points", "2", "--excuse", "--comment", "x"), "either --points"),
                        (("nobody", "--points", "2", "--comment", "x"), "no such student"),
                        (("alice", "--check", "nope", "--points", "2", "--comment", "x"), "no such check")):
        r = grade("override", *args, "--db", str(db))
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert grade("override", "alice", "--points", "2", "--comment", "first", "--db", str(db)).returncode == 0
    r = grade("override", "alice", "--points", "2.5", "--comment", "second", "--by", "TA", "--db", str(db))
    assert "automatic: 1" in r.stdout
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*), sum(active) FROM overrides").fetchone() == (2, 1)
    book = Gradebook(db, create=False)
    [g] = load(book).grades
    assert g.final == 2.5 and g.overrides[0].by == "TA"
    book.close()
    assert "withdrawn" in grade("override", "alice", "--clear", "--db", str(db)).stdout
    book = Gradebook(db, create=False)
    assert load(book).grades[0].final == 1.0
    book.close()


V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE submissions (id INTEGER PRIMARY KEY, student TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, submission_id INTEGER NOT NULL REFERENCES submissions(id),
    sha256 TEXT NOT NULL, assignment_id TEXT NOT NULL, spec_sha256 TEXT NOT NULL, grader_version TEXT NOT NULL,
    environment TEXT NOT NULL, batch_seed INTEGER NOT NULL, seed INTEGER NOT NULL, started REAL NOT NULL,
    finished REAL NOT NULL, duration_s REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('graded', 'error', 'timeout')), reason TEXT NOT NULL DEFAULT '',
    score REAL NOT NULL, max_score REAL NOT NULL, penalties REAL NOT NULL, report TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 1);
CREATE UNIQUE INDEX one_current_run ON runs(submission_id) WHERE current = 1;
CREATE TABLE checks (run_id INTEGER NOT NULL REFERENCES runs(id), check_id TEXT NOT NULL, target TEXT NOT NULL,
    visibility TEXT NOT NULL, status TEXT NOT NULL, points REAL NOT NULL, max_points REAL NOT NULL,
    codes TEXT NOT NULL, PRIMARY KEY (run_id, check_id));
INSERT INTO meta VALUES ('schema', '1'), ('assignment', 'a'), ('batch_seed', '7');
INSERT INTO submissions VALUES (1, 'alice', 'Alice', 'alice.ipynb', 'h1');
"""


def test_a_version_1_gradebook_is_migrated_in_place_and_keeps_its_results(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as c:
        c.executescript(V1)
        rep = json.dumps(_result("alice", "h1", 3.0).report)
        c.execute("INSERT INTO runs VALUES (1, 1, 'h1', 'a', 's', '0.1', '{}', 7, 1, 1.0, 2.0, 1.0, 'graded', '',"
                  " 3.0, 3.0, 0.0, ?, 1)", (rep,))
    book = Gradebook(db, create=False)  # (reading a report is enough to migrate it)
    assert book.meta("schema") == SCHEMA_VERSION
    [row] = list(book.current())
    assert (row.student, row.score, row.provenance.submitted_at, row.provenance.lms_key) == ("alice", 3.0, None, "")
    book.course.override("alice", "", 2.0, False, "late registration", "ta", row.score)
    assert load(book).grades[0].final == 2.0
    book.close()
    assert Gradebook(db).meta("schema") == SCHEMA_VERSION  # opened again: nothing more to do


def test_similarity_ignores_comments_whitespace_outputs_and_the_starter() -> None:
    a = notebook_bytes("sign", "a")
    nb = json.loads(a)
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            c["source"] = "# reformatted\n" + src.replace("\n", "\n\n") + "  # done"
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "noise"}]
    b = json.dumps(nb).encode()
    assert similarity.code_of(a) == similarity.code_of(b) != ""
    starter = similarity.code_of(STARTER.read_bytes())
    fps = {s: (similarity.code_hash(similarity.code_of(nbb)), similarity.fingerprints(similarity.code_of(nbb)))
           for s, nbb in (("a", a), ("b", b), ("c", notebook_bytes("starter", "c")),
                          ("d", notebook_bytes("starter", "d")))}
    pairs = similarity.similar_pairs(fps, (similarity.code_hash(starter), similarity.fingerprints(starter)))
    assert [(p.a, p.b, p.kind, p.score) for p in pairs] == [("a", "b", "identical", 1.0)]  # c, d: the starter


def test_histogram_bins_separate_every_score() -> None:
    scores = [0, 5.5, 6, 6, 10.75, 11]
    edges = score_bins(scores)
    for s in set(scores):
        inside = [i for i in range(len(edges) - 1) if edges[i] <= s < edges[i + 1]]
        assert len(inside) == 1
    assert len(edges) - 1 == len(set(scores))


def test_a_roster_column_gives_the_submission_time_the_export_lacks(tmp_path: Path) -> None:
    book = Gradebook(tmp_path / "gb.sqlite")
    book.record(_result("alice", "h1", 3.0))  # (a folder source: no time from the export)
    (tmp_path / "r.csv").write_text("id,name,submitted\nalice,Alice,2026-03-02T05:59Z\n")
    book.course.import_roster(read_roster(tmp_path / "r.csv"))
    book.course.set_deadline(DUE, LatePolicy.parse("10%/day"))
    [g] = load(book).grades
    assert g.late.state == "late" and g.late.how == "the roster's submitted column" and g.final == pytest.approx(2.7)
    (tmp_path / "bad.csv").write_text("id,name,submitted\nalice,Alice,yesterday\n")
    with pytest.raises(GraderError, match="not a date and time"):
        read_roster(tmp_path / "bad.csv")


def test_identical_code_is_flagged_however_many_share_it() -> None:
    code = similarity.code_of(notebook_bytes("sign", "x"))
    fps = similarity.fingerprints(code)
    subs = {f"s{i:03d}": (similarity.code_hash(code), fps) for i in range(60)}  # more than the boilerplate cut
    pairs = similarity.similar_pairs(subs)
    assert len(pairs) == 60 * 59 // 2 and {p.kind for p in pairs} == {"identical"}


def test_a_bad_roster_file_is_one_line_and_leaves_no_gradebook(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("name,email\nA,a@x\n")
    for f in ("r.csv", "missing.csv"):
        r = grade("roster", "import", str(tmp_path / f), "--db", str(tmp_path / "gb.sqlite"))
        assert r.returncode == 2 and r.stderr.startswith("grade: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "gb.sqlite").exists()
