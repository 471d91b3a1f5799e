"""The companion web app: JSON API under /api, /health, the dashboard when installed.
Run it with ``posture serve`` (or ``uvicorn --factory companion.api.app:create_app``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from companion import auth
from companion.api.deps import SESSION_COOKIE, cookie_secure, get_session
from companion.api.routes import agents, datarights, devices, exposure, ingest, orgs, rotation, workers
from companion.api.routes import auth as auth_routes
from companion.api.routes import settings as settings_routes
from companion.api.routes.auth import TOO_MANY_LOGINS, checked_login
from companion.api.schemas import ErrorOut, ValidationErrorOut
from companion.login_limits import TooManyFailures
from companion.settings import Settings, get_settings
from companion.store import open_store

log = logging.getLogger("companion.api")

# JSON bodies of every endpoint but the ingest are small; this bounds what a client can make
# the server buffer.  The ingest route enforces its own, larger limit while streaming.
MAX_BODY_BYTES = 256 * 1024
INGEST_PATH = "/api/ingest"

# The error answers of docs/api.md "Errors", documented on every /api route so that the OpenAPI
# schema describes each answer the app gives (422 included: ours, not FastAPI's default shape).
_TOO_LARGE = {"model": ErrorOut, "description": "Body too large"}
_INVALID = {"model": ValidationErrorOut, "description": "Invalid value or body"}
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Bad request framing"},
    401: {"model": ErrorOut, "description": "Not logged in, or the token is unknown or expired"},
    403: {"model": ErrorOut, "description": "Not allowed"},
    404: {"model": ErrorOut, "description": "Not found"},
    409: {"model": ErrorOut, "description": "Conflict"},
    413: _TOO_LARGE,
    422: _INVALID,
    503: {"model": ErrorOut, "description": "Rotation compliance unavailable"},
}
_FORM_ANSWERS: dict[int | str, dict[str, Any]] = {413: _TOO_LARGE, 422: _INVALID}


def database_label(url: str) -> str:
    """The database URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


class _BodyTooLarge(HTTPException):
    # An HTTPException: raised while FastAPI reads the body, it becomes the 413 answer itself
    # (FastAPI turns other exceptions there into a generic 400).
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodySizeLimit:
    """ASGI middleware: answer 413 to a body over `limit` bytes, whether it declares its length
    or streams chunks without one, before the app buffers it (`exempt` path: its route limits
    itself)."""

    def __init__(self, app: ASGIApp, limit: int, exempt: str) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == self.exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse({"detail": f"request body over {self.limit} bytes"}, 413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# What the forms answer when they refuse: an HTML page (the sign-in form again, or a short one).
_HTML = {"text/html": {"schema": {"type": "string"}}}
_FORM_FORGED = {
    "description": "The form did not carry its page's token (CSRF): nothing done",
    "content": _HTML,
}
_FORM_TOO_MANY = {
    "description": "Too many failed logins for this e-mail or from this address: the form again",
    "content": _HTML,
    "headers": TOO_MANY_LOGINS[429]["headers"],
}


def _login_router() -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post(
        "/login",
        status_code=status.HTTP_303_SEE_OTHER,
        response_class=RedirectResponse,
        responses={
            303: {"description": "To / when logged in, else to /login?error=1"},
            403: _FORM_FORGED,
            429: _FORM_TOO_MANY,
            **_FORM_ANSWERS,
        },
    )
    def login_form(
        email: Annotated[str, Form(max_length=320)],
        password: Annotated[str, Form(max_length=1024)],
        request: Request,
        csrf_token: Annotated[str | None, Form(max_length=128)] = None,
        session: Session = Depends(get_session),
    ) -> Response:
        """The dashboard's login form: sets the session cookie and redirects to /.  Refused (403)
        without the token of the sign-in page the browser was given; rate limited like
        POST /api/auth/login (429)."""
        from companion.web import csrf, signin

        try:
            csrf.check_login_form(request, csrf_token)
        except csrf.ForgedForm:
            return signin.login_page_response(request, message=signin.FORM_EXPIRED, status_code=403)
        try:
            user = checked_login(session, request, email, password)
        except TooManyFailures as exc:
            page = signin.login_page_response(request, message=f"{str(exc).capitalize()}.", status_code=429)
            page.headers["Retry-After"] = str(exc.retry_after_s)
            return page
        if user is None:
            return RedirectResponse("/login?error=1", status_code=status.HTTP_303_SEE_OTHER)
        token = auth.issue_token(session, user)
        session.commit()
        response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(auth.TOKEN_LIFETIME.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=cookie_secure(request),
            path="/",
        )
        response.delete_cookie(csrf.LOGIN_COOKIE, path=csrf.LOGIN_COOKIE_PATH)
        return response

    @router.post(
        "/logout",
        status_code=status.HTTP_303_SEE_OTHER,
        response_class=RedirectResponse,
        responses={303: {"description": "To /login"}, 403: _FORM_FORGED, **_FORM_ANSWERS},
    )
    def logout_form(
        request: Request,
        csrf_token: Annotated[str | None, Form(max_length=128)] = None,
        session: Session = Depends(get_session),
    ) -> Response:
        """Ends the cookie's session and clears it.  A live session is only ended by the sign-out
        form of its own pages (the session's form token): 403 otherwise."""
        from companion.web import csrf, signin

        token = request.cookies.get(SESSION_COOKIE)
        if token and auth.user_for_token(session, token) is not None:
            try:
                csrf.check_session_form_token(token, csrf_token)
            except csrf.ForgedForm as exc:
                return signin.refused_form_response(request, str(exc.detail))
            auth.revoke_token(session, token)
            session.commit()
        response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route of `app` takes at the request's path, for a 405's Allow header.
    Starlette's own names only the first route at that path's, and routes are one per method."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in app.router.routes)
    ]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The whole app on the store of `settings` (default: the environment's), migrated."""
    settings = settings or get_settings()
    url = settings.resolved_database_url()
    engine = open_store(url)
    log.info("posture companion: database %s", database_label(url))

    app = FastAPI(
        title="posture companion",
        version="0.1.0",
        description="Daily trunk-posture exposure from posture sensors. See docs/api.md.",
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.store = engine
    app.state.session_factory = sessionmaker(engine, expire_on_commit=False)

    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES, exempt=INGEST_PATH)
    if settings.cors_origins:
        # Off by default: browsers then let no other site's scripts read an answer.  With an
        # allow-list, those origins may call the API with a bearer token (never the cookie).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=list(_METHODS),
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable sentence in "detail" (like every other error), the raw list beside it.
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(exc), "errors": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            allow = ", ".join(allowed_methods(app, request.scope))
            exc = StarletteHTTPException(exc.status_code, exc.detail, {**(exc.headers or {}), "Allow": allow})
        return await http_exception_handler(request, exc)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    api = APIRouter(prefix="/api")
    for module in (
        auth_routes,
        orgs,
        workers,
        devices,
        exposure,
        settings_routes,
        rotation,
        ingest,
        agents,
        datarights,
    ):
        api.include_router(module.router, responses=API_ERRORS)
    app.include_router(api)
    app.include_router(_login_router())

    # The dashboard: server-rendered pages over the same queries, charts served locally.
    from fastapi.staticfiles import StaticFiles

    import companion.web as web

    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    return app
