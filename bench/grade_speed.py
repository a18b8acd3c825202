"""Benchmark: how long grading takes, next to the floor and to other autograders.

Generates the 20 submissions of `bench/submissions.py` (sigmoid-2-3-1: 10 right, 10 wrong or
hostile, one an endless loop) and measures, interleaved round by round in the same run:

- the floor: a process that has nbclient execute the solution notebook (no grading);
- `grade` on one notebook (the solution), the whole process: with a complete pool; in a fresh
  cache after what the setup command does to it; in the GitHub Action's second run (the cache
  its first run saved); and in a fresh cache with no pool (a first grade, computed live);
- `grade` on all 20, one after another, and two at a time;
- `grade batch --jobs 2` on all 20, when this grader has that command;
- nbgrader `autograde` on one and on all 20, when it is installed in the cache folder;
- Otter-Grader `otter run` on one and on all 20 two at a time, when it is installed there
  (`--install-others` installs nbgrader and Otter there, each in a virtual environment of its
  own; rows of a tool that is not installed are skipped with a note).

Every command is a fresh process; its wall time, CPU time (with its children) and peak
memory (the largest process) are taken from the operating system. Prints a markdown table.
Otter has no per-cell time limit: each `otter run` is stopped after `--run-limit` seconds of
wall time, with every process under it, and counted as timed out.

Run by hand:  .venv/bin/python bench/grade_speed.py [--rounds 3] [--class-rounds 1] [--install-others]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import nbgrader_course, otter_course  # noqa: E402
from bench.submissions import ASSIGNMENT, SOLUTION, write_submissions  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nngrader-bench"
NBGRADER_VENV = CACHE / "venv-nbgrader"
OTTER_VENV = CACHE / "venv-otter"
# what --install-others puts in each tool's environment (a kernel with numpy beside the tool)
OTHERS = {NBGRADER_VENV: ("nbgrader", ["nbgrader", "ipykernel", "numpy"]),
          OTTER_VENV: ("otter", ["otter-grader>=7,<8", "ipykernel", "numpy"])}

FLOOR = """import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=float(sys.argv[2]), kernel_name="python3", allow_errors=True).execute()
"""


@dataclass
class Run:
    """One measured command (or sequence of commands)."""

    wall: float
    cpu: float
    rss_mb: float
    ok: int  # how many of its notebooks the tool graded (exit codes it documents)
    timed_out: int = 0  # how many of its processes were stopped at the wall-clock limit


@dataclass
class Measure:
    """A row of the table: what is measured, how many notebooks, and its runs."""

    name: str
    notebooks: int
    runs: list[Run] = field(default_factory=list)
    skipped: str = ""


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, from /proc (a kernel's parent is the tool that started it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process and of its children it has waited for (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stop_tree(pid: int) -> float:
    """Kill a process and everything below it; the CPU time they had used (lost to wait4 once
    they are orphaned)."""
    below = descendants(pid)
    used = sum(cpu_seconds(p) for p in below)
    for p in [pid, *below]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return used


def run_once(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None,
             ok_codes: tuple[int, ...] = (0, 1), limit: float | None = None) -> Run:
    """Run a command to its end, or stop it after `limit` seconds; wall, CPU (itself and its
    waited-for children) and peak RSS."""
    t0 = time.perf_counter()
    extra_cpu, timed_out = 0.0, False
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        if limit is None:
            _, status, usage = os.wait4(proc.pid, 0)
        else:
            # polled rather than killed from a timer thread: the process is killed only while it
            # is not yet reaped, so its pid cannot have been reused
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > limit and not timed_out:
                    extra_cpu, timed_out = stop_tree(proc.pid), True
                time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if timed_out:
            print(f"  ! {' '.join(cmd[:2])} … {cmd[-1]}: stopped after {limit:g} s", file=sys.stderr)
        elif proc.returncode not in ok_codes:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            print(f"  ! {' '.join(cmd[:4])}…: exit {proc.returncode}: {' | '.join(tail)}", file=sys.stderr)
    ok = int(proc.returncode in ok_codes and not timed_out)
    return Run(wall, usage.ru_utime + usage.ru_stime + extra_cpu, usage.ru_maxrss / 1024, ok, int(timed_out))


def run_many(cmds: list[list[str]], jobs: int, env: dict[str, str] | None = None,
             ok_codes: tuple[int, ...] = (0, 1), limit: float | None = None) -> Run:
    """Several commands, `jobs` at a time: the wall time of all, CPU summed, the largest peak."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        runs = list(pool.map(lambda c: run_once(c, env=env, ok_codes=ok_codes, limit=limit), cmds))
    return Run(time.perf_counter() - t0, sum(r.cpu for r in runs), max(r.rss_mb for r in runs),
               sum(r.ok for r in runs), sum(r.timed_out for r in runs))


def grade_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "grader.cli", *args]


def has_batch(env: dict[str, str]) -> bool:
    """Whether this grader has a `batch` command (`grade batch --help` alone would not tell: an
    unknown first word is taken for a notebook's name)."""
    code = "from grader.cli import main; print('batch' in main.commands)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return r.stdout.strip() == "True"


def installed(venv: Path) -> bool:
    """Whether the tool of this cache folder environment is there."""
    return (venv / "bin" / OTHERS[venv][0]).exists()


def install_others() -> None:
    """nbgrader and Otter (each with a kernel with numpy) in virtual environments of their own
    under the cache folder; those already there are left as they are."""
    CACHE.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    for venv, (_, packages) in OTHERS.items():
        if installed(venv):
            continue
        print(f"installing {' '.join(packages)} into {venv}", flush=True)
        if Path(uv).exists():
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *packages],
                           check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.machine()}, {os.cpu_count()} cores ({model or 'unknown CPU'}), "
            f"Python {platform.python_version()}, load average {load}")


def median_wall(m: Measure | None) -> float | None:
    """The median wall time of a measure's runs (None when it has none)."""
    return statistics.median(r.wall for r in m.runs) if m and m.runs else None


def table(measures: list[Measure], floor: Measure, nbgrader_all: Measure | None,
          otter_all: Measure | None = None) -> str:
    """The results as a markdown table; the last two columns say how many times as fast as
    nbgrader's and Otter's all-20 rows each row of 20 is."""
    floor_wall = median_wall(floor)
    nbg, otter = median_wall(nbgrader_all), median_wall(otter_all)
    rows = ["| what | runs | median wall (min–max) | notebooks/s | CPU-s | peak RSS (largest process) | "
            "vs floor | vs nbgrader (20) | vs Otter (20) |", "|---|---|---|---|---|---|---|---|---|"]
    for m in measures:
        if not m.runs:
            rows.append(f"| {m.name} | 0 | skipped: {m.skipped} | | | | | | |")
            continue
        walls = [r.wall for r in m.runs]
        wall = statistics.median(walls)
        cpu = statistics.median(r.cpu for r in m.runs)
        rss = max(r.rss_mb for r in m.runs)
        per_nb = wall / m.notebooks
        vs_floor = f"{per_nb / floor_wall:.2f}×" if floor_wall and m.notebooks == 1 else ""
        vs_nbg = f"{nbg / wall:.2f}× as fast" if nbg and m.notebooks > 1 else ""
        vs_otter = f"{otter / wall:.2f}× as fast" if otter and m.notebooks > 1 else ""
        graded = min(r.ok for r in m.runs)
        timed_out = max(r.timed_out for r in m.runs)
        notes = [f"{graded}/{m.notebooks} graded"] if graded < m.notebooks else []
        notes += [f"{timed_out} timed out"] if timed_out else []
        note = f" ({', '.join(notes)})" if notes else ""
        rows.append(f"| {m.name}{note} | {len(m.runs)} | {wall:.2f} s ({min(walls):.2f}–{max(walls):.2f}) | "
                    f"{m.notebooks / wall:.2f} | {cpu:.1f} | {rss:.0f} MB | {vs_floor} | {vs_nbg} | {vs_otter} |")
    return "\n".join(rows)


NBGRADER_DEFAULT_TIMEOUT = 30  # nbgrader's ExecutePreprocessor.timeout when a course sets none
EXAMPLE = ROOT / "tests" / "notebooks" / ASSIGNMENT / "seed_style.ipynb"  # the README's example grade


def first_runs(work: Path, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The cache folders of the two first-run rows, each prepared as it is in the flow it stands
    for (untimed); the environments the timed grades then run with.

    - after the setup command: a fresh cache, then what `.ci/setup` and the README's first
      command do to it (`grade prepare` of the example's assignment, the example grade);
    - the GitHub Action's second run: a fresh cache through the first run's Grade and Prepare
      steps (`ci/github/grade.sh`, `ci/github/prepare.sh`), then copied elsewhere, as
      actions/cache restores it. The kernel environment is the one already built (its
      caching is the action's own, tested in tests/test_ci.py)."""
    setup = dict(env, NNGRADER_CACHE_DIR=str(work / "setup-cache"))
    for cmd in (grade_cmd("prepare", ASSIGNMENT), grade_cmd(str(EXAMPLE), "--assignment", ASSIGNMENT)):
        subprocess.run(cmd, cwd=ROOT, env=setup, capture_output=True, timeout=1800)
    first = work / "action-first"
    first.mkdir()
    shutil.copy(SOLUTION, first / "submission.ipynb")
    scripts = ROOT / "ci" / "github"
    action = dict(env, NNGRADER_CACHE_DIR=str(work / "runner-temp-1"), NOTEBOOK="submission.ipynb",
                  ASSIGNMENT=ASSIGNMENT, PATH=f"{grade_bin(work)}{os.pathsep}{env.get('PATH', '')}")
    for script in ("grade.sh", "prepare.sh"):
        subprocess.run(["bash", str(scripts / script)], cwd=first, env=action, capture_output=True, timeout=1800)
    shutil.copytree(work / "runner-temp-1", work / "runner-temp-2")
    return setup, dict(env, NNGRADER_CACHE_DIR=str(work / "runner-temp-2"))


def grade_bin(work: Path) -> Path:
    """A folder with a `grade` command running this checkout's grader (the CI scripts call `grade`)."""
    folder = work / "bin"
    folder.mkdir(exist_ok=True)
    exe = folder / "grade"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m grader.cli \"$@\"\n")
    exe.chmod(0o755)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the one-notebook measurements")
    parser.add_argument("--class-rounds", type=int, default=1, help="rounds of the 20-notebook measurements")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per cell, for every tool that has such a limit (Otter has none: see --run-limit)")
    parser.add_argument("--own-limits", action="store_true",
                        help="every tool with its own default cell limit instead of --timeout: the grader's "
                             "measured from the solution (`grade prepare` measures it), nbgrader's 30 s")
    parser.add_argument("--run-limit", type=float, default=60.0, metavar="S",
                        help="wall-clock seconds for one `otter run`, which has no per-cell limit (60)")
    parser.add_argument("--install-others", action="store_true",
                        help=f"install nbgrader and Otter-Grader 7, each in a virtual environment of its own "
                             f"under {CACHE}")
    args = parser.parse_args()
    if args.run_limit <= 0:
        parser.error("--run-limit must be a positive number of seconds")
    if args.install_others:
        install_others()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    work = Path(tempfile.mkdtemp(prefix="grade-bench-"))
    try:
        notebooks = write_submissions(work / "submissions")
        t = str(args.timeout)
        limit = [] if args.own_limits else ["--timeout", t]  # the grader's cell limit option
        nbgrader_limit = NBGRADER_DEFAULT_TIMEOUT if args.own_limits else args.timeout
        graded = (0, 1)  # scored (1: below --fail-under); 2 or 3 would be the grader's failure
        floor = Measure("floor: nbclient runs the solution, no grading", 1)
        one = Measure("`grade` one notebook (whole process)", 1)
        cold = Measure("`grade` one notebook, a fresh cache with no pool (a first grade: computed live)", 1)
        after_setup = Measure("`grade` one notebook, a fresh cache after the setup command", 1)
        action_second = Measure("`grade` one notebook, the GitHub Action's second run (cache restored)", 1)
        serial = Measure("`grade` all 20, one after another", len(notebooks))
        pairs = Measure("`grade` all 20, two at a time", len(notebooks))
        batch = Measure("`grade batch --jobs 2` all 20", len(notebooks))
        nbg_one = Measure("nbgrader 0.9 `autograde`, one notebook", 1)
        nbg_all = Measure("nbgrader 0.9 `autograde` all 20 (serial)", len(notebooks))
        otter_one = Measure("Otter `otter run`, one notebook", 1)
        otter_all = Measure("Otter `otter run` all 20, two at a time", len(notebooks))
        if args.rounds < 1:
            floor.skipped = one.skipped = nbg_one.skipped = otter_one.skipped = "not run (--rounds 0)"
            cold.skipped = after_setup.skipped = action_second.skipped = "not run (--rounds 0)"
        if args.class_rounds < 1:
            serial.skipped = pairs.skipped = batch.skipped = nbg_all.skipped = "not run (--class-rounds 0)"
            otter_all.skipped = "not run (--class-rounds 0)"
        elif not has_batch(env):
            batch.skipped = "this grader has no `grade batch` command"
        nbg_venv = NBGRADER_VENV if (NBGRADER_VENV / "bin" / "nbgrader").exists() else None
        students: list[str] = []
        if nbg_venv is None:
            nbg_one.skipped = nbg_all.skipped = f"not installed ({NBGRADER_VENV}; use --install-others)"
        else:
            try:
                students = nbgrader_course.make_course(work / "course", nbg_venv, SOLUTION, notebooks, nbgrader_limit)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                why = " ".join(str(e).split())
                nbg_one.skipped = nbg_all.skipped = f"could not set up a course: {why[-160:]}"
                nbg_venv = None
        otter_venv = OTTER_VENV if installed(OTTER_VENV) else None
        otter_zip, otter_subs = None, []
        if otter_venv is None:
            otter_one.skipped = otter_all.skipped = f"not installed ({OTTER_VENV}; use --install-others)"
        else:
            try:
                version = otter_course.otter_version(otter_venv)
                otter_one.name = f"Otter {version} `otter run`, one notebook"
                otter_all.name = f"Otter {version} `otter run` all 20, two at a time"
                print("otter assign (cached once built)", flush=True)
                otter_zip, otter_subs = otter_course.make_class(work / "otter", otter_venv, SOLUTION, notebooks, CACHE)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                why = " ".join(str(e).split())
                otter_one.skipped = otter_all.skipped = f"could not build the autograder: {why[-160:]}"
                otter_venv = None
        each = [grade_cmd(str(p), "--assignment", ASSIGNMENT, *limit, "--fail-under", "100%")
                for p in notebooks]
        print(f"machine: {machine()}", flush=True)
        # what a course machine does once (`grade prepare`): the one-notebook rows measure a
        # grade drawing its hidden run from a complete pool, not the first grades filling it
        if args.rounds >= 1:
            prepared = subprocess.run(grade_cmd("prepare", ASSIGNMENT), cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=1800)
            print(f"grade prepare {ASSIGNMENT}: " + ("done" if prepared.returncode == 0
                                                     else f"failed ({prepared.stderr.strip()[-160:]})"), flush=True)
            print("the first-run flows (setup command; the action's first run)", flush=True)
            setup_env, action_env = first_runs(work, env)
        for rnd in range(max(args.rounds, args.class_rounds)):
            print(f"round {rnd + 1}", flush=True)
            if rnd < args.rounds:
                floor.runs.append(run_once([sys.executable, "-c", FLOOR, str(SOLUTION), t], env=env, ok_codes=(0,)))
                solo = grade_cmd(str(SOLUTION), "--assignment", ASSIGNMENT, *limit)
                one.runs.append(run_once(solo, env=env, ok_codes=(0,)))
                after_setup.runs.append(run_once(solo, env=setup_env, ok_codes=(0,)))
                action_second.runs.append(run_once(solo + ["--format", "json", "--output", str(work / "r.json")],
                                                   env=action_env, ok_codes=(0,)))
                fresh = work / f"fresh-cache-{rnd}"  # (the isolation level is probed again too, as it is there)
                cold.runs.append(run_once(solo, env=dict(env, NNGRADER_CACHE_DIR=str(fresh)), ok_codes=(0,)))
                if nbg_venv is not None:
                    nbg_one.runs.append(run_once(nbgrader_course.autograde_command(nbg_venv, students[0]),
                                                 cwd=work / "course", env=nbgrader_course.environment(nbg_venv),
                                                 ok_codes=(0,)))
                if otter_venv is not None and otter_zip is not None:
                    otter_one.runs.append(run_once(otter_course.run_command(otter_venv, otter_zip, otter_subs[0]),
                                                   env=nbgrader_course.environment(otter_venv), ok_codes=(0,),
                                                   limit=args.run_limit))
            if rnd < args.class_rounds:
                serial.runs.append(run_many(each, 1, env, graded))
                pairs.runs.append(run_many(each, 2, env, graded))
                if not batch.skipped:
                    # a fresh gradebook each round (a rerun would skip what is graded); exit 1
                    # says some submissions ended as error or timeout rows, as the hostile ones do
                    book = work / f"gradebook-{rnd}.sqlite"
                    r = run_once(grade_cmd("batch", str(notebooks[0].parent), "--assignment", ASSIGNMENT,
                                           "--jobs", "2", *limit, "--db", str(book), "--quiet"),
                                 env=env, ok_codes=(0, 1))
                    r.ok *= len(notebooks)
                    batch.runs.append(r)
                if nbg_venv is not None:
                    shutil.rmtree(work / "course" / "autograded", ignore_errors=True)
                    # it exits 1 when any submission could not be autograded: count those it did
                    r = run_once(nbgrader_course.autograde_command(nbg_venv), cwd=work / "course",
                                 env=nbgrader_course.environment(nbg_venv), ok_codes=(0, 1))
                    r.ok = len(list((work / "course" / "autograded").glob("*/ps1/*.ipynb")))
                    nbg_all.runs.append(r)
                if otter_venv is not None and otter_zip is not None and not otter_all.skipped:
                    for sub in otter_subs[1:]:
                        (sub.parent / "results.json").unlink(missing_ok=True)
                    # it exits 1 when it cannot grade a submission (the kernel that exits): count
                    # the results it wrote
                    r = run_many([otter_course.run_command(otter_venv, otter_zip, sub) for sub in otter_subs[1:]],
                                 2, nbgrader_course.environment(otter_venv), (0,), limit=args.run_limit)
                    r.ok = sum(otter_course.graded(sub) for sub in otter_subs[1:])
                    otter_all.runs.append(r)
        print()
        print(f"machine: {machine()}")
        print(table([floor, one, after_setup, action_second, cold, nbg_one, otter_one, serial, pairs, batch, nbg_all, otter_all],
                    floor, nbg_all, otter_all))
        if otter_one.runs or otter_all.runs:
            print(f"\nOtter has no per-cell time limit (`otter run` executes the notebook with none): each "
                  f"`otter run` was given {args.run_limit:g} s of wall time, then stopped with its kernel "
                  f"and counted as timed out; the endless loop holds one of the two slots that long (and on a "
                  f"busy machine a run that would have finished may meet the limit too).")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
