"""What a kernel may use: its resource limits (memory, processes, file size, open files), and the
largest message the grader takes from it and how many it holds at once."""

from __future__ import annotations

from dataclasses import dataclass

from grader.kernels.users import user_tasks

# No single kernel message may be larger: a cell printing 1 GB cannot make the grader hold it.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# ... nor may more than a few wait in the grader's queues: a flood waits in the kernel instead
# (or is dropped there), so the grader holds at most this many messages, however fast they come.
MAX_QUEUED_MESSAGES = 8


@dataclass(frozen=True)
class Limits:
    """Resource limits for one kernel and its children."""

    memory_mb: int = 2048
    processes: int = 256
    file_size_mb: int = 256
    open_files: int = 1024

    def rlimits(self, tasks_now: int | None = None) -> dict[str, int]:
        """As `resource` module limits (`tasks_now`: processes and threads the kernel's user already runs)."""
        mb = 1024 * 1024
        return {
            # Per process: a single huge allocation fails with MemoryError instead of a kill.
            "RLIMIT_AS": self.memory_mb * mb,
            # NPROC counts every process and thread of the user, so allow for those already running.
            "RLIMIT_NPROC": (user_tasks() if tasks_now is None else tasks_now) + self.processes,
            "RLIMIT_FSIZE": self.file_size_mb * mb,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }
