"""The probe runner: kernel-side code that calls the notebook's functions for the grader.

The prelude runs this module's source in the kernel before any student cell, in a module
dict of its own whose builtins are a copy taken then (see `boot_source`), and calls
`install`. Everything it later uses is bound at that moment: a notebook that shadows `len`,
patches `builtins.any` or `numpy.asarray` changes nothing the runner runs. The module also
imports normally, so it is tested in a plain interpreter.

Each request is a JSON text naming inputs (never expected values) and a nonce; the answer is
one display message whose MIME type carries the nonce and whose body carries the sha256 of
the exact request text the runner received, so the grader can tell a request that was
rewritten on its way (input transformers, pre_run_cell hooks) from one that ran as sent.
"""

from __future__ import annotations

import binascii
import hashlib
import inspect
import itertools
import json
import linecache
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy

# What an object really is, never what its class (or metaclass) claims.
_type_name_of = type.__dict__["__name__"].__get__
_type_module_of = type.__dict__["__module__"].__get__
_array_size_of = numpy.ndarray.__dict__["size"].__get__
_array_shape_of = numpy.ndarray.__dict__["shape"].__get__
_asarray, _ndarray, _float64, _frombuffer = numpy.asarray, numpy.ndarray, numpy.float64, numpy.frombuffer
_int64 = numpy.int64
_errstate, _tobytes = numpy.errstate, numpy.ndarray.tobytes
_count_nonzero, _not_equal, _flatnonzero = numpy.count_nonzero, numpy.not_equal, numpy.flatnonzero
_b2a, _a2b = binascii.b2a_base64, binascii.a2b_base64
_sha256 = hashlib.sha256
# The C scanner, bound now: patching json (module or class) later does not reach it.
_scan_once = json.JSONDecoder().scan_once
_signature = inspect.signature
_getline = linecache.getline
_linecache = linecache.cache
_islice = itertools.islice
_setprofile, _getprofile = sys.setprofile, sys.getprofile
_ModuleType, _FunctionType, _MethodType = types.ModuleType, types.FunctionType, types.MethodType
# Anything a notebook's code raises is an answer, except the grader's own interrupt.
_EXC = (Exception, SystemExit, GeneratorExit)
# A gradient call that evaluates notebook code on one input moved in one element, at this many
# distinct elements (3 where the input has them), computes its gradient by finite differences.
PERTURBED_CALLS_MIN = 2


def digest(request: str) -> str:
    """The sha256 of a request's text, as the answer carries it."""
    return _sha256(request.encode("utf-8")).hexdigest()


def decode_json(text: str) -> Any:
    """A JSON text parsed by the scanner bound at install."""
    return _scan_once(text, 0)[0]


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
    if "a" in a:
        arr = _frombuffer(_a2b(a["a"].encode("ascii")), dtype=_int64 if a.get("int") else _float64)
        return arr.reshape(tuple(a["shape"])).copy()
    return a["n"]


def convention(conv: str, args: list[Any]) -> tuple[list[Any], bool]:
    """Arguments in another vector convention: "flat" (n,) or "row" (1, n); others unchanged."""
    out, changed = [], False
    for a in args:
        if isinstance(a, _ndarray) and a.ndim == 2 and 1 in a.shape:
            if conv == "flat":
                a, changed = a.reshape(-1), True
            elif a.shape[0] > 1:
                a, changed = a.reshape(1, -1), True
        out.append(a)
    return out, changed


class Misfit(Exception):
    """A function whose signature cannot take the arguments the assignment passes."""

    def __init__(self, takes: int):
        super().__init__(takes)
        self.takes = takes


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_EMPTY = inspect.Parameter.empty


def fit(fn: Callable[..., Any], args: list[Any], argnames: list[str], optional: list[Any] | None = None,
        optnames: list[str] | None = None) -> tuple[list[Any], dict[str, Any]]:
    """How to call fn (positional, keyword arguments), with each optional argument it takes.

    `args` go by position (by keyword when its parameters are the same names in another
    order); an optional argument goes by name, else into a required positional slot left
    over, else not at all. Raises Misfit when the signature cannot take them; a callable
    without a signature gets `args` as they are.
    """
    try:
        sig = _signature(fn)
        params = list(sig.parameters.values())
    except _EXC:
        return list(args), {}
    positional = [p for p in params if p.kind in _POSITIONAL]
    low = [p.name.lower() for p in positional]
    want = [a.lower() for a in argnames]
    pos: list[Any] = list(args)
    kwargs: dict[str, Any] = {}
    if argnames and len(set(low)) == len(low) and sorted(low) == sorted(want) and low != want:
        kwargs = {positional[low.index(w)].name: a for w, a in zip(want, args)}
        pos = []
    filled = {p.name for p in positional[:len(pos)]} | set(kwargs)
    for value, name in zip(optional or [], optnames or []):
        named = [p for p in params if p.kind in _BY_NAME and p.name.lower() == name.lower() and p.name not in filled]
        if named:
            kwargs[named[0].name] = value
            filled.add(named[0].name)
            continue
        slot = positional[len(pos)] if len(pos) < len(positional) and not kwargs else None
        if slot is not None and slot.default is _EMPTY and slot.name not in filled:
            pos.append(value)
            filled.add(slot.name)
    try:
        sig.bind(*pos, **kwargs)
    except TypeError:
        raise Misfit(sum(1 for p in positional if p.default is _EMPTY)) from None
    return pos, kwargs


def call(fn: Callable[..., Any], args: list[Any], argnames: list[str], optional: list[Any] | None = None,
         optnames: list[str] | None = None) -> Any:
    """fn called as `fit` says; Misfit when its signature cannot take the arguments."""
    pos, kwargs = fit(fn, args, argnames, optional, optnames)
    return fn(*pos, **kwargs)


def fitted(value: Any, old: Any) -> Any:
    """A grader array in the shape of the value it replaces, when only the shape differs (a bias as (n,) or (n, 1))."""
    if type(old) is _ndarray and type(value) is _ndarray and _array_size_of(old) == _array_size_of(value):
        return value.reshape(_array_shape_of(old))
    return value


def arrays_in(value: Any, depth: int = 0) -> list[Any]:
    """The float arrays in a value, in dicts, lists and tuples too (by their real types)."""
    tp = type(value)
    if tp is _ndarray:
        return [value]
    if depth >= 2:
        return []
    if issubclass(tp, dict):
        return [a for v in _islice(dict.values(value), 64) for a in arrays_in(v, depth + 1)]
    if tp is list or tp is tuple:
        return [a for v in _islice(value, 64) for a in arrays_in(v, depth + 1)]
    return []


def one_moved(arr: Any, originals: list[Any]) -> int:
    """The index of the original this array equals but for exactly one element, else -1."""
    shape = _array_shape_of(arr)
    for i, orig in enumerate(originals):
        if _array_shape_of(orig) == shape and _array_size_of(orig) > 1:
            try:
                if _count_nonzero(_not_equal(arr, orig)) == 1:
                    return i
            except _EXC:
                continue
    return -1


class PerturbationWatch:
    """Counts calls of the notebook's own functions on inputs moved in exactly one element.

    A gradient computed by finite differences evaluates the forward pass (or the loss) with
    one parameter element moved, for every element; backpropagation by hand never does, however
    often it calls sigmoid or loops over the samples. Set as the profile hook around one call.
    """

    def __init__(self, ns: dict[str, Any], inputs: list[Any]):
        self.ns = ns
        self.originals = [a.copy() for a in arrays_in(inputs)]
        self.moved: set[tuple[int, int]] = set()  # (input, flat index) of each one-element move seen

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or frame.f_globals is not self.ns or not self.originals:
            return
        try:  # an exception here would end the profiling and reach the notebook's code
            self.note(frame)
        except _EXC:
            pass

    def note(self, frame: Any) -> None:
        """Record the first argument of a notebook function's call that is an input moved in one element."""
        code = frame.f_code
        local = frame.f_locals
        for name in _islice(code.co_varnames, code.co_argcount + code.co_kwonlyargcount):
            for a in arrays_in(local.get(name)):
                which = one_moved(a, self.originals)
                if which >= 0:
                    where = int(_flatnonzero(_not_equal(a, self.originals[which]))[0])
                    self.moved.add((which, where))  # distinct perturbations count once
                    return

    def numerical(self) -> bool:
        """Whether the call moved some input element by element: at least 2 (or 3, if it has as many)."""
        for i, orig in enumerate(self.originals):
            need = max(PERTURBED_CALLS_MIN, min(3, _array_size_of(orig)))
            if sum(1 for which, _ in self.moved if which == i) >= need:
                return True
        return False


def watched_call(ns: dict[str, Any], fn: Callable[..., Any], args: list[Any], argnames: list[str],
                 optional: list[Any] | None = None, optnames: list[str] | None = None) -> tuple[Any, bool]:
    """fn's result, and whether it evaluated the notebook's code on one-element perturbations."""
    watch = PerturbationWatch(ns, args)
    previous = _getprofile()
    _setprofile(watch)
    try:
        result = call(fn, args, argnames, optional, optnames)
    finally:
        _setprofile(previous)
    return result, watch.numerical()


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


class Runner:
    """The installed runner: the notebook's namespace, the publisher, and the answer limits."""

    def __init__(self, ns: dict[str, Any], publish: Callable[..., Any], limits: dict[str, int]):
        self.ns = ns
        self.publish = publish
        self.max_elements = limits["max_elements"]
        self.max_payload = limits["max_payload"]
        self.max_items = limits["max_items"]
        self.max_depth = limits["max_depth"]
        self.budget = 0
        self.modules = sys.modules
        self.baseline = frozenset(sys.modules)  # before any student cell runs
        # Every import from now on, by top-level name: deleting a module from sys.modules
        # afterwards does not hide that it was loaded (audit hooks cannot be removed).
        self.imported: set[str] = set()
        sys.addaudithook(self.audit)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        """Note the top-level name of every module imported."""
        if event == "import" and args and type(args[0]) is str:
            self.imported.add(args[0].partition(".")[0])

    # -- values

    def error_of(self, e: BaseException) -> dict[str, Any]:
        """An exception as an answer: its real type name, its text if plainly made, where it was raised."""
        if isinstance(e, KeyboardInterrupt):  # the grader's time limit: let it through
            raise e
        if type(e) is Misfit:  # the runner's own: the signature does not take the arguments
            return {"t": "signature", "takes": e.takes}

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

    # -- finding and calling

    def lookup(self, names: list[str]) -> tuple[str | None, Any]:
        """The first name the notebook defines (a dotted name reaches attributes), or a method of its one owner."""
        ns = self.ns
        for name in names:
            head, _, rest = name.partition(".")
            if head in ns:
                obj = ns[head]
                try:
                    for attr in rest.split(".") if rest else ():
                        obj = getattr(obj, attr)
                except _EXC:
                    continue
                return name, obj
        for name in names:  # a method of the one object in the notebook that has it
            if "." in name or name.startswith("_"):
                continue
            owners = []
            for key, val in list(ns.items()):
                if key.startswith("_") or isinstance(val, (_ModuleType, type)):
                    continue
                try:
                    if _type_module_of(type(val)) == "__main__" and callable(getattr(val, name, None)):
                        owners.append((key, val))
                except _EXC:
                    continue
            if len(owners) == 1:
                return owners[0][0] + "." + name, getattr(owners[0][1], name)
        return None, None

    def alternates(self, item: dict[str, Any], obj: Any) -> dict[str, Any]:
        """The same call with vectors shaped as 1-D arrays ("flat") or rows ("row")."""
        alts = {}
        for conv in ("flat", "row"):
            args, changed = convention(conv, [decode_arg(a) for a in item["args"]])
            if not changed:
                continue
            try:
                alts[conv] = self.encode(call(obj, args, item.get("argnames") or [], *self.optional(item)))
            except _EXC as e:
                alts[conv] = self.error_of(e)
        return alts

    def then_call(self, item: dict[str, Any], result: Any, ans: dict[str, Any]) -> dict[str, Any]:
        """A pipeline's second call, fed the first one's result."""
        found2, obj2 = self.lookup(item["then_names"])
        ans["then_found"] = found2
        if found2 is None:
            return {"t": "missing"}
        if not callable(obj2):
            return {"t": "not_callable", "type": tname(obj2)}
        try:
            args2 = [result if "r" in a else decode_arg(a) for a in item["then_args"]]
            return self.encode(call(obj2, args2, []))
        except _EXC as e:
            return self.error_of(e)

    def run_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """The answer to one probe item."""
        found, obj = self.lookup(item["names"])
        ans: dict[str, Any] = {"id": item["id"], "found": found}
        if found is None:
            ans["value"] = {"t": "missing"}
            return ans
        if item["kind"] == "variable":
            ans["value"] = self.encode(obj)
            return ans
        if not callable(obj):
            ans["value"] = {"t": "not_callable", "type": tname(obj)}
            return ans
        argnames = item.get("argnames") or []
        if item["kind"] == "class":
            ans["value"] = self.run_class(item, obj, ans)
            return ans
        optional = self.optional(item)
        try:
            args = [decode_arg(a) for a in item["args"]]
            if item.get("fp_raise"):  # stability check: a numpy overflow raises
                with _errstate(over="raise"):
                    result = call(obj, args, argnames, *optional)
            elif item.get("watch"):
                result, numerical = watched_call(self.ns, obj, args, argnames, *optional)
                ans["numerical"] = numerical
            else:
                result = call(obj, args, argnames, *optional)
        except _EXC as e:
            ans["value"] = self.error_of(e)
        else:
            if item["kind"] == "pipeline":
                if item.get("keep"):  # what the first function returned (a behaviour check's parameters)
                    ans["result"] = self.encode(result)
                ans["value"] = self.then_call(item, result, ans)
            else:
                ans["value"] = self.encode(result)
        if item.get("alt"):
            alts = self.alternates(item, obj)
            if alts:
                ans["alts"] = alts
        return ans

    def optional(self, item: dict[str, Any]) -> tuple[list[Any], list[str]]:
        """An item's optional arguments (passed when the function takes them) and their names."""
        return [decode_arg(a) for a in item.get("opt") or []], list(item.get("optnames") or [])

    def run_class(self, item: dict[str, Any], cls: Any, ans: dict[str, Any]) -> dict[str, Any]:
        """Build the notebook's class, put the grader's parameters in it, call a method; its result or state."""
        ans["stage"] = "init"
        try:
            obj = call(cls, [decode_arg(a) for a in item["init_args"]], item.get("init_names") or [])
            ans["stage"] = "state"
            if item.get("state") is not None:
                missing = self.put_state(obj, decode_arg(item["state"]), item)
                if missing:
                    return {"t": "no_member", "name": missing}
            ans["stage"] = "method"
            try:
                method = getattr(obj, item["method"])
            except _EXC:
                return {"t": "no_member", "name": item["method"]}
            if not callable(method):
                return {"t": "not_callable", "type": tname(method)}
            result = call(method, [decode_arg(a) for a in item["args"]], item.get("argnames") or [],
                          *self.optional(item))
            if item.get("read") == "state":
                ans["stage"] = "read"
                return self.encode(self.get_state(obj, item))
            return self.encode(result)
        except _EXC as e:
            return self.error_of(e)

    def put_state(self, obj: Any, state: dict[str, Any], item: dict[str, Any]) -> str:
        """Set the object's parameters (in the notebook's own shapes where only they differ); the name missing, else ""."""
        attr = item.get("state_attribute")
        if attr:
            target = getattr(obj, attr, None)
            if not issubclass(type(target), dict):
                return attr
            for key, value in dict.items(state):
                own = self.own_key(target, key)
                dict.__setitem__(target, own, fitted(value, dict.get(target, own)))
            return ""
        for name, key in item.get("state_attributes") or []:
            if not hasattr(obj, name):
                return name
            setattr(obj, name, fitted(dict.__getitem__(state, key), getattr(obj, name)))
        return ""

    def get_state(self, obj: Any, item: dict[str, Any]) -> dict[str, Any]:
        """The object's parameters after the call, under the grader's keys."""
        attr = item.get("state_attribute")
        keys = [k for k, _ in item["state"]["d"]]
        if attr:
            target = getattr(obj, attr)
            return {k: dict.get(target, self.own_key(target, k)) for k in keys}
        return {key: getattr(obj, name) for name, key in item.get("state_attributes") or []}

    def own_key(self, target: dict[Any, Any], key: str) -> Any:
        """The notebook's spelling of a parameter's key ("w1" for "W1"), else the grader's."""
        if dict.__contains__(target, key):
            return key
        hits = [k for k in dict.keys(target) if type(k) is str and norm_key(k) == norm_key(key)]
        return hits[0] if len(hits) == 1 else key

    # -- requests

    def answer(self, nonce: str, request: str, body: dict[str, Any]) -> None:
        """Publish the one answer to a request, with the digest of the request as received."""
        body["nonce"] = nonce
        body["digest"] = digest(request)
        self.publish(data={"application/x-grader-" + nonce + "+json": body}, metadata={})

    def probe(self, nonce: str, request: str) -> None:
        """Answer a probe request: call functions, read variables."""
        self.budget = 0
        req = decode_json(request)
        self.answer(nonce, request, {"answers": [self.run_item(item) for item in req["items"]]})

    def loaded(self, nonce: str, request: str) -> None:
        """Which of the named top-level modules were imported since install; says which were checked."""
        names = [n for n in decode_json(request)["names"] if type(n) is str]
        keys = list(self.modules)
        hits = [n for n in names if n not in self.baseline
                and (n in self.imported or any(k == n or k.startswith(n + ".") for k in keys))]
        self.answer(nonce, request, {"checked": names, "loaded": hits, "answers": []})


def install(ip: Any, modname: str, limits: dict[str, int]) -> _ModuleType:
    """Register the runner for the kernel's notebook namespace under `modname`."""
    runner = Runner(ip.user_ns, ip.display_pub.publish, limits)
    mod = _ModuleType(modname)
    mod.probe = runner.probe
    mod.loaded = runner.loaded
    sys.modules[modname] = mod
    return mod


def boot_source(modname: str, limits: dict[str, int]) -> str:
    """Kernel code that runs this module's source in a fresh module dict and installs it.

    The dict's builtins are a copy of `builtins` taken now, before any student cell: neither
    the notebook's globals nor a later patch of `builtins` reaches a name the runner uses.
    """
    source = Path(__file__).read_text(encoding="utf-8")
    return (
        "def _grader_boot(source, modname, limits):\n"
        "    import builtins, sys\n"
        "    g = {'__name__': modname, '__builtins__': dict(builtins.__dict__)}\n"
        "    mod = type(sys)(modname)\n"
        "    mod.__dict__.update(g)\n"
        "    sys.modules[modname] = mod  # while its source runs (dataclass-style lookups)\n"
        "    exec(compile(source, '<grader-runner>', 'exec'), mod.__dict__)\n"
        "    mod.__dict__['install'](get_ipython(), modname, limits)\n"
        f"_grader_boot({source!r}, {modname!r}, {limits!r})\n"
        "del _grader_boot\n"
    )



def enter_workdir_source(work: str) -> str:
    """Kernel code that makes the work folder the cwd and puts it last on sys.path.

    The kernel starts in an empty, read-only folder; the notebook's own files (`import
    my_answers`) are found from the work folder, but only after every module of the kernel's
    Python: a `numpy.py` beside the notebook shadows nothing. `''` and the start folder, which
    IPython and Python insert, are taken out.
    """
    return (
        "def _grader_enter(work):\n"
        "    import os, sys\n"
        "    start = os.getcwd()\n"
        "    os.chdir(work)\n"
        "    drop = {'', '.', start, work}\n"
        "    sys.path[:] = [p for p in sys.path if p not in drop] + [work]\n"
        f"_grader_enter({work!r})\n"
        "del _grader_enter\n"
    )
