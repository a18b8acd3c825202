"""Tolerant imports: a cell's top-level import of a module this Python lacks, made non-fatal.

The session runs every student cell as `tolerant_imports` makes it, so one missing module does
not stop the rest of its cell; grading knows both texts (to place a line the runner reports).
"""

from __future__ import annotations

import ast
import importlib.util

from grader.submission.notebook import parse_cell


def _unavailable(module: str) -> bool:
    """Whether this Python (the kernel's too) lacks a top-level module; only the name is looked up."""
    try:
        return importlib.util.find_spec(module.partition(".")[0]) is None
    except (ImportError, ValueError):
        return True


def tolerant_imports(source: str) -> str:
    """The cell's source with each top-level import of a module this Python lacks made non-fatal.

    `from google.colab import drive` or `import seaborn as sns` placed before `import numpy as np`
    would otherwise stop the whole cell, and every check would fail on a missing np. The import
    still fails (a note goes to stderr) and a later use of the module still raises.
    """
    lines = source.splitlines()
    tree = parse_cell(source)
    if tree is None:
        return source
    spans = [(n.lineno, n.end_lineno or n.lineno) for n in tree.body]
    wrap = []
    for node, (first, last) in zip(tree.body, spans):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        alone = sum(1 for a, b in spans if a <= last and b >= first) == 1  # not `import x; y = 1`
        if alone and node.col_offset == 0 and any(_unavailable(m) for m in modules):
            if isinstance(node, ast.Import):  # one statement per module: `import seaborn, numpy`
                parts = [([f"import {a.name}" + (f" as {a.asname}" if a.asname else "")],
                          [a.asname or a.name.partition(".")[0]] if _unavailable(a.name) else [])
                         for a in node.names]
            else:
                parts = [(lines[first - 1:last], [a.asname or a.name for a in node.names])]
            wrap.append((first, last, parts))
    for first, last, parts in reversed(wrap):
        new: list[str] = []
        for text, bound in parts:
            if not bound:
                new += text
                continue
            # each name the import would bind raises the import's own error when it is used
            new += ["try:", *["    " + ln for ln in text], "except ImportError as _grader_import_error:",
                    *[f"    {name} = _grader_missing(_grader_import_error)" if name != "*" else "    pass"
                      for name in bound]]
        lines[first - 1:last] = new
    return "\n".join([_MISSING, *lines, "del _grader_missing"]) if wrap else source


_MISSING = """class _grader_missing:
    def __init__(self, error):
        object.__setattr__(self, "_error", error)
    def _fail(self, *args, **kwargs):
        e = object.__getattribute__(self, "_error")
        raise type(e)(*e.args)
    __getattr__ = __call__ = __getitem__ = _fail"""
