"""Logging in and out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import auth
from companion.api.deps import Principal, current_principal, get_session, request_token
from companion.api.schemas import LoginIn, LoginOut, UserOut
from companion.store.models import ApiToken, TeamMember, User

router = APIRouter(tags=["auth"])


def user_out(session: Session, user: User) -> UserOut:
    teams = session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user.id)).all()
    return UserOut(
        id=user.id,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        worker_id=user.worker_id,
        team_ids=sorted(teams),
        active=user.active,
    )


@router.post("/auth/login", response_model=LoginOut)
def login(body: LoginIn, session: Session = Depends(get_session)) -> LoginOut:
    """Exchange e-mail and password for a bearer token (valid 7 days)."""
    user = auth.authenticate(session, body.email, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong e-mail or password")
    token = auth.issue_token(session, user)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == auth.token_hash(token)))
    assert row is not None
    out = LoginOut(token=token, expires_at=row.expires_at, user=user_out(session, user))
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


@router.get("/me", response_model=UserOut)
def me(principal: Principal = Depends(current_principal), session: Session = Depends(get_session)) -> UserOut:
    user = session.get(User, principal.user_id)
    assert user is not None
    return user_out(session, user)
