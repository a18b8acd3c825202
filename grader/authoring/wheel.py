"""This grader as a wheel, built from its source tree, for the Gradescope bundle to carry.

nngrader is not on the package index: the bundle installs the very code that made it. The
wheel is built from a copy of the project (so the checkout gets no `build/` or `.egg-info`),
with the setuptools already installed when it is recent enough (no network), else in pip's
usual isolated build environment. The shipped assignments' notebooks (solutions, starters)
are left out of the copy, so the wheel, like the rest of the bundle, holds no notebook that a
submission could reach in the image. A grader installed from a wheel has no source tree to
build from; then the instructor names the grader to install (`--grader`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

from grader.errors import GraderError

NO_SOURCE = ("this grader is installed without its source tree, so its wheel cannot be built: pass --grader "
             "with a requirement (e.g. 'nngrader @ git+https://github.com/course/nngrader@v0.1.0') or a wheel path")

# not copied into the build: version control, environments, caches, earlier builds and notebooks
_SKIP_ANYWHERE = shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "*.pyc", "*.ipynb", ".pytest_cache",
                                        ".ruff_cache", ".hypothesis", ".mypy_cache")
_SKIP_AT_TOP = {".venv", "venv", "build", "dist", "out"}


def project_root() -> Path | None:
    """The folder holding this grader's pyproject.toml, or None when installed from a wheel."""
    root = Path(__file__).resolve().parents[2]  # grader/authoring/wheel.py
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"nngrader"', text, re.M) else None


def _setuptools_fits() -> bool:
    """Whether the installed setuptools meets the project's build requirement (setuptools>=77)."""
    try:
        import setuptools
        from packaging.version import Version
    except ImportError:
        return False
    return Version(setuptools.__version__) >= Version("77")


def _build_command(source: Path, out: Path) -> list[str]:
    if find_spec("build") is not None:
        cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out)]
        return cmd + (["--no-isolation"] if _setuptools_fits() else []) + [str(source)]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out)]
    return cmd + (["--no-build-isolation"] if _setuptools_fits() else []) + [str(source)]


def build_wheel() -> tuple[str, bytes]:
    """(file name, contents) of this grader's wheel, built now from its source tree, without notebooks."""
    root = project_root()
    if root is None:
        raise GraderError(NO_SOURCE)
    with tempfile.TemporaryDirectory(prefix="nngrader-wheel-") as tmp:
        source, out = Path(tmp) / "source", Path(tmp) / "dist"
        def skip(folder: str, names: list[str]) -> set[str]:
            top = _SKIP_AT_TOP if Path(folder) == root else set()
            return set(_SKIP_ANYWHERE(folder, names)) | (top & set(names))

        shutil.copytree(root, source, ignore=skip, symlinks=True)
        try:
            p = subprocess.run(_build_command(source, out), capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GraderError(f"cannot build the grader's wheel from {root}: {e}") from None
        wheels = sorted(out.glob("nngrader-*.whl"))
        if p.returncode != 0 or len(wheels) != 1:
            last = next((line for line in reversed((p.stderr or p.stdout).splitlines()) if line.strip()), "no wheel")
            raise GraderError(f"cannot build the grader's wheel from {root}: {last.strip()}")
        return wheels[0].name, wheels[0].read_bytes()


def read_wheel(path: Path) -> tuple[str, bytes]:
    """(file name, contents) of a wheel the instructor named with --grader."""
    try:
        return path.name, path.read_bytes()
    except OSError as e:
        raise GraderError(f"cannot read the grader wheel {path}: {e.strerror or e}") from None
