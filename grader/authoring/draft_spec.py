"""`grade new`'s spec and reference: checks drafted from what the solution does when it runs.

Each function the students write (in a notebook with `# BEGIN SOLUTION` marks: each function
holding one; else every top-level function) becomes a check whose inputs are the values the
solution called it with (grader/authoring/trace.py), parameters with defaults left to their
defaults: a TOML table when they are float arrays and numbers, else a generator in
reference.py returning them (dicts, integer arrays, a network as lists of dicts). A function
that returns None and changes an argument is graded on that argument (`argument`,
`argument_path`); one reading the notebook's global data gets `globals`. Initialisation
(random numbers), training and display functions are left out, each with a comment saying
why. A class becomes class checks of its methods; a notebook of top-level variables only
becomes variable checks of the values computed from its given ones.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# functions a course gives or runs rather than grades: initialisation, training, display, tests
LEFT_OUT = re.compile(r"^(init|initiali[sz]e|reset|load|plot|show|print|display|draw|visuali[sz]e|test|main|"
                      r"setup|train|fit|nn_model|model$|run_|grad(ient)?_check|check_)", re.I)


@dataclass
class Drafted:
    """The draft's spec lines, reference functions and left-out notes."""

    inputs: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    reference: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    top: list[str] = field(default_factory=list)  # top-level fields (folders, rerun)
    computed: frozenset[str] = frozenset()  # variable checks' targets: the starter leaves them to write
    sample: dict[str, Any] = field(default_factory=dict)  # the input set the functions' values share

    def input_tables(self) -> list[str]:
        """The spec's input sets: the shared sample first."""
        shared = ["[inputs.sample]  # the values the solution calls its functions with",
                  *(f"{k} = {toml_value(v)}" for k, v in self.sample.items()), ""] if self.sample else []
        return [*shared, *self.inputs]


# Beyond this many numbers a value is drawn (normal, of its shape and scale) rather than copied
# into the draft: a training set does not belong in assignment.toml
MAX_COPIED = 2000


def _large(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.size > MAX_COPIED


def toml_value(value: Any) -> str:
    """A value as TOML: numbers, nested lists of numbers; a large array as a distribution."""
    if _large(value):
        scale = float(np.std(value)) or 1.0
        return (f'{{ dist = "normal", mean = {float(np.mean(value)):.3g}, scale = {scale:.3g}, '
                f"shape = {list(value.shape)} }}  # the solution's is too large to copy")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value)


def literal(value: Any) -> bool:
    """Whether a value can be written in assignment.toml (float arrays and plain numbers)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and value.size > 0
    if isinstance(value, list):  # nested lists of numbers, as a notebook writes a sample
        return bool(value) and all(literal(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def py_value(value: Any) -> str:
    """A value as Python for a generator: arrays as np.array(...), integer arrays kept integer."""
    if _large(value) and value.dtype.kind in "iub":  # labels: drawn in the solution's range
        return f"rng.integers({int(value.min())}, {int(value.max()) + 1}, size={value.shape!r})"
    if _large(value):
        return f"rng.normal({float(np.mean(value)):.3g}, {float(np.std(value)) or 1.0:.3g}, size={value.shape!r})"
    if isinstance(value, np.ndarray):
        dtype = ", dtype=np.int64" if value.dtype.kind in "iub" else ""
        return f"np.array({value.tolist()!r}{dtype})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {py_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_value(v) for v in value) + "]"
    return repr(value)


def input_set(d: Drafted, name: str, values: dict[str, Any]) -> str:
    """An input set of these values, in the spec or as a generator; its name. Values that agree
    with the solution's other calls (the same name, the same value) share one set, `sample`."""
    if all(literal(v) for v in values.values()):
        if all(k not in d.sample or _same(d.sample[k], v) for k, v in values.items()) \
                and not any(_large(v) for v in values.values()):
            d.sample.update(values)
            return "sample"
        d.inputs += [f"[inputs.{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]
        return name
    d.inputs += [f"[inputs.{name}]", f'generator = "{name}_inputs"', ""]
    body = ",\n".join(f"        {k!r}: {py_value(v)}" for k, v in values.items())
    d.reference.append(f'def {name}_inputs(rng, trial):\n    """The values the solution calls it with."""\n'
                       f"    return {{\n{body},\n    }}\n")
    return name


def changed_path(before: Any, after: Any) -> list[Any] | None:
    """Where a call wrote into an argument: [] for the whole value, ["*", "*", "delta"] for a key
    written into every dict of a list of lists; None when nothing changed."""
    if _same(before, after):
        return None
    depth, b, a = 0, before, after
    while isinstance(a, list) and a and isinstance(b, list) and len(a) == len(b):
        depth, b, a = depth + 1, b[0], a[0]
    if depth and isinstance(a, dict) and isinstance(b, dict):
        keys = _changed_keys(before, after, depth)
        if len(keys) == 1:
            return ["*"] * depth + keys
    return []


def _changed_keys(before: Any, after: Any, depth: int) -> list[str]:
    if depth == 0:
        return [k for k in after if k not in before or not _same(before[k], after[k])]
    keys: list[str] = []
    for b, a in zip(before, after):
        keys += [k for k in _changed_keys(b, a, depth - 1) if k not in keys]
    return keys


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _pick(value: Any, path: list[Any]) -> Any:
    values = [value]
    for step in path:
        values = [x for v in values for x in (v if step == "*" else [v[step]])]
    return values


def function_check(d: Drafted, name: str, call: dict[str, Any] | None, params: list[str]) -> None:
    """The check (inputs, reference stub) of one function, or a note saying why it is left out."""
    if LEFT_OUT.match(name):
        d.notes.append(f"# {name}: left out (initialisation, training or display)")
        return
    if call is None:
        d.inputs += [f"[inputs.{name}]", *(f'{p} = {{ dist = "normal", shape = [3, 1] }}  # not called by the '
                                           f"solution: choose its distribution and shape" for p in params), ""]
        d.checks += ["[[checks]]", f'target = "{name}"', f'inputs = "{name}"', ""]
        d.reference.append(_stub(name, params, "What the notebook's function returns."))
        return
    if call["random"]:
        d.notes.append(f"# {name}: left out (it draws random numbers: an initialisation)")
        return
    args = [p for p in call["params"] if p in call["args"]]  # as the solution calls it: defaults kept
    odd = [a for a in args if call["args"][a] is None]
    if odd:  # an object the grader cannot send (a DataFrame, a model): the instructor decides
        d.notes.append(f"# {name}: left out ({', '.join(odd)} is not numbers, arrays or dicts of them)")
        return
    argument, path = None, None
    if call.get("returns_none"):
        changed = [(a, changed_path(call["args"][a], call["after"].get(a))) for a in args]
        changed = [(a, p) for a, p in changed if p is not None]
        if not changed:
            d.notes.append(f"# {name}: left out (returns None and changes none of its arguments)")
            return
        argument, path = changed[0]
    glob = {g: v for g, v in call["globals"].items() if g not in args}
    values = {a: call["args"][a] for a in args} | glob
    lines = ["[[checks]]", f'target = "{name}"', f'inputs = "{input_set(d, name, values)}"']
    if glob:
        lines.append(f"globals = {json.dumps(list(glob))}  # the notebook's globals it reads")
    doc = "What the notebook's function returns."
    if argument is not None:
        lines.append(f'argument = "{argument}"  # {name} returns None: graded on {argument} after the call')
        if path:
            lines.append(f"argument_path = {json.dumps(path)}")
        doc = (f"What {argument} holds after the call" + (f", at {path}" if path else "") +
               " (the notebook's function writes it there).")
    d.checks += [*lines, ""]
    d.reference.append(_stub(name, [*args, *glob], doc))


def _stub(name: str, params: list[str], doc: str) -> str:
    return (f'def {name}({", ".join(params)}):\n    """{doc}"""\n'
            f'    raise NotImplementedError("write {name} in torch")\n')


def class_checks(d: Drafted, cls: str, calls: dict[str, dict[str, Any]], unpacked: dict[str, list[str]]) -> None:
    """Class checks for each method the solution calls on an object of `cls`."""
    init = calls.get(f"{cls}.__init__")
    methods = [c for n, c in calls.items() if n.startswith(cls + ".") and not n.endswith(".__init__")]
    if init is None or not methods:
        d.notes.append(f"# {cls}: left out (the solution never calls its methods)")
        return
    # its parameters are the spec's: constructor arguments with defaults keep them
    init_args = [p for p in init["params"][1:] if p not in init["defaults"] and p in init["args"]]
    values = {a: init["args"][a] for a in init_args}
    state = next((m["state"] for m in methods if m.get("state")), {})
    dicts = [a for a, v in state.items() if isinstance(v, dict)]
    where = [f'state_attribute = "{dicts[0]}"'] if dicts else (
        ["state_attributes = { " + ", ".join(f'{a} = "{a}"' for a in state) + " }"] if state else [])
    state_name = dicts[0] if dicts else "weights"
    if state:
        values[state_name] = state[dicts[0]] if dicts else dict(state)
    checks: list[tuple[str, list[str], str, list[str]]] = []
    for m in methods:
        method = m["name"].split(".", 1)[1]
        args = [p for p in m["params"][1:] if p in m["args"]]  # as the solution calls it: defaults kept
        values |= {a: m["args"][a] for a in args}
        base = ['kind = "class"', f'target = "{cls}"', f'inputs = "{cls}"', f"init_args = {json.dumps(init_args)}",
                *([f'state = "{state_name}"', *where] if state else []), f'method = "{method}"', f"args = {json.dumps(args)}"]
        if isinstance(m.get("result"), tuple):
            names = unpacked.get(method) or [f"{method}_{i}" for i in range(len(m["result"]))]
            scalar = next((n for p, n in zip(m["result"], names) if np.ndim(p) == 0 and not isinstance(p, dict)), None)
            for i, (part, ref) in enumerate(zip(m["result"], names)):
                if part is not None:
                    # (loss, grads): validate compares the gradients with finite differences of the loss
                    fd = [f'loss = "{scalar}"'] if isinstance(part, dict) and scalar else []
                    checks.append((ref, [*base, f"take = {i}  # {method} returns a tuple", f'reference = "{ref}"', *fd],
                                   ref, args))
        elif not m.get("returns_none"):
            checks.append((method, [*base, f'reference = "{method}"'], method, args))
        elif state and not _same(m.get("state"), m.get("state_after")):
            # the step may use what the object was built with (its learning rate)
            ref_args = [*args, state_name, *init_args]
            checks.append((method, [*base, 'read = "state"', f'reference = "{method}"',
                                    f"reference_args = {json.dumps(ref_args)}"], method, ref_args[:len(args)]))
        else:
            d.notes.append(f"# {cls}.{method}: left out (returns None and changes none of the object's parameters)")
    set_name = input_set(d, cls, values)
    for ref, lines, ident, args in checks:
        lines = [f'inputs = "{set_name}"' if ln == f'inputs = "{cls}"' else ln for ln in lines]
        d.checks += ["[[checks]]", f'id = "{ident}"', *lines, ""]
        doc = f"What the notebook's {cls} gives here, from its parameters `{state_name}`."
        stepped = any(ln.startswith("reference_args") for ln in lines)
        if stepped:
            doc = f"The parameters `{state_name}` after {cls}.{ident} (built with {', '.join(init_args)})."
        params = [*args, *([state_name] if state else []), *(init_args if stepped else [])]
        d.reference.append(_stub(ref, params, doc))


def unpacked_names(tree: ast.Module) -> dict[str, list[str]]:
    """For `loss, grads = net.loss(...)`: method or function name -> the names the solution gives its results."""
    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)
                and isinstance(node.value, ast.Call)):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            names = [t.id if isinstance(t, ast.Name) else "" for t in node.targets[0].elts]
            if name and all(names) and len(set(names)) == len(names):
                out.setdefault(name, names)
    return out


def variable_checks(d: Drafted, tree: ast.Module, given: dict[str, Any], final: dict[str, Any]) -> None:
    """Variable checks of the values a notebook of top-level statements computes from its given
    ones (literals), and the re-run that tests them on a fresh sample."""
    uses: dict[str, list[str]] = {}
    order: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name not in given and name not in uses:
                order.append(name)
            uses[name] = [n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)]

    def inputs_of(name: str, seen: set[str]) -> list[str]:
        out: list[str] = []
        for used in uses.get(name, []):
            if used in given and used not in out:
                out.append(used)
            elif used in uses and used not in seen:
                out += [u for u in inputs_of(used, seen | {used}) if u not in out]
        return out

    computed = [(n, [g for g in given if g in inputs_of(n, {n})]) for n in order  # in the sample's order
                if isinstance(final.get(n), (np.ndarray, float, int)) and not isinstance(final.get(n), bool)]
    computed = [(n, a) for n, a in computed if a]
    if not computed:
        return
    names = [g for g in given if any(g in a for _, a in computed)]
    d.inputs += ["[inputs.given]  # the notebook's given sample", *(f"{g} = {toml_value(given[g])}" for g in names), ""]
    d.inputs += ["[inputs.fresh]  # the re-run's fresh sample: the same names, drawn"]
    for g in names:
        a = np.asarray(given[g], dtype=np.float64)
        dist = 'dist = "uniform", low = 0, high = 1' if a.size and a.min() >= 0 and a.max() <= 1 else \
            f"scale = {float(np.abs(a).max() or 1):g}"
        d.inputs.append(f"{g} = {{ {dist}, shape = {list(a.shape)} }}")
    d.inputs.append("")
    d.top += ["[rerun]                            # right on a fresh sample too, or flagged hard-coded",
              'inputs = "given"', 'fresh = "fresh"', ""]
    d.computed = frozenset(n for n, _ in computed)
    for name, args in computed:
        d.checks += ["[[checks]]", 'kind = "variable"', f'target = "{name}"', 'inputs = "given"',
                     f"args = {json.dumps(args)}", ""]
        d.reference.append(_stub(name, args, f"The notebook's {name}, from its given values."))
