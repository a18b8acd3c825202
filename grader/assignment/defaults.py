"""Defaults a spec may leave out, inferred from `reference.py`, and the checks made at load time.

Before the spec is validated, the table read from `assignment.toml` is completed: a check's
`reference` defaults to its target, its `args` to the reference function's parameters, its
`aliases` gain the built-in ones, a reference returning a dict gives the check's `parts`,
and a consistency check's fields come from the forward check and the reference loss. After
validation every check's reference is called once on its inputs, so that a result that
cannot be graded (a dict where a number is expected, a part the result lacks) is an error
when the spec loads rather than a crash while grading.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import ValidationError

from grader.assignment import aliases as builtin
from grader.assignment.inputs import draw
from grader.assignment.tables import InputSet
from grader.assignment.tensors import to_numpy, to_torch
from grader.errors import SpecError

GRADIENT_LABEL = "the dL/d{key} returned by {target}"


def complete(raw: dict[str, Any], module: ModuleType | None, sampler: Sampler | None = None) -> dict[str, Any]:
    """The spec table with every default filled in (a copy; malformed parts are left for validation)."""
    raw = dict(raw)
    sampler = sampler or Sampler(raw, module)
    checks = raw.get("checks")
    if not isinstance(checks, list):
        return raw
    use_builtin = raw.get("builtin_aliases", True) is not False
    extra = raw.get("aliases") if isinstance(raw.get("aliases"), dict) else {}
    names = _Names(use_builtin, extra)
    raw["checks"] = checks = [dict(c) if isinstance(c, dict) else c for c in checks]
    for c in checks:
        if isinstance(c, dict) and isinstance(c.get("target"), str):
            _names_and_args(c, names, module)
    for c in checks:
        if isinstance(c, dict) and isinstance(c.get("target"), str):
            _parts(c, raw, names, sampler)
            _consistency(c, checks, names, module)
    for c in checks:
        if isinstance(c, dict) and isinstance(c.get("target"), str) and "reference" not in c:
            _gradient_variable(c, checks, module)
    for c in checks:
        if isinstance(c, dict) and isinstance(c.get("part"), (str, int)) and "axes" not in c:
            _inherit_axes(c, checks)
    _intermediates(raw, checks)
    return raw


def _gradient_variable(c: dict[str, Any], checks: list[Any], module: ModuleType | None) -> None:
    """A variable named like a gradient (dL_dW1) is that part (W1) of the check whose parts have it."""
    m = builtin.GRADIENT_NAME.match(c["target"])
    for other in checks if m and c.get("kind") == "variable" and "part" not in c else []:
        keys = [p.get("key") for p in other.get("parts") or [] if isinstance(p, dict)] \
            if isinstance(other, dict) and other.get("kind", "function") == "function" else []
        if m.group(2) in keys:
            c["reference"], c["part"] = other["reference"], m.group(2)
            break
    c.setdefault("reference", c["target"])
    if "args" not in c:
        params = _parameters(_function(module, c["reference"]))
        if params is not None:
            c["args"] = params


def _intermediates(raw: dict[str, Any], checks: list[Any]) -> None:
    """Shared intermediates without `checks` serve the variable checks graded on a part (the gradients)."""
    mids = raw.get("intermediates")
    if not isinstance(mids, list):
        return
    graded = [c.get("id") or c["target"] for c in checks if isinstance(c, dict) and c.get("kind") == "variable"
              and "part" in c and isinstance(c.get("target"), str)]
    raw["intermediates"] = [{**m, "checks": graded} if isinstance(m, dict) and "checks" not in m else m for m in mids]


class _Names:
    """The aliases a name gets: built-in ones (unless switched off), then the spec's own."""

    def __init__(self, use_builtin: bool, extra: dict[str, Any]):
        self.use_builtin = use_builtin
        self.extra = extra

    def of(self, name: str, declared: Any) -> Any:
        if not isinstance(declared, list):
            return declared  # left for validation to report
        own = self.extra.get(name, [])
        found = builtin.builtin_aliases(name) if self.use_builtin else []
        return builtin.merge(found, own if isinstance(own, list) else [], declared, exclude=name)


def _names_and_args(c: dict[str, Any], names: _Names, module: ModuleType | None) -> None:
    target = c["target"]
    if ("reference" not in c and builtin.GRADIENT_NAME.match(target) and c.get("kind") == "variable"
            and _function(module, target) is None):
        c["aliases"] = names.of(target, c.get("aliases", []))
        return  # which part of which reference: once every check's parts are known
    c.setdefault("reference", target)
    c["aliases"] = names.of(target, c.get("aliases", []))
    if isinstance(c.get("then"), str):
        c["then_aliases"] = names.of(c["then"], c.get("then_aliases", []))
    if "args" not in c and c.get("kind", "function") != "behaviour":
        params = _parameters(_function(module, c["reference"]))
        if params is not None:  # the globals set for the call come after the args
            bound = c.get("globals") if isinstance(c.get("globals"), list) else []
            c["args"] = [p for p in params if p not in bound]
    args = c.get("args")
    if c.get("extreme") and "stable_hint" not in c and isinstance(args, list) and len(args) == 1:
        c["stable_hint"] = builtin.stable_hint(target, str(args[0]))


def _parts(c: dict[str, Any], raw: dict[str, Any], names: _Names, sampler: Sampler) -> None:
    parts = c.get("parts")
    if isinstance(parts, dict):  # parts.W1 = { points = 2 } or parts.W1 = 2 (its points)
        parts = [{"key": k, **(v if isinstance(v, dict) else {"points": v})} for k, v in parts.items()]
        table = True
    else:
        table = False
    if (parts is None or table) and "part" not in c and c.get("kind", "function") != "behaviour":
        result = sampler.result(c.get("reference"), c.get("inputs"), _reference_args(c))
        if isinstance(result, dict):
            given = {p.get("key"): p for p in parts or []}
            unknown = [k for k in given if k not in result]
            if unknown:
                raise SpecError(f"checks[{_index(raw, c)}].parts: {unknown[0]!r} is not a key of what "
                                f"{c['reference']}() returns (keys: {', '.join(result)})")
            parts = [given.get(k, {"key": k}) for k in result]
    if not isinstance(parts, list):
        return
    gradient = "loss" in c or c["target"] in ("gradients", *builtin.function_aliases("gradients"))
    out = []
    for p in parts:
        if isinstance(p, dict) and isinstance(p.get("key"), str) and gradient:
            p = dict(p)
            found = builtin.gradient_part_aliases(p["key"]) if names.use_builtin else []
            p["aliases"] = builtin.merge(found, p.get("aliases", []), exclude=p["key"]) \
                if isinstance(p.get("aliases", []), list) else p["aliases"]
            owner = f"{c['target']}.{c['method']}" if c.get("kind") == "class" and c.get("method") else c["target"]
            p.setdefault("label", GRADIENT_LABEL.format(key=p["key"], target=owner))
        out.append(p)
    c["parts"] = out


def _consistency(c: dict[str, Any], checks: list[Any], names: _Names, module: ModuleType | None) -> None:
    cons = c.get("consistency")
    if not isinstance(cons, dict):
        return
    cons = c["consistency"] = dict(cons)
    forward = cons.setdefault("forward", "forward")
    if not isinstance(forward, str):
        return
    cons["forward_aliases"] = names.of(forward, cons.get("forward_aliases", []))
    fwd = next((f for f in checks if isinstance(f, dict) and f.get("kind", "function") == "function"
                and (f.get("id") or f.get("target")) == forward), None)
    if fwd is not None:
        cons.setdefault("forward_check", forward)
        if isinstance(fwd.get("args"), list):
            cons.setdefault("forward_args", fwd["args"])
    loss = cons.get("loss")
    if isinstance(loss, str):
        cons["loss_aliases"] = names.of(loss, cons.get("loss_aliases", []))
        cons.setdefault("reference_loss", loss)
    if "loss_args" not in cons and isinstance(cons.get("reference_loss"), str):
        params = _parameters(_function(module, cons["reference_loss"]))
        if params:
            cons["loss_args"] = params[1:]  # the first is the forward pass's output


def _inherit_axes(c: dict[str, Any], checks: list[Any]) -> None:
    """A check graded on one part of a reference takes the axes another check gives that part."""
    for other in checks:
        if not isinstance(other, dict) or other is c or other.get("reference") != c.get("reference"):
            continue
        for p in other.get("parts") or []:
            if isinstance(p, dict) and p.get("key") == str(c["part"]) and p.get("axes"):
                c["axes"] = p["axes"]
                return


def _index(raw: dict[str, Any], c: dict[str, Any]) -> int:
    return next(i for i, x in enumerate(raw["checks"]) if x is c)


def _function(module: ModuleType | None, name: Any) -> Callable[..., Any] | None:
    f = getattr(module, name, None) if module is not None and isinstance(name, str) else None
    return f if callable(f) else None


def _parameters(f: Callable[..., Any] | None) -> list[str] | None:
    """The names a function takes by position (None when it cannot be told)."""
    if f is None:
        return None
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty]


class Sampler:
    """The reference's results on trial 0 of an input set, each computed once per spec load."""

    def __init__(self, raw: dict[str, Any], module: ModuleType | None):
        self.sets = raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}
        self.module = module
        self._inputs: dict[str, dict[str, Any] | None] = {}
        self._results: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        self.failures: dict[tuple[str, str, tuple[str, ...]] | str, str] = {}  # key -> what went wrong

    def result(self, reference: Any, inputs: Any, args: Any) -> Any:
        """What reference(*args) returns on the input set (None when it cannot be had)."""
        f = _function(self.module, reference)
        if f is None or not isinstance(inputs, str) or not isinstance(args, list):
            return None
        key = (reference, inputs, tuple(map(str, args)))
        if key not in self._results:
            self._results[key] = self._call(key, f, self.inputs(inputs), args)
        return self._results[key]

    def failure(self, reference: str, inputs: str, args: list[str]) -> str:
        """Why reference(*args) could not be had on the input set ("" if it was, or was not tried)."""
        return self.failures.get(inputs, "") or self.failures.get((reference, inputs, tuple(args)), "")

    def _call(self, key: Any, f: Callable[..., Any], values: dict[str, Any] | None, args: list[Any]) -> Any:
        if values is None or any(a not in values for a in args):
            return None
        try:
            return to_numpy(f(*[to_torch(values[a]) for a in args]))
        except Exception as e:  # noqa: BLE001 (an instructor's function: say what broke, in one line)
            self.failures[key] = f"{key[0]}() fails on input set {key[1]!r}: {type(e).__name__}: {_line(e)}"
            return None

    def inputs(self, name: str) -> dict[str, Any] | None:
        """One draw of an input set (trial 0), or None when it cannot be drawn."""
        if name not in self._inputs:
            self._inputs[name] = self._draw(name)
        return self._inputs[name]

    def _draw(self, name: str) -> dict[str, Any] | None:
        if not isinstance(self.sets.get(name), dict):
            return None
        try:
            inputs = InputSet.model_validate(self.sets[name])
        except ValidationError:
            return None
        gen = _function(self.module, inputs.generator) if inputs.generator else None
        if inputs.generator and gen is None:
            return None
        try:
            return draw(inputs, np.random.default_rng(0), 0, gen)
        except Exception as e:  # noqa: BLE001 (as above)
            self.failures[name] = f"input set {name!r} cannot be drawn: {type(e).__name__}: {_line(e)}"
            return None


def _reference_args(c: Any) -> Any:
    """What a check's reference is called with (a check, or its raw table before validation)."""
    get = c.get if isinstance(c, dict) else lambda k, d=None: getattr(c, k, d)
    return reference_args_of(get("kind"), get("args"), get("state"), get("reference_args"), get("globals"))


def reference_args_of(kind: Any, args: Any, state: Any, reference_args: Any, globals_: Any = None) -> Any:
    """The input names a reference function gets: `args`, then the `globals` set for the call; a
    class check's: args, its state, then globals (unless `reference_args` says)."""
    extra = list(globals_) if isinstance(globals_, list) else []
    if kind == "class" and reference_args is not None:
        return reference_args
    if not isinstance(args, list):
        return args
    if kind != "class":
        return [*args, *extra]
    return [*args, *([state] if state else []), *extra]


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def check_results(spec: Any, sampler: Sampler) -> None:
    """Call each check's reference once and raise SpecError (field named) if grading could not use it."""
    for i, check in enumerate(spec.checks):
        if check.kind == "behaviour":
            continue
        args = _reference_args(check)
        result = sampler.result(check.reference, check.inputs, args)
        if result is None:
            failed = sampler.failure(check.reference, check.inputs, args)
            if failed:
                field = f"inputs.{check.inputs}" if check.inputs in sampler.failures else f"checks[{i}].reference"
                raise SpecError(f"{field}: {failed}")
            continue
        problem = _unusable(check, result)
        if problem:
            raise SpecError(f"checks[{i}].{problem}")


def _unusable(check: Any, result: Any) -> str:
    ref = f"{check.reference}()"
    if check.parts:
        for p in check.parts:
            if isinstance(result, dict) and p.key not in result:
                return f"parts: {ref} returns no {p.key!r} (keys: {', '.join(result)})"
            if isinstance(result, list) and (p.index is None or p.index >= len(result)):
                return f"parts: {ref} returns a tuple of {len(result)}; give part {p.key!r} an `index` below that"
            if not isinstance(result, (dict, list)):
                return f"parts: {ref} returns a single array, not a dict or tuple with parts"
        return ""
    if check.part is not None:
        if isinstance(result, dict) and str(check.part) not in result:
            return f"part: {ref} returns no {check.part!r} (keys: {', '.join(result)})"
        if isinstance(result, list) and not (isinstance(check.part, int) and check.part < len(result)):
            return f"part: {ref} returns a tuple of {len(result)}; `part` must be an index below that"
        if not isinstance(result, (dict, list)):
            return f"part: {ref} returns a single array, which has no parts"
        return ""
    if isinstance(result, dict):
        return f"parts: {ref} returns a dict (keys: {', '.join(result)}): give `parts` or `part`"
    value = result[0] if isinstance(result, list) and result else result
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"reference: {ref} returns {type(value).__name__}, not numbers"
    return ""
