"""`grade serve`: the database opened, the assignments found, the grading worker started, and
the application served by uvicorn until Ctrl-C or SIGTERM (the worker then stops its kernels;
what it was grading is graded again at the next start).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.service.core import Service
from grader.service.policy import load_config
from grader.service.store import Store


def open_service(db: Path, assignments: list[str], config: Path | None = None) -> Service:
    """The Service over `db` for these assignments (each found, else GraderError)."""
    from grader.assignment.load import find_assignment

    if not assignments:
        raise GraderError("no assignment to serve (give --assignment ID)")
    ids = []
    for name in assignments:
        ids.append(find_assignment(name).id)
    if len(set(ids)) != len(ids):
        raise GraderError("an assignment is given twice")
    store = Store(db)
    store.meta_default("batch_seed", lambda: secrets.randbelow(2**31))
    key = store.meta_default("session_key", lambda: secrets.token_hex(32))
    return Service(store, load_config(config, ids), key)


def serve(db: Path, assignments: list[str], host: str = "127.0.0.1", port: int = 8000, jobs: int = 1,
          config: Path | None = None, cell_timeout: float | None = None, total_timeout: float = 300.0,
          isolation: str | None = None, secure_cookies: bool = False, on_ready: Any = None) -> None:
    """Serve until stopped."""
    import uvicorn

    from grader.service.app import build_app
    from grader.service.supervisor import Supervisor

    service = open_service(db, assignments, config)
    from grader.service.lti_store import platforms_from_config

    platforms_from_config(service.store, config)  # (the [[lti.platform]] tables; docs/lti.md)
    app = build_app(service, secure_cookies)
    supervisor = Supervisor(db, jobs, cell_timeout, total_timeout, isolation)
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
