"""Finding the answer where a student put it: the whole value, or one element of a returned tuple or dict.

Students return a forward pass's output alone, first (`(y_hat, z2, x1, z1)`), last
(`(z_1, x_1, z_2, y_hat)`) or in a dict. Only elements of the expected shape are candidates
(a wrong answer never passes by matching some other element of another shape); among them,
the element is chosen without looking at the expected values: the first candidate the spec
declares, else the only one, else the one at the start or the end of a tuple (where outputs
go), else the last. A tuple of many candidate answers never passes by whichever of them
happens to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grader.judging.compare import align, numeric
from grader.run.probe import Value
from grader.run.runner_values import norm_key


@dataclass
class Pick:
    """Which element of a returned tuple or dict holds the answer (position None: the whole value)."""

    position: int | None = None
    note: str = ""  # said in feedback: which element was taken, and why
    failure: str = ""  # set when nothing returned can be the answer: what came back instead

    def apply(self, value: Value) -> Value:
        """The picked element of a value (the value itself when the whole is the answer)."""
        if self.position is None or value.kind not in ("seq", "dict") or self.position >= len(value.items):
            return value
        return value.items[self.position]


def dims(shape: Sequence[int]) -> str:
    """A shape as numpy prints it: (5,), (3, 2), ()."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def describe_elements(value: Value, hidden: bool) -> str:
    """What a returned tuple or dict holds, by shape: "a tuple of 4 arrays of shapes (5,), (5,), (1,), (1,)"."""
    kind = "dict" if value.kind == "dict" else ("tuple" if value.is_tuple else "list")
    if hidden:  # its length and keys are the notebook's choice and could spell out hidden inputs
        return f"a {kind}"
    shapes = [numeric(v) for v in value.items]
    if value.kind == "dict":
        inner = ", ".join(f"{k!r}: " + (dims(a.shape) if a is not None else v.describe())
                          for k, v, a in zip(value.keys[:8], value.items, shapes))
        more = ", …" if len(value.keys) > 8 else ""
        return f"a dict {{{inner}{more}}}"
    if shapes and all(a is not None for a in shapes):
        listed = ", ".join(dims(a.shape) for a in shapes[:8] if a is not None)
        return f"a {kind} of {value.length} arrays of shapes {listed}" + (", …" if value.length > 8 else "")
    listed = ", ".join(v.describe() for v in value.items[:8])
    return f"a {kind} of {value.length} items: {listed}"


def _element_name(value: Value, position: int, hidden: bool) -> str:
    if value.kind == "dict":
        return "one entry of the returned dict" if hidden else f"the entry {value.keys[position]!r} of the returned dict"
    kind = "tuple" if value.is_tuple else "list"
    return f"one item of the returned {kind}" if hidden else f"item {position} of the returned {kind}"


def declared(value: Value, take: int | str | list[int | str] | None) -> list[int] | None:
    """The positions the spec's `take` names in this value, in its order (None: it names none)."""
    if take is None:
        return None
    wanted = take if isinstance(take, list) else [take]
    out: list[int] = []
    for w in wanted:
        if isinstance(w, int):
            n = len(value.items)
            if value.kind == "seq" and -n <= w < n:
                out.append(w % n)
        elif value.kind == "dict":
            hits = [i for i, k in enumerate(value.keys) if k == w] or \
                   [i for i, k in enumerate(value.keys) if norm_key(k) == norm_key(w)]
            if len(hits) == 1:
                out.append(hits[0])
    return [p for i, p in enumerate(out) if p not in out[:i]]


def _fits(v: Value, expected: np.ndarray, allow_transpose: bool) -> bool:
    got = numeric(v)
    if got is None:
        return False
    how = align(got, expected)[1]
    return how in ("", "reshaped") or (how == "transposed" and allow_transpose)


def _number(v: Value) -> bool:
    return v.kind == "array" and v.array is not None and v.array.ndim == 0


def _whole_fits(value: Value, expected: np.ndarray) -> bool:
    whole = numeric(value)
    return whole is not None and align(whole, expected)[1] in ("", "reshaped")


def pick(values: list[Value], expected: list[np.ndarray], take: int | str | list[int | str] | None,
         allow_transpose: bool, hidden: bool) -> Pick:
    """Where the answer is in the values one check's trials returned (one position for every trial)."""
    first = values[0] if values else Value("none")
    if first.kind not in ("seq", "dict") or not first.items:
        return Pick()
    if first.kind == "seq" and _whole_fits(first, expected[0]):
        return Pick()  # a list or tuple of numbers that is itself the answer
    if first.kind == "seq" and not first.is_tuple and all(_number(v) for v in first.items):
        return Pick()  # a list of numbers is an array (of the wrong shape), not several answers
    named = declared(first, take)
    if isinstance(take, int) and named:  # one declared index: that item, whatever its shape
        return Pick(named[0])
    positions = named if named else list(range(len(first.items)))
    same = [p for p in positions
            if all(v.kind == first.kind and p < len(v.items) and _fits(v.items[p], e, allow_transpose)
                   for v, e in zip(values, expected))]
    if not same:
        what = describe_elements(first, hidden)
        exp = dims(expected[0].shape)
        scope = " of the elements the assignment names" if named else ""
        return Pick(failure=f"returned {what}; none{scope} has the expected shape {exp}")
    # Which element is the answer is decided without looking at the expected values: a tuple of
    # many candidate answers must not pass by whichever happens to match (docs/security.md).
    ends = [q for q in same if q in (0, len(first.items) - 1)]  # where students put an output
    if named:
        p, why = same[0], "the first the assignment names"
    elif len(same) == 1:
        p, why = same[0], "the only one of the expected shape"
    elif len(ends) == 1:
        p, why = ends[0], f"the {'first' if ends[0] == 0 else 'last'} item, where an output goes"
    else:
        p, why = same[-1], "the last of those of the expected shape, where an output usually goes"
    return Pick(p, f"judged {_element_name(first, p, hidden)} ({why})")
