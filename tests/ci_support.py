"""Running the `grade` command and the CI templates the way a CI host would, on this checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import xmlschema

from tests.conftest import ROOT

SCHEMAS = ROOT / "tests" / "schemas"
JUNIT_XSD = SCHEMAS / "junit.xsd"
GRADESCOPE_SCHEMA = SCHEMAS / "gradescope-results.schema.json"
# what the grader's own workflow commands look like: nothing else may reach a runner
OWN_COMMAND = re.compile(r"^::(error|warning|notice) (file=[^:,]*,)?title=[^:,]*::[^\r\n]*$")
# a JUnit testcase's points: the first line of its system-out, `points: 0/1` (a penalty's `points: -5.5`)
POINTS = re.compile(r"\Apoints: (-?[0-9.]+)(?:/([0-9.]+))?$", re.M)


def grade_bin(tmp: Path) -> Path:
    """A folder holding a `grade` executable that runs this checkout's grader (to put first on PATH)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "grade"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m grader.cli "$@"\n')
    exe.chmod(0o755)
    return bin_dir


def ci_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A CI job's environment: this checkout's `grade` (and python3) first on PATH, no GitHub variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "GRADER_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{grade_bin(tmp)}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_grade(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def junit_checks(xml_text: str) -> tuple[dict[str, str], list[tuple[str, float, bool]]]:
    """Validate JUnit XML against the schema; (suite properties, [(testcase name, points, failed)]).

    A testcase's points are read from its system-out (`points: 0/1`), never from its name.
    """
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(xml_text)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml_text)
    suite = root.find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    cases = []
    for case in suite.findall("testcase"):
        m = POINTS.search(case.findtext("system-out") or "")
        points = float(m.group(1)) if m else 0.0
        failed = case.find("failure") is not None or case.find("error") is not None
        cases.append((case.get("name"), points, failed))
    assert int(suite.get("tests")) == len(cases)
    return props, cases


def gradescope_results(text: str) -> dict:
    """Parse results.json and validate it against the schema of Gradescope's specification."""
    import jsonschema

    data = json.loads(text)
    jsonschema.validate(data, json.loads(GRADESCOPE_SCHEMA.read_text()))
    return data


def copy_notebook(src: Path, folder: Path, name: str = "submission.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / name))


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The `grade` command in this process (for commands that start no kernel): exit code, stdout, stderr."""
    from click.testing import CliRunner

    from grader.cli import main

    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def seed_envs(dest: Path) -> bool:
    """Put the default kernel environment already built on this machine into `dest`, as a CI cache
    restores it (hard links where they can be made: instant, no space). False if there is none."""
    from grader.kernels.envs import env_key, env_root, resolve_requirements

    key = env_key(resolve_requirements())
    src = env_root() / key
    if not (src / "grader-env.json").is_file():
        return False

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest / key, symlinks=True, copy_function=link)
    return True


_EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def github_expand(value: str, context: dict[str, str]) -> str:
    """A step's value with its `${{ name }}` expressions (plain context names only) replaced."""
    return _EXPRESSION.sub(lambda m: context[m.group(1)], value)


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def gitlab_variables(variables: dict[str, object], **predefined: str) -> dict[str, str]:
    """A GitLab job's variables as the runner expands them: `$NAME` and `${NAME}` from the
    predefined variables and the variables above."""
    out: dict[str, str] = dict(predefined)
    for name, value in variables.items():
        out[name] = _VARIABLE.sub(lambda m: out.get(m.group(1) or m.group(2), ""), str(value))
    return {k: v for k, v in out.items() if k not in predefined}
