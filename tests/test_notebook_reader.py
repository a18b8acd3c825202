"""Reading submissions: every malformed file gets one clear line; odd but valid notebooks are graded."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.errors import SubmissionError
from grader.submission.notebook import MAX_NOTEBOOK_BYTES, read_submission
from tests.conftest import ASSIGNMENTS, graded

SOLUTION = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"


def cell(kind: str = "code", source: object = "x = 1") -> dict:
    c = {"cell_type": kind, "metadata": {}, "source": source}
    if kind == "code":
        c.update(outputs=[], execution_count=None)
    return c


def nb4(*cells: dict) -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}).encode()


BAD = [
    (b"", "empty"),
    (b"   \n\t ", "empty"),
    (b"not json at all", "not valid JSON"),
    (b'{"cells": [', "not valid JSON"),
    (b"[1, 2, 3]", "top level is not an object"),
    (b'"a string"', "top level is not an object"),
    (b'{"hello": "world"}', "no 'nbformat' version"),
    (b'{"nbformat": "4", "cells": []}', "no 'nbformat' version"),
    (b'{"nbformat": 5, "cells": []}', "format 5 is not supported"),
    (b'{"nbformat": 4, "cells": {}}', "no list of 'cells'"),
    (b'{"nbformat": 3}', "no 'worksheets'"),
    (nb4(cell("widget")), "unknown type 'widget'"),
    (nb4(cell(), cell("sql")), "cell 2 has unknown type 'sql'"),
    (nb4(cell("code", 42)), "no source text"),
    (b"\xff\xfe\x00\x01garbage", "not valid UTF-8"),
    (b'{"nbformat": 4, "cells": [' + b"\xc3\x28" + b"]}", "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize("data, expected", BAD, ids=[e for _, e in BAD])
def test_malformed_file_is_one_clear_line(tmp_path: Path, data: bytes, expected: str):
    p = tmp_path / "sub.ipynb"
    p.write_bytes(data)
    with pytest.raises(SubmissionError) as err:
        read_submission(p)
    text = str(err.value)
    assert expected in text
    assert "\n" not in text and text.startswith(str(p))


@pytest.mark.parametrize("data, expected", BAD[::3], ids=[e for _, e in BAD[::3]])
def test_malformed_file_exits_two_from_the_command(tmp_path: Path, data: bytes, expected: str):
    p = tmp_path / "sub.ipynb"
    p.write_bytes(data)
    result = CliRunner().invoke(main, [str(p), "--assignment", "sigmoid-2-3-1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("grade: error:")


def test_missing_path_directory_and_unreadable_file(tmp_path: Path):
    with pytest.raises(SubmissionError, match="no such file"):
        read_submission(tmp_path / "nope.ipynb")
    with pytest.raises(SubmissionError, match="is a directory"):
        read_submission(tmp_path)


def test_notebook_over_the_size_limit_names_the_limit(tmp_path: Path):
    p = tmp_path / "huge.ipynb"
    with p.open("wb") as f:  # sparse: the size is checked before anything is read
        f.truncate(MAX_NOTEBOOK_BYTES + 1)
    with pytest.raises(SubmissionError, match=rf"over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit"):
        read_submission(p)


def test_outputs_are_dropped_and_sources_joined(tmp_path: Path):
    p = tmp_path / "sub.ipynb"
    c = cell("code", ["a = 1\n", "b = 2\n"])
    c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "fake 11/11"}]
    c["execution_count"] = 3
    p.write_bytes(nb4(c))
    nb = read_submission(p).nb
    assert nb.cells[0].source == "a = 1\nb = 2\n"
    assert nb.cells[0].outputs == [] and nb.cells[0].execution_count is None


def test_nbformat_3_is_upgraded_and_graded(tmp_path: Path):
    v4 = nbformat.read(SOLUTION, as_version=4)
    p = tmp_path / "old.ipynb"
    nbformat.write(nbformat.convert(v4, 3), p, version=3)
    assert json.loads(p.read_text())["nbformat"] == 3
    assert read_submission(p).nb.nbformat == 4
    r = graded(p, "sigmoid-2-3-1")
    assert r.score == r.max_score


@pytest.mark.parametrize("kernelspec", [
    {"name": "python2", "display_name": "Python 2", "language": "python"},
    {"name": "conda-root-py", "display_name": "Python [Root]", "language": "python"},
    {"name": "ir", "display_name": "R", "language": "R"},
    None,
], ids=["python2", "python-root", "r", "missing"])
def test_any_kernelspec_runs_in_the_graders_python(tmp_path: Path, kernelspec: dict | None):
    nb = nbformat.read(SOLUTION, as_version=4)
    if kernelspec is None:
        nb.metadata.pop("kernelspec", None)
        nb.metadata.pop("language_info", None)
    else:
        nb.metadata["kernelspec"] = kernelspec
    p = tmp_path / "sub.ipynb"
    nbformat.write(nb, p)
    r = graded(p, "sigmoid-2-3-1")
    assert r.score == r.max_score


def test_a_100_mb_notebook_is_graded(tmp_path: Path):
    nb = nbformat.read(SOLUTION, as_version=4)
    blob = "x" * 2**20
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=blob) for _ in range(100)]
    p = tmp_path / "big.ipynb"
    nbformat.write(nb, p)
    assert p.stat().st_size >= 100 * 2**20
    r = graded(p, "sigmoid-2-3-1")
    assert r.score == r.max_score


def test_sloppy_but_repairable_notebook_is_read_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    p = tmp_path / "sub.ipynb"
    sloppy = {"cell_type": "code", "source": "x = 1"}  # no metadata, outputs or execution_count
    p.write_bytes(json.dumps({"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": [sloppy]}).encode())
    with caplog.at_level("DEBUG"):
        nb = read_submission(p).nb
    assert nb.cells[0].source == "x = 1"
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
