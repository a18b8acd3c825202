"""`grade new`'s look at a solution as it runs: the values its functions are called with.

Run as `python -m grader.authoring.trace NOTEBOOK OUT` (a child process, in the notebook's
folder, so that the course's own modules and data are found): it runs the solution's code
cells in order (magics left out, a cell that raises is noted and the rest run on) and, as
each cell defines top-level functions and classes, wraps them so that their first call is
recorded: the arguments (copied before and after the call), the result, the notebook's
global values the function reads, and for a method the object's parameters. The record goes
to OUT as a pickle of plain values (numpy arrays, numbers, lists, dicts). Only an instructor's
own solution is run this way: it is their code, on their machine.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

# what a function reading the notebook's globals may read as data (not functions or modules)
_DATA = (np.ndarray, int, float, list, dict)
# names in a function's code that mark it as drawing random numbers (an initialisation)
RANDOM_NAMES = {"random", "randn", "rand", "randint", "normal", "uniform", "shuffle", "permutation", "seed"}


def plain(value: Any, depth: int = 0) -> Any:
    """A copy of a value as plain data (arrays, numbers, lists, dicts), or None when it is not."""
    if depth > 6:
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.copy()
    if isinstance(value, (bool, int, float, np.number)):
        return value.item() if isinstance(value, np.number) else value
    if isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return None if any(i is None for i in items) else (items if isinstance(value, list) else tuple(items))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: plain(v, depth + 1) for k, v in value.items()}
        return None if any(v is None for v in items.values()) else items
    return None


def state_of(obj: Any) -> dict[str, Any]:
    """An object's parameters: its attributes holding arrays, or dicts of arrays."""
    out = {}
    for name, value in vars(obj).items() if hasattr(obj, "__dict__") else ():
        if isinstance(value, np.ndarray) or (isinstance(value, dict) and value
                                             and all(isinstance(v, np.ndarray) for v in value.values())):
            out[name] = plain(value)
    return out


class Recorder:
    """The first call of every function and method the notebook defines."""

    def __init__(self, ns: dict[str, Any]):
        self.ns = ns
        self.calls: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.wrapped: set[int] = set()

    def wrap_new(self) -> None:
        """Wrap the top-level functions and the methods of classes defined since the last cell."""
        for name, value in list(self.ns.items()):
            if name.startswith("_") or id(value) in self.wrapped:
                continue
            if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
                self.ns[name] = self.wrapper(name, value, None)
                self.wrapped.add(id(self.ns[name]))
            elif isinstance(value, type) and value.__module__ in ("__main__", *self.local_modules()):
                for attr, fn in list(vars(value).items()):
                    if isinstance(fn, types.FunctionType) and (not attr.startswith("_") or attr == "__init__"):
                        setattr(value, attr, self.wrapper(f"{name}.{attr}", fn, value))
                self.wrapped.add(id(value))

    def local_modules(self) -> list[str]:
        """Modules imported from the notebook's own folder (a course's package)."""
        here = os.getcwd()
        return [n for n, m in list(sys.modules.items())
                if getattr(m, "__file__", None) and str(m.__file__).startswith(here + os.sep)]

    def wrapper(self, name: str, fn: types.FunctionType, owner: type | None) -> Any:
        recorder = self

        @functools.wraps(fn)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            if name in recorder.calls:
                return fn(*args, **kwargs)
            entry = recorder.before(name, fn, args, kwargs, owner)
            result = fn(*args, **kwargs)
            if entry is not None:
                recorder.after(entry, result)
            return result

        return recorded

    def before(self, name: str, fn: types.FunctionType, args: tuple[Any, ...], kwargs: dict[str, Any],
               owner: type | None) -> dict[str, Any] | None:
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError:
            return None
        params = list(inspect.signature(fn).parameters.values())
        passed = dict(bound.arguments)
        entry: dict[str, Any] = {
            "name": name, "params": [p.name for p in params],
            "defaults": [p.name for p in params if p.default is not inspect.Parameter.empty],
            "args": {k: plain(v) for k, v in passed.items()},
            "objects": passed,  # the objects themselves: what the call changes in them
            "globals": self.globals_read(fn),
            "random": bool(RANDOM_NAMES & self.names_read(fn)),
            "method": owner is not None,
        }
        if owner is not None and params and params[0].name in passed:
            entry["state"] = state_of(passed[params[0].name])
        self.calls[name] = entry
        self.order.append(name)
        return entry

    def names_read(self, fn: types.FunctionType) -> set[str]:
        """The global names a function's code reads, and those of the notebook functions it calls."""
        seen: set[int] = set()
        names: set[str] = set()
        todo = [fn]
        while todo:
            f = inspect.unwrap(todo.pop())
            if id(f) in seen or not isinstance(f, types.FunctionType):
                continue
            seen.add(id(f))
            codes = [f.__code__]
            while codes:  # its comprehensions and inner functions too
                code = codes.pop()
                codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
                names |= set(code.co_names)
                todo += [self.ns[n] for n in code.co_names if isinstance(self.ns.get(n), types.FunctionType)]
        return names

    def globals_read(self, fn: types.FunctionType) -> dict[str, Any]:
        """The notebook's data (arrays, numbers) a function reads as globals, directly or through
        the notebook functions it calls, as they are when it is called."""
        out = {}
        for name in sorted(self.names_read(fn)):
            value = self.ns.get(name)
            if isinstance(value, _DATA) and not isinstance(value, bool) and plain(value) is not None:
                out[name] = plain(value)
        return out

    def after(self, entry: dict[str, Any], result: Any) -> None:
        objects = entry.pop("objects")
        entry["result"] = plain(result)
        entry["returns_none"] = result is None
        entry["result_type"] = type(result).__name__
        entry["after"] = {k: plain(v) for k, v in objects.items()}
        if "state" in entry:
            self_name = entry["params"][0]
            entry["state_after"] = state_of(objects[self_name])
            entry["args"].pop(self_name, None)
            entry["after"].pop(self_name, None)


def code_of(cell: dict[str, Any]) -> str:
    """A cell's Python, its magics and shell lines left out."""
    src = cell.get("source", "")
    text = "".join(src) if isinstance(src, list) else str(src)
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in text.splitlines())


def run(notebook: Path) -> dict[str, Any]:
    """Run the notebook's code cells, recording first calls; the record and the final variables."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    recorder = Recorder(ns)
    failed = []
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(code_of(cell))
        except SyntaxError as e:
            failed.append((i + 1, f"SyntaxError: {e}"[:200]))
            continue
        for node in tree.body:  # one statement at a time: a function is wrapped before its cell calls it
            try:
                exec(compile(ast.Module([node], []), f"<cell {i + 1}>", "exec"), ns)
            except BaseException as e:  # noqa: BLE001 (a cell's error, noted; the rest still run)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed.append((i + 1, f"{type(e).__name__}: {e}"[:200]))
                break
            recorder.wrap_new()
    for entry in recorder.calls.values():
        entry.pop("objects", None)  # a call that raised
    variables = {k: plain(v) for k, v in ns.items() if not k.startswith("_") and isinstance(v, _DATA)}
    return {"calls": [recorder.calls[n] for n in recorder.order],
            "variables": {k: v for k, v in variables.items() if v is not None}, "failed": failed}


def main() -> None:
    notebook, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    os.chdir(notebook.parent)
    sys.path.insert(0, str(notebook.parent))
    os.environ.setdefault("MPLBACKEND", "Agg")
    record = run(notebook)
    out.write_bytes(pickle.dumps(record))


if __name__ == "__main__":
    main()
