"""Who the kernel is, what it can leave behind, and what it can do to the grader.

When the grader runs as root, the kernel must not be root (on the host) at any isolation
level: it cannot leave its cgroup, signal the grader or write the grader's files, and every
process it starts is found and killed at the end. These tests run the attack notebooks in a
live kernel and look at the kernel's processes from the outside (host uids, cgroup).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.users import KERNEL_UID_BASE, KERNEL_UID_SPAN
from grader.kernels.workspace import make_workspace
from grader.run.budget import Budget
from grader.run.session import Session

from .helpers import ADVERSARIAL, ASSIGNMENT, ROOT, report_json, run_grade
from .test_isolation import available_levels

LEVELS = available_levels()
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the grader is not root here")


def kernel_processes(session: Session) -> list[psutil.Process]:
    """The kernel's processes on the host: everything under the process the grader started."""
    pid = session.km.provisioner.process.pid  # type: ignore[union-attr]
    top = psutil.Process(pid)
    return [top, *top.children(recursive=True)]


def processes_of(uid: int) -> list[psutil.Process]:
    """Live (not zombie) processes of a user."""
    out = []
    for p in psutil.process_iter(["uids", "status"]):
        with contextlib.suppress(psutil.Error):
            if uid in p.info["uids"] and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def with_mark(mark: str) -> list[psutil.Process]:
    """Live processes whose environment holds the test's mark."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get("GRADER_TEST_MARK") == mark:
                out.append(p)
        except psutil.Error:
            continue
    return out


def run_attack(name: str, level: str, query: str, *, cgroup: bool = True, files: dict[str, str] | None = None,
               tmp: Path, inspect: Any = None, cell_timeout: float = 30) -> dict[str, Any]:
    """Run an attack notebook in a live kernel; the value `query` prints, the record, the limits
    the report would state, and what `inspect(session)` found while the kernel was up."""
    src = tmp / f"{name}.ipynb"
    shutil.copyfile(ADVERSARIAL / f"{name}.ipynb", src)
    for fname, text in (files or {}).items():
        (tmp / fname).write_text(text)
    nb = nbformat.read(src, as_version=4)
    launcher = LocalKernelLauncher(isolation=level, cgroup=cgroup)

    async def go() -> dict[str, Any]:
        ws = make_workspace(src)
        session = Session(launcher, ws, nb)
        out: dict[str, Any] = {"launcher": launcher}
        try:
            await session.run_notebook("pass", cell_timeout)
            status, outputs = await session.run_code(f"print(repr({query}))", timeout=30)
            assert status == "ok", (status, outputs)
            out["value"] = ast.literal_eval("".join(o.get("text", "") for o in outputs if o.get("name") == "stdout"))
            out["inspected"] = inspect(session) if inspect else None
            out["uid"] = ws.uid
        finally:
            await session.close()
            ws.cleanup()
        out["record"] = session.record
        out["limits"] = launcher.describe()
        return out

    return asyncio.run(go())


# ---------------------------------------------------------------- the kernel's user


@root_only
@pytest.mark.parametrize("level", LEVELS)
def test_as_root_the_kernel_is_an_unprivileged_user_of_its_own(level: str, tmp_path: Path):
    def host_users(session: Session) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        return [(" ".join(p.cmdline())[:200], tuple(p.uids()), tuple(p.gids())) for p in kernel_processes(session)]

    r = run_attack("kernel_user", level, "me", tmp=tmp_path, inspect=host_users)
    me, procs, uid = r["value"], r["inspected"], r["uid"]
    assert KERNEL_UID_BASE <= uid < KERNEL_UID_BASE + KERNEL_UID_SPAN
    # on the host: the kernel, the sleeper it started and (sandbox) bubblewrap are that user
    student = [p for p in procs if "ipykernel_launcher" in p[0] or p[0].startswith("sleep")]
    assert len(student) >= 2, procs
    for cmd, uids, gids in student:
        assert set(uids) == {uid} and set(gids) == {uid}, (cmd, uids, gids)
    # only the wrapper that made the namespaces (unshare, at that level) runs as root
    assert all(0 not in uids for cmd, uids, _ in procs if os.path.basename(cmd.split()[0]) != "unshare"), procs
    # inside: no groups, no capabilities, no new privileges, no way back to root
    assert me["groups"] == [] and me["caps"] == ["0000000000000000", "0000000000000000"]
    assert me["no_new_privs"] == ["1"]
    assert me["setuid0"].startswith("refused") and me["setgid0"].startswith("refused")
    assert me["setgroups"].startswith("refused") and me["chroot"].startswith("refused")
    assert me["su"] != "0" and me["etc_passwd"] == "refused"
    if level == "sandbox":
        assert me["uid"] == 65534  # as seen inside its user namespace
    else:
        assert me["uid"] == me["euid"] == uid
    limits = r["limits"]
    assert f"uid {uid}" in limits["user"] and "unprivileged user of its own" in limits["user"]
    assert limits["cleanup"] == "every process of the kernel's user is killed after the run"
    assert processes_of(uid) == []  # the sleeper too
    if level != "sandbox":  # (its /tmp and /dev/shm are its own)
        assert len(me["left"]) >= 2
    assert not [f for f in me["left"] if os.path.exists(f)]


@root_only
def test_each_workspace_gets_another_user_and_the_workspace_is_closed_to_it(tmp_path: Path):
    seen = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        r = run_attack("kernel_user", "process", "(me, sorted(os.listdir('.')), os.stat('..').st_mode & 0o777, "
                       "[os.access(p, os.W_OK) for p in ('..', '../rt', '../rt/kernel.log')])",
                       tmp=tmp_path / name)
        me, listing, parent_mode, writable = r["value"]
        seen.append(r["uid"])
        assert "kernel_user.ipynb" in listing
        assert parent_mode == 0o711 and writable == [False, False, False]
    assert seen[0] != seen[1]


@root_only
@pytest.mark.parametrize("level", LEVELS)
def test_a_closed_folder_above_the_workspace_stays_closed(level: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    closed = tmp_path / "closed"
    (closed / "tmp").mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "secret.txt").write_text("not for the kernel")
    monkeypatch.setattr(tempfile, "tempdir", str(closed / "tmp"))  # where workspaces are made
    r = run_attack("kernel_user", level, f"(os.getcwd(), os.path.exists({str(closed / 'secret.txt')!r}), "
                   f"sorted(os.listdir({str(closed)!r})), os.access({str(closed)!r}, os.W_OK))", tmp=tmp_path)
    cwd, secret, listing, writable = r["value"]
    assert cwd.startswith(str(closed / "tmp" / "grader-"))  # the kernel works there...
    assert not secret and listing == ["tmp"]  # ...and sees nothing else of it
    if level != "sandbox":  # (in the sandbox, that path is inside its own private /tmp)
        assert not writable


# ---------------------------------------------------------------- cgroup and memory


@root_only
@pytest.mark.parametrize("level", LEVELS)
def test_kernel_cannot_leave_its_cgroup_and_children_stay_within_the_memory_limit(level: str, tmp_path: Path):
    launcher = LocalKernelLauncher(isolation=level)
    if not str(launcher.describe()["memory_limit"]).startswith("cgroup"):
        pytest.skip("no cgroup here")
    r = run_attack("leave_cgroup", level, "(escape, cgroup_after == own, full)", tmp=tmp_path, cell_timeout=120)
    escape, stayed, full = r["value"]
    assert escape and all(not v.startswith(("moved", "made", "raised")) for v in escape.values()), escape
    assert stayed
    assert full <= 1  # three children of 1200 MB each, held at once: at most one fits in 2048 MB
    assert any("memory limit" in ev for ev in r["record"].limit_events)
    assert r["limits"]["memory_limit"].startswith("cgroup") and "2048 MB" in r["limits"]["memory_limit"]


@root_only
def test_as_root_without_a_cgroup_the_process_limit_binds(tmp_path: Path):
    launcher = LocalKernelLauncher(isolation="process", cgroup=False)
    assert launcher.describe()["process_limit"] == "RLIMIT_NPROC: 256 processes of the kernel's own user"
    code = ("import os\nn = 0\ntry:\n    while n < 1000:\n        if os.fork() == 0:\n            import time; time.sleep(30); os._exit(0)\n"
            "        n += 1\nexcept OSError:\n    pass\n")
    src = tmp_path / "forks.ipynb"
    nb = nbformat.read(ADVERSARIAL / "daemons.ipynb", as_version=4)
    nb.cells = [nb.cells[0], nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, src)

    async def go() -> tuple[int, int]:
        ws = make_workspace(src)
        session = Session(launcher, ws, nb, Budget(60))
        try:
            await session.run_notebook("pass", 30)
            _, outs = await session.run_code("print(n)", timeout=10)
            forked = int("".join(o.get("text", "") for o in outs))
            uid = ws.uid
        finally:
            await session.close()
            ws.cleanup()
        return forked, uid

    forked, uid = asyncio.run(go())
    assert 200 < forked < 256
    assert processes_of(uid) == []


# ---------------------------------------------------------------- nothing outlives a run


def cleanup_cases() -> list[tuple[str, bool]]:
    if os.geteuid() == 0:  # with or without a cgroup: the kernel's user finds them
        return [(level, cgroup) for level in LEVELS for cgroup in (True, False)]
    # as an ordinary user, a plain process without a cgroup cannot find a detached daemon: not promised
    has_cgroup = str(LocalKernelLauncher(isolation="process").describe()["memory_limit"]).startswith("cgroup")
    return [(level, cgroup) for level in LEVELS for cgroup in (True, False)
            if level != "process" or (cgroup and has_cgroup)]


@pytest.mark.parametrize("level, cgroup", cleanup_cases())
def test_daemons_do_not_outlive_the_run(level: str, cgroup: bool, tmp_path: Path):
    mark = secrets.token_hex(8)
    r = run_attack("daemons", level, "1", cgroup=cgroup, tmp=tmp_path, files={"token.txt": mark},
                   inspect=lambda s: len(with_mark(mark)))
    assert r["inspected"] >= 4  # they were running while the kernel was
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and with_mark(mark):
        time.sleep(0.1)
    assert with_mark(mark) == []


# ---------------------------------------------------------------- the grader itself


@root_only
@pytest.mark.parametrize("shared", [False, True])
def test_kernel_cannot_forge_the_report_or_kill_the_grader(shared: bool, tmp_path: Path):
    # shared: the report goes to a folder everyone may write to (the kernel may write there
    # too, plant links where the grader might write, but not make the grader write anything
    # but its report, or anywhere else)
    base = Path(tempfile.mkdtemp(prefix="nngrader-test-", dir="/tmp"))
    base.chmod(0o755)
    drop = base / "drop"  # where the kernel may say what it found
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    victim = drop / "victim"
    victim.write_text("the grader's user's file\n")
    try:
        sub = tmp_path / "sub"
        sub.mkdir()
        shutil.copyfile(ADVERSARIAL / "grader_cmdline.ipynb", sub / "grader_cmdline.ipynb")
        (sub / "drop.txt").write_text(str(drop))
        out = (base if shared else tmp_path) / "out" / "report.json"
        out.parent.mkdir()
        out.parent.chmod(0o1777 if shared else 0o755)
        for level in LEVELS:
            env = dict(os.environ, NNGRADER_ISOLATION=level)
            result, _ = run_grade([str(sub / "grader_cmdline.ipynb"), "--format", "json", "-o", str(out)],
                                  env=env, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            d = report_json(out)
            assert d["execution"]["isolation"]["level"] == level
            assert {c["target"] for c in d["checks"] if c["status"] == "pass"} == {"sigmoid", "sigmoid_derivative"}
            assert d["score"] < d["max_score"]
            assert out.stat().st_uid == 0
            assert victim.read_text() == "the grader's user's file\n"
            found = json.loads((drop / "found.json").read_text()) if (drop / "found.json").exists() else None
            if level == "process":  # it can read the command line; it can use it for nothing
                assert found is not None and any(str(out) == p for _, p in found["outputs"]), found
                assert found["environ"] and all(e == "Permission denied" for e in found["environ"]), found
                assert bool(found["forged"]) == shared, found
            if found is not None:
                assert found["killed"] == [], found
                if not shared:
                    assert found["forged"] == [], found
                (drop / "found.json").unlink()
            for p in out.parent.iterdir():
                if p != out:
                    p.unlink()
            out.unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- when the grader is not root


def unprivileged_python(tmp: Path) -> str | None:
    """An interpreter an ordinary user can run, with the grader's packages (None if none is at hand)."""
    base = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if base is None or shutil.which("setpriv") is None:
        return None
    version = subprocess.run([base, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    if version.stdout.strip() != str(sys.version_info[:2]):
        return None
    venv = tmp / "venv"
    if subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], capture_output=True).returncode != 0:
        return None
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (next(venv.glob("lib/python*/site-packages")) / "grader.pth").write_text("\n".join([str(ROOT), *site]) + "\n")
    return str(venv / "bin" / "python")


@root_only
def test_as_an_ordinary_user_the_grader_keeps_its_behaviour():
    base = Path(tempfile.mkdtemp(prefix="nngrader-test-", dir="/tmp"))  # pytest's folders are closed to others
    try:
        base.chmod(0o755)
        ordinary_user_grades(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def ordinary_user_grades(base: Path) -> None:
    python = unprivileged_python(base)
    if python is None:
        pytest.skip("no interpreter an ordinary user can run with the grader's packages")
    user = 40000 + secrets.randbelow(10000)
    home = base / "home"
    home.mkdir()
    os.chown(home, user, user)
    # the kernel environment, built ahead (as `grade env build` does for a machine) where that user reads it
    envs = base / "envs"
    built = subprocess.run([python, "-c", "from grader.kernels.envs import ensure_env; ensure_env()"],
                           capture_output=True, text=True, env={**os.environ, "GRADER_ENV_DIR": str(envs)}, timeout=1200)
    assert built.returncode == 0, built.stderr[-2000:]
    for level in LEVELS:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
               "NNGRADER_ISOLATION": level, "GRADER_ENV_DIR": str(envs)}
        r = subprocess.run(["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups", python, "-m",
                            "grader.cli", str(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"), "--format", "json"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        d = json.loads(r.stdout)
        iso = d["execution"]["isolation"]
        assert d["score"] == d["max_score"] and iso["level"] == level
        assert iso["process_limit"].startswith("RLIMIT_NPROC (the grader user's processes")
        assert iso["user"] in ("the grader's user", "uid 65534 in a user namespace, no capabilities")
        left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        # nothing but the remembered isolation levels and kernel interpreters' folders, inferred
        # specs and pooled hidden runs (caches kept on purpose): no temporary file of any of them
        kept = [p for p in left if p in (".cache", ".cache/nngrader", ".cache/nngrader/isolation.json",
                                         ".cache/nngrader/pythons.json", ".cache/nngrader/specs",
                                         ".cache/nngrader/pools")
                or (p.startswith(".cache/nngrader/specs/") and p.endswith(".json"))
                or re.fullmatch(r"\.cache/nngrader/pools/[\w.-]+(/\.lock|/\d+\.entry)?", p)]
        assert left == kept, left


@root_only
def test_a_grader_started_in_a_folder_the_kernels_user_cannot_see_still_grades(tmp_path: Path):
    # the grader's own folder sits behind a folder closed to others that the kernel's Python
    # also lies behind (/root here): the kernel's view of it is a tmpfs without that folder
    home = Path(os.path.realpath(sys.executable)).parents[-2]  # /root for a Python under /root
    if os.stat(home).st_mode & 0o001:
        pytest.skip("the grader's Python is not behind a closed folder here")
    here = Path(tempfile.mkdtemp(dir=home, prefix=".grader-test-"))
    try:
        shutil.copyfile(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb", here / "s.ipynb")
        for level in LEVELS:
            res, _ = run_grade(["s.ipynb", "--assignment", ASSIGNMENT, "--seed", "1", "--isolation", level], cwd=here)
            assert res.returncode == 0, res.stderr
            assert "Score: 11/11" in res.stdout
    finally:
        shutil.rmtree(here, ignore_errors=True)
