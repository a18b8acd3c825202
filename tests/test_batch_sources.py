"""Finding submissions in LMS exports: layouts, student ids, companions, zips, problems."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from grader.batch.sources import collect
from grader.errors import GraderError

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def _by_student(entries):
    return {e.student: e for e in entries}


def test_flat_folder_uses_file_names(tmp_path: Path) -> None:
    for name in ("alice.ipynb", "bob.ipynb"):
        (tmp_path / name).write_bytes(NB)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "alice-checkpoint.ipynb").write_bytes(NB)
    (tmp_path / "data.csv").write_text("1,2\n")  # an instructor's file beside all notebooks
    got = _by_student(collect(tmp_path))
    assert sorted(got) == ["alice", "bob"]
    assert got["alice"].graded_as == "alice.ipynb" and got["alice"].problem is None
    assert set(got["bob"].companions) == {"data.csv"}


def test_canvas_names(tmp_path: Path) -> None:
    (tmp_path / "smithjane_1234_998877_hw1.ipynb").write_bytes(NB)
    (tmp_path / "doejohn_LATE_5678_998878_hw1-1.ipynb").write_bytes(NB)
    (tmp_path / "smithjane_1234_998877_weights.npy").write_bytes(b"x")  # Jane's own file
    got = _by_student(collect(tmp_path))
    assert sorted(got) == ["1234", "5678"]
    jane = got["1234"]
    assert (jane.name, jane.graded_as) == ("smithjane", "hw1.ipynb")
    assert set(jane.companions) == {"weights.npy"}  # under its own name, and only with Jane's
    assert got["5678"].graded_as == "hw1-1.ipynb" and got["5678"].companions == {}


def test_moodle_and_plain_student_folders(tmp_path: Path) -> None:
    moodle = tmp_path / "Jane Smith_4242_assignsubmission_file_"
    moodle.mkdir()
    (moodle / "backprop.ipynb").write_bytes(NB)
    (moodle / "helpers.py").write_text("X = 1\n")
    plain = tmp_path / "bob"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "hw.ipynb").write_bytes(NB)
    got = _by_student(collect(tmp_path))
    assert sorted(got) == ["4242", "bob"]
    assert got["4242"].name == "Jane Smith"
    assert set(got["4242"].companions) == {"helpers.py"}
    assert got["bob"].relpath == "bob/sub/hw.ipynb"


def test_several_or_no_notebooks_are_reported(tmp_path: Path) -> None:
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "a.ipynb").write_bytes(NB)
    (tmp_path / "carol" / "b.ipynb").write_bytes(NB)
    (tmp_path / "dave").mkdir()
    (tmp_path / "dave" / "notes.txt").write_text("forgot")
    got = _by_student(collect(tmp_path))
    assert got["carol"].notebook is None and "several notebooks" in got["carol"].problem
    assert "carol/a.ipynb" in got["carol"].problem and "carol/b.ipynb" in got["carol"].problem
    assert got["dave"].notebook is None and "no notebook" in got["dave"].problem


def test_same_student_in_two_places_is_several(tmp_path: Path) -> None:
    (tmp_path / "erin.ipynb").write_bytes(NB)
    (tmp_path / "erin").mkdir()
    (tmp_path / "erin" / "hw.ipynb").write_bytes(NB)
    [entry] = collect(tmp_path)
    assert entry.student == "erin" and "several notebooks" in entry.problem


def test_student_regex_overrides(tmp_path: Path) -> None:
    (tmp_path / "hw1-s123-final.ipynb").write_bytes(NB)
    (tmp_path / "hw1-s456.ipynb").write_bytes(NB)
    (tmp_path / "notes.ipynb").write_bytes(NB)
    got = _by_student(collect(tmp_path, r"-(?P<student>s\d+)"))
    assert set(got) == {"s123", "s456", "notes"}
    assert "does not match --student-regex" in got["notes"].problem
    unnamed = _by_student(collect(tmp_path, r"hw1-(s\d+)"))  # no named group: the first group
    assert {"s123", "s456"} <= set(unnamed)


def test_bad_regex_and_bad_source_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GraderError, match="not a valid regular expression"):
        collect(tmp_path, "(unclosed")
    with pytest.raises(GraderError, match="no such file or folder"):
        collect(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(GraderError, match="neither a folder nor a zip"):
        collect(tmp_path / "x.txt", unpack_to=tmp_path / "u")


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():  # a symbolic link entry, as zip -y stores one
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def test_zip_flat_and_wrapped_and_hostile(tmp_path: Path) -> None:
    z = tmp_path / "export.zip"
    z.write_bytes(_zip({"submissions/smithjane_1234_998877_hw1.ipynb": NB,
                        "submissions/bob/hw.ipynb": NB,
                        "../escape.ipynb": NB, "/abs.ipynb": NB, "__MACOSX/._x.ipynb": NB},
                       {"submissions/carol.ipynb": "/etc/passwd"}))
    got = _by_student(collect(z, unpack_to=tmp_path / "u"))
    assert sorted(got) == ["1234", "bob"]  # the wrapping folder is not a student
    assert not (tmp_path / "escape.ipynb").exists()
    assert not list((tmp_path / "u").rglob("carol*"))  # a link is never unpacked
    assert all(str(e.notebook).startswith(str(tmp_path / "u")) for e in got.values())


def test_corrupt_zip_is_an_error(tmp_path: Path) -> None:
    z = tmp_path / "bad.zip"
    data = bytearray(_zip({"a.ipynb": NB * 50}))
    data[40:60] = b"\0" * 20  # damage the member's data, keep the directory
    z.write_bytes(bytes(data))
    with pytest.raises(GraderError, match="cannot be unpacked|bad.zip"):
        collect(z, unpack_to=tmp_path / "u")


def test_names_that_are_not_utf8_become_escaped_ids(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "alice.ipynb").write_bytes(NB)
    (src / os.fsdecode(b"\xff\xfe.ipynb")).write_bytes(NB)  # (Latin-1 names, from an old zip tool)
    (src / os.fsdecode(b"j\xe9r\xf4me")).mkdir()
    (src / os.fsdecode(b"j\xe9r\xf4me") / "HW.IPYNB").write_bytes(NB)  # (the suffix in any case)
    got = _by_student(collect(src))
    assert sorted(got) == ["\\xff\\xfe", "alice", "j\\xe9r\\xf4me"]
    for e in got.values():
        assert e.problem is None and e.notebook is not None and e.notebook.read_bytes() == NB
        e.relpath.encode("utf-8")  # storable text, no lone surrogates
        e.graded_as.encode("utf-8")


def test_a_source_that_is_neither_folder_nor_file_is_one_error(tmp_path: Path) -> None:
    fifo = tmp_path / "export.zip"
    os.mkfifo(fifo)
    for source in (fifo, Path("/dev/null")):
        with pytest.raises(GraderError, match="neither a folder nor a zip"):
            collect(source, unpack_to=tmp_path / "u")


def test_a_zip_holding_one_path_twice_loses_no_one_silently(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("alice.ipynb", NB)
        zf.writestr("alice.ipynb", NB + b" ")
        zf.writestr("bob.ipynb", NB)
    z = tmp_path / "dup.zip"
    z.write_bytes(buf.getvalue())
    with pytest.raises(GraderError, match="alice.ipynb more than once"):
        collect(z, unpack_to=tmp_path / "u")


def test_the_batchs_own_gradebook_and_reports_are_not_submissions(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "reports" / "feedback").mkdir(parents=True)
    (src / "alice.ipynb").write_bytes(NB)
    (src / "data.csv").write_text("1,2\n")
    for name in ("gradebook.sqlite", "gradebook.sqlite-wal", "gradebook.sqlite-shm"):
        (src / name).write_bytes(b"everyone's results")
    (src / "reports" / "grades.csv").write_text("student,total\n")
    (src / "bob").mkdir()
    (src / "bob" / "hw.ipynb").write_bytes(NB)
    (src / "bob" / "gradebook.sqlite").write_bytes(b"not the batch's: travels with bob")
    own = [src / "gradebook.sqlite", src / "gradebook.sqlite-wal", src / "gradebook.sqlite-shm", src / "reports"]
    got = _by_student(collect(src, exclude=own))
    assert sorted(got) == ["alice", "bob"]  # no "no notebook in reports/" row
    assert sorted(got["alice"].companions) == ["data.csv"]  # the gradebook never travels with a notebook
    assert sorted(got["bob"].companions) == ["gradebook.sqlite"]
