"""Output formats: each a function from the Report model to text."""

from __future__ import annotations

from collections.abc import Callable

from grader.render.github import render_github
from grader.render.gradescope import render_gradescope
from grader.render.json import render_json
from grader.render.junit import render_junit
from grader.render.markdown import render_markdown
from grader.render.text import render_text
from grader.report import Report

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
