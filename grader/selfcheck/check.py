"""The in-notebook self-check: `from grader import check; check("sigmoid")` in a student's own kernel.

It gives the grader's verdicts, diagnoses and explanations for the public checks, on the
spot, from the functions and variables in the student's live namespace: the same probe
runner, the same judging. Hidden checks are never run or named; the result says how many
the final grading adds, counted as its report lists them (one per part). Importing this
module is light (no torch, no Jupyter client): the grading machinery loads on the first call.
"""

from __future__ import annotations

import html
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import GraderError

if TYPE_CHECKING:
    from grader.assignment.model import Assignment

_CHOSEN: dict[str, str] = {}  # the assignment `use` chose for this kernel
_RUNNERS: dict[int, Any] = {}  # one probe runner per namespace (each adds an audit hook)


def use(assignment: str) -> None:
    """Choose the assignment `check()` checks against (an id, or an assignment folder)."""
    if not isinstance(assignment, str) or not assignment:
        raise ValueError("use() takes an assignment id such as 'sigmoid-2-3-1'")
    _CHOSEN["assignment"] = assignment


@dataclass
class SelfCheck:
    """What `check()` found: shown as HTML in Jupyter and as text elsewhere."""

    assignment: str = ""
    checks: list[Any] = field(default_factory=list)  # CheckResults of public checks
    hidden_checks: int = 0  # the rows a report lists for the hidden checks: one per part
    hidden_points: float = 0.0
    error: str = ""  # why nothing could be checked (one line)

    @property
    def passed(self) -> bool:
        """Whether every public check that ran passed."""
        return not self.error and all(c.status == "pass" for c in self.checks)

    @property
    def score(self) -> float:
        """Points from the public checks that ran."""
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        """The points those checks are worth."""
        return sum(c.max_points for c in self.checks)

    def lines(self) -> list[tuple[str, str]]:
        """(verdict or indent, inert text) per line."""
        from grader.inert import inert
        from grader.render.common import check_name, pts, reproduce, verdict

        if self.error:
            return [("ERROR", inert(self.error, 500))]
        out: list[tuple[str, str]] = []
        for c in self.checks:
            out.append((verdict(c), f"{inert(check_name(c), 120)}  {pts(c.points)}/{pts(c.max_points)}  "
                                    f"{inert(c.message)}"))
            for d in c.diagnosis[1:] if c.status != "pass" else c.diagnosis:
                out.append(("", f"{inert(d.code, 60)}: {inert(d.message)}"))
            out += [("", inert(x)) for x in reproduce(c)]
        passed = sum(c.status == "pass" for c in self.checks)
        out.append(("Public:", f"{passed} passed, {len(self.checks) - passed} failed · "
                               f"{pts(self.score)}/{pts(self.max_score)}"))
        if self.hidden_checks:
            out.append(("Hidden:", f"the final grading adds {self.hidden_checks} hidden "
                                   f"check{'s' if self.hidden_checks != 1 else ''} ({pts(self.hidden_points)} "
                                   "points) on inputs you do not see; check() does not run them"))
        return out

    def __str__(self) -> str:
        import textwrap

        text: list[str] = []
        for lead, body in self.lines():  # laid out as the grader's text report
            first = f"{lead} {body}" if lead else f"      {body}"
            indent = " " * (6 if lead else 8)
            text += textwrap.wrap(first, width=100, subsequent_indent=indent, break_on_hyphens=False) or [""]
        return "\n".join(text)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colours = {"PASS": "#1a7f37", "FAIL": "#cf222e", "ERROR": "#cf222e", "MISSING": "#9a6700"}
        rows = []
        for lead, body in self.lines():
            style = f"color:{colours[lead]};font-weight:bold" if lead in colours else "font-weight:bold"
            pad = "" if lead else "padding-left:2.5em;"
            rows.append(f'<div style="{pad}"><span style="{style}">{html.escape(lead)}</span> {html.escape(body)}</div>')
        head = html.escape(f"Self-check of {self.assignment}" if self.assignment else "Self-check")
        return f'<div class="nngrader-check"><div><b>{head}</b></div>{"".join(rows)}</div>'


def check(name: str | None = None, *, assignment: str | None = None) -> SelfCheck:
    """Run the public checks (all, or those of one function or variable) on this notebook's live values.

    The assignment: `assignment=`, else the one `use("ID")` chose (the starters' first cell
    calls it), else the one the notebook's metadata names, its file found from what the front
    end tells the kernel or among the current folder's notebooks (see `_assignment_id`).
    """
    ns = _namespace()
    try:
        return _check(ns, name, assignment)
    except GraderError as e:  # a wrong name or assignment: one line, not a traceback
        return SelfCheck(assignment=assignment or "", error=str(e))


def _namespace() -> dict[str, Any]:
    """The notebook's namespace: IPython's user namespace, else the caller's module globals."""
    ip = _ipython()
    if ip is not None:
        return ip.user_ns
    return sys._getframe(2).f_globals


def _ipython() -> Any:
    mod = sys.modules.get("IPython")
    get = getattr(mod, "get_ipython", None) if mod is not None else None
    return get() if get is not None else None


_MAX_NOTEBOOK_BYTES = 50 << 20  # a notebook read for its metadata: larger ones are skipped
_MAX_NOTEBOOKS = 200  # the current folder's notebooks read, at most


def notebook_path(ns: dict[str, Any]) -> Path | None:
    """The file of the notebook this kernel runs, where the front end says (Jupyter, VS Code).

    Jupyter's `__session__` (and `JPY_SESSION_NAME`) may be relative to the server's root
    rather than to the kernel's folder: the notebook of that name in the current folder then.
    """
    for candidate in (ns.get("__session__"), ns.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            for p in (Path(candidate), Path(Path(candidate).name)):
                if p.is_file():
                    return p
    return None


def _read_notebook(path: Path) -> dict[str, Any] | None:
    """The notebook's JSON, or None (unreadable, not a regular file, too large, not JSON)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_NOTEBOOK_BYTES:
            return None
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return nb if isinstance(nb, dict) else None


def _named(nb: dict[str, Any] | None) -> str:
    """The assignment id a notebook's metadata names (`metadata.grader.assignment`), or ""."""
    meta = nb.get("metadata") if nb else None
    meta = meta.get("grader") if isinstance(meta, dict) else None
    value = meta.get("assignment") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else ""


def _code(nb: dict[str, Any]) -> set[str]:
    """A notebook's code cells, each as stripped text."""
    out = set()
    for cell in nb.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source")
            text = "".join(src) if isinstance(src, list) else src
            if isinstance(text, str) and text.strip():
                out.add(text.strip())
    return out


def _ran(ns: dict[str, Any]) -> set[str]:
    """The cells this kernel ran, each as stripped text (IPython's input history; none elsewhere)."""
    history = ns.get("_ih") or ns.get("In")
    if not isinstance(history, list):
        return set()
    return {x.strip() for x in history if isinstance(x, str) and x.strip()}


def _folder_assignment(ns: dict[str, Any]) -> tuple[str, list[str]]:
    """The assignment the current folder's notebooks name: (the id or "", the ids they name).

    One id among them all is the answer. Several (a folder of assignments): the id of the
    notebooks that share the most code cells with the cells this kernel ran, if that is one.
    """
    try:
        paths = sorted(Path.cwd().glob("*.ipynb"))[:_MAX_NOTEBOOKS]
    except OSError:
        return "", []
    named: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        nb = _read_notebook(path)
        if nb is not None and _named(nb):
            named.append((_named(nb), nb))
    ids = sorted({a for a, _ in named})
    if len(ids) == 1:
        return ids[0], ids
    ran = _ran(ns)
    if len(ids) > 1 and ran:
        shared = [(len(ran & _code(nb)), a) for a, nb in named]
        best = max(n for n, _ in shared)
        top = {a for n, a in shared if n == best}
        if best and len(top) == 1:
            return top.pop(), ids
    return "", ids


def _assignment_id(ns: dict[str, Any], explicit: str | None) -> tuple[str, bool]:
    """The assignment to check against, and whether the student named it (else a notebook did).

    The first of these that names one, in this order (what the student wrote first, then
    what the front end says, then what the folder says):
    1. `check(..., assignment="ID")`;
    2. `use("ID")`, which every starter notebook's first code cell calls;
    3. the metadata of the notebook the front end names to the kernel: `__session__`
       (Jupyter), `__vsc_ipynb_file__` (VS Code) or `JPY_SESSION_NAME`;
    4. the metadata of the notebooks in the current folder (where the kernel starts under
       Jupyter, nbclient, `jupyter nbconvert --execute` and VS Code): the one assignment
       they name, or, where they name several, the one of the notebooks sharing the most code
       cells with the cells this kernel ran.
    Else UnknownAssignment, saying to call `use("ID")` (Colab, for one, tells the kernel no path).
    """
    if explicit:
        return explicit, True
    if _CHOSEN.get("assignment"):
        return _CHOSEN["assignment"], True
    path = notebook_path(ns)
    value = _named(_read_notebook(path)) if path is not None else ""
    if value:
        return value, False
    value, ids = _folder_assignment(ns)
    if value:
        return value, False
    from grader.assignment.load import known_assignments
    from grader.errors import UnknownAssignment

    here = (f"the notebooks in this folder name several ({', '.join(repr(i[:80]) for i in ids[:10])})" if ids
            else "neither this notebook's file (this front end does not give it to the kernel) nor the "
                 "notebooks in this folder name one")
    known = ", ".join(sorted(known_assignments())[:20]) or "none installed"
    raise UnknownAssignment(f"which assignment is this notebook? {here}: call use(\"ID\") once with the "
                            f"assignment's id, after `from grader import use` (known: {known}), or write "
                            f"check(assignment=\"ID\")")


def hidden_summary(asg: Assignment) -> tuple[int, float]:
    """What the final grading adds: the rows a report lists for the hidden checks (one per
    target: a check with parts W1 and W2 is two), and the points they are worth."""
    from grader.grading.selection import check_points
    from grader.plan.checks import targets_of

    hidden = [c for c in asg.spec.checks if c.visibility == "hidden"]
    return sum(len(targets_of(c)) for c in hidden), sum(check_points(c) for c in hidden)


def _check(ns: dict[str, Any], name: str | None, explicit: str | None) -> SelfCheck:
    from grader.assignment.load import find_assignment, find_known_assignment
    from grader.grading.selection import select_checks
    from grader.judging.judge import judge
    from grader.judging.labels import label_results
    from grader.selfcheck.public import public_checks, public_plans

    which, named = _assignment_id(ns, explicit)
    asg = find_assignment(which) if named else find_known_assignment(which)
    chosen = {c.id for c in select_checks(asg, [name] if name else None, public_only=True)}
    rows, points = hidden_summary(asg)
    result = SelfCheck(asg.id, hidden_checks=rows, hidden_points=points)
    if not chosen & {c.id for c in public_checks(asg)}:
        result.error = f"{name}: a public check that check() cannot run here; `grade --public` runs it"
        return result
    runner = _runner(ns)
    for p in public_plans(asg):
        if p.check.id not in chosen:
            continue
        answers = _ask(runner, p, alternates=False)
        checked = judge(p, answers, "ok")
        if p.check.kind == "function" and any(r.status != "pass" for r in checked):
            checked = judge(p, _ask(runner, p, alternates=True), "ok")  # 1-D or row vectors, as grade does
        result.checks += checked
    label_results(result.checks, asg.spec.checks)
    return result


def _runner(ns: dict[str, Any]) -> Any:
    """The probe runner for this namespace, as the grader installs it in a grading kernel."""
    from grader.run import probe, runner

    key = id(ns)
    if key not in _RUNNERS:
        limits = {"max_elements": probe.MAX_ELEMENTS, "max_payload": probe.MAX_PAYLOAD_BYTES,
                  "max_items": probe.MAX_ITEMS, "max_depth": probe.MAX_DEPTH}
        box: list[dict[str, Any]] = []
        r = runner.Runner(ns, lambda data, metadata=None: box.append(data), limits)
        _RUNNERS[key] = (r, box)
    return _RUNNERS[key]


def _ask(handle: Any, p: Any, alternates: bool) -> dict[str, Any]:
    """The runner's answers to one check's probe items, decoded as the grader decodes them."""
    from grader.plan.checks import probe_items
    from grader.run import probe

    r, box = handle
    nonce = probe.new_nonce()
    payload = json.dumps({"nonce": nonce, "items": [probe._item_json(it) for it in probe_items(p, alternates)]})
    box.clear()
    with warnings.catch_warnings():  # numpy's overflow warnings: the verdicts already say it
        warnings.simplefilter("ignore")
        r.probe(nonce, payload)
    body = box[-1][probe.mime_for(nonce)] if box else {}
    return probe._answers(body)
