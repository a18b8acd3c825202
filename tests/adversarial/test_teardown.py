"""A batch stops kernels and removes workspaces in the background, and still leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import grader.kernels.teardown as teardown_mod
import grader.kernels.tracking as tracking
from grader.batch.run import grade_batch
from grader.kernels.teardown import Teardown, in_background, remove_workspace
from grader.kernels.users import _process_uids
from grader.kernels.workspace import Workspace, make_workspace
from tests.batch_support import ASSIGNMENT, ROOT, make_flat

from .helpers import processes_mentioning


def test_a_workspace_goes_only_after_its_kernels_stopped(tmp_path: Path, private_tmp: Path):
    order: list[str] = []
    (tmp_path / "a.ipynb").write_text("{}")

    async def slow_stop(km: object) -> None:
        await asyncio.sleep(0.2)
        order.append("kernel stopped")

    async def check() -> None:
        ws = make_workspace(tmp_path / "a.ipynb")
        real_cleanup = ws.cleanup

        def cleanup() -> None:
            order.append("workspace removed")
            real_cleanup()

        ws.cleanup = cleanup  # type: ignore[method-assign]
        async with in_background() as td:
            await td.stop_kernel(object(), ws)  # type: ignore[arg-type]
            await remove_workspace(ws)
            assert order == []  # handed over: nothing done yet, the caller goes on
        assert order == ["kernel stopped", "workspace removed"]  # leaving the block waited for both

    original = teardown_mod.stop_kernel
    teardown_mod.stop_kernel = slow_stop  # type: ignore[assignment]
    try:
        asyncio.run(check())
    finally:
        teardown_mod.stop_kernel = original
    assert list(private_tmp.iterdir()) == []


def test_without_a_teardown_a_workspace_is_removed_at_once(tmp_path: Path, private_tmp: Path):
    (tmp_path / "a.ipynb").write_text("{}")
    ws = make_workspace(tmp_path / "a.ipynb")
    asyncio.run(remove_workspace(ws))
    assert not ws.root.exists()


def test_a_workspace_handed_over_twice_is_removed_once(tmp_path: Path, private_tmp: Path):
    (tmp_path / "a.ipynb").write_text("{}")
    removed: list[str] = []

    async def check() -> None:
        ws = make_workspace(tmp_path / "a.ipynb")
        real_cleanup = ws.cleanup

        def cleanup() -> None:
            removed.append(ws.root.name)
            real_cleanup()

        ws.cleanup = cleanup  # type: ignore[method-assign]
        async with in_background():
            await remove_workspace(ws)
            await remove_workspace(ws)  # (the re-run removes its workspace, then its standby too)
        async with in_background():
            await remove_workspace(ws)  # another teardown knows nothing of it: removed again (a no-op)

    asyncio.run(check())
    assert len(removed) == 2
    assert list(private_tmp.iterdir()) == []


def test_the_number_of_teardowns_in_hand_is_bounded():
    async def check() -> int:
        td = Teardown(limit=2)
        release = asyncio.Event()
        running = 0
        most = 0

        async def work() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

        await td.later(work)
        await td.later(work)
        third = asyncio.ensure_future(td.later(work))
        await asyncio.sleep(0.05)
        assert not third.done()  # waits for room
        release.set()
        await third
        await td.drain()
        return most

    assert asyncio.run(check()) == 2


def test_a_batch_leaves_no_process_user_cgroup_or_folder(tmp_path: Path, private_tmp: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    uids: list[int] = []
    real_hand_to = Workspace.hand_to

    def hand_to(self: Workspace, uid: int) -> None:
        uids.append(uid)
        real_hand_to(self, uid)

    monkeypatch.setattr(Workspace, "hand_to", hand_to)
    deferred: list[str] = []
    real_later = Teardown.later

    async def later(self: Teardown, work, after=None):  # type: ignore[no-untyped-def]
        deferred.append("handed over")
        return await real_later(self, work, after)

    monkeypatch.setattr(Teardown, "later", later)
    src = make_flat(tmp_path / "src", [("ann", "correct"), ("bob", "hostile"), ("cy", "sign")])
    s = grade_batch(src, ASSIGNMENT, tmp_path / "gb.sqlite", jobs=2, seed=3, cell_timeout=10)
    assert sum(s.counts.values()) == 3
    assert deferred  # the kernels were stopped in the background
    with tracking.live_lock:
        assert not tracking.live_kernels and not tracking.live_cgroups
        assert not tracking.live_roots and not tracking.live_uids
    assert processes_mentioning(str(private_tmp)) == []
    left = {u for _, ids, zombie in _process_uids() if not zombie for u in ids}
    assert uids and not left & set(uids)
    assert [p.name for p in private_tmp.iterdir()] == []


def _kernel_uids(tmp: Path) -> set[int]:
    """The users of the kernels whose workspaces are under `tmp` now (each owns its work folder)."""
    out = set()
    for work in tmp.glob("grader-*/work"):
        try:
            out.add(work.stat().st_uid)
        except OSError:
            continue
    return out - {0}


def test_sigterm_during_a_batch_leaves_no_kernel_user_or_folder(tmp_path: Path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    src = make_flat(tmp_path / "src", [(f"t{i}", "correct") for i in range(6)])
    db = tmp_path / "gb.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grader.cli import main; main()", "batch", str(src), "-a", ASSIGNMENT,
         "--db", str(db), "--jobs", "2", "--timeout", "8", "--total-timeout", "60"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    uids: set[int] = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        uids |= _kernel_uids(tmp)
        time.sleep(0.05)
        try:
            if db.exists() and sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0] >= 1:
                break
        except sqlite3.DatabaseError:
            continue
    uids |= _kernel_uids(tmp)
    assert proc.poll() is None, "the batch finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert uids  # kernels were running (the next ones' among them, started ahead)
    left = {u for _, ids, zombie in _process_uids() if not zombie for u in ids}
    assert not left & uids
    assert processes_mentioning(str(tmp)) == []
    assert [p.name for p in tmp.iterdir()] == []
