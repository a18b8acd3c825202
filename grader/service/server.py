"""`grade serve`: the database opened, the assignments found, the grading worker started, and
the application served by uvicorn until Ctrl-C or SIGTERM (the worker then stops its kernels;
what it was grading is graded again at the next start).
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.service.core import Service
from grader.service.policy import load_config
from grader.service.store import Store


def open_service(db: Path | str, assignments: list[str], config: Path | None = None) -> Service:
    """The Service over `db` for these assignments (each found, else GraderError)."""
    from grader.assignment.load import find_assignment

    if not assignments:
        raise GraderError("no assignment to serve (give --assignment ID)")
    sources: dict[str, str] = {}
    for name in assignments:
        asg = find_assignment(name)
        if asg.id in sources:
            raise GraderError(f"assignment {asg.id} is given twice")
        # (a folder as an absolute path: the worker finds the same one, whatever its folder)
        sources[asg.id] = str(Path(name).resolve()) if Path(name).is_dir() else name
    store = Store(db)
    store.meta_default("batch_seed", lambda: secrets.randbelow(2**31))
    key = store.meta_default("session_key", lambda: secrets.token_hex(32))
    return Service(store, load_config(config, list(sources)), key, sources)


def check_port(host: str, port: int) -> None:
    """GraderError (one line) when the address cannot be listened on: before any worker starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise GraderError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def check_scheduler(address: str) -> None:
    """GraderError (one line) when the Dask scheduler cannot be reached: said at start, not by a
    worker restarting over and over."""
    from grader.batch.run import connect

    connect(address).close()


def serve(db: Path | str, assignments: list[str], host: str = "127.0.0.1", port: int = 8000, jobs: int = 1,
          config: Path | None = None, cell_timeout: float | None = None, total_timeout: float = 300.0,
          isolation: str | None = None, secure_cookies: bool = False, on_ready: Any = None,
          scheduler: str | None = None) -> None:
    """Serve until stopped. `jobs` 0: no grading worker here (`grade worker` processes grade);
    `scheduler`: the worker hands its jobs to that Dask cluster."""
    try:
        import uvicorn

        from grader.service.app import build_app
    except ImportError as e:  # (installed without the extra)
        raise GraderError(f"grade serve needs {e.name or 'its web stack'}: pip install 'nngrader[serve]'") from None
    from grader.service.supervisor import Supervisor

    service = open_service(db, assignments, config)
    check_port(host, port)
    from grader.service.lti_store import platforms_from_config

    platforms_from_config(service.store, config)  # (the [[lti.platform]] tables; docs/lti.md)
    app = build_app(service, secure_cookies)
    if scheduler:
        check_scheduler(scheduler)
    supervisor = Supervisor(db, jobs, cell_timeout, total_timeout, isolation, service.sources, scheduler)
    app.state.supervisor = supervisor
    supervisor.start()
    from grader.service.lti_passback import start_sender  # (grades back to the LMS; docs/lti.md)

    sender = start_sender(service, db)
    try:
        if on_ready is not None:
            on_ready(service)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                               proxy_headers=True, forwarded_allow_ips="127.0.0.1"))
        server.run()
    finally:
        sender.stop()
        supervisor.stop()
        service.store.close()
