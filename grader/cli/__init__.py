"""The `grade` command: a thin layer over the Python API.

`grade NOTEBOOK` grades one notebook (the default command); `grade list` shows the known
assignments; `grade render` renders a saved JSON report in another format; `grade
gradescope-bundle` makes a Gradescope autograder; `grade env` builds, lists and prunes the
kernels' environments; `grade find-notebook` says which notebook of a repository CI grades. Defaults come from the API's own
signature, so the two cannot drift.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from grader.cli.env import env_group, showing_builds
from grader.errors import GraderError, TorchMissing
from grader.inert import inert
from grader.options import CELL_TIMEOUT_HELP, ISOLATION_LEVELS, SEED, TOTAL_TIMEOUT, Seconds
from grader.render import RENDERERS
from grader.render.gradescope import VISIBILITIES, render_gradescope
from grader.render.markdown import render_markdown
from grader.render.text import render_text
from grader.report import Report, error_report, report_from_dict

# The grading machinery (kernels, nbclient, torch, pydantic) is imported inside the commands
# that use it: `grade --help`, `--version` and `list` start without it.


class _DefaultToNotebook(click.Group):
    """`grade X.ipynb ...` means `grade notebook X.ipynb ...`; a bad command line is one line on stderr."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["notebook", *args]
        return super().parse_args(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if args or "args" in kwargs:  # called with its arguments (a test runner, a script): a plain exit
            return self._main(*args, **kwargs)
        _stop_on_terminate()
        try:  # the `grade` program itself, reading sys.argv
            return self._main(*args, **kwargs)
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                _exit_now(e.code or 0)
            raise

    def _main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:  # `grade` alone: the help, on stdout
            click.echo(e.ctx.get_help() if e.ctx is not None else "see grade --help")
            sys.exit(2)
        except click.UsageError as e:  # click's own is a usage block and a hint: here one line, exit 2
            where = e.ctx.command_path if e.ctx is not None else "grade"
            _fail(f"{' '.join(e.format_message().split())} (see '{where} --help')")
        except click.ClickException as e:
            _fail(" ".join(e.format_message().split()))
        except click.Abort:
            click.echo("grade: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _stop_on_terminate() -> None:
    """SIGTERM and SIGHUP stop the program as Ctrl-C does, in every state (reading, loading an
    assignment, importing torch): one line and exit 130, nothing left running. While grading,
    `interruptible` takes them over to stop the kernels first."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave them be
            signal.signal(sig, stop)


def _exit_now(code: int) -> NoReturn:
    """Exit once the answer is out: nothing of the run is left (kernels, their users' processes,
    temporary folders are removed first), so skip tearing down the interpreter's modules (torch's
    alone take most of a second)."""
    tracking = sys.modules.get("grader.kernels.tracking")
    if tracking is not None:
        tracking.cleanup_all()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


def _fail(message: str) -> None:
    # inert: a message can hold a file name the student chose, and CI runners read stderr too
    click.echo(f"grade: error: {inert(message, 1000)}", err=True)
    sys.exit(2)


class Threshold(click.ParamType):
    """A score to reach: points (`8.5`) or a percentage of the maximum (`80%`)."""

    name = "POINTS|PERCENT%"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, bool]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)", text)
        if not m:
            self.fail(f"{text!r} is neither points (8.5) nor a percentage (80%)", param, ctx)
        number, percent = float(m.group(1)), bool(m.group(2))
        if percent and number > 100:
            self.fail(f"{text!r} is over 100%", param, ctx)
        return number, percent


def below(report: Report, threshold: tuple[float, bool] | None) -> bool:
    """Whether the score is under the bar (points, or a percentage of the maximum score)."""
    if threshold is None:
        return False
    number, percent = threshold
    bar = number / 100 * report.max_score if percent else number
    return report.score < bar - 1e-9


_FAIL_UNDER_HELP = "Exit 1 if the score is below this: points (8.5) or a percentage of the maximum (80%)."
_HIDDEN_HELP = "Gradescope: when students see hidden checks."


def _rendered(report: Report, fmt: str, hidden_visibility: str, output: Path | None = None) -> str:
    if fmt == "text" and output is None:  # for a terminal: its width, and colour where it takes it
        return render_text(report, color=_colour(), width=shutil.get_terminal_size((100, 24)).columns)
    return render_gradescope(report, hidden_visibility) if fmt == "gradescope" else RENDERERS[fmt](report)


def _colour() -> bool:
    """Colour on stdout: never with NO_COLOR set, always with FORCE_COLOR set, else on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _write_report(report: Report, fmt: str, output: Path | None, hidden_visibility: str, text: str | None = None) -> None:
    """The report in `fmt` to stdout or `output`; for github, the summary to $GITHUB_STEP_SUMMARY too."""
    _emit(_rendered(report, fmt, hidden_visibility, output) if text is None else text, output)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt == "github" and summary:
        try:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(render_markdown(report) + "\n")
        except OSError as e:
            _fail(f"cannot write the job summary {summary}: {e.strerror or e}")


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
@click.option("--format", "fmt", type=click.Choice(list(RENDERERS)), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report here instead of stdout.")
@click.option("--seed", type=SEED, default=None, help="Replay a run: the seed of its hidden inputs.")
@click.option("--timeout", "cell_timeout", type=Seconds(0.1), default=None, help=CELL_TIMEOUT_HELP)
@click.option("--total-timeout", type=Seconds(1), default=TOTAL_TIMEOUT, show_default=True, help="Seconds for the whole submission: cells, probes and re-run together.")
@click.option("--fail-under", type=Threshold(), help=_FAIL_UNDER_HELP)
@click.option("--isolation", type=click.Choice(["auto", *ISOLATION_LEVELS]), default=None,
              help="How the notebook is fenced off (default: $NNGRADER_ISOLATION, else auto: the strongest available).")
@click.option("--hidden-visibility", type=click.Choice(VISIBILITIES), default="after_published", show_default=True, help=_HIDDEN_HELP)
@click.option("--check", "only", multiple=True, metavar="NAME",
              help="Grade only this check (a function, a variable or a check's label); repeatable.")
@click.option("--public", "public_only", is_flag=True, help="Grade only the public checks (fast; the score is partial).")
def notebook_cmd(notebook: Path, assignment: str | None, fmt: str, output: Path | None, seed: int | None,
                 cell_timeout: float | None, total_timeout: float, fail_under: tuple[float, bool] | None,
                 isolation: str | None, hidden_visibility: str, only: tuple[str, ...], public_only: bool) -> None:
    """Grade one notebook."""
    from grader.grading.grade import grade_notebook
    from grader.kernels.launch import LocalKernelLauncher

    try:
        launcher = LocalKernelLauncher(isolation=isolation)
        with showing_builds():  # the first grade of an assignment builds its kernel environment
            report = grade_notebook(notebook, assignment, seed=seed, cell_timeout=cell_timeout,
                                    total_timeout=total_timeout, launcher=launcher,
                                    checks=list(only) or None, public_only=public_only)
    except GraderError as e:  # unusable notebook or assignment: still a report, so CI shows why
        _write_report(_unusable(notebook, assignment, str(e)), fmt, output, hidden_visibility)
        _fail(str(e))
        return
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the kernel and temp folder are already gone
        click.echo("grade: interrupted; nothing was graded", err=True)
        sys.exit(130)
    except Exception as e:  # a failure outside any one stage of grading: still one line, no traceback
        click.echo(f"grade: internal error: {inert(f'{type(e).__name__}: {e}', 300)}", err=True)
        sys.exit(3)
    _write_report(report, fmt, output, hidden_visibility)
    if report.status == "error":
        click.echo(f"grade: {inert(report.error or 'grading failed', 300)}", err=True)
        sys.exit(3)
    if below(report, fail_under):
        sys.exit(1)


def _unusable(notebook: Path, assignment: str | None, reason: str) -> Report:
    """The report of a notebook that could not be graded: score 0 out of the assignment's points, the reason."""
    from grader.assignment.load import find_assignment

    info, max_score = None, 0.0
    if assignment:
        try:
            asg = find_assignment(assignment)
            info, max_score = asg.info(), asg.max_score
        except GraderError:
            info = {"id": assignment}
    return error_report(str(notebook), inert(reason, 500), info, max_score)


@main.command("render")
@click.argument("report_file", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(RENDERERS)), required=True,
              help="The format to render the saved report in.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write it here instead of stdout.")
@click.option("--fail-under", type=Threshold(), help=_FAIL_UNDER_HELP)
@click.option("--hidden-visibility", type=click.Choice(VISIBILITIES), default="after_published", show_default=True, help=_HIDDEN_HELP)
def render_cmd(report_file: Path, fmt: str, output: Path | None, fail_under: tuple[float, bool] | None,
               hidden_visibility: str) -> None:
    """Render a JSON report (`--format json`) in any format, without grading again."""
    try:
        raw = report_file.read_bytes()
    except OSError as e:
        _fail(f"{report_file}: cannot be read ({e.strerror or e})")
        return
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        _fail(f"{report_file}: not valid JSON")
        return
    try:
        report = report_from_dict(data)
        text = _rendered(report, fmt, hidden_visibility, output)
    except (ValueError, TypeError, AttributeError, KeyError) as e:  # not a report this grader wrote
        _fail(f"{report_file}: {inert(e, 200) if isinstance(e, ValueError) else 'not a valid grader.report/1 report'}")
        return
    _write_report(report, fmt, output, hidden_visibility, text)
    if below(report, fail_under):
        sys.exit(1)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False, color=True)  # (colour was already chosen: see _colour)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        from grader.cachefiles import write_atomic

        write_atomic(output, text.encode("utf-8"), f".{output.name}.", ".tmp", 0o644 & ~_umask())
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@main.command("gradescope-bundle")
@click.argument("assignment")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("autograder.zip"), show_default=True,
              help="Where to write the autograder zip.")
@click.option("--grader", "grader_req", metavar="REQUIREMENT",
              help="What setup.sh pip-installs: a pip requirement, e.g. "
                   "'nngrader @ git+https://github.com/course/nngrader@v0.1.0', or a wheel file, carried in "
                   "the zip (default: this grader's own wheel, built from its source tree and carried in the zip).")
@click.option("--hidden-visibility", type=click.Choice(VISIBILITIES), default="after_published", show_default=True, help=_HIDDEN_HELP)
def gradescope_bundle_cmd(assignment: str, output: Path, grader_req: str | None, hidden_visibility: str) -> None:
    """Make a Gradescope autograder zip (setup.sh, run_autograder, the assignment) for ASSIGNMENT."""
    from grader.assignment.load import find_assignment
    from grader.authoring.bundle import make_bundle

    try:
        asg = find_assignment(assignment)
    except GraderError as e:
        _fail(str(e))
        return
    try:
        data = make_bundle(asg, grader_req, hidden_visibility)
    except GraderError as e:
        _fail(str(e))
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}")
    click.echo(f"wrote {output}: the Gradescope autograder for {asg.id} ({asg.max_score:g} points)")


@main.command("list")
def list_cmd() -> None:
    """The known assignments, with title and points."""
    from grader.assignment.load import known_assignments, load_spec

    rows: list[tuple[str, str, Any]] = []
    for name, folder in known_assignments().items():
        try:
            a = load_spec(folder)
            rows.append((name, a.spec.title, f"{a.max_score:g}"))
        except TorchMissing:  # (its spec's defaults are read from its reference, once)
            rows.append((name, "(needs PyTorch to load: pip install 'nngrader[torch]')", "-"))
        except GraderError as e:
            rows.append((name, f"(invalid: {e})", "-"))
    if not rows:
        click.echo("no assignments found")
        return
    width = max(len(r[0]) for r in rows)
    for name, title, pts in rows:
        click.echo(f"{name:<{width}}  {pts:>4} pts  {title}")


@main.command("find-notebook")
@click.argument("folder", type=click.Path(path_type=Path), default=Path("."))
@click.option("--notebook", "pattern", default="*.ipynb", show_default=True,
              help="The notebook's path, or a glob (** for any folder) relative to FOLDER.")
@click.option("--assignment", "-a", default="", help="The assignment graded (id or folder): its notebook is chosen.")
def find_notebook_cmd(folder: Path, pattern: str, assignment: str) -> None:
    """Print the notebook to grade in FOLDER (a repository): the one named, else the one whose
    metadata names the assignment, else the only one; exit 2 with the candidates if that is not one."""
    from grader.submission.choose import choose_notebook

    try:
        chosen = choose_notebook(folder, pattern, assignment or None)
    except GraderError as e:
        _fail(str(e))
        return
    path = chosen if folder == Path(".") else os.path.join(folder, chosen)
    if any(ch in path for ch in "\r\n"):
        _fail(f"the notebook's name {path!r} holds a line break; rename it")
    click.echo(path)


@main.command("build-public")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--check", "check_only", is_flag=True, help="Only say whether each public.json is up to date (exit 1 if not).")
def build_public_cmd(assignments: tuple[str, ...], check_only: bool) -> None:
    """Write each assignment's public.json: the public checks' inputs and expected values, for check()."""
    from grader.assignment.load import find_assignment
    from grader.selfcheck.public import PUBLIC_FILE, public_drift, write_public

    stale = False
    for name in assignments:
        try:
            asg = find_assignment(name)
            if check_only:
                drift = public_drift(asg)
                stale |= bool(drift)
                click.echo(f"{asg.id}: {PUBLIC_FILE} is up to date" if not drift else f"{asg.id}: {inert(drift, 500)}")
            else:
                click.echo(f"wrote {write_public(asg)}")
        except GraderError as e:
            _fail(str(e))
        except OSError as e:
            _fail(f"{name}: cannot write {PUBLIC_FILE} ({e.strerror or e})")
    sys.exit(1 if stale else 0)


@main.command("validate")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--no-notebooks", is_flag=True, help="Skip grading the solution and starter notebooks.")
def validate_cmd(assignments: tuple[str, ...], no_notebooks: bool) -> None:
    """Check assignment folders (ids or paths): spec, reference, gradients, notebooks."""
    from grader.authoring.validate import validate

    failed = False
    for name in assignments:
        with showing_builds():
            result = validate(name, notebooks=not no_notebooks)
        click.echo(f"{result.assignment}:")
        for f in result.findings:
            click.echo(f"  {'ok  ' if f.ok else 'FAIL'} {f.step}: {f.message}")
        failed |= not result.ok
    sys.exit(1 if failed else 0)


@main.command("new")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--from", "solution", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The solution notebook to draft from.")
def new_cmd(folder: Path, solution: Path) -> None:
    """Draft an assignment folder (spec, reference skeleton, starter) from a solution notebook."""
    from grader.authoring.draft import draft

    try:
        written = draft(folder, solution)
    except GraderError as e:
        _fail(str(e))
        return
    click.echo("wrote " + ", ".join(str(p) for p in written))
    click.echo(f"next: write the bodies of {folder / 'reference.py'} in torch, then: grade validate {folder}")


@main.command("prepare")
@click.argument("assignments", nargs=-1)
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Entries per pool (default: $NNGRADER_POOL_SIZE, else 256).")
@click.option("--clear", is_flag=True, help="Remove the pools instead.")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Also grade the solution and keep its slowest cell: the default cell limit.")
def prepare_cmd(assignments: tuple[str, ...], size: int | None, clear: bool, measure: bool) -> None:
    """Precompute the pools of hidden runs that let `grade` start without torch (default: every known assignment)."""
    from grader.assignment.load import find_assignment, known_assignments
    from grader.pool import store as pool

    names = list(assignments) or sorted(known_assignments())
    if clear and not assignments:
        click.echo(f"removed {pool.clear()} pool folder(s)")
        return
    for name in names:
        try:
            asg = find_assignment(name)
            if clear:
                click.echo(f"{asg.id}: removed {pool.clear(asg)} pool folder(s)")
            else:
                before = len(pool.entry_seeds(pool.pool_folder(asg)))
                with showing_builds():
                    n = pool.prepare(asg, size)
                click.echo(f"{asg.id}: {n} entries in {pool.pool_folder(asg)}"
                           + (" (complete already)" if before >= n else ""))
                if measure:
                    _measure(asg, again=before < n)
        except GraderError as e:
            _fail(str(e))
        except OSError as e:
            _fail(f"{name}: cannot build its pool ({e.strerror or e})")
        except pool.Unpoolable as e:
            _fail(f"{name}: its reference gives values a pool cannot hold ({e}); grades compute them live")
        except Exception as e:  # the reference failed on a hidden input: the instructor's to fix
            _fail(f"{name}: cannot build its pool: the reference failed: {type(e).__name__}: {e}")


def _measure(asg: Any, again: bool = True) -> None:
    """Grade the assignment's solution and keep the cell limit it gives; say what it is. Without
    `again`, a limit measured for this spec and solution already is kept as it is."""
    from grader.grading.grade import grade_notebook
    from grader.grading.limits import measure_solution, measured_limit

    kept = None if again else measured_limit(asg)
    if kept is not None:
        click.echo(f"{asg.id}: cells get {kept:g} s by default (measured before)")
        return

    with showing_builds():
        measured = measure_solution(asg, grade_notebook)
    if measured is None:
        click.echo(f"{asg.id}: no cell limit measured (no solution.ipynb, or it did not run cleanly)")
        return
    slowest, limit = measured
    own = asg.spec.policy.cell_timeout
    click.echo(f"{asg.id}: the solution's slowest cell took {slowest:.2f} s: cells get {limit:g} s by default"
               + (f" (policy.cell_timeout sets {own:g} s instead)" if own else ""))


main.add_command(env_group)
from grader.cli.batch import register as _register_batch  # noqa: E402  (after `main` exists)

_register_batch(main)

from grader.cli.lti import lti_group  # noqa: E402
from grader.cli.serve import register as _register_serve  # noqa: E402
from grader.cli.serve import serve_group  # noqa: E402

_register_serve(main)
serve_group.add_command(lti_group)  # `grade serve lti …`
