"""Errors that end a command with one clear line for a person (exit code 2)."""

from __future__ import annotations


class GraderError(Exception):
    """Base class: the message is a complete sentence for the user."""


class SubmissionError(GraderError):
    """The submission cannot be read as a notebook."""


class SpecError(GraderError):
    """An assignment spec or its reference is invalid; the message names file and field."""


class UnknownAssignment(GraderError):
    """No assignment matches what was asked for."""
