"""Kernel environments: the Python environment a submission's kernel runs from.

Each assignment names its kernel's packages as pip requirement strings (`[environment]` in
`assignment.toml`), on top of a default set that course notebooks import. Each distinct set
is built once (with uv when it is installed, else `python -m venv` and pip), under the
user's cache folder (or `$GRADER_ENV_DIR`), keyed by a hash of the requirements and the
Python, and reused from then on without the network. Builds are locked, and made in a
temporary folder renamed into place when complete, so two graders building the same
environment at once end with one good environment.

A build installs binary wheels only unless source builds are allowed (a requirement that
would compile is one line at once, not minutes of compiling), is stopped at its time limit
with nothing kept, and tells a reporter what it does as it goes (`report_builds`; the
commands show it on stderr, see env_progress.py).

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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignment.requirements import (
    EnvBuildError,
    requirement_names,
    resolve_requirements,
)
from grader.errors import GraderError
from grader.kernels import env_errors
from grader.options import user_cache_dir

# What course notebooks import, and the kernel itself; never torch, jax or tensorflow.
ENV_DIR_VARIABLE = "GRADER_ENV_DIR"
MANIFEST = "grader-env.json"
# Bumped when the layout of a built environment changes: old ones are then rebuilt.
LAYOUT = 2
# A build's time limit (seconds), whole: creating, installing, checking.
BUILD_TIME_LIMIT_S = 900.0
TIME_LIMIT_VARIABLE = "NNGRADER_ENV_BUILD_TIMEOUT"
# Set to 1: requirements without a binary wheel are built from source (slow: a compiler, minutes).
SOURCE_BUILDS_VARIABLE = "NNGRADER_ALLOW_SOURCE_BUILDS"
TICK_S = 0.5  # how often a running build tells its reporter how long it has taken


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
def _locked(root: Path, key: str, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the build lock of one environment (released if the process dies); `waiting()` is
    called every TICK_S while another process holds it."""
    with open(root / f".{key}.lock", "a") as f:
        if waiting is None:
            fcntl.flock(f, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waiting()
                    time.sleep(TICK_S)
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


@dataclass(frozen=True)
class BuildEvent:
    """What a build is doing, for whoever shows it (kernels/env_progress.py on the command line).

    `state`: "wait" (another grader is building it), "start", "step" (a new `step`), "tick"
    (every TICK_S while a step runs), "done" or "failed". `title` names the environment
    ("the kernel environment for assignment X (numpy, scipy, ... 6 packages)"), `step` says
    what it does now, `elapsed` the seconds since this process began waiting for or building it.
    """

    state: str
    title: str
    step: str
    elapsed: float


BuildReporter = Callable[[BuildEvent], None]
_reporter: BuildReporter | None = None  # the process's reporter (`report_builds`)


@contextlib.contextmanager
def report_builds(reporter: BuildReporter | None) -> Iterator[None]:
    """Tell `reporter` about every build in this process while the block runs (the commands
    install one that shows them on stderr; without one, builds are silent)."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


def build_reporter() -> BuildReporter | None:
    """The reporter report_builds installed (None: silent); other long preparations tell it too."""
    return _reporter


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise GraderError(f"${name} is {value!r}: set it to 1 or 0")


def source_builds_allowed() -> bool:
    """Whether $NNGRADER_ALLOW_SOURCE_BUILDS allows building requirements from source."""
    return _flag(SOURCE_BUILDS_VARIABLE)


def build_time_limit() -> float:
    """A build's time limit in seconds: $NNGRADER_ENV_BUILD_TIMEOUT, else BUILD_TIME_LIMIT_S."""
    text = os.environ.get(TIME_LIMIT_VARIABLE, "").strip()
    if not text:
        return BUILD_TIME_LIMIT_S
    try:
        limit = float(text)
    except ValueError:
        limit = float("nan")
    if not 0 < limit < float("inf"):
        raise GraderError(f"${TIME_LIMIT_VARIABLE} is {text!r}: set it to a number of seconds above 0")
    return limit


class _Progress:
    """One build's reports to the reporter (none: silent); a reporter's failure never fails the build."""

    def __init__(self, reporter: BuildReporter | None, title: str):
        self.reporter, self.title = reporter, title
        self.started = time.monotonic()
        self.step = ""
        self.waited = False

    def __call__(self, state: str, step: str | None = None) -> None:
        if step is not None:
            self.step = step
        self.waited |= state == "wait"
        if self.reporter is not None:
            with contextlib.suppress(Exception):  # (a closed stderr: the build goes on)
                self.reporter(BuildEvent(state, self.title, self.step, time.monotonic() - self.started))


def _title(what: str, requirements: tuple[str, ...], declared: Iterable[str]) -> str:
    """ "the kernel environment for assignment X (numpy<2, ipykernel, matplotlib, ... 6 packages)":
    the declared requirements first."""
    declared = set(requirement_names(declared))
    names = requirement_names(requirements)
    order = sorted(range(len(requirements)), key=lambda i: names[i] not in declared)
    shown = [requirements[i] for i in order[:3]]
    more = f", ... {len(requirements)} packages" if len(requirements) > 3 else ""
    return f"the kernel environment{f' for {what}' if what else ''} ({', '.join(shown)}{more})"


def ensure_env(packages: Iterable[str] = (), include_default: bool = True, python: str | None = None,
               what: str = "", *, allow_source_builds: bool | None = None, time_limit: float | None = None,
               reporter: BuildReporter | None = None) -> KernelEnv:
    """The environment for an assignment's packages, built now if it is not built yet.

    `what` names whose environment it is in errors ("assignment sigmoid-2-3-1").
    `allow_source_builds` (default: $NNGRADER_ALLOW_SOURCE_BUILDS) lets the installer compile
    requirements that have no binary wheel; `time_limit` (default: $NNGRADER_ENV_BUILD_TIMEOUT,
    else 15 minutes) bounds the build; `reporter` (default: the one `report_builds` installed)
    is told what the build does as it goes.
    """
    from grader.kernels.tracking import interrupted, live_roots, track

    packages = list(packages)
    requirements = resolve_requirements(packages, include_default)
    python = os.path.realpath(python or base_python())
    key = env_key(requirements, python)
    root = env_root()
    final = root / key
    env = _load(final)
    if env is not None:  # built: no lock, no network
        return env
    allow = source_builds_allowed() if allow_source_builds is None else allow_source_builds
    limit = build_time_limit() if time_limit is None else time_limit
    _make_root(root)
    progress = _Progress(reporter or _reporter, _title(what, requirements, packages))
    with _locked(root, key, waiting=lambda: progress("wait", "waiting for another grader building it")):
        env = _load(final)  # another grader may have built it while this one waited
        if env is not None:
            if progress.waited:
                progress("done", "built by another grader")
            return env
        _remove_partial(root, key)
        progress("start", "starting")
        bound = _Limit(what, limit, time.monotonic() + limit, progress, interrupted())
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        track(live_roots, tmp)  # an interrupted grader removes it on its way out
        try:
            _build(tmp, requirements, python, bound, allow)
            names = ["numpy", *(n for n in requirement_names(packages) if n != "numpy")]
            progress("step", "checking the installed versions")
            manifest = {"key": key, "requirements": list(requirements), "python": _python_version(python),
                        "base_python": python, "packages": _versions(tmp, names, bound), "created": time.time()}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _open_to_all(tmp)
            os.rename(tmp, final)  # atomic: another grader sees no environment or a complete one
        except BaseException as e:
            from grader.kernels.users import remove_tree

            remove_tree(tmp)
            progress("failed", None if isinstance(e, Exception) and not isinstance(e, _Interrupted) else "interrupted")
            raise
        finally:
            track(live_roots, tmp, remove=True)
    env = _load(final)
    if env is None:
        progress("failed")
        raise EnvBuildError(f"the kernel environment {key} was built but cannot be used")
    progress("done", "built")
    return env


def _remove_partial(root: Path, key: str) -> None:
    """What killed builds of this environment left (under its lock, so none is running):
    an incomplete environment (killed mid-rename) and temporary build folders."""
    from grader.kernels.users import remove_tree

    for p in [root / key, *root.glob(f".build-{key}-*")]:
        if os.path.lexists(p):
            remove_tree(p)


class _Interrupted(EnvBuildError):
    """The grader was told to stop (Ctrl-C, SIGTERM) while a worker thread built an environment."""


@dataclass
class _Limit:
    """A build's time limit: its deadline, and whose build it is for the message."""

    what: str
    seconds: float
    deadline: float
    progress: _Progress
    interrupted_before: bool = False


def _uv() -> str | None:
    """The uv executable, if installed (the `uv` package, or on PATH)."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return find_uv_bin()
    return shutil.which("uv")


def _build(target: Path, requirements: tuple[str, ...], python: str, limit: _Limit, allow_source: bool) -> None:
    """Make a virtual environment at `target` holding `requirements` (EnvBuildError if it fails)."""
    uv = _uv()
    # binary wheels only, unless allowed: a requirement that would compile fails at once
    binary = [] if allow_source else ["--only-binary", ":all:"]
    installing = f"installing {len(requirements)} packages" + (" (source builds allowed)" if allow_source else "")
    if uv is not None:
        steps = [("creating the virtual environment",
                  [uv, "venv", "--quiet", "--relocatable", "--allow-existing", "--python", python, str(target)]),
                 # compiled now: a kernel cannot write bytecode, and would compile numpy at every start
                 (installing, [uv, "pip", "install", "--quiet", "--compile-bytecode", *binary,
                               "--python", str(target / "bin" / "python"), *requirements])]
    else:
        steps = [("creating the virtual environment", [python, "-m", "venv", "--clear", str(target)]),
                 (installing, [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", "--no-input", *binary, *requirements])]
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)  # uv would install into the grader's own environment
    env.pop("PYTHONPATH", None)
    env.setdefault("UV_NATIVE_TLS", "1")  # the system's certificates, as pip uses (a proxy's CA too)
    for step, argv in steps:
        limit.progress("step", step)
        code, out, err = _run(argv, env, limit, requirements)
        if code != 0:
            raise EnvBuildError(env_errors.failure(limit.what, requirements, err or out, _python_version(python),
                                                   binary_only=not allow_source))


def _run(argv: list[str], env: dict[str, str] | None, limit: _Limit,
         requirements: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """Run one step of a build: (exit code, stdout, stderr). It runs in a session of its own, so
    everything it starts (a compiler) is killed with it, at the time limit, on an exception
    (Ctrl-C) or by the grader's cleanup at exit; EnvBuildError at the time limit."""
    from grader.kernels.tracking import interrupted, live_kernels, track
    from grader.kernels.users import kill_tree

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                    start_new_session=True)
        except OSError as e:
            raise EnvBuildError(env_errors.failure(limit.what, requirements, f"cannot run {argv[0]} ({e.strerror or e})")) from None
        track(live_kernels, proc.pid, proc.pid)
        try:
            while True:
                left = limit.deadline - time.monotonic()
                if left <= 0:
                    raise EnvBuildError(env_errors.timed_out(limit.what, limit.seconds, limit.progress.step))
                # Ctrl-C or SIGTERM while `grade` builds in a worker thread (in the main thread,
                # it is a KeyboardInterrupt): a flag left set before the build began is not one
                if interrupted() and not limit.interrupted_before:
                    raise _Interrupted(f"the build of the kernel environment{f' for {limit.what}' if limit.what else ''} "
                                       "was interrupted")
                try:
                    proc.wait(timeout=min(TICK_S, left))
                    break
                except subprocess.TimeoutExpired:
                    limit.progress("tick")
        finally:
            if proc.returncode is None:
                kill_tree(proc.pid, proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            track(live_kernels, proc.pid, remove=True)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


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


def _versions(env: Path, names: list[str], limit: _Limit) -> dict[str, str]:
    """The installed versions of `names` in the environment at `env`."""
    code, out, err = _run([str(env / "bin" / "python"), "-I", "-c", _VERSIONS, *names], None, limit)
    if code != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        raise EnvBuildError(f"the new kernel environment's Python does not run: {env_errors.clip(last, 200)}")
    return {k: v for k, v in json.loads(out).items() if v is not None}


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


def ensure_assignment_env(asg: object, *, allow_source_builds: bool | None = None,
                          time_limit: float | None = None) -> KernelEnv:
    """The kernel environment an assignment declares (see `Environment` in grader/assignment/tables.py),
    built if needed; its spec's `allow_source_builds = true` allows source builds too."""
    spec_env = asg.spec.environment  # type: ignore[attr-defined]
    if allow_source_builds is None and spec_env.allow_source_builds:
        allow_source_builds = True
    return ensure_env(spec_env.packages, spec_env.include_default, what=f"assignment {asg.id}",  # type: ignore[attr-defined]
                      allow_source_builds=allow_source_builds, time_limit=time_limit)


def assignment_env_key(asg: object) -> str:
    """The hash naming the kernel environment an assignment declares (built or not): what a CI
    cache of the environments is keyed by."""
    spec_env = asg.spec.environment  # type: ignore[attr-defined]
    return env_key(resolve_requirements(spec_env.packages, spec_env.include_default))
