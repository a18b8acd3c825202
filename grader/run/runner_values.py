"""The probe runner's values: the grader's inputs decoded, answers encoded, in the kernel.

Kernel-side, a part of the probe runner (grader/run/runner.py, whose docstring says how its
parts are installed): its source runs in the kernel at install, in a module dict of its own
whose builtins are a copy taken then, and binds below everything it later uses. Answers are
plain JSON the grader decodes (grader/run/probe.py); nothing an object says of itself (its
class's name, `__str__`, `__len__`, `__eq__`) is trusted.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
import linecache
import types
from collections.abc import Callable
from typing import Any

import numpy

# What an object really is, never what its class (or metaclass) claims.
_type_name_of = type.__dict__["__name__"].__get__
_type_module_of = type.__dict__["__module__"].__get__
_array_size_of = numpy.ndarray.__dict__["size"].__get__
_array_shape_of = numpy.ndarray.__dict__["shape"].__get__
_asarray, _ndarray, _float64, _frombuffer = numpy.asarray, numpy.ndarray, numpy.float64, numpy.frombuffer
_int64 = numpy.int64
_tobytes = numpy.ndarray.tobytes
_b2a, _a2b = binascii.b2a_base64, binascii.a2b_base64
_sha256 = hashlib.sha256
_getline = linecache.getline
_linecache = linecache.cache
_islice = itertools.islice
_ModuleType, _FunctionType = types.ModuleType, types.FunctionType
# Anything a notebook's code raises is an answer, except the grader's own interrupt.
_EXC = (Exception, SystemExit, GeneratorExit)


def is_plain(x: Any) -> bool:
    """A str, int, float or bool, by identity (a metaclass's __eq__ never runs)."""
    tp = type(x)
    return tp is str or tp is int or tp is float or tp is bool


def safe_text(fn: Callable[[], Any], limit: int = 300) -> str:
    """fn() if it gives a str, else "?"; the notebook's code may raise anything but an interrupt."""
    try:
        s = fn()
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        return "?"
    return s[:limit] if type(s) is str else "?"


def tname(obj: Any) -> str:
    """The real type name of an object."""
    return safe_text(lambda: _type_name_of(type(obj)), 80)


def norm_key(k: str) -> str:
    """As the grader's normalise_key: dW1, grad_W1, W1_grad, dJ_dW1 -> w1."""
    k = "".join(c for c in k.lower() if c.isascii() and c.isalnum())
    for suffix in ("gradient", "grad"):
        if k.endswith(suffix) and len(k) > len(suffix):
            k = k[: -len(suffix)]
            break
    for prefix in ("dldj", "gradient", "grads", "grad", "delta", "dld", "djd", "dl", "dj", "d"):
        if k.startswith(prefix) and len(k) > len(prefix):
            return k[len(prefix):]
    return k


class Keys(dict):
    """A dict input that also answers to the notebook's own spelling of its keys ("dW1" for "W1")."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        if type(key) is str:
            hits = [k for k in dict.keys(self) if type(k) is str and norm_key(k) == norm_key(key)]
            if len(hits) == 1:
                return dict.__getitem__(self, hits[0])
        raise KeyError(key)


Keys.__name__ = Keys.__qualname__ = "dict"


def decode_arg(a: dict[str, Any]) -> Any:
    """A grader input: float64 (or int64: labels) bytes with a shape, a dict of inputs, or a plain number."""
    if "d" in a:
        return Keys((k, decode_arg(v)) for k, v in a["d"])
    if "l" in a:  # a structure of dicts: a network as a list of layers of neurons
        return [decode_arg(v) for v in a["l"]]
    if "a" in a:
        arr = _frombuffer(_a2b(a["a"].encode("ascii")), dtype=_int64 if a.get("int") else _float64)
        return arr.reshape(tuple(a["shape"])).copy()
    return a["n"]


class Unreadable(Exception):
    """A part of an argument the assignment reads that the value after the call does not have."""


def pick(value: Any, path: list[Any]) -> Any:
    """The part of a value a path names: keys and indices in turn; "*" every element of a list
    (a dict's values), so that the values picked form one flat list in order."""
    values, spread = [value], False
    for step in path:
        out = []
        for v in values:
            try:
                if step == "*":
                    spread = True
                    out.extend(dict.values(v) if issubclass(type(v), dict) else list(v))
                else:
                    out.append(v[step])
            except _EXC:
                raise Unreadable(step) from None
        values = out
    return values if spread else values[0]


class Misfit(Exception):
    """A function whose signature cannot take the arguments the assignment passes."""

    def __init__(self, takes: int):
        super().__init__(takes)
        self.takes = takes


def cell_of(tb: Any, ns: dict[str, Any]) -> dict[str, Any] | None:
    """Where in the notebook's own code (innermost frame) an exception was raised."""
    where = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals is ns:
            filename = frame.f_code.co_filename
            entry = _linecache.get(filename)
            lines = entry[2] if type(entry) is tuple and len(entry) >= 3 else None
            text = "".join(lines) if type(lines) is list else ""
            where = {"file_sha": _sha256(text.encode("utf-8", "replace")).hexdigest() if text else "",
                     "line": tb.tb_lineno,
                     "text": safe_text(lambda f=filename, n=tb.tb_lineno: _getline(f, n).strip(), 200)}
        tb = tb.tb_next
    return where


class Encoder:
    """Values as answers, within the answer limits; `budget` is what one request's arrays have used."""

    def __init__(self, ns: dict[str, Any], limits: dict[str, int]):
        self.ns = ns
        self.max_elements = limits["max_elements"]
        self.max_payload = limits["max_payload"]
        self.max_items = limits["max_items"]
        self.max_depth = limits["max_depth"]
        self.budget = 0

    def error_of(self, e: BaseException) -> dict[str, Any]:
        """An exception as an answer: its real type name, its text if plainly made, where it was raised."""
        if isinstance(e, KeyboardInterrupt):  # the grader's time limit: let it through
            raise e
        if type(e) is Misfit:  # the runner's own: the signature does not take the arguments
            return {"t": "signature", "takes": e.takes}
        if type(e) is Unreadable:  # the runner's own: the argument lacks the part the assignment reads
            step = e.args[0]
            return {"t": "no_member", "name": step if type(step) is str else "[" + str(int(step)) + "]"}

        def text() -> str:
            # str() of a notebook's own exception class could run its code (and never return)
            plain = type(e.args) is tuple and all(is_plain(a) for a in e.args)
            return str(e) if plain and not isinstance(type(e).__str__, _FunctionType) else "?"

        out = {"t": "error", "ename": safe_text(lambda: _type_name_of(type(e)), 80), "evalue": safe_text(text),
               "own": safe_text(lambda: _type_module_of(type(e)), 80) in ("__main__", "?")}
        try:
            where = cell_of(e.__traceback__, self.ns)
        except _EXC:
            where = None
        if where is not None:
            out["where"] = where
        return out

    def key_text(self, k: Any) -> str:
        """A dict key as text; a key's own __str__ could run the notebook's code: plain keys only."""
        return safe_text(lambda: str(k), 80) if is_plain(k) else "<" + tname(k) + ">"

    def too_big(self, size: int) -> bool:
        return size > self.max_elements or self.budget + size * 8 > self.max_payload

    def array_value(self, obj: Any) -> dict[str, Any]:
        """An array-like as float64 bytes, or too_big; size first (a view may stand for a billion values)."""
        tp = type(obj)
        if issubclass(tp, _ndarray):
            if self.too_big(_array_size_of(obj)):
                return {"t": "too_big", "shape": [int(d) for d in _array_shape_of(obj)]}
        elif issubclass(tp, list) and list.__len__(obj) > self.max_elements:
            return {"t": "too_big", "shape": [list.__len__(obj)]}
        elif issubclass(tp, tuple) and tuple.__len__(obj) > self.max_elements:
            return {"t": "too_big", "shape": [tuple.__len__(obj)]}
        arr = _asarray(obj)
        if _array_size_of(arr) > self.max_elements:
            return {"t": "too_big", "shape": [int(d) for d in _array_shape_of(arr)]}
        arr = _asarray(arr, dtype=_float64)
        size = _array_size_of(arr)
        shape = [int(d) for d in _array_shape_of(arr)]
        if self.too_big(size):
            return {"t": "too_big", "shape": shape}
        self.budget += size * 8
        data = _tobytes(arr, order="C")
        return {"t": "array", "shape": shape, "b64": _b2a(data, newline=False).decode("ascii")}

    def encode(self, obj: Any, depth: int = 0) -> dict[str, Any]:
        """Any value as plain JSON the grader decodes; never trusts what the object says of itself."""
        try:
            if obj is None:
                return {"t": "none"}
            tp = type(obj)
            if tp is str or tp is bytes:
                return {"t": "str", "v": safe_text(lambda: str(obj))}
            if issubclass(tp, (tuple, list, dict)):
                return self.encode_container(obj, tp, depth)
            if issubclass(tp, (_ModuleType, _FunctionType, type)) or tp is complex:
                return {"t": "object", "type": tname(obj)}
            mod = safe_text(lambda: _type_module_of(tp), 80)
            if mod.startswith("torch") and hasattr(obj, "detach"):
                obj = obj.detach().cpu().numpy()
            if callable(obj) and not hasattr(obj, "__array__"):
                return {"t": "object", "type": tname(obj), "callable": True}
            return self.array_value(obj)
        except _EXC as e:
            out = self.error_of(e)
            out["t"] = "unconvertible"
            return out

    def encode_container(self, obj: Any, tp: type, depth: int) -> dict[str, Any]:
        """Containers by their real type, read with the base class's own methods."""
        if depth >= self.max_depth:
            return {"t": "object", "type": tname(obj)}
        if issubclass(tp, dict):
            items = list(_islice(dict.items(obj), self.max_items))
            return {"t": "dict", "n": dict.__len__(obj),
                    "items": [[self.key_text(k), self.encode(v, depth + 1)] for k, v in items]}
        base = tuple if issubclass(tp, tuple) else list
        seq: dict[str, Any] = {"t": "seq", "tuple": base is tuple, "n": base.__len__(obj),
                               "items": [self.encode(v, depth + 1) for v in _islice(base.__iter__(obj), self.max_items)]}
        # a list or tuple of numbers is also an array (forward returning (o1, o2)): keep both readings
        if base is list or all(is_plain(v) or issubclass(type(v), _ndarray)
                               for v in _islice(tuple.__iter__(obj), self.max_items)):
            try:
                seq["array"] = self.array_value(obj)
            except _EXC:
                pass
        return seq
