"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` processes on loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.service_support import free_port

ROOT = Path(__file__).resolve().parent.parent
DASK_CLI = str(Path(sys.executable).parent / "dask")  # the `dask` command of this environment
DASK = [DASK_CLI, "scheduler"]
WORKER = [DASK_CLI, "worker"]


def _wait_workers(address: str, n: int, timeout: float = 180) -> None:
    from distributed import Client

    with Client(address, timeout="60s") as c:
        c.wait_for_workers(n, timeout=timeout)


@contextlib.contextmanager
def loopback_cluster(d: Path, workers: int = 2, per_worker: dict[int, dict[str, str]] | None = None,
                     **extra_env: str) -> Iterator[dict]:
    """`dask scheduler` and `workers` `dask worker` processes (one thread each, no nanny) on 127.0.0.1;
    `extra_env` is the workers' environment's additions, `per_worker[i]` worker i's own."""
    d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([*DASK, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                               "127.0.0.1:0"], env=env, cwd=d, stdout=subprocess.DEVNULL,
                              stderr=open(d / "scheduler.log", "w"))]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen(
                [*WORKER, address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--name", f"w{i}", "--local-directory", str(d / f"w{i}")],
                env={**env, **extra_env, **(per_worker or {}).get(i, {})}, cwd=d, stdout=subprocess.DEVNULL,
                stderr=open(d / f"worker{i}.log", "w")))
        _wait_workers(address, workers)
        yield {"address": address, "workers": procs[1:], "dir": d}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def worker_pids(address: str) -> dict[str, int]:
    """Each live worker's address -> its process id."""
    from distributed import Client

    with Client(address, timeout="60s") as c:
        return c.run(os.getpid)


def processing(address: str) -> dict[str, list[str]]:
    """Each worker's address -> the keys of the tasks it runs now."""
    from distributed import Client

    with Client(address, timeout="60s") as c:
        return {w: [str(k) for k in keys] for w, keys in c.processing().items()}
