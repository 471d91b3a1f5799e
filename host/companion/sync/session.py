"""One sync session with a posture device, independent of the BLE library (docs/sync.md).

The session speaks shared/protocol.py over a :class:`Transport` (read `info`, write `control`
with response, receive `data` notifications): HELLO with mutual proof of the device key,
TIME_SET, then FETCH → frames → BATCH_END → upload → ACK rounds, then pending settings
(CONFIG_SET).  The uploader stores a batch durably (the companion's ingest, in-process or over
HTTP) and only after it returns is the batch acknowledged, so the device deletes nothing the
companion does not hold.  Any failure before the ACK leaves the records on the device; the next
session fetches them again and the idempotent ingest drops the duplicates.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import protocol

DEFAULT_WINDOW = 64  # frames per FETCH (the firmware grants at most 64)
NOTIFY_TIMEOUT_S = 10.0


class SyncError(Exception):
    """A session could not complete; the message says what to do."""


class AuthFailed(SyncError):
    """The device and the companion do not share the key."""


class DeviceUnreachable(SyncError):
    """No connection (out of range, radio off, not advertising)."""


class LinkLost(SyncError):
    """The link dropped mid-session; ``frames_in_batch`` data frames of the open batch had
    arrived (the agent shrinks its window to what got through)."""

    def __init__(self, message: str, frames_in_batch: int = 0) -> None:
        super().__init__(message)
        self.frames_in_batch = frames_in_batch


class DeviceError(SyncError):
    """The device answered a command with an error code."""

    def __init__(self, cmd: int, error: int) -> None:
        name = protocol.COMMAND_NAMES.get(cmd, str(cmd))
        super().__init__(f"the device refused {name}: {protocol.ERROR_NAMES[error] if error < len(protocol.ERROR_NAMES) else error}")
        self.cmd = cmd
        self.error = error


class BadBatch(SyncError):
    """A batch failed its checks (frame order, MAC, CRC): nothing of it is stored or ACKed."""


class Transport(Protocol):
    """What a session needs from a BLE connection."""

    @property
    def mtu(self) -> int: ...

    async def read_info(self) -> bytes: ...

    async def write_control(self, data: bytes) -> None: ...

    async def next_notification(self, timeout_s: float) -> bytes:
        """The next `data` notification; LinkLost when the link drops, TimeoutError on silence."""
        ...


@dataclass
class UploadResult:
    stored: int
    duplicates: int


Uploader = Callable[[str, bytes, bytes], Awaitable[UploadResult]]
"""(device_id, framed records, batch MAC) -> stored durably; raises to refuse the batch."""


@dataclass
class SessionReport:
    device_id: str
    info: dict[str, object]
    records: int = 0  # records received in complete batches
    stored: int = 0
    duplicates: int = 0
    batches: int = 0
    acked_seq: int = 0
    clock_offset_s: int = 0  # host clock minus device clock before TIME_SET
    config_crc: int | None = None  # set when pending settings were applied
    config_error: str | None = None
    session_s: float = 0.0
    first_seq: int | None = None
    last_seq: int | None = None
    seqs: list[int] = field(default_factory=list)


Progress = Callable[[int, int], None]
"""(records so far, records expected) after each batch."""


class Session:
    def __init__(
        self,
        transport: Transport,
        key: bytes,
        uploader: Uploader,
        *,
        window: int = DEFAULT_WINDOW,
        pending_config: bytes | None = None,
        progress: Progress | None = None,
        now_s: Callable[[], float] = time.time,
        notify_timeout_s: float = NOTIFY_TIMEOUT_S,
    ) -> None:
        self.t = transport
        self.key = key
        self.uploader = uploader
        self.window = max(1, min(window, 0xFFFF))
        self.pending_config = pending_config
        self.progress = progress
        self.now_s = now_s
        self.timeout_s = notify_timeout_s
        self.report: SessionReport | None = None  # filled in as the session goes (also when it fails)

    async def run(self) -> SessionReport:
        started = time.perf_counter()
        try:
            return await self._run()
        finally:
            if self.report is not None:
                self.report.session_s = time.perf_counter() - started

    async def _run(self) -> SessionReport:
        info = protocol.decode_info(await self.t.read_info())
        device_id = str(info["device_id"])
        report = SessionReport(device_id, info, acked_seq=int(info["acked_seq"]))  # type: ignore[call-overload]
        self.report = report
        await self._hello(info)
        now = int(self.now_s())
        report.clock_offset_s = now - int(info["clock_s"])  # type: ignore[call-overload]
        await self._command(protocol.CMD_TIME_SET, now)
        expected = max(0, int(info["last_seq"]) - int(info["acked_seq"]))  # type: ignore[call-overload]
        from_seq = int(info["acked_seq"]) + 1  # type: ignore[call-overload]
        more = int(info["last_seq"]) >= from_seq  # type: ignore[call-overload]
        while more:
            records, more, mac = await self._fetch(device_id, from_seq)
            if not records:
                break
            # The device's own MAC (checked in _fetch) travels with the batch to the companion.
            result = await self.uploader(device_id, b"".join(records), mac)
            seqs = [protocol.decode_record(r)[0].seq for r in records]
            last = seqs[-1]
            # Stored durably: only now may the device delete them.
            await self._command(protocol.CMD_ACK, last)
            report.batches += 1
            report.records += len(records)
            report.stored += result.stored
            report.duplicates += result.duplicates
            report.acked_seq = last
            report.seqs += seqs
            report.first_seq = seqs[0] if report.first_seq is None else report.first_seq
            report.last_seq = last
            from_seq = last + 1
            if self.progress is not None:
                self.progress(report.records, max(expected, report.records))
        if self.pending_config is not None:
            await self._config_set(report, self.pending_config)
        return report

    # ---- steps ----------------------------------------------------------------------------
    async def _hello(self, info: dict[str, object]) -> None:
        nonce = bytes(info["nonce"])  # type: ignore[call-overload]
        host_nonce = os.urandom(protocol.NONCE_SIZE)
        proof = protocol.host_auth_proof(self.key, nonce, host_nonce)
        error, detail = await self._command_result(protocol.CMD_HELLO, host_nonce, proof)
        if error == protocol.ERR_AUTH_FAILED:
            raise AuthFailed(
                f"device {info['device_id']} refused the key: the companion's key for it is not the one on "
                "the board (provision it again, or register the board's key with the companion)"
            )
        if error != protocol.OK:
            raise DeviceError(protocol.CMD_HELLO, error)
        if not protocol.digest_equal(detail, protocol.device_auth_proof(self.key, nonce, host_nonce)):
            raise AuthFailed(f"device {info['device_id']} could not prove it holds the key: not our device")

    async def _fetch(self, device_id: str, from_seq: int) -> tuple[list[bytes], bool, bytes]:
        await self._command(protocol.CMD_FETCH, from_seq, self.window)
        frames: list[bytes] = []
        while True:
            try:
                data = await self.t.next_notification(self.timeout_s)
            except LinkLost as e:
                raise LinkLost(str(e), len(frames)) from None
            except TimeoutError:
                raise LinkLost("the device stopped sending mid-batch", len(frames)) from None
            ftype, values = protocol.decode_notification(data)
            if ftype == protocol.FRAME_RESULT:
                continue  # a late result of an earlier command
            if ftype == protocol.FRAME_BATCH_END:
                frame_seq, count, more, mac = values  # type: ignore[misc]
                break
            frames.append(data)
        if frame_seq != len(frames):
            raise BadBatch(f"batch from {device_id}: {frame_seq} frames announced, {len(frames)} arrived")
        try:
            records = protocol.unpack_data_frames(frames, 0)
            for r in records:
                protocol.decode_record(r)  # CRC and layout
        except protocol.ProtocolError as e:
            raise BadBatch(f"batch from {device_id}: {e}") from None
        if len(records) != count:
            raise BadBatch(f"batch from {device_id}: {count} records announced, {len(records)} arrived")
        if not protocol.digest_equal(mac, protocol.batch_mac(self.key, device_id, b"".join(records))):
            raise BadBatch(f"batch from {device_id}: its MAC does not match the device key")
        return records, bool(more), bytes(mac)

    async def _config_set(self, report: SessionReport, document: bytes) -> None:
        chunk_size = max(1, self.t.mtu - 3 - 5)
        total = len(document)
        error, detail = protocol.OK, b""
        for offset in range(0, total, chunk_size):
            error, detail = await self._command_result(
                protocol.CMD_CONFIG_SET, offset, total, document[offset : offset + chunk_size]
            )
            if error != protocol.OK:
                break
        if error == protocol.OK and len(detail) == 4:
            report.config_crc = int.from_bytes(detail, "little")
        else:
            report.config_error = protocol.ERROR_NAMES[error] if error < len(protocol.ERROR_NAMES) else str(error)

    # ---- commands -------------------------------------------------------------------------
    async def _command(self, cmd: int, *values: object) -> bytes:
        error, detail = await self._command_result(cmd, *values)
        if error != protocol.OK:
            raise DeviceError(cmd, error)
        return detail

    async def _command_result(self, cmd: int, *values: object) -> tuple[int, bytes]:
        await self.t.write_control(protocol.encode_command(cmd, *values))
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise LinkLost(f"no answer to {protocol.COMMAND_NAMES[cmd]}")
            try:
                data = await self.t.next_notification(left)
            except TimeoutError:
                raise LinkLost(f"no answer to {protocol.COMMAND_NAMES[cmd]}") from None
            ftype, values_ = protocol.decode_notification(data)
            if ftype == protocol.FRAME_RESULT and values_[0] == cmd:
                return int(values_[1]), bytes(values_[2])  # type: ignore[call-overload]
            # Anything else is left over from an abandoned batch: skip it.
