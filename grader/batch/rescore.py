"""A spec change that only moves points or renames checks: the stored per-check results scored
again under the new spec, nothing executed. Any other change (inputs, tolerances, a check
added…) needs the notebooks run again; the batch says which part of the spec changed.

Each spec a batch grades with is kept in the gradebook's meta (`spec:<sha256>`), so a later
spec can be compared with the one each result was graded under.
"""

from __future__ import annotations

import json
import time
from typing import Any

from grader.assignment.model import Assignment
from grader.batch.gradebook import Gradebook, Result
from grader.judging.labels import label_results
from grader.judging.score import total
from grader.plan.checks import targets_of
from grader.report import report_from_dict

# Fields that only weigh or name things: a change confined to them re-scores without running.
SCORING = {"points", "label", "labels", "title", "description", "version"}


def spec_dict(asg: Assignment) -> dict[str, Any]:
    return asg.spec.model_dump(mode="json")


def changed_parts(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two specs differ outside the scoring fields, as paths (`checks[2].rtol`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            if k not in SCORING:
                out += changed_parts(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in changed_parts(a, b, f"{path}[{i}]")]
    return [] if old == new else [path or "(the whole spec)"]


def rescored(report: dict[str, Any], asg: Assignment) -> dict[str, Any]:
    """A stored report scored again under `asg`'s spec (the same verdicts, the new points)."""
    rep = report_from_dict(report)
    targets = {t.id: t for c in asg.spec.checks for t in targets_of(c)}
    for c in rep.checks:
        t = targets[c.id]
        c.max_points, c.points = t.points, t.points if c.status == "pass" else 0.0
    label_results(rep.checks, asg.spec.checks)
    rep.max_score = asg.max_score
    rep.score = total(rep.checks, rep.flags, asg.spec.policy, asg.max_score)
    rep.assignment = {**rep.assignment, "version": asg.spec.version, "spec_sha256": asg.spec_sha256}
    return rep.to_dict()


def keep_spec(book: Gradebook, asg: Assignment) -> None:
    book.set_meta(f"spec:{asg.spec_sha256}", json.dumps(spec_dict(asg), sort_keys=True))


def rescore_unchanged(book: Gradebook, asg: Assignment, jobs: list[Any], batch_seed: int,
                      again: set[str]) -> tuple[list[Any], int, str]:
    """Of the jobs to grade, those whose notebook is unchanged and whose spec changed only in
    points or labels are re-scored here; returns (still to grade, re-scored, what changed)."""
    keep_spec(book, asg)
    todo, done, changed = [], 0, set()
    for job in jobs:
        run = _current(book, job.student)
        if job.problem is not None or job.student in again or run is None or run["sha256"] != job.sha256 \
                or run["batch_seed"] != batch_seed or run["spec_sha256"] == asg.spec_sha256:
            todo.append(job)
            continue
        old = book.meta(f"spec:{run['spec_sha256']}")
        parts = changed_parts(json.loads(old), spec_dict(asg)) if old else ["(not kept by this gradebook)"]
        try:
            report = None if parts else rescored(run["report"], asg)
        except (KeyError, ValueError):
            report = None
            parts = ["checks (a graded check is no longer in the spec)"]
        if report is None:
            changed.update(parts)
            todo.append(job)
            continue
        t = time.time()
        book.record(Result(job.student, job.name, job.relpath, job.sha256, batch_seed, job.seed, t, t,
                           run["status"], run["reason"], report,
                           {"rescored_from_spec": run["spec_sha256"]}, run["grader_version"], job.provenance))
        done += 1
    note = ", ".join(sorted(changed)[:8]) + (" …" if len(changed) > 8 else "")
    return todo, done, note


def _current(book: Gradebook, student: str) -> dict[str, Any] | None:
    row = book.db.execute(
        "SELECT r.sha256, r.batch_seed, r.spec_sha256, r.status, r.reason, r.report, r.grader_version FROM runs r"
        " JOIN submissions s ON s.id = r.submission_id WHERE s.student = ? AND r.current = 1", (student,)).fetchone()
    if row is None:
        return None
    keys = ("sha256", "batch_seed", "spec_sha256", "status", "reason", "report", "grader_version")
    out = dict(zip(keys, row))
    out["report"] = json.loads(out["report"])
    return out
