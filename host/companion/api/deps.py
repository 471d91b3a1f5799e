"""FastAPI dependencies: database sessions, who is asking (Principal), role checks.

Credentials: ``Authorization: Bearer <token>`` or the ``posture_session`` cookie the
dashboard's login form sets; both carry a user token (companion.auth.issue_token).  Agent
tokens (sync agents) are only accepted by POST /api/ingest (:func:`current_agent`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, cast

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from companion import auth
from companion.store.models import AgentToken, Team, TeamMember, User, Worker

SESSION_COOKIE = "posture_session"

RoleName = Literal["worker", "ergonomist", "admin"]


def get_session(request: Request) -> Iterator[Session]:
    """A Session on the app's store (``request.app.state.store``); routes commit themselves,
    anything uncommitted is rolled back when the request ends."""
    factory = getattr(request.app.state, "session_factory", None)
    if factory is None:
        factory = sessionmaker(request.app.state.store, expire_on_commit=False)
        request.app.state.session_factory = factory
    with factory() as session:
        yield session


@dataclass(frozen=True)
class Principal:
    """The user a request acts for."""

    user_id: int
    email: str
    role: RoleName
    worker_id: int | None
    team_ids: frozenset[int]  # ergonomist: their teams; admin: every team; worker: empty


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def request_token(request: Request) -> str | None:
    """The user token of a request: the bearer header, else the session cookie."""
    return _bearer(request) or request.cookies.get(SESSION_COOKIE) or None


def client_address(request: Request) -> str | None:
    """The address the request came from, as the server saw it.  Behind a reverse proxy this is
    the proxy's unless uvicorn trusts its X-Forwarded-For (``--forwarded-allow-ips``; it trusts
    127.0.0.1 by default)."""
    return request.client.host if request.client is not None else None


def cookie_secure(request: Request) -> bool:
    """Whether cookies are marked Secure (sent over https only): the setting
    ``POSTURE_COOKIE_SECURE``, else whether this request came over https."""
    configured: bool | None = request.app.state.settings.cookie_secure
    return configured if configured is not None else request.url.scheme == "https"


def principal_of(session: Session, user: User) -> Principal:
    if user.role == "admin":
        teams = frozenset(session.scalars(select(Team.id)).all())
    elif user.role == "ergonomist":
        teams = frozenset(
            session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user.id)).all()
        )
    else:
        teams = frozenset()
    return Principal(user.id, user.email, cast(RoleName, user.role), user.worker_id, teams)


_UNAUTHORISED = {"WWW-Authenticate": "Bearer"}


def current_principal(request: Request, session: Session = Depends(get_session)) -> Principal:
    """The logged-in user; 401 without valid credentials."""
    token = request_token(request)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in: send a bearer token", _UNAUTHORISED)
    user = auth.user_for_token(session, token)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "token unknown or expired: log in again", _UNAUTHORISED
        )
    return principal_of(session, user)


def current_agent(request: Request, session: Session = Depends(get_session)) -> AgentToken:
    """The sync agent of an upload; 401 without an agent token, 403 for a user's token."""
    token = _bearer(request)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "uploads need an agent token", _UNAUTHORISED)
    agent = auth.agent_for_token(session, token)
    if agent is not None:
        return agent
    if auth.user_for_token(session, token) is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "uploads need an agent token, not a user's token")
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, "agent token unknown, expired or revoked", _UNAUTHORISED
    )


def require_role(*roles: RoleName) -> Callable[..., Principal]:
    """A dependency letting only `roles` through (403 for the others)."""

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {' or '.join(roles)}")
        return principal

    return dependency


def can_see_team(principal: Principal, team_id: int | None) -> bool:
    if principal.role == "admin":
        return True
    return principal.role == "ergonomist" and team_id is not None and team_id in principal.team_ids


def can_see_worker(principal: Principal, worker: Worker) -> bool:
    """Worker: only themself; ergonomist: workers of their teams; admin: everyone."""
    if principal.role == "worker":
        return principal.worker_id is not None and worker.id == principal.worker_id
    return can_see_team(principal, worker.team_id)


def visible_worker(session: Session, principal: Principal, worker_id: int) -> Worker:
    """The worker, if the principal may see them: 404 when absent, 403 when not theirs."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no worker {worker_id}")
    if not can_see_worker(principal, worker):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"worker {worker_id} is not yours to see")
    return worker


def managed_worker(session: Session, principal: Principal, worker_id: int) -> Worker:
    """The worker, if the principal manages them (ergonomist of their team, or admin)."""
    worker = visible_worker(session, principal, worker_id)
    if principal.role == "worker":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the role ergonomist or admin")
    return worker


def visible_team(session: Session, principal: Principal, team_id: int) -> Team:
    team = session.get(Team, team_id)
    if team is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {team_id}")
    if not can_see_team(principal, team_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"team {team_id} is not yours to see")
    return team
