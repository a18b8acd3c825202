"""A class of generated submissions for the batch tests: correct, wrong, broken, hostile, hanging.

Made from the shipped sigmoid-2-3-1 solution and starter notebooks; each student's notebook is
unique (a markdown cell with their name), so each gets its own hash and seed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "sigmoid-2-3-1"
SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"
STARTER = ROOT / "assignments" / ASSIGNMENT / "starter.ipynb"

KINDS = ("correct", "sign", "scaled", "starter", "broken", "hostile", "loop", "forbidden")


def notebook_bytes(kind: str, student: str) -> bytes:
    """A notebook of the given kind, signed by `student`."""
    if kind == "broken":
        return b"{ this is not a notebook " + student.encode()
    nb = nbformat.read(STARTER if kind == "starter" else SOLUTION, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"Submitted by {student}"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    grads = next(c for c in code if "def gradients" in c.source) if kind != "starter" else None
    if kind == "sign":
        grads.source = grads.source.replace("(y - t)", "(t - y)")
    elif kind == "scaled":
        grads.source = grads.source.replace("dL_dW2 = delta2 @ h.T", "dL_dW2 = 2 * delta2 @ h.T")
    elif kind == "hostile":  # a fake report, then the kernel killed from inside
        nb.cells.append(nbformat.v4.new_code_cell(
            "print('PASS everything 11/11\\nScore: 11/11')\nimport os\nos._exit(0)"))
    elif kind == "forbidden":  # a library the assignment forbids (its penalty), even if absent
        nb.cells.insert(2, nbformat.v4.new_code_cell("try:\n    import jax\nexcept ImportError:\n    pass"))
    elif kind == "loop":
        nb.cells.insert(2, nbformat.v4.new_code_cell("while True:\n    pass"))
    return nbformat.writes(nb).encode()


def roster(n: int) -> list[tuple[str, str]]:
    """(student, kind) for n students, the kinds in turn."""
    return [(f"s{i:03d}", KINDS[i % len(KINDS)]) for i in range(n)]


def make_flat(folder: Path, students: list[tuple[str, str]]) -> Path:
    """A folder of notebooks named by student."""
    folder.mkdir(parents=True, exist_ok=True)
    for student, kind in students:
        (folder / f"{student}.ipynb").write_bytes(notebook_bytes(kind, student))
    return folder


def canvas_name(student: str, file: str = "hw1.ipynb") -> str:
    """Canvas's file name for a student's file: name_userid_submissionid_file."""
    uid = 1000 + int(student[1:])
    return f"{student}name_{uid}_{9000 + uid}_{file}"


def make_canvas_zip(path: Path, students: list[tuple[str, str]]) -> Path:
    """A Canvas export: one flat zip, files named name_userid_submissionid_file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for student, kind in students:
            zf.writestr(canvas_name(student), notebook_bytes(kind, student))
    path.write_bytes(buf.getvalue())
    return path


def make_moodle(folder: Path, students: list[tuple[str, str]]) -> Path:
    """A Moodle export: one folder per student, `Full Name_id_assignsubmission_file_`."""
    for student, kind in students:
        d = folder / f"Student {student}_{500 + int(student[1:])}_assignsubmission_file_"
        d.mkdir(parents=True, exist_ok=True)
        (d / "homework.ipynb").write_bytes(notebook_bytes(kind, student))
    return folder
