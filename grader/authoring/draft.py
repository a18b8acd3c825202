"""`grade new`: draft an assignment folder from a solution notebook.

The solution's top-level functions become checks (their parameters the check's inputs) and
`reference.py` stubs with the same signatures, to be written in torch; its top-level literal
variables become the inputs' values. The starter is the solution with stubs: each block
between `# BEGIN SOLUTION` and `# END SOLUTION` lines, or, in a cell without them, each
top-level function's body.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.authoring.draft_spec import (
    Drafted,
    class_checks,
    function_check,
    unpacked_names,
    variable_checks,
)
from grader.authoring.trace import code_of
from grader.errors import GraderError
from grader.kernels.workspace import copy_tree

BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\b")
END = re.compile(r"^\s*#+\s*END SOLUTION\b")
STUB = "raise NotImplementedError"
TRACE_TIMEOUT = 600  # seconds for the solution to run once (a cell that trains for a while included)


@dataclass
class Function:
    """A top-level function of the solution: its name, parameter list and docstring."""

    name: str
    params: list[str]
    signature: str
    doc: str = ""


@dataclass
class Solution:
    """What a draft is made from: the solution's functions, classes and literal top-level variables,
    and what it does when it runs (`record`, from grader/authoring/trace.py)."""

    functions: list[Function] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)  # functions the course gives (in a marked cell, unmarked)
    tree: ast.Module = field(default_factory=lambda: ast.Module([], []))  # all its code cells
    record: dict[str, Any] = field(default_factory=dict)

    def call(self, name: str) -> dict[str, Any] | None:
        """The solution's first call of a function or method, as it ran."""
        return next((c for c in self.record.get("calls", []) if c["name"] == name), None)


def read_solution(notebook: Path) -> tuple[dict[str, Any], Solution]:
    """The notebook's JSON and its functions and variables (a notebook that will not parse is an error)."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GraderError(f"{notebook}: cannot be read as a notebook ({e})") from None
    sol = Solution()
    code = [c for c in cells if c.get("cell_type") == "code"]
    # a solution with nbgrader/Otter marks: only functions holding a marked block are the students'
    marked = any(BEGIN.match(line) for c in code for line in _source(c).splitlines())
    for cell in code:
        source = _source(cell)
        try:
            tree = ast.parse(code_of(cell))
        except SyntaxError:
            continue  # a broken cell: nothing to draft from it
        sol.tree.body += tree.body
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
                sol.functions.append(Function(node.name, params, ast.unparse(node.args), ast.get_docstring(node) or ""))
                lines = source.splitlines()[node.lineno - 1:node.end_lineno]
                if marked and not any(BEGIN.match(line) for line in lines):
                    sol.given.append(node.name)
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                sol.classes.append(node.name)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _literal(node.value)
                if value is not None:
                    sol.variables[node.targets[0].id] = value
    return nb, sol


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def trace_solution(notebook: Path, sol: Solution) -> None:
    """Run the solution in a child Python (grader/authoring/trace.py) and keep what it did; a
    solution that cannot run leaves the draft to its source alone."""
    with tempfile.TemporaryDirectory(prefix="grade-new-") as tmp:
        out = Path(tmp) / "record.pkl"
        try:
            done = subprocess.run([sys.executable, "-m", "grader.authoring.trace", str(notebook.resolve()), str(out)],
                                  capture_output=True, timeout=TRACE_TIMEOUT, check=False,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                      [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])})
            if done.returncode == 0 and out.is_file():
                sol.record = pickle.loads(out.read_bytes())
        except (OSError, subprocess.TimeoutExpired, pickle.UnpicklingError):
            return
    for call in sol.record.get("calls", []):  # classes of the course's own package, used by the notebook
        owner = call["name"].partition(".")[0]
        if call.get("method") and owner not in sol.classes:
            sol.classes.append(owner)


def _literal(node: ast.expr) -> Any:
    """A number or nested list of numbers, also through np.array(...) (None for anything else)."""
    if isinstance(node, ast.Call) and node.args and ast.unparse(node.func) in ("np.array", "numpy.array", "np.asarray"):
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, tuple):
        value = list(value)
    return value if _numeric(value) else None


def _numeric(v: Any) -> bool:
    if isinstance(v, list):
        return bool(v) and all(_numeric(x) for x in v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def stub_source(source: str, computed: frozenset[str] = frozenset(), marked: bool = False) -> str:
    """A cell's code for the starter: marked blocks stubbed; in a notebook without marks
    (`marked` false), top-level function bodies, the methods of top-level classes (but their
    constructor) and the values of the `computed` variables (a notebook of top-level statements)."""
    lines = source.splitlines()
    if any(BEGIN.match(line) for line in lines):
        return _stub_marked(lines)
    if marked:  # the course's own code, in a notebook whose solution blocks are marked
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    out = list(lines)
    nodes = [m for n in tree.body for m in (n.body if isinstance(n, ast.ClassDef) else [n])]
    for node in sorted(nodes, key=lambda n: n.lineno, reverse=True):  # from the bottom: line numbers stay right
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in computed and node.lineno == node.end_lineno):
            out[node.lineno - 1] = f"{node.targets[0].id} = None  # your code here"
            continue
        if not isinstance(node, ast.FunctionDef) or node.name == "__init__":
            continue
        body = node.body
        keep = 1 if ast.get_docstring(node) is not None else 0
        first = body[keep] if keep < len(body) else None
        if first is None:
            continue
        indent = " " * first.col_offset
        start, end = first.lineno - 1, (body[-1].end_lineno or body[-1].lineno)
        out[start:end] = [f"{indent}{STUB}  # your code here"]
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def _stub_marked(lines: list[str]) -> str:
    out: list[str] = []
    inside = False
    for line in lines:
        m = BEGIN.match(line)
        if m and not inside:
            inside = True
            out.append(f"{m.group(1)}{STUB}  # your code here")
        elif inside and END.match(line):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + "\n"


def starter(nb: dict[str, Any], assignment_id: str, computed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The starter notebook: stubbed code, no outputs, the assignment's id in its metadata."""
    nb = json.loads(json.dumps(nb))
    code = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    marked = any(BEGIN.match(line) for c in code for line in _source(c).splitlines())
    for cell in code:
        cell["source"] = stub_source(_source(cell), computed, marked)
        cell["outputs"], cell["execution_count"] = [], None
    nb.setdefault("metadata", {}).setdefault("grader", {})["assignment"] = assignment_id
    return nb


def drafted(sol: Solution, folders: list[str]) -> Drafted:
    """The checks, inputs and reference functions of the draft."""
    d = Drafted()
    if folders:
        d.top += [f"folders = {json.dumps(folders)}  # beside the notebook: the course's package and data", ""]
    for f in sol.functions:
        if f.name in sol.given:
            d.notes.append(f"# {f.name}: left out (given by the course: no solution block in it)")
            continue
        call = sol.call(f.name)
        function_check(d, f.name, call, f.params)
        if call is None and f.doc and d.reference:  # the solution's own words for it
            d.reference[-1] = d.reference[-1].replace('"""What the notebook\'s function returns."""',
                                                      f'"""{f.doc.splitlines()[0]}"""')
    unpacked = unpacked_names(sol.tree)
    calls = {c["name"]: c for c in sol.record.get("calls", [])}
    for cls in sol.classes:
        class_checks(d, cls, calls, unpacked)
    if not sol.functions and not sol.classes:
        variable_checks(d, sol.tree, sol.variables, sol.record.get("variables", {}))
    return d


def reference_text(assignment_id: str, d: Drafted) -> str:
    """reference.py: one function per check, to write in torch, and the generators of the inputs."""
    parts = [f'"""Reference for {assignment_id}: each function takes and returns float64 torch tensors."""\n\n'
             "import numpy as np  # noqa: F401 (the input generators' values)\n"
             "import torch  # noqa: F401 (the bodies are written in torch)\n"]
    parts += [f"\n\n{text}" for text in d.reference]
    return "".join(parts)


def spec_text(assignment_id: str, d: Drafted) -> str:
    """assignment.toml: the checks, their inputs the solution's own values, and what was left out."""
    lines = [f'id = "{assignment_id}"', f'title = "{assignment_id}"', "", *d.top, *d.input_tables(), *d.checks]
    if d.notes:
        lines += ["# Not drafted as checks:", *d.notes, ""]
    return "\n".join(lines)


def draft(folder: Path, solution: Path) -> list[Path]:
    """Write a new assignment folder drafted from a solution notebook; the files written."""
    if (folder / "assignment.toml").exists():
        raise GraderError(f"{folder} already holds an assignment.toml; choose a new folder")
    nb, sol = read_solution(solution)
    trace_solution(solution, sol)
    folders = local_packages(solution, sol)
    d = drafted(sol, folders)
    if not d.checks:
        raise GraderError(f"{solution}: defines no function, class or computed variable to check")
    assignment_id = folder.resolve().name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in folders:  # beside solution.ipynb, as beside the students' notebooks
            copy_tree(solution.parent / name, folder / name)
        # a course whose code lives in its package: the students' folder is the starter notebook
        # beside the package with the checked classes' methods stubbed
        start = "starter/starter.ipynb" if folders else "starter.ipynb"
        if folders:
            (folder / "starter").mkdir(exist_ok=True)
            for name in folders:
                copy_tree(solution.parent / name, folder / "starter" / name)
                stub_package(folder / "starter" / name, set(sol.classes) | {f.name for f in sol.functions})
        files = {
            "assignment.toml": spec_text(assignment_id, d),
            "reference.py": reference_text(assignment_id, d),
            start: json.dumps(starter(nb, assignment_id, d.computed), indent=1) + "\n",
        }
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        if solution.resolve() != (folder / "solution.ipynb").resolve():
            shutil.copyfile(solution, folder / "solution.ipynb")
    except OSError as e:
        raise GraderError(f"cannot write {folder}: {e.strerror or e}") from None
    return [folder / n for n in ("assignment.toml", "reference.py", "solution.ipynb", start)]


def stub_package(root: Path, names: set[str]) -> None:
    """Stub, in a course package's modules, the bodies of the classes and functions checked."""
    for module in root.rglob("*.py"):
        text = module.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        if any(isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in names for n in tree.body):
            module.write_text(stub_source(text), encoding="utf-8")


def local_packages(notebook: Path, sol: Solution) -> list[str]:
    """The folders beside the notebook that it imports from (a course's package)."""
    out = []
    for node in sol.tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            top = name.partition(".")[0]
            if (notebook.parent / top).is_dir() and not (notebook.parent / top).is_symlink() and top not in out:
                out.append(top)
    return out
