"""The benchmark's class: 20 submissions of sigmoid-2-3-1 made from its solution notebook.

10 right (the solution in other students' wordings), 10 wrong or hostile (a flipped sign, a
transposed or doubled gradient, typed-in answers, a missing function, a cell that raises, a
forbidden torch import, a kernel that exits, a flood of output, an endless loop).
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "sigmoid-2-3-1"
SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"

NAIVE_SIGMOID = "def sigmoid(a):\n    return 1 / (1 + np.exp(-np.asarray(a, dtype=float)))\n\n\n" \
                "def sigmoid_derivative(a):\n    s = sigmoid(a)\n    return s * (1 - s)"
TYPED_IN = ("y = np.array([[0.00247262]])\n"
            "dL_dW1 = np.array([[1.2e-05, 3.6e-05], [-6.9e-07, -2.1e-06], [6.9e-06, 2.1e-05]])\n"
            "dL_dW2 = np.array([[-1.5e-05, -6.1e-03, -4.5e-08]])")


def _edit(nb: NotebookNode, cell: int, old: str, new: str) -> NotebookNode:
    nb = copy.deepcopy(nb)
    src = nb.cells[cell].source
    assert old in src, (cell, old)
    nb.cells[cell].source = src.replace(old, new)
    return nb


def _append(nb: NotebookNode, source: str) -> NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def _replace(nb: NotebookNode, cell: int, source: str) -> NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells[cell].source = source
    return nb


def submissions() -> list[tuple[str, bool, NotebookNode]]:
    """(name, right, notebook) for each of the 20 submissions."""
    sol = nbformat.read(SOLUTION, as_version=4)
    right = [
        ("right-01-solution", sol),
        ("right-02-comments", _edit(sol, 3, "def forward", "# the forward pass, one layer after the other\ndef forward")),
        ("right-03-naive-sigmoid", _replace(sol, 2, NAIVE_SIGMOID)),
        ("right-04-prints", _append(sol, "print('y =', y)\nprint(dL_dW1.shape, dL_dW2.shape)")),
        ("right-05-markdown", _append(sol, "# a check of the shapes\nassert dL_dW1.shape == W1.shape")),
        ("right-06-renamed", _edit(sol, 4, "delta2", "d2")),
        ("right-07-float-inputs", _edit(sol, 1, "x0 = np.array([[-2], [-6]])", "x0 = np.array([[-2.0], [-6.0]])")),
        ("right-08-extra-loop", _append(sol, "for k in range(3):\n    _ = forward(x0, W1, W2)")),
        ("right-09-naive-and-prints", _append(_replace(sol, 2, NAIVE_SIGMOID), "print(y)")),
        ("right-10-matmul", _edit(sol, 3, "W2 @ sigmoid(W1 @ x)", "np.matmul(W2, sigmoid(np.matmul(W1, x)))")),
    ]
    wrong = [
        ("wrong-01-sign", _edit(sol, 4, "(y - t)", "(t - y)")),
        ("wrong-02-transposed", _edit(sol, 4, "return dL_dW1, dL_dW2", "return dL_dW1.T, dL_dW2.T")),
        ("wrong-03-doubled", _edit(sol, 4, "delta2 = (y - t)", "delta2 = 2 * (y - t)")),
        ("wrong-04-typed-in", _append(sol, TYPED_IN)),
        ("wrong-05-no-gradients", _replace(sol, 4, "dL_dW1 = np.zeros((3, 2))\ndL_dW2 = np.zeros((1, 3))")),
        ("wrong-06-raises", _edit(sol, 3, "y = forward(x0, W1, W2)", "y = forward(x0, W1, W3)")),
        ("hostile-07-torch", _append(sol, "import torch\nprint(torch.__version__)")),
        ("hostile-08-exit", _append(sol, "import os\nos._exit(0)")),
        ("hostile-09-output-flood", _append(sol, "for i in range(20000):\n    print('x' * 200)")),
        ("hostile-10-endless-loop", _append(sol, "while True:\n    pass")),
    ]
    return [(n, True, nb) for n, nb in right] + [(n, False, nb) for n, nb in wrong]


def write_submissions(folder: Path) -> list[Path]:
    """Write the 20 notebooks into `folder`; their paths, right ones first."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, _, nb in submissions():
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths
