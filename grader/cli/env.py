"""`grade env build|key|list|prune`: the kernel environments, built ahead of time, shown and cleared."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from grader.options import Seconds


def _summary(env: object) -> str:
    e = env  # a KernelEnv
    versions = ", ".join(f"{k} {v}" for k, v in e.packages.items())  # type: ignore[attr-defined]
    return f"{e.key} (Python {e.python_version}; {versions}) at {e.path}"  # type: ignore[attr-defined]


def _fail(message: str) -> None:
    from grader.inert import inert

    click.echo(f"grade: error: {inert(message, 1000)}", err=True)
    sys.exit(2)


def _used_by() -> dict[str, list[str]]:
    """Environment hash -> the known assignments that use it (the default environment: "(default)")."""
    from grader.assignment.load import known_assignments, load_spec
    from grader.errors import GraderError
    from grader.kernels.envs import env_key, resolve_requirements

    out: dict[str, list[str]] = {env_key(resolve_requirements()): ["(default)"]}
    for name, folder in known_assignments().items():
        try:
            e = load_spec(folder).spec.environment
            out.setdefault(env_key(resolve_requirements(e.packages, e.include_default)), []).append(name)
        except GraderError:
            continue
    return out


def showing_builds(quiet: bool = False) -> contextlib.AbstractContextManager[None]:
    """While the block runs, a kernel environment being built shows on stderr what it does and
    for how long (a line updated in place on a terminal, plain lines elsewhere); `quiet`: silent."""
    from grader.kernels.env_progress import EnvProgress
    from grader.kernels.envs import report_builds

    return report_builds(None if quiet else EnvProgress())


@click.group("env")
def env_group() -> None:
    """The Python environments kernels run in: one per distinct package list, built once."""


@env_group.command("build")
@click.argument("assignments", nargs=-1)
@click.option("--default", "default", is_flag=True, help="Build the default environment.")
@click.option("--allow-source-builds", is_flag=True,
              help="Build requirements that have no binary wheel from source (slow: a compiler, "
                   "often minutes). Default: binary wheels only ($NNGRADER_ALLOW_SOURCE_BUILDS=1 "
                   "allows them too).")
@click.option("--time-limit", type=Seconds(1), default=None,
              help="Seconds a build may take (default: $NNGRADER_ENV_BUILD_TIMEOUT, else 900).")
def build_cmd(assignments: tuple[str, ...], default: bool, allow_source_builds: bool,
              time_limit: float | None) -> None:
    """Build the environments of these assignments (ids or folders) now, for offline grading."""
    from grader.assignment.load import find_assignment
    from grader.errors import GraderError
    from grader.kernels.envs import ensure_assignment_env, ensure_env

    if not assignments and not default:
        _fail("name at least one assignment, or --default (see 'grade env build --help')")
    allow = True if allow_source_builds else None  # (else the variable, or the spec, decides)
    try:
        with showing_builds():
            if default:
                env = ensure_env(what="the default environment", allow_source_builds=allow, time_limit=time_limit)
                click.echo(f"default: {_summary(env)}")
            for name in assignments:
                asg = find_assignment(name)
                env = ensure_assignment_env(asg, allow_source_builds=allow, time_limit=time_limit)
                click.echo(f"{asg.id}: {_summary(env)}")
    except GraderError as e:
        _fail(str(e))


@env_group.command("key")
@click.argument("notebook", required=False, type=click.Path(path_type=Path))
@click.option("--assignment", "-a", default="", help="Assignment id or folder (default: the notebook's metadata).")
def key_cmd(notebook: Path | None, assignment: str) -> None:
    """Print the hash of the environment an assignment's kernels run in (its requirements, this
    Python, this platform), built or not: a key for caching the environments in CI."""
    from grader.assignment.load import find_assignment, find_known_assignment
    from grader.errors import GraderError
    from grader.kernels.envs import assignment_env_key
    from grader.submission.notebook import read_submission

    try:
        if assignment:
            asg = find_assignment(assignment)
        elif notebook is not None:
            declared = read_submission(notebook).declared_assignment
            if declared is None:
                _fail(f"{notebook} names no assignment in its metadata; pass --assignment")
                return
            asg = find_known_assignment(declared)
        else:
            _fail("name a notebook or --assignment (see 'grade env key --help')")
            return
        click.echo(assignment_env_key(asg))
    except GraderError as e:
        _fail(str(e))


@env_group.command("list")
def list_cmd() -> None:
    """The built environments: hash, Python, versions, which assignments use them."""
    from grader.kernels.envs import env_root, list_envs

    envs = list_envs()
    if not envs:
        click.echo(f"no kernel environments in {env_root()}")
        return
    used = _used_by()
    for e in envs:
        users = ", ".join(used.get(e.key, [])) or "no known assignment"
        click.echo(f"{_summary(e)}\n    requirements: {', '.join(e.requirements)}\n    used by: {users}")


@env_group.command("prune")
@click.option("--all", "everything", is_flag=True, help="Remove every environment, in use or not.")
def prune_cmd(everything: bool) -> None:
    """Remove environments no known assignment uses (all of them with --all)."""
    from grader.kernels.envs import prune_envs

    removed = prune_envs(() if everything else _used_by())
    for p in removed:
        click.echo(f"removed {p}")
    click.echo(f"{len(removed)} removed")
