"""The LTI 1.3 tokens (PyJWT with `cryptography`): the tool's RSA keys and its JWKS, the
launch's id_token checked against the platform's JWKS, and the JWTs the tool signs (the
Deep Linking response, the OAuth2 client assertion).

The checks follow the 1EdTech Security Framework 1.0 (section 5.1.3, "Authentication Response
Validation") and LTI Core 1.3 (section 5.3, the message's required claims); each failure is
one line saying which check failed.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from grader.service.lti_store import LtiStore, Platform

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
LEEWAY_S = 60  # clocks of the platform and the tool may differ this much
MESSAGE_TYPES = ("LtiResourceLinkRequest", "LtiDeepLinkingRequest")
JWKS_COOLDOWN_S = 10.0  # a new kid refetches the platform's keys, at most this often (no refetch storm)
_jwks_clients: dict[str, jwt.PyJWKClient] = {}  # one per keyset URL: its keys cached, refetched for a new kid


class LaunchError(Exception):
    """An id_token (or a launch) the tool refuses: one line saying which check failed."""


# ---------------------------------------------------------------- the tool's keys


def new_key(lti: LtiStore, retire_others: bool) -> str:
    """A fresh RSA-2048 key pair, stored; its kid."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    kid = secrets.token_urlsafe(12)
    lti.add_key(kid, pem, retire_others)
    return kid


def signing_key(lti: LtiStore) -> tuple[str, str]:
    """(kid, private PEM) of the current key, made on first use."""
    live = [k for k in lti.keys() if k[2] is None]
    if not live:
        new_key(lti, retire_others=False)
        live = [k for k in lti.keys() if k[2] is None]
    return live[0][0], live[0][1]


def jwks(lti: LtiStore) -> dict[str, Any]:
    """The tool's public keys: the current one and those rotated out less than a week ago."""
    signing_key(lti)
    out = []
    for kid, pem, _ in lti.keys():
        public = serialization.load_pem_private_key(pem.encode(), None).public_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        out.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": out}


def sign(lti: LtiStore, claims: dict[str, Any]) -> str:
    kid, pem = signing_key(lti)
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


def client_assertion(lti: LtiStore, platform: Platform) -> str:
    """The JWT that authenticates the tool at the platform's token endpoint (RFC 7523)."""
    t = int(time.time())
    return sign(lti, {"iss": platform.client_id, "sub": platform.client_id, "aud": platform.auth_token_url,
                      "iat": t, "exp": t + 300, "jti": secrets.token_urlsafe(16)})


def deep_link_response(lti: LtiStore, platform: Platform, deployment_id: str, data: str | None,
                       items: list[dict[str, Any]]) -> str:
    """The LtiDeepLinkingResponse (Deep Linking 2.0, section 4.2), signed by the tool."""
    t = int(time.time())
    claims: dict[str, Any] = {
        "iss": platform.client_id, "aud": platform.issuer, "iat": t, "exp": t + 600,
        "nonce": secrets.token_urlsafe(16), LTI + "deployment_id": deployment_id,
        LTI + "message_type": "LtiDeepLinkingResponse", LTI + "version": "1.3.0", DL + "content_items": items}
    if data is not None:
        claims[DL + "data"] = data
    return sign(lti, claims)


# ---------------------------------------------------------------- the launch


def _platform_key(platform: Platform, kid: str) -> Any:
    client = _jwks_clients.get(platform.keyset_url)
    if client is None:
        client = _jwks_clients[platform.keyset_url] = jwt.PyJWKClient(platform.keyset_url, cache_keys=True,
                                                                      lifespan=3600, timeout=10,
                                                                      cooldown_duration=JWKS_COOLDOWN_S)
    try:
        return client.get_signing_key(kid).key
    except jwt.PyJWKClientConnectionError as e:
        raise LaunchError(f"the platform's keys could not be fetched from {platform.keyset_url}: {e}") from None
    except jwt.PyJWKClientError:
        raise LaunchError(f"the id_token's key {kid!r} is not in the platform's JWKS") from None


def check_id_token(lti: LtiStore, token: str, expected_nonce: str, platform_id: int) -> tuple[Platform, dict]:
    """The platform and the verified claims of a launch's id_token, else LaunchError."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise LaunchError(f"the id_token is not a JWT ({e})") from None
    # Security Framework 5.1.3 step 6: the tool accepts only the algorithm it registered (RS256):
    # never `none`, never HS256 (which would take the public key as a shared secret).
    if header.get("alg") != "RS256":
        raise LaunchError(f"the id_token is signed with {header.get('alg')!r}: only RS256 is accepted")
    if not header.get("kid"):
        raise LaunchError("the id_token's header names no key (kid)")
    platform = lti.platform(platform_id)
    if platform is None:
        raise LaunchError("the platform of this login is no longer registered")
    # step 2: the issuer is the platform the login started with
    if unverified.get("iss") != platform.issuer:
        raise LaunchError(f"the id_token's issuer {unverified.get('iss')!r} is not the platform of this login")
    key = _platform_key(platform, header["kid"])
    try:
        # step 1 (signature), 3 (aud contains our client id), 7 (exp), 8 (iat), required claims
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=platform.client_id, issuer=platform.issuer,
                            leeway=LEEWAY_S, options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce"]})
    except jwt.InvalidAudienceError:
        raise LaunchError(f"the id_token is not for this tool (aud is not {platform.client_id!r})") from None
    except jwt.ExpiredSignatureError:
        raise LaunchError("the id_token has expired: launch again from the course") from None
    except jwt.InvalidSignatureError:
        raise LaunchError("the id_token's signature does not verify with the platform's key") from None
    except jwt.PyJWTError as e:
        raise LaunchError(f"the id_token is not valid: {e}") from None
    # steps 4-5: with several audiences, azp names us; when given, it must be us
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(aud) > 1 or "azp" in claims) and claims.get("azp") != platform.client_id:
        raise LaunchError(f"the id_token's azp {claims.get('azp')!r} is not this tool")
    # step 9: the nonce is the one this browser's login was given (spent once: grader.service.lti_store)
    if not secrets.compare_digest(str(claims["nonce"]).encode(), expected_nonce.encode()):
        raise LaunchError("the id_token's nonce is not this login's")
    # LTI Core 5.3: version, message type, deployment
    if claims.get(LTI + "version") != "1.3.0":
        raise LaunchError(f"LTI version {claims.get(LTI + 'version')!r} is not 1.3.0")
    if claims.get(LTI + "message_type") not in MESSAGE_TYPES:
        raise LaunchError(f"message type {claims.get(LTI + 'message_type')!r} is not supported")
    deployment = claims.get(LTI + "deployment_id")
    if deployment != platform.deployment_id:
        match = [p for p in lti.platforms(platform.issuer, platform.client_id) if p.deployment_id == deployment]
        if not match:
            raise LaunchError(f"deployment {deployment!r} is not registered for {platform.issuer}")
        platform = match[0]
    if not str(claims.get("sub") or "").strip():
        raise LaunchError("the id_token names no user (sub)")
    return platform, claims


STUDENT_ROLES = ("Learner",)
INSTRUCTOR_ROLES = ("Instructor", "TeachingAssistant", "Administrator", "ContentDeveloper")


def _context_role(role: str) -> tuple[str, str]:
    """(kind, principal role) of an LTI role: kind is membership (the course), institution or
    system; a sub-role (membership/Learner#X) counts as its principal role (Learner)."""
    if "#" not in role:
        return "membership", role  # (a short name: LTI Core 1.3, A.2.3.1, a context role)
    base, frag = role.rsplit("#", 1)
    parts = base.rstrip("/").split("/")
    if parts[-1] == "membership":
        return "membership", frag
    if len(parts) >= 2 and parts[-2] == "membership":
        return "membership", parts[-1]
    return ("system" if "/system/" in base else "institution"), frag


def service_role(roles: list[str]) -> str | None:
    """The service's role for a user's LTI roles: instructor for a course Instructor,
    TeachingAssistant, Administrator or ContentDeveloper, or a system/institution
    Administrator; student for a course Learner; None otherwise (Mentor, Guest...: refused).
    An institution role such as Instructor does not make a course's Learner an instructor."""
    kinds = [_context_role(str(r)) for r in roles]
    course = {r for k, r in kinds if k == "membership"}
    if course & set(INSTRUCTOR_ROLES) or any(k != "membership" and r == "Administrator" for k, r in kinds):
        return "instructor"
    if course & set(STUDENT_ROLES):
        return "student"
    return None
