"""The service as an LTI 1.3 tool: its routes, mounted on the application by `mount`.

- /lti/login: OIDC third-party login initiation (GET or POST from the platform): a fresh
  state (also set as a cookie, binding the launch to this browser) and nonce, stored with an
  expiry, then a redirect to the platform's authorization endpoint
- /lti/launch: the id_token posted back, checked (grader.service.lti_tokens), its nonce spent;
  a resource link signs the user in with their LMS role on its assignment's page, a Deep
  Linking request lets an instructor pick the assignment to place
- /lti/check and /lti/resume: the session cookie confirmed inside the LMS frame, else a page
  with a link opening the tool in a new tab (where the cookie is first-party)
- /lti/jwks.json and /lti/config.json: the tool's public keys and its configuration
- /i/{assignment}/lti: the instructor's view of the grade passbacks, pending, sent or failed
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from grader.batch.pages import esc, table
from grader.service import auth, pages
from grader.service.core import Refused, Service
from grader.service.lti_store import LtiStore, Member
from grader.service.lti_tokens import (
    AGS,
    DL,
    LTI,
    NRPS_CLAIM,
    LaunchError,
    check_id_token,
    deep_link_response,
    jwks,
    service_role,
    signing_key,
)
from grader.service.store import User

STATE_COOKIE = "nngrader_lti_"  # + the state's first characters (several launches at once keep theirs)
RESUME_S = 120


def _origin(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def _page(title: str, body: list[str], status: int = 200, csp: str = pages.CSP) -> HTMLResponse:
    return HTMLResponse(pages.page(title, body), status, headers={
        "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store"})


def _local(path: str | None) -> str:
    """A redirect target on this server only (never another site: an open redirect)."""
    return path if path and path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _obj(claims: dict[str, Any], name: str) -> dict[str, Any]:
    """A claim that must be a JSON object ({} when absent or of another type)."""
    value = claims.get(name)
    return value if isinstance(value, dict) else {}


def mount(app: Starlette, service: Service, secure_cookies: bool) -> None:
    """Add the LTI routes to the application, and let the registered platforms frame its pages."""
    lti = LtiStore(service.store)
    store, key = service.store, service.key
    signing_key(lti)  # (the tool's key pair, made and stored on the first start)

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def cookie_kwargs(top_level: bool = False) -> dict[str, Any]:
        # Inside the LMS frame a cookie is third-party: only SameSite=None (which needs Secure) is
        # sent there; over plain HTTP (a test, a laptop) Lax is the best a browser accepts.
        if secure_cookies and not top_level:
            return {"samesite": "none", "secure": True, "httponly": True}
        return {"samesite": "lax", "secure": secure_cookies, "httponly": True}

    def signed_in(resp: Response, uid: str, top_level: bool = False) -> Response:
        """A session for `uid` on this response: a token of its own (a session is bound to a token,
        grader.service.auth), kept as long as the session, beside the user's other tokens."""
        token = auth.token_hash(auth.new_token())
        store.add_token(uid, token, time.time() + auth.SESSION_S, replace=False)
        resp.set_cookie(auth.SESSION_COOKIE, auth.session_cookie(key, token), max_age=auth.SESSION_S,
                        **cookie_kwargs(top_level))
        return resp

    def session_user(request: Request) -> User | None:
        token = auth.session_token(key, request.cookies.get(auth.SESSION_COOKIE))
        return store.token_user(token)[0] if token else None

    def failed(message: str, status: int = 400, heading: str = "The LMS launch failed") -> HTMLResponse:
        return _page(f"Error {status}", [f"<h1>{esc(heading)}</h1><p class=\"error\" id=\"message\">"
                                         f"{esc(message)}</p>"], status)

    def resume_token(uid: str) -> str:
        text = base64.urlsafe_b64encode(f"{uid}|{int(time.time()) + RESUME_S}|{secrets.token_hex(8)}".encode())
        mac = hmac.new(bytes.fromhex(key), b"resume|" + text, hashlib.sha256).hexdigest()
        return f"{text.decode()}.{mac}"

    def resume_user(token: str) -> str | None:
        text, _, mac = token.partition(".")
        good = hmac.new(bytes.fromhex(key), b"resume|" + text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode(), good.encode()):
            return None
        try:
            uid, expiry, _ = base64.urlsafe_b64decode(text.encode()).decode().rsplit("|", 2)
            expiry = int(expiry)
        except ValueError:
            return None
        if expiry < time.time() or not lti.use_nonce("", f"resume:{mac}", float(expiry)):
            return None  # (expired, or used once already)
        return uid

    # ------------------------------------------------------------ login initiation

    async def login(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        iss, hint = params.get("iss", ""), params.get("login_hint", "")
        if not iss or not hint:
            return failed("a login initiation needs iss and login_hint (OIDC third-party login)")
        found = [p for p in lti.platforms(iss, params.get("client_id"))
                 if not params.get("lti_deployment_id") or p.deployment_id == params["lti_deployment_id"]]
        if not found:
            return failed(f"the platform {iss!r} is not registered with this tool "
                          "(grade serve lti add-platform)", 403)
        platform = found[0]
        target = params.get("target_link_uri", "")
        if target and _origin(target) != _origin(base(request)):
            return failed("the target_link_uri is not on this tool")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        keep = {k: params[k] for k in ("iss", "login_hint", "lti_message_hint", "target_link_uri", "client_id",
                                       "lti_deployment_id") if params.get(k)}
        lti.add_state(state, nonce, platform.id, keep)
        query = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
                 "client_id": platform.client_id, "redirect_uri": f"{base(request)}/lti/launch",
                 "login_hint": hint, "state": state, "nonce": nonce}
        if params.get("lti_message_hint"):
            query["lti_message_hint"] = params["lti_message_hint"]
        sep = "&" if "?" in platform.auth_login_url else "?"
        resp = RedirectResponse(f"{platform.auth_login_url}{sep}{urllib.parse.urlencode(query)}", 302)
        resp.set_cookie(STATE_COOKIE + state[:12], state, max_age=600, **cookie_kwargs())
        return resp

    # ------------------------------------------------------------ the launch

    async def launch(request: Request) -> Response:
        form = await request.form()
        if form.get("error"):
            return failed(f"the LMS refused the login: {form.get('error')} {form.get('error_description') or ''}")
        state, token = str(form.get("state") or ""), str(form.get("id_token") or "")
        if not state or not token:
            return failed("the launch carries no state or id_token")
        held = lti.state(state)
        if held is None:
            return failed("this login is unknown or expired (over ten minutes old, or used): launch again", 401)
        nonce, platform_id, params = held
        cookie = request.cookies.get(STATE_COOKIE + state[:12])
        if cookie is None:  # (the browser would not keep the state cookie in the LMS frame)
            again = "/lti/login?" + urllib.parse.urlencode(params)
            return _page("Open in a new tab", [
                "<h1>Open in a new tab</h1><p id=\"message\">Your browser blocks the cookies this tool needs inside"
                " the course page.</p>", f"<p><a href=\"{esc(again)}\" target=\"_blank\" rel=\"noopener\">"
                "Open the assignment in a new tab</a></p>"], 401)
        if not hmac.compare_digest(cookie.encode(), state.encode()):
            return failed("the launch's state is not this browser's login (Security Framework: state)", 403)
        try:
            platform, claims = check_id_token(lti, token, nonce, platform_id)
        except LaunchError as e:
            return failed(str(e), 401)
        if not lti.use_nonce(state, nonce, float(claims["exp"])):
            return failed("this id_token was used already (a replayed nonce)", 401)
        roles = claims.get(LTI + "roles")
        role = service_role([str(r) for r in roles] if isinstance(roles, list) else [])
        if role is None:
            return failed("your role in this course is neither learner nor instructor: this tool has no page "
                          "for it", 403)
        store.set_meta("lti_public_url", base(request))
        uid = f"lti-{platform.id}-{claims['sub']}"[:200]
        name = claims.get("name") or " ".join(filter(None, [claims.get("given_name"), claims.get("family_name")]))
        store.put_user(User(uid, str(name or claims["sub"])[:200], str(claims.get("email") or "")[:200], "",
                            role, True))
        nrps, context = _obj(claims, NRPS_CLAIM), _obj(claims, LTI + "context")
        if str(nrps.get("context_memberships_url") or "").startswith(("https://", "http://")) and context.get("id"):
            lti.set_roster(platform.id, str(context["id"]), str(nrps["context_memberships_url"]),
                           str(context.get("title") or ""))
        if claims[LTI + "message_type"] == "LtiDeepLinkingRequest":
            if role != "instructor":
                return failed("only an instructor places assignments in the course", 403)
            return deep_linking(claims, platform)
        assignment = resource_assignment(platform.id, claims)
        if assignment is None:
            return failed("this link names no assignment of this tool: place it again through the tool's "
                          f"assignment picker (this tool serves {', '.join(service.assignments)})", 404)
        store.grant(uid, assignment, role)  # (this course's role: it may differ in another course)
        if role == "student":
            ags = _obj(claims, AGS)
            lti.set_member(Member(uid, assignment, platform.id, str(claims["sub"]), str(ags.get("lineitems") or ""),
                                  str(ags.get("lineitem") or ""), " ".join(map(str, ags.get("scope") or []))))
        to = f"/a/{assignment}" if role == "student" else f"/i/{assignment}/"
        resp = RedirectResponse("/lti/check?" + urllib.parse.urlencode({"to": to, "r": resume_token(uid)}), 303)
        resp.delete_cookie(STATE_COOKIE + state[:12])
        return signed_in(resp, uid)

    def resource_assignment(platform_id: int, claims: dict[str, Any]) -> str | None:
        """The link's assignment: the one Deep Linking placed (custom parameter), else the one
        this link was first launched with, else the only one served."""
        link = str(_obj(claims, LTI + "resource_link").get("id") or "")
        if not link:
            return None
        custom = str(_obj(claims, LTI + "custom").get("assignment") or "")
        known = lti.link(platform_id, link)
        chosen = custom if custom in service.policies else known if known in service.policies else \
            service.assignments[0] if len(service.assignments) == 1 else None
        if chosen is not None and chosen != known:
            lti.set_link(platform_id, link, chosen)
        return chosen

    def deep_linking(claims: dict[str, Any], platform: Any) -> Response:
        settings = _obj(claims, DL + "deep_linking_settings")
        back = str(settings.get("deep_link_return_url") or "")
        if not back.startswith(("https://", "http://")):
            return failed("the Deep Linking request has no return address")
        tool = store.meta("lti_public_url") or ""
        forms = []
        for asg in service.assignments:
            item = {"type": "ltiResourceLink", "title": asg, "url": f"{tool}/lti/launch",
                    "custom": {"assignment": asg}, "lineItem": {"label": asg, "resourceId": asg,
                                                                 "scoreMaximum": max_score(asg)}}
            jwt_text = deep_link_response(lti, platform, claims[LTI + "deployment_id"], settings.get("data"), [item])
            forms.append(f"<form method=\"post\" action=\"{esc(back)}\"><input type=\"hidden\" name=\"JWT\" "
                         f"value=\"{esc(jwt_text)}\"><button>Place {esc(asg)}</button></form>")
        csp = pages.CSP.replace("form-action 'self'", f"form-action 'self' {_origin(back)}")
        return _page("Choose the assignment", ["<h1>Which assignment does this link open?</h1>", *forms], csp=csp)

    def max_score(assignment: str) -> float:
        done = [a for a in store.attempts(assignment=assignment) if a.max_score]
        return float(done[0].max_score) if done else 100.0

    # ------------------------------------------------------------ the cookie inside the frame

    async def check(request: Request) -> Response:
        to, r = _local(request.query_params.get("to")), request.query_params.get("r", "")
        if session_user(request) is not None:
            return RedirectResponse(to, 303)
        resume = "/lti/resume?" + urllib.parse.urlencode({"to": to, "r": r})
        return _page("Open in a new tab", [
            "<h1>Open in a new tab</h1><p id=\"message\">Your browser blocks the cookie this tool needs inside the "
            "course page, so it cannot keep you signed in here.</p>",
            f"<p><a href=\"{esc(resume)}\" target=\"_blank\" rel=\"noopener\">Open the assignment in a new tab</a>"
            " (you stay signed in there)</p>"], 401)

    async def resume(request: Request) -> Response:
        to = _local(request.query_params.get("to"))
        uid = resume_user(request.query_params.get("r", ""))
        if uid is None or store.user(uid) is None:
            return failed("this link has expired or was used: launch the assignment again from the course", 401)
        return signed_in(RedirectResponse(to, 303), uid, top_level=True)

    # ------------------------------------------------------------ the tool's keys and configuration

    async def keyset(request: Request) -> Response:
        return JSONResponse(jwks(lti), headers={"Cache-Control": "max-age=300"})

    async def config(request: Request) -> Response:
        return JSONResponse(tool_config(base(request), service.assignments))

    async def passbacks(request: Request) -> Response:
        user = session_user(request)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            user, _ = store.token_user(auth.token_hash(header[7:]))
        if user is None:
            return RedirectResponse("/login", 303)
        asg = request.path_params["assignment"]
        if not store.teaches(user, asg):
            return failed("for instructors of this assignment only", 403, "Error 403")
        try:
            service.policy(asg)
        except Refused as e:
            return failed(e.message, e.status, f"Error {e.status}")
        rows = [[pb.user_id, str(pb.job_id), pb.state, str(pb.tries),
                 "" if pb.score.get("scoreGiven") is None else f"{pb.score['scoreGiven']:g}/{pb.score['scoreMaximum']:g}",
                 time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(pb.sent_at)) if pb.sent_at else
                 (time.strftime("next try %H:%M:%S UTC", time.gmtime(pb.next_try)) if pb.state == "pending" else ""),
                 pb.error] for pb in lti.passbacks(asg)]
        cells = [[esc(c) for c in r] for r in rows]
        counts = {s: sum(1 for r in rows if r[2] == s) for s in ("pending", "sent", "failed")}
        body = [f"<h1>Grades sent to the LMS: {esc(asg)}</h1>",
                f"<p id=\"counts\">{counts['sent']} sent, {counts['pending']} pending, {counts['failed']} failed</p>",
                table(["Student", "Result", "State", "Tries", "Score", "Sent / next try", "Why not sent"], cells,
                      "passbacks")
                if rows else "<p>No grade to send yet.</p>"]
        return _page("Grade passback", body)

    app.router.routes.extend([
        Route("/lti/login", login, methods=["GET", "POST"]), Route("/lti/launch", launch, methods=["POST"]),
        Route("/lti/check", check), Route("/lti/resume", resume),
        Route("/lti/jwks.json", keyset), Route("/lti/config.json", config),
        Route("/i/{assignment}/lti", passbacks)])
    app.add_middleware(FrameAncestors, lti=lti)


class FrameAncestors:
    """Let the registered platforms (and only them) show the service's pages in their frame:
    `frame-ancestors 'none'` becomes the platforms' origins (ASGI middleware)."""

    def __init__(self, app: Any, lti: LtiStore):
        self.app, self.lti = app, lti

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # (the LMS's pages are on one of these: Moodle's issuer is its site; Canvas's course pages
        # are on the school's own host, the one of its token URL, not on its issuer's)
        origins = sorted({_origin(u) for p in self.lti.platforms()
                          for u in (p.issuer, p.auth_login_url, p.auth_token_url)
                          if u.startswith(("https://", "http://"))})
        allowed = ("frame-ancestors 'self' " + " ".join(origins)).encode()

        async def framed(message: Any) -> None:
            if message["type"] == "http.response.start" and origins:
                message["headers"] = [(k, v.replace(b"frame-ancestors 'none'", allowed))
                                      if k.lower() == b"content-security-policy" else (k, v)
                                      for k, v in message.get("headers", [])]
            await send(message)

        await self.app(scope, receive, framed)


def tool_config(url: str, assignments: list[str]) -> dict[str, Any]:
    """The tool's configuration as Canvas reads it (Developer Keys -> LTI Key -> Paste JSON);
    the same addresses go in Moodle's manual configuration (docs/lti.md)."""
    launch = f"{url}/lti/launch"
    return {
        "title": "nngrader", "description": "Hand in neural-network notebooks; graded with feedback.",
        "oidc_initiation_url": f"{url}/lti/login", "target_link_uri": launch, "public_jwk_url": f"{url}/lti/jwks.json",
        "redirect_uris": [launch],
        "scopes": ["https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                   "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
                   "https://purl.imsglobal.org/spec/lti-ags/scope/score",
                   "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"],
        "extensions": [{"platform": "canvas.instructure.com", "privacy_level": "public", "settings": {
            "placements": [{"placement": p, "message_type": "LtiDeepLinkingRequest", "target_link_uri": launch}
                           for p in ("assignment_selection", "link_selection")]}}],
        "custom_fields": {},
    }
