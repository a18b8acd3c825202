"""The service as an LTI 1.3 tool, against a simulated LMS (tests/lti_support.py): both real
servers on loopback, real SQLite, real RSA keys and signatures.

Each test names, in its docstring, the check of the specifications it pins down:
"SF" is the 1EdTech Security Framework 1.0, "Core" LTI Core 1.3, "DL" Deep Linking 2.0 and
"AGS" Assignment and Grade Services 2.0.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time

import httpx
import jwt
import pytest

from grader.service.lti_store import KEY_GRACE_S, LtiStore
from grader.service.lti_tokens import DL, LTI, jwks, new_key, service_role, signing_key
from tests.batch_support import ASSIGNMENT
from tests.lti_support import (
    CLIENT_ID,
    DEPLOYMENT,
    INSTRUCTOR,
    LEARNER,
    MEMBERSHIP,
    Lms,
    Tool,
    authorize,
    lms_fixture,  # noqa: F401 (the fixture lms)
    rsa_key,
    tool_fixture,  # noqa: F401 (the fixture tool)
    upload,
)


def message(r: httpx.Response) -> str:
    return html.unescape(re.search(r'id="message">([^<]*)<', r.text)[1])


def refused(tool: Tool, claims: dict, status: int = 401) -> str:
    """The one-line reason the tool gives for refusing this launch (and no session was set)."""
    c, r = tool.launch(claims)
    assert r.status_code == status, r.text
    assert "nngrader_session" not in c.cookies
    return message(r)


# ---------------------------------------------------------------- launches that succeed


def test_a_learner_launch_signs_in_a_student_on_the_assignment_upload_page(tool, lms):
    """Core 5.3 (required claims) and the role mapping: Learner -> student; the resource link
    leads to the upload page of the service's assignment."""
    c, r = tool.launch(lms.claims("learner-1", LEARNER))
    assert r.status_code == 303 and r.headers["location"].startswith("/lti/check?")
    page = c.get(tool.url + r.headers["location"], follow_redirects=True)
    assert page.status_code == 200 and str(page.url).endswith(f"/a/{ASSIGNMENT}")
    me = c.get(f"{tool.url}/api/me").json()
    assert me["role"] == "student" and me["name"] == "User learner-1"


@pytest.mark.parametrize("role", [INSTRUCTOR, MEMBERSHIP.rstrip("#") + "/Instructor#TeachingAssistant",
                                  "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"])
def test_instructor_ta_and_administrator_launches_open_the_dashboard(tool, lms, role):
    """Core A.2 roles: Instructor, TeachingAssistant (a sub-role of Instructor) and a system
    Administrator are the service's instructors."""
    c, r = tool.launch(lms.claims(f"staff-{abs(hash(role))}", role))
    assert r.status_code == 303
    assert c.get(tool.url + r.headers["location"]).headers["location"] == f"/i/{ASSIGNMENT}/"
    assert c.get(f"{tool.url}/api/me").json()["role"] == "instructor"


def test_roles_map_by_their_course_membership_not_by_an_institution_role_or_a_sub_role():
    """Core A.2.2-A.2.3: a Learner whose institution role is Instructor, or whose sub-role is
    named #Instructor, stays a student; a Mentor or a Guest has no role here."""
    inst = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"
    assert service_role([LEARNER, inst]) == "student"
    assert service_role([MEMBERSHIP.rstrip("#") + "/Learner#Instructor"]) == "student"
    assert service_role(["Learner"]) == "student" and service_role(["Instructor"]) == "instructor"
    assert service_role([MEMBERSHIP + "Mentor"]) is None and service_role([inst]) is None


# ---------------------------------------------------------------- attacks on the launch


def test_a_replayed_id_token_is_refused_with_its_state_or_with_a_fresh_login(tool, lms):
    """SF 5.1.3 step 9 (nonce) and 5.1.1 (state): a launch's state and nonce are spent once;
    posting a captured id_token again, or after a new login, signs no one in."""
    old_token, old_state = _last_post(tool, lms, "replay-1")
    again = httpx.post(f"{tool.url}/lti/launch", data={"id_token": old_token, "state": old_state},
                       cookies={f"nngrader_lti_{old_state[:12]}": old_state})
    assert again.status_code == 401 and "unknown or expired" in message(again)
    assert "nngrader_session" not in again.cookies
    # a fresh login (new state and nonce) with the old token: its nonce is not this login's
    c = httpx.Client(timeout=30)
    r = c.get(f"{tool.url}/lti/login", params={"iss": lms.issuer, "login_hint": "captured"})
    state = dict(httpx.QueryParams(r.headers["location"].split("?", 1)[1]))["state"]
    replay = c.post(f"{tool.url}/lti/launch", data={"id_token": old_token, "state": state})
    assert replay.status_code == 401 and "nonce" in message(replay)


def test_a_login_state_older_than_ten_minutes_is_refused(tool, lms):
    """SF 5.1.1 (state) with an expiry: a launch posted after the login's state expired signs
    no one in, even with its cookie and a valid token."""
    c = httpx.Client(timeout=30)
    lms.launches["late"] = lms.claims("late-1", LEARNER)
    r = c.get(f"{tool.url}/lti/login", params={"iss": lms.issuer, "login_hint": "late"})
    page = c.get(r.headers["location"]).text
    state = re.search(r'name="state" value="([^"]+)"', page)[1]
    with tool.store.transaction() as db:
        db.execute("UPDATE lti_states SET expires = ? WHERE state = ?", (time.time() - 1, state))
    late = c.post(f"{tool.url}/lti/launch", data={"state": state,
                                                 "id_token": re.search(r'name="id_token" value="([^"]+)"', page)[1]})
    assert late.status_code == 401 and "expired" in message(late) and "nngrader_session" not in c.cookies


def test_a_nonce_is_spent_once_in_the_database(tool):
    """SF 5.1.3 step 9: the store refuses a nonce it has seen, even under another state."""
    lti = LtiStore(tool.store)
    assert lti.use_nonce("s-a", "nonce-x", time.time() + 60)
    assert not lti.use_nonce("s-b", "nonce-x", time.time() + 60)


def _last_post(tool: Tool, lms: Lms, sub: str) -> tuple[str, str]:
    """An id_token and state exactly as the LMS posted them for `sub` (a captured launch)."""
    c = httpx.Client(timeout=30)
    lms.launches["captured"] = lms.claims(sub, LEARNER)
    r = c.get(f"{tool.url}/lti/login", params={"iss": lms.issuer, "login_hint": "captured"})
    page = c.get(r.headers["location"]).text
    token = re.search(r'name="id_token" value="([^"]+)"', page)[1]
    state = re.search(r'name="state" value="([^"]+)"', page)[1]
    assert c.post(f"{tool.url}/lti/launch", data={"id_token": token, "state": state}).status_code == 303
    return token, state


@pytest.mark.parametrize(("change", "why"), [
    ({"aud": "another-tool"}, "not for this tool"),  # SF 5.1.3 step 3
    ({"aud": ["another-tool", CLIENT_ID]}, "azp"),  # SF 5.1.3 steps 4-5: several audiences need azp = us
    ({"aud": [CLIENT_ID, "x"], "azp": "x"}, "azp"),
    ({"iss": "https://evil.example"}, "issuer"),  # SF 5.1.3 step 2
    ({LTI + "deployment_id": "deployment-other"}, "deployment"),  # Core 5.3.3
    ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, "expired"),  # SF 5.1.3 step 7
    ({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 4000}, "not valid"),  # step 8: issued in the future
    ({LTI + "version": "1.1"}, "version"),  # Core 5.3.2
    ({LTI + "message_type": "LtiSubmissionReviewRequest"}, "message type"),  # Core 5.3.1
    ({"nonce": "chosen-by-attacker"}, "nonce"),  # SF 5.1.3 step 9
    ({"sub": ""}, "sub"),  # Core 5.3.6: the user
])
def test_a_launch_with_a_wrong_claim_is_refused_in_one_line(tool, lms, change, why):
    claims = {**lms.claims("claims-1", LEARNER), **change}
    assert why in refused(tool, claims)


def test_a_token_signed_by_another_key_under_the_platforms_kid_is_refused(tool, lms):
    """SF 5.1.3 step 1: the signature verifies only with the platform's published key."""
    other = rsa_key()
    lms.signer = lambda claims, lms_: jwt.encode(claims, other, algorithm="RS256", headers={"kid": lms_.kid})
    try:
        assert "signature" in refused(tool, lms.claims("forged-1", LEARNER))
    finally:
        lms.signer = None


def test_an_unknown_kid_is_refused(tool, lms):
    """SF 6.3 (key set): a kid the platform's JWKS does not hold (refetched once) verifies nothing."""
    lms.signer = lambda claims, lms_: jwt.encode(claims, lms_.key, algorithm="RS256", headers={"kid": "nope"})
    try:
        assert "not in the platform's JWKS" in refused(tool, lms.claims("kid-1", LEARNER))
    finally:
        lms.signer = None


def test_a_platform_that_rotates_its_key_is_followed_by_its_new_kid(lms, tmp_path, monkeypatch):
    """SF 6.3 (key rotation): a kid not in the cached key set makes the tool fetch the
    platform's JWKS again (once its refetch cooldown has passed: here none), so a launch
    signed with the platform's new key is accepted."""
    from grader.service import lti_tokens

    monkeypatch.setattr(lti_tokens, "JWKS_COOLDOWN_S", 0.0)
    monkeypatch.setattr(lti_tokens, "_jwks_clients", {})
    tool = Tool(tmp_path, lms).start()
    old = (lms.key, lms.kid)
    try:
        assert tool.launch(lms.claims("rot-1", LEARNER))[1].status_code == 303  # (keys now cached)
        lms.key, lms.kid = rsa_key(), "lms-key-2"
        assert tool.launch(lms.claims("rot-2", LEARNER))[1].status_code == 303
    finally:
        lms.key, lms.kid = old
        tool.stop()


def test_redirects_after_a_launch_stay_on_the_tool(tool, lms):
    """The launch's landing address is a path of this tool, never another site."""
    c = tool.signed_in(lms.claims("redir-1", LEARNER))
    for to in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert c.get(f"{tool.url}/lti/check", params={"to": to}).headers["location"] == "/"


def _unsigned(claims: dict, alg: str, key: bytes = b"") -> str:
    if alg == "none":
        head = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "lms-key-1"}).encode()).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        return f"{head.decode()}.{body.decode()}."
    import hashlib
    import hmac

    head = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "lms-key-1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    sig = hmac.new(key, head + b"." + body, hashlib.sha256).digest()
    return f"{head.decode()}.{body.decode()}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_alg_none_and_hs256_signed_with_the_public_key_are_refused(tool, lms):
    """SF 5.1.3 step 6: only RS256, the registered algorithm; never `none`, and never HS256
    keyed with the platform's public key (the algorithm-confusion attack)."""
    public = httpx.get(f"{lms.url}/jwks").text.encode()
    for alg, key in (("none", b""), ("HS256", public)):
        lms.signer = lambda claims, lms_, alg=alg, key=key: _unsigned(claims, alg, key)
        try:
            assert f"signed with '{alg}'" in refused(tool, lms.claims(f"alg-{alg}", LEARNER))
        finally:
            lms.signer = None


def test_a_learners_token_tampered_into_an_instructors_fails_its_signature(tool, lms):
    """SF 5.1.3 step 1: a Learner who edits the roles claim of their id_token (to Instructor)
    breaks the signature; no session, no instructor page."""
    def tamper(claims, lms_):
        token = jwt.encode(claims, lms_.key, algorithm="RS256", headers={"kid": lms_.kid})
        head, body, sig = token.split(".")
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data[LTI + "roles"] = [INSTRUCTOR]
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        return f"{head}.{forged}.{sig}"

    lms.signer = tamper
    try:
        assert "signature" in refused(tool, lms.claims("tamper-1", LEARNER))
    finally:
        lms.signer = None


def test_a_launch_from_another_browser_than_the_login_is_refused(tool, lms):
    """SF 5.1.1.1 (state bound to the browser): the id_token posted by a browser without the
    login's state cookie signs no one in; with a different cookie, 403."""
    _, _, form = authorize(tool.url, lms, lms.claims("csrf-1", LEARNER))
    token, state = form["id_token"], form["state"]
    wrong = httpx.post(f"{tool.url}/lti/launch", data={"id_token": token, "state": state},
                       cookies={f"nngrader_lti_{state[:12]}": "another"})
    assert wrong.status_code == 403 and "nngrader_session" not in wrong.cookies
    blocked = httpx.post(f"{tool.url}/lti/launch", data={"id_token": token, "state": state})
    assert blocked.status_code == 401 and "Open the assignment in a new tab" in blocked.text
    assert 'target="_blank"' in blocked.text and "/lti/login?" in blocked.text


def test_a_login_from_an_unregistered_platform_is_refused(tool):
    """SF 5.1.1: login initiation only for a registered issuer."""
    r = httpx.get(f"{tool.url}/lti/login", params={"iss": "https://unknown.example", "login_hint": "x"})
    assert r.status_code == 403 and "not registered" in message(r)
    assert httpx.get(f"{tool.url}/lti/login").status_code == 400


# ---------------------------------------------------------------- a signed-in LMS user's reach


def test_a_learner_from_the_lms_cannot_open_instructor_pages(tool, lms):
    """Core A.2 (roles decide access): a Learner's session is a student's, refused on every
    instructor route, page or API."""
    c = tool.signed_in(lms.claims("reach-1", LEARNER))
    for path in (f"/i/{ASSIGNMENT}/", f"/i/{ASSIGNMENT}/gradebook", f"/i/{ASSIGNMENT}/lti",
                 f"/api/assignments/{ASSIGNMENT}/gradebook"):
        r = c.get(tool.url + path)
        assert r.status_code == 403, path


def test_one_students_launch_neither_reads_nor_posts_another_students_results(tool, lms):
    """Core 5.3.6 (sub identifies the user): a session from one student's launch reaches only
    that student's attempts; another's answer 404 like one that does not exist, and an upload
    is always the signed-in student's own."""
    alice = tool.signed_in(lms.claims("alice", LEARNER))
    bob = tool.signed_in(lms.claims("bob", LEARNER))
    bobs = upload(tool, bob, "bob")
    for path in (f"/s/{bobs}", f"/s/{bobs}/feedback", f"/api/submissions/{bobs}",
                 f"/api/submissions/{bobs}/report"):
        assert alice.get(tool.url + path).status_code == 404, path
    alices = upload(tool, alice, "alice")
    owners = dict(tool.store.db.execute("SELECT id, user_id FROM attempts WHERE id IN (?, ?)", (alices, bobs)))
    assert owners[alices].endswith("-alice") and owners[bobs].endswith("-bob")


def test_an_instructor_of_one_course_is_a_student_in_another_and_no_more(lms, tmp_path):
    """Core A.2 (the roles claim is the user's role in the launch's context): one LMS user, a
    TA in one course and a Learner in another, reaches the instructor pages of the first
    course's assignment only, whichever launch came last; the other course's attempts stay
    hidden from them, and there they hand in as a student."""
    other = "relu-sigmoid-3-3-1"
    tool = Tool(tmp_path, lms, assignments=(ASSIGNMENT, other)).start()
    try:
        lti = LtiStore(tool.store)
        lti.set_link(1, "course-a", other)
        lti.set_link(1, "course-b", ASSIGNMENT)
        alice = tool.signed_in(lms.claims("alice-x", LEARNER, "course-b"))
        alices = upload(tool, alice, "alice-x")
        tool.signed_in(lms.claims("ta-x", INSTRUCTOR, "course-a"))
        as_student = tool.signed_in(lms.claims("ta-x", LEARNER, "course-b"))
        upload(tool, as_student, "ta-x")  # (a student there: hands in like one)
        ta = tool.signed_in(lms.claims("ta-x", INSTRUCTOR, "course-a"))  # the last launch: as a TA
        assert ta.get(f"{tool.url}/i/{other}/").status_code == 200
        for path in (f"/i/{ASSIGNMENT}/", f"/i/{ASSIGNMENT}/gradebook", f"/i/{ASSIGNMENT}/lti",
                     f"/i/{ASSIGNMENT}/export.csv", f"/api/assignments/{ASSIGNMENT}/gradebook"):
            assert ta.get(tool.url + path).status_code == 403, path
        for path in (f"/s/{alices}/feedback", f"/api/submissions/{alices}"):
            assert ta.get(tool.url + path).status_code == 404, path
    finally:
        tool.stop()


# ---------------------------------------------------------------- inside the LMS frame


def test_in_the_lms_frame_cookies_are_samesite_none_and_secure_behind_tls(lms, tmp_path):
    """Cookies that work in an iframe: SameSite=None; Secure when served behind TLS."""
    t = Tool(tmp_path, lms, secure_cookies=True).start()
    try:
        lms.launches["tls"] = lms.claims("frame-1", LEARNER)
        login = httpx.get(f"{t.url}/lti/login", params={"iss": lms.issuer, "login_hint": "tls"})
        page = httpx.get(login.headers["location"]).text
        state = re.search(r'name="state" value="([^"]+)"', page)[1]
        token = re.search(r'name="id_token" value="([^"]+)"', page)[1]
        # (httpx keeps Secure cookies for https only: the TLS proxy's browser is played by hand)
        r = httpx.post(f"{t.url}/lti/launch", data={"id_token": token, "state": state},
                       headers={"cookie": f"nngrader_lti_{state[:12]}={state}"})
        assert r.status_code == 303, r.text
        for resp, name in ((login, "nngrader_lti_"), (r, "nngrader_session=")):
            cookie = next(v for k, v in resp.headers.multi_items() if k == "set-cookie" and v.startswith(name))
            assert "samesite=none" in cookie.lower() and "; secure" in cookie.lower(), cookie
    finally:
        t.stop()


def test_a_blocked_cookie_gets_a_page_with_a_new_tab_link_that_signs_in_once(tool, lms):
    """A browser that drops the cookie in the frame sees a clear message and a link opening
    the tool in a new tab; that link signs the user in once, then is spent."""
    c, r = tool.launch(lms.claims("blocked-1", LEARNER))
    framed = httpx.Client(timeout=30)  # (the frame: the session cookie was not kept)
    page = framed.get(tool.url + r.headers["location"])
    assert page.status_code == 401 and "blocks the cookie" in page.text and 'target="_blank"' in page.text
    link = html.unescape(re.search(r'href="(/lti/resume[^"]+)"', page.text)[1])
    tab = httpx.Client(timeout=30)
    opened = tab.get(tool.url + link, follow_redirects=True)
    assert opened.status_code == 200 and str(opened.url).endswith(f"/a/{ASSIGNMENT}")
    assert httpx.get(tool.url + link).status_code == 401  # (spent)


def test_pages_may_be_framed_by_the_registered_lms_only(tool, lms):
    """The pages' Content-Security-Policy lets the registered platform frame them, no one else."""
    c = tool.signed_in(lms.claims("framing-1", LEARNER))
    csp = c.get(f"{tool.url}/a/{ASSIGNMENT}").headers["content-security-policy"]
    assert f"frame-ancestors 'self' {lms.url};" in csp  # (its issuer, login and token URLs' one origin)


# ---------------------------------------------------------------- the tool's keys and configuration


def test_the_jwks_publishes_the_current_key_and_a_rotated_one_for_a_week(tmp_path):
    """SF 6.3: the tool's key set; a rotated-out key stays published for the grace period, so
    tokens signed just before still verify, then it goes."""
    from grader.service.store import Store

    lti = LtiStore(Store(tmp_path / "k.sqlite"))
    first, _ = signing_key(lti)
    assert [k["kid"] for k in jwks(lti)["keys"]] == [first]
    second = new_key(lti, retire_others=True)
    assert signing_key(lti)[0] == second and {k["kid"] for k in jwks(lti)["keys"]} == {first, second}
    lti.db.execute("UPDATE lti_keys SET retired = ? WHERE kid = ?", (time.time() - KEY_GRACE_S - 1, first))
    assert [k["kid"] for k in jwks(lti)["keys"]] == [second]
    assert all(k["alg"] == "RS256" and "d" not in k for k in jwks(lti)["keys"])  # (never the private part)


def test_the_configuration_json_names_the_tools_addresses(tool):
    """What a Canvas admin pastes: login initiation, launch (redirect) and JWKS URLs, AGS scopes."""
    conf = httpx.get(f"{tool.url}/lti/config.json").json()
    assert conf["oidc_initiation_url"] == f"{tool.url}/lti/login"
    assert conf["target_link_uri"] == f"{tool.url}/lti/launch" and conf["redirect_uris"] == [conf["target_link_uri"]]
    keys = httpx.get(conf["public_jwk_url"]).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA"
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in conf["scopes"]


def test_the_lti_commands_add_list_rotate_and_sync(tmp_path):
    """`grade serve lti add-platform` registers once; a second time is one clear line, exit 2."""
    from click.testing import CliRunner

    from grader.cli import main

    db = str(tmp_path / "s.sqlite")
    args = ["serve", "lti", "add-platform", "--db", db, "--issuer", "https://lms.example", "--client-id", "c",
            "--deployment-id", "d", "--auth-login-url", "https://lms.example/auth", "--auth-token-url",
            "https://lms.example/token", "--keyset-url", "https://lms.example/jwks"]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already registered" in again.output and "Traceback" not in again.output
    assert "https://lms.example\tc\td" in CliRunner().invoke(main, ["serve", "lti", "platforms", "--db", db]).output
    assert "new signing key" in CliRunner().invoke(main, ["serve", "lti", "rotate-key", "--db", db]).output
    assert "no course yet" in CliRunner().invoke(main, ["serve", "lti", "sync-roster", "--db", db]).output


# ---------------------------------------------------------------- Deep Linking


def test_deep_linking_lets_an_instructor_place_an_assignment_with_a_signed_response(tool, lms):
    """DL 4.1-4.2: the request is answered with an LtiDeepLinkingResponse JWT signed by the
    tool's key (verifiable from its JWKS), aud = the platform, the request's data echoed, one
    ltiResourceLink naming the assignment; the link then launches into that assignment."""
    claims = {**lms.claims("placer-1", INSTRUCTOR), LTI + "message_type": "LtiDeepLinkingRequest",
              DL + "deep_linking_settings": {"deep_link_return_url": f"{lms.url}/dl-return", "data": "opaque-1",
                                             "accept_types": ["ltiResourceLink"]}}
    claims.pop(LTI + "resource_link")
    c, r = tool.launch(claims)
    assert r.status_code == 200 and f"form-action 'self' {lms.url}" in r.headers["content-security-policy"]
    assert f'action="{lms.url}/dl-return"' in r.text
    token = html.unescape(re.search(r'name="JWT" value="([^"]+)"', r.text)[1])
    key = jwt.PyJWKClient(f"{tool.url}/lti/jwks.json").get_signing_key_from_jwt(token).key
    got = jwt.decode(token, key, algorithms=["RS256"], audience=lms.issuer, issuer=CLIENT_ID)
    assert got[LTI + "message_type"] == "LtiDeepLinkingResponse" and got[DL + "data"] == "opaque-1"
    assert got[LTI + "deployment_id"] == DEPLOYMENT
    item, = got[DL + "content_items"]
    assert item["type"] == "ltiResourceLink" and item["custom"] == {"assignment": ASSIGNMENT}
    # the LMS launches the placed link with the custom parameter it was given
    placed = lms.claims("placed-1", LEARNER, resource_link="placed-link", **{LTI + "custom": item["custom"]})
    tool.signed_in(placed)
    assert LtiStore(tool.store).link(1, "placed-link") == ASSIGNMENT


def test_a_learners_deep_linking_request_is_refused(tool, lms):
    """DL 4.1: placing content is an instructor's act."""
    claims = {**lms.claims("dl-learner", LEARNER), LTI + "message_type": "LtiDeepLinkingRequest",
              DL + "deep_linking_settings": {"deep_link_return_url": f"{lms.url}/dl-return"}}
    assert "only an instructor" in refused(tool, claims, 403)


@pytest.mark.parametrize("change", [
    {LTI + "roles": "Instructor"},  # (a string, not a list: no role at all)
    {LTI + "resource_link": "link-as-text"},
    {"nonce": "n\u00f6nce"},
    {LTI + "custom": ["assignment"]},
])
def test_malformed_claims_get_a_one_line_refusal_never_a_server_error(tool, lms, change):
    """Bad input from a (validly signed) token: a 4xx and one line, no traceback."""
    c, r = tool.launch({**lms.claims("odd-1", LEARNER), **change})
    assert 400 <= r.status_code < 500 or r.status_code == 303, r.text
    assert "Traceback" not in r.text and (r.status_code == 303 or message(r))


def test_garbage_posted_to_the_launch_and_resume_is_refused_in_one_line(tool):
    for data in ({"id_token": "not.a.jwt", "state": "x"}, {"state": "x"}, {}):
        r = httpx.post(f"{tool.url}/lti/launch", data=data, headers={"cookie": b"nngrader_lti_x=\xc3\xa9"})
        assert r.status_code in (400, 401) and message(r)
    for token in ("", "abc", "abc.\u00e9\u00e9", "YWJj.0000"):
        r = httpx.get(f"{tool.url}/lti/resume", params={"r": token, "to": "//evil.example"})
        assert r.status_code == 401 and "expired" in message(r)


def test_the_lti_commands_help_loads_no_crypto_or_web_stack():
    from tests.test_startup import HEAVY, _modules

    r, modules = _modules("serve", "lti", "--help")
    assert r.returncode == 0 and "add-platform" in r.stdout, r.stderr
    assert not modules & {*HEAVY, "jwt", "cryptography", "starlette", "uvicorn", "httpx"}


def test_an_lms_session_ends_when_the_user_is_dropped(tool, lms):
    """A launch's session is bound to a token of its own: a member the roster sync marks
    inactive is signed out at the next request; a new launch (the LMS still lets them in)
    makes them active again."""
    from dataclasses import replace

    c = tool.signed_in(lms.claims("dropped-1", LEARNER))
    assert c.get(f"{tool.url}/api/me").status_code == 200
    tool.store.put_user(replace(tool.store.user("lti-1-dropped-1"), active=False))
    assert c.get(f"{tool.url}/api/me").status_code == 401
    again = tool.signed_in(lms.claims("dropped-1", LEARNER))
    assert again.get(f"{tool.url}/api/me").status_code == 200
