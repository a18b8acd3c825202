"""A grader killed with SIGKILL leaves folders behind; the next run removes them, and only them.

The real case: a `grade batch` killed with `kill -9` while a `grade` of another notebook runs
beside it with the same temporary folder. The next batch run must remove what the killed one
left (workspaces, staging folders, cgroups) and leave the live grader's workspace alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grader.kernels import leftovers
from grader.kernels.cgroups import Cgroup
from grader.kernels.limits import Limits
from grader.kernels.users import KERNEL_UID_BASE, fresh_kernel_uid, is_root
from tests.batch_support import ASSIGNMENT, make_flat

from .helpers import ADVERSARIAL, GRADE, clean_env, processes_mentioning

ROOT = Path(__file__).resolve().parents[2]


def tag_of(pid: int, ticks: int | None = None, ns: int | None = None) -> str:
    """The owner part of the names of a grader process's folders: `<pid>-<ticks>-<ns>`."""
    ticks = leftovers.start_ticks(pid) if ticks is None else ticks
    return f"{pid}-{ticks}-{leftovers.pid_namespace() if ns is None else ns}"


def _dead_process_tag() -> str:
    """The owner tag of a process that ran and is gone."""
    p = subprocess.Popen(["sleep", "0.1"])
    tag = tag_of(p.pid)
    p.wait()
    return tag


def test_only_folders_of_dead_graders_are_swept(tmp_path: Path) -> None:
    dead = _dead_process_tag()
    alive = subprocess.Popen(["sleep", "300"])  # another grader, still running
    try:
        live_tag = tag_of(alive.pid)
        reused = tag_of(alive.pid, int(leftovers.start_ticks(alive.pid)) + 1)  # its pid, another start
        pid, ticks, _ = _dead_process_tag().split("-")
        elsewhere = tag_of(int(pid), int(ticks), leftovers.pid_namespace() + 1)  # another PID namespace
        made = {}
        for name in (f"grader-{dead}-aaaa", f"gk-{dead}-bbbb", f"grader-batch-{dead}-cccc",
                     f"grader-batch-src-{dead}-dddd", f"grader-{reused}-eeee",  # dead: to go
                     f"grader-{live_tag}-ffff", f"gk-{live_tag}-gggg",  # a live grader's: to stay
                     f"grader-{elsewhere}-hhhh", f"grader-{pid}-{ticks}-iiii",  # owner not known here
                     "grader-abcdefgh", f"other-{dead}-x", f"grader-{dead}"):  # no owner named: to stay
            made[name] = tmp_path / name
            (made[name] / "work" / "sub").mkdir(parents=True)
            (made[name] / "work" / "sub" / "f.txt").write_text("x")
        target = tmp_path / "target"
        target.mkdir()
        (target / "precious").write_text("keep")
        (tmp_path / f"grader-{dead}-link").symlink_to(target)  # a link is never followed
        (tmp_path / f"grader-{dead}-file").write_text("not a folder")
        removed = leftovers.sweep_folders(tmp_path)
        gone = {p.name for p in removed}
        assert gone == {f"grader-{dead}-aaaa", f"gk-{dead}-bbbb", f"grader-batch-{dead}-cccc",
                        f"grader-batch-src-{dead}-dddd", f"grader-{reused}-eeee"}
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            {*made, "target", f"grader-{dead}-link", f"grader-{dead}-file"} - gone)
        assert (target / "precious").read_text() == "keep"
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.skipif(not is_root(), reason="folders of another user: needs root to make one")
def test_a_folder_of_another_user_is_not_swept(tmp_path: Path) -> None:
    d = tmp_path / f"grader-{_dead_process_tag()}-zzzz"
    d.mkdir()
    os.chown(d, KERNEL_UID_BASE + 7, KERNEL_UID_BASE + 7)  # (a kernel user could make such a name)
    assert leftovers.sweep_folders(tmp_path) == []
    assert d.is_dir()


@pytest.mark.skipif(not is_root(), reason="kernel users exist only when the grader runs as root")
def test_a_dead_workspace_takes_its_kernel_user_with_it(tmp_path: Path) -> None:
    uid = fresh_kernel_uid()
    ws = tmp_path / f"grader-{_dead_process_tag()}-wwww"
    (ws / "work").mkdir(parents=True)
    os.chown(ws / "work", uid, uid)  # as hand_to gives it to the kernel's user
    escaped = subprocess.Popen(["sleep", "300"], user=uid, group=uid, extra_groups=[],
                               start_new_session=True)  # a process of that user that outlived its kernel
    planted = Path("/dev/shm") / f"left-by-{uid}"
    planted.write_text("x")
    os.chown(planted, uid, uid)
    try:
        assert [p.name for p in leftovers.sweep_folders(tmp_path)] == [ws.name]
        assert escaped.wait(timeout=30) == -signal.SIGKILL
        assert not planted.exists() and not ws.exists()
    finally:
        if escaped.poll() is None:
            escaped.kill()
        planted.unlink(missing_ok=True)


def test_this_process_names_its_folders_with_itself() -> None:
    pid, ticks = leftovers.owner(leftovers.prefix("grader-") + "x")
    assert pid == os.getpid() and leftovers.owner_alive(pid, ticks)
    assert leftovers.owner(leftovers.prefix("grader-batch-src-") + "x") == (pid, ticks)
    with pytest.raises(AssertionError):
        leftovers.prefix("other-")


def _cgroups_of(tag: str) -> list[Path]:
    """Kernel cgroups named for the grader `tag`, wherever this machine mounts cgroups."""
    fs = Path("/sys/fs/cgroup")
    out: list[Path] = []
    for own in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = own.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            base = fs / c / path.lstrip("/") if c else fs / path.lstrip("/")
            if base.is_dir():
                out += base.glob(f"grader-{tag}-*")
    return out


def _wait_for(predicate, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_killed_batch_is_swept_by_the_next_run_but_a_live_grader_is_not(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"  # the temporary folder of every grader of this test
    tmp.mkdir()
    env = clean_env(TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    # a live grader beside the batch: an endless cell, so it is still running at the sweep
    live = subprocess.Popen([*GRADE, str(ADVERSARIAL / "infinite_loop.ipynb"), "--timeout", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    batch = None
    try:
        live_tag = tag_of(live.pid)
        _wait_for(lambda: any(tmp.glob(f"grader-{live_tag}-*/rt/kernel.json")))
        live_folders = sorted(tmp.glob(f"grader-{live_tag}-*"))
        src = make_flat(tmp_path / "src", [(f"k{i:02d}", k) for i, k in
                                           enumerate(["correct", "loop", "loop", "sign", "correct", "loop"])])
        db = tmp_path / "gb.sqlite"
        args = [str(src), "-a", ASSIGNMENT, "--db", str(db), "--jobs", "2", "--seed", "3",
                "--timeout", "15", "--total-timeout", "60", "--quiet"]
        cmd = [sys.executable, "-c", "from grader.cli import main; main()", "batch", *args]
        batch = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tag = tag_of(batch.pid)
        # killed while two kernels run: their workspaces are in use
        _wait_for(lambda: len(list(tmp.glob(f"grader-{tag}-*/rt/kernel.json"))) >= 2)
        time.sleep(1)
        batch.send_signal(signal.SIGKILL)
        batch.communicate(timeout=60)
        left = sorted(p.name for p in tmp.iterdir() if tag in p.name)
        assert any(n.startswith(f"grader-{tag}-") for n in left), left  # its workspaces
        assert any(n.startswith(f"grader-batch-{tag}-") for n in left), left  # its staging folders
        assert any(n.startswith(f"grader-batch-src-{tag}-") for n in left), left
        cgroups = _cgroups_of(tag)
        cg, _ = Cgroup.create(Limits())
        if cg is not None:  # cgroups work here: the killed run's kernels had theirs
            cg.destroy()
            assert cgroups
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 1, again.stderr  # (the hanging ones time out: error rows, exit 1)
        assert [p.name for p in tmp.iterdir() if tag in p.name] == []  # all swept
        assert [c for c in cgroups if c.exists()] == []
        assert live.poll() is None  # the live grader still runs, its kernel too, its folders kept
        assert all(f.is_dir() for f in live_folders) and (live_folders[0] / "rt" / "kernel.json").exists()
        assert processes_mentioning(str(tmp))
    finally:
        for p in (batch, live):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=60)
    assert live.returncode == 130  # stopped by us, not by the sweep
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and list(tmp.iterdir()):
        time.sleep(0.1)
    assert list(tmp.iterdir()) == []
    assert not any(psutil.pid_exists(p.pid) and p.status() != psutil.STATUS_ZOMBIE
                   for p in processes_mentioning(str(tmp)))
