"""Sync agents' upload tokens (admin): issue, list, rotate, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import auth
from companion.api.deps import Principal, get_session, require_role
from companion.api.schemas import AgentIn, AgentOut, AgentTokenOut, Id
from companion.store.models import AgentToken

router = APIRouter(tags=["agents"])
admin_only = require_role("admin")


def _agent(session: Session, agent_id: int) -> AgentToken:
    agent = session.get(AgentToken, agent_id)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent token {agent_id}")
    return agent


def _with_token(agent: AgentToken, token: str) -> AgentTokenOut:
    return AgentTokenOut.model_validate({**AgentOut.model_validate(agent).model_dump(), "token": token})


@router.get("/agents", response_model=list[AgentOut])
def list_agents(
    _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> list[AgentToken]:
    """Every agent token ever issued, revoked ones included (never the tokens themselves)."""
    return list(session.scalars(select(AgentToken).order_by(AgentToken.id)))


@router.post("/agents", response_model=AgentTokenOut, status_code=status.HTTP_201_CREATED)
def issue_agent(
    body: AgentIn, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> AgentTokenOut:
    """A new upload token for a sync agent (valid until revoked): shown once, give it to the agent
    (`posture sync --server URL --token TOKEN`)."""
    token = auth.issue_agent_token(session, body.name)
    agent = auth.agent_for_token(session, token)
    assert agent is not None
    out = _with_token(agent, token)
    session.commit()
    return out


@router.post("/agents/{agent_id}/rotate", response_model=AgentTokenOut)
def rotate_agent(
    agent_id: Id, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> AgentTokenOut:
    """A new token for the agent (shown once); its old token is refused from now on.  409 for a
    revoked agent: issue a new one instead."""
    agent = _agent(session, agent_id)
    if agent.revoked:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"agent token {agent_id} is revoked: issue a new one (POST /api/agents)"
        )
    out = _with_token(agent, auth.rotate_agent_token(session, agent))
    session.commit()
    return out


@router.post("/agents/{agent_id}/revoke", response_model=AgentOut)
def revoke_agent(
    agent_id: Id, _p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> AgentToken:
    """Refuse the agent's uploads from now on (a lost or compromised PC)."""
    agent = _agent(session, agent_id)
    auth.revoke_agent_token(session, agent)
    session.commit()
    return agent
