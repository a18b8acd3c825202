"""Gradients by finite differences, however the loop is written, are flagged `numerical_gradient`.

Detection rests on what the code does during a gradient call (it evaluates the notebook's own
code many times on inputs nudged a little from the same point, in any direction, through any
helper, argument, global or object), never on the shape of the student's loop. Backpropagation
by hand, with loops over samples and units, is never flagged.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.adversarial.helpers import ASSIGNMENT, ROOT
from tests.conftest import graded

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"

LOSS = '''
def _loss(x, t, W1, W2):
    y = sigmoid(W2 @ sigmoid(W1 @ x))
    return 0.5 * float(np.sum((y - t) ** 2))
'''

ATTACKS = {
    # directional derivatives along a random basis, solved for the gradient
    "random_basis": LOSS + '''
def gradients(x, t, W1, W2):
    theta = np.concatenate([W1.ravel(), W2.ravel()]).astype(float)
    n = theta.size
    rng = np.random.default_rng(7)
    V = rng.standard_normal((n, n))
    d = np.empty(n)
    eps = 1e-6
    for k in range(n):
        a = theta + eps * V[k]
        b = theta - eps * V[k]
        d[k] = (_loss(x, t, a[:6].reshape(3, 2), a[6:].reshape(1, 3))
                - _loss(x, t, b[:6].reshape(3, 2), b[6:].reshape(1, 3))) / (2 * eps)
    g = np.linalg.solve(V, d)
    return g[:6].reshape(3, 2), g[6:].reshape(1, 3)
''',
    # the perturbed weights reach the loss through module-level state of another name
    "module_state": '''
_state = {}

def _cost():
    y = sigmoid(_state["B"] @ sigmoid(_state["A"] @ _state["x"]))
    return 0.5 * float(np.sum((y - _state["t"]) ** 2))

def gradients(x, t, W1, W2):
    grads = []
    for W in (W1, W2):
        G = np.zeros(W.shape)
        for idx in np.ndindex(*W.shape):
            for sign in (1, -1):
                P = np.array(W, dtype=float)
                P[idx] += sign * 1e-5
                _state.update(x=x, t=t, A=P if W is W1 else W1, B=P if W is W2 else W2)
                G[idx] += sign * _cost() / 2e-5
        grads.append(G)
    return tuple(grads)
''',
    # one flattened parameter vector, forward differences, through a lambda
    "flat_vector_lambda": LOSS + '''
def gradients(x, t, W1, W2):
    J = lambda th: _loss(x, t, th[:6].reshape(3, 2), th[6:].reshape(1, 3))
    theta = np.concatenate([W1.ravel(), W2.ravel()]).astype(float)
    base = J(theta)
    g = np.array([(J(theta + 1e-7 * e) - base) / 1e-7 for e in np.eye(theta.size)])
    return g[:6].reshape(3, 2), g[6:].reshape(1, 3)
''',
    # an object whose weights are nudged in place, its method called with no arguments
    "object_in_place": '''
class _Net:
    def __init__(self, x, t, W1, W2):
        self.x, self.t, self.W1, self.W2 = x, t, np.array(W1, dtype=float), np.array(W2, dtype=float)

    def cost(self):
        y = sigmoid(self.W2 @ sigmoid(self.W1 @ self.x))
        return 0.5 * float(np.sum((y - self.t) ** 2))

def gradients(x, t, W1, W2):
    net = _Net(x, t, W1, W2)
    out = []
    for W in (net.W1, net.W2):
        G = np.zeros(W.shape)
        it = np.nditer(W, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = W[i]
            W[i] = old + 1e-6
            up = net.cost()
            W[i] = old - 1e-6
            down = net.cost()
            W[i] = old
            G[i] = (up - down) / 2e-6
        out.append(G)
    return tuple(out)
''',
}


def _notebook(tmp_path: Path, name: str) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:  # the hand-written gradients go; the attack's own takes their place
        if "def gradients" in cell.source:
            cell.source = ATTACKS[name] + "\n\ndL_dW1, dL_dW2 = gradients(x0, t, W1, W2)\n"
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_finite_differences_in_disguise_are_flagged_and_penalised(tmp_path: Path, name: str):
    report = graded(_notebook(tmp_path, name), ASSIGNMENT)
    grads = [c for c in report.checks if c.target.startswith("gradients")]
    assert grads and all(c.status == "pass" for c in grads), [(c.id, c.message) for c in grads]  # right values
    assert any(f.code == "numerical_gradient" and f.target == "gradients" for f in report.flags), report.flags
    earned = sum(c.points for c in report.checks)
    assert report.score < earned  # the penalty applies
