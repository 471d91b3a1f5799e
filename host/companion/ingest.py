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
import gc
import hashlib
import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session, attributes
from sqlalchemy.orm.util import identity_key

import protocol
from companion import exposure
from companion.batch_decode import DecodedBatch, UndecodableRecord, decode_batch
from companion.settings import get_settings
from companion.store.bulk import BulkInsert, Prepared
from companion.store.models import Device, Event, MinuteSummary, Record, Worker, utc_now

# The construction is protocol.batch_mac; here with CPython's native hmac.
BATCH_MAC_CONTEXT = protocol.BATCH_MAC_CONTEXT
BATCH_MAC_SIZE = 32

# Event types whose time puts them on a worker-day's exposure (minute summaries do too).
_EXPOSURE_EVENTS = frozenset((protocol.BOUT, protocol.ALERT))


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
    # The worker-days whose inputs the batch changed (recomputed, or marked dirty).
    days: list[tuple[int, dt.date]] = field(default_factory=list)


def batch_mac(key: bytes, device_id: str, frames: bytes) -> bytes:
    """HMAC-SHA256 of a batch: ``HMAC-SHA256(key, b"posture/batch/v1\\x00" || u8 len(id) ||
    id || frames)`` with id the UTF-8 device id (1..255 bytes) and frames the framed records
    exactly as sent.  The context string keeps these MACs apart from any other use of the key
    (the session handshake); the length prefix keeps the id/frames split unambiguous."""
    ident = device_id.encode()
    if not 0 < len(ident) < 256:
        raise ValueError(f"device id must be 1..255 bytes of UTF-8, got {len(ident)}")
    return hmac.new(key, BATCH_MAC_CONTEXT + bytes([len(ident)]) + ident + frames, hashlib.sha256).digest()


class _Device(NamedTuple):
    """What ingest needs of a devices row (and its worker's time zone)."""

    id: int
    device_id: str
    key: bytes | None
    worker_id: int | None
    contiguous_seq: int | None
    timezone: str | None


# The statements of every batch, compiled once per dialect (store/bulk.py says what that leaves
# out and why).  The ORM's Device row of the batch's device, if the session holds one, is kept in
# step by hand (_record_sync).
_DEVICE = Prepared(
    select(Device.id, Device.device_id, Device.key, Device.worker_id, Device.contiguous_seq, Worker.timezone)
    .outerjoin(Worker, Worker.id == Device.worker_id)
    .where(Device.device_id == bindparam("device_id")),
    constants=("device_id",),
)
# The stored records a batch meets: its seq range (replays), and every seq above the ACK mark
# (what the mark may move over; normally none outside the batch's range).
_STORED = Prepared(
    select(Record.seq, Record.rtype, Record.payload).where(
        Record.device_pk == bindparam("device_pk"),
        Record.seq.between(bindparam("lo"), bindparam("hi")) | (Record.seq > bindparam("mark")),
    ),
    constants=("device_pk", "lo", "hi", "mark"),
)
_devices = Device.__table__
assert isinstance(_devices, Table)
_SYNCED = Prepared(
    update(_devices)
    .where(_devices.c.id == bindparam("device_pk"))
    .values(last_sync=bindparam("synced_at"), contiguous_seq=bindparam("ack_seq")),
    constants=("device_pk", "synced_at", "ack_seq"),
)
_SYNCED_WITH_BATTERY = Prepared(
    update(_devices)
    .where(_devices.c.id == bindparam("device_pk"))
    .values(
        last_sync=bindparam("synced_at"),
        contiguous_seq=bindparam("ack_seq"),
        battery_mv=bindparam("mv"),
        battery_percent=bindparam("percent"),
    ),
    constants=("device_pk", "synced_at", "ack_seq", "mv", "percent"),
)
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
_RECORD_NAMES = [protocol.RECORD_NAMES.get(code, "") for code in range(256)]


def _find_device(connection: Connection, device_id: str) -> _Device:
    """The device and its worker's time zone (None without a worker), in one query."""
    found = _DEVICE.fetch(connection, device_id=device_id)
    if not found:
        raise UnknownDevice(
            f"device {device_id!r} is not registered with this companion: register it (with its key) "
            "before syncing"
        )
    device_pk, name, key, worker_id, contiguous_seq, timezone = found[0]
    return _Device(device_pk, name, None if key is None else bytes(key), worker_id, contiguous_seq, timezone)


def _check_mac(device: _Device, frames: bytes, batch_hmac: bytes | None, require_hmac: bool) -> None:
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
    connection: Connection, device: _Device, batch: DecodedBatch
) -> tuple[DecodedBatch, int, dict[int, tuple[int, bytes]]]:
    """(the records not stored yet, the number of replays, {seq: (rtype, payload)} of every seq
    stored in the batch's range or above the ACK mark once the new records are);
    ConflictingReplay on a changed seq."""
    seqs = batch.seq
    if not seqs:
        return batch, 0, {}
    lo, hi = min(seqs), max(seqs)
    mark = -1 if device.contiguous_seq is None else device.contiguous_seq
    stored = {
        seq: (rtype, bytes(payload))
        for seq, rtype, payload in _STORED.fetch(connection, device_pk=device.id, lo=lo, hi=hi, mark=mark)
    }
    if len(set(seqs)) == len(seqs) and not any(lo <= seq <= hi for seq in stored):
        # Nothing of the batch is stored, and no seq comes twice in it: all new.
        stored.update(zip(seqs, zip(batch.rtype, batch.payload, strict=True), strict=True))
        return batch, 0, stored
    keep: list[int] = []
    duplicate = 0
    for i, seq in enumerate(seqs):
        content = (batch.rtype[i], batch.payload[i])
        known = stored.get(seq)
        if known is None:
            stored[seq] = content
            keep.append(i)
        elif known == content:
            duplicate += 1
        else:
            raise ConflictingReplay(
                f"device {device.device_id!r} sent seq {seq} again with different content "
                f"({protocol.RECORD_NAMES[content[0]]}, stored: {protocol.RECORD_NAMES.get(known[0], known[0])}); "
                "a device must never reuse a seq: batch rejected"
            )
    return _only(batch, keep), duplicate, stored


def _only(batch: DecodedBatch, keep: list[int]) -> DecodedBatch:
    """The records of `batch` at the indices `keep` (ascending)."""
    kept = set(keep)
    return DecodedBatch(
        [batch.seq[i] for i in keep],
        [batch.rtype[i] for i in keep],
        [batch.payload[i] for i in keep],
        [batch.crc[i] for i in keep],
        batch.minutes.take([k for k, i in enumerate(batch.minutes.position) if i in kept]),
        batch.events.take([k for k, i in enumerate(batch.events.position) if i in kept]),
    )


def _advance_contiguous(device: _Device, seen: dict[int, tuple[int, bytes]]) -> int | None:
    """The device's new contiguous_seq: moved over the stored seqs and the seqs GAP records
    declare lost.  `seen` holds every stored seq above the mark (what _split_new read, and the
    new records)."""
    mark = -1 if device.contiguous_seq is None else device.contiguous_seq
    above = sorted(seq for seq in seen if seq > mark)
    if not above:
        return device.contiguous_seq
    # Intervals [first, last] of seqs that are accounted for.
    spans = [(seq, seq) for seq in above]
    gaps = [seen[seq][1] for seq in above if seen[seq][0] == protocol.GAP]
    for payload in gaps:
        gap = protocol.decode_payload(protocol.GAP, payload)
        spans.append((gap["first_lost_seq"], gap["first_lost_seq"] + gap["lost_count"] - 1))
    if gaps:
        spans.sort()
    reach = device.contiguous_seq
    if reach is None:
        reach = spans[0][0] - 1  # the first record the companion ever sees starts the count
    for first, last in spans:
        if first > reach + 1:
            break
        reach = max(reach, last)
    return reach


def _record_sync(
    session: Session,
    connection: Connection,
    device: _Device,
    now: dt.datetime,
    contiguous: int | None,
    battery: dict[str, Any] | None,
) -> None:
    """Store the device's last sync, ACK mark and battery; an ORM row of it in the session
    (which would not reload them) gets the same values."""
    values: dict[str, Any] = {"last_sync": now, "contiguous_seq": contiguous}
    if battery is None:
        _SYNCED.run(connection, device_pk=device.id, synced_at=now, ack_seq=contiguous)
    else:
        mv, percent = battery["battery_mv"], battery["percent"]
        _SYNCED_WITH_BATTERY.run(
            connection, device_pk=device.id, synced_at=now, ack_seq=contiguous, mv=mv, percent=percent
        )
        values |= {"battery_mv": mv, "battery_percent": percent}
    held = session.identity_map.get(identity_key(Device, device.id))
    if held is not None:
        for name, value in values.items():
            attributes.set_committed_value(held, name, value)


# The collector paused while a batch is stored (see _collector_paused); a count, so that the
# last of concurrent batches (the API's thread pool) turns it back on.
_pause_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration.  A batch allocates tens of
    thousands of short-lived containers (rows, decoded fields) that reference counting frees; with
    the collector on, they set off collections that also walk every long-lived object of the
    process (an app's ~10^5), some 20-30 % of ingest's time.  Left as it was afterwards."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


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
    with _collector_paused():
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
    # The statements below are not the ORM's: what the session holds back goes to the database first.
    session.flush()
    connection = session.connection()
    device = _find_device(connection, device_id)
    _check_mac(device, frames, batch_hmac, require_hmac)
    try:
        batch = decode_batch(frames)
    except UndecodableRecord as exc:
        raise MalformedBatch(f"{exc}; batch rejected") from exc
    new, duplicate, seen = _split_new(connection, device, batch)

    worker_id = device.worker_id
    now = utc_now()
    minutes, events = new.minutes, new.events
    _RECORDS.execute(
        connection, (new.seq, new.rtype, new.payload, new.crc), device_pk=device.id, received_at=now
    )
    _MINUTES.execute(
        connection,
        (
            minutes.seq,
            minutes.start_s,
            minutes.worn_s,
            minutes.flexion_bins,
            minutes.inclination_bins,
            minutes.lateral_bins,
            minutes.activity_s,
            minutes.alert_count,
            minutes.longest_bout_s,
            minutes.mean_velocity_ddps,
            minutes.curvature_mean_ddeg,
        ),
        device_pk=device.id,
        worker_id=worker_id,
    )
    _EVENTS.execute(
        connection,
        (events.seq, [_RECORD_NAMES[code] for code in events.rtype], events.time_s, events.fields),
        device_pk=device.id,
        worker_id=worker_id,
    )

    battery: dict[str, Any] | None = None
    last_battery = -1
    for seq, code, fields in zip(events.seq, events.rtype, events.fields, strict=True):
        if code == protocol.BATTERY and seq > last_battery:
            battery, last_battery = fields, seq
    contiguous = _advance_contiguous(device, seen)
    _record_sync(session, connection, device, now, contiguous, battery)

    days: list[tuple[int, dt.date]] = []
    exposure_times = minutes.start_s + [
        t for t, code in zip(events.time_s, events.rtype, strict=True) if code in _EXPOSURE_EVENTS
    ]
    if worker_id is not None and exposure_times:
        tz = ZoneInfo(device.timezone or "UTC")
        days = [(worker_id, d) for d in exposure.local_days(exposure_times, tz)]
        if recompute:
            # Computed now: recompute_daily_exposure creates or updates each day's row, not dirty.
            exposure.recompute_daily_exposure(session, worker_id, [d for _, d in days])
        else:
            exposure.mark_dirty(session, days)
    return IngestResult(
        device_id=device.device_id,
        new=len(new.seq),
        duplicate=duplicate,
        contiguous_seq=contiguous,
        recomputed_days=days if recompute else [],
        days=days,
    )
