"""Uploads of record batches by sync agents (agent tokens only).

Concurrency: several uploads of one device's records may arrive at once, on any of the worker
processes of ``posture serve --workers N``: an agent retrying, two agents in range of the same
device.  Each upload's transaction first locks its device (PostgreSQL: ``SELECT ... FOR UPDATE``
on the device's row; SQLite: a write, which takes the database's one write lock, waiting for it
up to the busy timeout), so uploads of one device run one after the other and each one sees what
the previous stored: a record is stored once, and every answer's stored/duplicate counts are
exact.  A transaction that still loses a race (a deadlock, a worker-day's exposure row created by
another device's upload, a lock not granted in time) is run again from the start; after
INGEST_ATTEMPTS the answer is 503 with Retry-After, which the sync agent honours.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from companion import ingest
from companion.api.deps import current_agent, get_session
from companion.api.routes.exposure import refresh_days
from companion.api.schemas import IngestIn, IngestOut
from companion.store.db import lost_race
from companion.store.models import AgentToken, Device

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])

# A device's whole log is ~1 MB (docs/protocol.md); agents send it in batches of a few
# hundred records, so 4 MiB of base64 is generous and bounds the memory one request can take.
MAX_INGEST_BODY_BYTES = 4 * 1024 * 1024
# Runs of an upload's transaction that lost a race before the answer is a 503.
INGEST_ATTEMPTS = 3
RETRY_AFTER_S = 1
# Upload transactions a worker process runs at once (ingest_slots): SQLite writes one at a time
# whatever the number; on PostgreSQL a few overlap the CPU work of one with another's I/O.
SQLITE_INGEST_SLOTS = 1
INGEST_SLOTS = 4
# How long an upload waits for a slot before the answer is 503 with Retry-After: under the sync
# agent's 30 s request timeout, so a queue of uploads turns into retries, not timeouts.
SLOT_WAIT_S = 20.0


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
    request: Request,
    background: BackgroundTasks,
    _agent: AgentToken = Depends(current_agent),
    session: Session = Depends(get_session),
) -> IngestOut:
    """Store a batch of framed records (all or nothing; replays are skipped) and return what
    the agent may ACK to the device (`contiguous_seq`).  The daily exposure of the days the
    batch touched is recomputed after the answer has gone (a reader that comes first recomputes
    them itself): the device's flash is freed as soon as the records are stored."""
    # The token check is done: no connection is held while the body arrives.
    session.commit()
    raw = await read_limited(request, MAX_INGEST_BODY_BYTES)
    try:
        body = IngestIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, f"invalid upload: {problems}") from None
    frames = _b64(body.frames_b64, "frames_b64")
    mac = _b64(body.batch_mac_b64, "batch_mac_b64") if body.batch_mac_b64 else None
    # The database work is blocking: off the event loop, like FastAPI's sync routes.  At most
    # a few uploads at a time per process take a thread; the others wait here, on the event loop.
    slots = ingest_slots(request, session)
    try:
        await asyncio.wait_for(slots.acquire(), SLOT_WAIT_S)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the companion is busy with other uploads: send the batch again",
            {"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    try:
        answer, days = await run_in_threadpool(
            _store, session, body.device_id, frames, mac, request.app.state.settings.require_batch_hmac
        )
    finally:
        slots.release()
    if days:
        # A session of its own: the request's is closed once the answer has gone.
        background.add_task(refresh_after_upload, slots, request.app.state.session_factory, days)
    return answer


async def refresh_after_upload(
    slots: asyncio.Semaphore, factory: sessionmaker[Session], days: list[tuple[int, dt.date]]
) -> None:
    """The daily exposure of the days an upload touched, so dashboards find it computed; it
    writes, so it takes an upload slot too.  A failure only leaves the days dirty, for the next
    reader to recompute: logged, never raised."""
    async with slots:
        try:
            await run_in_threadpool(_refresh, factory, days)
        except Exception:  # noqa: BLE001 - the answer has gone; the days stay marked dirty
            log.warning(
                "recomputing the exposure of %d worker-days after an upload failed", len(days), exc_info=True
            )


def _refresh(factory: sessionmaker[Session], days: list[tuple[int, dt.date]]) -> None:
    with factory() as session:
        refresh_days(session, days)


def ingest_slots(request: Request, session: Session) -> asyncio.Semaphore:
    """The process's semaphore of concurrent upload transactions (one per event loop).

    Why: every route without ``async`` runs in one thread pool (40 threads).  Hundreds of agents
    uploading at once used to fill it with uploads waiting for the database's write lock (SQLite
    has one writer; on PostgreSQL they queue on row locks and connections), and an ergonomist's
    page waited behind them all: seconds (bench/load.py).  More concurrent writers than this do
    not store faster anyway."""
    loop = asyncio.get_running_loop()
    held = getattr(request.app.state, "ingest_slots", None)
    if held is None or held[0] is not loop:
        sqlite = session.get_bind().dialect.name == "sqlite"
        held = (loop, asyncio.Semaphore(SQLITE_INGEST_SLOTS if sqlite else INGEST_SLOTS))
        request.app.state.ingest_slots = held
    semaphore: asyncio.Semaphore = held[1]
    return semaphore


def _store(
    session: Session, device_id: str, frames: bytes, mac: bytes | None, require_hmac: bool
) -> tuple[IngestOut, list[tuple[int, dt.date]]]:
    """The upload in one transaction, run again (at most INGEST_ATTEMPTS times) when it loses a
    race with a concurrent one; then 503."""
    for attempt in range(1, INGEST_ATTEMPTS + 1):
        try:
            return _store_once(session, device_id, frames, mac, require_hmac)
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as error:
            session.rollback()
            if not lost_race(error):
                raise
            if attempt == INGEST_ATTEMPTS:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    f"the database is busy with other uploads of device {device_id!r}: send the batch again",
                    {"Retry-After": str(RETRY_AFTER_S)},
                ) from None
    raise AssertionError("unreachable")


def lock_device(session: Session, device_id: str) -> dt.datetime | None:
    """Lock the device's row until the transaction ends (see the module doc); its revoked_at
    (None also for an unknown device, which ingest refuses by name)."""
    if session.get_bind().dialect.name == "sqlite":
        # No row locks in SQLite: a write takes the write lock of the whole database.
        session.execute(
            update(Device).where(Device.device_id == device_id).values(last_sync=Device.last_sync),
            execution_options={"synchronize_session": False},
        )
    return session.scalar(select(Device.revoked_at).where(Device.device_id == device_id).with_for_update())


def _store_once(
    session: Session, device_id: str, frames: bytes, mac: bytes | None, require_hmac: bool
) -> tuple[IngestOut, list[tuple[int, dt.date]]]:
    revoked = lock_device(session, device_id)
    if revoked is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"device {device_id!r} is revoked: set a new key first"
        )
    try:
        result = ingest.ingest_batch(
            session, device_id, frames, mac, require_hmac=require_hmac, recompute=False
        )
    except ingest.UnknownDevice as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ingest.BatchAuthError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except ingest.ConflictingReplay as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ingest.IngestError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    answer = IngestOut(stored=result.new, duplicates=result.duplicate, contiguous_seq=result.contiguous_seq)
    return answer, result.days
