"""The submission's time limit, shared by everything that runs its code.

Its cells, every grader request into its kernel (probes, alternates, consistency, localise,
snapshots, the import check), kernels run again after a crash, and the hard-coding re-run
all draw on one budget. Only time spent running code in a kernel counts: starting kernels
and the grader's own judging do not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PROBE_SHARE = 0.25  # of the total, kept from the cells for the grader's requests that follow them
MAX_PROBE_SHARE_S = 30.0
FINAL_SHARE = 0.05  # of the total (at most FINAL_RESERVE_S), kept by the probes for the import check
FINAL_RESERVE_S = 1.0


class Budget:
    """Seconds left of the submission's time limit."""

    def __init__(self, total: float):
        self.total = float(total)
        self.spent = 0.0
        self.held = 0.0  # seconds kept back, for what must still run after the current stage

    def left(self) -> float:
        """Seconds the current stage may still use (never negative)."""
        return max(0.0, self.total - self.spent - self.held)

    @property
    def exhausted(self) -> bool:
        """Whether the current stage has no time left."""
        return self.left() <= 0.0

    def charge(self, seconds: float) -> None:
        """Count time the submission's kernel spent running."""
        self.spent += max(0.0, seconds)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Charge the wall time of the block."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.charge(time.monotonic() - start)

    def hold(self, seconds: float) -> None:
        """Keep `seconds` back from what runs next (until release)."""
        self.held = max(0.0, seconds)

    def release(self) -> None:
        """Make the time held back available again."""
        self.held = 0.0

    def probe_share(self) -> float:
        """Seconds the cells leave for the grader's requests after them."""
        return min(MAX_PROBE_SHARE_S, PROBE_SHARE * self.total)

    def final_reserve(self) -> float:
        """Seconds the probes leave for the import check, which runs last (it reads a list, fast)."""
        return min(FINAL_RESERVE_S, FINAL_SHARE * self.total)
