"""The probe runner: kernel-side code that calls the notebook's functions for the grader.

It is three modules, its parts: runner_values.py (inputs decoded, answers encoded),
runner_numerical.py (the numerical-gradient detector) and this one (finding and calling the
notebook's functions, requests, install). The prelude runs each part's source in the kernel
before any student cell, in that order (a part imports only parts before it), each in a
module dict of its own whose builtins are a copy taken then (see `boot_source`), and calls
`install`. Everything the runner later uses is bound at that moment: a notebook that shadows
`len`, patches `builtins.any` or `numpy.asarray` changes nothing the runner runs.

A part's `from grader.run.runner_values import ...` binds, at install, what the part run
before it defined, never a file or a module a notebook could reach: while a part's source
runs, the `__import__` in its builtins copy resolves the names of the parts already run to
them (any other name to the import taken at boot), and is then put back. The names a part
imports are then in its own dict, as its own definitions are, and no student code runs
between the parts: the split keeps the guarantee one module dict gave. Each part also
imports normally, so the runner is tested in a plain interpreter.

Each request is a JSON text naming inputs (never expected values) and a nonce; the answer is
one display message whose MIME type carries the nonce and whose body carries the sha256 of
the exact request text the runner received, so the grader can tell a request that was
rewritten on its way (input transformers, pre_run_cell hooks) from one that ran as sent.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy

from grader.run.runner_numerical import PerturbationWatch
from grader.run.runner_values import Encoder, Misfit, decode_arg, norm_key, pick, tname

# What an object really is, never what its class (or metaclass) claims.
_type_module_of = type.__dict__["__module__"].__get__
_array_size_of = numpy.ndarray.__dict__["size"].__get__
_array_shape_of = numpy.ndarray.__dict__["shape"].__get__
_ndarray, _errstate = numpy.ndarray, numpy.errstate
_sha256 = hashlib.sha256
# The C scanner, bound now: patching json (module or class) later does not reach it.
_scan_once = json.JSONDecoder().scan_once
_signature = inspect.signature
_setprofile, _getprofile = sys.setprofile, sys.getprofile
_ModuleType = types.ModuleType
# Anything a notebook's code raises is an answer, except the grader's own interrupt.
_EXC = (Exception, SystemExit, GeneratorExit)
# The runner's parts (modules of grader/run/), in the order they are installed: this one last.
PARTS = ("runner_values", "runner_numerical", "runner")


def digest(request: str) -> str:
    """The sha256 of a request's text, as the answer carries it."""
    return _sha256(request.encode("utf-8")).hexdigest()


def decode_json(text: str) -> Any:
    """A JSON text parsed by the scanner bound at install."""
    return _scan_once(text, 0)[0]


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


class Runner(Encoder):
    """The installed runner: the notebook's namespace, the publisher, and the answer limits."""

    def __init__(self, ns: dict[str, Any], publish: Callable[..., Any], limits: dict[str, int]):
        super().__init__(ns, limits)
        self.publish = publish
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
            bound = self.bind_globals(item)
            try:
                ans["value"] = self.run_class(item, obj, ans)
            finally:
                self.restore_globals(bound)
            return ans
        optional = self.optional(item)
        bound = self.bind_globals(item)
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
            after = item.get("argument", -1)
            if type(after) is int and 0 <= after < len(args):  # graded as the call left it
                ans["stage"] = "read"
                result = pick(args[after], item.get("argument_path") or [])
        except _EXC as e:
            ans["value"] = self.error_of(e)
        else:
            if item["kind"] == "pipeline":
                if item.get("keep"):  # what the first function returned (a behaviour check's parameters)
                    ans["result"] = self.encode(result)
                ans["value"] = self.then_call(item, result, ans)
            else:
                ans["value"] = self.encode(result)
        finally:
            self.restore_globals(bound)
        if item.get("alt"):
            bound = self.bind_globals(item)  # the same names for the same call in another convention
            try:
                alts = self.alternates(item, obj)
            finally:
                self.restore_globals(bound)
            if alts:
                ans["alts"] = alts
        return ans

    def bind_globals(self, item: dict[str, Any]) -> list[tuple[str, bool, Any]]:
        """Bind the item's values as the notebook's global names; what they were, to restore."""
        saved, ns = [], self.ns
        for name, value in item.get("globals") or []:
            saved.append((name, name in ns, ns.get(name)))
            ns[name] = decode_arg(value)
        return saved

    def restore_globals(self, saved: list[tuple[str, bool, Any]]) -> None:
        """The notebook's names as they were before the call (later checks read its own values)."""
        for name, had, old in reversed(saved):
            if had:
                self.ns[name] = old
            else:
                self.ns.pop(name, None)

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
    """Kernel code that runs the runner's parts' sources, each in a fresh module dict, and installs it.

    Each dict's builtins are a copy of `builtins` taken now, before any student cell: neither
    the notebook's globals nor a later patch of `builtins` reaches a name the runner uses. While
    a part's source runs, its `__import__` gives it the parts already run (see the docstring).
    """
    here = Path(__file__).parent
    parts = [(f"grader.run.{part}", (here / f"{part}.py").read_text(encoding="utf-8")) for part in PARTS]
    return (
        "def _grader_boot(parts, modname, limits):\n"
        "    import builtins, sys\n"
        "    boot_import, done = builtins.__import__, {}\n"
        "    def part_import(name, *args, **kwargs):\n"
        "        return done[name] if name in done else boot_import(name, *args, **kwargs)\n"
        "    for name, source in parts:\n"
        "        g = {'__name__': modname, '__builtins__': dict(builtins.__dict__)}\n"
        "        g['__builtins__']['__import__'] = part_import  # while its source runs\n"
        "        mod = type(sys)(modname)\n"
        "        mod.__dict__.update(g)\n"
        "        sys.modules[modname] = mod  # while its source runs (dataclass-style lookups)\n"
        "        filename = '<grader-' + name.rpartition('.')[2] + '>'\n"
        "        exec(compile(source, filename, 'exec'), mod.__dict__)\n"
        "        g['__builtins__']['__import__'] = boot_import\n"
        "        done[name] = mod\n"
        "    mod.__dict__['install'](get_ipython(), modname, limits)\n"
        f"_grader_boot({parts!r}, {modname!r}, {limits!r})\n"
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
