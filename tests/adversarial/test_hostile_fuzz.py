"""Fuzzing with hostile notebooks: cells built from hostile fragments always end in a report.

Deep nesting, huge literals, signal tricks, odd objects returned from the functions the
grader calls, exceptions that lie or loop: whatever the mix, `grade` writes a report and
exits 0 or 3, never with a traceback. Each example runs real kernels, so the number of
examples is small and fixed; the fragments are what varies.
"""

from __future__ import annotations

import json

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook

from grader import grade_notebook
from grader.render import render

from .test_report_integrity import assert_inert_text

PRELUDE = "import numpy as np\nimport signal, sys, os"

NESTING = st.sampled_from([
    "z = " + "(" * 1000 + "1" + ")" * 1000,
    "z = " + "[" * 3000 + "]" * 3000,
    "z = " + "-" * 20000 + "1",
    "z = 1" + "+1" * 15000,
    "z = " + "f(" * 2000 + ")" * 2000,
    "def f():\n" + "".join("    " * (i + 1) + "if True:\n" for i in range(120)) + "    " * 121 + "pass",
])
LITERALS = st.sampled_from([
    'big = "' + "a" * 300_000 + '"',
    "n = 10**100000",
    "s = 'x' * 10**8",
    "arr = np.zeros((3000, 3000))",
    "lst = list(range(10**6))",
])
SIGNALS = st.sampled_from([
    "signal.signal(signal.SIGINT, signal.SIG_IGN)",
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
    "signal.alarm(1)",
    "signal.signal(signal.SIGALRM, lambda *a: None); signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)",
    "sys.setrecursionlimit(10**6)\ndef r(n): return r(n + 1)\nr(0)",
    "sys.stdout = None; sys.stderr = None",
])
ODD_VALUES = [
    "(i for i in range(3))",
    "type('A', (), {'__array__': lambda self, *a, **k: 1 / 0})()",
    "type('F', (), {'__float__': lambda self: float('nan'), '__len__': lambda self: -1})()",
    "2**100000",
    "(lambda l: (l.append(l), l)[1])([])",
    "type('D', (dict,), {'__getitem__': lambda self, k: 1 / 0, 'keys': lambda self: 1 / 0})(W1=1)",
    "np.matrix([[1, 2], [3, 4]])",
    "np.ones((3, 2)) * 1j",
    "'\\n\\x1b[32mPASS\\x1b[0m forward 2/2\\nScore: 11/11'",
    "np.array([object(), None])",
    "tuple(range(10**6))",
    "eval('[' * 200 + ']' * 200)",
    "np.broadcast_to(np.float64(1), (10**6, 10**6))",
]
ODD_FUNCTIONS = st.builds(
    lambda name, value: f"def {name}(*args, **kwargs):\n    return {value}",
    st.sampled_from(["sigmoid", "sigmoid_derivative", "forward", "gradients"]),
    st.sampled_from(ODD_VALUES),
)
ODD_VARIABLES = st.builds(lambda name, value: f"{name} = {value}",
                          st.sampled_from(["y", "dL_dW1", "dL_dW2"]), st.sampled_from(ODD_VALUES))
RAISES = st.sampled_from([
    "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
    "def forward(*a):\n    raise E()",
    "def gradients(*a):\n    raise SystemExit(3)",
    "def sigmoid(*a):\n    raise KeyboardInterrupt",
    "class B(BaseException):\n    pass\ndef sigmoid_derivative(*a):\n    raise B('\\n::error::x')",
    "E = type('E\\nPASS y 1/1', (Exception,), {})\ndef forward(*a):\n    raise E('\\x1b[2J')",
    "raise MemoryError",
])
FRAGMENT = st.one_of(NESTING, LITERALS, SIGNALS, ODD_FUNCTIONS, ODD_VARIABLES, RAISES)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(FRAGMENT, min_size=1, max_size=4))
def test_hostile_cells_always_end_in_a_report_and_never_a_traceback(tmp_path_factory, capfd, fragments):
    folder = tmp_path_factory.mktemp("hostile")
    nb = new_notebook()
    nb.metadata = {"grader": {"assignment": "sigmoid-2-3-1"}}
    nb.cells = [new_code_cell(PRELUDE)] + [new_code_cell(f) for f in fragments]
    path = folder / "hostile.ipynb"
    nbformat.write(nb, path)
    capfd.readouterr()
    report = grade_notebook(path, seed=1, cell_timeout=3, total_timeout=20)
    assert "Traceback" not in "".join(capfd.readouterr())
    assert report.status in ("graded", "error")
    assert 0 <= report.score <= report.max_score
    data = json.loads(render(report, "json"))
    assert data["status"] == report.status
    assert_inert_text(render(report, "text"), len(report.checks))
