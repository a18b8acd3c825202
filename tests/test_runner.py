"""The probe runner (grader/run/runner.py) in a plain interpreter: installed as the kernel installs it."""

from __future__ import annotations

import base64
import builtins
import json
import linecache
import sys
from typing import Any

import numpy as np
import pytest

from grader.run import runner
from grader.run.probe import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    Answer,
    ProbeItem,
    Value,
    Where,
    genuine_body,
    loaded_request,
    locate,
    prelude_source,
    probe_request,
)

LIMITS = {"max_elements": MAX_ELEMENTS, "max_payload": MAX_PAYLOAD_BYTES, "max_items": MAX_ITEMS,
          "max_depth": MAX_DEPTH}


class FakeShell:
    """What the runner takes from IPython: the notebook namespace and the display publisher."""

    def __init__(self) -> None:
        self.user_ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.published: list[dict[str, Any]] = []
        self.display_pub = self

    def publish(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.published.append({"output_type": "display_data", "data": data, "metadata": metadata})


@pytest.fixture
def kernel():
    """A namespace with the runner installed by the real prelude, as before any student cell."""
    shell = FakeShell()
    modname = "_grader_probe_test" + str(id(shell))
    shell.user_ns["get_ipython"] = lambda: shell
    exec(prelude_source(modname), shell.user_ns)
    yield shell, modname
    sys.modules.pop(modname, None)


def cell(shell: FakeShell, source: str, name: str = "<cell-1>") -> None:
    """Run notebook code as IPython does: compiled under a name whose lines linecache holds."""
    linecache.cache[name] = (len(source), None, [ln + "\n" for ln in source.splitlines()], name)
    exec(compile(source, name, "exec"), shell.user_ns)


def ask(shell: FakeShell, modname: str, items: list[ProbeItem]) -> dict[str, Any]:
    req = probe_request(modname, items)
    shell.published.clear()
    exec(req.source, shell.user_ns)
    body = genuine_body(shell.published, req)
    assert body is not None, "the runner's own answer must verify"
    return {a["id"]: a for a in body["answers"]}


def test_runner_source_installs_in_its_own_module_dict(kernel):
    shell, modname = kernel
    mod = sys.modules[modname]
    assert mod.probe.__globals__ is not shell.user_ns
    assert mod.probe.__globals__["__builtins__"] is not builtins.__dict__
    assert not any(k.startswith("_grader") for k in shell.user_ns)  # the prelude leaves no names behind


SHADOWS = {
    "any": "def any(it):\n    return False",
    "len": "def len(x):\n    return 0",
    "isinstance": "def isinstance(o, c):\n    return True",
    "sorted": "def sorted(x, **k):\n    return []",
    "zip": "def zip(*a):\n    return iter(())",
    "str": "def str(x=''):\n    return 'ok'",
}


@pytest.mark.parametrize("name", sorted(SHADOWS))
def test_names_shadowed_in_the_notebook_change_nothing(kernel, name: str):
    shell, modname = kernel
    cell(shell, "import numpy as np\ndef double(x, w):\n    return 2 * x + w\n")
    cell(shell, SHADOWS[name])
    sys.modules["_fake_forbidden"] = sys  # loaded after the baseline
    try:
        answers = ask(shell, modname, [ProbeItem("a", "function", ["double"], [np.ones((2, 1)), 1.0], ["x", "w"])])
        req = loaded_request(modname, ["_fake_forbidden", "_not_loaded"])
        shell.published.clear()
        exec(req.source, shell.user_ns)
        body = genuine_body(shell.published, req)
    finally:
        del sys.modules["_fake_forbidden"]
    assert answers["a"]["value"]["t"] == "array" and answers["a"]["value"]["shape"] == [2, 1]
    assert body is not None and body["loaded"] == ["_fake_forbidden"]
    assert body["checked"] == ["_fake_forbidden", "_not_loaded"]


def _lies_to_the_runner(real: Any) -> Any:
    """A builtin that works for everyone but the runner, as a notebook would write it."""
    def fake(*a: Any, **k: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__", "").startswith("_grader"):
            return None
        return real(*a, **k)
    return fake


@pytest.mark.parametrize("name", ["any", "len", "isinstance", "sorted", "zip", "str", "all", "list"])
def test_patched_builtins_module_changes_nothing(kernel, name: str):
    shell, modname = kernel
    cell(shell, "def pair(a):\n    return (a, a)\n")
    req = probe_request(modname, [ProbeItem("p", "function", ["pair"], [np.zeros((1, 3))], ["a"])])
    real = getattr(builtins, name)
    setattr(builtins, name, _lies_to_the_runner(real))
    try:
        exec(req.source, shell.user_ns)
    finally:
        setattr(builtins, name, real)
    body = genuine_body(shell.published, req)
    assert body is not None
    v = body["answers"][0]["value"]
    assert v["t"] == "seq" and v["n"] == 2 and v["array"]["shape"] == [2, 1, 3]


def test_patched_numpy_and_json_after_install_change_nothing(kernel, monkeypatch: pytest.MonkeyPatch):
    shell, modname = kernel
    cell(shell, "def ident(a):\n    return a\n")
    monkeypatch.setattr(np, "asarray", lambda *a, **k: np.zeros(1))
    monkeypatch.setattr(json.JSONDecoder, "decode", lambda self, s, *a, **k: {"items": []})
    answers = ask(shell, modname, [ProbeItem("i", "function", ["ident"], [np.arange(4.0)], ["a"])])
    monkeypatch.undo()
    assert answers["i"]["value"]["shape"] == [4]


def test_answer_carries_the_digest_of_the_request_as_received(kernel):
    shell, modname = kernel
    cell(shell, "def f(a):\n    return a\n")
    req = probe_request(modname, [ProbeItem("f", "function", ["f"], [1.0])])
    rewritten = req.source.replace('"f"]', '"g"]')  # as an input transformer might
    assert rewritten != req.source
    shell.published.clear()
    exec(rewritten, shell.user_ns)
    assert len(shell.published) == 1
    assert genuine_body(shell.published, req) is None


def test_missing_duplicated_and_partial_answers_are_rejected(kernel):
    shell, modname = kernel
    cell(shell, "def f(a):\n    return a\n")
    req = probe_request(modname, [ProbeItem("f", "function", ["f"], [1.0]), ProbeItem("g", "function", ["f"], [2.0])])
    assert genuine_body([], req) is None
    exec(req.source, shell.user_ns)
    good = list(shell.published)
    assert genuine_body(good, req) is not None
    assert genuine_body(good + good, req) is None
    body = dict(next(iter(good[0]["data"].values())))
    body["answers"] = body["answers"][:1]
    partial = [{"output_type": "display_data", "data": {k: body for k in good[0]["data"]}}]
    assert genuine_body(partial, req) is None


def test_loaded_answer_without_the_modules_it_checked_is_rejected(kernel):
    shell, modname = kernel
    req = loaded_request(modname, ["torch"])
    forged = {"nonce": req.nonce, "digest": req.digest, "answers": [], "loaded": []}
    outputs = [{"output_type": "display_data", "data": {f"application/x-grader-{req.nonce}+json": forged}}]
    assert genuine_body(outputs, req) is None
    forged["checked"] = ["torch"]
    assert genuine_body(outputs, req) is not None


def test_error_says_where_in_the_notebook_it_was_raised(kernel):
    shell, modname = kernel
    cell(shell, "def helper(x):\n    raise ValueError(f'secret {x}')\n", "<cell-3>")
    cell(shell, "def f(x):\n    y = x + 1\n    return helper(y)\n", "<cell-4>")
    v = ask(shell, modname, [ProbeItem("f", "function", ["f"], [41.0])])["f"]["value"]
    assert v["t"] == "error" and v["ename"] == "ValueError" and v["own"] is False
    assert v["where"]["line"] == 2 and v["where"]["text"] == "raise ValueError(f'secret {x}')"
    answers = {"f": Answer("f", "f", Value("error", where=Where(v["where"]["file_sha"], 2, v["where"]["text"])))}
    cells = [[""], ["x = 1"], ["def helper(x):\n    raise ValueError(f'secret {x}')\n"], ["def f(x): ..."]]
    locate(answers, cells)
    w = answers["f"].value.where
    assert w is not None and (w.cell, w.cell_line) == (3, 2)
    assert w.describe() == "in cell 3, line 2: `raise ValueError(f'secret {x}')`"


def test_a_line_the_notebook_did_not_write_is_never_shown():
    answers = {"f": Answer("f", "f", Value("error", where=Where("0" * 64, 1, "x = [[1.5, 2.5]]")))}
    locate(answers, [["def f(x):\n    return x\n"]])
    w = answers["f"].value.where
    assert w is not None and w.cell == 0 and w.text == ""


FD = """
def loss(x, W):
    return float(((W @ x) ** 2).sum())

def grad_fd(x, W, h=1e-6):
    g = np.zeros(W.shape)
    for i in np.ndindex(W.shape):
        Wp = W.copy(); Wp[i] += h
        Wm = W.copy(); Wm[i] -= h
        g[i] = (loss(x, Wp) - loss(x, Wm)) / (2 * h)
    return g

def grad_fd_inplace(x, W, h=1e-6):
    W = W.astype(float)
    g = np.zeros(W.shape)
    for i in np.ndindex(W.shape):
        old = W[i]; W[i] = old + h
        up = loss(x, W)
        W[i] = old
        g[i] = (up - loss(x, W)) / h
    return g

def sig(a):
    return 1 / (1 + np.exp(-a))

def grad_by_hand(x, W):
    total = np.zeros(W.shape)
    for k in range(x.shape[1]):  # per sample, calling the forward pass and sigmoid often
        xk = x[:, [k]]
        for _ in range(5):
            sig(W @ xk)
        loss(xk, W)
        total += 2 * (W @ xk) @ xk.T
    return total
"""


@pytest.mark.parametrize("fn, numerical", [("grad_fd", True), ("grad_fd_inplace", True), ("grad_by_hand", False)])
def test_finite_differences_are_told_from_backprop(kernel, fn: str, numerical: bool):
    shell, modname = kernel
    cell(shell, "import numpy as np\n" + FD)
    x = np.arange(8.0).reshape(2, 4)
    W = np.array([[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]])
    ans = ask(shell, modname, [ProbeItem("g", "function", [fn], [x, W], ["x", "W"], watch=True)])["g"]
    assert ans["numerical"] is numerical
    assert ans["value"]["shape"] == [3, 2]
    assert sys.getprofile() is None  # the hook is gone after the call


def test_perturbation_watch_in_plain_python():
    ns: dict[str, Any] = {}
    exec("def f(W):\n    return W.sum()\n", ns)
    W = np.ones((2, 2))
    watch = runner.PerturbationWatch(ns, [W])
    sys.setprofile(watch)
    try:
        for i in range(4):
            moved = W.copy()
            moved.flat[i] += 1e-6
            ns["f"](moved)
        ns["f"](W)
    finally:
        sys.setprofile(None)
    assert watch.numerical() and len(watch.nudges) >= 4


def test_perturbation_watch_sees_any_direction_and_not_a_loop_over_samples():
    ns: dict[str, Any] = {}
    exec("def f(W):\n    return W.sum()\n", ns)
    W = np.ones((3, 2))
    rng = np.random.default_rng(0)
    watch = runner.PerturbationWatch(ns, [W])
    sys.setprofile(watch)
    try:  # a random basis, on copies: still nudges of one point
        for _ in range(4):
            ns["f"](W + 1e-6 * rng.standard_normal(W.shape))
    finally:
        sys.setprofile(None)
    assert watch.numerical()
    X = rng.standard_normal((50, 3, 2))
    watch = runner.PerturbationWatch(ns, [X])
    sys.setprofile(watch)
    try:  # one sample at a time: arrays that differ by the data, not nudges
        for i in range(50):
            ns["f"](X[i])
    finally:
        sys.setprofile(None)
    assert not watch.numerical()


def test_enter_workdir_puts_the_work_folder_last(tmp_path, monkeypatch: pytest.MonkeyPatch):
    start = tmp_path / "start"
    work = tmp_path / "work"
    start.mkdir()
    work.mkdir()
    monkeypatch.chdir(start)
    monkeypatch.setattr(sys, "path", ["", str(start), *sys.path[:3], str(work)])
    exec(runner.enter_workdir_source(str(work)), {})
    import os

    assert os.getcwd() == str(work)
    assert sys.path[-1] == str(work) and sys.path.count(str(work)) == 1
    assert "" not in sys.path and str(start) not in sys.path


def test_a_module_removed_from_sys_modules_still_counts_as_loaded(tmp_path, monkeypatch: pytest.MonkeyPatch):
    pkg = tmp_path / "autodiff_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import autodiff_pkg.core\n")  # as torch loads its parts
    (pkg / "core.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    shell = FakeShell()
    modname = "_grader_probe_audit"
    shell.user_ns["get_ipython"] = lambda: shell
    exec(prelude_source(modname), shell.user_ns)
    try:
        cell(shell, "import importlib, sys\nimportlib.import_module('autodiff' + '_pkg')\n"
                    "for k in [k for k in sys.modules if k.startswith('autodiff_pkg')]:\n    del sys.modules[k]\n")
        assert "autodiff_pkg" not in sys.modules
        req = loaded_request(modname, ["autodiff_pkg", "never_loaded"])
        exec(req.source, shell.user_ns)
        body = genuine_body(shell.published, req)
    finally:
        sys.modules.pop(modname, None)
    assert body is not None and body["loaded"] == ["autodiff_pkg"]


def test_globals_are_bound_for_the_call_and_the_notebooks_own_restored_after(kernel):
    shell, modname = kernel
    cell(shell, "W = 'the notebook own'\ndef f(x):\n    return x * W + b\n")
    item = ProbeItem("f", "function", ["f"], [2.0], globals={"W": 3.0, "b": 1.0})
    value = ask(shell, modname, [item])["f"]["value"]
    assert np.frombuffer(base64.b64decode(value["b64"]))[0] == 7.0  # 2 * 3 + 1: the bound names
    assert shell.user_ns["W"] == "the notebook own" and "b" not in shell.user_ns


def test_an_argument_is_read_after_the_call_along_its_path(kernel):
    shell, modname = kernel
    cell(shell, "def backprop(net, e):\n    for layer in net:\n        for n in layer:\n            n['delta'] = n['out'] - e\n")
    net = [[{"out": 1.0}, {"out": 2.0}], [{"out": 5.0}]]
    item = ProbeItem("b", "function", ["backprop"], [net, 1.0], argument=0, argument_path=["*", "*", "delta"])
    value = ask(shell, modname, [item])["b"]["value"]
    assert value["t"] == "seq" and value["array"]["shape"] == [3]
    item = ProbeItem("b", "function", ["backprop"], [net, 1.0], argument=0, argument_path=[0, 0, "grad"])
    assert ask(shell, modname, [item])["b"]["value"] == {"t": "no_member", "name": "grad"}


def test_the_calls_in_other_vector_conventions_see_the_same_globals(kernel):
    shell, modname = kernel
    cell(shell, "def f(x):\n    return W @ x\n")  # written for 1-D vectors: W (2, 2) @ x
    item = ProbeItem("f", "function", ["f"], [np.ones((2, 1))], alternates=True,
                     globals={"W": np.eye(2)})
    answer = ask(shell, modname, [item])["f"]
    assert answer["alts"]["flat"]["t"] == "array" and "W" not in shell.user_ns
