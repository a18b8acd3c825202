"""The `grade` command: a thin layer over the Python API.

`grade NOTEBOOK` grades one notebook (the default command); `grade list` shows the known
assignments. Defaults come from the API's own signature, so the two cannot drift.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .errors import GraderError
from .grade import grade_notebook
from .kernel import ISOLATION_LEVELS, LocalKernelLauncher
from .render import RENDERERS, render
from .render.safe import inert
from .spec import known_assignments, load_spec

_DEFAULTS = grade_notebook.__kwdefaults__ or {}


class _DefaultToNotebook(click.Group):
    """`grade X.ipynb ...` means `grade notebook X.ipynb ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["notebook", *args]
        return super().parse_args(ctx, args)


def _fail(message: str) -> None:
    click.echo(f"grade: error: {message}", err=True)
    sys.exit(2)


@click.group(cls=_DefaultToNotebook, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nngrader")
def main() -> None:
    """Grade neural-network notebooks against a PyTorch-autograd reference.

    `grade NOTEBOOK [OPTIONS]` grades one notebook (short for `grade notebook NOTEBOOK`);
    see `grade notebook --help` for its options.
    """


@main.command("notebook")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--assignment", "-a", help="Assignment id or folder (default: the notebook's metadata).")
@click.option("--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report here instead of stdout.")
@click.option("--seed", type=int, default=_DEFAULTS.get("seed"), help="Replay a run: the seed of its hidden inputs.")
@click.option("--timeout", "cell_timeout", type=click.FloatRange(min=0.1), default=_DEFAULTS["cell_timeout"], show_default=True, help="Seconds per cell.")
@click.option("--total-timeout", type=click.FloatRange(min=1), default=_DEFAULTS["total_timeout"], show_default=True, help="Seconds for the whole submission: cells, probes and re-run together.")
@click.option("--fail-under", type=float, help="Exit 1 if the score is below this.")
@click.option("--isolation", type=click.Choice(["auto", *ISOLATION_LEVELS]), default=None,
              help="How the notebook is fenced off (default: $NNGRADER_ISOLATION, else auto: the strongest available).")
def notebook_cmd(notebook: Path, assignment: str | None, fmt: str, output: Path | None, seed: int | None,
                 cell_timeout: float, total_timeout: float, fail_under: float | None, isolation: str | None) -> None:
    """Grade one notebook."""
    try:
        launcher = LocalKernelLauncher(isolation=isolation)
        report = grade_notebook(notebook, assignment, seed=seed, cell_timeout=cell_timeout,
                                total_timeout=total_timeout, launcher=launcher)
    except GraderError as e:
        _fail(str(e))
        return
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the kernel and temp folder are already gone
        click.echo("grade: interrupted; nothing was graded", err=True)
        sys.exit(130)
    except Exception as e:  # a failure outside any one stage of grading: still one line, no traceback
        click.echo(f"grade: internal error: {inert(f'{type(e).__name__}: {e}', 300)}", err=True)
        sys.exit(3)
    text = render(report, fmt)
    _emit(text, output)
    if report.status == "error":
        click.echo(f"grade: {inert(report.error or 'grading failed', 300)}", err=True)
        sys.exit(3)
    if fail_under is not None and report.score < fail_under:
        sys.exit(1)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        # A fresh file of our own (never one found there, nor a link planted in a shared
        # folder), renamed over the output path.
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644 & ~_umask())
            os.replace(tmp, output)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@main.command("list")
def list_cmd() -> None:
    """The known assignments, with title and points."""
    rows: list[tuple[str, str, Any]] = []
    for name, folder in known_assignments().items():
        try:
            a = load_spec(folder)
            rows.append((name, a.spec.title, f"{a.max_score:g}"))
        except GraderError as e:
            rows.append((name, f"(invalid: {e})", "-"))
    if not rows:
        click.echo("no assignments found")
        return
    width = max(len(r[0]) for r in rows)
    for name, title, pts in rows:
        click.echo(f"{name:<{width}}  {pts:>4} pts  {title}")


@main.command("validate")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--no-notebooks", is_flag=True, help="Skip grading the solution and starter notebooks.")
def validate_cmd(assignments: tuple[str, ...], no_notebooks: bool) -> None:
    """Check assignment folders (ids or paths): spec, reference, gradients, notebooks."""
    from .validate import validate

    failed = False
    for name in assignments:
        result = validate(name, notebooks=not no_notebooks)
        click.echo(f"{result.assignment}:")
        for f in result.findings:
            click.echo(f"  {'ok  ' if f.ok else 'FAIL'} {f.step}: {f.message}")
        failed |= not result.ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
