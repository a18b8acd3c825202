"""Judging the hard-coding re-run's values: does each variable follow the fresh sample?

A watched variable (right on the given sample) is judged by what it is in the re-run: missing
or not numbers of its size, it is flagged `hardcoded`; equal to its given-sample value, or to
the value with some inputs kept at their given-sample values, it is flagged too (those inputs
are stale); if it follows the fresh sample through the notebook's own function or a common
mistake the given sample hides, it earns nothing either (credit for a given-sample value needs a
computation right on fresh inputs), with that explanation; anything else earns no credit.
`prepare_rerun` asks the reference all of this ahead, for a pool entry.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from grader.assignment.inputs import Inputs, draw, rng_for
from grader.assignment.model import Assignment
from grader.assignment.reference import ReferenceLike, select
from grader.judging.compare import compare, numeric
from grader.judging.diagnose import hardcoded_variable
from grader.judging.judge import is_answer, select_part
from grader.plan.checks import MAX_IGNORED_ARGS, CheckPlan, Trial, add_variants
from grader.plan.items import ProbeItem
from grader.report import CheckResult, Diagnosis
from grader.run.probe import Answer, Value


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


def judge_rerun(
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
        # it follows the new sample through the notebook's own function or a common mistake, one
        # the given sample hides. Credit for a given-sample value needs a computation that is right
        # on fresh inputs (a function that recognises the given sample and answers it from typed-in
        # numbers is "its own function" too): none, with the kinder explanation.
        _no_credit(result, f"{target.label} is right for the given sample, but not when the notebook is re-run "
                           f"with other values of {', '.join(names)}: its computation has a mistake that the "
                           "given sample hides (or its answer for the given sample was typed in).")
    else:  # changed, but into nothing the inputs explain: no credit (typed value or junk otherwise)
        _unexplained(result, target.label, names)


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


def own_function_items(plans: list[CheckPlan], p: CheckPlan, fresh: dict[str, Any],
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
    _no_credit(result, f"{label} is right for the given sample, but wrong when the notebook is re-run with other "
                       f"values of {given}: it does not follow them (a mistake the given sample hides, or a value "
                       f"not computed from {given}).")


def _no_credit(result: CheckResult, text: str) -> None:
    """A given-sample value whose computation is wrong on the fresh sample: no credit, and why."""
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
