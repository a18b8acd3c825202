"""The public checks' inputs and expected values, shipped with an assignment as `public.json`.

Public checks run on fixed inputs in the in-notebook self-check (`grader.check`): drawn
with `PUBLIC_SEED`, their expected values computed by the torch reference. `grade
build-public` writes them into the assignment folder, so a student's environment needs no
torch; with torch present they are computed on the spot instead. Hidden checks are never
in the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignment.model import Assignment
from grader.assignment.tables import Check
from grader.errors import SpecError
from grader.plan.checks import CheckPlan, Trial, targets_of

PUBLIC_FILE = "public.json"
PUBLIC_SEED = 0  # the self-check's inputs: the same in every student's notebook
SCHEMA = "grader.public/1"


def public_checks(asg: Assignment) -> list[Check]:
    """The checks a self-check runs: public function and variable checks."""
    return [c for c in asg.spec.checks if c.visibility == "public" and c.kind in ("function", "variable")]


def reference_sha256(asg: Assignment) -> str:
    """The fingerprint of the assignment's reference file."""
    return hashlib.sha256(asg.path(asg.spec.reference).read_bytes()).hexdigest()


def _enc(x: Any) -> Any:
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer):  # class labels stay integers
        return {"a": [int(v) for v in x.reshape(-1)], "s": list(x.shape), "i": True}
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        a = np.asarray(x, dtype=np.float64)
        return {"a": [float(v) for v in a.reshape(-1)], "s": list(a.shape)}
    if isinstance(x, dict):
        return {"d": {str(k): _enc(v) for k, v in x.items()}}
    if isinstance(x, list):  # a structure of dicts: a network as a list of layers of neurons
        return {"l": [_enc(v) for v in x]}
    if isinstance(x, bool) or x is None:
        return {"v": x}
    if isinstance(x, (int, float)):
        return {"n": x}
    raise TypeError(f"cannot store a {type(x).__name__} as a public input")


def _dec(x: Any) -> Any:
    if "a" in x:
        return np.array(x["a"], dtype=np.int64 if x.get("i") else np.float64).reshape(x["s"])
    if "d" in x:
        return {k: _dec(v) for k, v in x["d"].items()}
    if "l" in x:
        return [_dec(v) for v in x["l"]]
    return x["n"] if "n" in x else x["v"]


def _trial_json(t: Trial) -> dict[str, Any]:
    return {
        "index": t.index,
        "args": [_enc(a) for a in t.args],
        "expected": {k: _enc(v) for k, v in t.expected.items()},
        "variants": {k: {n: _enc(v) for n, v in vs.items()} for k, vs in t.variants.items()},
        "ignoring": {k: [[list(sub), _enc(v)] for sub, v in vs] for k, vs in t.ignoring.items()},
        "globals": {k: _enc(v) for k, v in t.globals.items()},
    }


def _trial(d: dict[str, Any]) -> Trial:
    t = Trial(int(d["index"]), {}, [_dec(a) for a in d["args"]])
    t.expected = {k: _dec(v) for k, v in d["expected"].items()}
    t.variants = {k: {n: _dec(v) for n, v in vs.items()} for k, vs in d["variants"].items()}
    t.ignoring = {k: [(tuple(sub), _dec(v)) for sub, v in vs] for k, vs in d["ignoring"].items()}
    t.globals = {k: _dec(v) for k, v in d.get("globals", {}).items()}
    return t


def computed_plans(asg: Assignment) -> list[CheckPlan]:
    """The public checks' plans, computed now with the torch reference."""
    from grader.assignment.reference import Reference  # (torch: only here)
    from grader.plan.checks import plan_check

    reference = Reference(asg)
    return [plan_check(asg, reference, c, PUBLIC_SEED) for c in public_checks(asg)]


def build_public(asg: Assignment) -> str:
    """The text of the assignment's `public.json`, computed with the reference (deterministic)."""
    data = {
        "schema": SCHEMA,
        "assignment": asg.id,
        "version": asg.spec.version,
        "spec_sha256": asg.spec_sha256,
        "reference_sha256": reference_sha256(asg),
        "seed": PUBLIC_SEED,
        "checks": {
            p.check.id: {
                "trials": [_trial_json(t) for t in p.trials],
                "given": _trial_json(p.given) if p.given is not None else None,
                "extreme": _trial_json(p.extreme) if p.extreme is not None else None,
            }
            for p in computed_plans(asg)
        },
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_public(asg: Assignment) -> Path:
    """Write (or refresh) the assignment's `public.json`; returns its path."""
    path = asg.path(PUBLIC_FILE)
    path.write_text(build_public(asg), encoding="utf-8")
    return path


def shipped_plans(asg: Assignment) -> list[CheckPlan]:
    """The public checks' plans from the assignment's `public.json`; SpecError if it is missing or stale."""
    path = asg.path(PUBLIC_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpecError(f"{path}: missing or unreadable; run `grade build-public {asg.id}` "
                        "(or install torch to compute the public checks on the spot)") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("spec_sha256") != asg.spec_sha256 \
            or data.get("reference_sha256") != reference_sha256(asg):
        raise SpecError(f"{path}: out of date with assignment.toml or the reference; run "
                        f"`grade build-public {asg.id}`")
    plans = []
    for check in public_checks(asg):
        raw = data["checks"].get(check.id)
        if raw is None:
            raise SpecError(f"{path}: has no values for check {check.id!r}; run `grade build-public {asg.id}`")
        p = CheckPlan(check, targets_of(check), [_trial(t) for t in raw["trials"]])
        p.given = _trial(raw["given"]) if raw.get("given") else None
        p.extreme = _trial(raw["extreme"]) if raw.get("extreme") else None
        p.variants = [(v.name, v.message) for v in asg.spec.variants
                      if check.reference in v.replace and (not v.checks or check.id in v.checks)]
        plans.append(p)
    return plans


def public_drift(asg: Assignment) -> str:
    """How `public.json` differs from what the reference computes now ("" when it is up to date).

    Values are compared to 1e-12 relative: the last bit of a float may differ between builds of torch.
    """
    try:
        shipped = shipped_plans(asg)
    except SpecError as e:
        return str(e)
    for old, new in zip(shipped, computed_plans(asg), strict=True):
        for which in ("trials", "given", "extreme"):
            a, b = getattr(old, which), getattr(new, which)
            a, b = (a, b) if which == "trials" else ([a] if a else [], [b] if b else [])
            if len(a) != len(b) or any(not _same(_trial_json(x), _trial_json(y)) for x, y in zip(a, b)):
                return f"{asg.path(PUBLIC_FILE)}: check {old.check.id!r} has other {which} values than the reference gives"
    return ""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        if "a" in a and "a" in b:
            x, y = np.asarray(a["a"]), np.asarray(b["a"])
            return a["s"] == b["s"] and bool(np.allclose(x, y, rtol=1e-12, atol=1e-300, equal_nan=True))
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def public_plans(asg: Assignment) -> list[CheckPlan]:
    """The public checks' plans: computed with torch when it is installed, else from `public.json`."""
    from grader.assignment.tensors import import_torch

    try:
        import_torch()
    except ImportError:
        return shipped_plans(asg)
    return computed_plans(asg)
