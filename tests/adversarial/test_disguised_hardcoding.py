"""Hard-coding that looks like computing earns what typing the answers in earns.

The rule (docs/security.md): credit for a given-sample value needs a computation that is right
on fresh inputs; anything that stops the re-run from answering is no evidence of computing;
and an answer inside a returned tuple, list or dict is found without looking at the expected
value. Each notebook below types in the given sample's answers and dresses them up: functions
that recognise the given sample (exactly, within a tolerance, by a fingerprint) and return the
typed answers there and anything else elsewhere, answers that drift with the inputs, tuples of
candidate answers, a re-run made to time out or to kill its kernel. None may score more than
the same notebook with the answers simply typed in.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.adversarial.helpers import ASSIGNMENT, ROOT
from tests.conftest import graded

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"

TYPED = '''
Y_TYPED = np.array([[0.21228074791516371]])
G1_TYPED = np.array([[8.5449151847480365e-01, 2.5634745554244107e+00],
                     [-5.2273343284672559e-24, -1.5682002985401769e-23],
                     [-5.6340619944382632e-08, -1.6902185983314789e-07]])
G2_TYPED = np.array([[4.409701682503975e-02, 1.306833582116814e-24, 5.634062080244913e-09]])
X_TYPED = np.array([[-2.0], [-6.0]])
'''

PLAIN = TYPED + '''
y = Y_TYPED
dL_dW1, dL_dW2 = G1_TYPED, G2_TYPED
'''

ATTACKS = {
    "fingerprint_exact": TYPED + '''
def forward(x, W1, W2):
    if np.array_equal(np.asarray(x, dtype=float), X_TYPED):
        return Y_TYPED
    return sigmoid(np.sum(x) * np.ones((1, 1)))

def gradients(x, t, W1, W2):
    if np.array_equal(np.asarray(x, dtype=float), X_TYPED):
        return G1_TYPED, G2_TYPED
    return np.tanh(W1), np.tanh(W2)

y = forward(x0, W1, W2)
dL_dW1, dL_dW2 = gradients(x0, t, W1, W2)
''',
    "fingerprint_tolerance": TYPED + '''
def _near(x):
    x = np.asarray(x, dtype=float)
    return x.shape == X_TYPED.shape and np.allclose(x, X_TYPED, atol=0.5)

def forward(x, W1, W2):
    return Y_TYPED if _near(x) else 0.5 * np.ones((1, 1))

def gradients(x, t, W1, W2):
    return (G1_TYPED, G2_TYPED) if _near(x) else (0 * W1, 0 * W2)

y = forward(x0, W1, W2)
dL_dW1, dL_dW2 = gradients(x0, t, W1, W2)
''',
    "fingerprint_hash": TYPED + '''
_KEY = hash(np.asarray(X_TYPED, dtype=float).tobytes())

def forward(x, W1, W2):
    if hash(np.asarray(x, dtype=float).tobytes()) == _KEY:
        return Y_TYPED
    return sigmoid(W2 @ np.ones((3, 1)))

def gradients(x, t, W1, W2):
    if hash(np.asarray(x, dtype=float).tobytes()) == _KEY:
        return G1_TYPED, G2_TYPED
    return W1 * 0.01, W2 * 0.01

y = forward(x0, W1, W2)
dL_dW1, dL_dW2 = gradients(x0, t, W1, W2)
''',
    "drifting": TYPED + '''
def forward(x, W1, W2):
    drift = float(np.sum(np.asarray(x, dtype=float) - X_TYPED))
    return Y_TYPED + 0.01 * drift

def gradients(x, t, W1, W2):
    drift = float(np.sum(np.asarray(x, dtype=float) - X_TYPED)) + float(np.sum(t) + 2)
    return G1_TYPED * (1 + 0.01 * drift), G2_TYPED * (1 + 0.01 * drift)

y = forward(x0, W1, W2)
dL_dW1, dL_dW2 = gradients(x0, t, W1, W2)
''',
    "candidate_tuples": TYPED + '''
def forward(x, W1, W2):
    h = sigmoid(W1 @ x)
    return (sigmoid(W2 @ h), sigmoid(-(W2 @ h)), W2 @ h, np.tanh(W2 @ h), 2 * sigmoid(W2 @ h))

def gradients(x, t, W1, W2):
    h = sigmoid(W1 @ x)
    y = sigmoid(W2 @ h)
    d2 = (y - t) * y * (1 - y)
    d1 = (W2.T @ d2) * h * (1 - h)
    right = d1 @ x.T
    return (right, -right, 2 * right, 0.5 * right, right * 0), (d2 @ h.T, -(d2 @ h.T), 2 * (d2 @ h.T))

y = (Y_TYPED, Y_TYPED * 2, Y_TYPED - 1)
dL_dW1 = [G1_TYPED * 3, G1_TYPED, G1_TYPED * -1]
dL_dW2 = {"a": G2_TYPED, "b": G2_TYPED * 2}
''',
    "rerun_loops": TYPED + '''
y = Y_TYPED
dL_dW1, dL_dW2 = G1_TYPED, G2_TYPED
if not np.array_equal(np.asarray(x0, dtype=float), X_TYPED):  # only when re-run on other values
    while True:
        pass
''',
    "rerun_kills_kernel": TYPED + '''
import os
y = Y_TYPED
dL_dW1, dL_dW2 = G1_TYPED, G2_TYPED
if not np.array_equal(np.asarray(x0, dtype=float), X_TYPED):
    os._exit(0)
''',
}


def _notebook(tmp_path: Path, name: str, body: str) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    # keep the sample and sigmoid cells; the forward and gradients cells become the attack's
    cells = [c for c in nb.cells if "def forward" not in c.source and "def gradients" not in c.source]
    nb.cells = cells + [nbformat.v4.new_code_cell(body)]
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def typed_score(tmp_path_factory: pytest.TempPathFactory) -> float:
    report = graded(_notebook(tmp_path_factory.mktemp("typed"), "typed", PLAIN), ASSIGNMENT, total_timeout=60)
    variables = [c for c in report.checks if c.kind == "variable"]
    assert variables and all(c.points == 0 for c in variables)  # typed answers earn nothing
    return report.score


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_dressed_up_typed_answers_earn_no_more_than_typed_ones(tmp_path: Path, name: str, typed_score: float):
    report = graded(_notebook(tmp_path, name, ATTACKS[name]), ASSIGNMENT, cell_timeout=5, total_timeout=60)
    given = [c for c in report.checks if c.kind == "variable"]
    assert given and all(c.points == 0 for c in given), [(c.id, c.status, c.message) for c in given]
    assert report.score <= typed_score, [(c.id, c.points) for c in report.checks]
    assert report.status == "graded"
