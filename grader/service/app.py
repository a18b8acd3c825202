"""The ASGI application (Starlette): the students' and instructors' pages, and the JSON API.

Every request is authenticated by a signed session cookie (pages) or a bearer token (API);
every form and every cookie-authenticated POST carries the session's CSRF token. A student
reaches only their own attempts: another's id answers 404, exactly as an id that does not
exist. Errors are one line: a JSON body `{"error": ...}` under /api, a message page elsewhere.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from grader.service import auth, pages
from grader.service.core import Refused, Service
from grader.service.lti_app import mount as mount_lti
from grader.service.openapi import SPEC
from grader.service.pages import CSP, CSP_STATIC
from grader.service.store import User

STATIC = Path(__file__).parent / "static"
FORM_SLACK = 64 * 1024  # a multipart body's own bytes around the file
EVENTS_S = 900.0  # an event stream ends after this long (the client reconnects)


def bounded(request: Request, limit: int) -> Request:
    """The request, its body refused (413) once past `limit` bytes as it arrives: an upload sent
    without a Content-Length (chunked) is not read, nor spooled to disk, beyond the limit."""
    seen = 0

    async def receive() -> Any:
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise Refused(413, f"the upload is over the limit of {limit - FORM_SLACK} bytes")
        return message

    return Request(request.scope, receive)


def _api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _headers(csp: str) -> dict[str, str]:
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}


def html(text: str, status: int = 200, csp: str = CSP) -> HTMLResponse:
    return HTMLResponse(text, status, headers=_headers(csp))


def build_app(service: Service, secure_cookies: bool = False) -> Starlette:
    """The application over a Service."""
    store, key = service.store, service.key

    def who(request: Request) -> tuple[User | None, str]:
        """The request's user (bearer token or session cookie) and its cookie ("" for a token)."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            user, why = store.token_user(auth.token_hash(header[7:]))
            if user is None:
                raise Refused(401, why)
            return user, ""
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        token = auth.session_token(key, cookie)
        user = store.token_user(token)[0] if token else None  # (the token still valid, its user active)
        if user is None:
            return None, ""
        return user, cookie or ""

    def need(request: Request, role: str | None = None) -> tuple[User, str]:
        user, cookie = who(request)
        if user is None:
            raise Refused(401, "log in first: open your personal link, or send your token (Authorization: Bearer)")
        if role and user.role != role:
            raise Refused(403, f"for {role}s only")
        asg = request.path_params.get("assignment")
        if role == "instructor" and asg is not None and not store.teaches(user, asg):
            raise Refused(403, f"you are not an instructor of {asg}")
        return user, cookie

    def csrf(cookie: str, given: str | None) -> None:
        if cookie and not auth.csrf_ok(key, cookie, given):  # (a bearer token needs none: no cookie)
            raise Refused(403, "the form is out of date (no valid CSRF token): reload the page and try again")

    def error(request: Request, e: Refused) -> Response:
        headers = {"Retry-After": str(max(1, int(e.retry_after)))} if e.retry_after else {}
        if e.status == 413:  # (the rest of the body is not wanted: the connection ends with the answer)
            headers["Connection"] = "close"
        if _api(request):
            return JSONResponse({"error": e.message}, e.status, headers={**headers, "Cache-Control": "no-store"})
        if e.status == 401 and request.method == "GET":
            return RedirectResponse("/login", 303)
        user, cookie = None, ""
        try:
            user, cookie = who(request)
        except Refused:
            pass
        page = pages.message(f"Error {e.status}", e.message, user, auth.csrf_token(key, cookie) if cookie else "")
        return HTMLResponse(page, e.status, headers={**headers, **_headers(CSP)})

    def endpoint(fn: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except Refused as e:
                return error(request, e)
        return run

    # ---------------------------------------------------------------- login

    async def login_page(request: Request) -> Response:
        pre = auth.new_key()
        resp = html(pages.login(pre))
        resp.set_cookie("nngrader_pre", pre, httponly=True, samesite="strict", secure=secure_cookies)
        return resp

    async def login(request: Request) -> Response:
        form = await request.form()
        pre = request.cookies.get("nngrader_pre")
        if not pre or not hmac.compare_digest(str(form.get("csrf") or ""), pre):
            # (double submit: a form posted from another site comes without this cookie)
            raise Refused(403, "the login form is out of date: reload the page and try again")
        token = auth.token_hash(str(form.get("token") or ""))
        user, why = store.token_user(token)
        if user is None:
            fresh = auth.new_key()
            resp = html(pages.login(fresh, why), 401)
            resp.set_cookie("nngrader_pre", fresh, httponly=True, samesite="strict", secure=secure_cookies)
            return resp
        resp = RedirectResponse("/", 303)
        resp.set_cookie(auth.SESSION_COOKIE, auth.session_cookie(key, token), max_age=auth.SESSION_S,
                        httponly=True, samesite="lax", secure=secure_cookies)
        resp.delete_cookie("nngrader_pre")
        return resp

    async def logout(request: Request) -> Response:
        user, cookie = need(request)
        csrf(cookie, (await request.form()).get("csrf"))
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(auth.SESSION_COOKIE)
        return resp

    # ---------------------------------------------------------------- students' pages

    async def home(request: Request) -> Response:
        user, cookie = need(request)
        return html(pages.home(user, service.assignments, auth.csrf_token(key, cookie)))

    async def upload_page(request: Request) -> Response:
        user, cookie = need(request, "student")
        asg = request.path_params["assignment"]
        p = service.policy(asg)
        mine = store.attempts(user.id, asg)
        counted = service.counted(mine, asg)
        return html(pages.upload(asg, p.describe(), auth.csrf_token(key, cookie), mine,
                                 counted.id if counted else None, user))

    async def read_upload(request: Request, user: User, asg: str) -> tuple[str, bytes, Any]:
        p = service.policy(asg)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > p.max_upload + FORM_SLACK:
            raise Refused(413, f"the upload is {int(length)} bytes, over the limit of {p.max_upload} bytes")
        try:
            form = await bounded(request, p.max_upload + FORM_SLACK).form(max_files=1, max_fields=5)
        except Refused:
            raise
        except Exception as e:  # (a body that is not multipart, a form with too many parts)
            raise Refused(400, f"not a notebook upload (multipart/form-data with a field 'file'): {e}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Refused(400, "no file in the upload (the field is 'file')")
        data = await upload.read(p.max_upload + 1)
        name = upload.filename or "notebook.ipynb"
        service.check_upload(user, asg, name, data, time.time())
        await run_in_threadpool(service.check_notebook, name, data)
        return name, data, form

    async def submit_form(request: Request) -> Response:
        user, cookie = need(request, "student")
        asg = request.path_params["assignment"]
        service.policy(asg)
        if request.headers.get("content-type", "").startswith("multipart/"):
            name, data, form = await read_upload(request, user, asg)
            csrf(cookie, form.get("csrf"))
        else:
            raise Refused(400, "not a notebook upload (multipart/form-data with a field 'file')")
        aid = await service.accept(user, asg, name, data)
        return RedirectResponse(f"/s/{aid}", 303)

    async def status_page(request: Request) -> Response:
        user, cookie = need(request)
        a = service.visible_attempt(user, _id(request), with_report=False)
        return html(pages.status(a, store.queue_position(a.id), user, auth.csrf_token(key, cookie)))

    async def feedback_page(request: Request) -> Response:
        user, _ = need(request)
        a = service.visible_attempt(user, _id(request))
        if a.status is None:
            return RedirectResponse(f"/s/{a.id}", 303)
        links = [("/", "Home"), (f"/a/{a.assignment}", "Hand in again")] if user.role == "student" else \
            [(f"/i/{a.assignment}/gradebook", "Gradebook")]
        return html(pages.with_nav(service.feedback_html(a), links), csp=CSP_STATIC)

    async def history(request: Request) -> Response:
        user, cookie = need(request, "student")
        mine = store.attempts(user.id)
        counted = {c.id for c in (service.counted([a for a in mine if a.assignment == asg], asg)
                                  for asg in service.assignments) if c is not None}
        body = ["<h1>Your submissions</h1>", pages.attempts_table(mine, counted) if mine else "<p>None yet.</p>"]
        return html(pages.page("History", body, user, auth.csrf_token(key, cookie)))

    # ---------------------------------------------------------------- instructors' pages

    async def dashboard(request: Request) -> Response:
        need(request, "instructor")
        asg = request.path_params["assignment"]
        service.policy(asg)
        page, _ = service.dashboard_html(asg)
        page = page.replace("<head>", "<head><meta http-equiv=\"refresh\" content=\"15\">", 1)  # (live)
        return html(pages.with_nav(page, [("/", "Home"), (f"/i/{asg}/gradebook", "Gradebook"),
                                          (f"/i/{asg}/lti", "Grades sent to the LMS")]), csp=CSP_STATIC)

    async def dashboard_feedback(request: Request) -> Response:
        need(request, "instructor")
        asg = request.path_params["assignment"]
        _, names = service.dashboard_html(asg)
        student = next((s for s, n in names.items() if n == request.path_params["name"]), None)
        rows, by, counted = service.class_rows(asg)
        aid = counted.get(student or "")
        if aid is None:
            raise Refused(404, "no graded attempt of this student")
        return RedirectResponse(f"/s/{aid}/feedback", 303)

    async def gradebook(request: Request) -> Response:
        user, cookie = need(request, "instructor")
        asg = request.path_params["assignment"]
        service.policy(asg)
        _, by, counted = service.class_rows(asg)
        return html(pages.gradebook(asg, store.users("student"), by, counted, user, auth.csrf_token(key, cookie)))

    async def regrade(request: Request) -> Response:
        user, cookie = need(request, "instructor")
        asg = request.path_params["assignment"]
        service.policy(asg)
        if cookie:
            csrf(cookie, (await request.form()).get("csrf") or request.headers.get("x-csrf-token"))
        n = store.regrade(asg)
        if _api(request):
            return JSONResponse({"queued": n}, 202)
        return RedirectResponse(f"/i/{asg}/gradebook", 303)

    async def export(request: Request) -> Response:
        need(request, "instructor")
        asg = request.path_params["assignment"]
        name, text = service.export(asg, request.query_params.get("format", "grades"),
                                    request.query_params.get("column"))
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename=\"{name}\"", "Cache-Control": "no-store"})

    # ---------------------------------------------------------------- the JSON API

    def attempt_json(a: Any) -> dict[str, Any]:
        pos = store.queue_position(a.id) if a.state == "queued" else None
        return {"id": a.id, "assignment": a.assignment, "filename": a.filename, "submitted_at": a.submitted_at,
                "state": a.state, "position": pos, "message": pages.attempt_state(a, pos),
                "status": a.status, "reason": a.reason, "score": a.score, "max_score": a.max_score,
                "status_url": f"/s/{a.id}", "feedback_url": f"/s/{a.id}/feedback"}

    async def api_me(request: Request) -> Response:
        user, _ = need(request)
        return JSONResponse({"id": user.id, "name": user.name, "role": user.role,
                             "assignments": {a: service.policy(a).describe() for a in service.assignments}})

    async def api_submit(request: Request) -> Response:
        user, cookie = need(request, "student")
        asg = request.path_params["assignment"]
        name, data, form = await read_upload(request, user, asg)
        csrf(cookie, request.headers.get("x-csrf-token") or form.get("csrf"))
        aid = await service.accept(user, asg, name, data)
        return JSONResponse(attempt_json(store.attempt(aid, False)), 202)

    async def api_list(request: Request) -> Response:
        user, _ = need(request, "student")
        return JSONResponse([attempt_json(a) for a in store.attempts(user.id)])

    async def api_attempt(request: Request) -> Response:
        user, _ = need(request)
        return JSONResponse(attempt_json(service.visible_attempt(user, _id(request), False)))

    async def api_events(request: Request) -> Response:
        """Server-Sent Events: the submission's state each time it changes, until it is done."""
        user, _ = need(request)
        first = service.visible_attempt(user, _id(request), False)

        async def events() -> Any:
            last = None
            deadline = time.monotonic() + EVENTS_S
            while time.monotonic() < deadline and not await request.is_disconnected():
                now = attempt_json(store.attempt(first.id, False))
                if now != last:
                    yield f"data: {json.dumps(now)}\n\n"
                    last = now
                    if now["state"] == "done":
                        return
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def api_report(request: Request) -> Response:
        user, _ = need(request)
        a = service.visible_attempt(user, _id(request))
        if a.status is None:
            raise Refused(409, f"submission {a.id} is not graded yet ({a.state})")
        g = service.grade(a)
        return JSONResponse({**attempt_json(a), "final": g.final, "late": g.late.to_dict(),
                             "report": service.student_report(a)})

    async def api_gradebook(request: Request) -> Response:
        need(request, "instructor")
        asg = request.path_params["assignment"]
        service.policy(asg)
        _, by, counted = service.class_rows(asg)
        return JSONResponse({uid: {"counted": counted.get(uid), "attempts": [attempt_json(a) for a in mine]}
                             for uid, mine in by.items()})

    async def openapi(request: Request) -> Response:
        return JSONResponse(SPEC)

    async def static(request: Request) -> Response:
        return FileResponse(STATIC / "app.js", media_type="text/javascript",
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # (no icon; a 404 would be an error in the browser's console)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "queue": store.queue_counts()})

    routes = [
        Route("/", endpoint(home)), Route("/login", endpoint(login_page), methods=["GET"]),
        Route("/login", endpoint(login), methods=["POST"]), Route("/logout", endpoint(logout), methods=["POST"]),
        Route("/history", endpoint(history)),
        Route("/a/{assignment}", endpoint(upload_page)),
        Route("/a/{assignment}/submit", endpoint(submit_form), methods=["POST"]),
        Route("/s/{id}", endpoint(status_page)), Route("/s/{id}/feedback", endpoint(feedback_page)),
        Route("/i/{assignment}/", endpoint(dashboard)),
        Route("/i/{assignment}/feedback/{name}.html", endpoint(dashboard_feedback)),
        Route("/i/{assignment}/gradebook", endpoint(gradebook)),
        Route("/i/{assignment}/regrade", endpoint(regrade), methods=["POST"]),
        Route("/i/{assignment}/export.csv", endpoint(export)),
        Route("/api/openapi.json", endpoint(openapi)), Route("/api/health", endpoint(health)),
        Route("/api/me", endpoint(api_me)),
        Route("/api/assignments/{assignment}/submissions", endpoint(api_submit), methods=["POST"]),
        Route("/api/assignments/{assignment}/gradebook", endpoint(api_gradebook)),
        Route("/api/assignments/{assignment}/regrade", endpoint(regrade), methods=["POST"]),
        Route("/api/submissions", endpoint(api_list)),
        Route("/api/submissions/{id}", endpoint(api_attempt)),
        Route("/api/submissions/{id}/report", endpoint(api_report)),
        Route("/api/submissions/{id}/events", endpoint(api_events)),
        Route("/static/app.js", static), Route("/favicon.ico", favicon),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed, 500: _internal})
    mount_lti(app, service, secure_cookies)  # (the LTI 1.3 tool's routes; docs/lti.md)
    return app


def _id(request: Request) -> int:
    text = request.path_params["id"]
    if not text.isdigit() or len(text) > 15:
        raise Refused(404, f"no submission {text[:40]!r}")
    return int(text)


def _plain_error(request: Request, status: int, text: str) -> Response:
    if _api(request):
        return JSONResponse({"error": text}, status)
    return HTMLResponse(pages.message(f"Error {status}", text), status, headers=_headers(CSP))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _plain_error(request, 404, f"no page {request.url.path[:200]}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _plain_error(request, 405, f"{request.method} is not allowed on {request.url.path[:200]}")


async def _internal(request: Request, exc: Exception) -> Response:
    return _plain_error(request, 500, f"the server failed on this request ({type(exc).__name__})")
