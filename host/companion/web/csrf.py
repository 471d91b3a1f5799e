"""Cross-site request forgery protection for the dashboard's cookie-authenticated forms.

The session cookie is SameSite=Lax, which already keeps most browsers from sending it with a
POST from another site; a form token makes that hold everywhere (old browsers, a sibling
subdomain, a cookie set by a proxy without the attribute).

The token is per session and needs no storage: HMAC-SHA256 keyed with the session token (256
random bits, known only to the browser holding the HttpOnly cookie; the database keeps only
its SHA-256), so another site can neither read nor compute it.  A form carries it in the hidden
field ``csrf_token``; the route checks it with :func:`check_form_token` before changing
anything.  The sign-out form carries the same token; the sign-in form, made before there is a
session, a token keyed by a random cookie of its own (:func:`login_nonce`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request, Response, status

from companion.api.deps import request_token

FIELD = "csrf_token"
_PURPOSE = b"posture dashboard form v1"


def session_form_token(session_token: str) -> str:
    """The form token of the session whose token is `session_token`."""
    return hmac.new(session_token.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def form_token(request: Request) -> str:
    """The token the signed-in session's forms must send back ('' when signed out)."""
    session_token = request_token(request)
    if not session_token:
        return ""
    return session_form_token(session_token)


class ForgedForm(HTTPException):
    """A form post without this session's token: 403, nothing changed."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_403_FORBIDDEN,
            "this form was not sent from your own page (or your session changed): reload the page and try again",
        )


def check_form_token(request: Request, submitted: str | None) -> None:
    """ForgedForm unless `submitted` is this session's form token."""
    _check(form_token(request), submitted)


def check_session_form_token(session_token: str, submitted: str | None) -> None:
    """ForgedForm unless `submitted` is the form token of this session (the sign-out form: the
    session of the cookie, whatever else the request carries)."""
    _check(session_form_token(session_token), submitted)


def _check(expected: str, submitted: str | None) -> None:
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise ForgedForm()


# ---- the sign-in form: before there is a session ----------------------------------------------------
#
# Without a session there is nothing to key a token with, so the sign-in page first gives the
# browser a random value of its own in an HttpOnly cookie (LOGIN_COOKIE), and the form carries
# the HMAC of it.  Another site can neither read that cookie nor set it, so it cannot sign a
# victim's browser in to the attacker's account (login CSRF).

LOGIN_COOKIE = "posture_signin"
LOGIN_COOKIE_PATH = "/login"
LOGIN_COOKIE_MAX_AGE_S = 12 * 3600
_LOGIN_PURPOSE = b"posture sign-in form v1"
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def login_nonce(request: Request) -> str:
    """The browser's sign-in cookie value if it has a well-formed one, else a new one."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if 32 <= len(nonce) <= 64 and set(nonce) <= _NONCE_CHARS:
        return nonce
    return secrets.token_urlsafe(32)


def login_form_token(nonce: str) -> str:
    return hmac.new(nonce.encode(), _LOGIN_PURPOSE, hashlib.sha256).hexdigest()


def set_login_cookie(response: Response, nonce: str, *, secure: bool) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=secure,
        path=LOGIN_COOKIE_PATH,
    )


def check_login_form(request: Request, submitted: str | None) -> None:
    """ForgedForm unless `submitted` is the token of the sign-in page this browser was given."""
    nonce = request.cookies.get(LOGIN_COOKIE)
    _check(login_form_token(nonce) if nonce else "", submitted)
