"""Pool entries computed in a child process: the builder that fills a pool while a grade runs,
and the planner that computes a batch's entries ahead; neither outlives its grader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from grader.assignment.load import find_assignment
from grader.assignment.reference import Reference
from grader.pool import child as pool_worker
from grader.pool import store as pool
from grader.pool.child import Builder, Planner
from tests.conftest import ASSIGNMENTS, ROOT, proc_stat, process_alive


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRADER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_builder_stops_when_its_run_ends_and_leaves_only_whole_entries(cache):
    asg = find_assignment("tanh-softmax-gaussians")  # slow entries: stopped in the middle of one
    folder = pool.pool_folder(asg)
    builder = Builder(asg)
    builder.start()
    child = builder.process
    assert child is not None
    deadline = time.monotonic() + 60
    while not pool.entry_seeds(folder) and time.monotonic() < deadline:
        time.sleep(0.2)  # one entry written (unless the machine is busy): in the middle of the next
    # what a kill in the middle of a write leaves: a temporary file named for the builder
    folder.mkdir(parents=True, exist_ok=True)
    half = folder / f"{pool.temp_prefix(child.pid)}half.entry"
    half.write_bytes(b"half an entry")
    builder.stop()
    assert child.returncode == -signal.SIGKILL  # stopped at once, not after its reference call
    assert not half.exists()
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]
    for seed in pool.entry_seeds(folder):
        assert pool.read_entry(asg, seed) is not None
    builder.start()  # a stopped builder does not start again
    assert builder.process is child


_GRADER_WITH_BUILDER = """
import sys, time
from grader.pool.child import Builder
from grader.assignment.load import find_assignment
b = Builder(find_assignment("tanh-softmax-gaussians"))
b.start()
print(b.process.pid, flush=True)
time.sleep(600)
"""


def test_a_builder_ends_with_its_grader_even_one_killed(cache):
    assert _ends_with_its_grader(_GRADER_WITH_BUILDER, dict(os.environ, NNGRADER_CACHE_DIR=str(cache)))


def _nice(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[16]) if fields is not None else None


def _ends_with_its_grader(grader_source: str, env: dict[str, str] | None = None) -> bool:
    """Run a grader that starts a helper child and prints its pid; kill the grader with SIGKILL:
    whether the child is gone within a minute."""
    grader = subprocess.Popen([sys.executable, "-c", grader_source], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    child = int(grader.stdout.readline())
    assert process_alive(child)
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 60
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not process_alive(child)


def test_a_live_run_starts_filling_the_pool_once_its_own_values_are_computed(cache, monkeypatch):
    from grader.grading.stages import _plan

    monkeypatch.setenv(pool.POOL_SIZE_VARIABLE, "2")
    asg = find_assignment("sigmoid-2-3-1")
    seed, incomplete = pool.choose_seed(asg)
    assert incomplete
    builder = Builder(asg)
    reference, _ = _plan(asg, seed, asg.spec.checks, builder)
    assert isinstance(reference, Reference)  # this run: live
    assert builder.process is not None
    child = builder.process.pid
    deadline = time.monotonic() + 60
    while _nice(child) not in (19, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _nice(child) in (19, None)  # the builder runs at the lowest priority (or is done already)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # (not here: a test suite keeps the cores busy)
        os.setpriority(os.PRIO_PROCESS, child, 0)
    assert builder.process.wait(timeout=300) == 0
    builder.stop()
    seeds = pool.entry_seeds(pool.pool_folder(asg))
    assert len(seeds) == 2 and seed not in seeds  # the run's own seed, shown to the student, is not one
    assert not pool.choose_seed(asg)[1]


def test_a_planner_gives_each_seed_the_entry_a_live_run_records():
    asg = find_assignment("sigmoid-2-3-1")

    async def main() -> list[pool.Entry | None]:
        planner = Planner(asg, [11, 12, 13], window=2)
        await planner.start()
        try:
            # in the order given, and a seed it was not told of (asked for when needed)
            return [await planner.entry(s) for s in (11, 12, 13, 99)]
        finally:
            await planner.close()

    got = asyncio.run(main())
    live = Reference(asg)
    for seed, entry in zip((11, 12, 13, 99), got):
        assert entry is not None and entry.seed == seed
        assert entry.to_bytes() == pool.record(asg, live, seed).to_bytes()


def test_a_planner_keeps_at_most_its_window_of_entries_in_the_grader():
    asg = find_assignment("sigmoid-2-3-1")

    async def main() -> list[int]:
        planner = Planner(asg, range(100, 120), window=3)
        await planner.start()
        sizes = [planner.pending]
        try:
            for seed in range(100, 110):
                await asyncio.sleep(0.2)  # the child is ahead of the grading
                sizes.append(planner.pending)
                assert (await planner.entry(seed)) is not None
        finally:
            await planner.close()
        return sizes

    assert max(asyncio.run(main())) <= 3


def test_a_planner_whose_child_is_gone_leaves_each_seed_to_the_run(monkeypatch):
    asg = find_assignment("tanh-softmax-gaussians")  # entries take seconds: the kill comes first

    async def main(kill_after_first: bool) -> list[pool.Entry | None]:
        planner = Planner(asg, [1, 2, 3], window=1)
        await planner.start()
        try:
            out = [await planner.entry(1)]  # (seed 2 asked for now)
            if kill_after_first:
                planner._process.kill()
            return out + [await asyncio.wait_for(planner.entry(s), 60) for s in (2, 3)]
        finally:
            await planner.close()

    first, *rest = asyncio.run(main(kill_after_first=True))
    assert first is not None and rest == [None, None]
    # a child that cannot even start, or that answers garbage: every seed computes live
    monkeypatch.setattr(pool_worker, "_command", lambda mode, asg: ([sys.executable, "-c", "pass"], dict(os.environ)))
    assert asyncio.run(main(kill_after_first=False)) == [None, None, None]
    monkeypatch.setattr(pool_worker, "_command", lambda mode, asg: (
        [sys.executable, "-c", "import sys; sys.stdin.readline(); sys.stdout.buffer.write(b'x' * 40)"],
        dict(os.environ)))
    assert asyncio.run(main(kill_after_first=False)) == [None, None, None]


def test_what_a_reference_prints_does_not_reach_the_planners_answers(tmp_path):
    folder = tmp_path / "noisy"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    with open(folder / "reference.py", "a") as f:
        f.write("\nimport os as _os\nprint('loaded ' * 1000)\n_os.write(1, b'native noise')\n"
                "_plain_gradients = gradients\n\n\ndef gradients(x, t, W1, W2):\n"
                "    print('gradients called')\n    return _plain_gradients(x, t, W1, W2)\n")
    asg = find_assignment(str(folder))

    async def main() -> list[pool.Entry | None]:
        planner = Planner(asg, [1, 2], timeout=120)
        await planner.start()
        try:
            return [await planner.entry(s) for s in (1, 2)]
        finally:
            await planner.close()

    got = asyncio.run(main())
    live = Reference(asg)
    for seed, entry in zip((1, 2), got):
        assert entry is not None and entry.to_bytes() == pool.record(asg, live, seed).to_bytes()


def test_one_run_given_up_does_not_take_the_entry_from_another_with_the_same_seed():
    asg = find_assignment("sigmoid-2-3-1")

    async def main() -> pool.Entry | None:
        planner = Planner(asg, [7])
        await planner.start()
        try:
            # the same notebook handed in twice: two runs wait for one seed; one is stopped
            first = asyncio.ensure_future(planner.entry(7))
            second = asyncio.ensure_future(planner.entry(7))
            await asyncio.sleep(0)
            first.cancel()
            return await second
        finally:
            await planner.close()

    entry = asyncio.run(main())
    assert entry is not None and entry.seed == 7


def test_a_child_that_stops_answering_is_given_up_and_the_runs_compute_their_own(monkeypatch):
    asg = find_assignment("sigmoid-2-3-1")
    monkeypatch.setattr(pool_worker, "_command", lambda mode, asg: (
        [sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(600)"], dict(os.environ)))

    async def main() -> tuple[list[pool.Entry | None], int | None]:
        planner = Planner(asg, [1, 2, 3], timeout=2)
        await planner.start()
        try:
            got = [await planner.entry(s) for s in (1, 2, 3)]
            code = await asyncio.to_thread(planner._process.wait, 30)  # given up: killed
            return got, code
        finally:
            await planner.close()

    got, code = asyncio.run(main())
    assert got == [None, None, None] and code == -signal.SIGKILL


def test_seeds_whose_runs_never_asked_for_them_free_their_place():
    asg = find_assignment("sigmoid-2-3-1")

    async def main() -> list[int]:
        planner = Planner(asg, [1, 2, 3, 4], window=2)
        await planner.start()
        try:
            asked = sorted(planner._waiting)
            for seed in (1, 2):  # their runs failed before they needed their values
                planner.discard(seed)
            assert sorted(planner._waiting) == [3, 4]  # asked for now, ahead of their runs
            for seed in (3, 4):
                assert (await planner.entry(seed)) is not None
            return asked
        finally:
            await planner.close()

    assert asyncio.run(main()) == [1, 2]


_GRADER_WITH_PLANNER = """
import asyncio
from grader.pool.child import Planner
from grader.assignment.load import find_assignment
async def main():
    p = Planner(find_assignment("tanh-softmax-gaussians"), range(1000))
    await p.start()
    print(p._process.pid, flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_planner_ends_with_its_grader_even_one_killed():
    assert _ends_with_its_grader(_GRADER_WITH_PLANNER)


def test_a_planner_child_is_reaped_once_and_nothing_is_logged(monkeypatch, caplog):
    # the child is reaped by the planner alone: no "Unknown child process ... returncode 255"
    # from asyncio, however the child's end, the planner's reading of its last output and
    # the planner's own kill interleave (a child that ends by itself, one killed by close())
    asg = find_assignment("sigmoid-2-3-1")
    monkeypatch.setattr(pool_worker, "_command", lambda mode, asg: (
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], dict(os.environ)))

    async def main() -> list[int | None]:
        codes = []
        for i in range(20):
            planner = Planner(asg, [1], window=1)
            await planner.start()
            if i % 2:
                assert await planner.entry(1) is None  # (it ended without an answer)
            await planner.close()
            codes.append(planner._process.returncode if planner._process is not None else None)
        return codes

    with caplog.at_level(logging.WARNING):
        codes = asyncio.run(main())
    assert all(c in (0, -signal.SIGKILL) for c in codes), codes
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncio")] == []
