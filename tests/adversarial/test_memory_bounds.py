"""Memory a notebook cannot make someone else hold: the grader's (every kind of kernel message)
and the machine's (the sandbox's tmpfs folders, which count against no process limit)."""

from __future__ import annotations

import ast
import asyncio
import shutil
from pathlib import Path

import nbformat
import pytest

from grader.kernels.isolation import SANDBOX_TMPFS_BYTES
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.workspace import make_workspace
from grader.run.budget import Budget
from grader.run.session import Session

from .helpers import ADVERSARIAL, ASSIGNMENT, ROOT, report_json, run_grade
from .test_isolation import available_levels

BOTH = {"sigmoid", "sigmoid_derivative"}
MB = 2**20


@pytest.fixture(scope="module")
def base_peak(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak memory of the grader on a plain solution."""
    out = tmp_path_factory.mktemp("base") / "base.json"
    result, peak = run_grade([str(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"), "--format", "json",
                              "-o", str(out)])
    assert result.returncode == 0, result.stderr
    return peak


@pytest.mark.parametrize("name", ["message_flood", "message_flood_probe"])
def test_a_flood_of_comm_messages_display_updates_and_tracebacks_leaves_grader_memory_flat(
        name: str, base_peak: int, tmp_path: Path):
    # message_flood: ~1.5 GB of widget state, comm buffers, display updates, redrawn output and
    # tracebacks while the cells run; message_flood_probe: the checked function does it
    out = tmp_path / "r.json"
    result, peak = run_grade([str(ADVERSARIAL / f"{name}.ipynb"), "--format", "json", "-o", str(out),
                              "--timeout", "120"])
    assert result.returncode == 0, result.stderr
    d = report_json(out)
    assert {c["target"] for c in d["checks"] if c["status"] == "pass"} == BOTH
    if name == "message_flood":
        assert d["execution"]["output_truncated"]
    assert peak < base_peak + 400 * MB, (base_peak / MB, peak / MB)


def sandbox_fill(tmp: Path, cgroup: bool) -> dict[str, str]:
    src = tmp / "dev_fill.ipynb"
    shutil.copyfile(ADVERSARIAL / "dev_fill.ipynb", src)
    nb = nbformat.read(src, as_version=4)
    launcher = LocalKernelLauncher(isolation="sandbox", cgroup=cgroup)

    async def go() -> dict[str, str]:
        ws = make_workspace(src)
        session = Session(launcher, ws, nb, Budget(120))
        try:
            await session.run_notebook("pass", 60)
            status, outs = await session.run_code("print(repr(filled))", timeout=30)
            assert status == "ok", outs
            return ast.literal_eval("".join(o.get("text", "") for o in outs if o.get("name") == "stdout"))
        finally:
            await session.close()
            ws.cleanup()

    return asyncio.run(go())


def written(result: str) -> int:
    """Bytes a fill got to write ('ok N' or 'reason after N')."""
    return int(result.split()[-1])


@pytest.mark.skipif("sandbox" not in available_levels(), reason="bubblewrap is not available here")
@pytest.mark.parametrize("cgroup", [False, True])
def test_sandbox_tmpfs_folders_are_bounded(cgroup: bool, tmp_path: Path):
    filled = sandbox_fill(tmp_path, cgroup)
    # /dev/shm and /tmp: private tmpfs folders of a fixed size, well under the file size limit
    for target in ("/dev/shm/fill", "/tmp/fill"):
        assert filled[target].startswith("No space left on device"), filled
        assert written(filled[target]) <= SANDBOX_TMPFS_BYTES, filled
    assert filled["many"].startswith("No space left on device")
    assert int(filled["many"].split()[-2]) <= SANDBOX_TMPFS_BYTES // MB
    # /dev (besides its devices) and the sandbox's own root are read-only; nothing else is there
    for target in ("/dev/fill", "/fill"):
        assert filled[target] == "Read-only file system after 0", filled
    for target in ("/dev/mqueue/fill", "/proc/fill", "/run/fill"):
        assert not filled[target].startswith("ok") and written(filled[target]) == 0, filled
