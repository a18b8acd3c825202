"""Each assignment's policy in the service: when it opens and is due, what lateness costs
(grader.course.late), how many submissions a window allows, the upload size limit, and which
attempt counts (the last or the best).

The policies come from the service's config file (TOML), one table per assignment:

    [assignments.sigmoid-2-3-1]
    opens = "2026-02-01T00:00Z"
    due = "2026-03-01T23:59+01:00"
    late_penalty = "10%/day"     # late_grace, late_cap, late_limit as `grade deadline` takes them
    max_submissions = 5          # per student, per window
    window = "1h"
    max_upload = "5MB"
    counts = "best"              # or "last"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from grader.course.late import LatePolicy, parse_duration, parse_time, show_time
from grader.errors import GraderError

DEFAULT_MAX_UPLOAD = 5 << 20
KEYS = {"opens", "due", "late_penalty", "late_grace", "late_cap", "late_limit", "max_submissions", "window",
        "max_upload", "counts"}


@dataclass
class Policy:
    """One assignment's rules in the service."""

    opens: float | None = None
    due: float | None = None
    late: LatePolicy = field(default_factory=LatePolicy)
    max_submissions: int | None = None  # per window; None: no limit
    window_s: float = 3600.0
    max_upload: int = DEFAULT_MAX_UPLOAD
    counts: str = "last"  # last | best

    def describe(self) -> list[str]:
        """The policy in lines a student reads on the upload page."""
        out = []
        if self.opens is not None:
            out.append(f"Opens {show_time(self.opens)}.")
        if self.due is not None:
            out.append(f"Due {show_time(self.due)}; late: {self.late.describe()}.")
        if self.max_submissions is not None:
            out.append(f"At most {self.max_submissions} submissions per {_span(self.window_s)}.")
        out.append(f"Notebooks up to {self.max_upload / (1 << 20):g} MB.")
        out.append(f"The {self.counts} attempt counts.")
        return out

    def next_allowed(self, recent: list[float], now: float) -> float | None:
        """When the next submission is allowed, given this student's recent submission times
        (None: now)."""
        if self.max_submissions is None:
            return None
        inside = [t for t in recent if t > now - self.window_s]
        if len(inside) < self.max_submissions:
            return None
        return inside[len(inside) - self.max_submissions] + self.window_s


def _span(seconds: float) -> str:
    for suffix, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return suffix if n == 1 else f"{n} {suffix}s"
    return f"{seconds:g} seconds"


def parse_size(text: str | int) -> int:
    """`5MB`, `500KB`, `1048576` as bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise GraderError(f"{text!r} is not a size (like 500KB or 5MB)")
    return int(float(m[1]) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[(m[2] or "B").upper()])


def policy_of(table: dict[str, Any], where: str) -> Policy:
    """A Policy from its config table; GraderError naming the key that is wrong."""
    unknown = set(table) - KEYS
    if unknown:
        raise GraderError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KEYS))})")
    try:
        p = Policy()
        p.opens = parse_time(table["opens"]) if "opens" in table else None
        p.due = parse_time(table["due"]) if "due" in table else None
        p.late = LatePolicy.parse(table.get("late_penalty"), table.get("late_grace"), table.get("late_cap"),
                                  table.get("late_limit"))
        if "max_submissions" in table:
            n = table["max_submissions"]
            if not isinstance(n, int) or n < 1:
                raise GraderError(f"max_submissions {n!r} is not a whole number of at least 1")
            p.max_submissions = n
        p.window_s = parse_duration(str(table.get("window", "1h")))
        p.max_upload = parse_size(table.get("max_upload", DEFAULT_MAX_UPLOAD))
        p.counts = str(table.get("counts", "last"))
        if p.counts not in ("last", "best"):
            raise GraderError(f"counts {p.counts!r} is neither 'last' nor 'best'")
    except GraderError as e:
        raise GraderError(f"{where}: {e}") from None
    return p


def load_config(path: Path | None, assignments: list[str]) -> dict[str, Policy]:
    """Every served assignment's policy (the default one where the config has none)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise GraderError(f"{path}: cannot be read ({e.strerror or e})") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise GraderError(f"{path}: not a TOML file ({e})") from None
    tables = raw.get("assignments") or {}
    if not isinstance(tables, dict):
        raise GraderError(f"{path}: [assignments] must be a table of tables")
    for name in tables:
        if name not in assignments:
            raise GraderError(f"{path}: [assignments.{name}] is not served (--assignment {name})")
    return {a: policy_of(tables.get(a) or {}, f"{path}: [assignments.{a}]") for a in assignments}
