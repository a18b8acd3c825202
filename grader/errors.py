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


class TorchMissing(GraderError):
    """A reference is needed (values no complete pool holds) and PyTorch is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "this needs PyTorch, which is not installed here (the assignment's reference runs on it): "
            "pip install 'nngrader[torch]' (the CPU build: torch==2.13.0 from "
            "https://download.pytorch.org/whl/cpu); check() in a notebook needs no torch")
