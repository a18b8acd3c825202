"""Hard-coding check for notebook variables: re-run the notebook on a fresh sample.

The notebook runs again in a fresh kernel, its cells in place but each made to replace the
given sample (`x0`, `W1`, ...) by freshly drawn values wherever the notebook binds it: after
every statement that may bind one of those names (in loops, ifs, withs, tuple unpacking,
walrus, exec, globals(), setup functions declaring them global) and after every cell.
Variables the notebook computes follow; numbers typed or printed in do not. A variable that
was right on the given sample and, in the re-run, is missing, not numbers of its size, or
does not follow the fresh sample is flagged `hardcoded`.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from nbformat import NotebookNode

from grader.assignment.inputs import Inputs, draw, rng_for
from grader.assignment.reference import ReferenceLike, select
from grader.assignment.spec import Assignment
from grader.judging.compare import compare, numeric
from grader.judging.consistency import ask
from grader.judging.diagnose import hardcoded_variable
from grader.judging.judge import is_answer, select_part
from grader.kernels.launch import KernelLauncher, make_workspace
from grader.kernels.standby import StandbyKernel
from grader.kernels.teardown import remove_workspace
from grader.plan.checks import MAX_IGNORED_ARGS, CheckPlan, Trial, add_variants
from grader.report import CheckResult, Diagnosis
from grader.run.budget import Budget
from grader.run.execute import NOT_RUN, ExecutionRecord, Session, execute
from grader.run.probe import Answer, ProbeItem, Value, new_module_name, prelude_source
from grader.submission.notebook import Submission, parse_cell

READ_TIMEOUT = 5.0  # seconds to read the watched variables of the re-run


# ------------------------------------------------------------ the fresh sample, wherever it is bound

# Runs in the re-run's kernel after the probe runner's prelude. `refresh` replaces every watched
# variable whose value is still the given sample's by the fresh value, in the notebook's own form
# of it (x = np.array([1, 2]) stays 1-D; np.matrix, plain floats and lists stay so). The cells
# call it after each statement that may bind one of those names; a post_run_cell hook sweeps
# after every cell. A notebook that defeats both keeps the given sample, and its values do not
# follow: they are flagged, never credited.
_REFRESH = r"""
%(fit)s
def _grader_install_refresh(modname, given, fresh, fit):
    import sys, types, numpy
    ip = get_ipython()
    ns = ip.user_ns
    asarray, ndarray, float64, generic, allclose = numpy.asarray, numpy.ndarray, numpy.float64, numpy.generic, numpy.allclose
    type_, issubclass_, list_, tuple_, int_, float_ = type, issubclass, list, tuple, int, float
    names = tuple_(given)
    given = {k: asarray(v, dtype=float64).reshape(-1) for k, v in given.items()}
    fresh = {k: asarray(v, dtype=float64) for k, v in fresh.items()}
    seen = {}  # name -> the object last looked at (skipped by the quick refresh after statements)

    def flat(obj):
        tp = type_(obj)
        if issubclass_(tp, ndarray) or issubclass_(tp, generic) or tp is int_ or tp is float_:
            arr = asarray(obj)
        elif tp is list_ or tp is tuple_:
            arr = asarray(obj)
        else:
            return None
        if arr.dtype.kind not in "iuf":
            return None
        return asarray(arr, dtype=float64).reshape(-1)

    def is_given(k, obj):
        try:
            f = flat(obj)
            g = given[k]
            return f is not None and f.size == g.size and bool(allclose(f, g, rtol=1e-6, atol=1e-9))
        except Exception:
            return False

    def fitted(old, new):
        out = {0: new}
        fit({0: old}, out)
        return out[0]

    def refresh(full=False):
        for k in names:
            if k not in ns:
                continue
            obj = ns[k]
            if not full and k in seen and seen[k] is obj:
                continue
            if is_given(k, obj):
                obj = fitted(obj, fresh[k].copy())
                ns[k] = obj
            seen[k] = obj

    def sweep(*args, **kwargs):
        refresh(True)

    ip.events.register("post_run_cell", sweep)
    mod = types.ModuleType(modname)
    mod.refresh = refresh
    sys.modules[modname] = mod

_grader_install_refresh(%(modname)r, %(given)s, %(fresh)s, _grader_fit)
del _grader_install_refresh, _grader_fit
"""

_PYTHON_CELL_MAGICS = ("time", "capture")  # cell magics whose body is run as Python in the namespace


def refresh_prelude(modname: str, given: dict[str, Any], fresh: dict[str, Any]) -> str:
    """Kernel code that installs the refresh of the given sample under `modname`."""
    def literal(values: dict[str, Any]) -> str:
        return "{" + ", ".join(f"{k!r}: {np.asarray(v, dtype=float).tolist()!r}" for k, v in values.items()) + "}"

    return _REFRESH % {"modname": modname, "given": literal(given), "fresh": literal(fresh), "fit": _FIT_FN}


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
    depth) that may bind one of `names`; the cell's own code if it cannot be read."""
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


# Fresh values take the notebook's own form of the variable they replace: its shape when the
# sizes agree (x = np.array([1, 2]) stays 1-D), np.matrix, a plain float or a list. A notebook
# written for 1-D vectors then runs on the fresh sample as it ran on the given one.
_FIT_FN = """
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
"""
_FIT = _FIT_FN + """_grader_fit(_grader_old, globals())
del _grader_fit, _grader_old"""


def assignment_source(values: dict[str, Any]) -> str:
    """Python that sets each variable to a value (float repr round-trips exactly), in the notebook's form."""
    lines = [f"_grader_old = {{k: globals()[k] for k in {list(values)!r} if k in globals()}}"]
    for name, v in values.items():
        if isinstance(v, np.ndarray):
            lines.append(f"{name} = __import__('numpy').array({v.tolist()!r}, dtype=float)")
        else:
            lines.append(f"{name} = {float(v)!r}")
    return "\n".join(lines) + _FIT


async def rerun_given(
    submission: Submission,
    asg: Assignment,
    reference: ReferenceLike,
    plans: list[CheckPlan],
    results: list[CheckResult],
    launcher: KernelLauncher,
    seed: int,
    cell_timeout: float,
    budget: Budget,
    standby: StandbyKernel | None = None,
    first_run: ExecutionRecord | None = None,
) -> None:
    """Flag given-sample variables that were right but do not follow a fresh sample.

    The re-run draws on what is left of the submission's time budget. A value graded after an
    earlier cell (a rescued one) is read after that same cell of the re-run. With `standby`
    (see `rerun_standby`), it runs in that kernel, started earlier, and its workspace. Cells
    that `first_run` (the first run's record) says met a limit are not run again.
    """
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
    given, fresh, values = rerun_samples(asg, reference, seed)
    try:
        answers, why, tampered = await _rerun(submission, asg, plans, watched, by_id, launcher, cell_timeout,
                                              budget, {n: given[n] for n in values}, values, standby,
                                              not_again(first_run))
    except RuntimeError:
        return  # no kernel could be started at all: the grader's failure, nothing to conclude
    if tampered:  # what the re-run computed is unknown: the given values earn nothing
        for p in watched:
            for target in p.targets:
                r = by_id[target.id]
                r.status, r.points = "fail", 0.0
                r.message = "The notebook interfered with the grader's re-run; this value was not accepted."
                r.diagnosis.insert(0, Diagnosis("probe_tampered", r.message))
        return
    for p in watched:
        for target in p.targets:
            _judge_rerun(asg, reference, plans, p, target, by_id[target.id], answers, why, values, fresh)


def rerun_samples(asg: Assignment, reference: ReferenceLike, seed: int) -> tuple[Inputs, Inputs, Inputs]:
    """The re-run's given sample, its fresh sample, and the fresh values of the given sample's variables."""
    spec = asg.spec
    assert spec.rerun is not None
    given_set = spec.inputs[spec.rerun.inputs]
    given = draw(given_set, rng_for(seed, "rerun", "given"), 0)
    fresh_set = spec.inputs[spec.rerun.fresh]
    generator = reference.function(fresh_set.generator) if fresh_set.generator else None
    fresh = draw(fresh_set, rng_for(seed, "rerun"), 0, generator)
    return given, fresh, {n: fresh[n] for n in given_set.variables if n in fresh and n in given}


def prepare_rerun(asg: Assignment, reference: ReferenceLike, plans: list[CheckPlan], seed: int) -> None:
    """Ask the reference everything a re-run with this seed may need, whatever the notebook answers
    (a pool entry records it, so that grading needs no torch)."""
    spec = asg.spec
    if spec.rerun is None:
        return
    candidates = [p for p in plans if p.check.kind == "variable" and p.check.inputs == spec.rerun.inputs]
    if not candidates:
        return
    _, fresh, values = rerun_samples(asg, reference, seed)
    for p in candidates:
        for target in p.targets:
            key = target.part.key if target.part is not None else p.check.part
            with contextlib.suppress(Exception):  # (the run raises it too, from the recorded answer)
                _expected_on(reference, p, key, values, fresh)
            for _ in _mixed_values(reference, p, key, values, fresh):
                pass
        _mistakes_on(asg, reference, p, fresh)


def _expected_on(reference: ReferenceLike, p: CheckPlan, key: Any, values: Inputs, fresh: Inputs) -> np.ndarray:
    """The expected value of a variable on the fresh sample."""
    return select(reference.call(p.check.reference, [values.get(a, fresh.get(a)) for a in p.check.args]), key)


def _judge_rerun(
    asg: Assignment, reference: ReferenceLike, plans: list[CheckPlan], p: CheckPlan, target: Any, result: CheckResult,
    answers: dict[str, Answer], why: str, values: dict[str, Any], fresh: dict[str, Any],
) -> None:
    """Flag (or note on) one target whose re-run value does not follow the fresh sample `values`."""
    names, policy = list(values), asg.spec.policy
    key = target.part.key if target.part is not None else p.check.part
    expected = _expected_on(reference, p, key, values, fresh)
    ans = answers.get(p.check.id)
    if ans is None or ans.found is None or not is_answer(ans.value, target, expected):
        _flag(result, _not_following(target.label, names, ans, why), policy.hardcoded_scores_zero)
        return
    part, _ = select_part(ans.value, target, expected)
    assert part is not None  # is_answer found it
    if compare(part, expected, target.rtol, target.atol, target.allow_transpose).ok:
        return
    before = p.trials[0].expected[target.id]
    if compare(part, before, target.rtol, target.atol, target.allow_transpose).ok:
        stale: list[str] | None = list(p.check.args)  # kept the same value
    else:
        stale = _stale_inputs(reference, p, target, key, part, values, fresh)
    if stale is not None:
        diagnosis = hardcoded_variable(target.label, len(stale) == len(p.check.args), stale)
        _flag(result, diagnosis, policy.hardcoded_scores_zero)
    elif (_own_computes(_own_plan(plans, p, values), target, key, part, p.trials[0].expected[target.id],
                        answers.get(f"own:{p.check.id}"), answers.get(f"own-given:{p.check.id}"))
          or _known_mistake(asg, reference, p, target, part, fresh)):
        # it follows the new sample through the notebook's own function or a common mistake,
        # one the given sample hides: a note
        result.diagnosis.append(Diagnosis(
            "wrong",
            f"{target.label} is right for the given sample, but not when the notebook is re-run with other "
            f"values of {', '.join(names)}: its computation has a mistake that the given sample hides.",
        ))
    else:  # changed, but into nothing the inputs explain: no credit (typed value or junk otherwise)
        _unexplained(result, target.label, names)


async def _rerun(
    submission: Submission, asg: Assignment, plans: list[CheckPlan], watched: list[CheckPlan],
    by_id: dict[str, CheckResult],
    launcher: KernelLauncher, cell_timeout: float, budget: Budget, given: dict[str, Any], fresh: dict[str, Any],
    standby: StandbyKernel | None = None,
    skip: dict[int, str] | None = None,
) -> tuple[dict[str, Answer], str, bool]:
    """Run the notebook again with the fresh sample; the watched variables' values (each read after
    the cell its first-run value was graded after), why some may be missing ("" if no reason), and
    whether the notebook tampered with the grader's requests there.

    Answers `own:<check id>` and `own-given:<check id>` hold what the notebook's own function
    for the same computation returns on the fresh and on the given sample, at the end of the re-run.
    """
    if budget.exhausted:
        return {}, "the submission's time limit ran out before it could be re-run", False
    refresher, modname = new_module_name(), new_module_name()
    nb = with_fresh_sample(submission.nb, list(fresh), refresh_call(refresher))
    prelude = prelude_source(modname) + "\n" + refresh_prelude(refresher, given, fresh)
    final: list[ProbeItem] = []
    own: list[ProbeItem] = []  # asked apart: a function that hangs must not cost the variables' values
    after: dict[int, list[ProbeItem]] = {}
    for p in watched:
        item = ProbeItem(p.check.id, "variable", [p.check.target, *p.check.aliases])
        cell = by_id[p.targets[0].id].detail.get("graded_after_cell")
        if isinstance(cell, int):
            after.setdefault(cell - 1, []).append(item)
        else:
            final.append(item)
        own.extend(_own_function_items(plans, p, fresh, given))
    answers: dict[str, Answer] = {}

    async def after_cell(session: Session, index: int) -> None:
        if index in after:
            answers.update(await ask(session, modname, after[index], READ_TIMEOUT) or {})

    if standby is not None:
        workspace, launcher = standby.workspace, standby
    else:
        workspace = make_workspace(submission.path, [asg.path(f) for f in asg.spec.files])
    try:
        session = await execute(nb, workspace, launcher, prelude, cell_timeout, after_cell=after_cell,
                                budget=budget, cell_reserve=budget.final_reserve(), skip=skip)
        try:
            for items in (final, own):
                if items:
                    answers.update(await ask(session, modname, items, READ_TIMEOUT) or {})
            why = _why_missing(session.record, budget)
            tampered = bool(session.tampered)
        finally:
            await session.finish()
    finally:
        await remove_workspace(workspace)
    return answers, why, tampered


def rerun_standby(submission: Submission, asg: Assignment, launcher: KernelLauncher) -> StandbyKernel | None:
    """The re-run's kernel, started now beside the first run's (call from a running event loop);
    None where no re-run can follow: the assignment has none, or the notebook assigns none of the
    variables it would read."""
    spec = asg.spec
    if spec.rerun is None:
        return None
    names = [n for c in spec.checks if c.kind == "variable" and c.inputs == spec.rerun.inputs
             for n in (c.target, *c.aliases)]
    if not any(assigning_cells(submission.nb, n) for n in names):
        return None
    return StandbyKernel(launcher, make_workspace(submission.path, [asg.path(f) for f in spec.files]))


def not_again(first_run: ExecutionRecord | None) -> dict[int, str]:
    """The cells the re-run leaves out (index -> why): those that in the first run met a limit
    (the cell time limit, the memory or process limit, a kernel that died or stopped answering)
    or did not run at all. Run again, they would only meet it again and cost the same time; a
    value only such a cell assigns is then one the re-run cannot verify, as when it times out."""
    if first_run is None:
        return {}
    why = {"timeout": "it ran out of time in the first run", "died": "it stopped the kernel in the first run",
           "skipped": "it did not run in the first run"}
    return {run.index: why[run.status] for run in first_run.cells if run.status in why}


def _why_missing(record: ExecutionRecord, budget: Budget) -> str:
    """What in the re-run may have kept a variable from being computed, in words ("" if nothing)."""
    if record.total_timed_out or budget.exhausted:
        return "the submission's time limit ran out during the re-run"
    for run in record.cells:
        if run.status == "error":
            return f"cell {run.index + 1} raised {run.ename} in the re-run"
        if run.status == "skipped" and run.ename == NOT_RUN:
            return f"cell {run.index + 1} was not run in the re-run: {run.evalue}"
        if run.status in ("timeout", "died", "skipped"):
            return f"cell {run.index + 1} did not run to the end in the re-run ({run.evalue})"
    return ""


def _not_following(label: str, names: list[str], ans: Answer | None, why: str) -> Diagnosis:
    """A variable right on the given sample that the re-run with other values left without an answer."""
    if ans is None:
        what = "its value could not be read"
    elif ans.found is None:
        what = "it was not defined"
    else:
        what = f"it was {ans.value.describe()}, not a value computed from them"
    given = ", ".join(names)
    because = f" ({why})" if why else ""
    return Diagnosis(
        "hardcoded",
        f"{label} is right for the given sample, but when the notebook was re-run with other values of {given}, "
        f"{what}{because}: it does not follow the inputs. Compute it from {given} instead of typing in the result.",
    )


def _own_plan(plans: list[CheckPlan], p: CheckPlan, fresh: dict[str, Any]) -> CheckPlan | None:
    """The function check computing what variable check `p` reads (same reference), if the fresh sample
    supplies its arguments."""
    return next((fp for fp in plans if fp.check.kind == "function" and fp.check.reference == p.check.reference
                 and all(n in fresh for n in fp.check.given_args or fp.check.args)), None)


def _own_function_items(plans: list[CheckPlan], p: CheckPlan, fresh: dict[str, Any],
                        given: dict[str, Any]) -> list[ProbeItem]:
    """Calls of the notebook's own function for variable check `p`, on the fresh sample and on the given one."""
    fp = _own_plan(plans, p, fresh)
    if fp is None:
        return []
    names = fp.check.given_args or fp.check.args
    return [ProbeItem(f"{tag}:{p.check.id}", "function", [fp.check.target, *fp.check.aliases],
                      [sample[n] for n in names], fp.check.args, alternates=True)
            for tag, sample in (("own", fresh), ("own-given", given)) if all(n in sample for n in names)]


def _own_computes(fp: CheckPlan | None, target: Any, key: Any, part: Any, before: Any,
                  on_fresh: Answer | None, on_given: Answer | None) -> bool:
    """Whether the notebook's own function accounts for the variable on both samples: it gives the
    re-run value on the fresh sample and the graded value on the given one. A value typed in for the
    given sample and computed (wrongly) otherwise is not accounted for."""
    before_value = Value("array", array=np.asarray(before, dtype=np.float64))
    return (_own_function(fp, target, key, part, on_fresh)
            and _own_function(fp, target, key, before_value, on_given))


def _own_function(fp: CheckPlan | None, target: Any, key: Any, part: Any, ans: Answer | None) -> bool:
    """Whether a re-run value is what the notebook's own function (check `fp`) gives on the fresh sample,
    in any vector convention: computed by the notebook, wrongly, not typed in."""
    if fp is None or ans is None or ans.found is None:
        return False
    ftarget = next((t for t in fp.targets if (t.part.key if t.part is not None else None) == key), None)
    mine = numeric(part)
    if ftarget is None or mine is None:
        return False
    for value in [ans.value, *ans.alts.values()]:
        if value.kind in ("error", "missing"):
            continue
        got, _ = select_part(value, ftarget, mine)
        own = numeric(got) if got is not None else None
        if own is not None and compare(part, own, target.rtol, target.atol, target.allow_transpose).ok:
            return True
    return False


def _known_mistake(asg: Assignment, reference: ReferenceLike, p: CheckPlan, target: Any, part: Any,
                   fresh: dict[str, Any]) -> bool:
    """Whether a re-run value is what one of the spec's common mistakes gives on the fresh sample."""
    return any(compare(part, value, target.rtol, target.atol, target.allow_transpose).ok
               for value in _mistakes_on(asg, reference, p, fresh).get(target.id, {}).values())


def _mistakes_on(asg: Assignment, reference: ReferenceLike, p: CheckPlan,
                 fresh: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Per target, what each of the spec's common mistakes gives on the fresh sample."""
    trial = Trial(0, fresh, [fresh[a] for a in p.check.args])
    add_variants(asg, reference, p.check, p.targets, trial)
    return trial.variants


def _unexplained(result: CheckResult, label: str, names: list[str]) -> None:
    """A value right on the given sample that the re-run changed into something no input explains."""
    given = ", ".join(names)
    text = (f"{label} is right for the given sample, but wrong when the notebook is re-run with other values of "
            f"{given}: it does not follow them (a mistake the given sample hides, or a value not computed from "
            f"{given}).")
    result.diagnosis.insert(0, Diagnosis("wrong", text))
    result.detail["follows_sample"] = False
    result.status, result.points, result.message = "fail", 0.0, text + _graded_after(result)


def _graded_after(result: CheckResult) -> str:
    """For a value a later cell overwrote, which cell's value was graded ("" for the final one)."""
    cell = result.detail.get("graded_after_cell")
    return "" if cell is None else f" (The value graded is the one it had after cell {cell}.)"


def _stale_inputs(
    reference: ReferenceLike, p: CheckPlan, target: Any, key: Any, part: Any, values: dict[str, Any],
    fresh: dict[str, Any],
) -> list[str] | None:
    """The fewest inputs whose given-sample values, kept instead of the fresh ones, explain the variable."""
    args = list(p.check.args)
    for subset, value in _mixed_values(reference, p, key, values, fresh):
        if compare(part, value, target.rtol, target.atol, target.allow_transpose).ok:
            return [args[i] for i in subset]
    return None


def _mixed_values(
    reference: ReferenceLike, p: CheckPlan, key: Any, values: dict[str, Any], fresh: dict[str, Any]
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """The variable's value with some inputs kept at their given-sample values, fewest kept first."""
    args = list(p.check.args)
    given = p.trials[0].inputs
    if len(args) > MAX_IGNORED_ARGS:
        return
    for k in range(1, len(args)):
        for subset in itertools.combinations(range(len(args)), k):
            mixed = [given[a] if i in subset else values.get(a, fresh.get(a)) for i, a in enumerate(args)]
            try:
                value = select(reference.call(p.check.reference, mixed), key)
            except Exception:  # shapes that do not mix: this subset explains nothing
                continue
            yield subset, value


def _flag(result: CheckResult, diagnosis: Any, scores_zero: bool) -> None:
    result.diagnosis.insert(0, diagnosis)
    result.detail["hardcoded"] = True
    if scores_zero:
        result.status = "fail"
        result.points = 0.0
        result.message = diagnosis.message + _graded_after(result)
