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
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import GraderError

BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\b")
END = re.compile(r"^\s*#+\s*END SOLUTION\b")
STUB = "raise NotImplementedError"


@dataclass
class Function:
    """A top-level function of the solution: its name, parameter list and docstring."""

    name: str
    params: list[str]
    signature: str
    doc: str = ""


@dataclass
class Solution:
    """What a draft is made from: the solution's functions and literal top-level variables."""

    functions: list[Function] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def read_solution(notebook: Path) -> tuple[dict[str, Any], Solution]:
    """The notebook's JSON and its functions and variables (a notebook that will not parse is an error)."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GraderError(f"{notebook}: cannot be read as a notebook ({e})") from None
    sol = Solution()
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            continue  # magics or a broken cell: nothing to draft from it
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
                sol.functions.append(Function(node.name, params, ast.unparse(node.args), ast.get_docstring(node) or ""))
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _literal(node.value)
                if value is not None:
                    sol.variables[node.targets[0].id] = value
    if not sol.functions:
        raise GraderError(f"{notebook}: defines no top-level function to check")
    return nb, sol


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


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


def stub_source(source: str) -> str:
    """A cell's code for the starter: marked blocks and top-level function bodies stubbed."""
    lines = source.splitlines()
    if any(BEGIN.match(line) for line in lines):
        return _stub_marked(lines)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    out = list(lines)
    for node in reversed(tree.body):  # from the bottom, so earlier line numbers stay right
        if not isinstance(node, ast.FunctionDef):
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


def starter(nb: dict[str, Any], assignment_id: str) -> dict[str, Any]:
    """The starter notebook: stubbed code, no outputs, the assignment's id in its metadata."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["source"] = stub_source(_source(cell))
            cell["outputs"], cell["execution_count"] = [], None
    nb.setdefault("metadata", {}).setdefault("grader", {})["assignment"] = assignment_id
    return nb


def reference_text(assignment_id: str, sol: Solution) -> str:
    """reference.py: one function per solution function, same signature, body to write in torch."""
    parts = [f'"""Reference for {assignment_id}: each function takes and returns float64 torch tensors."""\n\n'
             "import torch  # noqa: F401 (the bodies are written in torch)\n"]
    for f in sol.functions:
        doc = f.doc.splitlines()[0] if f.doc else f"What the notebook's {f.name} returns."
        parts.append(f'\n\ndef {f.name}({f.signature}):\n    """{doc}"""\n'
                     f'    raise NotImplementedError("write {f.name} in torch")\n')
    return "".join(parts)


def spec_text(assignment_id: str, sol: Solution) -> str:
    """assignment.toml: one check per function, its inputs the notebook's values where it has them."""
    lines = [f'id = "{assignment_id}"', f'title = "{assignment_id}"', ""]
    for f in sol.functions:
        lines.append(f"[inputs.{f.name}]")
        for p in f.params:
            if p in sol.variables:
                lines.append(f"{p} = {json.dumps(sol.variables[p])}")
            else:
                lines.append(f'{p} = {{ dist = "normal", shape = [3, 1] }}  # choose its distribution and shape')
        lines.append("")
    for f in sol.functions:
        lines += ["[[checks]]", f'target = "{f.name}"', f'inputs = "{f.name}"', ""]
    return "\n".join(lines)


def draft(folder: Path, solution: Path) -> list[Path]:
    """Write a new assignment folder drafted from a solution notebook; the files written."""
    if (folder / "assignment.toml").exists():
        raise GraderError(f"{folder} already holds an assignment.toml; choose a new folder")
    nb, sol = read_solution(solution)
    assignment_id = folder.resolve().name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "assignment.toml": spec_text(assignment_id, sol),
            "reference.py": reference_text(assignment_id, sol),
            "starter.ipynb": json.dumps(starter(nb, assignment_id), indent=1) + "\n",
        }
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        if solution.resolve() != (folder / "solution.ipynb").resolve():
            shutil.copyfile(solution, folder / "solution.ipynb")
    except OSError as e:
        raise GraderError(f"cannot write {folder}: {e.strerror or e}") from None
    return [folder / n for n in ("assignment.toml", "reference.py", "solution.ipynb", "starter.ipynb")]


def register(group: Any) -> None:
    """Add `new FOLDER --from solution.ipynb` to the command-line group."""
    import click

    @group.command("new")
    @click.argument("folder", type=click.Path(path_type=Path))
    @click.option("--from", "solution", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="The solution notebook to draft from.")
    def new_cmd(folder: Path, solution: Path) -> None:
        """Draft an assignment folder (spec, reference skeleton, starter) from a solution notebook."""
        try:
            written = draft(folder, solution)
        except GraderError as e:
            click.echo(f"grade: error: {e}", err=True)
            raise SystemExit(2) from None
        click.echo("wrote " + ", ".join(str(p) for p in written))
        click.echo(f"next: write the bodies of {folder / 'reference.py'} in torch, then: grade validate {folder}")
