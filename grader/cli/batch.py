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
@click.option("--regrade", "regrade", multiple=True, is_flag=False, flag_value="*", metavar="[STUDENT]",
              help="Grade again what the gradebook already has: everyone, or this student (repeatable).")
@click.option("--due", metavar="WHEN", help="The due date (ISO 8601, e.g. 2026-03-01T23:59+01:00), kept.")
@click.option("--student-regex", metavar="REGEX",
              help="Student id from the notebook's path in SOURCE: group 'student' (else group 1).")
@click.option("--scheduler", metavar="ADDRESS", help="Grade on this Dask cluster (tcp://host:8786).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def batch_cmd(source: Path, assignment: str, db: Path, out: Path | None, jobs: int | None,
              seed: int | None, cell_timeout: float | None, total_timeout: float, isolation: str | None,
              regrade: tuple[str, ...], due: str | None, student_regex: str | None, scheduler: str | None,
              quiet: bool) -> None:
    """Grade every submission in SOURCE (a folder, per-student folders or an LMS zip)."""
    from grader.batch.progress import Progress
    from grader.batch.run import grade_batch
    from grader.cli.env import showing_builds

    try:
        if due is not None:
            from grader.cli.course import set_deadline

            set_deadline(db, due)
        again: bool | list[str] = True if "*" in regrade else list(regrade) if regrade else False
        with showing_builds(quiet):
            summary = grade_batch(
                source, assignment, db, jobs=jobs, seed=seed, cell_timeout=cell_timeout,
                total_timeout=total_timeout, isolation=isolation, regrade=again,
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
    if summary.rescored:
        click.echo(f"batch: {summary.rescored} re-scored without running: the spec only moved points or labels")
    if summary.spec_note:
        click.echo(f"batch: graded again because the spec changed: {summary.spec_note}")
    _roster_line(db)
    if out is not None:
        _reports(db, out)
    # 1: the batch ran, and some submissions are errors or timeouts (each one has its row);
    # 3 is kept for the grader itself failing (see _internal)
    sys.exit(1 if summary.failed else 0)


def _roster_line(db: Path) -> None:
    """With a roster: who handed in nothing, and whose submission is not on it (one line)."""
    try:
        grades = _view(db).grades
    except Exception:  # (the reports say it in their own words)
        return
    missing = sum(g.status == "missing" for g in grades)
    strangers = sum("not on the roster" in g.flags for g in grades)
    if missing or strangers or any(g.roster for g in grades):
        click.echo(f"roster: {missing} handed in nothing (missing rows), {strangers} not on the roster")


def _view(db: Path):  # -> ClassView
    from grader.batch.classview import load
    from grader.batch.gradebook import Gradebook

    book = Gradebook(db, create=False)
    try:
        return load(book)
    finally:
        book.close()


def _reports(db: Path, out: Path) -> None:
    from grader.batch.reports import write_reports

    try:
        view = _view(db)
        write_reports(view.rows, out, view)
    except GraderError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write the reports into {out}: {e.strerror or e}")
    except Exception as e:  # a gradebook row this grader cannot read: one line, no traceback
        _internal(e)
    click.echo(f"reports: {out}/ (grades.csv, results.jsonl, similarity.csv, report.html, feedback/)", err=True)


@click.command("report")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The gradebook to read.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the reports.")
def report_cmd(db: Path, out: Path) -> None:
    """Rebuild the reports from a gradebook, without grading again."""
    _reports(db, out)


EXPORTS = ("csv", "jsonl", "canvas", "moodle", "brightspace", "similarity")


@click.command("export")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The gradebook to read.")
@click.option("--format", "fmt", type=click.Choice(EXPORTS), default="csv", show_default=True,
              help="csv/jsonl for scripts; canvas/moodle/brightspace for the LMS's grade import; similarity.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here instead of stdout.")
@click.option("--column", metavar="'NAME (ID)'",
              help="Canvas: the assignment's column (default: the one the Canvas roster lists); "
                   "Brightspace: the grade item's name.")
@click.option("--feedback", "feedback_dir", type=click.Path(path_type=Path),
              help="Canvas/Moodle: also write each student's feedback file here, named for the LMS's upload.")
def export_cmd(db: Path, fmt: str, output: Path | None, column: str | None, feedback_dir: Path | None) -> None:
    """Every student's grade: for scripts (csv, jsonl), or as Canvas or Moodle imports it."""
    from grader.batch.exports import export_text, write_lms_feedback

    try:
        view = _view(db)
        text = export_text(view, fmt, column)
        if feedback_dir is not None:
            write_lms_feedback(view, fmt, feedback_dir)
    except GraderError as e:
        _fail(str(e))
        return
    except OSError as e:
        _fail(f"cannot write the feedback files: {e.strerror or e}")
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
    from grader.cli.course import deadline_group, override_cmd, roster_group

    for cmd in (batch_cmd, report_cmd, export_cmd, roster_group, deadline_group, override_cmd):
        group.add_command(cmd)
