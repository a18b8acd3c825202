"""Finding the submissions in what an LMS exports: a folder, per-student folders, or a zip.

Student ids (first rule that applies):

- `--student-regex`: searched in the notebook's path relative to the source (`alice/hw.ipynb`);
  its group `student` (else its first group) is the id, an optional group `name` the name.
- Canvas file names, `name_userid_submissionid_file.ipynb` (also with `_LATE_` after the
  name): the id is the user id, the notebook is graded under its own name `file.ipynb`.
- Moodle folders, `Full Name_123456_assignsubmission_file_`: the id is the participant id.
- Otherwise the sub-folder's name (per-student folders) or the file name without `.ipynb`.

A student with several notebooks or none is an entry with a `problem`, never skipped (in a
flat Canvas export too: a student whose files hold no notebook, a PDF only, gets one).

Submission times: a zip's entry times (read as UTC: the zip format stores no zone), else the
file times of an LMS-named file or folder; Canvas's `_LATE_` mark is kept beside them.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import GraderError
from grader.files import refusal

CANVAS = re.compile(r"^(?P<name>[^_/]+)_(?P<late>LATE_)?(?P<student>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<student>\d+)_assign(?:submission|feedback)_\w*?_?$")
IGNORED = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
MAX_ZIP_BYTES = 4 * 1024**3  # unpacked: far above any class's notebooks, far below a zip bomb
MAX_ZIP_FILES = 200_000
MAX_COMPANION_BYTES = 20 * 1024 * 1024


@dataclass
class Entry:
    """One student's submission: the notebook to grade and the files that travel with it."""

    student: str
    name: str = ""
    notebook: Path | None = None
    graded_as: str = ""  # the notebook's file name in its workspace
    relpath: str = ""  # where it was found, relative to the source
    companions: dict[str, Path] = field(default_factory=dict)  # name in the workspace -> file
    problem: str | None = None  # no notebook, several, or a name the regex does not match
    submitted_at: float | None = None  # when it was handed in, if the export says
    submitted_how: str = ""  # where that time came from
    marked_late: bool = False  # the LMS marked it late (Canvas's _LATE_)
    lms_key: str = ""  # the LMS's name for it: Canvas's file name, Moodle's folder


def _visible(p: Path, root: Path, skip: frozenset[Path] = frozenset()) -> bool:
    if any(part.startswith(".") or part in IGNORED for part in p.relative_to(root).parts):
        return False
    if skip:  # the batch's own gradebook and reports, when they are inside the source
        real = p.resolve()
        return not any(real.is_relative_to(s) for s in skip)
    return True


def _notebooks(folder: Path, root: Path, skip: frozenset[Path]) -> list[Path]:
    # A notebook that is a link, a device or a pipe is still the student's submission: it gets
    # its row, and reading it refuses it in one line (nothing it points to is ever read).
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() == ".ipynb" and _not_folder(p) and _visible(p, root, skip))


def _not_folder(p: Path) -> bool:
    return p.is_symlink() or not p.is_dir()


def _regular(p: Path) -> bool:
    """A regular file of its own (not a link to one, not a device or pipe)."""
    return refusal(p) is None and p.is_file()


def _siblings(notebook: Path, root: Path, skip: frozenset[Path]) -> dict[str, Path]:
    """The plain files beside a notebook (not other notebooks), to copy into its workspace."""
    out: dict[str, Path] = {}
    for p in sorted(notebook.parent.iterdir()):
        if (p != notebook and p.suffix.lower() != ".ipynb" and _visible(p, root, skip) and _regular(p)
                and p.stat().st_size <= MAX_COMPANION_BYTES):
            out[p.name] = p
    return out


def _match(regex: re.Pattern[str], rel: str) -> tuple[str, str] | None:
    m = regex.search(rel)
    if not m:
        return None
    groups = m.groupdict()
    student = groups.get("student") or (m.group(1) if m.re.groups else m.group(0))
    return (student, groups.get("name") or "") if student else None


def compile_student_regex(text: str | None) -> re.Pattern[str] | None:
    """The `--student-regex` option, checked: it must compile and capture something."""
    if not text:
        return None
    try:
        regex = re.compile(text)
    except re.error as e:
        raise GraderError(f"--student-regex {text!r} is not a valid regular expression: {e}") from None
    return regex


def collect(source: Path, student_regex: str | None = None, unpack_to: Path | None = None,
            exclude: Iterable[Path] = ()) -> list[Entry]:
    """Every student's entry in a folder or zip, sorted by student id; zips unpack into `unpack_to`.
    Files and folders in `exclude` (the batch's gradebook and reports) are never submissions,
    nor files that travel with one."""
    regex = compile_student_regex(student_regex)
    skip = frozenset(p.resolve() for p in exclude)
    if not source.exists():
        raise GraderError(f"{source}: no such file or folder")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise GraderError(f"{source}: neither a folder nor a zip file")
        if unpack_to is None:
            raise GraderError("a zip source needs a folder to unpack into")
        root = unpack_zip(source, unpack_to)
    elif source.is_dir():
        root = source
    else:  # a device, a pipe, a socket
        raise GraderError(f"{source}: neither a folder nor a zip file")
    try:
        entries = [_readable(_timed(e, source.is_file()))
                   for e in _flat(root, regex, skip) + _per_student(root, regex, skip)]
    except OSError as e:
        raise GraderError(f"{source}: cannot be read ({e.strerror or e})") from None
    by_student: dict[str, list[Entry]] = {}
    for e in entries:
        by_student.setdefault(e.student, []).append(e)
    out = []
    for student, group in sorted(by_student.items()):
        with_nb = [e for e in group if e.notebook is not None]
        if len(with_nb) > 1:
            where = ", ".join(e.relpath for e in with_nb)
            first = with_nb[0]
            out.append(Entry(student, first.name, relpath=where,
                             problem=f"several notebooks ({where}): keep one and grade again"))
        elif with_nb:
            out.append(with_nb[0])
        else:
            out.append(group[0])
    return out


def _text(name: str) -> str:
    """A file name as text that can be stored and shown: bytes that are not UTF-8 (kept by Python
    as lone surrogates, which neither SQLite nor JSON accept) become `\\xNN` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _timed(e: Entry, from_zip: bool) -> Entry:
    """The submission time the export gives: its zip entry's, or an LMS-named file's own."""
    if e.notebook is not None and (from_zip or e.lms_key):
        try:
            e.submitted_at = e.notebook.lstat().st_mtime
            e.submitted_how = "the zip entry's time" if from_zip else "the file's time"
        except OSError:
            pass
    return e


def _readable(e: Entry) -> Entry:
    e.student, e.name, e.relpath, e.graded_as = _text(e.student), _text(e.name), _text(e.relpath), _text(e.graded_as)
    e.lms_key = _text(e.lms_key)
    e.companions = {_text(k): v for k, v in e.companions.items()}
    return e


def _flat(root: Path, regex: re.Pattern[str] | None, skip: frozenset[Path]) -> list[Entry]:
    """Notebooks at the top of the source: one per student, named as the LMS names them."""
    files = sorted(p for p in root.iterdir() if _not_folder(p) and _visible(p, root, skip))
    canvas_extra: dict[str, dict[str, Path]] = {}  # Canvas files of a student other than notebooks
    shared: dict[str, Path] = {}
    for p in files:
        if p.suffix.lower() == ".ipynb" or not _regular(p) or p.stat().st_size > MAX_COMPANION_BYTES:
            continue
        m = CANVAS.match(p.name)
        if m:
            canvas_extra.setdefault(m["student"], {})[m["file"]] = p
        else:  # an instructor's file beside everyone's notebooks (data): it travels with each
            shared[p.name] = p
    out = []
    for p in files:
        if p.suffix.lower() != ".ipynb":
            continue
        rel = p.name
        m = CANVAS.match(p.name)
        graded_as = m["file"] if m and m["file"].lower().endswith(".ipynb") else p.name
        companions = dict(shared)
        if regex is not None:
            found = _match(regex, rel)
            if found is None:
                out.append(Entry(p.stem, relpath=rel, problem=f"{rel}: the name does not match --student-regex"))
                continue
            student, name = found
        elif m:
            student, name = m["student"], m["name"]
            companions.update(canvas_extra.get(student, {}))
        else:
            student, name = p.stem, ""
        out.append(Entry(student, name, p, graded_as, rel, companions, marked_late=bool(m and m["late"]),
                         lms_key=p.name if m else ""))
    if regex is None:  # a Canvas student whose files hold no notebook (a PDF only): a row saying so
        with_nb = {e.student for e in out}
        for p in files:
            m = CANVAS.match(p.name)
            if m and m["student"] not in with_nb and p.suffix.lower() != ".ipynb":
                with_nb.add(m["student"])
                names = ", ".join(sorted(canvas_extra.get(m["student"], {p.name: p})))
                out.append(Entry(m["student"], m["name"], relpath=p.name, marked_late=bool(m["late"]),
                                 lms_key=p.name, problem=f"no notebook among the files handed in ({names})"))
    return out


def _per_student(root: Path, regex: re.Pattern[str] | None, skip: frozenset[Path]) -> list[Entry]:
    """Sub-folders of the source: one per student, holding the notebook and its files."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root, skip)):
        m = MOODLE.match(d.name)
        if d.is_symlink():  # another student's folder, or anywhere: one row, nothing read
            out.append(Entry(m["student"] if m else d.name, m["name"] if m else "", relpath=d.name + "/",
                             problem=f"{d.name}/ is a symbolic link, not a folder of files: not graded"))
            continue
        student, name = (m["student"], m["name"]) if m else (d.name, "")
        notebooks = _notebooks(d, root, skip)
        if not notebooks:
            if regex is not None:
                found = _match(regex, d.name)
                student, name = found if found else (student, name)
            out.append(Entry(student, name, relpath=d.name + "/", problem=f"no notebook in {d.name}/",
                             lms_key=d.name if m else ""))
            continue
        for nb in notebooks:
            rel = nb.relative_to(root).as_posix()
            s, n = student, name
            if regex is not None:
                found = _match(regex, rel)
                if found is None:
                    out.append(Entry(d.name, relpath=rel, problem=f"{rel}: the path does not match --student-regex"))
                    continue
                s, n = found
            out.append(Entry(s, n, nb, nb.name, rel, _siblings(nb, root, skip), lms_key=d.name if m else ""))
    return out


def unpack_zip(archive: Path, dest: Path) -> Path:
    """Unpack an LMS export safely: no path leaves `dest`, no links, bounded size; returns its root."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_FILES:
                raise GraderError(f"{archive}: more than {MAX_ZIP_FILES} files")
            if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                raise GraderError(f"{archive}: unpacks to more than {MAX_ZIP_BYTES >> 30} GiB")
            dest.mkdir(parents=True, exist_ok=True)
            written: set[tuple[str, ...]] = set()
            for info in infos:
                name = info.filename.replace("\\", "/")
                parts = [x for x in name.split("/") if x not in ("", ".")]
                if (not parts or ".." in parts or name.startswith("/") or re.match(r"[A-Za-z]:", name)
                        or stat.S_ISLNK(info.external_attr >> 16)):
                    continue  # an absolute, climbing or link entry: never followed
                target = dest.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if tuple(parts) in written:  # one would silently replace the other: a student lost
                    raise GraderError(f"{archive}: holds {'/'.join(parts)} more than once; keep one and "
                                      "grade again")
                written.add(tuple(parts))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                # the entry's time is when the LMS stored the file: the submission time
                with contextlib.suppress(ValueError, OverflowError, OSError):
                    t = calendar.timegm((*info.date_time, 0, 0, 0))
                    os.utime(target, (t, t))
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError) as e:
        raise GraderError(f"{archive}: cannot be unpacked ({e})") from None
    # A zip holding one folder that holds everything (a common export): that folder is the root,
    # unless it is one student's folder (Moodle's naming, or one notebook and nothing else).
    top = [p for p in dest.iterdir() if _visible(p, dest)]
    if len(top) == 1 and top[0].is_dir() and not MOODLE.match(top[0].name):
        inner = [p for p in top[0].iterdir() if _visible(p, top[0])]
        folders = [p for p in inner if p.is_dir()]
        notebooks = [p for p in inner if p.is_file() and p.suffix.lower() == ".ipynb"]
        if folders or len(notebooks) > 1 or any(CANVAS.match(p.name) for p in notebooks):
            return top[0]
    return dest
