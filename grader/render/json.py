"""The `grader.report/1` JSON format."""

from __future__ import annotations

import json
import math
from typing import Any

from ..report import Report


def _clean(x: Any) -> Any:
    # JSON has no NaN/Infinity: such numbers become null
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(_clean(report.to_dict()), indent=2, allow_nan=False) + "\n"
