"""Where a wrong answer first goes wrong, from the intermediate values a student exposes.

A spec lists a check's intermediates in the order the network computes them (h, y, delta2,
delta1, ...). When the check fails, the student's own values of those (notebook variables,
or extra keys of the dict its function returns) are compared with the reference's: the
first one that is wrong says which step to look at. A value that matches a *different*
intermediate is a naming difference, not a mistake, and counts as right.
"""

from __future__ import annotations

import numpy as np

from grader.judging.compare import matches, numeric
from grader.judging.consistency import ask
from grader.plan.checks import CheckPlan
from grader.plan.items import ProbeItem
from grader.report import CheckResult
from grader.run.probe import Value
from grader.run.session import Session


def _agrees(value: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> bool:
    """Equal up to size-1 dimensions or a transpose: where, not how, is what matters here."""
    if value.size != expected.size:
        return False
    if matches(value.reshape(expected.shape), expected, rtol, atol):
        return True
    return value.ndim == 2 and value.shape == expected.shape[::-1] and matches(value.T, expected, rtol, atol)


def _from_result(value: Value, names: list[str]) -> tuple[str, np.ndarray] | None:
    """An intermediate among the keys of a returned dict (or of a dict inside a returned tuple)."""
    dicts = [value] if value.kind == "dict" else [v for v in value.items if v.kind == "dict"] if value.kind == "seq" else []
    wanted = {n.lower().replace("_", "") for n in names}
    for d in dicts:
        for key, item in zip(d.keys, d.items):
            arr = numeric(item)
            if arr is not None and (key in names or key.lower().replace("_", "") in wanted):
                return key, arr
    return None


def verdict(
    found: list[tuple[int, str, np.ndarray]], truths: list[np.ndarray], labels: list[str],
    rtol: float = 1e-5, atol: float = 1e-8,
) -> str:
    """The sentence: which of the student's intermediates are right, and the first that is wrong."""
    right: list[str] = []
    for k, name, value in sorted(found, key=lambda f: f[0]):
        if any(_agrees(value, t, rtol, atol) for t in truths):
            right.append(name)
            continue
        lead = f"Your {', '.join(right)} {'is' if len(right) == 1 else 'are'} right; " if right else ""
        return f"{lead}{name} is the first of your intermediate values that is wrong: it should be {labels[k]}."
    if len(right) >= 2:
        return (f"Your intermediate values {', '.join(right)} are all right, so the mistake is in the last "
                "step, where they are combined into this result.")
    return ""


async def localise(session: Session, modname: str, plans: list[CheckPlan], results: list[CheckResult]) -> None:
    """Add "where it goes wrong" to every failing check that declares intermediates."""
    by_id = {r.id: r for r in results}
    for p in plans:
        check = p.check
        # wrong values only: a transposed or misshapen result needs no search for a wrong step
        failing = [by_id[t.id] for t in p.targets if t.id in by_id and by_id[t.id].status == "fail"
                   and not set(by_id[t.id].codes) & {"transposed", "shape_mismatch"}]
        mids = p.intermediates
        if not mids or not failing or not p.trials or not session.alive:
            continue
        trial = p.trials[0]
        if len(trial.intermediates) != len(mids):
            continue
        found: list[tuple[int, str, np.ndarray]] = []
        if check.kind == "variable":
            items = [ProbeItem(f"{check.id}#mid{k}", "variable", im.names) for k, im in enumerate(mids)]
            answers = await ask(session, modname, items, check.timeout) or {}
            for k, _ in enumerate(mids):
                ans = answers.get(f"{check.id}#mid{k}")
                arr = numeric(ans.value) if ans is not None and ans.found else None
                if arr is not None and ans is not None and ans.found is not None:
                    found.append((k, ans.found, arr))
        else:
            item = ProbeItem(f"{check.id}#mid", "function", [check.target, *check.aliases], trial.args, check.args)
            answers = await ask(session, modname, [item], check.timeout) or {}
            ans = answers.get(f"{check.id}#mid")
            if ans is None or ans.found is None:
                continue
            for k, im in enumerate(mids):
                hit = _from_result(ans.value, im.names)
                if hit is not None:
                    found.append((k, f'{check.target}(...)["{hit[0]}"]', hit[1]))
        sentence = verdict(found, trial.intermediates, [im.label for im in mids], check.rtol, check.atol)
        if not sentence:
            continue
        for r in failing:
            r.detail["goes_wrong_at"] = sentence
            if r.diagnosis:
                r.diagnosis[0].message = f"{r.diagnosis[0].message.rstrip()} {sentence}"
            r.message = f"{r.message.rstrip()} {sentence}"
