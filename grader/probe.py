"""Probing: call the student's functions and read its variables inside its kernel.

Before any student cell runs, a prelude installs a probe runner in the kernel. It holds
its own references to the builtins and numpy functions it needs, taken before the student
could patch them, under a module name that is random for each run. After the student's
cells, each probe request names the inputs (never expected values) and a fresh nonce; the
runner answers with a single display message whose MIME type carries that nonce. Values are
plain float64 bytes plus structure; the grader decodes and bounds them, and all judging
happens in the grader's process.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_ELEMENTS = 1_000_000  # per returned array
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # per probe request, all values together (base64 fits a message)
MAX_ITEMS = 64  # per dict / sequence
MAX_DEPTH = 4
MAX_DIMS = 32  # numpy's own limit is 64; no answer needs more

# Runs in the kernel. Keep it self-contained: it may only rely on what it captures here.
_PRELUDE = r'''
def _grader_install(modname, max_elements, max_payload, max_items, max_depth):
    import sys, types, builtins, binascii, inspect, json
    import numpy
    ip = get_ipython()
    ns = ip.user_ns
    publish = ip.display_pub.publish
    asarray, ndarray, float64, frombuffer = numpy.asarray, numpy.ndarray, numpy.float64, numpy.frombuffer
    errstate = numpy.errstate
    tobytes = numpy.ndarray.tobytes
    b2a, a2b = binascii.b2a_base64, binascii.a2b_base64
    # The C scanner is bound now: patching json (module or class) later does not reach it.
    scan_once = json.JSONDecoder().scan_once

    def decode_json(text):
        return scan_once(text, 0)[0]

    isinstance_, len_, str_, type_, callable_ = isinstance, len, str, type, callable
    getattr_, hasattr_, list_, tuple_, dict_ = getattr, hasattr, list, tuple, dict
    int_, float_, bool_, complex_, bytes_ = int, float, bool, complex, bytes
    issubclass_, islice = issubclass, __import__("itertools").islice
    # What an object really is, never what its class (or metaclass) claims.
    type_name_of = type.__dict__["__name__"].__get__
    type_module_of = type.__dict__["__module__"].__get__
    array_size_of = ndarray.__dict__["size"].__get__

    def is_plain(x):  # by identity: a metaclass's __eq__ never runs
        tp = type_(x)
        return tp is str_ or tp is int_ or tp is float_ or tp is bool_

    # Anything a notebook's code raises is an answer, except the grader's own interrupt.
    exc_types = (Exception, SystemExit, GeneratorExit)
    signature = inspect.signature
    ModuleType, FunctionType = types.ModuleType, types.FunctionType

    def safe_text(fn, limit=300):
        try:
            s = fn()
            if type_(s) is not str_:
                return "?"
            return s[:limit]
        except BaseException as e:
            if isinstance_(e, KeyboardInterrupt):
                raise
            return "?"

    def error_of(e):
        if isinstance_(e, KeyboardInterrupt):  # the grader's time limit: let it through
            raise e
        # str() of a notebook's own exception class could run its code (and never return):
        # only exceptions with a built-in __str__ and plain arguments are shown
        def text():
            plain = type_(e.args) is tuple_ and all(is_plain(a) for a in e.args)
            return str_(e) if plain and not isinstance_(type_(e).__str__, FunctionType) else "?"
        return {"t": "error", "ename": safe_text(lambda: type_name_of(type_(e)), 80), "evalue": safe_text(text)}

    def tname(obj):
        return safe_text(lambda: type_name_of(type_(obj)), 80)

    def key_text(k):  # a key's own __str__ could run the notebook's code: plain keys only
        return safe_text(lambda: str_(k), 80) if is_plain(k) else "<" + tname(k) + ">"

    def norm_key(k):  # as the grader's normalise_key: dW1, grad_W1, W1_grad, dJ_dW1 -> w1
        k = "".join(c for c in k.lower() if c.isascii() and c.isalnum())
        for suffix in ("gradient", "grad"):
            if k.endswith(suffix) and len_(k) > len_(suffix):
                k = k[:-len_(suffix)]
                break
        for prefix in ("dldj", "gradient", "grads", "grad", "delta", "dld", "djd", "dl", "dj", "d"):
            if k.startswith(prefix) and len_(k) > len_(prefix):
                return k[len_(prefix):]
        return k

    class Keys(dict_):
        # A dict input also answers to the notebook's own spelling of its keys: an update()
        # written for its gradients' "dW1" reads the grader's "W1".
        __slots__ = ()

        def __missing__(self, key):
            if type_(key) is str_:
                hits = [k for k in dict_.keys(self) if type_(k) is str_ and norm_key(k) == norm_key(key)]
                if len_(hits) == 1:
                    return dict_.__getitem__(self, hits[0])
            raise KeyError(key)

    Keys.__name__ = Keys.__qualname__ = "dict"

    def decode_arg(a):
        if "d" in a:
            return Keys((k, decode_arg(v)) for k, v in a["d"])
        if "a" in a:
            arr = frombuffer(a2b(a["a"].encode("ascii")), dtype=float64)
            return arr.reshape(tuple_(a["shape"])).copy()
        return a["n"]

    budget = [0]

    def array_value(obj):
        if issubclass_(type_(obj), ndarray):  # size first: a broadcast view may stand for a billion values
            size = array_size_of(obj)
            if size > max_elements or budget[0] + size * 8 > max_payload:
                return {"t": "too_big", "shape": list_(int_(d) for d in ndarray.__dict__["shape"].__get__(obj))}
        elif issubclass_(type_(obj), list_) and list_.__len__(obj) > max_elements:
            return {"t": "too_big", "shape": [list_.__len__(obj)]}
        elif issubclass_(type_(obj), tuple_) and tuple_.__len__(obj) > max_elements:
            return {"t": "too_big", "shape": [tuple_.__len__(obj)]}
        arr = asarray(obj)
        if array_size_of(arr) > max_elements:
            return {"t": "too_big", "shape": list_(int_(d) for d in arr.shape)}
        arr = asarray(arr, dtype=float64)
        if arr.size > max_elements or budget[0] + arr.size * 8 > max_payload:
            return {"t": "too_big", "shape": list_(int_(d) for d in arr.shape)}
        budget[0] += arr.size * 8
        data = tobytes(arr, order="C")
        return {"t": "array", "shape": list_(int_(d) for d in arr.shape),
                "b64": b2a(data, newline=False).decode("ascii")}

    def encode(obj, depth=0):
        try:
            if obj is None:
                return {"t": "none"}
            tp = type_(obj)
            if tp is str_ or tp is bytes_:
                return {"t": "str", "v": safe_text(lambda: str_(obj))}
            # Containers by their real type, read with the base class's own methods: a subclass
            # (or a __class__ that lies) cannot change what is read or how much.
            if issubclass_(tp, (tuple_, list_, dict_)):
                if depth >= max_depth:
                    return {"t": "object", "type": tname(obj)}
                if issubclass_(tp, dict_):
                    items = list_(islice(dict_.items(obj), max_items))
                    return {"t": "dict", "n": dict_.__len__(obj),
                            "items": [[key_text(k), encode(v, depth + 1)] for k, v in items]}
                base = tuple_ if issubclass_(tp, tuple_) else list_
                seq = {"t": "seq", "tuple": base is tuple_, "n": base.__len__(obj),
                       "items": [encode(v, depth + 1) for v in islice(base.__iter__(obj), max_items)]}
                # a list or tuple of numbers is also an array (forward returning (o1, o2)); keep both readings
                if base is list_ or all(is_plain(v) or issubclass_(type_(v), ndarray)
                                        for v in islice(tuple_.__iter__(obj), max_items)):
                    try:
                        seq["array"] = array_value(obj)
                    except exc_types:
                        pass
                return seq
            if issubclass_(tp, (ModuleType, FunctionType, type_)) or tp is complex_:
                return {"t": "object", "type": tname(obj)}
            mod = safe_text(lambda: type_module_of(tp), 80)
            if mod.startswith("torch") and hasattr_(obj, "detach"):
                obj = obj.detach().cpu().numpy()
            if callable_(obj) and not hasattr_(obj, "__array__"):
                return {"t": "object", "type": tname(obj), "callable": True}
            return array_value(obj)
        except exc_types as e:
            out = error_of(e)
            out["t"] = "unconvertible"
            return out

    def lookup(names):
        for name in names:
            head, _, rest = name.partition(".")
            if head in ns:
                obj = ns[head]
                try:
                    for attr in rest.split(".") if rest else ():
                        obj = getattr_(obj, attr)
                except exc_types:
                    continue
                return name, obj
        # a method of the one object in the notebook that has it (class-based notebooks)
        for name in names:
            if "." in name or name.startswith("_"):
                continue
            owners = []
            for key, val in list_(ns.items()):
                if key.startswith("_") or isinstance_(val, (ModuleType, type_)):
                    continue
                try:
                    if type_module_of(type_(val)) == "__main__" and callable_(getattr_(val, name, None)):
                        owners.append((key, val))
                except exc_types:
                    continue
            if len_(owners) == 1:
                return owners[0][0] + "." + name, getattr_(owners[0][1], name)
        return None, None

    def call(fn, args, argnames):
        kwargs = None
        try:
            # same names in another order (case aside): pass by keyword, e.g. forward(W1, W2, X)
            params = list_(signature(fn).parameters)
            low = [p.lower() for p in params]
            want = [a.lower() for a in argnames]
            if argnames and len(set(low)) == len(low) and sorted(low) == sorted(want) and low != want:
                kwargs = dict_((params[low.index(w)], a) for w, a in zip(want, args))
        except exc_types:
            pass
        if kwargs is not None:
            return fn(**kwargs)
        return fn(*args)

    def convention(conv, args):
        # the notebook's own vector convention: "flat" passes (n, 1) and (1, n) arrays as (n,),
        # "row" passes (n, 1) columns as (1, n) rows; other arguments (and dicts) stay as they are
        out, changed = [], False
        for a in args:
            if isinstance_(a, ndarray) and a.ndim == 2 and 1 in a.shape:
                if conv == "flat":
                    a, changed = a.reshape(-1), True
                elif a.shape[0] > 1:
                    a, changed = a.reshape(1, -1), True
            out.append(a)
        return out, changed

    def alternates(item, obj):
        alts = {}
        for conv in ("flat", "row"):
            args, changed = convention(conv, [decode_arg(a) for a in item["args"]])
            if not changed:
                continue
            try:
                alts[conv] = encode(call(obj, args, item.get("argnames") or []))
            except exc_types as e:
                alts[conv] = error_of(e)
        return alts

    def then_call(item, result, ans):
        found2, obj2 = lookup(item["then_names"])
        ans["then_found"] = found2
        if found2 is None:
            return {"t": "missing"}
        if not callable_(obj2):
            return {"t": "not_callable", "type": tname(obj2)}
        try:
            args2 = [result if "r" in a else decode_arg(a) for a in item["then_args"]]
            return encode(call(obj2, args2, []))
        except exc_types as e:
            return error_of(e)

    def probe(nonce, request):
        budget[0] = 0
        req = decode_json(request)
        answers = []
        for item in req["items"]:
            found, obj = lookup(item["names"])
            ans = {"id": item["id"], "found": found}
            if found is None:
                ans["value"] = {"t": "missing"}
            elif item["kind"] == "variable":
                ans["value"] = encode(obj)
            elif not callable_(obj):
                ans["value"] = {"t": "not_callable", "type": tname(obj)}
            else:
                try:
                    args = [decode_arg(a) for a in item["args"]]
                    if item.get("fp_raise"):  # stability check: a numpy overflow raises
                        with errstate(over="raise"):
                            result = call(obj, args, item.get("argnames") or [])
                    else:
                        result = call(obj, args, item.get("argnames") or [])
                except exc_types as e:
                    ans["value"] = error_of(e)
                else:
                    if item["kind"] == "pipeline":  # feed the result to a second function
                        ans["value"] = then_call(item, result, ans)
                    else:
                        ans["value"] = encode(result)
                if item.get("alt"):  # the same call with vectors shaped as 1-D arrays or rows
                    alts = alternates(item, obj)
                    if alts:
                        ans["alts"] = alts
            answers.append(ans)
        publish(data={"application/x-grader-" + nonce + "+json": {"nonce": nonce, "answers": answers}},
                metadata={})

    modules, baseline = sys.modules, frozenset(sys.modules)  # before any student cell runs

    def loaded(nonce, request):
        # which of the named top-level modules the notebook has imported since the prelude
        names = decode_json(request)
        keys = list_(modules)
        hits = [n for n in names if n not in baseline
                and any(k == n or k.startswith(n + ".") for k in keys)]
        publish(data={"application/x-grader-" + nonce + "+json": {"nonce": nonce, "answers": [
            {"id": n, "found": n, "value": {"t": "none"}} for n in hits]}}, metadata={})

    mod = ModuleType(modname)
    mod.probe = probe
    mod.loaded = loaded
    sys.modules[modname] = mod

_grader_install(%(modname)r, %(max_elements)d, %(max_payload)d, %(max_items)d, %(max_depth)d)
del _grader_install
'''


def new_module_name() -> str:
    """A module name for the runner that a notebook cannot know in advance."""
    return "_grader_probe_" + secrets.token_hex(8)


def prelude_source(modname: str) -> str:
    """Kernel code that installs the runner; run before any student cell."""
    return _PRELUDE % {
        "modname": modname,
        "max_elements": MAX_ELEMENTS,
        "max_payload": MAX_PAYLOAD_BYTES,
        "max_items": MAX_ITEMS,
        "max_depth": MAX_DEPTH,
    }


@dataclass
class ProbeItem:
    """One call of a student function, or one read of a variable."""

    id: str
    kind: str  # "function" | "variable"
    names: list[str]
    args: list[Any] = field(default_factory=list)
    argnames: list[str] = field(default_factory=list)
    # kind "pipeline": the first call's result is passed to `then_names` where then_args holds RESULT
    then_names: list[str] = field(default_factory=list)
    then_args: list[Any] = field(default_factory=list)
    fp_raise: bool = False  # call with numpy overflow raising FloatingPointError
    # also call it with column/row vectors passed as 1-D arrays ("flat") and as rows ("row"),
    # for notebooks written in another vector convention
    alternates: bool = False


RESULT = object()  # placeholder in ProbeItem.then_args for the first call's result


def encode_arg(value: Any) -> dict[str, Any]:
    """A grader input as the runner receives it: float64 bytes, or a plain number."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype=np.float64)
        return {"a": base64.b64encode(arr.tobytes()).decode("ascii"), "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {"d": [[str(k), encode_arg(v)] for k, v in value.items()]}
    if isinstance(value, (bool, int, float)):
        return {"n": value}
    if isinstance(value, np.number):
        return {"n": value.item()}
    raise TypeError(f"unsupported probe input {type(value).__name__}")


def request_source(modname: str, nonce: str, items: list[ProbeItem]) -> str:
    """Kernel code for one probe request."""
    payload = json.dumps(
        {
            "items": [
                {
                    "id": it.id,
                    "kind": it.kind,
                    "names": it.names,
                    "args": [encode_arg(a) for a in it.args],
                    "argnames": it.argnames,
                    "then_names": it.then_names,
                    "then_args": [{"r": 1} if a is RESULT else encode_arg(a) for a in it.then_args],
                    "fp_raise": it.fp_raise,
                    "alt": it.alternates and it.kind == "function" and not it.fp_raise,
                }
                for it in items
            ]
        }
    )
    return f"__import__('sys').modules[{modname!r}].probe({nonce!r}, {payload!r})"


def loaded_source(modname: str, nonce: str, names: list[str]) -> str:
    """Kernel code asking which of `names` (top-level modules) the notebook imported."""
    return f"__import__('sys').modules[{modname!r}].loaded({nonce!r}, {json.dumps(names)!r})"


def new_nonce() -> str:
    """A fresh nonce for one probe request."""
    return secrets.token_hex(16)


def mime_for(nonce: str) -> str:
    """The MIME type of the one genuine answer to a request."""
    return f"application/x-grader-{nonce}+json"


# ---------------------------------------------------------------- grader side


@dataclass
class Value:
    """A value brought back from the kernel, decoded and bounded."""

    kind: str  # array | seq | dict | none | str | object | error | unconvertible | missing | not_callable | too_big
    array: np.ndarray | None = None
    items: list[Value] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    is_tuple: bool = False
    length: int = 0
    type_name: str = ""
    text: str = ""
    ename: str = ""
    shape: tuple[int, ...] = ()

    def describe(self) -> str:
        """What the value is, in a few words, for feedback."""
        if self.kind == "array":
            assert self.array is not None
            if self.array.ndim == 0:
                return "a number"
            return f"an array of shape {shape_str(self.array.shape)}"
        if self.kind == "seq":
            return f"a {'tuple' if self.is_tuple else 'list'} of {self.length} items"
        if self.kind == "dict":
            return f"a dict with keys {', '.join(repr(k) for k in self.keys[:8])}"
        if self.kind == "none":
            return "None"
        if self.kind == "str":
            return "a string"
        if self.kind == "too_big":
            return f"an array of shape {shape_str(self.shape)}, too large to grade"
        return f"a {self.type_name or 'value'} object"


def shape_str(shape: tuple[int, ...]) -> str:
    """(3, 2) as 3x2, () as a scalar."""
    return "x".join(str(d) for d in shape) if shape else "scalar"


def decode_value(raw: Any, depth: int = 0) -> Value:
    """Turn the runner's JSON into a Value, trusting nothing about it."""
    if not isinstance(raw, dict) or depth > MAX_DEPTH + 1:
        return Value("unconvertible", text="malformed value")
    kind = raw.get("t")
    if kind == "array":
        try:
            shape = tuple(_int(d, -1) for d in _as_list(raw["shape"])[:MAX_DIMS + 1])
            if len(shape) > MAX_DIMS or any(d < 0 for d in shape) or _size(shape) > MAX_ELEMENTS:
                return Value("unconvertible" if any(d < 0 for d in shape) else "too_big",
                             shape=tuple(max(d, 0) for d in shape[:8]), text="malformed array")
            data = base64.b64decode(raw["b64"], validate=True)
            arr = np.frombuffer(data, dtype=np.float64)
            return Value("array", array=arr.reshape(shape).copy())
        except (KeyError, TypeError, ValueError, binascii.Error):
            return Value("unconvertible", text="malformed array")
    if kind == "seq":
        items = [decode_value(v, depth + 1) for v in _as_list(raw.get("items"))[:MAX_ITEMS]]
        v = Value("seq", items=items, is_tuple=bool(raw.get("tuple")), length=_int(raw.get("n")))
        if "array" in raw:
            arr = decode_value(raw["array"], depth + 1)
            if arr.kind == "array":
                v.array = arr.array
        return v
    if kind == "dict":
        pairs = [p for p in _as_list(raw.get("items"))[:MAX_ITEMS] if isinstance(p, list) and len(p) == 2]
        return Value(
            "dict",
            keys=[str(k)[:80] for k, _ in pairs],
            items=[decode_value(v, depth + 1) for _, v in pairs],
            length=_int(raw.get("n")),
        )
    if kind in ("error", "unconvertible"):
        return Value(kind, ename=str(raw.get("ename", ""))[:80], text=str(raw.get("evalue", ""))[:300])
    if kind == "too_big":
        return Value("too_big", shape=tuple(_int(d) for d in _as_list(raw.get("shape"))[:8]))
    if kind in ("none", "missing"):
        return Value(kind)
    if kind == "str":
        return Value("str", text=str(raw.get("v", ""))[:300])
    if kind in ("object", "not_callable"):
        return Value(kind, type_name=str(raw.get("type", ""))[:80])
    return Value("unconvertible", text="malformed value")


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _int(x: Any, default: int = 0) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def _size(shape: tuple[int, ...]) -> int:
    """Elements in a shape, in Python integers: a forged shape cannot overflow it."""
    n = 1
    for d in shape:
        n *= d
        if n > MAX_ELEMENTS:  # stop early: the product of forged dimensions could be astronomically large
            return n
    return n


@dataclass
class Answer:
    """The runner's answer for one probe item."""

    id: str
    found: str | None
    value: Value
    then_found: str | None = None  # pipelines: the second function's name as found
    alts: dict[str, Value] = field(default_factory=dict)  # other vector conventions: "flat", "row"


def read_answers(outputs: list[dict[str, Any]], nonce: str) -> tuple[dict[str, Answer], int]:
    """Answers carried by the genuine display message of one request, and how many claimed to be it."""
    mime = mime_for(nonce)
    genuine = [
        o["data"][mime]
        for o in outputs
        if o.get("output_type") == "display_data" and mime in o.get("data", {})
    ]
    if not genuine:
        return {}, 0
    body = genuine[0]
    if isinstance(body, str):  # some frontends keep JSON as text
        try:
            body = json.loads(body)
        except ValueError:
            return {}, len(genuine)
    answers: dict[str, Answer] = {}
    if isinstance(body, dict) and body.get("nonce") == nonce:
        for a in _as_list(body.get("answers")):
            if isinstance(a, dict) and isinstance(a.get("id"), str):
                found = a.get("found")
                then_found = a.get("then_found")
                raw_alts = a.get("alts")
                alts = ({k: decode_value(raw_alts[k]) for k in ("flat", "row") if k in raw_alts}
                        if isinstance(raw_alts, dict) else {})
                answers[a["id"]] = Answer(
                    a["id"],
                    found if isinstance(found, str) else None,
                    decode_value(a.get("value")),
                    then_found if isinstance(then_found, str) else None,
                    alts,
                )
    return answers, len(genuine)
