"""`grade batch`, `grade report` and `grade export`: thin commands over grader.batch."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grader.errors import GraderError
from grader.options import CELL_TIMEOUT_HELP, ISOLATION_LEVELS, SEED, Seconds

DEFAULT_DB = Path("gradebook.sqlite")


def _fail(message: str) -> None:
    from grader.inert import inert

    click.echo(f"grade: error: {inert(message, 1000)}", err=True)
    sys.exit(2)


def _internal(e: Exception) -> None:
    """Something this grader did not foresee (a gradebook row it cannot read, say): one line, exit 3."""
    from grader.inert import inert

    click.echo(f"grade: internal error: {inert(f'{type(e).__name__}: {e}', 300)}", err=True)
    sys.exit(3)


@click.command("batch")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--assignment", "-a", required=True, help="Assignment id or folder.")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The gradebook (SQLite); a rerun with the same one resumes.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the reports into this folder.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Submissions graded at once (default: CPU count).")
@click.option("--seed", type=SEED, help="Batch seed (default: the gradebook's, else a new one).")
@click.option("--timeout", "cell_timeout", type=Seconds(0.1), default=None,
              help=CELL_TIMEOUT_HELP)
@click.option("--total-timeout", type=Seconds(1), default=300.0, show_default=True,
              help="Seconds per submission: cells, probes and re-run together.")
@click.option("--isolation", type=click.Choice(["auto", *ISOLATION_LEVELS]), default=None,
              help="How notebooks are fenced off (default: $NNGRADER_ISOLATION, else auto).")
@click.option("--regrade", is_flag=True, help="Grade again even what the gradebook already has.")
@click.option("--student-regex", metavar="REGEX",
              help="Student id from the notebook's path in SOURCE: group 'student' (else group 1).")
@click.option("--scheduler", metavar="ADDRESS", help="Grade on this Dask cluster (tcp://host:8786).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def batch_cmd(source: Path, assignment: str, db: Path, out: Path | None, jobs: int | None,
              seed: int | None, cell_timeout: float | None, total_timeout: float, isolation: str | None,
              regrade: bool, student_regex: str | None, scheduler: str | None, quiet: bool) -> None:
    """Grade every submission in SOURCE (a folder, per-student folders or an LMS zip)."""
    from grader.batch.progress import Progress
    from grader.batch.run import grade_batch
    from grader.cli.env import showing_builds

    try:
        with showing_builds(quiet):
            summary = grade_batch(
                source, assignment, db, jobs=jobs, seed=seed, cell_timeout=cell_timeout,
                total_timeout=total_timeout, isolation=isolation, regrade=regrade,
                student_regex=student_regex, scheduler=scheduler, exclude=[out] if out is not None else [],
                progress=None if quiet else (lambda total, skipped: Progress(total, skipped)))
    except GraderError as e:
        _fail(str(e))
        return
    except KeyboardInterrupt:
        click.echo(f"grade: interrupted; what was graded is in {db}, and the same command resumes",
                   err=True)
        sys.exit(130)
    except Exception as e:  # (what was graded is committed: the same command resumes)
        _internal(e)
        return
    c = summary.counts
    click.echo(f"batch: {len(summary.students)} students: {c.get('graded', 0)} graded, "
               f"{c.get('error', 0)} errors, {c.get('timeout', 0)} timeouts "
               f"({summary.graded_now} graded now, {summary.skipped} already in {db})")
    if out is not None:
        _reports(db, out)
    sys.exit(3 if summary.failed else 0)


def _rows(db: Path) -> list:
    from grader.batch.gradebook import Gradebook

    book = Gradebook(db, create=False)
    try:
        return list(book.current())
    finally:
        book.close()


def _reports(db: Path, out: Path) -> None:
    from grader.batch.reports import write_reports

    try:
        rows = _rows(db)
        write_reports(rows, out)
    except GraderError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write the reports into {out}: {e.strerror or e}")
    except Exception as e:  # a gradebook row this grader cannot read: one line, no traceback
        _internal(e)
    click.echo(f"reports: {out}/ (grades.csv, results.jsonl, report.html, feedback/)", err=True)


@click.command("report")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The gradebook to read.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the reports.")
def report_cmd(db: Path, out: Path) -> None:
    """Rebuild the reports from a gradebook, without grading again."""
    _reports(db, out)


@click.command("export")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The gradebook to read.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def export_cmd(db: Path, fmt: str, output: Path | None) -> None:
    """Every student's current result, as grades.csv or results.jsonl, for scripts."""
    from grader.batch.reports import grades_csv, results_jsonl

    try:
        rows = _rows(db)
        text = grades_csv(rows) if fmt == "csv" else results_jsonl(rows)
    except GraderError as e:
        _fail(str(e))
        return
    except Exception as e:  # a gradebook row this grader cannot read: one line, no traceback
        _internal(e)
        return
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}")


def register(group: click.Group) -> None:
    """Add the batch commands to the `grade` command group."""
    for cmd in (batch_cmd, report_cmd, export_cmd):
        group.add_command(cmd)
