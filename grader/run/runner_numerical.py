"""The probe runner's numerical-gradient detector: does a gradient call evaluate the notebook's
own code again and again on inputs nudged a little from one point?

Kernel-side, a part of the probe runner (grader/run/runner.py, whose docstring says how its
parts are installed): its source runs in the kernel at install, in a module dict of its own
whose builtins are a copy taken then, and binds below everything it later uses. The runner
sets a `PerturbationWatch` as the profile hook around a gradient call it is asked to watch.

What is detected is what finite differences do, however they are written: calls of the
notebook's functions (any of them: a loss, a forward pass, a lambda, a method) whose arrays
(passed as arguments, held by the object a method is called on, or read from module-level
names the function uses) lie within a small distance of the same array at an earlier call or
of an input of the gradient call, but are not equal to it: unit vectors, a random basis, a
flattened parameter vector, in place or on copies. Backpropagation by hand evaluates its
functions on arrays that differ by the data (other samples, other layers), never on many
nudged copies of one point, however often it calls sigmoid or loops over the samples.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy

_array_size_of = numpy.ndarray.__dict__["size"].__get__
_array_shape_of = numpy.ndarray.__dict__["shape"].__get__
_array_dtype_of = numpy.ndarray.__dict__["dtype"].__get__
_ndarray = numpy.ndarray
_copy = numpy.ndarray.copy
_tobytes = numpy.ndarray.tobytes
_abs, _max, _subtract, _rint, _isfinite = numpy.abs, numpy.max, numpy.subtract, numpy.rint, numpy.isfinite
_all, _errstate = numpy.all, numpy.errstate
_islice = itertools.islice
_getattribute = object.__getattribute__
_dict_values = dict.values
# Anything the notebook's code may raise, but the grader's own interrupt.
_EXC = (Exception, SystemExit, GeneratorExit)
# Distinct nudges of one point that make a gradient numerical (a central difference of the
# smallest input already makes 4; backprop by hand makes none).
PERTURBED_CALLS_MIN = 3
# A nudge: a difference that is not zero and at most this share of the array's scale (finite
# differences take steps of 1e-8 .. 1e-3; other samples or layers differ by far more).
NUDGE = 1e-2
MAX_WATCHED_CALLS = 4096  # calls examined per gradient call (a loop over samples makes many)
MAX_ARRAY_SIZE = 100_000  # larger arrays are not compared
MAX_SLOTS = 256  # distinct places arrays are remembered from


def arrays_in(value: Any, depth: int = 0) -> list[Any]:
    """The float arrays in a value, in dicts, lists and tuples too (by their real types)."""
    tp = type(value)
    if tp is _ndarray:
        return [value]
    if depth >= 2:
        return []
    if issubclass(tp, dict):
        return [a for v in _islice(_dict_values(value), 64) for a in arrays_in(v, depth + 1)]
    if tp is list or tp is tuple:
        return [a for v in _islice(value, 64) for a in arrays_in(v, depth + 1)]
    return []


def _comparable(a: Any) -> bool:
    return 1 <= _array_size_of(a) <= MAX_ARRAY_SIZE and _array_dtype_of(a).kind == "f"


def nudge_of(a: Any, base: Any) -> bytes | None:
    """The direction `a` is nudged in from `base` (same shape, a small non-zero difference), as
    bytes that tell distinct nudges apart; None when `a` is not a nudge of `base`."""
    if _array_shape_of(a) != _array_shape_of(base):
        return None
    with _errstate(all="ignore"):
        diff = _subtract(a, base)
        if not _all(_isfinite(diff)):
            return None
        size = float(_max(_abs(diff)))
        scale = max(1.0, float(_max(_abs(base))))
        if size == 0.0 or size > NUDGE * scale:
            return None
        return _tobytes(_rint(diff / size * 1e6))


class PerturbationWatch:
    """Counts the distinct nudges of one point that a gradient call evaluates the notebook's code on.

    Set as the profile hook around one call; `numerical()` says afterwards whether it made
    at least PERTURBED_CALLS_MIN of them.
    """

    def __init__(self, ns: dict[str, Any], inputs: list[Any]):
        self.ns = ns
        self.inputs = [_copy(a) for a in arrays_in(inputs) if _comparable(a)]
        self.first: dict[Any, Any] = {}  # (code, slot) -> a copy of the array seen there first
        self.nudges: set[bytes] = set()
        self.calls = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or frame.f_globals is not self.ns or self.calls >= MAX_WATCHED_CALLS:
            return
        self.calls += 1
        try:  # an exception here would end the profiling and reach the notebook's code
            self.note(frame)
        except _EXC:
            pass

    def note(self, frame: Any) -> None:
        """Compare the arrays a call of a notebook function sees with those seen before."""
        code = frame.f_code
        for slot, a in self._arrays(frame, code):
            if not _comparable(a):
                continue
            key = (code, slot)
            base = self.first.get(key)
            if base is None:
                if len(self.first) < MAX_SLOTS:
                    self.first[key] = _copy(a)
                candidates = self.inputs
            else:
                candidates = [base, *self.inputs]
            for b in candidates:
                nudge = nudge_of(a, b)
                if nudge is not None:
                    self.nudges.add(nudge)
                    break

    def _arrays(self, frame: Any, code: Any) -> list[tuple[Any, Any]]:
        """(slot, array) of what the call sees: its arguments (and the attributes of the object a
        method is called on), and the module-level names its code reads."""
        local = frame.f_locals
        out: list[tuple[Any, Any]] = []
        names = _islice(code.co_varnames, code.co_argcount + code.co_kwonlyargcount)
        for i, name in enumerate(names):
            value = local.get(name)
            out += [(("arg", i, j), a) for j, a in enumerate(arrays_in(value))]
            if i == 0 and type(value).__module__ == self.ns.get("__name__"):  # a notebook object: self
                try:
                    attrs = _getattribute(value, "__dict__")
                except _EXC:
                    attrs = None
                if type(attrs) is dict:
                    out += [(("self", j), a) for j, a in enumerate(arrays_in(attrs, 1))]
        globs = frame.f_globals
        for name in _islice(code.co_names, 64):
            value = globs.get(name)
            if type(value) is _ndarray or type(value) in (dict, list, tuple):
                out += [(("global", name, j), a) for j, a in enumerate(arrays_in(value, 1))]
        return out

    def numerical(self) -> bool:
        """Whether the call evaluated the notebook's code on enough distinct nudges of one point."""
        return len(self.nudges) >= PERTURBED_CALLS_MIN
