"""On a Dask worker: one warm kernel launcher for the worker's whole life, as a local batch has.

The first task a worker runs starts it (per isolation level asked for); every later task of
that worker forks its kernels from the same warm parents (one per kernel environment, bound by
`with_env` in grading), and falls back to cold starts wherever the warm path does not work, as
a local batch does. The launchers are closed when the worker shuts down (the `WarmKernels`
plugin's teardown), or at the latest when its process exits (atexit): their warm parents end,
and the sandboxes and users of their kernels with them.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

if TYPE_CHECKING:
    from grader.kernels.warm import WarmKernelLauncher

PLUGIN_NAME = "nngrader-warm-kernels"
# Worker states in which its plugins are torn down because it stops (not because a plugin of
# the same name is registered again by another batch, while this worker's tasks still run).
STOPPING = frozenset({"closing", "closing_gracefully", "closed", "failed"})

_lock = threading.Lock()
_launchers: dict[str | None, WarmKernelLauncher] = {}


def worker_launcher(isolation: str | None) -> WarmKernelLauncher:
    """This process's warm launcher for `isolation`, made on first use and kept until it stops."""
    with _lock:
        launcher = _launchers.get(isolation)
        if launcher is None:
            from grader.kernels.warm import WarmKernelLauncher

            launcher = _launchers[isolation] = WarmKernelLauncher(isolation=isolation)
        return launcher


def close_launchers() -> None:
    """End this process's warm launchers and their warm parents (next use makes new ones)."""
    with _lock:
        launchers = list(_launchers.values())
        _launchers.clear()
    for launcher in launchers:
        launcher.close()


def started_kernels() -> dict[str, int]:
    """How many kernels this process's launchers forked and started cold so far."""
    with _lock:
        launchers = list(_launchers.values())
    return {"forked": sum(w.forked for w in launchers), "cold": sum(w.cold for w in launchers)}


atexit.register(close_launchers)


def ready_torch() -> None:
    """Import torch now, before a task's grading starts threads of its own (so no import of
    theirs crosses torch's). If it fails, this worker can grade nothing: a failed torch import
    cannot be repeated in the same process. While other workers remain, it leaves the cluster
    and the task is rescheduled on one of them, rather than recorded as the submission's error;
    the last worker raises instead (the task fails with the reason: the batch ends, not hangs)."""
    from distributed import Reschedule, get_client, get_worker

    from grader.assignment.tensors import TorchUnavailable, import_torch

    try:
        import_torch()
    except TorchUnavailable as e:
        worker = get_worker()
        try:
            others = set(get_client().scheduler_info(n_workers=-1)["workers"]) - {worker.address}
        except Exception:  # (no answer: stay, and let the task fail with the reason)
            others = set()
        if not others:
            raise
        worker.loop.add_callback(worker.close, nanny=False, reason=f"nngrader: {e}")
        raise Reschedule() from None


class WarmKernels(WorkerPlugin):  # type: ignore[misc]
    """A Dask WorkerPlugin that closes the worker's warm launchers when the worker stops."""

    name = PLUGIN_NAME

    def teardown(self, worker: Any) -> None:
        """Close the launchers if the worker is stopping (not on a mere re-registration)."""
        status = getattr(getattr(worker, "status", None), "name", "")
        if status in STOPPING:
            close_launchers()
