"""The one report model. Every output format (text, JSON, ...) is a view of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA = "grader.report/1"


@dataclass
class Diagnosis:
    """Why a check failed (or a note on how it passed), with a stable code."""

    code: str
    message: str


@dataclass
class CheckResult:
    """One graded check."""

    id: str
    target: str
    kind: str
    visibility: str
    status: str  # pass | fail | error | missing
    points: float
    max_points: float
    message: str
    diagnosis: list[Diagnosis] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # how outputs name the check; distinct among the assignment's checks

    @property
    def codes(self) -> list[str]:
        """The diagnosis codes, in order."""
        return [d.code for d in self.diagnosis]


@dataclass
class CellError:
    """A cell that did not finish normally (cell is 1-based, counting every cell)."""

    cell: int
    ename: str
    evalue: str


@dataclass
class Execution:
    """How running the notebook went."""

    cell_errors: list[CellError] = field(default_factory=list)
    timed_out: bool = False
    kernel_died: bool = False
    skipped_cells: list[int] = field(default_factory=list)
    output_truncated: bool = False
    restarts: int = 0
    duration_s: float = 0.0
    isolation: dict[str, Any] = field(default_factory=dict)
    # 1-based cells that ran to the end (with or without an error), and those stopped by a time limit
    ran_cells: list[int] = field(default_factory=list)
    timed_out_cells: list[int] = field(default_factory=list)
    total_timed_out: bool = False  # the submission's own time limit was reached
    limits: dict[str, Any] = field(default_factory=dict)  # the limits in force
    limit_events: list[str] = field(default_factory=list)  # limits that were hit, in words
    slowest_cell_s: float = 0.0  # the longest a cell ran


@dataclass
class Flag:
    """A finding about the submission as a whole."""

    code: str
    target: str
    message: str
    points: float | None = None  # a penalty: the points it took (0 or less); None for none


@dataclass
class Report:
    """Everything known about one graded (or ungradable) submission."""

    assignment: dict[str, Any]
    submission: dict[str, Any]
    seed: int
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"  # graded | error
    duration_s: float = 0.0
    # the kernel environment the notebook ran in: hash, Python, requirements, package versions
    environment: dict[str, Any] = field(default_factory=dict)
    execution: Execution = field(default_factory=Execution)
    checks: list[CheckResult] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    error: str | None = None  # status "error": what went wrong, in one line
    error_stage: str | None = None  # ... in which stage of grading
    error_traceback: str | None = None  # ... and where in the grader, for its maintainers
    schema: str = SCHEMA
    # a grading of some checks only (`--check`, `--public`): which, and the full maximum score
    selection: dict[str, Any] | None = None

    def check(self, check_id: str) -> CheckResult:
        """A check by id."""
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def to_dict(self) -> dict[str, Any]:
        """The `grader.report/1` JSON structure."""
        d = asdict(self)
        order = ["schema", "assignment", "submission", "seed", "score", "max_score", "status",
                 "duration_s", "environment", "execution", "checks", "flags", "error", "error_stage",
                 "error_traceback", "selection"]
        optional = ("error", "error_stage", "error_traceback", "selection")
        return {k: d[k] for k in order if d[k] is not None or k not in optional}


def _build(cls: Any, d: Any) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


def report_from_dict(d: Any) -> Report:
    """A Report from its `grader.report/1` JSON structure (as `--format json` writes it).

    Raises ValueError when `d` is not such a report.
    """
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} report")
    try:
        r = _build(Report, d)
        ex = _build(Execution, d.get("execution") or {})
        ex.cell_errors = [_build(CellError, e) for e in ex.cell_errors or []]
        r.execution = ex
        r.checks = [_build(CheckResult, c) for c in d.get("checks") or []]
        for c in r.checks:
            c.diagnosis = [_build(Diagnosis, x) for x in c.diagnosis or []]
        r.flags = [_build(Flag, f) for f in d.get("flags") or []]
        r.score = float(r.score or 0.0)
        r.max_score = float(r.max_score or 0.0)
    except TypeError as e:  # a required field is missing
        raise ValueError(f"not a complete {SCHEMA} report ({e})") from None
    if not isinstance(r.assignment, dict) or not isinstance(r.submission, dict):
        raise ValueError(f"not a complete {SCHEMA} report")
    return r


def error_report(path: str, reason: str, assignment: dict[str, Any] | None = None,
                 max_score: float = 0.0, stage: str = "reading the submission") -> Report:
    """The report of a submission that could not be graded at all: score 0, status error, the reason."""
    return Report(assignment=assignment or {"id": "?"}, submission={"path": path}, seed=0,
                  max_score=max_score, status="error", error=reason, error_stage=stage)
