"""Is the student's gradient the gradient of the student's *own* forward pass and loss?

For a failing gradient target, the student's forward function is called in its kernel on
inputs where one parameter element is moved by +-h; the student's loss (or the reference's
loss of that output, when the notebook has no loss function) gives L(theta +- h e_i), and the
central difference (L+ - L-) / 2h is compared with the student's gradient. Then feedback can
say whether the backward pass follows the forward pass, and whether the forward pass is right.
Only inputs travel to the kernel; all arithmetic happens here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.assignment.inputs import rng_for
from grader.assignment.reference import ReferenceLike
from grader.assignment.tables import Consistency
from grader.judging.compare import align, numeric
from grader.judging.judge import select_part
from grader.plan.checks import CheckPlan, Target, Trial
from grader.plan.items import RESULT, ProbeItem
from grader.report import CheckResult, Diagnosis
from grader.run.probe import Answer, Value, probe_request, send
from grader.run.session import Session

FD_RTOL = 1e-3  # finite differences of a smooth float64 function are good to ~1e-6 relative
FD_ATOL_SCALE = 1e-4  # absolute slack, relative to the largest gradient element
FD_ATOL = 1e-7


@dataclass
class _Probe:
    """The perturbed evaluations planned for one target on one trial."""

    target: Target
    trial: Trial
    indices: list[tuple[int, ...]]
    steps: list[float]
    base: np.ndarray


def get_path(inputs: dict[str, Any], path: str) -> Any:
    """An input by name; `params.W1` reaches into a dict input."""
    obj: Any = inputs
    for part in path.split("."):
        obj = obj[part]
    return obj


def _with_element(inputs: dict[str, Any], path: str, index: tuple[int, ...], delta: float) -> dict[str, Any]:
    out = copy.deepcopy(inputs)
    keys = path.split(".")
    holder = out
    for k in keys[:-1]:
        holder = holder[k]
    arr = np.array(holder[keys[-1]], dtype=np.float64, copy=True)
    arr[index] += delta
    holder[keys[-1]] = arr
    return out


def _loss_value(value: Value) -> float | None:
    arr = _output(value)
    if arr is None or arr.size != 1 or not np.isfinite(arr).all():
        return None
    return float(arr.reshape(()))


def _output(value: Value) -> np.ndarray | None:
    """The forward pass's output: the value, or the first item of a returned (output, cache).

    A tuple of plain numbers, as in `return o1, o2`, is the output itself.
    """
    scalars = all(v.kind == "array" and v.array is not None and v.array.size == 1 for v in value.items)
    if value.kind == "seq" and value.is_tuple and value.items and not (scalars and value.array is not None):
        return numeric(value.items[0])
    return numeric(value)


def _student_gradient(value: Value, target: Target, base: np.ndarray, expected: np.ndarray) -> np.ndarray | None:
    part, _ = select_part(value, target, expected)
    got = numeric(part) if part is not None else None
    if got is None:
        return None
    aligned, how = align(got, base)
    if aligned is None and how == "transposed":
        return got.T
    return aligned


async def check_consistency(
    session: Session, modname: str, plans: list[CheckPlan], results: list[CheckResult], reference: ReferenceLike, seed: int
) -> None:
    """Add consistency findings to the failing gradient targets of checks that declare `consistency`."""
    by_id = {r.id: r for r in results}
    for p in plans:
        cons = p.check.consistency
        if cons is None or not session.alive:
            continue
        failing = [t for t in p.targets if by_id.get(t.id) is not None and by_id[t.id].status == "fail"
                   and not any(d.code in ("shape_mismatch", "hardcoded") for d in by_id[t.id].diagnosis)]
        if not failing:
            continue
        verdicts, own_loss = await _verdicts(session, modname, p, cons, failing, reference, seed)
        forward = by_id.get(cons.forward_check) if cons.forward_check else None
        forward_ok = None if forward is None or forward.status in ("missing", "error") else forward.status == "pass"
        for target in failing:
            if target.id in verdicts:
                _explain(by_id[target.id], target, verdicts[target.id], forward_ok, cons, own_loss)


def _explain(
    result: CheckResult, target: Target, consistent: bool, forward_ok: bool | None, cons: Consistency, own_loss: bool
) -> None:
    fwd = cons.forward
    loss = f"your own {cons.loss}" if own_loss and cons.loss else "the assignment's loss"
    result.detail["consistent_with_forward"] = consistent
    if consistent:
        if forward_ok is False:
            note = (f"Your backward pass matches your forward pass (checked by finite differences of your "
                    f"{fwd}), but the forward pass is wrong: fix {fwd} first.")
            result.diagnosis[0].message += " " + note
            result.message += " " + note
        return
    if forward_ok:
        text = (f"Your forward pass is right; the backward pass does not match it: {target.label} disagrees "
                f"with finite differences of your own {fwd} and {loss}.")
    else:
        text = (f"{target.label} does not match finite differences of your own {fwd} and {loss}: "
                "the backward pass does not follow your forward pass.")
    result.diagnosis.append(Diagnosis("inconsistent", text))


async def _verdicts(
    session: Session, modname: str, p: CheckPlan, cons: Consistency, failing: list[Target], reference: ReferenceLike, seed: int
) -> tuple[dict[str, bool], bool]:
    """Target id -> whether the student's gradient matches finite differences on every trial; and
    whether the student's own loss function was used."""
    check = p.check
    items: list[ProbeItem] = []
    probes: dict[str, _Probe] = {}
    use_loss = cons.loss is not None
    rng = rng_for(seed, "consistency", check.id)
    for trial in p.trials:
        items.append(ProbeItem(f"g#{trial.index}", "function", [check.target, *check.aliases], trial.args, check.args))
        for target in failing:
            path = cons.params.get(target.part.key if target.part else target.id, target.part.key if target.part else target.id)
            try:
                base = np.asarray(get_path(trial.inputs, path), dtype=np.float64)
            except (KeyError, TypeError, IndexError):
                continue
            all_idx = [tuple(int(i) for i in ix) for ix in np.ndindex(base.shape)]
            if len(all_idx) > cons.max_elements:
                pick = rng.choice(len(all_idx), size=cons.max_elements, replace=False)
                all_idx = [all_idx[i] for i in sorted(pick)]
            steps = [cons.step * max(1.0, abs(float(base[ix]))) for ix in all_idx]
            key = f"{target.id}@{trial.index}"
            probes[key] = _Probe(target, trial, all_idx, steps, base)
            for j, (ix, h) in enumerate(zip(all_idx, steps)):
                for sign in (1, -1):
                    moved = _with_element(trial.inputs, path, ix, sign * h)
                    args = [get_path(moved, a) for a in cons.forward_args]
                    items.append(_forward_item(f"{key}#{j}{'+' if sign > 0 else '-'}", cons, args, moved, use_loss))
    answers = await ask(session, modname, items, check.timeout)
    if answers is None:
        return {}, use_loss
    if use_loss and any(a.value.kind == "missing" for k, a in answers.items() if not k.startswith("g#")):
        use_loss = False  # the notebook has no loss function: use the reference's loss of its output
        items = [_forward_item(it.id, cons, it.args, None, False) if not it.id.startswith("g#") else it for it in items]
        answers = await ask(session, modname, items, check.timeout)
        if answers is None:
            return {}, use_loss
    out: dict[str, bool] = {}
    for key, pr in probes.items():
        g_ans = answers.get(f"g#{pr.trial.index}")
        if g_ans is None or g_ans.value.kind in ("error", "missing"):
            continue
        grad = _student_gradient(g_ans.value, pr.target, pr.base, pr.trial.expected[pr.target.id])
        if grad is None or grad.shape != pr.base.shape or not np.isfinite(grad).all():
            continue
        fd = []
        for j, h in enumerate(pr.steps):
            lp = _loss(answers.get(f"{key}#{j}+"), pr.trial, cons, reference, use_loss)
            lm = _loss(answers.get(f"{key}#{j}-"), pr.trial, cons, reference, use_loss)
            if lp is None or lm is None:
                break
            fd.append((lp - lm) / (2 * h))
        else:
            g = np.array([grad[ix] for ix in pr.indices])
            f = np.array(fd)
            atol = FD_ATOL + FD_ATOL_SCALE * float(max(np.abs(f).max(initial=0), np.abs(g).max(initial=0)))
            ok = bool(np.all(np.abs(g - f) <= atol + FD_RTOL * np.abs(f)))
            out[pr.target.id] = out.get(pr.target.id, True) and ok
    return out, use_loss


def _forward_item(item_id: str, cons: Consistency, args: list[Any], moved: dict[str, Any] | None, use_loss: bool) -> ProbeItem:
    names = [cons.forward, *cons.forward_aliases]
    if use_loss and moved is not None:
        return ProbeItem(item_id, "pipeline", names, args, cons.forward_args,
                         then_names=[cons.loss or "", *cons.loss_aliases],
                         then_args=[RESULT, *[get_path(moved, a) for a in cons.loss_args]])
    return ProbeItem(item_id, "function", names, args, cons.forward_args)


def _loss(ans: Answer | None, trial: Trial, cons: Consistency, reference: ReferenceLike, use_loss: bool) -> float | None:
    if ans is None or ans.value.kind in ("error", "missing", "not_callable"):
        return None
    if use_loss:
        return _loss_value(ans.value)
    out = _output(ans.value)
    if out is None or not np.isfinite(out).all():
        return None
    try:
        value = reference.call(cons.reference_loss, [out, *[get_path(trial.inputs, a) for a in cons.loss_args]])
    except Exception:  # an output of the wrong shape for the loss: nothing to conclude
        return None
    arr = np.asarray(value, dtype=np.float64)
    return float(arr.reshape(())) if arr.size == 1 else None


async def ask(session: Session, modname: str, items: list[ProbeItem], per_call: float) -> dict[str, Answer] | None:
    """Answers to unscored probe items, or None unless the runner answered exactly this request."""
    # a probe that killed the kernel: the session revives itself for later checks; a tampered
    # one is noted on the session (and reported) by send
    reply = await send(session, probe_request(modname, items), per_call * len(items) + 5)
    return reply.answers if reply.ok else None
