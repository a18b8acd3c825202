"""A simulated LMS for the LTI tests, and the tool beside it, both real servers on loopback.

The LMS has its own RSA key and JWKS, an OIDC authorization endpoint that answers a login with
an auto-posting form carrying the id_token (as Canvas and Moodle do), an OAuth2 token endpoint
that checks the tool's client assertion against the tool's own JWKS, and the AGS line-item and
score endpoints; it records every score it receives. `down` makes its services answer 503.

The tool is the service's application (grader.service.app) over a real SQLite database, served
by uvicorn in a thread, without a grading worker: a test records results itself.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from grader.service import auth
from grader.service.app import build_app
from grader.service.core import Service
from grader.service.lti_store import LtiStore
from grader.service.lti_tokens import LTI
from grader.service.policy import load_config
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, notebook_bytes
from tests.service_support import free_port

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
LEARNER, INSTRUCTOR = MEMBERSHIP + "Learner", MEMBERSHIP + "Instructor"
CLIENT_ID, DEPLOYMENT = "tool-client-1", "deployment-1"


def serve_in_thread(app: Any) -> tuple[uvicorn.Server, int]:
    """`app` served by uvicorn on a free loopback port, in a daemon thread, until should_exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    return server, port


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Lms:
    """The simulated LMS: what it will put in the next id_tokens, and what it received."""

    key: rsa.RSAPrivateKey = field(default_factory=rsa_key)
    kid: str = "lms-key-1"
    tool_url: str = ""
    down: bool = False
    slow_s: float = 0.0  # the token endpoint answers this late (a platform that hangs)
    scores: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    lineitems: dict[str, dict[str, Any]] = field(default_factory=dict)
    launches: dict[str, dict[str, Any]] = field(default_factory=dict)  # login_hint -> claims to send
    members: list[dict[str, Any]] = field(default_factory=list)  # the course's roster (NRPS)
    signer: Any = None  # (claims, lms) -> id_token text; default: RS256 with the LMS's key
    server: Any = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.url

    def start(self) -> Lms:
        self.server, self.port = serve_in_thread(Starlette(routes=[
            Route("/jwks", self.jwks), Route("/auth", self.authorize), Route("/course", self.course), Route("/token", self.token, methods=["POST"]),
            Route("/lineitems", self.lineitems_endpoint, methods=["GET", "POST"]),
            Route("/lineitems/{n}/scores", self.score, methods=["POST"]),
            Route("/memberships", self.memberships)]))
        return self

    def stop(self) -> None:
        self.server.should_exit = True

    def claims(self, sub: str, role: str, resource_link: str = "link-1", **extra: Any) -> dict[str, Any]:
        """A resource link launch's claims (LTI Core 1.3, 5.3) with AGS."""
        t = int(time.time())
        return {"iss": self.issuer, "aud": CLIENT_ID, "sub": sub, "iat": t, "exp": t + 300, "name": f"User {sub}",
                LTI + "message_type": "LtiResourceLinkRequest", LTI + "version": "1.3.0",
                LTI + "deployment_id": DEPLOYMENT, LTI + "roles": [role],
                LTI + "target_link_uri": f"{self.tool_url}/lti/launch",
                LTI + "resource_link": {"id": resource_link},
                "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint": {
                    "scope": ["https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                              "https://purl.imsglobal.org/spec/lti-ags/scope/score"],
                    "lineitems": f"{self.url}/lineitems"}, **extra}

    def sign(self, claims: dict[str, Any]) -> str:
        if self.signer is not None:
            return self.signer(claims, self)
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    async def course(self, request: Request) -> Response:
        """The course page: the assignment's link opened in a frame, as Canvas and Moodle embed it
        (the frame starts the tool's login initiation for the user the hint names)."""
        login = f"{self.tool_url}/lti/login?" + urllib.parse.urlencode({
            "iss": self.issuer, "login_hint": request.query_params.get("hint", ""), "client_id": CLIENT_ID,
            "target_link_uri": f"{self.tool_url}/lti/launch", "lti_deployment_id": DEPLOYMENT})
        if request.query_params.get("page", "").startswith("/"):  # (a page of the tool, once signed in)
            login = self.tool_url + request.query_params["page"]
        return HTMLResponse("<html><head><title>Course: Deep learning</title></head><body style=\"margin:0\">"
                            "<div style=\"background:#394b58;color:#fff;padding:12px\">Course: Deep learning</div>"
                            f"<iframe id=\"tool\" src=\"{html.escape(login)}\" style=\"width:100%;height:640px;"
                            "border:0\"></iframe></body></html>")

    async def jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

    async def authorize(self, request: Request) -> Response:
        """OIDC authorization (form_post): the id_token for the user the login hint names."""
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_mode") != "form_post" or q.get("scope") != "openid":
            return HTMLResponse("bad authorization request", 400)
        claims = dict(self.launches[q["login_hint"]])
        claims.setdefault("nonce", q["nonce"])
        token = self.sign(claims)
        # (an LMS page: it posts the form itself, with a script of its own)
        return HTMLResponse(
            f"<html><body><form id=\"f\" method=\"post\" action=\"{html.escape(q['redirect_uri'])}\">"
            f"<input type=\"hidden\" name=\"id_token\" value=\"{token}\">"
            f"<input type=\"hidden\" name=\"state\" value=\"{html.escape(q['state'])}\"></form>"
            "<script>document.getElementById('f').submit()</script></body></html>")

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if self.down:
            return Response("down for maintenance", 503)
        self.token_requests.append(form)
        assertion = form.get("client_assertion", "")
        try:  # (the LMS checks the tool's signature against the tool's published keys)
            key = jwt.PyJWKClient(f"{self.tool_url}/lti/jwks.json").get_signing_key_from_jwt(assertion).key
            jwt.decode(assertion, key, algorithms=["RS256"], audience=f"{self.url}/token", issuer=CLIENT_ID)
        except jwt.PyJWTError as e:
            return JSONResponse({"error": "invalid_client", "error_description": str(e)}, 401)
        return JSONResponse({"access_token": "lms-token-" + secrets.token_hex(8), "token_type": "Bearer",
                             "expires_in": 3600, "scope": form.get("scope", "")})

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "").startswith("Bearer lms-token-")

    async def lineitems_endpoint(self, request: Request) -> Response:
        if self.down:
            return Response("down", 503)
        if not self._authorized(request):
            return Response("no token", 401)
        if request.method == "GET":
            rid = request.query_params.get("resource_id")
            return JSONResponse([i for i in self.lineitems.values() if rid is None or i["resourceId"] == rid])
        item = await request.json()
        n = str(len(self.lineitems) + 1)
        self.lineitems[n] = {**item, "id": f"{self.url}/lineitems/{n}"}
        return JSONResponse(self.lineitems[n], 201)

    async def memberships(self, request: Request) -> Response:
        """NRPS 2.0 membership container, two members a page (Link: rel="next")."""
        if self.down:
            return Response("down", 503)
        if not self._authorized(request) or "membershipcontainer" not in request.headers.get("accept", ""):
            return Response("refused", 401)
        start = int(request.query_params.get("from", "0"))
        page = self.members[start:start + 2]
        headers = {"Link": f'<{self.url}/memberships?from={start + 2}>; rel="next"'} \
            if start + 2 < len(self.members) else {}
        return JSONResponse({"id": f"{self.url}/memberships", "context": {"id": "course-1"}, "members": page},
                            headers=headers, media_type="application/vnd.ims.lti-nrps.v2.membershipcontainer+json")

    async def score(self, request: Request) -> Response:
        if self.down:
            return Response("down", 503)
        if not self._authorized(request) or "score+json" not in request.headers.get("content-type", ""):
            return Response("refused", 401)
        self.scores.append({**(await request.json()), "lineitem": request.path_params["n"]})
        return Response(status_code=204)


@dataclass
class Tool:
    """The service with its LTI routes, on loopback, registered with the LMS."""

    folder: Path
    lms: Lms
    secure_cookies: bool = False
    config: str = ""  # the service's policies (TOML), if any
    store: Store | None = None
    service: Service | None = None
    server: Any = None
    port: int = 0
    before: str = ""
    assignments: tuple[str, ...] = (ASSIGNMENT,)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Tool:
        self.store = Store(self.folder / "service.sqlite")
        conf = None
        if self.config:
            conf = self.folder / "service.toml"
            conf.write_text(self.config, encoding="utf-8")
        self.service = Service(self.store, load_config(conf, list(self.assignments)), auth.new_key())
        LtiStore(self.store).add_platform(self.lms.issuer, CLIENT_ID, DEPLOYMENT, f"{self.lms.url}/auth",
                                          f"{self.lms.url}/token", f"{self.lms.url}/jwks")
        self.server, self.port = serve_in_thread(build_app(self.service, self.secure_cookies))
        self.before, self.lms.tool_url = self.lms.tool_url, self.url
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.lms.tool_url = self.before  # (the LMS talks to the tool it had before this one again)

    def launch(self, claims: dict[str, Any], client: httpx.Client | None = None,
               hint: str | None = None) -> tuple[httpx.Client, httpx.Response]:
        return launch(self.url, self.lms, claims, client, hint)

    def signed_in(self, claims: dict[str, Any]) -> httpx.Client:
        """A browser signed in by a successful launch (its redirects followed)."""
        c, r = self.launch(claims)
        assert r.status_code == 303, r.text
        return c


def authorize(tool_url: str, lms: Lms, claims: dict[str, Any], client: httpx.Client | None = None,
              hint: str | None = None) -> tuple[httpx.Client, str, dict[str, str]]:
    """A browser's login initiation and the LMS's authorization: the browser (its cookies), and
    the form the LMS has it post back (its action, and its fields: id_token and state)."""
    c = client or httpx.Client(timeout=30)
    hint = hint or secrets.token_hex(6)
    lms.launches[hint] = claims
    r = c.get(f"{tool_url}/lti/login", params={"iss": lms.issuer, "login_hint": hint,
                                              "target_link_uri": f"{tool_url}/lti/launch", "client_id": CLIENT_ID})
    assert r.status_code == 302, r.text
    auth_page = c.get(r.headers["location"])
    assert auth_page.status_code == 200, auth_page.text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', auth_page.text))
    action = html.unescape(re.search(r'action="([^"]+)"', auth_page.text)[1])
    return c, action, {k: html.unescape(v) for k, v in fields.items()}


def launch(tool_url: str, lms: Lms, claims: dict[str, Any], client: httpx.Client | None = None,
           hint: str | None = None) -> tuple[httpx.Client, httpx.Response]:
    """A browser's launch: the login initiation, the LMS's authorization, the form posted back.
    Returns the browser (its cookies) and the tool's answer to the launch (not followed)."""
    c, action, fields = authorize(tool_url, lms, claims, client, hint)
    return c, c.post(action, data=fields)


def upload(tool: Tool, c: httpx.Client, who: str) -> int:
    """Hand in a right notebook through the upload form of a signed-in browser; the attempt's id."""
    page = c.get(f"{tool.url}/a/{ASSIGNMENT}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    r = c.post(f"{tool.url}/a/{ASSIGNMENT}/submit", data={"csrf": csrf},
               files={"file": ("hw.ipynb", notebook_bytes("correct", who))})
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])



# The simulated LMS and a tool registered with it, one pair per test module that imports them.
@pytest.fixture(scope="module", name="lms")
def lms_fixture():
    s = Lms().start()
    yield s
    s.stop()


@pytest.fixture(scope="module", name="tool")
def tool_fixture(lms, tmp_path_factory):
    t = Tool(tmp_path_factory.mktemp("lti"), lms).start()
    yield t
    t.stop()
