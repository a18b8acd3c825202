"""The re-run's fresh sample, wherever the notebook binds it; which cells bind a variable.

The re-run's kernel gets, after the probe runner's prelude, the refresh of the given sample
(grader/judging/rerun_kernel.py, sent as source by `refresh_prelude`); each code cell is
instrumented to call it after every statement that may bind a watched name (`instrument`), at
any depth outside def and class bodies, inside `%%time` cells too. The same reading of the cells
says which cells may assign a variable (`assigning_cells`), for the re-run's standby kernel,
the snapshots of overwritten values and the note on a variable assigned in several cells.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
from nbformat import NotebookNode

from grader.judging import rerun_kernel
from grader.plan.checks import CheckPlan
from grader.report import CheckResult
from grader.submission.notebook import analysable, parse_cell

_PYTHON_CELL_MAGICS = ("time", "capture")  # cell magics whose body is run as Python in the namespace


@functools.cache
def _kernel_source(name: str) -> str:
    """The source of one of rerun_kernel.py's functions, read from the file."""
    return inspect.getsource(getattr(rerun_kernel, name))


def refresh_prelude(modname: str, given: dict[str, Any], fresh: dict[str, Any]) -> str:
    """Kernel code that installs the refresh of the given sample under `modname` (see rerun_kernel.py)."""
    def literal(values: dict[str, Any]) -> str:
        return "{" + ", ".join(f"{k!r}: {np.asarray(v, dtype=float).tolist()!r}" for k, v in values.items()) + "}"

    return (_kernel_source("_grader_fit") + _kernel_source("_grader_install_refresh")
            + f"_grader_install_refresh(get_ipython(), {modname!r}, {literal(given)}, {literal(fresh)}, _grader_fit)\n"
            + "del _grader_install_refresh, _grader_fit\n")


def refresh_call(modname: str) -> str:
    """The statement the re-run's cells run after each statement that may bind the sample."""
    return f"__import__('sys').modules[{modname!r}].refresh()"


def _binds(node: ast.AST, names: set[str], anything: bool) -> bool:
    """Whether a statement may bind one of `names`: directly, or (`anything`) through a call or a
    subscript/attribute store (globals()['x0'] = ..., exec(...), a setup function)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)) and n.id in names:
            return True
        if isinstance(n, ast.alias) and (n.asname or n.name.partition(".")[0]) in names:
            return True
        if isinstance(n, (ast.ExceptHandler, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name in names:
            return True
        if anything and (isinstance(n, ast.Call) or (isinstance(n, (ast.Subscript, ast.Attribute))
                                                     and isinstance(n.ctx, ast.Store))):
            return True
    return False


class _Instrument:
    """Puts the refresh call after every statement that may bind a watched name."""

    def __init__(self, names: set[str], call: str):
        self.names = names
        self.call = call

    def stmt(self) -> ast.stmt:
        return ast.parse(self.call).body[0]

    def body(self, stmts: list[ast.stmt], names: set[str], anything: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for st in stmts:
            self.inner(st, names, anything)
            out.append(st)
            if _binds(st, names, anything):
                out.append(self.stmt())
        return out

    def inner(self, st: ast.stmt, names: set[str], anything: bool) -> None:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            declared = {n for g in ast.walk(st) if isinstance(g, ast.Global) for n in g.names} & self.names
            if declared:  # a setup function: `global x0` makes its assignments the notebook's
                st.body = self.body(st.body, declared, False)
            return
        if isinstance(st, ast.ClassDef):
            return
        header_binds = isinstance(st, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.While, ast.If)) and any(
            _binds(h, names, anything) for h in _headers(st))
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(st, field, None)
            if isinstance(stmts, list) and stmts:
                new = self.body(stmts, names, anything)
                if header_binds and field == "body":
                    new.insert(0, self.stmt())
                setattr(st, field, new)
        for h in getattr(st, "handlers", []) or []:
            h.body = self.body(h.body, names, anything)
        for case in getattr(st, "cases", []) or []:
            case.body = self.body(case.body, names, anything)


def _headers(st: ast.stmt) -> list[ast.AST]:
    """What a compound statement evaluates (and may bind) before its body: targets, items, tests."""
    if isinstance(st, (ast.For, ast.AsyncFor)):
        return [st.target, st.iter]
    if isinstance(st, (ast.With, ast.AsyncWith)):
        return list(st.items)
    if isinstance(st, (ast.While, ast.If)):
        return [st.test]
    return []


def instrument(source: str, names: Sequence[str], call: str) -> str:
    """A cell's code with `call` run after every statement (outside def and class bodies, at any
    depth) that may bind one of `names`; the cell's own code if it cannot be read (or is too long
    to analyse: the sweep after the cell still refreshes the sample)."""
    if not analysable(source):
        return source
    try:
        code = _transformer().transform_cell(source)  # magics become Python and survive
        tree = ast.parse(code)
        tool = _Instrument(set(names), call)
        magic = _python_cell_magic(tree)
        if magic is not None:  # %%time: the body is a string argument; refresh inside it too
            magic.value = instrument(magic.value, names, call)
        else:
            tree.body = tool.body(tree.body, set(names), True)
        return ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
        return source  # it will fail as it did; the sweep after the cell still runs


@functools.cache
def _transformer() -> Any:
    """IPython's cell transformer (stateless between cells: one serves every cell)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def _python_cell_magic(tree: ast.Module) -> ast.Constant | None:
    """The body argument of `get_ipython().run_cell_magic('time', ..., body)`, if the cell is one."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run_cell_magic" and len(call.args) == 3):
        return None
    name, body = call.args[0], call.args[2]
    if (isinstance(name, ast.Constant) and name.value in _PYTHON_CELL_MAGICS
            and isinstance(body, ast.Constant) and isinstance(body.value, str)):
        return body
    return None


def with_fresh_sample(nb: NotebookNode, names: Sequence[str], call: str) -> NotebookNode:
    """A copy of the notebook whose code cells call `call` wherever they may bind the sample.

    Cells stay where they are (same indices), so values read after a cell line up with the
    first run's.
    """
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code" and cell.source.strip():
            cell.source = instrument(cell.source, names, call)
    return out


# Calls through which a cell can bind any global name without naming it in an assignment.
_BINDING_CALLS = {"exec", "eval", "globals", "vars", "setattr", "locals", "__import__"}


def assigning_cells(nb: NotebookNode, name: str) -> list[int]:
    """1-based numbers of the code cells that may bind `name` at notebook level.

    Any binding counts, at any depth: assignments, `for`/`with` targets, the walrus, imports,
    definitions; so do cells that call exec/eval/globals()/setattr, or a notebook function that
    declares `global name`. A value of `name` after each such cell is then a candidate value.
    """
    sources = tuple(c.source if c.cell_type == "code" else None for c in nb.cells)
    return list(_assigning_cells(sources, name))


# Grading asks this of the same cells for every variable, several times: parsed and walked once.
@functools.lru_cache(maxsize=256)
def _assigning_cells(sources: tuple[str | None, ...], name: str) -> tuple[int, ...]:
    trees = [_cell_tree(s) if s is not None else None for s in sources]
    setters = {f.name for t in trees if t is not None for f in ast.walk(t)
               if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
               and any(isinstance(g, ast.Global) and name in g.names for g in ast.walk(f))}
    cells = []
    for i, tree in enumerate(trees):
        if tree is None:
            continue
        if _binds(tree, {name}, anything=False) or any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _BINDING_CALLS | setters
            for n in ast.walk(tree)
        ):
            cells.append(i + 1)
    return tuple(cells)


@functools.lru_cache(maxsize=256)
def _cell_tree(source: str) -> ast.Module | None:
    """A cell's tree, shared by the scans above (which only read it)."""
    return parse_cell(source)


def note_reassigned(nb: NotebookNode, plans: list[CheckPlan], results: list[CheckResult]) -> None:
    """A failing variable that the notebook assigns in several cells: say which value was graded."""
    by_id = {r.id: r for r in results}
    for p in plans:
        if p.check.kind != "variable":
            continue
        name, cells = next(((n, c) for n in [p.check.target, *p.check.aliases] if (c := assigning_cells(nb, n))),
                           ("", []))
        if len(cells) < 2:
            continue
        listed = ", ".join(str(c) for c in cells[:-1]) + f" and {cells[-1]}"
        note = (f"Note: {name} is assigned in cells {listed}; the value graded is the one it has when the "
                f"notebook ends (from cell {cells[-1]}). If an earlier cell computed the asked-for value, "
                "give the later value another name.")
        for t in p.targets:
            r = by_id.get(t.id)
            if r is not None and r.status == "fail" and "graded_after_cell" not in r.detail:
                r.message += " " + note
                if r.diagnosis:
                    r.diagnosis[0].message += " " + note
                r.detail["assigned_in_cells"] = cells


def assignment_source(values: dict[str, Any]) -> str:
    """Python that sets each variable to a value (float repr round-trips exactly), in the notebook's form."""
    lines = [f"_grader_old = {{k: globals()[k] for k in {list(values)!r} if k in globals()}}"]
    for name, v in values.items():
        if isinstance(v, np.ndarray):
            lines.append(f"{name} = __import__('numpy').array({v.tolist()!r}, dtype=float)")
        else:
            lines.append(f"{name} = {float(v)!r}")
    return ("\n".join(lines) + "\n" + _kernel_source("_grader_fit")
            + "_grader_fit(_grader_old, globals())\ndel _grader_fit, _grader_old")
