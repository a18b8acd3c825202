"""Handing a notebook in to a grading service: `grade submit` and `submit()` in a notebook.

The standard library only (urllib), so a student's kernel needs nothing more than the grader.
The token comes from $NNGRADER_TOKEN or a file (default ~/.config/nngrader/token), never from
a command line (where other users of the machine could read it), and the server from
--server or $NNGRADER_SERVER.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.submission.notebook import declared_in

TOKEN_ENV, SERVER_ENV = "NNGRADER_TOKEN", "NNGRADER_SERVER"
TOKEN_FILE = Path.home() / ".config" / "nngrader" / "token"


def find_token(token_file: Path | None = None) -> str:
    """The access token: $NNGRADER_TOKEN, else the token file."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file or TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        raise GraderError(f"no access token: set ${TOKEN_ENV} or put it in {path}") from None
    if not token:
        raise GraderError(f"{path} is empty: put your access token in it")
    return token


def find_server(server: str | None) -> str:
    url = (server or os.environ.get(SERVER_ENV, "")).strip().rstrip("/")
    if not url:
        raise GraderError(f"no server: give --server URL or set ${SERVER_ENV}")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise GraderError(f"{url}: not an http(s) address")
    return url


def _call(method: str, url: str, token: str, body: bytes | None = None, ctype: str | None = None,
          timeout: float = 60) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"Bearer {token}"})
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error") or e.reason
        except Exception:
            why = e.reason
        raise GraderError(f"the server refused it ({e.code}): {why}") from None
    except (urllib.error.URLError, OSError) as e:
        raise GraderError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


def declared_assignment(data: bytes) -> str | None:
    """`metadata.grader.assignment` of a notebook, if it names one."""
    try:
        return declared_in(json.loads(data))
    except (ValueError, RecursionError):
        return None


def upload(path: Path, server: str | None = None, assignment: str | None = None,
           token_file: Path | None = None, wait: float = 600.0) -> dict[str, Any]:
    """Hand in the notebook at `path`; wait (up to `wait` seconds) for its grading, and return
    the submission with its report (or as it stands when the wait ended)."""
    url, token = find_server(server), find_token(token_file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraderError(f"{path}: cannot be read ({e.strerror or e})") from None
    if assignment is None:
        assignment = declared_assignment(data)
    if assignment is None:
        served = list(_call("GET", f"{url}/api/me", token).get("assignments") or [])
        if len(served) != 1:
            raise GraderError(f"which assignment? give --assignment (the server grades {', '.join(served)})")
        assignment = served[0]
    boundary = secrets.token_hex(16)
    name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/x-ipynb+json\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    sub = _call("POST", f"{url}/api/assignments/{urllib.parse.quote(assignment, safe='')}/submissions", token,
                body, f"multipart/form-data; boundary={boundary}")
    deadline = time.monotonic() + wait
    while sub.get("state") != "done" and time.monotonic() < deadline:
        time.sleep(1.0)
        sub = _call("GET", f"{url}/api/submissions/{sub['id']}", token)
    if sub.get("state") == "done":
        sub = _call("GET", f"{url}/api/submissions/{sub['id']}/report", token)
    sub["url"] = f"{url}{sub.get('feedback_url') or sub.get('status_url') or ''}"
    return sub


def notebook_path() -> Path:
    """The notebook this kernel runs: Jupyter's $JPY_SESSION_NAME, VS Code's __vsc_ipynb_file__,
    else the one notebook in the working folder."""
    for value in (os.environ.get("JPY_SESSION_NAME"), _vscode_file()):
        if value and value.endswith(".ipynb") and Path(value).is_file():
            return Path(value)
    here = sorted(Path.cwd().glob("*.ipynb"))
    if len(here) == 1:
        return here[0]
    raise GraderError("cannot tell which notebook this is: call submit('name.ipynb')")


def _vscode_file() -> str | None:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None
    except Exception:
        return None


def submit(notebook: str | Path | None = None, server: str | None = None, assignment: str | None = None,
           wait: float = 600.0) -> dict[str, Any]:
    """Hand in this notebook (save it first) and print where its feedback is; returns the
    submission (its report once graded)."""
    path = Path(notebook) if notebook is not None else notebook_path()
    try:
        sub = upload(path, server, assignment, wait=wait)
    except GraderError as e:
        print(f"submit: {e}")
        return {"error": str(e)}
    if sub.get("state") == "done":
        score = f"{sub.get('score') or 0:g}/{sub.get('max_score') or 0:g}" if sub.get("status") == "graded" \
            else f"{sub.get('status')}: {sub.get('reason')}"
        print(f"submitted {path.name}: {score}; feedback: {sub['url']}")
    else:
        print(f"submitted {path.name}: {sub.get('message', 'queued')}; follow it at {sub['url']}")
    return sub
