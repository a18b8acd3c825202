"""Hard-coding check for notebook variables: re-run the notebook on a fresh sample.

The notebook runs again in a fresh kernel; right after the statement that first assigns the
given sample (`x0 = ...`, `W1 = ...`), a grader cell replaces those variables with freshly
drawn values. Variables the notebook computes follow; numbers typed or printed in do not.
A variable that was right on the given sample and does not follow is flagged `hardcoded`.
"""

from __future__ import annotations

import ast
import copy
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from nbformat import NotebookNode

from .compare import compare, numeric
from .diagnose import hardcoded_variable
from .execute import execute
from .expected import Reference, select
from .inputs import draw, rng_for
from .judge import select_part
from .kernel import KernelLauncher, make_workspace
from .notebook import Submission, parse_cell
from .plan import MAX_IGNORED_ARGS, CheckPlan
from .probe import ProbeItem, new_module_name, prelude_source, probe_request, send
from .report import CheckResult, Diagnosis
from .spec import Assignment


def _assigned_names(stmt: ast.stmt) -> set[str]:
    names: set[str] = set()
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    for t in targets:
        for node in ast.walk(t):
            if isinstance(node, ast.Name):
                names.add(node.id)
    return names


def split_point(source: str, names: Sequence[str]) -> int | None:
    """In a cell, the line after the last top-level statement assigning one of `names` (None: none does)."""
    tree = parse_cell(source)
    if tree is None:
        return None
    end = None
    for stmt in tree.body:
        if _assigned_names(stmt) & set(names):
            end = stmt.end_lineno
    return end


# Fresh values take the notebook's own form of the variable they replace: its shape when the
# sizes agree (x = np.array([1, 2]) stays 1-D), np.matrix, a plain float or a list. A notebook
# written for 1-D vectors then runs on the fresh sample as it ran on the given one.
_FIT = """
def _grader_fit(old, g):
    import numpy
    for k, o in old.items():
        new = g[k]
        try:
            if isinstance(new, numpy.ndarray) and numpy.size(o) == new.size and numpy.shape(o) != new.shape:
                new = new.reshape(numpy.shape(o))
            if isinstance(o, numpy.matrix):
                new = numpy.asmatrix(new)
            elif type(o) in (int, float) and numpy.size(new) == 1:
                new = float(numpy.reshape(new, ()))
            elif type(o) is list and numpy.shape(o) == numpy.shape(new):
                new = numpy.asarray(new).tolist()
        except Exception:
            continue
        g[k] = new
_grader_fit(_grader_old, globals())
del _grader_fit, _grader_old"""


def assigning_cells(nb: NotebookNode, name: str) -> list[int]:
    """1-based numbers of the code cells whose top-level statements assign `name`."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        if any(name in _assigned_names(n) for n in _top_level(tree)):
            cells.append(i + 1)
    return cells


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run at notebook level: the body, and the bodies of its loops, ifs and withs."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        stmt = todo.pop()
        out.append(stmt)
        if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.Try)):
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(stmt, field, []))
            for h in getattr(stmt, "handlers", []):
                todo.extend(h.body)
    return out


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
            if r is not None and r.status == "fail":
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
    return "\n".join(lines) + _FIT


def with_fresh_sample(nb: NotebookNode, values: dict[str, Any]) -> NotebookNode | None:
    """A copy of the notebook whose given sample is replaced right after it is first assigned."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        end = split_point(cell.source, list(values))
        if end is None:
            continue
        lines = cell.source.splitlines()
        out = copy.deepcopy(nb)
        head = copy.deepcopy(cell)
        head.source = "\n".join(lines[:end])
        tail = copy.deepcopy(cell)
        tail.source = "\n".join(lines[end:])
        inject = copy.deepcopy(cell)
        inject.source = assignment_source(values)
        new_cells = [head, inject] + ([tail] if tail.source.strip() else [])
        out.cells = list(nb.cells[:i]) + new_cells + list(nb.cells[i + 1:])
        return out
    return None


async def rerun_given(
    submission: Submission,
    asg: Assignment,
    reference: Reference,
    plans: list[CheckPlan],
    results: list[CheckResult],
    launcher: KernelLauncher,
    seed: int,
    cell_timeout: float,
    total_timeout: float,
) -> None:
    """Flag given-sample variables that were right but do not follow a fresh sample."""
    spec = asg.spec
    if spec.rerun is None:
        return
    by_id = {r.id: r for r in results}
    watched = [
        p for p in plans
        if p.check.kind == "variable" and p.check.inputs == spec.rerun.inputs
        and all(by_id.get(t.id) is not None and by_id[t.id].status == "pass" for t in p.targets)
    ]
    if not watched:
        return
    given_names = list(spec.inputs[spec.rerun.inputs].variables)
    fresh_set = spec.inputs[spec.rerun.fresh]
    generator = reference.function(fresh_set.generator) if fresh_set.generator else None
    fresh = draw(fresh_set, rng_for(seed, "rerun"), 0, generator)
    values = {n: fresh[n] for n in given_names if n in fresh}
    nb = with_fresh_sample(submission.nb, values)
    if nb is None:
        return
    workspace = make_workspace(submission.path, [asg.path(f) for f in spec.files])
    modname = new_module_name()
    try:
        try:
            session = await execute(nb, workspace, launcher, prelude_source(modname), cell_timeout, total_timeout)
        except RuntimeError:
            return  # no second kernel: nothing to conclude
        try:
            items = [ProbeItem(p.check.id, "variable", [p.check.target, *p.check.aliases]) for p in watched]
            reply = await send(session, probe_request(modname, items), 30)
        finally:
            await session.close()
    finally:
        workspace.cleanup()
    if reply.status == "tampered":  # what the re-run computed is unknown: the given values earn nothing
        for p in watched:
            for target in p.targets:
                r = by_id[target.id]
                r.status, r.points = "fail", 0.0
                r.message = "The notebook interfered with the grader's re-run; this value was not accepted."
                r.diagnosis.insert(0, Diagnosis("probe_tampered", r.message))
        return
    if not reply.ok:
        return
    answers = reply.answers
    for p in watched:
        ans = answers.get(p.check.id)
        if ans is None or ans.found is None:
            continue
        expected_all = reference.call(p.check.reference, [values.get(a, fresh.get(a)) for a in p.check.args])
        for target in p.targets:
            key = target.part.key if target.part is not None else p.check.part
            expected = select(expected_all, key)
            part, _ = select_part(ans.value, target, expected)
            if part is None or numeric(part) is None:
                continue  # gone or not numeric after the re-run: inconclusive
            c = compare(part, expected, target.rtol, target.atol, target.allow_transpose)
            if c.ok:
                continue
            before = p.trials[0].expected[target.id]
            if compare(part, before, target.rtol, target.atol, target.allow_transpose).ok:
                stale: list[str] | None = list(p.check.args)  # kept the same value
            else:
                stale = _stale_inputs(reference, p, target, key, part, values, fresh)
            if stale is not None:
                diagnosis = hardcoded_variable(target.label, len(stale) == len(p.check.args), stale)
                _flag(by_id[target.id], diagnosis, spec.policy.hardcoded_scores_zero)
            else:  # it follows the new sample, wrongly: a mistake the given sample hides, not hard-coding
                by_id[target.id].diagnosis.append(Diagnosis(
                    "wrong",
                    f"{target.label} is right for the given sample, but not when the notebook is re-run with other "
                    f"values of {', '.join(given_names)}: its computation has a mistake that the given sample hides.",
                ))


def _stale_inputs(
    reference: Reference, p: CheckPlan, target: Any, key: Any, part: Any, values: dict[str, Any], fresh: dict[str, Any]
) -> list[str] | None:
    """The fewest inputs whose given-sample values, kept instead of the fresh ones, explain the variable."""
    args = list(p.check.args)
    given = p.trials[0].inputs
    if len(args) > MAX_IGNORED_ARGS:
        return None
    for k in range(1, len(args)):
        for subset in itertools.combinations(range(len(args)), k):
            mixed = [given[a] if i in subset else values.get(a, fresh.get(a)) for i, a in enumerate(args)]
            try:
                value = select(reference.call(p.check.reference, mixed), key)
            except Exception:  # shapes that do not mix: this subset explains nothing
                continue
            if compare(part, value, target.rtol, target.atol, target.allow_transpose).ok:
                return [args[i] for i in subset]
    return None


def _flag(result: CheckResult, diagnosis: Any, scores_zero: bool) -> None:
    result.diagnosis.insert(0, diagnosis)
    result.detail["hardcoded"] = True
    if scores_zero:
        result.status = "fail"
        result.points = 0.0
        result.message = diagnosis.message
