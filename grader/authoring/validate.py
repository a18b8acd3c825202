"""`grade validate`: is an assignment folder fit to grade students with?

It checks, in order: the spec loads; the reference's functions exist and run on every input
set; generators produce the declared shapes; autograd gradients agree with central finite
differences of the reference loss; the solution notebook earns full marks; the starter
notebook earns 0 without the grader failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from grader.assignment.inputs import draw, rng_for
from grader.assignment.load import find_assignment
from grader.assignment.model import Assignment
from grader.assignment.reference import Reference
from grader.assignment.tables import Check
from grader.assignment.tensors import to_numpy, to_torch
from grader.errors import GraderError
from grader.grading.grade import grade_notebook
from grader.grading.limits import measuring_limit, store_measurement
from grader.kernels.envs import ensure_assignment_env
from grader.plan.checks import reference_args
from grader.report import Report

FD_STEP = 1e-6
FD_RTOL = 1e-5
FD_ATOL = 1e-8
SEEDS = (0, 1, 2)


@dataclass
class Finding:
    """One validation step and its outcome."""

    step: str
    ok: bool
    message: str = ""


@dataclass
class Validation:
    """All findings for one assignment."""

    assignment: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every step passed."""
        return all(f.ok for f in self.findings)

    def add(self, step: str, ok: bool, message: str = "") -> None:
        self.findings.append(Finding(step, ok, message))


def validate(
    name: str,
    *,
    grade: Callable[..., Report] | None = None,
    notebooks: bool = True,
) -> Validation:
    """Validate an assignment named by id or folder."""
    v = Validation(name)
    try:
        asg = find_assignment(name)
        v.assignment = asg.id
        v.add("spec", True, f"{asg.path('assignment.toml')} loads ({len(asg.spec.checks)} checks, {asg.max_score:g} points)")
        ref = Reference(asg)
        v.add("reference", True, f"{asg.spec.reference} defines every function the spec names")
    except GraderError as e:
        v.add("spec", False, str(e))
        return v
    for check in asg.spec.checks:
        _validate_inputs(v, asg, ref, check)
        if check.loss and check.parts:
            _validate_gradients(v, asg, ref, check)
    if notebooks:
        try:  # the notebooks run in the assignment's own kernel environment: build it first
            env = ensure_assignment_env(asg)
        except GraderError as e:
            v.add("environment", False, str(e))
            return v
        versions = ", ".join(f"{k} {x}" for k, x in env.packages.items())
        v.add("environment", True, f"kernel environment {env.key} (Python {env.python_version}; {versions})")
        _validate_notebooks(v, asg, grade or grade_notebook)
    return v


def _draws(asg: Assignment, ref: Reference, check: Check) -> list[dict[str, Any]]:
    inputs = asg.spec.inputs[check.inputs]
    gen = ref.function(inputs.generator) if inputs.generator else None
    trials = check.trials if inputs.is_random else 1
    return [draw(inputs, rng_for(seed, "validate", check.id), t, gen) for seed in SEEDS for t in range(trials)]


def _validate_inputs(v: Validation, asg: Assignment, ref: Reference, check: Check) -> None:
    step = f"inputs of {check.id}"
    inputs = asg.spec.inputs[check.inputs]
    try:
        draws = _draws(asg, ref, check)
    except Exception as e:
        v.add(step, False, f"input set {check.inputs!r} cannot be drawn: {type(e).__name__}: {e}")
        return
    needed = [*check.args, *[a for a in check.then_args if not a.startswith("@")], *reference_args(check)]
    needed += [check.labels] if check.labels else []
    trials = check.trials if inputs.is_random else 1
    for k, d in enumerate(draws):
        missing = [a for a in needed if a not in d]
        if missing:
            v.add(step, False, f"input set {check.inputs!r} does not produce {missing}")
            return
        for name in inputs.shapes:
            value = _lookup(d, name)
            if value is None:
                v.add(step, False, f"inputs.{check.inputs}.shapes: declares {name!r}, which the input set does "
                                   f"not produce (it produces {', '.join(_produced(d))})")
                return
            got, shape = list(np.shape(value)), inputs.shape_of(name, k % trials)
            if got != shape:
                v.add(step, False, f"input set {check.inputs!r}: {name} has shape {got}, declared {shape}"
                                   + (f" (trial {k % trials})" if trials > 1 else ""))
                return
        if check.kind == "behaviour":
            continue
        try:
            result = ref.call(check.reference, [d[a] for a in reference_args(check)])
        except Exception as e:
            v.add(step, False, f"reference {check.reference}() fails on input set {check.inputs!r}: {type(e).__name__}: {e}")
            return
        if not _all_finite(result):
            v.add(step, False, f"reference {check.reference}() gives nan/inf on input set {check.inputs!r}: choose better-conditioned inputs")
            return
    if inputs.generator and not inputs.shapes:  # nothing declared: say what the generator gives
        seen = ", ".join(f"{n} {list(np.shape(_lookup(draws[0], n)))}" for n in _produced(draws[0]))
        v.add(step, True, f"{len(draws)} draws of {check.inputs!r} (first: {seen}); the reference runs on them")
        return
    v.add(step, True, f"{len(draws)} draws of {check.inputs!r} have the declared shapes; the reference runs on them")


def _lookup(values: dict[str, Any], name: str) -> Any:
    """An input by name; a dotted name reaches into a dict-valued input ("params.W1")."""
    if name in values:
        return values[name]
    head, _, rest = name.partition(".")
    inner = values.get(head)
    return _lookup(inner, rest) if rest and isinstance(inner, dict) else None


def _produced(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every name `shapes` may declare, dict entries dotted."""
    out: list[str] = []
    for k, v in sorted(values.items()):
        out += _produced(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def _all_finite(x: Any) -> bool:
    if isinstance(x, dict):
        return all(_all_finite(y) for y in x.values())
    if isinstance(x, list):
        return all(_all_finite(y) for y in x)
    try:
        return bool(np.isfinite(np.asarray(x, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return True


def _locate(args: list[str], values: list[Any], key: str) -> tuple[int, str | None] | None:
    """Where a gradient part's parameter lives among the args: an arg named key, or a dict entry."""
    if key in args:
        return args.index(key), None
    for i, val in enumerate(values):
        if isinstance(val, dict) and key in val:
            return i, key
    return None


def _validate_gradients(v: Validation, asg: Assignment, ref: Reference, check: Check) -> None:
    step = f"gradients of {check.id}"
    assert check.loss is not None
    loss_fn = ref.function(check.loss)
    worst = 0.0
    names = reference_args(check)  # a class check's reference (and loss) also get its state
    for d in _draws(asg, ref, check)[:3]:
        values = [d[a] for a in names]
        grads = ref.call(check.reference, values)
        for part in check.parts:
            where = _locate(names, values, part.key)
            if where is None:
                v.add(step, False, f"no argument of {check.reference}() is named {part.key!r}, so its finite difference cannot be taken")
                return
            analytic = np.asarray(grads[part.key] if isinstance(grads, dict) else grads[part.index or 0])
            numeric = _central_difference(loss_fn, values, where)
            if analytic.shape != numeric.shape:
                v.add(step, False, f"{check.reference}()[{part.key!r}] has shape {analytic.shape}, the parameter has {numeric.shape}")
                return
            err = np.abs(analytic - numeric)
            if not (err <= FD_ATOL + FD_RTOL * np.abs(numeric) + 1e-7).all():
                v.add(step, False, f"{check.reference}()[{part.key!r}] disagrees with finite differences of {check.loss}() (max error {err.max():.3g})")
                return
            worst = max(worst, float(err.max(initial=0.0)))
    v.add(step, True, f"autograd agrees with central finite differences of {check.loss}() (max error {worst:.2g})")


def _central_difference(loss_fn: Callable[..., Any], values: list[Any], where: tuple[int, str | None]) -> np.ndarray:
    i, key = where
    base = values[i][key] if key is not None else values[i]
    base = np.asarray(base, dtype=np.float64)
    out = np.zeros_like(base)

    def loss_at(x: np.ndarray) -> float:
        args = [to_torch(a.copy() if isinstance(a, np.ndarray) else dict(a) if isinstance(a, dict) else a) for a in values]
        if key is not None:
            args[i] = dict(args[i])
            args[i][key] = torch.tensor(x, dtype=torch.float64)
        else:
            args[i] = torch.tensor(x, dtype=torch.float64)
        return float(to_numpy(loss_fn(*args)))

    for idx in np.ndindex(base.shape):
        h = FD_STEP * max(1.0, abs(base[idx]))
        up, down = base.copy(), base.copy()
        up[idx] += h
        down[idx] -= h
        out[idx] = (loss_at(up) - loss_at(down)) / (2 * h)
    return out


def _validate_notebooks(v: Validation, asg: Assignment, grade: Callable[..., Report]) -> None:
    for name, want_full in (("solution.ipynb", True), ("starter.ipynb", False)):
        path = asg.path(name)
        if not want_full and not path.is_file() and (asg.folder / "starter" / name).is_file():
            path = asg.folder / "starter" / name  # the students' folder: the starter beside the course's package
        if not path.is_file():
            v.add(name, False, f"{path} does not exist")
            continue
        try:  # the solution under the spec's limit or the default (what it is measured by)
            report = grade(path, str(asg.folder), seed=4321,
                           **({"cell_timeout": measuring_limit(asg)} if want_full else {}))
        except GraderError as e:
            v.add(name, False, f"cannot be graded: {e}")
            continue
        missing = [e for e in report.execution.cell_errors if e.ename == "ModuleNotFoundError"]
        if missing:  # the notebook imports what the assignment's environment does not hold
            v.add(f"{name} imports", False, "; ".join(f"cell {e.cell}: {e.evalue}" for e in missing[:3])
                  + " (declare it in [environment] packages)")
        if want_full:
            bad = [f"{c.target}: {c.message}" for c in report.checks if c.status != "pass"]
            ok = report.score == report.max_score and not bad
            v.add(name, ok, f"earns {report.score:g}/{report.max_score:g}" + ("" if ok else "; " + "; ".join(bad[:5])))
            limit = store_measurement(asg, report) if ok else None
            if limit is not None:
                v.add("cell limit", True, f"the solution's slowest cell took {report.execution.slowest_cell_s:.2f} s: "
                                          f"cells get {limit:g} s by default" + _overridden(asg))
        else:
            ok = report.status == "graded" and report.score == 0
            v.add(name, ok, f"earns {report.score:g}/{report.max_score:g} and grades without error" if ok else f"earns {report.score:g} (should be 0)")


def _overridden(asg: Assignment) -> str:
    """A note that the spec's own cell limit wins over the measured one."""
    own = asg.spec.policy.cell_timeout
    return f" (policy.cell_timeout sets {own:g} s instead)" if own else ""
