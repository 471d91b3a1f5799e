"""The sync agent: find posture devices, run sessions, resume after drops, store into the companion.

Keys come from the companion's store (`devices.key`); batches go to the companion in-process
(:func:`store_uploader`) or over HTTP (:func:`http_uploader`, an agent token).  A device the
companion has no key for is refused before connecting: its data could not be verified.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from sqlalchemy import Engine, select

import protocol
from companion.sync.session import (
    DEFAULT_WINDOW,
    AuthFailed,
    BadBatch,
    DeviceError,
    DeviceUnreachable,
    LinkLost,
    Progress,
    Session,
    SessionReport,
    SyncError,
    Uploader,
    UploadResult,
)
from companion.sync.transport_bleak import BleakTransport

log = logging.getLogger(__name__)

ATTEMPTS = 8
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)


class UnknownDevice(SyncError):
    """The companion holds no key for the device (not provisioned, or revoked)."""


@dataclass
class DeviceSync:
    """Everything one device's sync did, over however many sessions it took."""

    device_id: str
    sessions: list[SessionReport] = field(default_factory=list)
    drops: int = 0

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sessions)

    @property
    def stored(self) -> int:
        return sum(s.stored for s in self.sessions)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.sessions)

    @property
    def session_s(self) -> float:
        return sum(s.session_s for s in self.sessions)

    @property
    def seqs(self) -> list[int]:
        return [q for s in self.sessions for q in s.seqs]

    @property
    def acked_seq(self) -> int:
        return self.sessions[-1].acked_seq if self.sessions else 0


# ---- the companion side ----------------------------------------------------------------------


def device_key(engine: Engine, device_id: str) -> bytes:
    from companion.store import Device, session_scope

    with session_scope(engine) as session:
        row = session.execute(
            select(Device.key, Device.revoked_at).where(Device.device_id == device_id)
        ).first()
    if row is None or row[0] is None:
        raise UnknownDevice(
            f"the companion has no key for device {device_id}: provision it "
            f"(tools/flash.py provision --device-id {device_id}) or register it (posture devices add)"
        )
    if row[1] is not None:
        raise UnknownDevice(f"device {device_id} is revoked: give it a new key first")
    return bytes(row[0])


def store_uploader(engine: Engine) -> Uploader:
    """Batches into the companion's database in this process, one committed transaction each."""
    from companion.ingest import ingest_batch
    from companion.store import session_factory

    factory = session_factory(engine)

    def store(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        with factory() as session:
            result = ingest_batch(session, device_id, frames, mac)  # commits its own transaction
        return UploadResult(result.new, result.duplicate)

    async def upload(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        return await asyncio.to_thread(store, device_id, frames, mac)

    return upload


# A 503 from the companion (busy with other uploads of the device): tries before giving up.
BUSY_ATTEMPTS = 5


def http_uploader(server: str, token: str, timeout_s: float = 30.0) -> Uploader:
    """Batches to a companion server's ``POST /api/ingest`` with an agent token; a 503 is sent
    again after its Retry-After (at most BUSY_ATTEMPTS tries)."""
    url = server.rstrip("/") + "/api/ingest"

    def post_until_taken(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        for _ in range(BUSY_ATTEMPTS - 1):
            try:
                return post(device_id, frames, mac)
            except CompanionBusy as busy:
                time.sleep(busy.retry_after_s)
        return post(device_id, frames, mac)

    def post(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        body = json.dumps(
            {
                "device_id": device_id,
                "frames_b64": base64.b64encode(frames).decode(),
                "batch_mac_b64": base64.b64encode(mac).decode(),
            }
        ).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            if e.code == 503 and (e.headers.get("Retry-After") or "").isdigit():
                raise CompanionBusy(
                    f"the companion is busy: {detail[:300]}", int(e.headers["Retry-After"])
                ) from None
            raise SyncError(f"the companion refused the batch ({e.code}): {detail[:300]}") from None
        except OSError as e:
            raise SyncError(f"cannot reach the companion at {server}: {e}") from None
        return UploadResult(int(answer["stored"]), int(answer["duplicates"]))

    async def upload(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        return await asyncio.to_thread(post_until_taken, device_id, frames, mac)

    return upload


class CompanionBusy(SyncError):
    """The companion answered 503 with a Retry-After: the same batch may be sent again then."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def pending_settings(engine: Engine, device_id: str) -> dict[str, Any] | None:
    from companion.api.devicesettings import pending_for
    from companion.store import session_scope

    with session_scope(engine) as session:
        return pending_for(session, device_id)


def settings_applied(engine: Engine, device_id: str, crc: int, applied: dict[str, Any]) -> None:
    from companion.api.devicesettings import mark_applied
    from companion.store import session_scope

    with session_scope(engine) as session:
        mark_applied(session, device_id, crc, applied)


# ---- discovery and sessions ------------------------------------------------------------------


async def discover(timeout_s: float = 5.0, **scanner_kwargs: Any) -> list[tuple[BLEDevice, str]]:
    """Posture devices advertising nearby (in a sync window): (device, device id)."""
    found = await BleakScanner.discover(
        timeout=timeout_s, service_uuids=[protocol.SERVICE_UUID], return_adv=True, **scanner_kwargs
    )
    out = []
    for device, adv in found.values():
        out.append((device, adv.local_name or device.name or device.address))
    return out


async def sync_device(
    target: BLEDevice | str,
    key: bytes,
    uploader: Uploader,
    *,
    client_kwargs: dict[str, Any] | None = None,
    window: int = DEFAULT_WINDOW,
    pending_config: dict[str, Any] | None = None,
    on_config_applied: Callable[[int, dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
    attempts: int = ATTEMPTS,
    device_id: str | None = None,
) -> DeviceSync:
    """Sync one device to the end of its log, reconnecting after drops (bounded attempts).

    A drop mid-batch shrinks the window to the frames that got through, so a link that drops
    every few frames still makes progress.  AuthFailed is final: retrying cannot help."""
    result = DeviceSync(device_id or str(target))
    config = json.dumps(pending_config, sort_keys=True).encode() if pending_config else None
    failures = 0  # consecutive attempts that moved nothing forward
    while True:
        transport: BleakTransport | None = None
        session: Session | None = None
        acked_before = result.acked_seq
        try:
            transport = await BleakTransport.connect(target, **(client_kwargs or {}))
            session = Session(
                transport, key, uploader, window=window, pending_config=config, progress=progress
            )
            report = await session.run()
            result.device_id = report.device_id
            result.sessions.append(report)
            if config is not None and report.config_crc is not None and on_config_applied is not None:
                on_config_applied(report.config_crc, pending_config or {})
            return result
        except AuthFailed:
            raise
        except LinkLost as e:
            result.drops += 1
            if e.frames_in_batch:
                window = max(1, min(window, e.frames_in_batch))
            elif window > 1:
                window = max(1, window // 2)
            error: SyncError = e
        except (DeviceUnreachable, BadBatch, DeviceError) as e:
            error = e
        finally:
            if transport is not None:
                await transport.close()
        if session is not None and session.report is not None:
            result.device_id = session.report.device_id
            result.sessions.append(session.report)
        failures = 0 if result.acked_seq > acked_before else failures + 1
        log.info(
            "sync %s: %s (acked %d, window %d, attempt without progress %d)",
            result.device_id,
            error,
            result.acked_seq,
            window,
            failures,
        )
        if failures >= attempts:
            raise type(error)(
                f"gave up on {result.device_id} after {failures} attempts without progress: {error}"
            )
        await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
