"""Probing: call the student's functions and read its variables inside its kernel.

Before any student cell runs, a prelude installs the probe runner (grader/run/runner.py) in the
kernel. It holds its own references to the builtins and numpy functions it needs, taken
before the student could patch them, under a module name that is random for each run. After
the student's cells, each request names the inputs (never expected values) and a fresh nonce;
the runner answers with a single display message whose MIME type carries that nonce and
whose body carries the digest of the request text it received. `send` runs a request and
returns its answers only if exactly one answer came back for exactly that request; anything
else is `tampered`. Values are plain float64 bytes plus structure; the grader decodes and
bounds them, and all judging happens in the grader's process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.plan.items import RESULT, ProbeItem
from grader.run import runner

MAX_ELEMENTS = 1_000_000  # per returned array
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # per probe request, all values together (base64 fits a message)
MAX_ITEMS = 64  # per dict / sequence
MAX_DEPTH = 4
MAX_DIMS = 32  # numpy's own limit is 64; no answer needs more

def new_module_name() -> str:
    """A module name for the runner that a notebook cannot know in advance."""
    return "_grader_probe_" + secrets.token_hex(8)


def prelude_source(modname: str) -> str:
    """Kernel code that installs the runner (grader/run/runner.py); run before any student cell."""
    limits = {"max_elements": MAX_ELEMENTS, "max_payload": MAX_PAYLOAD_BYTES,
              "max_items": MAX_ITEMS, "max_depth": MAX_DEPTH}
    return runner.boot_source(modname, limits)




def encode_arg(value: Any) -> dict[str, Any]:
    """A grader input as the runner receives it: float64 (or int64) bytes, or a plain number."""
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer):
        arr = np.ascontiguousarray(value, dtype=np.int64)
        return {"a": base64.b64encode(arr.tobytes()).decode("ascii"), "shape": list(arr.shape), "int": True}
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype=np.float64)
        return {"a": base64.b64encode(arr.tobytes()).decode("ascii"), "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {"d": [[str(k), encode_arg(v)] for k, v in value.items()]}
    if isinstance(value, list):  # a structure of dicts (a network as a list of layers of neurons)
        return {"l": [encode_arg(v) for v in value]}
    if isinstance(value, (bool, int, float)):
        return {"n": value}
    if isinstance(value, np.number):
        return {"n": value.item()}
    raise TypeError(f"unsupported probe input {type(value).__name__}")


@dataclass(frozen=True)
class Request:
    """Kernel code for one request, and what its one genuine answer must carry."""

    nonce: str
    source: str
    digest: str  # of the request text the runner must receive
    ids: tuple[str, ...] = ()  # probe items every one of which must be answered
    names: tuple[str, ...] = ()  # modules a `loaded` request must say it checked


def _item_json(it: ProbeItem) -> dict[str, Any]:
    return {
        "id": it.id,
        "kind": it.kind,
        "names": it.names,
        "args": [encode_arg(a) for a in it.args],
        "argnames": it.argnames,
        "then_names": it.then_names,
        "then_args": [{"r": 1} if a is RESULT else encode_arg(a) for a in it.then_args],
        "fp_raise": it.fp_raise,
        "alt": it.alternates and it.kind == "function" and not it.fp_raise,
        "watch": it.watch and it.kind == "function" and not it.fp_raise,
        "keep": it.keep_result and it.kind == "pipeline",
        "opt": [encode_arg(a) for a in it.optional],
        "optnames": it.optnames,
        "init_args": [encode_arg(a) for a in it.init_args],
        "init_names": it.init_names,
        "state": encode_arg(it.state) if it.state is not None else None,
        "state_attribute": it.state_attribute,
        "state_attributes": [[k, v] for k, v in it.state_attributes.items()],
        "method": it.method,
        "read": it.read,
        "globals": [[k, encode_arg(v)] for k, v in it.globals.items()],
        "argument": it.argument,
        "argument_path": it.argument_path,
    }


def probe_request(modname: str, items: list[ProbeItem]) -> Request:
    """A request calling functions and reading variables."""
    nonce = new_nonce()
    payload = json.dumps({"nonce": nonce, "items": [_item_json(it) for it in items]})
    source = f"__import__('sys').modules[{modname!r}].probe({nonce!r}, {payload!r})"
    return Request(nonce, source, runner.digest(payload), ids=tuple(it.id for it in items))


def loaded_request(modname: str, names: list[str]) -> Request:
    """A request asking which of `names` (top-level modules) the notebook imported."""
    nonce = new_nonce()
    payload = json.dumps({"nonce": nonce, "names": list(names)})
    source = f"__import__('sys').modules[{modname!r}].loaded({nonce!r}, {payload!r})"
    return Request(nonce, source, runner.digest(payload), names=tuple(names))


def new_nonce() -> str:
    """A fresh nonce for one probe request."""
    return secrets.token_hex(16)


def mime_for(nonce: str) -> str:
    """The MIME type of the one genuine answer to a request."""
    return f"application/x-grader-{nonce}+json"


# ---------------------------------------------------------------- grader side


@dataclass
class Where:
    """A line of the notebook's code, as the runner saw it: its cell's digest, line number and text.

    `cell` (1-based, 0 if unknown) and `cell_line` are filled in by the grader from the
    notebook's own sources; only then is `text` shown.
    """

    cell_sha: str
    line: int
    text: str
    cell: int = 0
    cell_line: int = 0

    def describe(self) -> str:
        """Where, in words: "cell 4, line 2: `return x / 0`"."""
        if not self.cell:
            return "in code outside the notebook's cells"
        at = f"cell {self.cell}" + (f", line {self.cell_line}" if self.cell_line else "")
        return f"in {at}: `{self.text}`" if self.text else f"in {at}"


def _where(raw: Any) -> Where | None:
    if not isinstance(raw, dict):
        return None
    sha, line, text = raw.get("file_sha"), raw.get("line"), raw.get("text")
    if not isinstance(sha, str) or not isinstance(text, str) or _int(line) <= 0:
        return None
    return Where(sha[:64], _int(line), text[:200])


@dataclass
class Value:
    """A value brought back from the kernel, decoded and bounded."""

    # array | seq | dict | none | str | object | error | unconvertible | missing | not_callable | too_big
    # | signature (its signature cannot take the arguments; `length` is how many it needs)
    # | no_member (a class check's attribute or method the object lacks; `text` names it)
    kind: str
    array: np.ndarray | None = None
    items: list[Value] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    is_tuple: bool = False
    length: int = 0
    type_name: str = ""
    text: str = ""
    ename: str = ""
    shape: tuple[int, ...] = ()
    where: Where | None = None  # errors: where in the notebook's code it was raised
    own_class: bool = False  # errors: of an exception class the notebook defined (its name is its own)

    def describe(self, hidden: bool = False) -> str:
        """What the value is, in a few words, for feedback.

        `hidden`: for a hidden check, only the kind of value: its length, keys or class name are
        chosen by the notebook's code and could spell out the hidden inputs.
        """
        if self.kind == "array":
            assert self.array is not None
            if self.array.ndim == 0:
                return "a number"
            return "an array" if hidden else f"an array of shape {shape_str(self.array.shape)}"
        if self.kind == "seq":
            kind = "tuple" if self.is_tuple else "list"
            return f"a {kind}" if hidden else f"a {kind} of {self.length} items"
        if self.kind == "dict":
            return "a dict" if hidden else f"a dict with keys {', '.join(repr(k) for k in self.keys[:8])}"
        if self.kind == "none":
            return "None"
        if self.kind == "str":
            return "a string"
        if self.kind == "too_big":
            return "an array too large to grade" if hidden else \
                f"an array of shape {shape_str(self.shape)}, too large to grade"
        return "an object that is not numbers" if hidden else f"a {self.type_name or 'value'} object"


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
        return Value(kind, ename=str(raw.get("ename", ""))[:80], text=str(raw.get("evalue", ""))[:300],
                     where=_where(raw.get("where")), own_class=raw.get("own") is not False)
    if kind == "too_big":
        return Value("too_big", shape=tuple(_int(d) for d in _as_list(raw.get("shape"))[:8]))
    if kind in ("none", "missing"):
        return Value(kind)
    if kind == "signature":
        return Value("signature", length=_int(raw.get("takes")))
    if kind == "no_member":
        name = str(raw.get("name", ""))[:80]
        return Value("no_member", text=name if name.isidentifier() else "?")
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
    numerical: bool = False  # a watched call evaluated notebook code on one-element perturbations
    result: Value | None = None  # pipelines with keep_result: what the first function returned
    stage: str = ""  # class checks: how far the call got (init, state, method, read)


@dataclass
class Reply:
    """What one request brought back: verified answers, or why there are none."""

    status: str  # ok | tampered | timeout | budget | died | no_kernel
    answers: dict[str, Answer] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the answers are the runner's, to exactly this request."""
        return self.status == "ok"


async def send(session: Any, request: Request, timeout: float) -> Reply:
    """Run a request in the session's kernel; its answers only if they prove it ran as sent.

    Missing, duplicated, malformed or mismatched answers are `tampered`: a request rewritten on
    its way (input transformers, pre_run_cell hooks, a replaced runner) never reads as an answer.
    A request that killed the kernel or ran out of time says so (`died`, `timeout`).
    """
    if not session.alive:
        return Reply("no_kernel")
    status, outputs = await session.run_code(request.source, timeout)
    if status in ("died", "timeout", "budget"):  # no answer, for a reason the session knows
        return Reply(status)
    body = genuine_body(outputs, request)
    if body is None:
        session_tampered(session, request)
        return Reply("tampered")
    return Reply("ok", _answers(body), body)


def session_tampered(session: Any, request: Request) -> None:
    """Note on the session that one of its requests was tampered with (grade.py reports it)."""
    seen = getattr(session, "tampered", None)
    if isinstance(seen, list):
        seen.append(request.nonce)


def genuine_body(outputs: list[dict[str, Any]], request: Request) -> dict[str, Any] | None:
    """The body of the one answer to exactly this request, else None."""
    mime = mime_for(request.nonce)
    claims = [o["data"][mime] for o in outputs
              if o.get("output_type") == "display_data" and mime in (o.get("data") or {})]
    if len(claims) != 1:
        return None
    body = claims[0]
    if isinstance(body, str):  # some frontends keep JSON as text
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict) or body.get("nonce") != request.nonce or body.get("digest") != request.digest:
        return None
    answered = [a.get("id") for a in _as_list(body.get("answers")) if isinstance(a, dict)]
    if sorted(x for x in answered if isinstance(x, str)) != sorted(request.ids) or len(answered) != len(request.ids):
        return None
    if request.names and body.get("checked") != list(request.names):
        return None  # a `loaded` answer must say it looked at every module asked about
    if request.names and not isinstance(body.get("loaded"), list):
        return None
    return body


def _answers(body: dict[str, Any]) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}
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
                numerical=a.get("numerical") is True,
                result=decode_value(a["result"]) if "result" in a else None,
                stage=a["stage"] if a.get("stage") in ("init", "state", "method", "read") else "",
            )
    return answers


def _cell_sha(text: str) -> str:
    """The digest the runner gives a cell's code: IPython caches it as lines each ending in a newline."""
    return hashlib.sha256("".join(line + "\n" for line in text.splitlines()).encode("utf-8", "replace")).hexdigest()


def locate(answers: dict[str, Answer], cells: list[list[str]]) -> None:
    """Resolve where each error was raised to a notebook cell, from the notebook's own sources.

    `cells[i]` holds the texts cell i + 1 may have run as (its source first). A line the
    runner reports is shown only if the cell really has it: the kernel cannot put text of
    its choosing (a hidden check's inputs) into the report this way.
    """
    by_sha: dict[str, tuple[int, bool, int]] = {}
    for i, texts in enumerate(cells):
        for k, text in enumerate(texts):
            by_sha.setdefault(_cell_sha(text), (i + 1, k == 0, 0))
            # as IPython caches it: lines of only spaces emptied, leading empty lines dropped
            lines = ["" if not ln.strip() else ln for ln in text.splitlines()]
            skipped = next((j for j, ln in enumerate(lines) if ln), len(lines))
            by_sha.setdefault(_cell_sha("\n".join(lines[skipped:])), (i + 1, k == 0, skipped))
    for a in answers.values():
        for v in (a.value, *a.alts.values()):
            if v.where is not None:
                _resolve(v.where, by_sha, cells)


def _resolve(w: Where, by_sha: dict[str, tuple[int, bool, int]], cells: list[list[str]]) -> None:
    hit = by_sha.get(w.cell_sha)
    if hit is None:  # e.g. a cell IPython rewrote (magics): the one cell that has this line
        having = [i + 1 for i, texts in enumerate(cells)
                  if texts and w.text and w.text in (ln.strip() for ln in texts[0].splitlines())]
        hit = (having[0], False, 0) if len(having) == 1 else None
    if hit is None:
        w.text = ""
        return
    w.cell = hit[0]
    lines = [ln.strip() for ln in cells[w.cell - 1][0].splitlines()]
    line = w.line + hit[2]  # in the cell's own source, before IPython dropped its leading empty lines
    if hit[1] and 0 < line <= len(lines) and lines[line - 1] == w.text:
        w.cell_line = line
    elif w.text not in lines:
        w.text = ""
