"""The grader's own scan of /proc finds a kernel user's processes as psutil does, and kill_user empties it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from grader.kernels.users import (
    KERNEL_UID_BASE,
    _process_uids,
    _uids_in_use,
    _user_procs,
    is_root,
    kill_user,
)


def test_the_scan_agrees_with_psutil():
    mine = {pid: uids for pid, uids, _ in _process_uids()}
    me = os.getpid()
    assert mine[me] == tuple(psutil.Process(me).uids())
    ps = {p.pid for p in psutil.process_iter()}
    assert len(set(mine) & ps) >= 0.9 * len(ps)  # (processes come and go meanwhile)
    assert os.getuid() in _uids_in_use()


def test_a_zombie_is_not_a_live_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.02)
    try:
        zombie = {pid: z for pid, _, z in _process_uids()}
        assert zombie[child.pid] is True
        assert zombie[os.getpid()] is False
    finally:
        child.wait()


@pytest.mark.skipif(not is_root(), reason="needs root to run a process as another user")
def test_a_user_with_a_different_effective_uid_is_found_and_killed():
    uid = KERNEL_UID_BASE + 4242
    # real uid root, effective and saved uid the kernel user's: found by either
    code = f"import os, time; os.setresuid(0, {uid}, {uid}); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _user_procs(uid):
            time.sleep(0.05)
        assert [p.pid for p in _user_procs(uid)] == [proc.pid]
        assert kill_user(uid)
        assert proc.wait(timeout=10) != 0
        assert _user_procs(uid) == []
    finally:
        proc.kill()
        proc.wait()
