"""Output formats: each a function from the Report model to text."""

from __future__ import annotations

from collections.abc import Callable

from ..report import Report
from .github import render_github
from .gradescope import render_gradescope
from .json import render_json
from .junit import render_junit
from .markdown import render_markdown
from .text import render_text

RENDERERS: dict[str, Callable[[Report], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "github": render_github,
    "junit": render_junit,
    "gradescope": render_gradescope,
}


def render(report: Report, fmt: str) -> str:
    """Render a report in a named format."""
    return RENDERERS[fmt](report)
