"""Defaults of a grading run that the CLI shows without importing the grader's heavy parts."""

from __future__ import annotations

CELL_TIMEOUT = 30.0  # seconds per cell
TOTAL_TIMEOUT = 300.0  # seconds for a whole submission: cells, probes and the re-run
ISOLATION_LEVELS = ("sandbox", "namespace", "process")  # strongest first
