"""What a kernel can reach: the network, the environment, files outside its folder, the report."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from grader.errors import GraderError
from grader.grading.grade import grade_notebook
from grader.kernels import launch as kernel_mod
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.workspace import Workspace, make_workspace
from grader.options import ISOLATION_LEVELS

from .helpers import (
    ADVERSARIAL,
    ASSIGNMENT,
    ROOT,
    assert_no_unearned_credit,
    clean_env,
    passed,
    report_json,
    run_grade,
)

FAKE_AWS = "wJalrXUtnFEMI-fake-aws-secret-0123456789"
FAKE_GH = "ghp_fakefakefakefakefakefakefakefake0123"


def available_levels() -> list[str]:
    """Isolation levels that work on this machine."""
    out = []
    for level in ISOLATION_LEVELS:
        try:
            LocalKernelLauncher(isolation=level)
        except GraderError:
            continue
        out.append(level)
    return out


def message(report, target: str) -> str:
    return next(c.message for c in report.checks if c.target == target)


@pytest.mark.parametrize("level", available_levels())
def test_network_is_unreachable_where_the_level_promises_it(level: str, tmp_path: Path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    nb = tmp_path / "network.ipynb"
    shutil.copyfile(ADVERSARIAL / "network.ipynb", nb)
    (tmp_path / "port.txt").write_text(str(server.getsockname()[1]))
    try:
        r = grade_notebook(nb, ASSIGNMENT, seed=1, launcher=LocalKernelLauncher(isolation=level))
        try:
            conn, _ = server.accept()
            conn.close()
            reached = True
        except OSError:
            reached = False
    finally:
        server.close()
    iso = r.execution.isolation
    assert iso["level"] == level
    if level in ("sandbox", "namespace"):
        assert iso["network"].startswith("none")
        assert not reached
        assert "network=refused" in message(r, "sigmoid_derivative")
    else:  # the report must not pretend
        assert iso["network"].startswith("NOT isolated")
        assert reached
        assert "network=connected" in message(r, "sigmoid_derivative")
    assert_no_unearned_credit(r, {"sigmoid"})


def test_secrets_in_the_graders_environment_do_not_reach_the_kernel(tmp_path: Path):
    out = tmp_path / "report.json"
    env = clean_env(AWS_SECRET_ACCESS_KEY=FAKE_AWS, GITHUB_TOKEN=FAKE_GH, CI="true")
    result, _ = run_grade([str(ADVERSARIAL / "env_snooping.ipynb"), "--format", "json", "-o", str(out)], env=env)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert FAKE_AWS not in text and FAKE_GH not in text
    d = report_json(out)
    leak = next(c["message"] for c in d["checks"] if c["target"] == "sigmoid_derivative")
    if d["execution"]["isolation"]["level"] != "process":  # a process-level kernel may read /proc/<ppid>/environ
        assert "env=[]" in leak


def test_kernel_environment_is_minimal(tmp_path: Path):
    (tmp_path / "ws").mkdir()
    ws = Workspace(tmp_path / "ws")
    try:
        env = LocalKernelLauncher(isolation="process").kernel_env(ws)
    finally:
        ws.cleanup()
    assert not {k for k in env if any(w in k for w in ("TOKEN", "SECRET", "AWS", "GITHUB", "KEY", "PASSWORD"))}
    assert env["HOME"] == str(ws.work)


def test_sandbox_cannot_read_the_reference_or_the_grader():
    if "sandbox" not in available_levels():
        pytest.skip("bubblewrap is not available here")
    r = grade_notebook(ADVERSARIAL / "read_outside.ipynb", ASSIGNMENT, seed=1,
                       launcher=LocalKernelLauncher(isolation="sandbox"))
    assert "leak: reference=[] grader=None" in message(r, "sigmoid_derivative")
    assert "forward" not in passed(r)
    assert "own view" in r.execution.isolation["filesystem"]


def test_weaker_levels_say_the_filesystem_is_readable():
    for level in set(available_levels()) - {"sandbox"}:
        d = LocalKernelLauncher(isolation=level).describe()
        assert "readable" in d["filesystem"]


def test_forged_reports_and_answers_earn_nothing(tmp_path: Path):
    out = tmp_path / "out" / "report.json"
    forged = Path("/tmp/nngrader-forged-report.json")
    existed = forged.exists()
    result, _ = run_grade([str(ADVERSARIAL / "forge_results.ipynb"), "--format", "json", "-o", str(out)],
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the kernel never writes to the grader's stdout
    assert "11.0" not in result.stderr and "Score: 11/11" not in result.stderr
    d = report_json(out)
    assert d["score"] == 1.0
    assert {c["target"] for c in d["checks"] if c["status"] == "pass"} == {"sigmoid"}
    assert "probe_tampered" in {f["code"] for f in d["flags"]}
    assert not (tmp_path / "report.json").exists()
    if d["execution"]["isolation"]["level"] == "sandbox":
        assert existed or not forged.exists()  # its /tmp is private
    elif forged.exists() and not existed:
        forged.unlink()


def test_missing_wrapper_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kernel_mod.shutil, "which", lambda name: None)
    kernel_mod._works.cache_clear()
    try:
        launcher = LocalKernelLauncher()
        d = launcher.describe()
        assert d["level"] == "process"
        assert set(d["unavailable"]) == {"sandbox", "namespace"}
        assert d["network"].startswith("NOT isolated")
        with pytest.raises(GraderError, match="not available"):
            LocalKernelLauncher(isolation="sandbox")
    finally:
        kernel_mod._works.cache_clear()


def test_unknown_isolation_level_is_a_clear_error():
    with pytest.raises(GraderError, match="unknown isolation level"):
        LocalKernelLauncher(isolation="vm")


def test_workspace_holds_only_the_submission_and_its_files(tmp_path: Path):
    nb = tmp_path / "sub.ipynb"
    shutil.copyfile(ADVERSARIAL / "network.ipynb", nb)
    (tmp_path / "data.csv").write_text("1,2\n")
    (tmp_path / "secret.key").write_text("not for the kernel")
    ws = make_workspace(nb)
    try:
        assert sorted(p.name for p in ws.work.iterdir()) == ["data.csv", "sub.ipynb"]
    finally:
        ws.cleanup()
    assert not ws.root.exists()


def test_without_bubblewrap_the_namespace_level_is_next(monkeypatch: pytest.MonkeyPatch):
    real_which = shutil.which
    monkeypatch.setattr(kernel_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    kernel_mod._works.cache_clear()
    try:
        if not kernel_mod._works((*LocalKernelLauncher(isolation="process")._wrapper("namespace", probe=True),
                                  "/bin/true"))[0]:
            pytest.skip("unshare cannot make namespaces here")
        d = LocalKernelLauncher().describe()
        assert d["level"] == "namespace" and list(d["unavailable"]) == ["sandbox"]
        assert d["network"].startswith("none")
    finally:
        kernel_mod._works.cache_clear()


def test_without_a_cgroup_the_report_says_how_memory_and_processes_are_limited():
    d = LocalKernelLauncher(cgroup=False).describe()
    assert d["memory_limit"].startswith("per process (RLIMIT_AS 2048 MB)")
    if os.geteuid() == 0:  # the kernel runs as a user of its own, which RLIMIT_NPROC binds
        assert d["process_limit"] == "RLIMIT_NPROC: 256 processes of the kernel's own user"
    else:
        assert d["process_limit"].startswith("RLIMIT_NPROC")


def test_weakest_setup_still_grades_and_says_so():
    from .helpers import ROOT

    launcher = LocalKernelLauncher(isolation="process", cgroup=False)
    r = grade_notebook(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb", ASSIGNMENT, seed=3, launcher=launcher)
    assert r.score == r.max_score
    iso = r.execution.isolation
    assert iso["level"] == "process" and iso["network"].startswith("NOT isolated")
    assert "no cgroup (not requested)" in iso["memory_limit"]


class _GraderInEnvironment(LocalKernelLauncher):
    """As if the grader, its references and assignments were installed in the kernel's environment."""

    def _python_dirs(self) -> list[str]:
        return [*super()._python_dirs(), str(ROOT)]


def _leak(monkeypatch: pytest.MonkeyPatch, hide: bool) -> str:
    import grader.kernels.isolation

    if not hide:
        monkeypatch.setattr(grader.kernels.isolation, "grader_dirs", lambda visible: [])
    r = grade_notebook(ADVERSARIAL / "read_installed_grader.ipynb", ASSIGNMENT, seed=1,
                       launcher=_GraderInEnvironment(isolation="sandbox"))
    return message(r, "sigmoid_derivative")


def test_sandbox_hides_the_grader_installed_in_the_kernels_environment(monkeypatch):
    if "sandbox" not in available_levels():
        pytest.skip("bubblewrap is not available here")
    assert "leak: [] readable=0" in _leak(monkeypatch, hide=True)
    # the same environment without the grader's folders hidden: the attack finds all three
    assert "leak: ['assignments', 'grader', 'reference'] readable=" in _leak(monkeypatch, hide=False)
