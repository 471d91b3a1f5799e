"""Idempotent ingest of record batches from a device into the store.

    result = ingest_batch(session, "W017", frames, batch_hmac)
    result.new, result.duplicate, result.contiguous_seq   # ACK contiguous_seq to the device

A batch is the device's framed records back to back (protocol.decode_records).  All or
nothing: a batch is either stored entirely (in one transaction) or rejected with an
:class:`IngestError` and nothing stored.  It is rejected when

- the device is not registered (:class:`UnknownDevice`);
- its HMAC is wrong, or missing while required (:class:`BatchAuthError`);
- any record fails to decode (:class:`MalformedBatch`, naming the record's index and seq);
- a record reuses a stored seq with different content (:class:`ConflictingReplay`).

A record identical to a stored one (same device, seq, type and payload) is a replay and is
skipped silently, so a resumed sync may resend anything.  After storing, the worker-days the
new minute summaries, bouts and alerts fall on are marked dirty and (by default) their daily
exposure is recomputed, so late data updates past days.

The batch HMAC (:func:`batch_mac`) is the contract the BLE sync agent and the device share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

import protocol
from companion import exposure
from companion.settings import get_settings
from companion.store.bulk import BulkInsert
from companion.store.models import Device, Event, MinuteSummary, Record, Worker, utc_now

# The construction is protocol.batch_mac; here with CPython's native hmac.
BATCH_MAC_CONTEXT = protocol.BATCH_MAC_CONTEXT
BATCH_MAC_SIZE = 32

# Record types whose time puts them on a worker-day's exposure.
_EXPOSURE_TYPES = frozenset((protocol.MINUTE, protocol.MINUTE2, protocol.BOUT, protocol.ALERT))
# The field of each event type that says when it happened.
_TIME_FIELDS = ("start_s", "time_s", "new_s")


class IngestError(ValueError):
    """A batch was rejected; nothing of it was stored."""


class UnknownDevice(IngestError):
    """The batch names a device the companion does not know."""


class BatchAuthError(IngestError):
    """The batch HMAC is wrong, or missing where one is required."""


class MalformedBatch(IngestError):
    """A record of the batch does not decode (truncated, bad CRC, unknown type, bad payload)."""


class ConflictingReplay(IngestError):
    """A record reuses a stored (device, seq) with different content."""


@dataclass(frozen=True)
class IngestResult:
    device_id: str
    new: int
    duplicate: int
    contiguous_seq: int | None  # highest seq with every record up to it stored: ACK this
    recomputed_days: list[tuple[int, dt.date]] = field(default_factory=list)


def batch_mac(key: bytes, device_id: str, frames: bytes) -> bytes:
    """HMAC-SHA256 of a batch: ``HMAC-SHA256(key, b"posture/batch/v1\\x00" || u8 len(id) ||
    id || frames)`` with id the UTF-8 device id (1..255 bytes) and frames the framed records
    exactly as sent.  The context string keeps these MACs apart from any other use of the key
    (the session handshake); the length prefix keeps the id/frames split unambiguous."""
    ident = device_id.encode()
    if not 0 < len(ident) < 256:
        raise ValueError(f"device id must be 1..255 bytes of UTF-8, got {len(ident)}")
    return hmac.new(key, BATCH_MAC_CONTEXT + bytes([len(ident)]) + ident + frames, hashlib.sha256).digest()


class DecodedRecord(NamedTuple):
    """A record of a batch as decode_batch checked it: what the store keeps of it."""

    seq: int
    rtype: int
    payload: bytes
    crc: int
    fields: dict[str, Any]  # protocol.decode_payload's dict


def decode_batch(frames: bytes) -> list[DecodedRecord]:
    """The records of a batch, each decoded once (framing, CRC, payload fields);
    MalformedBatch names the first bad one (index, seq, offset)."""
    records: list[DecodedRecord] = []
    pos = 0
    n = len(frames)
    while pos < n:
        try:
            record, fields, crc, nxt = protocol.decode_record_fields(frames, pos)
        except protocol.ProtocolError as exc:
            seq = struct.unpack_from("<I", frames, pos)[0] if n - pos >= 4 else None
            where = f"record #{len(records)}" + (
                f" (seq {seq}, if its header is intact)" if seq is not None else ""
            )
            raise MalformedBatch(f"{where} at byte {pos} does not decode: {exc}; batch rejected") from exc
        records.append(DecodedRecord(record.seq, record.rtype, record.payload, crc, fields))
        pos = nxt
    return records


def _event_time(fields: dict[str, Any]) -> int:
    for name in _TIME_FIELDS:
        if name in fields:
            return int(fields[name])
    raise ValueError(f"event has no time field: {sorted(fields)}")


def _find_device(session: Session, device_id: str) -> tuple[Device, str | None]:
    """The device and its worker's time zone (None without a worker), in one query."""
    found = session.execute(
        select(Device, Worker.timezone)
        .outerjoin(Worker, Worker.id == Device.worker_id)
        .where(Device.device_id == device_id)
    ).one_or_none()
    if found is None:
        raise UnknownDevice(
            f"device {device_id!r} is not registered with this companion: register it (with its key) "
            "before syncing"
        )
    return found[0], found[1]


def _check_mac(device: Device, frames: bytes, batch_hmac: bytes | None, require_hmac: bool) -> None:
    if batch_hmac is None:
        if require_hmac:
            raise BatchAuthError(
                f"batch from device {device.device_id!r} carries no HMAC, and one is required"
            )
        return
    if device.key is None:
        raise BatchAuthError(
            f"batch from device {device.device_id!r} carries an HMAC but the device has no key here: "
            "re-provision it with tools/flash.py provision and register the key"
        )
    if not hmac.compare_digest(batch_mac(device.key, device.device_id, frames), bytes(batch_hmac)):
        raise BatchAuthError(
            f"batch HMAC does not match device {device.device_id!r}'s key: the data was altered or the "
            "device's key differs from the registered one; batch rejected"
        )


def _split_new(
    session: Session, device: Device, records: Sequence[DecodedRecord]
) -> tuple[list[DecodedRecord], int, dict[int, tuple[int, bytes]]]:
    """(records not stored yet, number of replays, {seq: (rtype, payload)} of every seq stored
    in the batch's seq range once the new records are); ConflictingReplay on a changed seq."""
    if not records:
        return [], 0, {}
    seqs = [r.seq for r in records]
    stored = {
        seq: (rtype, bytes(payload))
        for seq, rtype, payload in session.execute(
            select(Record.seq, Record.rtype, Record.payload).where(
                Record.device_pk == device.id, Record.seq >= min(seqs), Record.seq <= max(seqs)
            )
        )
    }
    new: list[DecodedRecord] = []
    duplicate = 0
    for record in records:
        content = (record.rtype, record.payload)
        known = stored.get(record.seq)
        if known is None:
            stored[record.seq] = content
            new.append(record)
        elif known == content:
            duplicate += 1
        else:
            raise ConflictingReplay(
                f"device {device.device_id!r} sent seq {record.seq} again with different content "
                f"({protocol.RECORD_NAMES[record.rtype]}, stored: {protocol.RECORD_NAMES.get(known[0], known[0])}); "
                "a device must never reuse a seq: batch rejected"
            )
    return new, duplicate, stored


def _advance_contiguous(
    session: Session, device: Device, in_range: dict[int, tuple[int, bytes]]
) -> int | None:
    """Move device.contiguous_seq over the stored seqs and the seqs GAP records declare lost.

    `in_range` holds every stored seq from the lowest to the highest of the batch (what
    _split_new read, plus the batch): only the stored seqs above the mark outside that range
    are read, normally none."""
    after = -1 if device.contiguous_seq is None else device.contiguous_seq
    outside = Record.seq > after
    if in_range:
        outside &= (Record.seq < min(in_range)) | (Record.seq > max(in_range))
    rows = session.execute(
        select(Record.seq, Record.rtype).where(Record.device_pk == device.id, outside)
    ).all()
    # Intervals [first, last] of seqs that are accounted for.
    spans = [(seq, seq) for seq in in_range if seq > after]
    spans += [(seq, seq) for seq, _ in rows]
    gap_payloads = [
        payload for seq, (rtype, payload) in in_range.items() if seq > after and rtype == protocol.GAP
    ]
    gap_seqs = [seq for seq, rtype in rows if rtype == protocol.GAP]
    if gap_seqs:
        gap_payloads += session.scalars(
            select(Record.payload).where(Record.device_pk == device.id, Record.seq.in_(gap_seqs))
        )
    if not spans:
        return device.contiguous_seq
    for payload in gap_payloads:
        gap = protocol.decode_payload(protocol.GAP, payload)
        spans.append((gap["first_lost_seq"], gap["first_lost_seq"] + gap["lost_count"] - 1))
    spans.sort()
    reach = device.contiguous_seq
    if reach is None:
        reach = spans[0][0] - 1  # the first record the companion ever sees starts the count
    for first, last in spans:
        if first > reach + 1:
            break
        reach = max(reach, last)
    device.contiguous_seq = reach
    return reach


# Rows go in by one executemany per table (store/bulk.py says what that leaves out and why).
_RECORDS = BulkInsert(Record, ("seq", "rtype", "payload", "crc"), constants=("device_pk", "received_at"))
_MINUTES = BulkInsert(
    MinuteSummary,
    (
        "seq",
        "start_s",
        "worn_s",
        "flexion_bins",
        "inclination_bins",
        "lateral_bins",
        "activity_s",
        "alert_count",
        "longest_bout_s",
        "mean_velocity_ddps",
        "curvature_mean_ddeg",
    ),
    constants=("device_pk", "worker_id"),
)
_EVENTS = BulkInsert(Event, ("seq", "rtype", "time_s", "fields"), constants=("device_pk", "worker_id"))


def ingest_batch(
    session: Session,
    device_id: str,
    frames: bytes,
    batch_hmac: bytes | None,
    *,
    require_hmac: bool | None = None,
    recompute: bool = True,
) -> IngestResult:
    """Store a batch of framed records from `device_id` (see the module doc).

    `require_hmac` defaults to the POSTURE_REQUIRE_BATCH_HMAC setting.  `recompute=False` only
    marks the affected worker-days dirty (exposure.recompute_dirty catches up later).

    Transactions: when `session` has no transaction open, the batch runs in its own and is
    committed here; otherwise it joins the caller's (who commits).  Every check runs before the
    first write, so a rejected batch leaves nothing behind either way."""
    if session.in_transaction():
        return _ingest(session, device_id, frames, batch_hmac, require_hmac, recompute)
    with session.begin():
        return _ingest(session, device_id, frames, batch_hmac, require_hmac, recompute)


def _ingest(
    session: Session,
    device_id: str,
    frames: bytes,
    batch_hmac: bytes | None,
    require_hmac: bool | None,
    recompute: bool,
) -> IngestResult:
    frames = bytes(frames)
    if require_hmac is None:
        require_hmac = get_settings().require_batch_hmac
    device, timezone = _find_device(session, device_id)
    _check_mac(device, frames, batch_hmac, require_hmac)
    records = decode_batch(frames)
    new, duplicate, in_range = _split_new(session, device, records)

    worker_id = device.worker_id
    now = utc_now()
    record_rows: list[tuple[Any, ...]] = []
    minute_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    exposure_times: set[int] = set()
    battery: tuple[int, dict[str, Any]] | None = None
    for seq, rtype, payload, crc, fields in new:
        # The CRC is kept to re-frame the record byte-exactly.
        record_rows.append((seq, rtype, payload, crc))
        if rtype in protocol.MINUTE_TYPES:
            time_s = fields["start_s"]
            minute_rows.append(
                (
                    seq,
                    time_s,
                    fields["worn_s"],
                    bytes(fields["flexion_bins_s"]),
                    bytes(fields["inclination_bins_s"]),
                    bytes(fields["lateral_bins_s"]),
                    bytes(fields["activity_s"]),
                    fields["alert_count"],
                    fields["longest_bout_s"],
                    fields["mean_velocity_ddps"],
                    fields["curvature_mean_ddeg"],
                )
            )
        else:
            time_s = _event_time(fields)
            event_rows.append((seq, protocol.RECORD_NAMES[rtype], time_s, fields))
            if rtype == protocol.BATTERY and (battery is None or seq > battery[0]):
                battery = (seq, fields)
        if rtype in _EXPOSURE_TYPES:
            exposure_times.add(time_s)

    connection = session.connection()
    _RECORDS.execute(connection, record_rows, device_pk=device.id, received_at=now)
    _MINUTES.execute(connection, minute_rows, device_pk=device.id, worker_id=worker_id)
    _EVENTS.execute(connection, event_rows, device_pk=device.id, worker_id=worker_id)

    # Before the device's other changes: its query would flush them, and the flush below again.
    contiguous = _advance_contiguous(session, device, in_range)
    device.last_sync = now
    if battery is not None:
        device.battery_mv = battery[1]["battery_mv"]
        device.battery_percent = battery[1]["percent"]

    days: list[tuple[int, dt.date]] = []
    if worker_id is not None and exposure_times:
        tz = ZoneInfo(timezone or "UTC")
        days = sorted((worker_id, d) for d in {exposure.local_day(t, tz) for t in exposure_times})
        if recompute:
            # Computed now: recompute_daily_exposure creates or updates each day's row, not dirty.
            exposure.recompute_daily_exposure(session, worker_id, [d for _, d in days])
        else:
            exposure.mark_dirty(session, days)
    session.flush()
    return IngestResult(
        device_id=device.device_id,
        new=len(new),
        duplicate=duplicate,
        contiguous_seq=contiguous,
        recomputed_days=days if recompute else [],
    )
