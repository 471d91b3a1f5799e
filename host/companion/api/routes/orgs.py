"""Organisations, teams and users (administration)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from companion import auth
from companion.api.deps import Principal, get_session, require_role
from companion.api.routes.auth import user_out
from companion.api.schemas import Id, OrganisationIn, OrganisationOut, TeamIn, TeamOut, UserIn, UserOut
from companion.store.models import Organisation, Team, User, Worker

router = APIRouter(tags=["organisations"])
admin_only = require_role("admin")
managers = require_role("ergonomist", "admin")


@router.get("/organisations", response_model=list[OrganisationOut])
def list_organisations(
    _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.id)))


@router.post("/organisations", response_model=OrganisationOut, status_code=status.HTTP_201_CREATED)
def create_organisation(
    body: OrganisationIn, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> Organisation:
    org = Organisation(name=body.name)
    session.add(org)
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, f"an organisation named {body.name!r} exists") from None
    return org


@router.get("/teams", response_model=list[TeamOut])
def list_teams(
    principal: Principal = Depends(managers), session: Session = Depends(get_session)
) -> list[Team]:
    """Admin: every team; ergonomist: the teams they look after."""
    query = select(Team).order_by(Team.id)
    if principal.role != "admin":
        query = query.where(Team.id.in_(principal.team_ids))
    return list(session.scalars(query))


@router.post("/teams", response_model=TeamOut, status_code=status.HTTP_201_CREATED)
def create_team(
    body: TeamIn, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> Team:
    if session.get(Organisation, body.organisation_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no organisation {body.organisation_id}")
    team = Team(organisation_id=body.organisation_id, name=body.name)
    session.add(team)
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the organisation has a team named {body.name!r}"
        ) from None
    return team


@router.get("/users", response_model=list[UserOut])
def list_users(_p: Principal = Depends(admin_only), session: Session = Depends(get_session)) -> list[UserOut]:
    return [user_out(session, u) for u in session.scalars(select(User).order_by(User.id))]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserIn, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> UserOut:
    if body.worker_id is not None and session.get(Worker, body.worker_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no worker {body.worker_id}")
    for team_id in body.team_ids:
        if session.get(Team, team_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no team {team_id}")
    try:
        user = auth.create_user(session, body.email, body.password, body.role, body.worker_id, body.team_ids)
    except auth.AuthError as exc:
        raise HTTPException(422, str(exc)) from None
    out = user_out(session, user)
    session.commit()
    return out


@router.delete("/users/{user_id}/sessions", status_code=status.HTTP_204_NO_CONTENT)
def end_user_sessions(
    user_id: Id, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> None:
    """End every session of a user at once (a leaked token, a lost laptop); they log in again."""
    if session.get(User, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    auth.end_sessions(session, user_id)
    session.commit()
