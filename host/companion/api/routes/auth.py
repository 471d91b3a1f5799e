"""Logging in and out, who am I, and one's own sessions (list, rotate, end)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import auth
from companion.api.deps import Principal, client_address, current_principal, get_session, request_token
from companion.api.schemas import ErrorOut, Id, LoginIn, LoginOut, SessionOut, UserOut
from companion.login_limits import LoginLimits, TooManyFailures
from companion.store.models import ApiToken, TeamMember, User

router = APIRouter(tags=["auth"])

# The login's rate limit answer (companion.login_limits), documented with its header.
TOO_MANY_LOGINS: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": "Too many failed logins for this e-mail or from this address",
        "headers": {
            "Retry-After": {
                "description": "Seconds until a login will be counted again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
}


def user_out(session: Session, user: User) -> UserOut:
    teams = session.scalars(
        select(TeamMember.team_id).where(TeamMember.user_id == user.id).order_by(TeamMember.team_id)
    ).all()
    return UserOut(
        id=user.id,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        worker_id=user.worker_id,
        team_ids=sorted(teams),
        active=user.active,
    )


def login_limits(request: Request) -> LoginLimits:
    return LoginLimits.from_settings(request.app.state.settings)


def checked_login(session: Session, request: Request, email: str, password: str) -> User | None:
    """The user, or None for a wrong e-mail or password (the failure is counted and committed);
    TooManyFailures, before the password is checked, while the e-mail or address is over its
    limit.  Shared by the API's login and the dashboard's login form."""
    limits, address = login_limits(request), client_address(request)
    try:
        limits.check(session, email, address)
    except TooManyFailures:
        session.commit()  # the purge of aged-out failures
        raise
    user = auth.authenticate(session, email, password)
    if user is None:
        limits.record_failure(session, email, address)
        session.commit()
        return None
    limits.forget(session, email, address)
    return user


def too_many(exc: TooManyFailures) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
    )


def _login_out(session: Session, user: User, token: str) -> LoginOut:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == auth.token_hash(token)))
    assert row is not None
    return LoginOut(token=token, expires_at=row.expires_at, user=user_out(session, user))


@router.post("/auth/login", response_model=LoginOut, responses=TOO_MANY_LOGINS)
def login(body: LoginIn, request: Request, session: Session = Depends(get_session)) -> LoginOut:
    """Exchange e-mail and password for a bearer token (valid 7 days).  Rate limited: 429 with
    Retry-After after too many failures for one e-mail or from one address."""
    try:
        user = checked_login(session, request, body.email, body.password)
    except TooManyFailures as exc:
        raise too_many(exc) from None
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong e-mail or password")
    out = _login_out(session, user, auth.issue_token(session, user))
    session.commit()
    return out


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    request: Request,
    _principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> None:
    """End this token's session."""
    token = request_token(request)
    if token:
        auth.revoke_token(session, token)
        session.commit()


@router.post("/auth/rotate", response_model=LoginOut)
def rotate(
    request: Request,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> LoginOut:
    """A new token for the caller, valid 7 days from now; the token this request was made with
    stops working at once."""
    token = request_token(request)
    new = auth.rotate_token(session, token) if token else None
    user = session.get(User, principal.user_id)
    if new is None or user is None:  # ended by a concurrent request
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "token unknown or expired: log in again")
    out = _login_out(session, user, new)
    session.commit()
    return out


@router.get("/auth/sessions", response_model=list[SessionOut])
def my_sessions(
    request: Request,
    principal: Principal = Depends(current_principal),
    session: Session = Depends(get_session),
) -> list[SessionOut]:
    """The caller's sessions that still work (never the tokens themselves)."""
    current = auth.token_hash(request_token(request) or "")
    return [
        SessionOut(
            id=row.id, created_at=row.created_at, expires_at=row.expires_at, current=row.token_hash == current
        )
        for row in auth.user_sessions(session, principal.user_id)
    ]


@router.delete("/auth/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def end_my_session(
    session_id: Id, principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> None:
    """End one of the caller's sessions (another browser, a lost phone); 404 for anyone else's."""
    row = session.get(ApiToken, session_id)
    if row is None or row.user_id != principal.user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"you have no session {session_id}")
    session.delete(row)
    session.commit()


@router.delete("/auth/sessions", status_code=status.HTTP_204_NO_CONTENT)
def end_my_sessions(
    principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> None:
    """End every session of the caller, this one included (sign out everywhere)."""
    auth.end_sessions(session, principal.user_id)
    session.commit()


@router.get("/me", response_model=UserOut)
def me(principal: Principal = Depends(current_principal), session: Session = Depends(get_session)) -> UserOut:
    user = session.get(User, principal.user_id)
    assert user is not None
    return user_out(session, user)
