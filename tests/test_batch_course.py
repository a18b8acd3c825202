"""The course's gradebook end to end: a Canvas zip of real notebooks, a roster, a deadline, an
extension, overrides, the exports each LMS imports, similarity, and report.html in Chromium.

The class (Canvas user ids 1001…): 1001 right and on time; 1002 handed in 30 hours late
(Canvas's `_LATE_`); 1003 late too, but with an extension; 1004 uploaded only a PDF; 1005 is
on the roster and handed in nothing; 1006 and 1007 handed in the same code; 1008 an edited
copy of it; 1009 is not on the roster; 1010 left the course (a later roster drops them).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests.batch_support import ASSIGNMENT, canvas_name, notebook_bytes
from tests.chromium_support import chromium, load
from tests.test_batch import LIMITS, grade

DUE = "2026-03-01T23:59:00+00:00"
ON_TIME = (2026, 3, 1, 20, 0, 0)
LATE = (2026, 3, 3, 5, 59, 0)  # 30 hours after the due date: two started days, 20% at 10%/day
COLUMN = "Homework 1 (4242)"
KINDS = {"s001": "correct", "s002": "scaled", "s003": "starter", "s006": "sign", "s007": "sign",
         "s008": "sign", "s009": "forbidden"}


def uid(student: str) -> str:
    return str(1000 + int(student[1:]))


def edited(student: str) -> bytes:
    """An edited copy of the sign-flip notebook: a comment, blank lines and one line added."""
    nb = nbformat.reads(notebook_bytes("sign", student).decode(), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "def gradients" in c.source)
    cell.source = "# my own work\n\n" + cell.source + "\n\nunused = 1  # (left over)\n"
    return nbformat.writes(nb).encode()


def class_zip(path: Path) -> Path:
    """The Canvas download: notebooks named as Canvas names them, entry times as Canvas stores them."""
    with zipfile.ZipFile(path, "w") as zf:
        for s, kind in KINDS.items():
            name = canvas_name(s)
            if s in ("s002", "s003"):
                name = name.replace("name_", "name_LATE_", 1)
            data = edited(s) if s == "s008" else notebook_bytes(kind, s)
            zf.writestr(zipfile.ZipInfo(name, LATE if s in ("s002", "s003") else ON_TIME), data)
        zf.writestr(zipfile.ZipInfo(canvas_name("s004", "essay.pdf"), ON_TIME), b"%PDF-1.4 not a notebook")
    return path


def roster_file(path: Path, students: list[str]) -> Path:
    """Canvas's gradebook export: fixed columns, the assignment's column, a Points Possible row."""
    lines = ["Student,ID,SIS User ID,SIS Login ID,Section,Homework 1 (4242),Current Score,Final Score",
             "    Points Possible,,,,,11,(read only),(read only)"]
    lines += [f"\"Student, {s}\",{uid(s)},SIS{s},{s}@uni.example,Section A,,," for s in students]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    d = tmp_path_factory.mktemp("course")
    db, out = d / "gradebook.sqlite", d / "out"
    roster = [f"s{i:03d}" for i in range(1, 9)] + ["s010"]
    steps = {
        "roster1": grade("roster", "import", str(roster_file(d / "roster1.csv", roster)), "--db", str(db)),
        "roster2": grade("roster", "import", str(roster_file(d / "roster2.csv", roster[:-1])), "--db", str(db)),
        "deadline": grade("deadline", "set", "--due", DUE, "--penalty", "10%/day", "--grace", "15m",
                          "--cap", "50%", "--limit", "7d", "--db", str(db)),
        "extend": grade("deadline", "extend", uid("s003"), "--until", "2026-03-04T00:00Z",
                        "--comment", "medical note", "--by", "Prof. Ada", "--db", str(db)),
        "override_early": grade("override", uid("s005"), "--excuse", "--comment", "joined late", "--db", str(db)),
        "batch": grade("batch", str(class_zip(d / "download.zip")), "-a", ASSIGNMENT, "--db", str(db),
                       "--seed", "11", "--jobs", "2", *LIMITS),
    }
    steps["override"] = grade("override", uid("s006"), "--points", "9", "--comment", "regrade request: the sign is "
                              "a typo", "--by", "TA Kim", "--db", str(db))
    steps["check_override"] = grade("override", uid("s002"), "--check", "sigmoid", "--points", "0.5",
                                    "--comment", "partial credit", "--by", "TA Kim", "--db", str(db))
    steps["report"] = grade("report", "--db", str(db), "--out", str(out))
    for fmt in ("canvas", "moodle"):
        steps[fmt] = grade("export", "--db", str(db), "--format", fmt, "--feedback", str(d / f"fb-{fmt}"))
    steps["jsonl"] = grade("export", "--db", str(db), "--format", "jsonl")
    steps["brightspace"] = grade("export", "--db", str(db), "--format", "brightspace", "--column", "Homework 1")
    return {"dir": d, "db": db, "out": out, "steps": steps, "roster": roster}


def test_each_step_succeeds_and_says_what_it_did(course) -> None:
    s = course["steps"]
    for name, r in s.items():
        assert r.returncode == (1 if name == "batch" else 0), (name, r.stderr)
    assert "roster: 9 students (9 new, 0 updated, 0 dropped)" in s["roster1"].stdout
    assert "roster: 8 students (0 new, 8 updated, 1 dropped)" in s["roster2"].stdout
    assert "due 2026-03-01 23:59 UTC; 10% per day late, grace 15m, at most 50%, no credit after 7d" in s["deadline"].stdout
    assert "batch: 8 students: 7 graded, 1 errors, 0 timeouts" in s["batch"].stdout


def _grades(course) -> dict[str, dict[str, str]]:
    return {r["student_id"]: r for r in csv.DictReader(io.StringIO((course["out"] / "grades.csv").read_text()))}


def test_every_student_has_exactly_one_row(course) -> None:
    rows = list(csv.DictReader(io.StringIO((course["out"] / "grades.csv").read_text())))
    ids = [r["student_id"] for r in rows]
    # everyone on the roster (not the dropped student, who handed in nothing) and the stranger
    assert sorted(ids) == sorted({uid(s) for s in course["roster"][:-1]} | {uid("s009")})
    g = _grades(course)
    assert g[uid("s004")]["status"] == "error" and "no notebook among the files handed in" in g[uid("s004")]["reason"]
    assert "essay.pdf" in g[uid("s004")]["reason"]
    assert (g[uid("s005")]["status"], g[uid("s005")]["total"], g[uid("s005")]["final"]) == ("missing", "0", "EX")
    assert g[uid("s009")]["flags"] == "not on the roster"
    assert g[uid("s001")]["name"] == "Student, s001"  # the roster's name, not the file name's


def test_late_penalty_and_extension(course) -> None:
    g = _grades(course)
    late, ext, on_time = g[uid("s002")], g[uid("s003")], g[uid("s001")]
    assert on_time["late_penalty"] == "0" and on_time["final"] == on_time["total"] == "11"
    assert on_time["submitted"] == "2026-03-01 20:00 UTC"
    assert late["submitted"] == "2026-03-03 05:59 UTC" and "30.0 hours late: 20% of the points" in late["lateness"]
    # 20% of 11 points, taken after the check override (sigmoid: 0.5 instead of its automatic points)
    auto = float(late["total"])
    sigmoid = float(late["sigmoid"])
    assert float(late["late_penalty"]) == pytest.approx(-2.2)
    assert float(late["final"]) == pytest.approx(auto - sigmoid + 0.5 - 2.2)
    assert ext["late_penalty"] == "0" and ext["lateness"] == "on_time"  # the extension covers it


def test_override_is_kept_with_who_and_why(course) -> None:
    g = _grades(course)[uid("s006")]
    assert g["final"] == "9" and float(g["total"]) < 11
    assert g["override"] == "grade set to 9 points by TA Kim (regrade request: the sign is a typo)"


def test_penalty_and_override_show_in_every_format(course) -> None:
    d, out = course["dir"], course["out"]
    lines = {json.loads(x)["student"]: json.loads(x) for x in course["steps"]["jsonl"].stdout.splitlines()}
    assert lines[uid("s002")]["course"]["late"]["penalty"] == pytest.approx(2.2)
    assert lines[uid("s006")]["course"]["overrides"][0]["by"] == "TA Kim"
    for student, words in ((uid("s002"), "late penalty: submitted 30.0 hours late"),
                           (uid("s006"), "override by TA Kim: regrade request")):
        assert words in (out / "feedback" / f"{student}.md").read_text()
        assert words in (out / "feedback" / f"{student}.html").read_text()
        moodle = {r["Identifier"]: r for r in csv.DictReader(io.StringIO(course["steps"]["moodle"].stdout))}
        assert words in moodle[f"Participant {student}"]["Feedback comments"]
        canvas_feedback = next((d / "fb-canvas").glob(f"*_{student}_*_feedback.html")).read_text()
        assert words in canvas_feedback
    page = (out / "report.html").read_text()
    assert uid("s002") in page.split('id="late-table"')[1].split("</table>")[0]
    assert "TA Kim" in page.split('id="override-table"')[1].split("</table>")[0]


def test_an_error_or_timeout_row_names_its_status_not_graded(course) -> None:
    lines = [json.loads(x) for x in course["steps"]["jsonl"].stdout.splitlines()]
    status = {x["student"]: x["status"] for x in lines}
    assert status[uid("s004")] == "error" and status[uid("s005")] == "missing"


def test_the_canvas_file_follows_canvas_gradebook_import(course) -> None:
    """Canvas's gradebook import: the columns Student, ID, SIS User ID, SIS Login ID, Section, then
    assignment columns headed "Name (id)" (any other column becomes a new assignment); an optional
    second row "Points Possible"; students matched by ID; "EX" excuses."""
    rows = list(csv.reader(io.StringIO(course["steps"]["canvas"].stdout)))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", COLUMN]
    assert rows[1][0] == "Points Possible" and rows[1][5] == "11"
    body = {r[1]: r for r in rows[2:]}
    # everyone enrolled; not the stranger (Canvas has no one to give it to: the reports flag it)
    assert set(body) == {uid(s) for s in course["roster"][:-1]}
    assert all(re.fullmatch(r"\d+", r[1]) and len(r) == 6 for r in rows[2:])
    assert body[uid("s005")][5] == "EX" and body[uid("s006")][5] == "9"
    assert body[uid("s001")][2:5] == ["SISs001", "s001@uni.example", "Section A"]
    for r in rows[2:]:
        assert r[5] == "EX" or float(r[5]) >= 0
    # the feedback files keep the download's "name_userid_submissionid_" so Canvas matches them
    names = sorted(p.name for p in (course["dir"] / "fb-canvas").iterdir())
    assert canvas_name("s001").replace("hw1.ipynb", "feedback.html") in names
    assert canvas_name("s002").replace("name_", "name_LATE_", 1).replace("hw1.ipynb", "feedback.html") in names


def test_the_moodle_file_follows_the_grading_worksheet(course) -> None:
    """Moodle's grading worksheet upload: rows keyed by "Identifier" = "Participant N", the grade in
    "Grade" (a number, or empty for none), "Maximum Grade", the comment in "Feedback comments";
    no "Last modified (grade)", or Moodle skips grades changed since its download."""
    rows = list(csv.DictReader(io.StringIO(course["steps"]["moodle"].stdout)))
    assert list(rows[0]) == ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                             "Grade can be changed", "Last modified (submission)", "Feedback comments"]
    for r in rows:
        assert re.fullmatch(r"Participant \d+", r["Identifier"])
        assert r["Grade"] == "" or re.fullmatch(r"\d+\.\d\d", r["Grade"])
        assert r["Maximum Grade"] == "11.00"
    by = {r["Identifier"]: r for r in rows}
    assert by[f"Participant {uid('s005')}"]["Status"] == "No submission"
    assert by[f"Participant {uid('s005')}"]["Grade"] == ""  # excused
    assert by[f"Participant {uid('s002')}"]["Status"].endswith("late")
    folders = {p.name for p in (course["dir"] / "fb-moodle").iterdir()}
    assert f"Student, s001_{uid('s001')}_assignsubmission_file_" in folders


def test_the_brightspace_file_follows_its_grade_import(course) -> None:
    """Brightspace's grade import: `OrgDefinedId` (or `Username`) to match the student, the item's
    `NAME Points Grade` column, `End-of-Line Indicator` with `#` on each row; no names or emails."""
    rows = list(csv.reader(io.StringIO(course["steps"]["brightspace"].stdout)))
    assert rows[0] == ["OrgDefinedId", "Homework 1 Points Grade", "End-of-Line Indicator"]
    body = {r[0]: r for r in rows[1:]}
    assert set(body) == {uid(s) for s in course["roster"][:-1]} and all(r[2] == "#" for r in rows[1:])
    assert body[uid("s005")][1] == "" and body[uid("s006")][1] == "9"
    assert float(body[uid("s002")][1]) == pytest.approx(float(_grades(course)[uid("s002")]["final"]))
    r = grade("export", "--db", str(course["db"]), "--format", "brightspace")
    assert r.returncode == 2 and "give --column NAME" in r.stderr


def test_copies_and_the_edited_copy_are_flagged(course) -> None:
    pairs = {(r["student_a"], r["student_b"]): r
             for r in csv.DictReader(io.StringIO((course["out"] / "similarity.csv").read_text()))}
    a, b, c = uid("s006"), uid("s007"), uid("s008")
    assert pairs[(a, b)]["kind"] == "identical" and pairs[(a, b)]["score"] == "1.000"
    assert pairs[(a, c)]["kind"] == "near" and 0.9 <= float(pairs[(a, c)]["score"]) < 1
    assert not any(uid("s003") in key for key in pairs)  # the starter is nobody's similarity
    assert _grades(course)[a]["similar_to"].startswith(f"{b} (identical 1.00)")
    page = (course["out"] / "report.html").read_text()
    assert b in page.split('id="similarity-table"')[1].split("</table>")[0]


def test_the_report_shows_the_class_in_chromium(course, tmp_path: Path) -> None:
    assert chromium() is not None, "chromium is not installed (bash .ci/setup installs it)"
    shot = tmp_path / "report.png"
    checks = {"students": "document.querySelectorAll('#students-table tbody tr').length",
              "links": "[...document.querySelectorAll('#students-table a')].map(a => a.getAttribute('href'))",
              "codes": "[...document.querySelectorAll('#diagnosis-table tbody td:first-child')]"
                       ".map(td => td.textContent).filter(t => t)",
              "tables": "['late-table', 'override-table', 'similarity-table']"
                        ".map(id => document.getElementById(id) !== null)"}
    got = load((course["out"] / "report.html").as_uri(), checks, str(shot))
    assert got["errors"] == []
    v = got["values"]
    assert v["students"] == 9 and v["tables"] == [True, True, True]
    assert f"feedback/{uid('s001')}.html" in v["links"]
    assert all((course["out"] / link).is_file() for link in v["links"])
    codes = v["codes"]
    assert "sign_flip" in codes and "forbidden_import" in codes
    assert codes.index("sign_flip") < codes.index("wrong") if "wrong" in codes else True
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_regrade_of_one_student_keeps_the_override_and_says_the_score_moved(course, tmp_path: Path) -> None:
    db = tmp_path / "gb.sqlite"
    (tmp_path / "gb.sqlite").write_bytes(course["db"].read_bytes())
    z = course["dir"] / "download.zip"  # (the same bytes: a notebook made again has new cell ids)
    again = grade("batch", str(z), "-a", ASSIGNMENT, "--db", str(db), "--regrade", uid("s001"), *LIMITS)
    assert again.returncode == 1 and "(1 graded now, 7 already in" in again.stdout, again.stderr
    # 1006 fixes the sign and hands in again: graded again, the override stands, and says so
    fixed = tmp_path / "fixed.zip"
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(fixed, "w") as dst:
        for info in src.infolist():
            data = notebook_bytes("correct", "s006") if info.filename == canvas_name("s006") else src.read(info)
            dst.writestr(info, data)
    r = grade("batch", str(fixed), "-a", ASSIGNMENT, "--db", str(db), *LIMITS)
    assert "(1 graded now, 7 already in" in r.stdout, r.stderr
    out = grade("export", "--db", str(db), "--format", "csv").stdout
    row = next(x for x in csv.DictReader(io.StringIO(out)) if x["student_id"] == uid("s006"))
    assert row["total"] == "11" and row["final"] == "9"
    md = grade("export", "--db", str(db), "--format", "jsonl").stdout
    line = next(json.loads(x) for x in md.splitlines() if json.loads(x)["student"] == uid("s006"))
    assert any("a regrade changed the automatic score" in n and "the override stands" in n
               for n in line["course"]["notes"])
    bad = grade("batch", str(fixed), "-a", ASSIGNMENT, "--db", str(db), "--regrade", "nobody", *LIMITS)
    assert bad.returncode == 2 and bad.stderr.startswith("grade: error: --regrade nobody")


def test_a_spec_that_only_moves_points_rescores_without_running_and_other_changes_say_what(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    from tests.batch_support import ROOT, make_flat

    asg = tmp_path / ASSIGNMENT
    shutil.copytree(ROOT / "assignments" / ASSIGNMENT, asg)
    src = make_flat(tmp_path / "src", [("alice", "correct"), ("bob", "sign")])
    db = tmp_path / "gb.sqlite"
    args = ("batch", str(src), "-a", str(asg), "--db", str(db), "--seed", "3", *LIMITS)
    assert grade(*args).returncode == 0
    toml = asg / "assignment.toml"
    spec = toml.read_text()
    toml.write_text(spec.replace('visibility = "hidden"\npoints = 2\n', 'visibility = "hidden"\npoints = 4\n', 1))
    r = grade(*args)
    assert r.returncode == 0 and "batch: 2 re-scored without running" in r.stdout, (r.stdout, r.stderr)
    assert "(0 graded now, 0 already in" in r.stdout
    rows = {x["student_id"]: x for x in csv.DictReader(io.StringIO(grade("export", "--db", str(db)).stdout))}
    assert (rows["alice"]["total"], rows["alice"]["max_total"], rows["alice"]["forward"]) == ("13", "13", "4")
    with sqlite3.connect(db) as c:
        envs = [json.loads(e) for (e,) in c.execute("SELECT environment FROM runs WHERE current = 1")]
    assert all("rescored_from_spec" in e for e in envs)  # no kernel ran
    toml.write_text(toml.read_text().replace('target = "sigmoid"\ninputs = "activation"\nargs = ["a"]\ntrials = 3',
                                             'target = "sigmoid"\ninputs = "activation"\nargs = ["a"]\ntrials = 4', 1))
    r = grade(*args)
    assert "(2 graded now" in r.stdout and "graded again because the spec changed: checks[0].trials" in r.stdout, r.stdout
