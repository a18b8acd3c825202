"""torch in the grader's process: imported once, under a lock, and the conversions between grader
values (float64 numpy arrays, dicts of them) and what a reference takes and returns (tensors).

Importing this module does not import torch: the first conversion (or `import_torch`) does.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import numpy as np

# torch (and the references, which import it) is imported by one thread at a time: its package
# is a web of circular imports, and where two threads' imports cross, CPython's deadlock
# avoidance hands one of them the half-initialised module ("cannot import name 'nn' from
# partially initialized module 'torch'"). Grading threads (a live plan beside a background
# preload, a plan whose run was cancelled) all import through this lock.
IMPORT_LOCK = threading.RLock()
# Why torch failed to import in this process, if it did: a failed torch import cannot be
# repeated in the same interpreter (a second try fails on torch's own half-loaded modules,
# with an error that hides the first), so every later use reports the first cause instead.
_torch_failure: str | None = None


class TorchUnavailable(ImportError):
    """torch failed to import in this process (it cannot be retried in it)."""


def import_torch() -> ModuleType:
    """torch, imported once per process under the import lock (seconds, the first time)."""
    global _torch_failure
    with IMPORT_LOCK:
        if _torch_failure is not None:
            raise TorchUnavailable(_torch_failure)
        try:
            import torch
        except Exception as e:
            if isinstance(e, ModuleNotFoundError) and e.name == "torch":
                raise  # not installed (callers that can do without it check for this)
            _torch_failure = f"torch failed to import in the grader: {type(e).__name__}: {e}"
            raise TorchUnavailable(_torch_failure) from None
        return torch


def to_torch(value: Any) -> Any:
    """Grader inputs to what a reference takes: arrays become float64 tensors."""
    torch = import_torch()  # (on first use: commands that compute nothing start without it)
    if isinstance(value, np.ndarray):
        return torch.tensor(value, dtype=torch.float64)
    if isinstance(value, dict):
        return {k: to_torch(v) for k, v in value.items()}
    if isinstance(value, list):  # a structure of dicts (arrays are never lists here)
        return [to_torch(v) for v in value]
    return value


def to_numpy(value: Any) -> Any:
    """A reference result as float64 numpy arrays, keeping dict/tuple structure."""
    torch = import_torch()
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64).cpu().numpy().copy()
    if isinstance(value, dict):
        return {str(k): to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if isinstance(value, (int, float, np.number, bool, np.ndarray)):
        return np.asarray(value, dtype=np.float64)
    return value
