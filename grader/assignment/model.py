"""The spec model: `Spec`, the whole `assignment.toml` with its tables checked against each
other, and `Assignment`, a loaded assignment folder.

An assignment is a folder: `assignment.toml` (this model), `reference.py` (the torch
reference), `starter.ipynb` and `solution.ipynb`. Nothing about a particular assignment
lives in the grader.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import Field, field_validator, model_validator

from grader.assignment.tables import (
    RESULT_ARG,
    Check,
    Environment,
    InputSet,
    Intermediate,
    Names,
    Policy,
    Rerun,
    Table,
    Variant,
)

SPEC_FILE = "assignment.toml"


class Spec(Table):
    """The whole `assignment.toml`."""

    id: str
    title: str
    version: str = "1"
    description: str = ""
    reference: str = "reference.py"
    files: list[str] = Field(default_factory=list)  # files and folders of the assignment, shipped
    # folders beside the notebook (a course's package, its data) copied with their structure
    folders: list[str] = Field(default_factory=list)
    # Aliases: the built-in ones (grader/assignment/aliases.py) unless switched off, plus these, by name.
    builtin_aliases: bool = True
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    environment: Environment = Field(default_factory=Environment)
    inputs: dict[str, InputSet]
    checks: list[Check]
    variants: list[Variant] = Field(default_factory=list)
    intermediates: list[Intermediate] = Field(default_factory=list)  # shared by the checks they name
    rerun: Rerun | None = None
    names: Names = Field(default_factory=Names)

    @field_validator("files", "folders")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        # inside the assignment's (or the notebook's) folder: never above it, never absolute
        for name in v:
            parts = PurePosixPath(name).parts
            if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
                raise ValueError(f"{name!r} must be a path inside the folder, without '..'")
        return v

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        self._cross_extra()
        ids = {c.id for c in self.checks}
        for k, im in enumerate(self.intermediates):
            unknown = [c for c in im.checks if c not in ids] or ([] if im.checks else ["(none named)"])
            if unknown:
                raise FieldError(f"intermediates[{k}].checks", f"names no check of this spec: {unknown}")
        ids = [c.id for c in self.checks]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate check ids: {sorted(dup)}")
        for i, c in enumerate(self.checks):
            if c.inputs not in self.inputs:
                raise FieldError(
                    f"checks[{i}].inputs",
                    f"check {c.id!r} uses input set {c.inputs!r}, which is not defined "
                    f"(defined: {sorted(self.inputs)})",
                )
            declared = self.inputs[c.inputs].variables
            if self.inputs[c.inputs].generator is None:
                named = [*c.args, *[a for a in c.then_args if a != RESULT_ARG], *c.optional_args]
                named += [*c.init_args, *([c.state] if c.state else []), *(c.reference_args or [])]
                named += [c.labels] if c.labels else []
                for a in named:
                    if a not in declared:
                        raise FieldError(
                            f"checks[{i}].args",
                            f"check {c.id!r} passes {a!r}, which input set {c.inputs!r} does not define",
                        )
        return self

    def _cross_extra(self) -> None:
        """Input sets named by the diagnosis fields (given, extreme, rerun) exist and fit."""
        for i, c in enumerate(self.checks):
            for field in ("given", "extreme"):
                name = getattr(c, field)
                if name is not None and name not in self.inputs:
                    raise FieldError(f"checks[{i}].{field}", f"check {c.id!r} names input set {name!r}, which is not defined")
            if c.given_args and len(c.given_args) != len(c.args):
                raise FieldError(f"checks[{i}].given_args", "given_args must list one name per entry of args")
            if c.given and self.inputs[c.given].generator is None:
                declared = self.inputs[c.given].variables
                for a in c.given_args or c.args:
                    if a not in declared:
                        raise FieldError(f"checks[{i}].given_args", f"input set {c.given!r} does not define {a!r}")
        if self.rerun is not None:
            for field in ("inputs", "fresh"):
                if getattr(self.rerun, field) not in self.inputs:
                    raise FieldError(f"rerun.{field}", f"input set {getattr(self.rerun, field)!r} is not defined")
            given = set(self.inputs[self.rerun.inputs].variables)
            fresh = set(self.inputs[self.rerun.fresh].variables)
            if self.inputs[self.rerun.fresh].generator is None and not given <= fresh:
                raise FieldError("rerun.fresh", f"input set {self.rerun.fresh!r} must define {sorted(given - fresh)}")


class FieldError(ValueError):
    """An error found across the spec's tables, with the field it is about (an error raised in a
    model validator has no location of its own)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Assignment:
    """A loaded assignment folder: its spec, where it lives, and its fingerprint."""

    def __init__(self, folder: Path, spec: Spec, spec_sha256: str):
        self.folder = folder
        self.spec = spec
        self.spec_sha256 = spec_sha256

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def max_score(self) -> float:
        return sum(
            sum(p.points for p in c.parts) if c.parts else c.points for c in self.spec.checks
        )

    def path(self, name: str) -> Path:
        """A file of the assignment folder."""
        return self.folder / name

    def info(self) -> dict[str, Any]:
        """The report's `assignment`: what was graded against, and from which folder."""
        return {"id": self.id, "version": self.spec.version, "spec_sha256": self.spec_sha256,
                "folder": str(self.folder)}

    def __repr__(self) -> str:
        return f"Assignment({self.id!r}, {str(self.folder)!r})"
