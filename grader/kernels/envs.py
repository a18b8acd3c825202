"""Kernel environments: the Python environment a submission's kernel runs from.

Each assignment names its kernel's packages as pip requirement strings (`[environment]` in
`assignment.toml`), on top of a default set that course notebooks import. Each distinct set
is built once (with uv when it is installed, else `python -m venv` and pip), under the
user's cache folder (or `$GRADER_ENV_DIR`), keyed by a hash of the requirements and the
Python, and reused from then on without the network. Builds are locked, and made in a
temporary folder renamed into place when complete, so two graders building the same
environment at once end with one good environment.

The grader's own environment (torch, the grader package, its assignments) is never one of
these: nothing of the grader is importable in a kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignment.requirements import (
    EnvBuildError,
    requirement_names,
    resolve_requirements,
)
from grader.errors import GraderError
from grader.options import user_cache_dir

# What course notebooks import, and the kernel itself; never torch, jax or tensorflow.
ENV_DIR_VARIABLE = "GRADER_ENV_DIR"
MANIFEST = "grader-env.json"
# Bumped when the layout of a built environment changes: old ones are then rebuilt.
LAYOUT = 2
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class KernelEnv:
    """A built kernel environment: where it is, its interpreter and what it holds."""

    path: Path
    key: str
    requirements: tuple[str, ...]
    python_version: str
    packages: dict[str, str] = field(default_factory=dict)  # numpy and each declared package -> version

    @property
    def python(self) -> str:
        """The interpreter the kernel runs."""
        return str(self.path / "bin" / "python")

    def describe(self) -> dict[str, object]:
        """For the report: enough to rebuild the same environment for a regrade."""
        return {"hash": self.key, "python": self.python_version, "requirements": list(self.requirements),
                "packages": dict(self.packages)}


def base_python() -> str:
    """The Python install environments are made from: the one the grader itself runs on."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _python_version(python: str) -> str:
    if os.path.realpath(python) == base_python():
        return platform.python_version()
    out = subprocess.run([python, "-I", "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def env_key(requirements: Iterable[str], python: str | None = None) -> str:
    """The hash naming an environment: its requirements, its Python and the platform."""
    python = os.path.realpath(python or base_python())
    text = json.dumps({"layout": LAYOUT, "requirements": sorted(requirements), "python": python,
                       "version": _python_version(python), "machine": platform.machine(),
                       "system": platform.system()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- where they live


def env_root() -> Path:
    """The folder that holds the built environments: $GRADER_ENV_DIR, else the user's cache."""
    override = os.environ.get(ENV_DIR_VARIABLE)
    if override:
        return Path(override).expanduser().absolute()
    base = user_cache_dir()
    if base is None:
        raise GraderError(f"no cache folder for kernel environments: set {ENV_DIR_VARIABLE}")
    return base / "envs"


def _make_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Kernels run as users of their own: they must be able to read the environments.
        os.chmod(root, 0o755)
    except OSError as e:
        raise EnvBuildError(f"cannot use {root} for kernel environments ({e.strerror or e}); "
                            f"set {ENV_DIR_VARIABLE} to a writable folder") from None


@contextlib.contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
    """Hold the build lock of one environment (released if the process dies)."""
    with open(root / f".{key}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load(path: Path) -> KernelEnv | None:
    """The environment built at `path`, or None if there is no complete one."""
    try:
        m = json.loads((path / MANIFEST).read_text())
        env = KernelEnv(path=path, key=m["key"], requirements=tuple(m["requirements"]),
                        python_version=m["python"], packages=dict(m["packages"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return env if os.path.exists(env.python) else None


def find_env(requirements: Iterable[str], python: str | None = None) -> KernelEnv | None:
    """The built environment for these requirements, if there is one (never builds)."""
    key = env_key(requirements, python)
    return _load(env_root() / key)


def list_envs() -> list[KernelEnv]:
    """Every complete environment in the cache folder."""
    root = env_root()
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [e for e in (_load(p) for p in entries) if e is not None]


def prune_envs(keep: Iterable[str] = ()) -> list[Path]:
    """Remove every environment (and leftover partial build) whose key is not in `keep`; what was removed."""
    root = env_root()
    keep = set(keep)
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for p in entries:
        if p.name.startswith(".build-") or (p.is_dir() and not p.name.startswith(".") and p.name not in keep):
            with _locked(root, p.name.split("-")[1] if p.name.startswith(".build-") else p.name):
                shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    # (lock files stay: removing one another grader holds would let two builds run at once)
    return removed


# ---------------------------------------------------------------- building


def ensure_env(packages: Iterable[str] = (), include_default: bool = True, python: str | None = None,
               what: str = "") -> KernelEnv:
    """The environment for an assignment's packages, built now if it is not built yet.

    `what` names whose environment it is in errors ("assignment sigmoid-2-3-1").
    """
    packages = list(packages)
    requirements = resolve_requirements(packages, include_default)
    python = os.path.realpath(python or base_python())
    key = env_key(requirements, python)
    root = env_root()
    final = root / key
    env = _load(final)
    if env is not None:  # built: no lock, no network
        return env
    _make_root(root)
    with _locked(root, key):
        env = _load(final)  # another grader may have built it while this one waited
        if env is not None:
            return env
        if final.exists():  # an incomplete environment left by a build that was killed mid-rename
            shutil.rmtree(final, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        try:
            _build(tmp, requirements, python, what)
            names = ["numpy", *(n for n in requirement_names(packages) if n != "numpy")]
            manifest = {"key": key, "requirements": list(requirements), "python": _python_version(python),
                        "base_python": python, "packages": _versions(tmp, names), "created": time.time()}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _open_to_all(tmp)
            os.rename(tmp, final)  # atomic: another grader sees no environment or a complete one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    env = _load(final)
    if env is None:
        raise EnvBuildError(f"the kernel environment {key} was built but cannot be used")
    return env


def _uv() -> str | None:
    """The uv executable, if installed (the `uv` package, or on PATH)."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return find_uv_bin()
    return shutil.which("uv")


def _build(target: Path, requirements: tuple[str, ...], python: str, what: str) -> None:
    """Make a virtual environment at `target` holding `requirements` (EnvBuildError if it fails)."""
    uv = _uv()
    if uv is not None:
        steps = [[uv, "venv", "--quiet", "--relocatable", "--allow-existing", "--python", python, str(target)],
                 # compiled now: a kernel cannot write bytecode, and would compile numpy at every start
                 [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(target / "bin" / "python"),
                  *requirements]]
    else:
        steps = [[python, "-m", "venv", "--clear", str(target)],
                 [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", "--no-input", *requirements]]
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)  # uv would install into the grader's own environment
    env.pop("PYTHONPATH", None)
    env.setdefault("UV_NATIVE_TLS", "1")  # the system's certificates, as pip uses (a proxy's CA too)
    for argv in steps:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=BUILD_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise EnvBuildError(_failure(what, requirements, f"timed out after {BUILD_TIMEOUT_S} s")) from None
        except OSError as e:
            raise EnvBuildError(_failure(what, requirements, f"cannot run {argv[0]} ({e.strerror or e})")) from None
        if r.returncode != 0:
            raise EnvBuildError(_failure(what, requirements, r.stderr or r.stdout))


_BOX = re.compile(r"[\u2500-\u257f\u00d7]+")  # uv's box drawing and its "x" bullet


def _failure(what: str, requirements: tuple[str, ...], output: str) -> str:
    """One line: whose environment, which requirement(s) the installer's message names, and why."""
    lines = [_BOX.sub(" ", ln).strip() for ln in output.splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(("hint:", "help:"))]
    text = " ".join(lines)
    named = [r for r in requirements if _mentions(text, requirement_names([r])[0])]
    # The requirement a resolver blames is the one it says was "not found" or has "no version".
    blamed = [r for r in named if re.search(rf"\b{re.escape(requirement_names([r])[0])}\b[^.;]*"
                                           r"(not found|no (matching )?version|no solution|does not exist)",
                                           text, re.IGNORECASE)]
    culprits = blamed or named
    which = (f"requirement {', '.join(repr(r) for r in culprits)}" if culprits
             else f"requirements {', '.join(requirements)}")
    why = re.sub(r"\s+", " ", text)[:300] or "the installer failed without a message"
    owner = f" for {what}" if what else ""
    return f"cannot build the kernel environment{owner}: {which} could not be installed: {why}"


def _mentions(text: str, name: str) -> bool:
    pattern = re.escape(name).replace(r"\-", "[-_.]")
    return re.search(rf"(?<![\w.-]){pattern}(?![\w-])", text, re.IGNORECASE) is not None


_VERSIONS = """
import json, sys
from importlib import metadata
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def _versions(env: Path, names: list[str]) -> dict[str, str]:
    """The installed versions of `names` in the environment at `env`."""
    r = subprocess.run([str(env / "bin" / "python"), "-I", "-c", _VERSIONS, *names],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise EnvBuildError(f"the new kernel environment's Python does not run: {r.stderr.strip()[-200:]}")
    return {k: v for k, v in json.loads(r.stdout).items() if v is not None}


def _open_to_all(root: Path) -> None:
    """Every file readable and every folder searchable by everyone: kernels run as users of their own."""
    for d, dirs, files in os.walk(root):
        for name in (d, *(os.path.join(d, n) for n in dirs + files)):
            with contextlib.suppress(OSError):
                st = os.lstat(name)
                if os.path.islink(name):
                    continue
                extra = 0o555 if os.path.isdir(name) or st.st_mode & 0o100 else 0o444
                if st.st_mode & extra != extra:
                    os.chmod(name, (st.st_mode | extra) & 0o7777)


def ensure_assignment_env(asg: object) -> KernelEnv:
    """The kernel environment an assignment declares (see `Environment` in grader/assignment/tables.py), built if needed."""
    spec_env = asg.spec.environment  # type: ignore[attr-defined]
    return ensure_env(spec_env.packages, spec_env.include_default, what=f"assignment {asg.id}")  # type: ignore[attr-defined]


def assignment_env_key(asg: object) -> str:
    """The hash naming the kernel environment an assignment declares (built or not): what a CI
    cache of the environments is keyed by."""
    spec_env = asg.spec.environment  # type: ignore[attr-defined]
    return env_key(resolve_requirements(spec_env.packages, spec_env.include_default))
