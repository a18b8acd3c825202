"""Forbidden imports: found in the cell sources (statically) and in the kernel (dynamically).

Statically: `import x`, `from x import y`, `__import__("x")`, `importlib.import_module("x")`
anywhere in a cell, inside functions too. Dynamically: after the notebook ran, the probe
runner says which forbidden modules are in `sys.modules` that were not there before the
first student cell. Either finding becomes one `forbidden_import` flag per module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from grader.report import Flag
from grader.run.probe import loaded_request, send
from grader.submission.notebook import parse_cell

_IMPORT_FUNCS = {"__import__", "import_module"}
# fallback for cells that do not parse (IPython magics, syntax errors)
_TEXT = re.compile(
    r"""^\s*(?:import|from)\s+([A-Za-z_][\w.]*)|(?:__import__|import_module)\(\s*['"]([A-Za-z_][\w.]*)['"]""",
    re.MULTILINE,
)


def _top(name: str) -> str:
    return name.split(".")[0]


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module a cell imports, however it does it."""
    tree = parse_cell(source)
    if tree is None:
        return {_top(a or b) for a, b in _TEXT.findall(source)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_top(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(_top(node.module))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in _IMPORT_FUNCS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(_top(arg.value))
    return found


def static_findings(sources: Sequence[str], forbidden: Sequence[str]) -> dict[str, int]:
    """Forbidden module -> 1-based number of the first code cell that imports it."""
    out: dict[str, int] = {}
    banned = set(forbidden)
    for i, src in enumerate(sources, start=1):
        for name in sorted(imported_modules(src) & banned):
            out.setdefault(name, i)
    return out


def flags_for(static: dict[str, int], loaded: Sequence[str], forbidden: Sequence[str]) -> list[Flag]:
    """One `forbidden_import` flag per forbidden module found either way."""
    flags = []
    for name in forbidden:
        if name not in static and name not in loaded:
            continue
        where = f"cell {static[name]} imports it" if name in static else "it was loaded while the notebook ran"
        flags.append(
            Flag(
                "forbidden_import",
                name,
                f"This assignment asks for backpropagation by hand; {name} may not be used ({where}). "
                "Compute every gradient with numpy.",
            )
        )
    return flags


async def forbidden_imports(session: Any, modname: str, nb: Any, forbidden: Sequence[str]) -> list[Flag]:
    """Flags for forbidden modules the notebook imports (its sources) or loaded (its kernel)."""
    if not forbidden:
        return []
    sources = [c.source if c.cell_type == "code" else "" for c in nb.cells]
    static = static_findings(sources, forbidden)
    # Positive evidence only: an answer that proves it checked every module. No answer (a
    # tampered request, a dead kernel) never reads as "nothing imported".
    reply = await send(session, loaded_request(modname, list(forbidden)), 30)
    unchecked = {
        "no_kernel": "No kernel was left to check which modules the notebook loaded",
        "budget": "The submission's time ran out before the grader could check which modules it loaded",
    }
    if reply.status in unchecked:  # the notebook's code left no kernel, or no time, to ask
        return [*flags_for(static, [], forbidden), Flag(
            "imports_unchecked", "imports",
            f"{unchecked[reply.status]}; it is scored as if a forbidden module had been used.")]
    if not reply.ok:
        return [*flags_for(static, [], forbidden), tampered_flag()]
    loaded = [n for n in reply.body["loaded"] if n in forbidden]
    return flags_for(static, loaded, forbidden)


def tampered_flag() -> Flag:
    """The import check's request did not run as sent: what the notebook imported is unknown."""
    return Flag(
        "probe_tampered",
        "imports",
        "The notebook interfered with the grader's check of imported modules; it is scored as if "
        "a forbidden module had been used.",
    )
