"""The `grader.report/1` JSON format."""

from __future__ import annotations

import json
import math
from typing import Any

from grader.inert import inert, inert_block
from grader.report import Report


def _clean(x: Any) -> Any:
    # JSON has no NaN/Infinity: such numbers become null
    if isinstance(x, float) and not math.isfinite(x):
        return None
    # text may come from the notebook: inert here too, for whoever prints it from the JSON
    if isinstance(x, str):
        return inert(x, 4000)
    if isinstance(x, dict):
        return {inert(k, 200) if isinstance(k, str) else k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    d = report.to_dict()
    trace = d.pop("error_traceback", None)
    d = _clean(d)
    if trace is not None:  # several lines, each inert
        d["error_traceback"] = inert_block(trace)
    return json.dumps(d, indent=2, allow_nan=False) + "\n"
