"""Due dates, extensions and the late policy: what a late submission costs.

A policy takes `penalty` percent of the assignment's points per started `unit` (hour or day)
after the due date, counted from the due date once a submission is later than `grace`, at most `cap` percent; after `limit` (hours past the due
date) a submission gets no credit. Times are seconds since the epoch; the text forms are
ISO 8601 dates (`2026-03-01T23:59+01:00`; without a zone, UTC) and durations (`15m`, `2h`, `7d`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from grader.errors import GraderError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> float:
    """An ISO 8601 date and time (UTC when it names no zone) as seconds since the epoch."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise GraderError(f"{text!r} is not a date and time (like 2026-03-01T23:59+01:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def show_time(t: float) -> str:
    """A time as the reports show it: ISO 8601 in UTC, to the minute."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `7d` (a bare number is hours) as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise GraderError(f"{text!r} is not a duration (like 15m, 2h or 7d)")
    return float(m[1]) * UNITS[m[2] or "h"]


def parse_percent(text: str) -> float:
    """`10` or `10%` as 10.0 (0 to 100)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text or "")
    if not m or float(m[1]) > 100:
        raise GraderError(f"{text!r} is not a percentage from 0 to 100")
    return float(m[1])


@dataclass
class LatePolicy:
    """What lateness costs (see the module's docstring)."""

    penalty: float = 0.0  # percent of the assignment's points per started unit
    unit: str = "day"  # hour or day
    grace_s: float = 0.0
    cap: float = 100.0  # percent
    limit_s: float | None = None  # no credit this long after the due date

    @classmethod
    def parse(cls, penalty: str | None = None, grace: str | None = None, cap: str | None = None,
              limit: str | None = None, base: LatePolicy | None = None) -> LatePolicy:
        """A policy from the command line's words (`10%/day`, `15m`, `50%`, `7d`), over `base`."""
        p = LatePolicy(**asdict(base)) if base else LatePolicy()
        if penalty is not None:
            m = re.fullmatch(r"\s*([\d.]+)\s*%?\s*/\s*(hour|day|h|d)\s*", penalty)
            if not m:
                raise GraderError(f"--late-penalty {penalty!r}: give it as 10%/day or 2%/hour")
            p.penalty, p.unit = parse_percent(m[1]), "hour" if m[2].startswith("h") else "day"
        if grace is not None:
            p.grace_s = parse_duration(grace)
        if cap is not None:
            p.cap = parse_percent(cap)
        if limit is not None:
            p.limit_s = parse_duration(limit) if limit.strip() not in ("", "none") else None
        return p

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> LatePolicy:
        return cls(**json.loads(text)) if text else cls()

    def describe(self) -> str:
        """The policy in one line, for the reports."""
        parts = [f"{self.penalty:g}% per {self.unit} late"]
        if self.grace_s:
            parts.append(f"grace {_span(self.grace_s)}")
        if self.cap < 100:
            parts.append(f"at most {self.cap:g}%")
        if self.limit_s is not None:
            parts.append(f"no credit after {_span(self.limit_s)}")
        return ", ".join(parts)


def _span(seconds: float) -> str:
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{suffix}"
    return f"{seconds / 3600:.1f}h"


@dataclass
class Lateness:
    """How late one submission was and what it costs."""

    state: str  # on_time | late | no_credit | unknown | none (no due date, or nothing handed in)
    due: float | None = None
    submitted: float | None = None
    how: str = ""  # where the submission time came from
    late_s: float = 0.0
    penalty: float = 0.0  # points taken (0 or positive)
    note: str = ""  # one line for every report

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def lateness(due: float | None, submitted: float | None, how: str, policy: LatePolicy,
             max_score: float, score: float, marked_late: bool = False) -> Lateness:
    """The lateness of a submission and its penalty (never more than its score)."""
    if due is None:
        return Lateness("none", note="")
    if submitted is None:
        note = "submission time unknown: no late penalty applied"
        if marked_late:
            note = "the LMS marks it late, but its submission time is unknown: no late penalty applied"
        return Lateness("unknown", due, None, how, note=note)
    late_s = submitted - due
    if late_s <= policy.grace_s:
        return Lateness("on_time", due, submitted, how, max(late_s, 0.0))
    if policy.limit_s is not None and late_s > policy.limit_s:
        return Lateness("no_credit", due, submitted, how, late_s, max(score, 0.0),
                        f"submitted {_late_text(late_s)} late, after the limit of {_span(policy.limit_s)}: "
                        "no credit")
    units = math.ceil(late_s / UNITS[policy.unit[0]])  # (counted from the due date once past the grace)
    percent = min(policy.cap, units * policy.penalty)
    taken = min(max(score, 0.0), round(max_score * percent / 100, 6))
    return Lateness("late", due, submitted, how, late_s, taken,
                    f"submitted {_late_text(late_s)} late: {percent:g}% of the points "
                    f"({policy.describe()})")


def _late_text(seconds: float) -> str:
    if seconds >= 2 * 86400:  # (hours up to two days: "30.0 hours" says more than "1.2 days")
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds / 60, 1):.0f} minutes"
