"""Planning a run: for every check and trial, the inputs to send and the expected answers to keep."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.assignment.defaults import reference_args_of
from grader.assignment.inputs import Inputs, draw, rng_for
from grader.assignment.model import Assignment
from grader.assignment.reference import ReferenceLike, select
from grader.assignment.tables import RESULT_ARG, Check, Intermediate, Part
from grader.plan.items import RESULT, ProbeItem


@dataclass
class Target:
    """One scored thing: a whole check, or one part of a structured result."""

    id: str
    check: Check
    part: Part | None
    points: float
    rtol: float
    atol: float
    allow_transpose: bool

    @property
    def label(self) -> str:
        """How a student would write it: `sigmoid`, `dL_dW1`, `gradients(...)["W1"]`."""
        if self.part is not None and self.part.label:
            return self.part.label
        if self.check.kind == "class":
            return _class_label(self.check, self.part)
        if self.check.argument is not None:  # `network after backpropagate(...)`
            part = f'["{self.part.key}"]' if self.part is not None else ""
            return f"{self.check.argument}{part} after {self.check.target}(...)"
        if self.part is None:
            return self.check.target
        return f'{self.check.target}(...)["{self.part.key}"]'

    @property
    def name(self) -> str:
        """The report's `target`: `sigmoid`, `dL_dW1`, `gradients.W1`."""
        return self.check.target if self.part is None else f"{self.check.target}.{self.part.key}"


def _class_label(check: Check, part: Part | None) -> str:
    """A class check's value as a student would write it: `net.loss(...)[1]["W1"]`, `net.w after train(...)`."""
    net = f"{check.target}(...)"
    if check.read == "state":
        key = part.key if part is not None else ""
        owner = {k: a for a, k in check.state_attributes.items()}
        where = f".{owner[key]}" if key in owner else f'.{check.state_attribute}["{key}"]'
        return f"{net}{where} after {check.method}(...)"
    take = f"[{check.take!r}]" if isinstance(check.take, (int, str)) else ""
    return f"{net}.{check.method}(...){take}" + (f'["{part.key}"]' if part is not None else "")


@dataclass
class Trial:
    """One call (or read) with its inputs and, per target, the expected value."""

    index: int
    inputs: Inputs
    args: list[Any]
    then_args: list[Any] = field(default_factory=list)  # behaviour checks; RESULT marks the first result
    labels: np.ndarray | None = None  # behaviour checks: the true classes
    expected: dict[str, np.ndarray] = field(default_factory=dict)  # target id -> value
    reference_result: Any = None
    variants: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # target id -> variant -> value
    # hard-coding: target id -> [(argument positions taken from the given sample instead, value)]
    ignoring: dict[str, list[tuple[tuple[int, ...], np.ndarray]]] = field(default_factory=dict)
    intermediates: list[np.ndarray] = field(default_factory=list)  # Check.intermediates' true values
    optional: list[Any] = field(default_factory=list)  # Check.optional_args' values
    init_args: list[Any] = field(default_factory=list)  # class checks: the constructor's arguments
    state: dict[str, Any] | None = None  # class checks: the parameters put in the object
    ref_args: list[Any] | None = None  # what the reference is called with, when not `args`
    globals: dict[str, Any] = field(default_factory=dict)  # Check.globals: bound in the notebook for the call


@dataclass
class CheckPlan:
    """A check, its targets and its trials."""

    check: Check
    targets: list[Target]
    trials: list[Trial]
    variants: list[tuple[str, str]] = field(default_factory=list)  # (name, message) that apply here
    given: Trial | None = None  # the notebook's own sample (hard-coding check), not scored
    extreme: Trial | None = None  # extreme but valid inputs (stability check), not scored
    intermediates: list[Intermediate] = field(default_factory=list)  # the check's and the spec's shared ones
    # behaviour checks with `returns`: the reference's prediction from the returned parameters
    predict_with: Callable[[list[Any]], Any] | None = None
    names: tuple[str, str] = ("y", "t")  # the assignment's names for the prediction and the target


def targets_of(check: Check) -> list[Target]:
    """The scored targets of a check: one per part, or the check itself."""
    if not check.parts:
        return [Target(check.id, check, None, check.points, check.rtol, check.atol, check.shape == "allow_transpose")]
    return [
        Target(
            f"{check.id}.{p.key}",
            check,
            p,
            p.points,
            p.rtol if p.rtol is not None else check.rtol,
            p.atol if p.atol is not None else check.atol,
            (p.shape or check.shape) == "allow_transpose",
        )
        for p in check.parts
    ]


def plan_check(assignment: Assignment, reference: ReferenceLike, check: Check, seed: int) -> CheckPlan:
    """Draw the inputs of every trial and compute the expected values with the reference."""
    input_set = assignment.spec.inputs[check.inputs]
    generator = reference.function(input_set.generator) if input_set.generator else None
    trials_n = check.trials if input_set.is_random else 1
    rng = rng_for(seed, "inputs", check.id)
    targets = targets_of(check)
    intermediates = [*check.intermediates, *(im for im in assignment.spec.intermediates if check.id in im.checks)]
    trials = []
    for t in range(trials_n):
        inputs = draw(input_set, rng, t, generator)
        args = [inputs[a] for a in check.args]
        if check.kind == "behaviour":
            trials.append(_behaviour_trial(reference, check, t, inputs, args))
            continue
        ref_args = [inputs[a] for a in reference_args(check)]
        result = reference.call(check.reference, [_copy(a) for a in ref_args])
        trial = Trial(t, inputs, args, reference_result=result, ref_args=ref_args,
                      optional=[inputs[a] for a in check.optional_args if a in inputs],
                      init_args=[inputs[a] for a in check.init_args],
                      state=inputs[check.state] if check.state else None,
                      globals={g: inputs[g] for g in check.globals})
        for target in targets:
            key = target.part.key if target.part is not None else check.part
            trial.expected[target.id] = select(result, key)
        add_variants(assignment, reference, check, targets, trial)
        if t == 0:  # one trial is enough to say where a computation goes wrong
            trial.intermediates = [select(reference.call(im.reference, [_copy(a) for a in args]), None)
                                   for im in intermediates]
        trials.append(trial)
    out = CheckPlan(check, targets, trials)
    out.names = (assignment.spec.names.prediction, assignment.spec.names.target)
    out.intermediates = intermediates
    if check.predict_with:
        name = check.predict_with
        out.predict_with = lambda args: reference.call(name, args)
    out.variants = [
        (v.name, v.message)
        for v in assignment.spec.variants
        if check.reference in v.replace and (not v.checks or check.id in v.checks)
    ]
    if check.kind == "function" and check.given:
        out.given = side_trial(assignment, reference, check, targets, check.given, check.given_args or check.args, seed)
        for trial in trials:
            add_ignoring(reference, check, targets, trial, out.given)
    if check.kind == "function" and check.extreme:
        out.extreme = side_trial(assignment, reference, check, targets, check.extreme, check.args, seed)
    return out


def side_trial(
    assignment: Assignment, reference: ReferenceLike, check: Check, targets: list[Target], set_name: str, names: list[str], seed: int
) -> Trial:
    """One unscored trial of a check on another input set (its args taken by position from `names`)."""
    input_set = assignment.spec.inputs[set_name]
    generator = reference.function(input_set.generator) if input_set.generator else None
    inputs = draw(input_set, rng_for(seed, "inputs", check.id, set_name), 0, generator)
    args = [inputs[a] for a in names]
    result = reference.call(check.reference, [_copy(a) for a in args])
    trial = Trial(-1, inputs, args, reference_result=result,
                  optional=[inputs[a] for a in check.optional_args if a in inputs])
    for target in targets:
        key = target.part.key if target.part is not None else check.part
        trial.expected[target.id] = select(result, key)
    return trial


MAX_IGNORED_ARGS = 6  # beyond this, only "ignores every argument" is tried


def add_ignoring(reference: ReferenceLike, check: Check, targets: list[Target], trial: Trial, given: Trial) -> None:
    """What the reference gives when some arguments are taken from the given sample instead of the trial.

    A function that ignores those arguments (and reads the notebook's variables or typed-in
    numbers) returns exactly that on fresh inputs.
    """
    n = len(trial.args)
    subsets = (
        [c for k in range(1, n + 1) for c in itertools.combinations(range(n), k)]
        if n <= MAX_IGNORED_ARGS else [tuple(range(n))]
    )
    for subset in subsets:
        args = [given.args[i] if i in subset else trial.args[i] for i in range(n)]
        try:
            result = reference.call(check.reference, [_copy(a) for a in args])
            for target in targets:
                key = target.part.key if target.part is not None else check.part
                trial.ignoring.setdefault(target.id, []).append((subset, select(result, key)))
        except Exception:  # given and fresh shapes do not mix: nothing to learn from this subset
            continue


def add_variants(assignment: Assignment, reference: ReferenceLike, check: Check, targets: list[Target], trial: Trial) -> None:
    """Compute, per target, the value each declared wrong variant gives on this trial's inputs."""
    for variant in assignment.spec.variants:
        if variant.checks and check.id not in variant.checks:
            continue
        replacement = variant.replace.get(check.reference)
        if replacement is None:
            continue
        try:
            result = reference.call(replacement, [_copy(a) for a in trial.ref_args or trial.args])
            for target in targets:
                key = target.part.key if target.part is not None else check.part
                trial.variants.setdefault(target.id, {})[variant.name] = select(result, key)
        except Exception:  # a variant that cannot be evaluated on these inputs explains nothing
            continue


def optional_fields(check: Check, trial: Trial) -> dict[str, Any]:
    """A probe item's optional arguments: those of the check's the trial's input set defines."""
    names = [a for a in check.optional_args if a in trial.inputs]
    return {"optional": [trial.inputs[a] for a in names], "optnames": names}


def class_fields(check: Check, trial: Trial) -> dict[str, Any]:
    """A probe item's optional arguments and, for a class check, how to build and fill the object."""
    out = optional_fields(check, trial)
    out["globals"] = trial.globals
    if check.argument is not None:  # graded as the call leaves it
        out.update(argument=check.args.index(check.argument), argument_path=check.argument_path)
    if check.kind == "class":
        out.update(init_args=trial.init_args, init_names=check.init_args, state=trial.state,
                   state_attribute=check.state_attribute, state_attributes=check.state_attributes,
                   method=check.method or "", read=check.read)
    return out


def reference_args(check: Check) -> list[str]:
    """The input names the reference function is called with: `args` (a class check's: then its state), then `globals`."""
    return reference_args_of(check.kind, check.args, check.state, check.reference_args, check.globals)


def _behaviour_trial(reference: ReferenceLike, check: Check, t: int, inputs: Inputs, args: list[Any]) -> Trial:
    """A train-then-predict trial: the expected value is the accuracy the reference reaches."""
    then_args = [RESULT if a == RESULT_ARG else inputs[a] for a in check.then_args]
    assert check.labels is not None
    labels = class_labels(np.asarray(inputs[check.labels], dtype=np.float64))
    ref_args = [_copy(a) for a in args] + [_copy(a) for a in then_args if a is not RESULT]
    accuracy = float(np.asarray(reference.call(check.reference, [*ref_args, _copy(inputs[check.labels])])))
    trial = Trial(t, inputs, args, then_args=then_args, labels=labels, reference_result=accuracy)
    trial.expected[check.id] = np.asarray(accuracy)
    return trial


def class_labels(y: np.ndarray) -> np.ndarray:
    """Class indices from labels given as indices (m,) / (1, m) or one-hot columns (classes, m)."""
    if y.ndim == 2 and y.shape[0] > 1 and y.shape[1] > 1:
        return np.argmax(y, axis=0).astype(np.float64)
    return y.reshape(-1)


def plan(assignment: Assignment, reference: ReferenceLike, seed: int,
         checks: list[Check] | None = None) -> list[CheckPlan]:
    """Plans for the given checks (default: every check of the assignment); only these are drawn."""
    chosen = assignment.spec.checks if checks is None else checks
    return [plan_check(assignment, reference, c, seed) for c in chosen]


def _copy(a: Any) -> Any:
    if isinstance(a, dict):
        return {k: _copy(v) for k, v in a.items()}
    if isinstance(a, list):
        return [_copy(v) for v in a]
    return a.copy() if isinstance(a, np.ndarray) else a


def probe_items(p: CheckPlan, alternates: bool = False) -> list[ProbeItem]:
    """What to ask the kernel for one check: its trials, then its unscored given and extreme calls."""
    check = p.check
    kind = {"variable": "variable", "behaviour": "pipeline", "class": "class"}.get(check.kind, "function")
    names = [check.target, *check.aliases]
    items = [
        ProbeItem(
            id=f"{check.id}#{t.index}",
            kind=kind,
            names=names,
            args=t.args if check.kind != "variable" else [],
            argnames=check.args,
            then_names=[check.then, *check.then_aliases] if check.then else [],
            then_args=t.then_args,
            alternates=alternates and check.argument is None,
            # a gradient check: does it evaluate the notebook's own functions on moved weights?
            watch=check.consistency is not None,
            keep_result=bool(check.returns),
            **class_fields(check, t),
        )
        for t in p.trials
    ]
    for which, side in (("given", p.given), ("extreme", p.extreme)):  # unscored: diagnosis only
        if side is not None:
            items.append(ProbeItem(f"{check.id}#{which}", "function", names, side.args, check.args,
                                   **optional_fields(check, side)))
    if p.extreme is not None:  # the same extreme inputs, with numpy overflow raising
        items.append(ProbeItem(f"{check.id}#extreme_fp", "function", names, p.extreme.args, check.args,
                               fp_raise=True, **optional_fields(check, p.extreme)))
    return items
