"""Cross-site request forgery protection for the dashboard's cookie-authenticated forms.

The session cookie is SameSite=Lax, which already keeps most browsers from sending it with a
POST from another site; a form token makes that hold everywhere (old browsers, a sibling
subdomain, a cookie set by a proxy without the attribute).

The token is per session and needs no storage: HMAC-SHA256 keyed with the session token (256
random bits, known only to the browser holding the HttpOnly cookie; the database keeps only
its SHA-256), so another site can neither read nor compute it.  A form carries it in the hidden
field ``csrf_token``; the route checks it with :func:`check_form_token` before changing
anything.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, status

from companion.api.deps import request_token

FIELD = "csrf_token"
_PURPOSE = b"posture dashboard form v1"


def form_token(request: Request) -> str:
    """The token the signed-in session's forms must send back ('' when signed out)."""
    session_token = request_token(request)
    if not session_token:
        return ""
    return hmac.new(session_token.encode(), _PURPOSE, hashlib.sha256).hexdigest()


class ForgedForm(HTTPException):
    """A form post without this session's token: 403, nothing changed."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_403_FORBIDDEN,
            "this form was not sent from your own page (or your session changed): reload the page and try again",
        )


def check_form_token(request: Request, submitted: str | None) -> None:
    """ForgedForm unless `submitted` is this session's form token."""
    expected = form_token(request)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise ForgedForm()
