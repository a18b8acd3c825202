"""Building a kernel environment: never silent, binary wheels only unless allowed, a time limit.

Each build here starts from empty caches (its own $GRADER_ENV_DIR and $UV_CACHE_DIR) and holds
only what the kernel needs (`include_default = false`): none builds the default environment.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grader.errors import GraderError
from grader.kernels import env_errors, envs
from grader.kernels.env_progress import EnvProgress, duration
from grader.kernels.envs import BuildEvent, EnvBuildError, ensure_env
from tests.conftest import ROOT
from tests.test_envs import _assignment

GRADE = [sys.executable, "-c", "from grader.cli import main; main()"]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
# numpy 1.19.5, the last before 1.20, has wheels for CPython 3.6 to 3.9 only
OLD_NUMPY = "numpy<1.20"
needs_new_python = pytest.mark.skipif(sys.version_info < (3, 10), reason="numpy 1.19 has wheels for Python < 3.10")


def _caches(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), envs.ENV_DIR_VARIABLE: str(tmp / "envs"),
            "UV_CACHE_DIR": str(tmp / "uv-cache")}


def _grade(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRADE, *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**_caches(tmp), **extra})


def _left_in(root: Path) -> list[str]:
    """What a build left in the environments folder besides its lock files."""
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []


# ---------------------------------------------------------------- binary wheels only


@needs_new_python
def test_a_requirement_without_a_wheel_fails_at_once_in_one_whole_line(tmp_path: Path):
    folder = _assignment(tmp_path, f'packages = ["{OLD_NUMPY}"]\ninclude_default = false')
    started = time.monotonic()
    r = _grade(tmp_path, "env", "build", str(folder))
    took = time.monotonic() - started
    assert took < 60, f"{took:.0f} s: it compiled rather than refused"
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("grade: error:")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").endswith(errors[0]), r.stderr
    line = errors[0]
    assert line.startswith("grade: error: cannot build the kernel environment for assignment env-test: "
                           f"{OLD_NUMPY} has no binary wheel for Python {PY} on this platform; ")
    assert "--allow-source-builds" in line and envs.SOURCE_BUILDS_VARIABLE in line
    assert line.endswith("or choose a version with wheels")
    assert _left_in(tmp_path / "envs") == []
    # the first grade against it builds it implicitly: the same line, at once, with a report
    g = _grade(tmp_path, str(folder / "solution.ipynb"), "--assignment", str(folder), "--format", "json")
    assert g.returncode == 2 and json.loads(g.stdout)["status"] == "error"
    assert [ln for ln in g.stderr.splitlines() if ln.startswith("grade: error:")] == [line]


@needs_new_python
def test_a_batch_whose_environment_cannot_be_built_stops_at_once_in_one_line(tmp_path: Path):
    folder = _assignment(tmp_path, f'packages = ["{OLD_NUMPY}"]\ninclude_default = false')
    (tmp_path / "src").mkdir()
    shutil.copy(folder / "solution.ipynb", tmp_path / "src" / "alice.ipynb")
    started = time.monotonic()
    r = _grade(tmp_path, "batch", str(tmp_path / "src"), "-a", str(folder), "--db", str(tmp_path / "gb.sqlite"))
    assert time.monotonic() - started < 60
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1].startswith(f"grade: error: cannot build the kernel environment for assignment env-test: "
                                f"{OLD_NUMPY} has no binary wheel for Python {PY}")
    assert lines[:-1] == [f"building the kernel environment for assignment env-test ({OLD_NUMPY}, ipykernel)",
                          f"building the kernel environment for assignment env-test ({OLD_NUMPY}, ipykernel) "
                          f"failed after {lines[1].rsplit(' after ', 1)[-1]}"]


@needs_new_python
def test_the_api_names_the_requirement_and_the_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(envs.ENV_DIR_VARIABLE, str(tmp_path / "envs"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    with pytest.raises(EnvBuildError) as e:
        ensure_env([OLD_NUMPY], include_default=False, what="assignment x")
    message = str(e.value)
    assert "\n" not in message and f"{OLD_NUMPY} has no binary wheel for Python {PY}" in message
    assert _left_in(tmp_path / "envs") == []


def test_installs_are_binary_only_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    seen: list[list[str]] = []

    def run(argv: list[str], *args: object) -> tuple[int, str, str]:
        seen.append(argv)
        return 0, "", ""

    monkeypatch.setattr(envs, "_run", run)
    limit = envs._Limit("x", 60, time.monotonic() + 60, envs._Progress(None, "x"))
    for allow in (False, True):
        seen.clear()
        envs._build(tmp_path, ("ipykernel", "numpy"), envs.base_python(), limit, allow)
        install = seen[-1]
        assert ("--only-binary" in install and install[install.index("--only-binary") + 1] == ":all:") is not allow


def test_source_builds_are_allowed_by_the_variable_or_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from grader.assignment.load import load_spec

    asked: list[object] = []
    monkeypatch.setattr(envs, "ensure_env", lambda *a, **k: asked.append(k["allow_source_builds"]))
    plain = load_spec(_assignment(tmp_path, "packages = []", name="plain"))
    opted = load_spec(_assignment(tmp_path, "packages = []\nallow_source_builds = true", name="opted"))
    assert not plain.spec.environment.allow_source_builds and opted.spec.environment.allow_source_builds
    envs.ensure_assignment_env(plain)
    envs.ensure_assignment_env(opted)
    envs.ensure_assignment_env(plain, allow_source_builds=True)
    assert asked == [None, True, True]  # None: the variable decides
    monkeypatch.setenv(envs.SOURCE_BUILDS_VARIABLE, "1")
    assert envs.source_builds_allowed()
    monkeypatch.setenv(envs.SOURCE_BUILDS_VARIABLE, "0")
    assert not envs.source_builds_allowed()
    monkeypatch.setenv(envs.SOURCE_BUILDS_VARIABLE, "maybe")
    with pytest.raises(GraderError, match="NNGRADER_ALLOW_SOURCE_BUILDS"):
        envs.source_builds_allowed()


# uv's words when a requirement's dependency has no wheel, and when a source build fails
UV_DEPENDENCY = """error: No solution found when resolving dependencies
  cause: Because docopt==0.6.2 has no usable wheels and only docopt<=0.6.2 is available, we can conclude that docopt>=0.6.2 cannot be used.
         And because num2words==0.5.13 depends on docopt>=0.6.2 and you require num2words==0.5.13, we can conclude that your requirements are unsatisfiable.

hint: Wheels are required for `docopt` because building from source is disabled for all packages (i.e., with `--no-build`)
"""
UV_SOURCE_BUILD = ("  × Failed to build `numpy==1.19.5`\n  ├─▶ The build backend returned an error\n"
                   "  ╰─▶ Call to `setuptools.build_meta:__legacy__.build_wheel` failed (exit status: 1)\n\n"
                   "      [stdout]\n" + "      Cython: compiling numpy/random/_bounded_integers.pyx\n" * 2000)


def test_a_dependency_without_a_wheel_names_what_needs_it():
    line = env_errors.failure("assignment x", ("ipykernel", "num2words==0.5.13", "numpy"), UV_DEPENDENCY,
                              "3.11.7", binary_only=True)
    assert line.startswith("cannot build the kernel environment for assignment x: docopt (needed by "
                           "num2words==0.5.13) has no binary wheel for Python 3.11 on this platform; ")


def test_pip_without_uv_says_the_same_in_its_own_terms():
    pip = ("ERROR: Could not find a version that satisfies the requirement numpy<1.20 (from versions: 1.23.2, 2.0.0)\n"
           "ERROR: No matching distribution found for numpy<1.20\n")
    line = env_errors.failure("assignment x", ("ipykernel", "numpy<1.20"), pip, "3.11.7", binary_only=True)
    assert line.startswith("cannot build the kernel environment for assignment x: numpy<1.20 has no binary wheel "
                           "for Python 3.11 on this platform, or no such version exists; allow building from source")


def test_a_failed_source_build_is_the_installers_message_not_the_compilers_log():
    line = env_errors.failure("assignment x", ("ipykernel", "numpy<1.20"), UV_SOURCE_BUILD, "3.11.7")
    assert "\n" not in line and "Cython" not in line and "[stdout]" not in line
    assert "Failed to build `numpy==1.19.5`" in line and line.endswith("(exit status: 1)")
    long = env_errors.failure("assignment x", ("numpy",), "error: " + "numpy cannot be installed " * 40, "3.11.7")
    assert len(long) <= 480 and long.endswith("…")  # cut after a whole word, and says so
    assert long[:-1].split()[-1] in ("numpy", "cannot", "be", "installed")


# ---------------------------------------------------------------- never silent


def test_env_build_shows_its_progress_on_stderr_without_a_terminal(tmp_path: Path):
    folder = _assignment(tmp_path, "packages = []\ninclude_default = false", name="tiny")
    r = _grade(tmp_path, "env", "build", str(folder))
    assert r.returncode == 0, r.stderr
    key = envs.env_key(envs.resolve_requirements([], include_default=False))
    assert r.stdout.startswith(f"tiny: {key} (Python ") and len(r.stdout.splitlines()) == 1  # stdout: the result only
    lines = r.stderr.splitlines()
    title = "the kernel environment for assignment tiny (ipykernel, numpy)"
    assert lines[0] == f"building {title}", r.stderr
    assert re.fullmatch(rf"built {re.escape(title)} in \d+ s", lines[-1]), r.stderr
    # between them, a plain line every 10 s: how long, and what it does
    between = rf"building {re.escape(title)}: \d+ s, (creating the virtual environment|installing 2 packages|checking the installed versions)"
    assert all(re.fullmatch(between, ln) for ln in lines[1:-1]), r.stderr
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    # built: the next build is silent
    again = _grade(tmp_path, "env", "build", str(folder))
    assert again.returncode == 0 and again.stderr == "" and again.stdout == r.stdout


def _events(*states: tuple[str, str, float]) -> list[BuildEvent]:
    return [BuildEvent(state, "the kernel environment for assignment a (numpy, ... 6 packages)", step, t)
            for state, step, t in states]


BUILD = _events(("start", "starting", 0.0), ("step", "creating the virtual environment", 0.1),
                ("step", "installing 6 packages", 0.4), *(("tick", "installing 6 packages", t / 2) for t in range(1, 50)),
                ("step", "checking the installed versions", 25.2), ("done", "built", 25.9))


def test_plain_progress_is_a_line_at_the_start_every_ten_seconds_and_at_the_end():
    out = io.StringIO()
    show = EnvProgress(out, live=False)
    for e in BUILD:
        show(e)
    assert out.getvalue().splitlines() == [
        "building the kernel environment for assignment a (numpy, ... 6 packages)",
        "building the kernel environment for assignment a (numpy, ... 6 packages): 10 s, installing 6 packages",
        "building the kernel environment for assignment a (numpy, ... 6 packages): 20 s, installing 6 packages",
        "built the kernel environment for assignment a (numpy, ... 6 packages) in 25 s",
    ]


def test_terminal_progress_is_one_line_updated_in_place():
    out = io.StringIO()
    show = EnvProgress(out, live=True, width=200)
    for e in BUILD:
        show(e)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("built the kernel environment for assignment a "
                                                   "(numpy, ... 6 packages) in 25 s\n")
    drawn = [d for d in text.split("\r\x1b[K") if d]
    assert "building the kernel environment for assignment a (numpy, ... 6 packages): 12 s, installing 6 packages" in drawn
    assert len(drawn) == len(set(drawn))  # redrawn when what it says changes, not at every tick
    failed = io.StringIO()
    EnvProgress(failed, live=True)(_events(("failed", "installing 6 packages", 75.0))[0])
    assert failed.getvalue() == ("\r\x1b[Kbuilding the kernel environment for assignment a (numpy, ... 6 packages) "
                                 "failed after 1 min 15 s\n")
    assert duration(3725) == "62 min 05 s"
    # a narrow terminal: the line fits (a wrapped one cannot be redrawn), the time and step kept
    narrow = io.StringIO()
    show = EnvProgress(narrow, live=True, width=70)
    for e in BUILD:
        show(e)
    drawn = [d for d in narrow.getvalue().split("\r\x1b[K") if d][:-1]  # (the last line stays: it may wrap)
    assert drawn and all(len(d) <= 70 for d in drawn)
    assert any(re.fullmatch(r"building the kernel environment[^:]*…: 12 s, installing 6 packages", d) for d in drawn)


# ---------------------------------------------------------------- the time limit


def test_the_time_limit_stops_a_build_in_one_line_and_keeps_nothing(tmp_path: Path):
    folder = _assignment(tmp_path, "packages = []\ninclude_default = false", name="tiny")
    started = time.monotonic()
    r = _grade(tmp_path, "env", "build", str(folder), **{envs.TIME_LIMIT_VARIABLE: "1"})
    assert time.monotonic() - started < 60
    assert r.returncode == 2 and r.stdout == "", r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("grade: error:")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").endswith(errors[0]), r.stderr
    assert re.fullmatch(r"grade: error: cannot build the kernel environment for assignment tiny: stopped at its "
                        r"time limit of 1 s while (creating the virtual environment|installing 2 packages); "
                        r"nothing was kept \(for a longer limit set NNGRADER_ENV_BUILD_TIMEOUT=SECONDS or use "
                        r"'grade env build --time-limit SECONDS'\)", errors[0]), errors[0]
    assert _left_in(tmp_path / "envs") == []
    # and nothing of it still runs (the installer and what it started were killed)
    running = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
               if any(str(tmp_path) in a for a in p.info["cmdline"] or [])]
    assert running == []


def test_a_bad_time_limit_is_one_line(tmp_path: Path):
    folder = _assignment(tmp_path, "packages = []\ninclude_default = false", name="tiny")
    r = _grade(tmp_path, "env", "build", str(folder), **{envs.TIME_LIMIT_VARIABLE: "soon"})
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "grade: error: $NNGRADER_ENV_BUILD_TIMEOUT is 'soon': set it to a number of seconds above 0"]
