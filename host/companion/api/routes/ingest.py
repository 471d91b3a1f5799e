"""Uploads of record batches by sync agents (agent tokens only)."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from companion import ingest
from companion.api.deps import current_agent, get_session
from companion.api.schemas import IngestIn, IngestOut
from companion.store.models import AgentToken, Device

router = APIRouter(tags=["ingest"])

# A device's whole log is ~1 MB (docs/protocol.md); agents send it in batches of a few
# hundred records, so 4 MiB of base64 is generous and bounds the memory one request can take.
MAX_INGEST_BODY_BYTES = 4 * 1024 * 1024


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{name} is not valid base64") from None


@router.post(
    "/ingest",
    response_model=IngestOut,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": IngestIn.model_json_schema()}},
            "required": True,
        }
    },
)
async def upload(
    request: Request, _agent: AgentToken = Depends(current_agent), session: Session = Depends(get_session)
) -> IngestOut:
    """Store a batch of framed records (all or nothing; replays are skipped) and return what
    the agent may ACK to the device (`contiguous_seq`)."""
    raw = await read_limited(request, MAX_INGEST_BODY_BYTES)
    try:
        body = IngestIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, f"invalid upload: {problems}") from None
    frames = _b64(body.frames_b64, "frames_b64")
    mac = _b64(body.batch_mac_b64, "batch_mac_b64") if body.batch_mac_b64 else None
    # The database work is blocking: off the event loop, like FastAPI's sync routes.
    return await run_in_threadpool(
        _store, session, body.device_id, frames, mac, request.app.state.settings.require_batch_hmac
    )


def _store(
    session: Session, device_id: str, frames: bytes, mac: bytes | None, require_hmac: bool
) -> IngestOut:
    revoked = session.scalar(select(Device.revoked_at).where(Device.device_id == device_id))
    if revoked is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"device {device_id!r} is revoked: set a new key first"
        )
    try:
        result = ingest.ingest_batch(session, device_id, frames, mac, require_hmac=require_hmac)
    except ingest.UnknownDevice as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ingest.BatchAuthError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except ingest.ConflictingReplay as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ingest.IngestError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return IngestOut(stored=result.new, duplicates=result.duplicate, contiguous_seq=result.contiguous_seq)
