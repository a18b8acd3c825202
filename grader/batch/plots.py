"""The class report's plots (matplotlib, no display needed), as PNG data URIs to embed in a page."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure


def _data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def histogram(scores: list[float], max_score: float) -> str:
    """The score distribution: one bar per distinct score (bins edged halfway between
    neighbouring scores, so 5.5 and 6 are never counted together)."""
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    top = max([max_score, *scores, 1.0])
    ax.hist(scores, bins=score_bins(scores), color="#3a6ea5", edgecolor="white")
    ax.set_xlim(min([0.0, *scores]) - 0.5, top + 0.5)
    ax.set_xlabel(f"grade (of {top:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"Final grades of {len(scores)} students (the excused not counted)")
    return _data_uri(fig)


def score_bins(scores: list[float]) -> list[float]:
    """Bin edges that put every distinct score in a bin of its own."""
    values = sorted(set(scores)) or [0.0]
    gaps = [b - a for a, b in zip(values, values[1:])]
    half = min([*gaps, 1.0]) / 2
    return [values[0] - half, *((a + b) / 2 for a, b in zip(values, values[1:])), values[-1] + half]


def pass_rates(rates: list[tuple[str, float]]) -> str:
    """Share of submissions passing each check, as horizontal bars."""
    fig = Figure(figsize=(6.4, 0.35 * max(len(rates), 3) + 0.8))
    ax = fig.add_subplot()
    names = [n for n, _ in rates][::-1]
    values = [100 * r for _, r in rates][::-1]
    ax.barh(names, values, color="#4c9a52")
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of graded submissions passing")
    ax.set_title("Pass rate per check")
    return _data_uri(fig)


def diagnoses(counts: list[tuple[str, int]]) -> str:
    """The most common diagnoses across the class, as horizontal bars."""
    fig = Figure(figsize=(6.4, 0.35 * max(len(counts), 3) + 0.8))
    ax = fig.add_subplot()
    ax.barh([n for n, _ in counts][::-1], [c for _, c in counts][::-1], color="#b5503c")
    ax.set_xlabel("submissions")
    ax.set_title("Most common diagnoses")
    return _data_uri(fig)
