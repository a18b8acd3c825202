"""The attack classes of docs/security.md through `grade batch`: a class where each student
tries one, graded at once into a gradebook and every report file.

Each student ends with one row; no report file (grades.csv, results.jsonl, the feedback
pages, report.html) carries what a notebook made of hidden inputs; the dressed-up typed
answers earn nothing for the given sample; disguised finite differences are flagged; the
batch's own memory stays bounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.adversarial import test_disguised_hardcoding as hardcoding
from tests.adversarial import test_hidden_leaks as leaks
from tests.adversarial import test_numerical_disguised as numerical
from tests.adversarial.helpers import ASSIGNMENT, run_grade

MB = 2**20


def _class(src: Path, tmp: Path) -> None:
    src.mkdir(parents=True)
    tmp.mkdir(parents=True)
    made = {
        "ann": leaks._notebook(tmp, "exception_class"),
        "ben": leaks._notebook(tmp, "shape"),
        "cat": hardcoding._notebook(tmp, "fingerprint_exact", hardcoding.ATTACKS["fingerprint_exact"]),
        "dan": numerical._notebook(tmp, "random_basis"),
    }
    for student, path in made.items():
        (src / f"{student}.ipynb").write_bytes(path.read_bytes())
    (src / "eve.ipynb").symlink_to(src / "ann.ipynb")  # a classmate's notebook, by link
    os.mkfifo(src / "fay.ipynb")


def test_a_class_of_attacks_graded_at_once_leaks_nothing_and_earns_nothing_unearned(tmp_path: Path):
    src = tmp_path / "class"
    _class(src, tmp_path / "made")
    out = tmp_path / "out"
    p, peak = run_grade(["batch", str(src), "--assignment", ASSIGNMENT, "--db", str(tmp_path / "g.sqlite"),
                         "--out", str(out), "--jobs", "2", "--seed", "3"], timeout=900)
    assert p.returncode == 1, p.stdout + p.stderr  # some submissions are errors (the link and the pipe)
    assert "Traceback" not in p.stderr
    rows = {r["student"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {"ann", "ben", "cat", "dan", "eve", "fay"}
    for name in ("eve", "fay"):  # refused unread: one error row each
        assert rows[name]["score"] == 0
    for f in out.rglob("*"):
        if f.is_file():
            text = f.read_text(errors="replace")
            assert "LEAK" not in text and "1237" not in text, f
    cat = {c["target"]: c for c in rows["cat"]["checks"]}
    assert all(cat[v]["points"] == 0 for v in ("y", "dL_dW1", "dL_dW2"))
    assert any(fl["code"] == "numerical_gradient" for fl in rows["dan"]["flags"])
    assert peak < 800 * MB, peak / MB
