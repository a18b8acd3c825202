"""The isolation level is probed once and remembered on disk, and a memory never weakens a run."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.assignment.load import find_assignment
from grader.errors import GraderError
from grader.grading.grade import grade_notebook
from grader.kernels import launch as kernel_mod
from grader.kernels.envs import ensure_assignment_env
from grader.kernels.isolation import LEVEL_CACHE_ENV, level_cache_file
from grader.kernels.launch import LocalKernelLauncher
from tests.conftest import ASSIGNMENTS

SOLUTION = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder of the test's own, and no probe results kept from earlier in this process."""
    monkeypatch.setenv(LEVEL_CACHE_ENV, str(tmp_path / "cache"))
    real = kernel_mod._works  # (a test may replace it; this teardown runs before that is undone)
    real.cache_clear()
    yield tmp_path / "cache" / "isolation.json"
    real.cache_clear()


def counting_probes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Record every probe the launcher makes (they still run)."""
    calls: list[tuple[str, ...]] = []
    real = kernel_mod._works

    def works(argv: tuple[str, ...]) -> tuple[bool, str]:
        calls.append(argv)
        return real(argv)

    monkeypatch.setattr(kernel_mod, "_works", works)
    return calls


def fresh_level() -> str:
    """The level a launcher picks with nothing remembered."""
    launcher = LocalKernelLauncher()
    launcher._forget(launcher.level)
    return launcher.level


def test_a_probed_level_is_remembered_and_not_probed_again(cache: Path, monkeypatch: pytest.MonkeyPatch):
    assert level_cache_file() == cache
    first = LocalKernelLauncher()
    assert not first.from_cache and cache.is_file()
    assert oct(cache.parent.stat().st_mode & 0o777) == "0o700"
    calls = counting_probes(monkeypatch)
    second = LocalKernelLauncher()
    assert second.level == first.level and second.from_cache
    assert calls == []
    assert second.describe()["level"] == first.level


def test_an_explicit_level_is_remembered_too(cache: Path, monkeypatch: pytest.MonkeyPatch):
    LocalKernelLauncher(isolation="namespace")
    calls = counting_probes(monkeypatch)
    assert LocalKernelLauncher(isolation="namespace").from_cache and calls == []


@pytest.mark.parametrize("content", [
    b"", b"not json", b"\xff\xfe", b"[]", b'{"version": 1, "works": []}', b'{"version": 99, "works": {}}',
    b'{"version": 1, "works": {"x": "sandbox", "y": "vm", "z": 3}}',
])
def test_a_corrupt_or_foreign_cache_means_probing(cache: Path, monkeypatch: pytest.MonkeyPatch, content: bytes):
    expected = fresh_level()
    cache.write_bytes(content)
    calls = counting_probes(monkeypatch)
    launcher = LocalKernelLauncher()
    assert launcher.level == expected and not launcher.from_cache
    assert calls, "nothing was probed"
    assert json.loads(cache.read_text())["version"] == 1  # rewritten whole


def test_a_remembered_weaker_level_never_replaces_a_stronger_one(cache: Path, monkeypatch: pytest.MonkeyPatch):
    expected = fresh_level()
    if expected == "process":
        pytest.skip("no level stronger than process works here")
    probe = LocalKernelLauncher(isolation="process")
    # every weaker level (and made-up keys) remembered as working: auto still takes the strongest
    works = {probe._level_key(level): level for level in ("namespace", "process")}
    works["0" * 64] = "process"
    cache.write_text(json.dumps({"version": 1, "works": works}))
    assert LocalKernelLauncher().level == expected


def test_a_remembered_level_is_forgotten_when_its_wrapper_changes(cache: Path, monkeypatch: pytest.MonkeyPatch):
    if fresh_level() != "sandbox":
        pytest.skip("bubblewrap does not work here")
    assert LocalKernelLauncher().level == "sandbox"  # remembered now
    real_which = kernel_mod.shutil.which
    monkeypatch.setattr(kernel_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    launcher = LocalKernelLauncher()
    assert launcher.level != "sandbox" and "sandbox" in launcher.unavailable
    with pytest.raises(GraderError, match="not available"):
        LocalKernelLauncher(isolation="sandbox")


def test_a_remembered_level_that_no_longer_starts_is_probed_again(cache: Path, monkeypatch: pytest.MonkeyPatch):
    # The cache says the sandbox works, but it no longer does (same key: e.g. a policy changed):
    # the first kernel fails to start, the levels are probed again, the run takes the next level.
    if fresh_level() != "sandbox":
        pytest.skip("bubblewrap does not work here")
    # (the kernel's Python is the assignment's environment's: levels are remembered per Python)
    python = ensure_assignment_env(find_assignment("sigmoid-2-3-1")).python
    LocalKernelLauncher(python=python)  # probed and remembered
    launcher = LocalKernelLauncher(python=python)
    assert launcher.level == "sandbox" and launcher.from_cache
    real_works, real_argv = kernel_mod._works, LocalKernelLauncher.argv

    def works(argv: tuple[str, ...]) -> tuple[bool, str]:
        if any(a.endswith("/bwrap") for a in argv):
            return False, "bwrap: setting up uid map: Permission denied"
        return real_works(argv)

    def argv(self: LocalKernelLauncher, *args: object, **kwargs: object) -> list[str]:
        if self.level == "sandbox":
            return [sys.executable, "-c", "import sys; sys.exit('bwrap: setting up uid map: Permission denied')"]
        return real_argv(self, *args, **kwargs)

    monkeypatch.setattr(kernel_mod, "_works", works)
    monkeypatch.setattr(LocalKernelLauncher, "argv", argv)
    r = grade_notebook(SOLUTION, "sigmoid-2-3-1", seed=5, launcher=launcher)
    assert r.status == "graded" and r.score == r.max_score
    iso = r.execution.isolation
    assert iso["level"] != "sandbox" and "Permission denied" in iso["unavailable"]["sandbox"]
    assert launcher._level_key("sandbox") not in json.loads(cache.read_text())["works"]


def test_a_failing_start_with_a_probed_level_is_not_retried(cache: Path, monkeypatch: pytest.MonkeyPatch):
    launcher = LocalKernelLauncher()
    launcher._forget(launcher.level)
    launcher = LocalKernelLauncher()
    assert not launcher.from_cache
    monkeypatch.setattr(LocalKernelLauncher, "argv", lambda self, *a, **k: [sys.executable, "-c", "raise SystemExit(1)"])
    assert launcher.recheck() is False
    r = grade_notebook(SOLUTION, "sigmoid-2-3-1", seed=5, launcher=launcher)
    assert r.status == "error" and "could not start a Python kernel" in r.error


def test_an_unwritable_cache_folder_only_means_probing_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(LEVEL_CACHE_ENV, str(blocker / "cache"))
    real = kernel_mod._works
    real.cache_clear()
    try:
        calls = counting_probes(monkeypatch)
        a, b = LocalKernelLauncher(), LocalKernelLauncher()
        assert a.level == b.level and not b.from_cache and calls
    finally:
        real.cache_clear()


def test_a_kernel_interpreters_folders_are_asked_once_and_asked_again_when_its_venv_changes(
        cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from grader.kernels import isolation

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    python = str(venv / "bin" / "python")
    asked: list[list[str]] = []
    real_run = isolation.subprocess.run

    def run(argv, **kwargs):
        asked.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(isolation.subprocess, "run", run)
    first = isolation.interpreter_dirs.__wrapped__(python)
    assert len(asked) == 1 and str(venv) in first  # the venv's own prefix, as the interpreter says
    assert (cache.parent / "pythons.json").is_file()
    assert isolation.interpreter_dirs.__wrapped__(python) == first and len(asked) == 1  # remembered
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\ninclude-system-site-packages = true\n")
    rebuilt = isolation.interpreter_dirs.__wrapped__(python)
    assert len(asked) == 2  # rebuilt: asked again
    (cache.parent / "pythons.json").write_text("{not json")
    assert isolation.interpreter_dirs.__wrapped__(python) == rebuilt and len(asked) == 3  # unreadable: asked
