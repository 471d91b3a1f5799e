"""The sign-in page, and the pages the sign-in and sign-out forms answer with when they refuse.

The form posts go to ``POST /login`` and ``POST /logout`` (companion.api.app): they check the
form token (companion.web.csrf) and the login rate limit (companion.login_limits) first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from companion.api.deps import cookie_secure
from companion.web import csrf
from companion.web.pages import TEMPLATES

router = APIRouter(include_in_schema=False)

WRONG_PASSWORD = "Wrong e-mail or password."
FORM_EXPIRED = (
    "This sign-in form has expired or was not sent from this site's own page: nothing was done. "
    "Please sign in again."
)


DELETED = "Your data has been deleted and your login with it."


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: int = 0, deleted: int = 0) -> HTMLResponse:
    message = WRONG_PASSWORD if error else DELETED if deleted else None
    return login_page_response(request, message=message)


def login_page_response(
    request: Request, *, message: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The sign-in form (with `message` as an alert), and the browser's sign-in cookie."""
    nonce = csrf.login_nonce(request)
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {
            "me": None,
            "message": message,
            "csrf_field": csrf.FIELD,
            "csrf_token": csrf.login_form_token(nonce),
        },
        status_code=status_code,
    )
    csrf.set_login_cookie(response, nonce, secure=cookie_secure(request))
    return response


def refused_form_response(request: Request, message: str) -> HTMLResponse:
    """403: a form was refused and nothing was done."""
    return TEMPLATES.TemplateResponse(
        request, "refused.html", {"me": None, "message": message}, status_code=403
    )
