"""What happened when the notebook ran: one record per code cell, the limits that were hit.

Filled in by the session (grader/run/session.py) as the cells run; read by grading (the report's
execution section, checks of names whose cell did not finish) and by the hard-coding re-run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from nbformat import NotebookNode

from grader.submission.notebook import parse_cell

NOT_RUN = "NotRun"  # the ename of a cell left out on purpose (see execute's `skip`)


@dataclass
class CellRun:
    """What happened to one code cell (index is the 0-based position in the notebook)."""

    index: int
    status: str  # ok | error | timeout | died | skipped
    ename: str = ""
    evalue: str = ""
    output_truncated: bool = False
    duration_s: float = 0.0  # how long the cell ran


@dataclass
class ExecutionRecord:
    """What happened when the notebook ran."""

    cells: list[CellRun] = field(default_factory=list)
    timed_out: bool = False  # a cell, or the whole submission, hit its time limit
    total_timed_out: bool = False
    kernel_died: bool = False
    restarts: int = 0
    fatal_cells: list[int] = field(default_factory=list)
    output_truncated: bool = False
    duration_s: float = 0.0
    limit_events: list[str] = field(default_factory=list)  # limits that were hit, in words

    def event(self, text: str) -> None:
        """Note a limit that was hit (once)."""
        if text not in self.limit_events:
            self.limit_events.append(text)

    @property
    def errors(self) -> list[CellRun]:
        """Cells that did not finish normally."""
        return [c for c in self.cells if c.status in ("error", "timeout", "died")]


def unrun_definitions(nb: NotebookNode, record: ExecutionRecord,
                      raised: bool = False) -> dict[str, tuple[CellRun, bool]]:
    """Top-level names defined by cells that did not run to the end (timed out, skipped, fatal;
    with `raised`, also cells that raised), each with whether the cell imports it (`from m
    import *` under "*").

    So a check of such a name can say why it could not run, instead of "missing".
    """
    out: dict[str, tuple[CellRun, bool]] = {}
    finished = ("ok",) if raised else ("ok", "error")
    for run in record.cells:
        if run.status in finished or not 0 <= run.index < len(nb.cells):
            continue
        tree = parse_cell(nb.cells[run.index].source)
        if tree is None:
            continue
        # (an import made tolerant, grader/run/tolerant.py, stands in a `try`)
        nodes = [m for n in tree.body for m in ([n, *n.body] if isinstance(n, ast.Try) else [n])]
        for node in nodes:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            imported = isinstance(node, (ast.Import, ast.ImportFrom))
            if imported:  # `import a.b` binds a; `from m import *` may bind anything
                names = [(a.asname or a.name).partition(".")[0] for a in node.names]  # type: ignore[union-attr]
            for name in names:
                out.setdefault(name, (run, imported))
    return out


def last_ran(runs: list[CellRun]) -> CellRun | None:
    """The last cell of this kernel that ran (ok or error), if any."""
    return next((r for r in reversed(runs) if r.status in ("ok", "error")), None)
