"""Kernels forked from a warm parent: graded as cold ones, and fenced off as strictly.

Each test uses real kernels forked from one warm parent (and, for comparison, cold ones); the
warm path needs root and the sandbox level, so without them only the fallback is tested.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from grader.grading.grade import grade_notebook
from grader.kernels import warm as warm_mod
from grader.kernels.isolation import interpreter_dirs
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.limits import Limits
from grader.kernels.standby import AHEAD_NICE
from grader.kernels.stop import stop_kernel
from grader.kernels.users import KERNEL_UID_BASE
from grader.kernels.warm import WarmKernelLauncher
from grader.kernels.workspace import make_workspace

from .helpers import ADVERSARIAL, ASSIGNMENT, ROOT

NOTEBOOK = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"


def _warm_possible() -> bool:
    launcher = WarmKernelLauncher()
    return launcher.warm


needs_warm = pytest.mark.skipif(not _warm_possible(), reason="forked kernels need root and the sandbox level")


@pytest.fixture(scope="module")
def launcher():
    """One warm parent for every test of the module (as a batch holds one for many submissions)."""
    with WarmKernelLauncher(limits=Limits(memory_mb=768, processes=48)) as launcher:
        yield launcher


async def _run(launcher: Any, code: str, timeout: float = 60, nice: int = 0) -> tuple[str, Any]:
    """Run `code` in a new kernel of `launcher` (own workspace, its `nice` increment); (printed
    text, its exit status or None)."""
    ws = make_workspace(NOTEBOOK)
    ws.nice = nice
    km = await launcher.start(ws)
    kc = km.client(context=km.context)
    kc.start_channels()
    out: list[str] = []
    try:
        await kc.wait_for_ready(timeout=60)
        msg_id = kc.execute(code)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await kc.get_iopub_msg(timeout=1)
            except Exception:
                if not await km.is_alive():
                    break
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append(f"{content['ename']}: {content['evalue']}\n")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        status = None
        if not await km.is_alive() and km.provisioner.process is not None:
            status = km.provisioner.process.poll()
        return "".join(out), status
    finally:
        kc.stop_channels()
        await stop_kernel(km)
        ws.cleanup()


def run(launcher: Any, code: str, timeout: float = 60, nice: int = 0) -> str:
    """What `code` printed in a new kernel of `launcher`."""
    return asyncio.run(_run(launcher, code, timeout, nice))[0]


def facts(launcher: Any) -> dict[str, Any]:
    """What a kernel sees of itself and of the machine, as JSON."""
    code = r"""
import json, os, random, socket, sys, numpy as np
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
f = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
     "pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(), "cwd": os.getcwd(),
     "np": float(np.random.rand()), "py": random.random(), "nnp": status["NoNewPrivs"].strip(),
     "hash": hash("a string"), "cgroup": open("/proc/self/cgroup").read(),
     "capeff": status["CapEff"].strip(), "root": sorted(os.listdir("/")),
     "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
     "modules": sorted(sys.modules), "env": dict(os.environ), "path": sys.path}
print(json.dumps(f))
"""
    return json.loads(run(launcher, code).strip().splitlines()[-1])


def summary(report: Any) -> dict[str, Any]:
    """What a report says, without timings."""
    ex = report.execution
    return {
        "status": report.status, "score": report.score,
        "checks": [(c.target, c.status, c.points, c.message) for c in report.checks],
        "errors": [(e.cell, e.ename, e.evalue) for e in ex.cell_errors],
        "ran": ex.ran_cells, "skipped": ex.skipped_cells, "died": ex.kernel_died,
        "timed_out": ex.timed_out_cells, "events": ex.limit_events,
    }


@needs_warm
@pytest.mark.parametrize("path", [
    NOTEBOOK,
    ROOT / "tests" / "notebooks" / ASSIGNMENT / "sign_error.ipynb",
    ADVERSARIAL / "patch_numpy.ipynb",
    ADVERSARIAL / "os_exit.ipynb",
    ADVERSARIAL / "hc_globals.ipynb",
], ids=lambda p: p.stem)
def test_a_forked_kernel_grades_exactly_like_a_cold_one(launcher: WarmKernelLauncher, path: Path):
    cold = grade_notebook(path, ASSIGNMENT, seed=7, launcher=LocalKernelLauncher(limits=launcher.limits))
    before = launcher.forked
    warm = grade_notebook(path, ASSIGNMENT, seed=7, launcher=launcher)
    assert launcher.forked > before and launcher.warm  # really forked, not fallen back to cold
    assert summary(warm) == summary(cold)
    assert warm.execution.isolation["start"].startswith("forked from a warm parent")


@needs_warm
# (the memory bomb's cell ends when its children are killed or their sleep ends: its generous
# limit only leaves them time to fill the memory on a loaded machine; the fork bomb runs to its limit)
@pytest.mark.parametrize("name, event, limit", [("memory_bomb_children", "memory limit", 60),
                                                ("fork_bomb", "process limit", 20), ("segfault", "", 20)])
def test_limits_and_crashes_are_reported_as_for_a_cold_kernel(name: str, event: str, limit: float):
    cold_launcher = LocalKernelLauncher()
    if event and not str(cold_launcher.describe()["memory_limit"]).startswith("cgroup"):
        pytest.skip("no cgroup here: nothing to compare")
    with WarmKernelLauncher() as launcher:
        warm = grade_notebook(ADVERSARIAL / f"{name}.ipynb", ASSIGNMENT, seed=3, cell_timeout=limit,
                              launcher=launcher)
        assert launcher.forked >= 1 and launcher.cold == 0
    cold = grade_notebook(ADVERSARIAL / f"{name}.ipynb", ASSIGNMENT, seed=3, cell_timeout=limit,
                          launcher=cold_launcher)
    assert [(c.target, c.status) for c in warm.checks] == [(c.target, c.status) for c in cold.checks]

    def stopped(r: Any) -> list[tuple[int, str]]:
        # a cell stopped at a limit: whether the kernel died of it or the cell's time ran out
        # first depends on how busy the machine is, for a cold kernel and a forked one alike
        return [(e.cell, "stopped" if event and e.ename in ("KernelDied", "Timeout") else e.ename)
                for e in r.execution.cell_errors]

    assert stopped(warm) == stopped(cold)
    if event:
        assert any(event in ev for ev in warm.execution.limit_events), warm.execution.limit_events
    else:
        assert warm.execution.kernel_died == cold.execution.kernel_died


@needs_warm
@needs_warm
@pytest.mark.parametrize("nice", [0, AHEAD_NICE])
def test_a_forked_kernel_runs_at_its_workspaces_cpu_priority(launcher: WarmKernelLauncher, nice: int):
    # (a kernel started ahead of need, as the re-run's, is forked at a lower priority too)
    assert os.nice(0) == 0
    assert run(launcher, "import os; print(os.nice(0))", nice=nice).strip() == str(nice)


def test_kernels_forked_at_the_same_time_are_apart(launcher: WarmKernelLauncher):
    async def both() -> list[tuple[str, Any]]:
        code = "import os, numpy as np; print(os.getuid(), np.random.randint(1 << 30))"
        return await asyncio.gather(_run(launcher, code), _run(launcher, code))

    (a, _), (b, _) = asyncio.run(both())
    assert a.split()[0] != b.split()[0] and a.split()[1] != b.split()[1]


@needs_warm
def test_the_next_submission_sees_nothing_of_the_last(launcher: WarmKernelLauncher):
    first = r"""
import builtins, os, sys, numpy as np
np.dot = lambda a, b: "patched"
np.random.seed(1)
builtins.LEFT_BEHIND = 1
sys.modules["planted"] = sys
os.environ["PLANTED"] = "1"
for d in ("/tmp", "/dev/shm", os.getcwd(), os.path.expanduser("~"), os.environ["TMPDIR"]):
    try:
        open(os.path.join(d, "planted.txt"), "w").write("x")
        print("wrote", d)
    except OSError as e:
        print("refused", d, e.errno)
LEFT_GLOBAL = 1
"""
    out = run(launcher, first)
    assert "wrote /tmp" in out and "wrote /dev/shm" in out  # it could write there: in its own sandbox
    second = r"""
import builtins, glob, os, sys, numpy as np
print("dot", np.dot([1], [2]))
print("builtin", hasattr(builtins, "LEFT_BEHIND"), "module", "planted" in sys.modules,
      "env", "PLANTED" in os.environ, "global", "LEFT_GLOBAL" in globals())
print("files", sorted(glob.glob("/tmp/**/planted.txt", recursive=True)
                      + glob.glob("/dev/shm/planted.txt") + glob.glob(os.path.expanduser("~/planted.txt"))))
"""
    out = run(launcher, second)
    assert "dot 2" in out
    assert "builtin False module False env False global False" in out
    assert "files []" in out


@needs_warm
def test_each_submission_has_a_fresh_unprivileged_user_and_fresh_random_numbers(launcher: WarmKernelLauncher):
    a, b = facts(launcher), facts(launcher)
    for f in (a, b):
        assert f["uid"] == f["euid"] == f["gid"] >= KERNEL_UID_BASE  # never root, never an account
        assert f["groups"] == [] and f["nnp"] == "1" and int(f["capeff"], 16) == 0
        assert f["pid"] == 2 and f["ppid"] == 1 and f["host"] == "grader"  # own process and UTS namespaces
        assert max(f["procs"]) <= 3  # sees only its own sandbox's processes (init, kernel, the shell's)
    assert a["uid"] != b["uid"]
    assert a["np"] != b["np"] and a["py"] != b["py"]  # the parent's generators were reseeded
    assert a["hash"] == b["hash"]  # as documented: the hash seed is the warm parent's


@needs_warm
def test_the_kernel_sees_what_a_cold_sandboxed_kernel_sees(launcher: WarmKernelLauncher):
    warm, cold = facts(launcher), facts(LocalKernelLauncher(limits=launcher.limits))
    assert warm["root"] == cold["root"]
    assert warm["cgroup"] == cold["cgroup"]  # its own cgroup namespace: no host path
    assert warm["path"] == cold["path"]
    assert set(warm["env"]) == set(cold["env"])
    assert Path(warm["cwd"]).name == Path(cold["cwd"]).name == "cwd"
    # nothing the parent preloaded passes for a module no notebook imported: the runner's baseline
    # (what is loaded when it installs) is no larger than a cold kernel's
    code = "import numpy, binascii, hashlib, inspect, itertools, json, linecache, pathlib, random, types\n"
    code += "import sys; print(sorted(sys.modules))"
    warm_mods = set(eval(run(launcher, code)))
    cold_mods = set(eval(run(LocalKernelLauncher(limits=launcher.limits), code)))
    assert warm_mods == cold_mods, (sorted(warm_mods - cold_mods), sorted(cold_mods - warm_mods))


@needs_warm
def test_grader_files_home_and_other_workspaces_are_not_visible(launcher: WarmKernelLauncher, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    hidden = [str(ROOT / "grader"), str(ROOT / "assignments" / ASSIGNMENT / "reference.py"), str(secret),
              "/home", "/etc/shadow", str(Path(warm_mod.__file__).parent)]
    # in /tmp, only the way to its own workspace, and to the Python it runs if that lives in /tmp
    own = sorted({p for d in interpreter_dirs(sys.executable) for p in (d, str(Path(d).resolve()))})
    code = f"""
import os
for p in {hidden!r}:
    print(p, os.path.exists(p) and bool(os.listdir(p) if os.path.isdir(p) else True))
print("others", [d for d in os.listdir("/tmp")
                 if not any(p.startswith("/tmp/" + d + "/") for p in [os.getcwd(), *{own!r}])])
try:
    open("/usr/planted", "w")
    print("usr writable")
except OSError:
    print("usr read-only")
def tree(top, depth):
    out = []
    for d, dirs, files in os.walk(top):
        if d.count("/") - top.count("/") >= depth:
            dirs[:] = []
        out += [os.path.join(d, n) for n in dirs + files]
    return sorted(out)
print("seen", tree("/root", 2), tree("/work", 2), tree("/etc", 1))
"""
    out = run(launcher, code)
    assert " True" not in out, out
    assert "others []" in out and "usr read-only" in out
    # beside those, exactly what a cold sandboxed kernel sees (the folders leading to the Python it runs)
    cold = run(LocalKernelLauncher(limits=launcher.limits), code)
    assert out.split("seen")[1] == cold.split("seen")[1]


@needs_warm
def test_network_is_unreachable(launcher: WarmKernelLauncher):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        code = f"""
import socket
own = socket.socket()
own.bind(("127.0.0.1", 0))
own.listen(1)
socket.create_connection(own.getsockname(), timeout=3).close()
print("own loopback works")
for addr in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(addr)
        print("connected", addr)
    except OSError as e:
        print("refused", addr)
"""
        out = run(launcher, code)
    finally:
        server.close()
    assert "own loopback works" in out
    assert "connected" not in out and out.count("refused") == 2


@needs_warm
def test_memory_and_process_limits_hold(launcher: WarmKernelLauncher):
    code = r"""
import os, time
try:
    big = bytearray(2 * 1024**3)
    print("allocated")
except MemoryError:
    print("memory refused")
kids, refused = [], False
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        refused = True
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
print("forks", len(kids), "refused", refused)
"""
    out = run(launcher, code)
    assert "memory refused" in out
    forks = int(out.split("forks ")[1].split()[0])
    assert "refused True" in out and forks < launcher.limits.processes


@needs_warm
def test_kernel_death_is_reported_as_for_a_cold_kernel(launcher: WarmKernelLauncher):
    for code, expected in (("import os; os._exit(3)", 3), ("import os, signal; os.kill(os.getpid(), 9)", 128 + 9)):
        _, status = asyncio.run(_run(launcher, code, timeout=20))
        assert status == expected


@needs_warm
def test_a_forked_kernel_can_be_restarted_and_interrupted(launcher: WarmKernelLauncher):
    async def go() -> tuple[int, int, str]:
        ws = make_workspace(NOTEBOOK)
        km = await launcher.start(ws)
        try:
            first = km.provisioner.pid
            await km.restart_kernel(now=True)
            second = km.provisioner.pid
            kc = km.client(context=km.context)
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)
            kc.execute("import time\nwhile True: time.sleep(0.01)")
            await asyncio.sleep(1.0)
            await km.interrupt_kernel()
            reply = await kc.get_shell_msg(timeout=30)
            kc.stop_channels()
            return first, second, reply["content"].get("ename", "")
        finally:
            await stop_kernel(km)
            ws.cleanup()

    first, second, ename = asyncio.run(go())
    assert first != second
    assert ename == "KeyboardInterrupt"


def _uid_processes(low: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["uids", "status"]):
        try:
            if p.info["uids"].real >= low and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, AttributeError):
            continue
    return out


@needs_warm
def test_nothing_outlives_the_run_or_the_parent():
    launcher = WarmKernelLauncher()
    out = run(launcher, "import subprocess, os\n"
                        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                        "print(os.getuid())")
    uid = int(out.strip().splitlines()[-1])
    assert not [p for p in _uid_processes(KERNEL_UID_BASE) if p.info["uids"].real == uid]
    parent = launcher.parent
    assert parent is not None and parent.process is not None
    pid = parent.process.pid
    deadline = time.monotonic() + 10
    while psutil.Process(pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.Process(pid).children()  # each kernel's keeper left with it
    launcher.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@needs_warm
def test_the_warm_parent_ends_with_a_grader_that_is_killed():
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from grader.kernels.warm import WarmKernelLauncher\n"
        "launcher = WarmKernelLauncher()\n"
        "print(launcher.ensure_parent().process.pid, flush=True)\n"
        "import time; time.sleep(300)\n"
    )
    grader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(grader.stdout.readline())
        assert psutil.pid_exists(pid)
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid)


@needs_warm
def test_a_warm_parent_that_died_is_started_again():
    with WarmKernelLauncher() as launcher:
        first = launcher.ensure_parent().process
        assert first is not None
        first.kill()
        first.wait()
        assert "forked" in run(launcher, "print('forked')")
        assert launcher.forked == 1 and launcher.cold == 0
        assert launcher.parent is not None and launcher.parent.process is not None
        assert launcher.parent.process.pid != first.pid


def test_falls_back_to_a_cold_start_where_forking_cannot_isolate(monkeypatch: pytest.MonkeyPatch):
    launcher = WarmKernelLauncher(isolation="process")
    assert not launcher.warm
    assert launcher.describe()["start"].startswith("a new interpreter per kernel (cold:")
    assert "pid" in run(launcher, "print('pid')")
    assert launcher.cold == 1 and launcher.forked == 0

    if not _warm_possible():
        return
    # a sandbox that cannot be built (here: a step the parent does not know) is the machine's
    # failure, before any submission code ran: that kernel and every later one start cold
    launcher = WarmKernelLauncher()
    real = warm_mod.sandbox_plan
    monkeypatch.setattr(warm_mod, "sandbox_plan", lambda *a: [*real(*a), ["nonsense", "/x"]])
    try:
        assert "pid" in run(launcher, "print('pid')")
        assert launcher.cold == 1 and launcher.forked == 0 and not launcher.warm
        assert "unknown mount step" in str(launcher.describe()["start"])
    finally:
        launcher.close()


def test_a_missing_interpreter_is_a_clear_error():
    parent = warm_mod.WarmParent("/nonexistent/python")
    with pytest.raises(warm_mod.WarmSetupError, match="did not start"):
        parent.start()
    assert not parent.alive
