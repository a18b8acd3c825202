"""Who is who: access tokens (shown once, stored as a hash), signed session cookies and the
CSRF token of every form.

A token is 32 random bytes (URL-safe text); the database keeps only its SHA-256, so a copy of
the database lets no one in. A session cookie is `token hash|expiry|signature`, signed with the
service's key (HMAC-SHA256, kept in the database); the CSRF token of a session is an HMAC of
the cookie, so a page of another site cannot make a form the service accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

SESSION_COOKIE = "nngrader_session"
SESSION_S = 7 * 86400
TOKEN_PREFIX = "ngt_"  # (so a leaked token is recognisable in logs and secret scanners)


def new_token() -> str:
    """A fresh access token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_key() -> str:
    """A fresh signing key for the sessions."""
    return secrets.token_hex(32)


def _sign(key: str, text: str) -> str:
    mac = hmac.new(bytes.fromhex(key), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def session_cookie(key: str, token_hash: str, now: float | None = None) -> str:
    """A signed session for the token (by its hash) it was opened with, valid SESSION_S seconds:
    a token replaced, expired or whose user left the roster ends its sessions too."""
    text = f"{token_hash}|{int((now or time.time()) + SESSION_S)}"
    return f"{text}|{_sign(key, text)}"


def session_token(key: str, cookie: str | None) -> str | None:
    """The token hash of a valid, unexpired session cookie, else None."""
    if not cookie or cookie.count("|") != 2:
        return None
    token, expiry, sig = cookie.split("|")
    if not hmac.compare_digest(sig, _sign(key, f"{token}|{expiry}")):
        return None
    if not expiry.isdigit() or int(expiry) < time.time():
        return None
    return token


def csrf_token(key: str, cookie: str) -> str:
    """The CSRF token of a session's forms."""
    return _sign(key, f"csrf|{cookie}")


def csrf_ok(key: str, cookie: str | None, given: str | None) -> bool:
    """Whether a form's CSRF token belongs to this session."""
    return bool(cookie and given) and hmac.compare_digest(csrf_token(key, cookie), given or "")
