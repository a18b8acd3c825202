"""Where one `grade` spends its time: when each stage starts and ends, from the process's start.

Runs the `grade` command in this process with its stages wrapped to print a timestamp
(to stderr) as they start and end. Run by hand, with `grade`'s own arguments:
  .venv/bin/python bench/timeline.py assignments/sigmoid-2-3-1/solution.ipynb > /dev/null
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def mark(what: str) -> None:
    print(f"{time.perf_counter() - T0:6.2f} s  {what}", file=sys.stderr, flush=True)


def wrap(owner: Any, name: str, label: str) -> None:
    """Print when `owner.name` (a function or coroutine function) starts and ends."""
    f = getattr(owner, name)
    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            mark(f"{label}: start")
            try:
                return await f(*args, **kwargs)
            finally:
                mark(f"{label}: end")
    else:
        @functools.wraps(f)
        def timed(*args: Any, **kwargs: Any) -> Any:
            mark(f"{label}: start")
            try:
                return f(*args, **kwargs)
            finally:
                mark(f"{label}: end")
    setattr(owner, name, timed)


def after_import(name: str, then: Callable[[ModuleType], None]) -> None:
    """Call `then(module)` once the module `name` is imported (by the grader, when it needs it:
    importing it here would move its cost to a time it does not have in a real run)."""

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            run = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                run(module)
                then(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder())


def stages_loaded(stages: ModuleType) -> None:
    import grader.judging.rerun as rerun

    mark("imported the grading stages")
    wrap(stages, "_plan", "expected values: from the pool, else torch and the reference (thread)")
    wrap(stages, "execute", "first run: kernel ready, prelude, cells")
    wrap(stages, "check_consistency", "consistency check")
    wrap(stages, "rerun_given", "hard-coding re-run")
    wrap(rerun, "execute", "re-run: kernel ready, prelude, cells")


def main() -> None:
    import grader.cli as cli

    mark("imported the CLI")
    import grader.kernels.launch as kernel

    wrap(kernel.LocalKernelLauncher, "_choose", "choosing the isolation level")
    wrap(kernel.LocalKernelLauncher, "start", "starting a kernel process")
    after_import("grader.grading.stages", stages_loaded)
    wrap(cli, "_write_report", "writing the report")
    exit_now = cli._exit_now

    def exit_marked(code: int) -> Any:
        mark(f"exit {code}")
        return exit_now(code)

    cli._exit_now = exit_marked
    cli.main()


if __name__ == "__main__":
    main()
