"""Hidden inputs never leave through a hidden check's feedback.

During a hidden call the notebook's code holds the hidden inputs and can try to smuggle them
out through anything the grader might show: an exception's message or class name, the line
that raised, the shape or keys of what it returns, a string it returns, text it prints or
warns. Each variation below spells the hidden inputs (marked LEAK) or a shape of its choosing
(1237 x 11) only on hidden calls; no output format may carry either.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from grader.render import RENDERERS, render
from tests.adversarial.helpers import ASSIGNMENT, ROOT
from tests.conftest import graded

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"

PRELUDE = '''
import warnings
import numpy as np
_x0 = np.asarray(x0, dtype=float).copy()
_forward, _gradients = forward, gradients

def _hidden(x):
    x = np.asarray(x, dtype=float)
    return x.shape != _x0.shape or not np.allclose(x, _x0)

def _code(*arrays):
    return "LEAK" + "_".join(f"{abs(v) * 1e6:.0f}" for a in arrays for v in np.ravel(a))
'''

ATTACKS = {
    "exception_class": '''
def forward(x, W1, W2):
    if _hidden(x):
        raise type(_code(x, W1), (ValueError,), {"__module__": "builtins"})(_code(W2))
    return _forward(x, W1, W2)

def gradients(x, t, W1, W2):
    if _hidden(x):
        raise type(_code(x, t), (ArithmeticError,), {"__module__": "numpy"})()
    return _gradients(x, t, W1, W2)
''',
    "exception_message": '''
def forward(x, W1, W2):
    if _hidden(x):
        raise ValueError(_code(x, W1, W2))
    return _forward(x, W1, W2)

def gradients(x, t, W1, W2):
    if _hidden(x):
        assert False, _code(x, t)
    return _gradients(x, t, W1, W2)
''',
    "shape": '''
def forward(x, W1, W2):
    return np.zeros((1237, 11)) if _hidden(x) else _forward(x, W1, W2)

def gradients(x, t, W1, W2):
    g1, g2 = _gradients(x, t, W1, W2)
    return (np.zeros((1237, 11)), np.ones((11, 1237))) if _hidden(x) else (g1, g2)
''',
    "keys_and_strings": '''
def forward(x, W1, W2):
    return _code(x, W1) if _hidden(x) else _forward(x, W1, W2)

def gradients(x, t, W1, W2):
    g1, g2 = _gradients(x, t, W1, W2)
    if _hidden(x):
        return {_code(x): g1, _code(t): g2, "W1": [_code(W1)] * 3}
    return g1, g2
''',
    "printed_and_warned": '''
def forward(x, W1, W2):
    if _hidden(x):
        print(_code(x, W1, W2))
        warnings.warn(_code(x))
        return _forward(x, W1, W2) * 3
    return _forward(x, W1, W2)

def gradients(x, t, W1, W2):
    if _hidden(x):
        import sys
        sys.stderr.write(_code(x, t))
        raise RuntimeError(_code(W1))
    return _gradients(x, t, W1, W2)
''',
}


def _line_attack() -> str:
    """An exception raised on a line picked by the hidden input: the line number spells it."""
    lines = ["def forward(x, W1, W2):", "    if _hidden(x):", "        k = int(abs(np.ravel(x)[0]) * 1000) % 40"]
    lines += [f"        if k == {i}: raise ValueError()" for i in range(40)]
    lines += ["    return _forward(x, W1, W2)"]
    return "\n".join(lines) + "\n"


ATTACKS["raising_line"] = _line_attack()


def _notebook(tmp_path: Path, attack: str) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PRELUDE))
    nb.cells.append(nbformat.v4.new_code_cell(ATTACKS[attack]))
    path = tmp_path / f"{attack}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_no_output_format_carries_what_the_code_made_of_hidden_inputs(tmp_path: Path, attack: str):
    report = graded(_notebook(tmp_path, attack), ASSIGNMENT)
    hidden = [c for c in report.checks if c.visibility == "hidden"]
    assert any(c.status != "pass" and c.target == "forward" for c in hidden), [(c.id, c.status) for c in hidden]
    assert report.status == "graded"
    for fmt in RENDERERS:
        text = render(report, fmt)
        assert "LEAK" not in text, (fmt, attack)
        assert "1237" not in text, (fmt, attack)
    for c in hidden:
        said = c.message + " ".join(d.message for d in c.diagnosis) + repr(c.detail)
        assert "cell" not in said and "line" not in said, (c.id, said)


def test_public_checks_still_show_the_students_own_values(tmp_path: Path):
    """The rule is for hidden calls only: a public check's failure still shows what came back."""
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def sigmoid(a):\n    raise ValueError('my own message PUBLIC')\n"))
    path = tmp_path / "public.ipynb"
    nbformat.write(nb, path)
    report = graded(path, ASSIGNMENT)
    sig = next(c for c in report.checks if c.target == "sigmoid")
    assert sig.visibility == "public" and "PUBLIC" in sig.message and "ValueError" in sig.message
