"""`grade serve` (and its roster, instructor and token commands) and `grade submit`: thin
commands over grader.service. Nothing of the web stack is imported before a command runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from grader.cli.batch import _fail
from grader.errors import GraderError
from grader.options import CELL_TIMEOUT_HELP, ISOLATION_LEVELS, Seconds

DEFAULT_DB = "service.sqlite"


def _database(ctx: click.Context, param: click.Parameter, value: str) -> Path | str:
    """A PostgreSQL URL as given, else a SQLite file's path."""
    from grader.service.database import is_url

    return value if is_url(value) else Path(value)


def _db_option(f):  # type: ignore[no-untyped-def]
    return click.option("--db", default=DEFAULT_DB, show_default=True, callback=_database, metavar="PATH|URL",
                        help="The service's database: a SQLite file, or postgresql://USER@HOST/DB "
                             "(shared by several servers and workers; docs/service.md).")(f)


def _worker_options(f):  # type: ignore[no-untyped-def]
    """The options of how notebooks are graded, shared by `grade serve` and `grade worker`."""
    for opt in reversed([
        click.option("--scheduler", metavar="tcp://HOST:PORT",
                     help="Grade on this Dask cluster (its workers; docs/service.md)."),
        click.option("--timeout", "cell_timeout", type=Seconds(0.1), default=None, help=CELL_TIMEOUT_HELP),
        click.option("--total-timeout", type=Seconds(1), default=300.0, show_default=True,
                     help="Seconds per submission: cells, probes and re-run together."),
        click.option("--isolation", type=click.Choice(["auto", *ISOLATION_LEVELS]), default=None,
                     help="How notebooks are fenced off (default: $NNGRADER_ISOLATION, else auto)."),
    ]):
        f = opt(f)
    return f


def _show(issued: list, base: str) -> None:  # type: ignore[type-arg]
    for i in issued:
        click.echo(f"{i.user}\t{i.name}\t{i.link(base)}")
    if issued:
        click.echo("(each link is shown once: hand it to its owner; `grade serve token ID` makes a new one)",
                   err=True)


def _links(db: Path | str, base: str, make: Callable[[Any, Any], list]) -> None:  # type: ignore[type-arg]
    """Print the links `make(people, store)` issues (one line on an error)."""
    from grader.service import people
    from grader.service.store import Store

    try:
        _show(make(people, Store(db)), base)
    except GraderError as e:
        _fail(str(e))


@click.group("serve", invoke_without_command=True)
@click.option("--assignment", "-a", "assignments", multiple=True, help="Assignment id or folder (repeatable).")
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=1, show_default=True,
              help="Submissions graded at once (0: none here; `grade worker` processes grade).")
@click.option("--config", type=click.Path(path_type=Path), help="Policies per assignment (TOML; see docs/service.md).")
@click.option("--roster", type=click.Path(path_type=Path), help="Import this roster first (prints new links).")
@click.option("--instructor", metavar="ID", help="Add this instructor first if new (prints their link).")
@click.option("--url", "base_url", help="The address students open, for the links (default: http://HOST:PORT).")
@_worker_options
@click.option("--secure-cookies", is_flag=True, help="Cookies only over HTTPS (behind a TLS reverse proxy).")
@click.pass_context
def serve_group(ctx: click.Context, assignments: tuple[str, ...], db: Path | str, host: str, port: int,
                jobs: int, config: Path | None, roster: Path | None, instructor: str | None,
                base_url: str | None, scheduler: str | None, cell_timeout: float | None, total_timeout: float,
                isolation: str | None, secure_cookies: bool) -> None:
    """Serve assignments: students hand in notebooks in a browser, a queue grades them."""
    if ctx.invoked_subcommand is not None:
        return
    from grader.service import people
    from grader.service.database import shown
    from grader.service.server import serve

    base = base_url or f"http://{host}:{port}"

    def ready(service) -> None:  # type: ignore[no-untyped-def]
        if roster is not None:
            _show(people.import_roster(service.store, roster), base)
        if instructor and service.store.user(instructor) is None:
            _show([people.add_instructor(service.store, instructor)], base)
        click.echo(f"serving {', '.join(service.assignments)} at {base} (database {shown(db)}); Ctrl-C stops", err=True)

    try:
        serve(db, list(assignments), host, port, jobs, config, cell_timeout, total_timeout, isolation,
              secure_cookies, on_ready=ready, scheduler=scheduler)
    except GraderError as e:
        _fail(str(e))
    except OSError as e:  # (the port is taken)
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")


@serve_group.group("roster")
def roster_group() -> None:
    """The service's students."""


@roster_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@_db_option
@click.option("--format", "fmt", type=click.Choice(["canvas", "moodle", "csv"]), help="Default: from the header.")
@click.option("--expires", metavar="DURATION", help="Tokens stop working after this long (e.g. 120d).")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True,
              help="The service's address, for the links.")
def roster_import_cmd(file: Path, db: Path | str, fmt: str | None, expires: str | None, base_url: str) -> None:
    """Add the roster's students; print a personal link for each new one (shown once)."""
    _links(db, base_url, lambda people, store: people.import_roster(store, file, fmt, expires))


@serve_group.command("instructor")
@click.argument("user_id")
@_db_option
@click.option("--name", default="")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True)
def instructor_cmd(user_id: str, db: Path | str, name: str, base_url: str) -> None:
    """Add an instructor (or TA) and print their link (shown once)."""
    _links(db, base_url, lambda people, store: [people.add_instructor(store, user_id, name)])


@serve_group.command("token")
@click.argument("user_id")
@_db_option
@click.option("--expires", metavar="DURATION", help="The token stops working after this long (e.g. 120d).")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True)
def token_cmd(user_id: str, db: Path | str, expires: str | None, base_url: str) -> None:
    """A new link for a user (a lost one stops working)."""
    _links(db, base_url, lambda people, store: [people.issue(store, user_id, expires)])


@serve_group.command("extend")
@click.argument("user_id")
@click.option("--assignment", "-a", required=True, help="The assignment's id.")
@click.option("--due", required=True, metavar="WHEN", help="The student's own due date (ISO 8601).")
@click.option("--comment", default="", help="Why (shown with the grade).")
@_db_option
def extend_cmd(user_id: str, assignment: str, due: str, comment: str, db: Path | str) -> None:
    """Give a student their own due date for an assignment."""
    from grader.course.late import parse_time, show_time
    from grader.service.store import Store

    try:
        store = Store(db)
        user = store.user(user_id)
        if user is None or user.role != "student":
            raise GraderError(f"no student {user_id!r} (import the roster first)")
        when = parse_time(due)
        store.extend(user_id, assignment, when, comment)
    except GraderError as e:
        _fail(str(e))
        return
    click.echo(f"{user_id}: {assignment} due {show_time(when)}")


@click.command("submit")
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--server", help="The service's address (default: $NNGRADER_SERVER).")
@click.option("--assignment", "-a", help="Default: the notebook's metadata, else the server's only one.")
@click.option("--token-file", type=click.Path(path_type=Path),
              help="A file holding the token (default: $NNGRADER_TOKEN, else ~/.config/nngrader/token).")
@click.option("--wait", type=Seconds(0), default=600.0, show_default=True, help="Seconds to wait for the grade.")
def submit_cmd(notebook: Path, server: str | None, assignment: str | None, token_file: Path | None,
               wait: float) -> None:
    """Hand NOTEBOOK in to a grading service and print its feedback."""
    from grader.service.client import upload

    try:
        sub = upload(notebook, server, assignment, token_file, wait)
    except GraderError as e:
        _fail(str(e))
        return
    if sub.get("report"):
        from grader.render.text import render_text
        from grader.report import report_from_dict

        click.echo(render_text(report_from_dict(sub["report"]), color=False))
        if sub.get("final") is not None and sub.get("late", {}).get("note"):
            click.echo(f"final grade {sub['final']:g}: {sub['late']['note']}")
    else:
        click.echo(f"{sub.get('message', sub.get('state'))}")
    click.echo(f"feedback: {sub['url']}")


@click.command("worker")
@click.option("--assignment", "-a", "assignments", multiple=True, required=True,
              help="Assignment id or folder (repeatable): those the servers serve.")
@_db_option
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submissions graded at once.")
@_worker_options
def worker_cmd(assignments: tuple[str, ...], db: Path | str, jobs: int, scheduler: str | None,
               cell_timeout: float | None, total_timeout: float, isolation: str | None) -> None:
    """Grade the queue of a grading service's database, beside its servers (Ctrl-C stops)."""
    from grader.service.database import shown
    from grader.service.server import check_scheduler, open_service
    from grader.service.worker import new_lease, run

    try:
        service = open_service(db, list(assignments))
        service.store.close()
        if scheduler:
            check_scheduler(scheduler)
    except GraderError as e:
        _fail(str(e))
        return
    where = f"on the Dask cluster at {scheduler}" if scheduler else f"{jobs} at a time"
    click.echo(f"grading {', '.join(service.assignments)} from {shown(db)}, {where}; Ctrl-C stops", err=True)
    run(db, new_lease(), jobs, cell_timeout, total_timeout, isolation, service.sources, scheduler,
        watch_parent=False)


def register(main: click.Group) -> None:
    main.add_command(serve_group)
    main.add_command(submit_cmd)
    main.add_command(worker_cmd)
