"""The kernels stage: the Python kernels that run submissions, and everything about them but what
they are asked to run. Which interpreter (the assignment's kernel environment), how far it is
fenced off (the isolation level: sandbox, namespace or process), under which limits (rlimits, a
cgroup, a user of its own when the grader is root), started cold or forked from a warm parent,
started ahead of need or kept on standby, and stopped with everything it started; and what a
killed grader left behind, removed by the next one.

Modules, from the bottom up:

- users.py: kernel users (fresh uids), their processes (scans of /proc, `kill_user`, `kill_tree`)
  and the files they leave (`remove_user_files`, `remove_tree`).
- leftovers.py: names that tell which grader made a folder or cgroup; the sweep of dead graders' folders.
- limits.py: `Limits` (memory, processes, file size, open files) and the message size limits.
- tracking.py: what this process has running (`cleanup_all` at exit) and clean interruption.
- cgroups.py: `Cgroup`, a kernel's cgroup with its limits and counters; the sweep of dead ones.
- workspace.py: `Workspace`, `KernelDirs`: a run's private folders; `make_workspace`.
- isolation.py: the sandbox's view (bubblewrap's arguments, the grader's folders hidden) and
  the on-disk memory of the isolation levels that work.
- limited_exec.py: the program between the grader and a cold kernel (limits, user, then exec).
- launch.py: `KernelLauncher`, `LocalKernelLauncher`: choosing the level, starting a kernel cold.
- stop.py: `stop_kernel` (the kernel and everything it started), `exit_cause`.
- warm_parent.py: the program of the warm parent, which forks each kernel into its own sandbox.
- warm.py: `WarmKernelLauncher`, kernels forked from a warm parent.
- ahead.py: kernels started ahead of the submission they will run.
- standby.py: `StandbyKernel`, a kernel started ahead of need: the first run's, and the re-run's beside it.
- teardown.py: stopping kernels and removing workspaces in the background.
- envs.py: kernel environments (one virtual environment per set of packages), built on demand,
  from binary wheels unless source builds are allowed, within a time limit, told to a reporter.
- env_errors.py: what a failed build says, in one whole line.
- env_progress.py: `EnvProgress`, a build shown on stderr (in place on a terminal, plain lines in CI).
- python_dirs.py: the program that asks a kernel's interpreter for its folders.

limited_exec.py, warm_parent.py and python_dirs.py run in the kernel's interpreter (their text is
passed to `python -c`): they never import the grader.

Importing this package loads none of the kernel machinery (jupyter_client, zmq); the entry
points below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grader.lazy import lazy_exports

if TYPE_CHECKING:
    from grader.kernels.envs import ensure_assignment_env
    from grader.kernels.launch import KernelLauncher, LocalKernelLauncher
    from grader.kernels.stop import stop_kernel
    from grader.kernels.tracking import cleanup_all, interruptible
    from grader.kernels.warm import WarmKernelLauncher
    from grader.kernels.workspace import make_workspace

__all__ = [
    "KernelLauncher",
    "LocalKernelLauncher",
    "WarmKernelLauncher",
    "cleanup_all",
    "ensure_assignment_env",
    "interruptible",
    "make_workspace",
    "stop_kernel",
]

__getattr__ = lazy_exports(__name__, {
    "KernelLauncher": "grader.kernels.launch",
    "LocalKernelLauncher": "grader.kernels.launch",
    "WarmKernelLauncher": "grader.kernels.warm",
    "cleanup_all": "grader.kernels.tracking",
    "ensure_assignment_env": "grader.kernels.envs",
    "interruptible": "grader.kernels.tracking",
    "make_workspace": "grader.kernels.workspace",
    "stop_kernel": "grader.kernels.stop",
})
