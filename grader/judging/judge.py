"""Judging one check: pick the answer out of what the student returned, compare, explain."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from grader.assignment.tables import RESULT_ARG, Check
from grader.judging.answer import Pick, declared, pick
from grader.judging.compare import Comparison, align, compare, matches, numeric
from grader.judging.diagnose import (
    Failure,
    diagnose,
    hardcoded_function,
    unstable,
    unstable_overflow,
)
from grader.judging.reproduce import call_snippet
from grader.plan.checks import CheckPlan, Target
from grader.plan.items import RESULT
from grader.report import CheckResult, Diagnosis
from grader.run.probe import Answer, Value, shape_str
from grader.run.runner_values import norm_key as normalise_key  # one spelling rule (the kernel's)

MAX_SHOWN_ELEMENTS = 12


def _numbered(value: Value, wanted: list[str], expected: np.ndarray) -> Value | None:
    """A vector part returned as one dict entry per element: {"w1": .., ..., "w8": ..} for "w"."""
    n = expected.size
    if expected.ndim != 1 or n < 2:
        return None
    for w in wanted:
        stem = normalise_key(w)
        norm = [normalise_key(k) for k in value.keys]
        index = [norm.index(f"{stem}{i}") if norm.count(f"{stem}{i}") == 1 else -1 for i in range(1, n + 1)]
        if -1 in index or f"{stem}{n + 1}" in norm:
            continue
        parts = [numeric(value.items[i]) for i in index]
        if all(p is not None and p.size == 1 for p in parts):
            return Value("array", array=np.array([float(p.reshape(-1)[0]) for p in parts]))
    return None


def _hidden(target: Target) -> bool:
    return target.check.visibility == "hidden"


def select_part(value: Value, target: Target, expected: np.ndarray,
                chosen: Pick | None = None) -> tuple[Value | None, str]:
    """The student's value for a target, and how it was found ("" or why there is none).

    `chosen`: where the answer is in what the check's trials returned (found here from this
    one value when not given).
    """
    part = target.part
    if part is None:
        c = target.check
        chosen = chosen or pick([value], [expected], c.take, target.allow_transpose, _hidden(target))
        if chosen.failure:
            return None, f"{c.target} {chosen.failure}"
        return chosen.apply(value), ""
    take = target.check.take
    if isinstance(take, (int, str)) and value.kind in ("seq", "dict"):  # (loss, grads): the parts are in grads
        where = _declared_one(value, take)
        if where is not None and value.items[where].kind in ("seq", "dict"):
            value = value.items[where]
    if value.kind == "dict":
        wanted = [part.key, *part.aliases]
        for w in wanted:
            if w in value.keys:
                return value.items[value.keys.index(w)], ""
        norm = {normalise_key(w) for w in wanted}
        hits = [i for i, k in enumerate(value.keys) if normalise_key(k) in norm]
        if len(hits) == 1:
            return value.items[hits[0]], ""
        numbered = _numbered(value, wanted, expected)
        if numbered is not None:
            return numbered, ""
        keys = "" if _hidden(target) else f" (keys: {', '.join(repr(k) for k in value.keys[:8])})"
        return None, f"the returned dict has no key for {part.key!r}{keys}"
    if value.kind == "seq" and part.index is not None:
        if part.index < len(value.items):
            return value.items[part.index], ""
        kind = "tuple" if value.is_tuple else "list"
        has = "too few items" if _hidden(target) else f"{value.length} items"
        return None, f"the returned {kind} has {has}; item {part.index} is expected to be {part.key}"
    if value.kind == "array" and part.index is not None and value.array is not None and value.array.ndim >= 1:
        if part.index < value.array.shape[0]:
            return Value("array", array=value.array[part.index]), ""
    return None, f"expected a dict keyed {part.key!r} (or a tuple), got {value.describe(_hidden(target))}"


def _declared_one(value: Value, take: int | str) -> int | None:
    hits = declared(value, take)
    return hits[0] if hits else None


def check_pick(plan: CheckPlan, target: Target, answers: dict[str, Answer]) -> Pick | None:
    """Where the answer is in what every trial returned: one element for all trials (None: per value)."""
    if target.part is not None:
        return None
    values, expected = [], []
    for trial in plan.trials:
        ans = answers.get(f"{plan.check.id}#{trial.index}")
        if ans is None or ans.value.kind not in ("seq", "dict"):
            return None
        values.append(ans.value)
        expected.append(trial.expected[target.id])
    if not values:
        return None
    return pick(values, expected, plan.check.take, target.allow_transpose, _hidden(target))


def _show(a: np.ndarray) -> str:
    if a.size > MAX_SHOWN_ELEMENTS:
        return f"array of shape {shape_str(a.shape)}"
    return np.array2string(a, precision=6, suppress_small=False, separator=", ").replace("\n", "")


def is_answer(value: Value, target: Target, expected: np.ndarray) -> bool:
    """Whether a value is an answer to a target at all: numbers of the expected size (right or wrong).

    None, a string, a plot, a function or an array of another size (a plot's data) is not.
    """
    if value.kind in ("missing", "error", "not_callable"):
        return False
    part, _ = select_part(value, target, expected)
    got = numeric(part) if part is not None else None
    return got is not None and got.size == expected.size


def judge(plan: CheckPlan, answers: dict[str, Answer], probe_status: str) -> list[CheckResult]:
    """CheckResults for every target of a check, from the probe answers of its trials.

    A function that fails as called is judged again in each other vector convention its
    answers carry; all targets (and trials) then come from the one convention that makes the
    most of them right, never a mix of calls.
    """
    results = [_judge_once(plan, t, answers, probe_status) for t in plan.targets]
    if plan.check.kind != "function" or all(r.status == "pass" for r in results):
        return results
    ids = [f"{plan.check.id}#{t.index}" for t in plan.trials]
    best, best_conv = results, ""
    for conv in CONVENTIONS:
        if not all(i in answers and conv in answers[i].alts for i in ids):
            continue
        view = dict(answers)
        for i in ids:
            view[i] = replace(answers[i], value=answers[i].alts[conv])
        alt = [_judge_once(plan, t, view, probe_status) for t in plan.targets]
        if _passes(alt) > _passes(best):
            best, best_conv = alt, conv
    if best_conv:
        for r in best:
            r.detail["vectors"] = best_conv
            if r.status == "pass":
                r.message += f" ({CONVENTIONS[best_conv]})"
    return best


def _passes(results: list[CheckResult]) -> int:
    return sum(r.status == "pass" for r in results)


def _result(target: Target, status: str, message: str, diagnosis: list[Diagnosis] | None = None, **detail: object) -> CheckResult:
    c = target.check
    return CheckResult(
        id=target.id,
        target=target.name,
        kind=c.kind,
        visibility=c.visibility,
        status=status,
        points=target.points if status == "pass" else 0.0,
        max_points=target.points,
        message=message,
        diagnosis=diagnosis or [],
        detail=dict(detail),
    )


CONVENTIONS = {
    "flat": "with vectors passed as 1-D arrays, as the notebook writes them",
    "row": "with vectors passed as rows (1xn), as the notebook writes them",
}


def _unprobed(target: Target, probe_status: str) -> CheckResult | None:
    """The result of a check whose probe did not answer (time out, budget spent, kernel gone)."""
    check = target.check
    if probe_status == "timeout":
        return _result(target, "error", f"{check.target} did not return within {check.timeout:g} s",
                       [Diagnosis("timeout", f"{check.target} ran longer than {check.timeout:g} s and was interrupted.")])
    if probe_status == "budget":
        why = (f"the submission's time limit ran out before {check.target} could be checked (its cells and "
               "the grader's calls into its code share that limit)")
        return _result(target, "error", f"{check.target} could not be checked: {why}",
                       [Diagnosis("timeout", f"{check.target} was not checked: {why}.")])
    if probe_status in ("died", "no_kernel"):
        return _result(target, "error", f"{check.target} could not be checked: the kernel died",
                       [Diagnosis("kernel_died", f"The kernel died while {check.target} was being checked.")])
    return None


def _judge_once(plan: CheckPlan, target: Target, answers: dict[str, Answer], probe_status: str) -> CheckResult:
    check = plan.check
    label = target.label
    what = "function" if check.kind == "function" else "variable"
    unprobed = _unprobed(target, probe_status)
    if unprobed is not None:
        return unprobed
    if check.kind == "behaviour":
        return _judge_behaviour(plan, target, answers)
    if check.kind == "class":
        what = "class"
    failures: list[Failure] = []
    notes: list[Diagnosis] = []
    chosen = check_pick(plan, target, answers)
    for trial in plan.trials:
        ans = answers.get(f"{check.id}#{trial.index}")
        if ans is None:
            return _no_answer(target, check.target)
        if ans.found is None or ans.value.kind == "missing":
            return _missing(target, what, [check.target, *check.aliases])
        v = ans.value
        called = called_name(check, ans)
        if v.kind == "error":
            return _with_call(_raised(target, called, v), check, trial.args, called)
        if v.kind in ("signature", "no_member"):
            msg = misfit_message(check, called, v, ans.stage)
            return _result(target, "fail", msg, [Diagnosis("wrong", msg + ".")])
        if v.kind == "not_callable":
            return _result(target, "fail", f"{called} is a {v.type_name}, not a function",
                           [Diagnosis("wrong", f"{called} must be a function, but it is a {v.type_name}.")])
        expected = trial.expected[target.id]
        part, why = select_part(v, target, expected, chosen)
        if part is None:
            return _result(target, "fail", why, [Diagnosis("shape_mismatch", why + ".")],
                           expected_shape=list(expected.shape))
        if numeric(part) is None:
            msg = f"{label} is {part.describe(_hidden(target))}, not a number or array"
            if part.kind == "unconvertible":
                msg = f"{label} could not be read as numbers ({part.ename or 'unconvertible'})"
            if part.kind == "too_big":
                msg = f"{label} is {part.describe(_hidden(target))}"
            return _result(target, "fail", msg, [Diagnosis("wrong", msg + ".")], answer_kind=part.kind)
        c = compare(part, expected, target.rtol, target.atol, target.allow_transpose)
        if c.ok:
            if c.transposed:
                notes = [Diagnosis("transposed", f"{label} is transposed (shape {shape_str(c.got_raw_shape)}); "
                                   "accepted for this check.")]
            continue
        failures.append(Failure(c, trial.index, trial.variants.get(target.id, {})))
    n = len(plan.trials)
    axes = (target.part.axes if target.part is not None and target.part.axes else check.axes)
    shaky = _extreme_note(plan, target, answers, label)
    took = {"took": chosen.note} if chosen is not None and chosen.note else {}
    if not failures:
        how = f"correct on {n} random inputs" if n > 1 else "correct"
        if check.visibility == "public" and check.kind == "variable":
            how = "matches the expected value"
        how += f" ({chosen.note})" if took else ""
        return _result(target, "pass", how, notes + shaky, trials=n, **took)
    diag = diagnose(label, failures, target.rtol, target.atol, variants=plan.variants, axes=axes,
                    names=plan.names, hidden=_hidden(target))
    ignored = _ignored_args(plan, target, failures) if _right_on_given(plan, target, answers) else None
    if ignored is not None:
        diag.insert(0, hardcoded_function(check.target, *ignored, n_args=len(check.args)))
    diag += shaky
    first = failures[0].comparison
    detail = {**_detail(first, target, n, len(failures)), **took}
    msg = _fail_message(label, first, check.visibility, n, len(failures), diag)
    if took:
        msg += f" ({check.target} returns several values; {chosen.note}.)"
    trial = next(t for t in plan.trials if t.index == failures[0].trial)
    found = answers[f"{check.id}#{trial.index}"].found or check.target
    return _with_call(_result(target, "fail", msg, diag, **detail), check, trial.args, found)


def _with_call(result: CheckResult, check: Check, args: list[object], name: str) -> CheckResult:
    """A public function check's result with the call that reproduces it (`detail.call`)."""
    if check.visibility == "public" and check.kind == "function":
        snippet = call_snippet(name, args)
        if snippet is not None:
            result.detail["call"] = snippet
    return result


def _side_value(plan: CheckPlan, target: Target, answers: dict[str, Answer], which: str) -> tuple[np.ndarray | None, np.ndarray]:
    """The student's numeric value on an unscored side trial ("given" / "extreme"), and the expected one."""
    trial = plan.given if which == "given" else plan.extreme
    ans = answers.get(f"{plan.check.id}#{which}")
    if trial is None or ans is None or ans.found is None:
        return None, np.zeros(0)
    expected = trial.expected[target.id]
    part, _ = select_part(ans.value, target, expected) if ans.value.kind not in ("error", "missing") else (None, "")
    got = numeric(part) if part is not None else None
    if got is None:
        return None, expected
    aligned, _ = align(got, expected)
    return aligned, expected


def _right_on_given(plan: CheckPlan, target: Target, answers: dict[str, Answer]) -> bool:
    """Whether the function is right on the notebook's own sample (it failed on fresh inputs)."""
    got, expected = _side_value(plan, target, answers, "given")
    return got is not None and matches(got, expected, target.rtol, target.atol)


def _ignored_args(plan: CheckPlan, target: Target, failures: list[Failure]) -> tuple[list[str], list[str]] | None:
    """The fewest arguments that, read from the given sample instead, explain every failing trial.

    Returns (the function's argument names, the given sample's names) or None if no choice does.
    """
    check = plan.check
    common: set[tuple[int, ...]] | None = None
    for f in failures:
        trial = next((t for t in plan.trials if t.index == f.trial), None)
        got = f.comparison.got
        if trial is None or got is None or f.comparison.problem not in ("values", "nan"):
            return None
        hits = {subset for subset, value in trial.ignoring.get(target.id, [])
                if value.shape == got.shape and matches(got, value, target.rtol, target.atol)}
        common = hits if common is None else common & hits
        if not common:
            return None
    if not common:
        return None
    best = min(common, key=lambda c: (len(c), c))
    given_names = check.given_args or check.args
    return [check.args[i] for i in best], [given_names[i] for i in best]


def _extreme_note(plan: CheckPlan, target: Target, answers: dict[str, Answer], label: str) -> list[Diagnosis]:
    """`unstable` when the function gives nan/inf on extreme inputs where the true value is finite."""
    got, expected = _side_value(plan, target, answers, "extreme")
    ans = answers.get(f"{plan.check.id}#extreme")
    name = plan.check.target if target.part is None else label
    if ans is not None and ans.value.kind == "error" and ans.value.ename in ("OverflowError", "FloatingPointError"):
        return [unstable(name, f" (it raises {ans.value.ename})", plan.check.stable_hint)]
    if got is None or plan.extreme is None:
        return []
    bad = ~np.isfinite(got) & np.isfinite(expected)
    if not bad.any():
        fp = answers.get(f"{plan.check.id}#extreme_fp")
        if fp is not None and fp.value.kind == "error" and fp.value.ename == "FloatingPointError":
            return [unstable_overflow(name, plan.check.stable_hint)]  # right values, by luck of inf
        return []
    where = ""
    args = [a for a in plan.extreme.args if isinstance(a, np.ndarray)]
    if len(args) == 1 and args[0].shape == got.shape:
        # the extreme inputs are public (not hidden): name the sign of the offending ones
        vals = args[0][bad]
        signs = sorted({"large negative" if v < 0 else "large positive" for v in vals if abs(v) >= 10})
        if signs:
            where = f" ({' and '.join(signs)} inputs, such as {vals[np.argmax(np.abs(vals))]:g})"
    return [unstable(name, where, plan.check.stable_hint)]


def _detail(c: Comparison, target: Target, n: int, n_failed: int) -> dict[str, object]:
    d: dict[str, object] = {
        "trials": n,
        "failed_trials": n_failed,
        "got_shape": list(c.got_raw_shape),
        "expected_shape": list(c.expected.shape),
        "rtol": target.rtol,
        "atol": target.atol,
    }
    if c.problem not in ("shape", "not_numeric"):  # error figures only where values were compared
        d.update(max_abs_error=_finite(c.max_abs), max_rel_error=_finite(c.max_rel), worst_index=list(c.worst))
    if target.check.visibility == "public" and c.got is not None:
        d["expected"] = c.expected.tolist() if c.expected.size <= 64 else None
        d["got"] = c.got.tolist() if c.got.size <= 64 else None
    return d


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _fail_message(label: str, c: Comparison, visibility: str, n: int, n_failed: int, diag: list[Diagnosis]) -> str:
    head = diag[0].message if diag else f"{label} is not right"
    if visibility == "hidden":
        scope = f"wrong on {n_failed} of {n} random inputs" if n > 1 else "wrong on a random input"
        return f"{scope}: {head}"
    if c.got is not None and c.got.shape == c.expected.shape:
        return f"{head} Expected {_show(c.expected)}, got {_show(c.got)}."
    return head


def predicted_classes(pred: np.ndarray, m: int) -> np.ndarray | None:
    """Class indices from a prediction: (m,), (1, m), (m, 1), or scores/one-hot as (classes, m)."""
    if pred.size == m:
        return np.rint(pred.reshape(-1))
    if pred.ndim == 2 and pred.shape[1] == m:
        return np.argmax(pred, axis=0).astype(np.float64)
    if pred.ndim == 2 and pred.shape[0] == m:
        return np.argmax(pred, axis=1).astype(np.float64)
    return None


def called_name(check: Check, ans: Answer) -> str:
    """What was called, as feedback names it: the function, or for a class check the step that ran."""
    found = ans.found or check.target
    if check.kind != "class":
        return found
    if ans.stage == "init":
        return f"{found}({', '.join(check.init_args)})"
    return f"{found}(...).{check.method}"


def misfit_message(check: Check, called: str, v: Value, stage: str = "") -> str:
    """A signature that cannot take the arguments, or a member the object lacks, in one sentence."""
    if v.kind == "no_member" and check.argument is not None:
        return f"{check.argument} after {called}(...) has no {v.text!r}, which the assignment reads"
    if v.kind == "no_member":
        return f"{called}: the object has no attribute {v.text!r}, which the assignment uses"
    n = v.length
    args = check.init_args if stage == "init" else check.args
    passes = ", ".join(args) if args else "no arguments"
    opt = f" (and {', '.join(check.optional_args)} when it takes them)" if check.optional_args else ""
    return f"{called} takes {n} argument{'s' if n != 1 else ''}; the assignment passes {passes}{opt}"


def _no_answer(target: Target, name: str) -> CheckResult:
    return _result(target, "error", f"{name} could not be checked: the probe got no answer",
                   [Diagnosis("exception", "The grader's probe got no answer from the kernel; "
                              "the notebook may have interfered with it.")])


def _missing(target: Target, what: str, names: list[str]) -> CheckResult:
    return _result(target, "missing", f"no {what} named {names[0]} was found",
                   [Diagnosis("missing", f"The notebook defines no {what} named {', '.join(names[:4])}.")])


def _raised(target: Target, name: str, v: Value) -> CheckResult:
    if target.check.visibility == "hidden":  # what it says is judging/hidden.py's (nothing of the call's)
        return _result(target, "error", f"{name} raised an exception on a hidden input",
                       [Diagnosis("exception", f"{name} raised an exception on a hidden input.")],
                       exception=v.ename)
    where = f" ({v.where.describe()})" if v.where is not None and v.where.cell else ""
    said = f"{v.ename}: {v.text}" if v.text else v.ename  # no dangling colon for an empty message
    return _result(target, "error", f"{name} raised {said}{where}",
                   [Diagnosis("exception", f"{name}(...) raised {said}{where}")])


def _judge_behaviour(plan: CheckPlan, target: Target, answers: dict[str, Answer]) -> CheckResult:
    """Train with the student's function, predict with the other, score accuracy on fresh data."""
    check = plan.check
    first, then = check.target, check.then or ""
    accuracies: list[float] = []
    thresholds: list[float] = []
    notes: list[str] = []
    for trial in plan.trials:
        ans = answers.get(f"{check.id}#{trial.index}")
        if ans is None:
            return _no_answer(target, first)
        if ans.found is None:
            return _missing(target, "function", [first])
        v = ans.value
        if v.kind == "missing":
            return _missing(target, "function", [then])
        if v.kind == "error":
            return _raised(target, first if ans.then_found is None else then, v)
        if v.kind == "signature":  # the first call's, or `then`'s, signature does not take its arguments
            name = first if ans.then_found is None else ans.then_found
            passes = check.args if ans.then_found is None else \
                [f"what {first} returned" if a == RESULT_ARG else a for a in check.then_args]
            msg = (f"{name} takes {v.length} argument{'s' if v.length != 1 else ''}; "
                   f"the assignment passes {', '.join(passes) or 'no arguments'}")
            return _result(target, "fail", msg, [Diagnosis("wrong", msg + ".")])
        assert trial.labels is not None
        pred = numeric(v)
        classes = predicted_classes(pred, trial.labels.size) if pred is not None else None
        if classes is None:
            msg = f"{then} returned {v.describe(_hidden(target))}; expected one class label per sample ({trial.labels.size})"
            return _result(target, "fail", msg, [Diagnosis("shape_mismatch", msg + ".")])
        accuracy = float(np.mean(classes == trial.labels))
        if plan.predict_with is not None:  # what train returns must be the network, and it must classify
            params, why = returned_parameters(check.returns, ans.result, _hidden(target))
            if params is None:
                msg = f"{first} must return the network's parameters ({why})"
                return _result(target, "fail", msg, [Diagnosis("wrong", msg + ".")])
            args = [params if a is RESULT else a for a in trial.then_args]
            try:
                own = predicted_classes(np.asarray(plan.predict_with(args), dtype=np.float64), trial.labels.size)
            except Exception:  # parameters the reference cannot even run (nan, overflow): no prediction
                own = None
            net = float(np.mean(own == trial.labels)) if own is not None else 0.0
            if net < accuracy:
                accuracy = net
                first_note = (f"the parameters {first} returns, used in the network's own forward pass, "
                              f"reach accuracy {net:.3f}: {then} must predict with the trained network")
                notes.append(first_note)
        accuracies.append(accuracy)
        thresholds.append(float(trial.expected[target.id]) - check.margin)
    worst = min(range(len(accuracies)), key=lambda i: accuracies[i] - thresholds[i])
    acc, need = accuracies[worst], thresholds[worst]
    reach = f"{first} then {then} reaches accuracy {acc:.3f} on freshly drawn data"
    detail = {"trials": len(accuracies), "accuracy": acc}
    if check.visibility == "public":
        detail["required_accuracy"] = need
    if acc >= need:
        return _result(target, "pass", reach, **detail)
    bar = f" (at least {need:.3f} is needed)" if check.visibility == "public" else ""
    msg = f"{reach}, below what training with correct gradients reaches{bar}"
    if notes:
        msg = f"{first} then {then} on freshly drawn data: {notes[0]}{bar}"
    return _result(target, "fail", msg, [Diagnosis("wrong", msg + ".")], **detail)


def returned_parameters(shapes: dict[str, list[int]], value: Value | None,
                        hidden: bool = False) -> tuple[dict[str, np.ndarray] | None, str]:
    """The parameters a training function returned, keyed and shaped as declared; or (None, why not)."""
    want = ", ".join(f"{k} {shape_str(tuple(s))}" for k, s in shapes.items())
    if value is None or value.kind != "dict":
        got = value.describe(hidden) if value is not None else "nothing that could be read"
        return None, f"a dict with {want}; it returned {got}"
    norm = [normalise_key(k) for k in value.keys]
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        hits = [i for i, k in enumerate(value.keys) if k == key] or [i for i, n in enumerate(norm) if n == normalise_key(key)]
        arr = numeric(value.items[hits[0]]) if len(hits) == 1 else None
        if arr is None or arr.size != int(np.prod(shape)):
            return None, f"a dict with {want}; its {key!r} is missing or not {shape_str(tuple(shape))}"
        out[key] = arr.reshape(shape)
    return out, ""
