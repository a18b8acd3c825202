"""The reference side: load an assignment's `reference.py` and compute expected values with torch.

Expected values are computed here, in the grader's process, in float64; they never enter
the student's kernel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from grader.assignment.model import SPEC_FILE, Assignment
from grader.assignment.tensors import IMPORT_LOCK, import_torch, to_numpy, to_torch
from grader.errors import SpecError, TorchMissing


class ReferenceLike(Protocol):
    """What planning and judging ask of a reference: the live one, or one replayed from a pool."""

    def call(self, name: str, args: list[Any]) -> Any:
        """A reference function's result on these arguments, as float64 numpy values."""

    def function(self, name: str) -> Callable[..., Any]:
        """A reference function by name."""


class Reference:
    """An assignment's reference module, with its functions checked against the spec."""

    def __init__(self, assignment: Assignment):
        self.assignment = assignment
        self.module = _import(assignment)
        self._check_names()

    def _check_names(self) -> None:
        spec = self.assignment.spec
        file = self.assignment.path(SPEC_FILE)
        ref = spec.reference

        def need(name: str, field: str) -> None:
            if not callable(getattr(self.module, name, None)):
                raise SpecError(f"{file}: {field}: function {name!r} is not defined in {ref}")

        for i, check in enumerate(spec.checks):
            need(check.reference, f"checks[{i}].reference")
            if check.loss:
                need(check.loss, f"checks[{i}].loss")
            for k, im in enumerate(check.intermediates):
                need(im.reference, f"checks[{i}].intermediates[{k}].reference")
            if check.predict_with:
                need(check.predict_with, f"checks[{i}].predict_with")
            if check.consistency is not None:
                need(check.consistency.reference_loss, f"checks[{i}].consistency.reference_loss")
        for name, inputs in spec.inputs.items():
            if inputs.generator:
                need(inputs.generator, f"inputs.{name}.generator")
        for k, im in enumerate(spec.intermediates):
            need(im.reference, f"intermediates[{k}].reference")
        for i, variant in enumerate(spec.variants):
            for original, replacement in variant.replace.items():
                need(replacement, f"variants[{i}].replace.{original}")

    def function(self, name: str) -> Callable[..., Any]:
        """A reference function by name."""
        return getattr(self.module, name)

    def call(self, name: str, args: list[Any]) -> Any:
        """Call a reference function on grader inputs; the result as float64 numpy values."""
        return to_numpy(self.function(name)(*[to_torch(a) for a in args]))


def _import(assignment: Assignment) -> ModuleType:
    return import_reference(assignment.path(assignment.spec.reference), assignment.spec_sha256)


def import_reference(path: Path, spec_sha256: str) -> ModuleType:
    """Import a reference file once per spec and reference version (the module is cached by both)."""
    path = path.resolve()
    try:
        content = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as e:
        raise SpecError(f"{path}: cannot be read ({e.strerror or e})") from None
    modname = f"_grader_reference_{spec_sha256[:12]}_{content}_{abs(hash(str(path)))}"
    with IMPORT_LOCK:
        if modname in sys.modules:
            return sys.modules[modname]
        if importlib.util.find_spec("torch") is not None:
            import_torch()  # (references import it: a failure is torch's, not the instructor's)
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # an instructor's file: say what broke, in one line
            if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "torch":
                raise TorchMissing() from None  # (not the instructor's: the install's)
            raise SpecError(f"{path}: fails to import: {type(e).__name__}: {e}") from None
        sys.modules[modname] = module
        return module


def select(result: Any, part: str | int | None) -> np.ndarray:
    """The part of a reference result a check compares against."""
    if part is None:
        if isinstance(result, list):  # (answer, extras...) convention
            return np.asarray(result[0], dtype=np.float64)
        return np.asarray(result, dtype=np.float64)
    if isinstance(result, dict):
        return np.asarray(result[str(part)], dtype=np.float64)
    return np.asarray(result[int(part)], dtype=np.float64)
