"""A kernel's cgroup (v1 or v2): made under the grader's own with a memory and a process limit,
joined by the kernel before it starts, read for what the limits did, killed and removed with
the kernel; and the cgroups killed graders left, swept each time a new one is made."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import time
from pathlib import Path

from grader.kernels import leftovers
from grader.kernels.limits import Limits
from grader.kernels.tracking import live_cgroups, track

# An empty kernel cgroup this old, whose owner its name does not tell, is a killed grader's.
STALE_CGROUP_S = 600


class Cgroup:
    """A cgroup (v1 or v2) holding one kernel and its children, with memory and process limits."""

    def __init__(self, version: int, dirs: dict[str, Path]):
        self.version = version
        self.dirs = dirs  # controller -> folder (v2: the same folder for both)

    @classmethod
    def create(cls, limits: Limits) -> tuple[Cgroup | None, str]:
        """A new cgroup under the grader's own, or (None, why not)."""
        name = leftovers.prefix("grader-") + secrets.token_hex(6)  # (its owner: see leftovers.py)
        try:
            own = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None, "no /proc/self/cgroup"
        fs = Path("/sys/fs/cgroup")
        v1 = {}
        v2_path = None
        for line in own:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            _, ctrls, path = parts
            for c in ctrls.split(","):
                if c in ("memory", "pids") and (fs / c).is_dir():
                    v1[c] = fs / c / path.lstrip("/")
            if ctrls == "" and (fs / "cgroup.controllers").exists():
                v2_path = fs / path.lstrip("/")
        for base in [*v1.values(), *([v2_path] if v2_path else [])]:
            sweep_cgroups(base)
        if "memory" in v1 and "pids" in v1:
            return cls._create_v1(limits, {c: base / name for c, base in v1.items()})
        if v2_path is not None:
            return cls._create_v2(limits, v2_path, name)
        return None, "no memory and pids cgroup controllers"

    @classmethod
    def _create_v1(cls, limits: Limits, dirs: dict[str, Path]) -> tuple[Cgroup | None, str]:
        cg = cls(1, dirs)
        try:
            for d in dirs.values():
                d.mkdir()
            mem = dirs["memory"]
            (mem / "memory.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                with contextlib.suppress(OSError):  # no swap accounting: the RAM limit stands
                    (mem / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
            (dirs["pids"] / "pids.max").write_text(str(limits.processes))
        except OSError as e:
            cg.destroy()
            return None, f"cgroup v1 not writable ({e.strerror or e})"
        return cg, ""

    @classmethod
    def _create_v2(cls, limits: Limits, v2_path: Path, name: str) -> tuple[Cgroup | None, str]:
        try:
            enabled = (v2_path / "cgroup.subtree_control").read_text().split()
            if not {"memory", "pids"} <= set(enabled):
                (v2_path / "cgroup.subtree_control").write_text("+memory +pids")
            d = v2_path / name
            d.mkdir()
        except OSError as e:
            return None, f"cgroup v2 not delegated to the grader ({e.strerror or e})"
        cg = cls(2, {"memory": d, "pids": d})
        try:
            (d / "memory.max").write_text(str(limits.memory_mb * 2**20))
            if (d / "memory.swap.max").exists():
                with contextlib.suppress(OSError):
                    (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(limits.processes))
        except OSError as e:
            cg.destroy()
            return None, f"cgroup v2 limits not writable ({e.strerror or e})"
        return cg, ""

    def procs_files(self) -> list[str]:
        """Where a process writes its pid to join."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def pids(self) -> set[int]:
        """Every process in the cgroup."""
        out: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                out |= {int(x) for x in Path(f).read_text().split()}
        return out

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        mem = self.dirs["memory"]
        f = mem / ("memory.oom_control" if self.version == 1 else "memory.events")
        return _counter(f, "oom_kill")

    def hit_memory_limit(self) -> bool:
        """Whether memory use ever reached the limit."""
        mem = self.dirs["memory"]
        if self.version == 1:
            return _int_file(mem / "memory.failcnt") > 0 or self.oom_kills() > 0
        return _counter(mem / "memory.events", "max") > 0 or self.oom_kills() > 0

    def hit_process_limit(self) -> bool:
        """Whether a fork was refused by the process limit."""
        return _counter(self.dirs["pids"] / "pids.events", "max") > 0

    def kill_all(self) -> None:
        """SIGKILL everything inside, including processes that escaped the kernel's process group."""
        kill_file = self.dirs["pids"] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def destroy(self) -> None:
        """Kill what is inside and remove the cgroup."""
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        track(live_cgroups, id(self), remove=True)

    def describe(self) -> str:
        """For the report."""
        return f"cgroup v{self.version}"


def _int_file(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0


def sweep_cgroups(base: Path) -> list[Path]:
    """Kill what is in, and remove, the kernel cgroups under `base` whose grader is dead; and
    remove empty ones older than STALE_CGROUP_S whose owner cannot be told (older graders' names;
    a live run's cgroup holds its kernel, and a new one is joined within seconds of being made)."""
    removed = []
    try:
        entries = [d for d in base.glob("grader-*") if d.is_dir()]
    except OSError:
        return removed
    now = time.time()
    for d in entries:
        if leftovers.dead_owners(d.name):
            version = 2 if (d / "cgroup.controllers").exists() else 1
            Cgroup(version, {"pids": d, "memory": d}).destroy()  # (one folder: a v1 controller's or v2's)
        else:
            try:
                if now - d.stat().st_mtime > STALE_CGROUP_S and not (d / "cgroup.procs").read_text().strip():
                    d.rmdir()
            except OSError:
                continue
        if not d.exists():
            removed.append(d)
    return removed


@functools.cache
def cgroup_support() -> tuple[str | None, str]:
    """Whether this process can make kernel cgroups: ("cgroup vN", "") or (None, why not)."""
    cg, why = Cgroup.create(Limits())
    if cg is None:
        return None, why
    cg.destroy()
    return cg.describe(), ""
