"""Fuzzing: random mutations of real notebooks never crash the reader or the `grade` command.

The reader gets many examples (it is fast); the whole command runs a kernel per example, so
it gets a handful. Both budgets are fixed, so the suite's run time stays bounded.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.cli import main
from grader.errors import SubmissionError
from grader.submission.notebook import KNOWN_CELL_TYPES, parse_notebook
from tests.conftest import ASSIGNMENTS, NOTEBOOKS

SEEDS = sorted(ASSIGNMENTS.glob("*/*.ipynb")) + sorted((NOTEBOOKS / "adversarial").glob("*.ipynb"))[:4]
SEED_BYTES = [p.read_bytes() for p in SEEDS]
SOLUTION = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=10)


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON structure."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def mutate_json(data: st.DataObject, doc: Any, rounds: int) -> Any:
    """Replace, delete or retype values at random places."""
    doc = copy.deepcopy(doc)
    for _ in range(rounds):
        where = data.draw(st.sampled_from(paths(doc)))
        if not where:
            continue
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        key = where[-1]
        op = data.draw(st.sampled_from(["replace", "delete", "cell_type", "source"]))
        if op == "delete":
            del parent[key]
        elif op == "cell_type":
            parent[key] = data.draw(st.sampled_from([*sorted(KNOWN_CELL_TYPES), "heading", "", "Code"]))
        elif op == "source":
            parent[key] = data.draw(st.one_of(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=3)))
        else:
            parent[key] = data.draw(json_value)
    return doc


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """Flip, cut, insert and splice bytes."""
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if not b:
            break
        i = data.draw(st.integers(0, len(b) - 1))
        if op == "flip":
            b[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del b[i:i + data.draw(st.integers(1, 64))]
        elif op == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            del b[i:]
    return bytes(b)


def assert_read_or_one_line(data: bytes) -> None:
    """The reader's contract: a v4 notebook of known cells with text sources, or one clear line."""
    try:
        nb = parse_notebook(data, "fuzz.ipynb")
    except SubmissionError as e:
        msg = str(e)
        assert msg.startswith("fuzz.ipynb: ") and "\n" not in msg and len(msg) < 400
        return
    assert nb.nbformat == 4
    for c in nb.cells:
        assert c.cell_type in KNOWN_CELL_TYPES and isinstance(c.source, str)
        if c.cell_type == "code":
            assert c.outputs == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_survives_byte_mutations(data: st.DataObject):
    raw = data.draw(st.sampled_from(SEED_BYTES))
    assert_read_or_one_line(mutate_bytes(data, raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_survives_structure_mutations(data: st.DataObject):
    doc = json.loads(data.draw(st.sampled_from(SEED_BYTES)))
    mutated = mutate_json(data, doc, data.draw(st.integers(1, 4)))
    assert_read_or_one_line(json.dumps(mutated).encode())


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(data=st.data())
def test_grade_command_survives_mutated_notebooks(data: st.DataObject, tmp_path_factory):
    doc = json.loads(SOLUTION.read_bytes())
    mutated = mutate_json(data, doc, data.draw(st.integers(1, 3)))
    path: Path = tmp_path_factory.mktemp("fuzz") / "sub.ipynb"
    path.write_text(json.dumps(mutated))
    out = path.with_suffix(".json")
    result = CliRunner().invoke(main, [str(path), "--assignment", "sigmoid-2-3-1", "--format", "json",
                                       "-o", str(out), "--timeout", "10", "--total-timeout", "60"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("grade: error:")
    else:
        report = json.loads(out.read_text())
        assert report["schema"] == "grader.report/1" and 0 <= report["score"] <= report["max_score"]
