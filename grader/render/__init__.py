"""Output formats: each a function from the Report model to text."""

from __future__ import annotations

from collections.abc import Callable

from ..report import Report
from .json import render_json
from .text import render_text

RENDERERS: dict[str, Callable[[Report], str]] = {
    "text": render_text,
    "json": render_json,
}


def render(report: Report, fmt: str) -> str:
    """Render a report in a named format."""
    return RENDERERS[fmt](report)
