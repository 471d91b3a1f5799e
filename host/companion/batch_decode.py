"""A batch of framed records decoded at once, into the columns of the rows the store keeps.

    batch = decode_batch(frames)        # UndecodableRecord names the first record that does not decode
    batch.seq, batch.rtype, batch.payload, batch.crc     # every record, in batch order
    batch.minutes.start_s, batch.minutes.flexion_bins    # its MINUTE and MINUTE2 records
    batch.events.rtype, batch.events.fields              # the others (bouts, alerts, ...)

shared/protocol.py defines every byte, and ``protocol.decode_record_fields`` is the reference:
this gives what decoding the records one after the other with it gives (a minute's histograms
packed one byte a bin, as the store keeps them: ``companion.store.bins_to_bytes``).  It is faster
for a whole batch: the framing loop is the only Python that runs per record; CRCs, type codes and
the two minute layouts -- nine records in ten -- are checked and decoded by numpy, each operation
over every minute of the batch at once, where the reference spends ~8 µs on each record.

The vectorised checks only vouch for what they accept.  A record they do not accept (a bad CRC,
an unknown type, a minute breaking any rule of its layout) goes to protocol.decode_record_fields,
which raises the error that names it -- or, should it accept what the checks here refused,
decodes it, and its fields are used.  Events (fixed layouts, one record in ten) are decoded by
protocol.decode_payload.  tests/test_batch_decode.py holds this module and the reference to the
same answers on generated, mutated and hand-made minutes.
"""

from __future__ import annotations

from binascii import crc32
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

import protocol

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_HEAD = 6  # seq:u32 type:u8 len:u8
_OVERHEAD = 10  # head + crc32
_MINUTE_S = 60
_MAX_DDEG = 1800
_ANGLE_BINS = protocol.ANGLE_BINS

# Presence masks of five bins (activities, lateral bins): for each 5-bit mask, whether bin i is
# present, how many present bins come before it (where its byte is), how many are present, the
# highest present bin (-1: none) and the mask without it.
_MASKS = range(32)
_PRESENT = np.array([[m >> i & 1 for i in range(5)] for m in _MASKS], dtype=np.bool_)
_RANK = np.array([[bin(m & ((1 << i) - 1)).count("1") for i in range(5)] for m in _MASKS], dtype=np.int64)
_COUNT = np.array([bin(m).count("1") for m in _MASKS], dtype=np.int64)
_TOP = np.array([m.bit_length() - 1 for m in _MASKS], dtype=np.int64)
_BELOW_TOP = np.array([m & ~(1 << (m.bit_length() - 1)) if m else 0 for m in _MASKS], dtype=np.int64)
_BIN = np.arange(_ANGLE_BINS, dtype=np.int64)
_KNOWN_TYPE = np.zeros(256, dtype=np.bool_)
_KNOWN_TYPE[list(protocol.RECORD_NAMES)] = True
# The payload's `present` bits (protocol.py, "minute summary").
_P_FLEXION = 0x0400
_P_INCLINATION = 0x0800
_P_EXPOSURE = 0x1000
_P_VELOCITY = 0x2000
_P_CURVATURE = 0x4000
_P_RESERVED = 0x8000
# The field of each event type that says when it happened.
_TIME_FIELDS = ("start_s", "time_s", "new_s")


class UndecodableRecord(ValueError):
    """The record at `index` (from byte `offset`) of a batch does not decode."""

    def __init__(self, index: int, offset: int, seq: int | None, error: protocol.ProtocolError) -> None:
        where = f"record #{index}" + (f" (seq {seq}, if its header is intact)" if seq is not None else "")
        super().__init__(f"{where} at byte {offset} does not decode: {error}")
        self.index = index
        self.offset = offset
        self.error = error


class MinuteColumns(NamedTuple):
    """The batch's minute summaries, one entry per MINUTE or MINUTE2 record, in batch order."""

    position: list[int]  # of the record in the batch
    seq: list[int]
    start_s: list[int]
    worn_s: list[int]
    flexion_bins: list[bytes]  # 20 × u8 seconds
    inclination_bins: list[bytes]  # 20 × u8 seconds
    lateral_bins: list[bytes]  # 5 × u8 seconds
    activity_s: list[bytes]  # 5 × u8 seconds, protocol.ACTIVITIES order
    alert_count: list[int]
    longest_bout_s: list[int]
    mean_velocity_ddps: list[int | None]
    curvature_mean_ddeg: list[int | None]

    def take(self, keep: list[int]) -> MinuteColumns:
        """The entries at positions `keep` (ascending)."""
        return MinuteColumns._make([column[i] for i in keep] for column in self)


class EventColumns(NamedTuple):
    """The batch's other records (bouts, alerts, battery, ...), in batch order."""

    position: list[int]  # of the record in the batch
    seq: list[int]
    rtype: list[int]
    time_s: list[int]  # start_s, time_s, or new_s (TIME_SET): when it happened
    fields: list[dict[str, Any]]  # protocol.decode_payload's dict

    def take(self, keep: list[int]) -> EventColumns:
        return EventColumns._make([column[i] for i in keep] for column in self)


class DecodedBatch(NamedTuple):
    """Every record of a batch (checked: framing, CRC, type, payload), in batch order."""

    seq: list[int]
    rtype: list[int]
    payload: list[bytes]
    crc: list[int]
    minutes: MinuteColumns
    events: EventColumns


def decode_batch(frames: bytes) -> DecodedBatch:
    """The records of `frames` (records back to back, as protocol.decode_records takes them);
    UndecodableRecord names the first one that does not decode."""
    n = len(frames)
    starts: list[int] = []
    pos = 0
    while pos <= n - _OVERHEAD:
        starts.append(pos)
        pos += _OVERHEAD + frames[pos + 5]
    # A record that cannot even be framed (its length runs past the end, or a piece of a header
    # is left): the reference says why, once every record before it has been checked.
    broken: int | None = None
    if pos > n:
        broken = starts.pop()
    elif pos < n:
        broken = pos

    buf = np.frombuffer(frames, dtype=np.uint8)
    start = np.array(starts, dtype=np.int64)
    head = buf[start[:, None] + np.arange(_HEAD)]
    seq_a = np.ascontiguousarray(head[:, :4]).view("<u4")[:, 0]
    rtype_a = head[:, 4]
    crc_at = start + _HEAD + head[:, 5]
    stored_crc = np.ascontiguousarray(buf[crc_at[:, None] + np.arange(4)]).view("<u4")[:, 0]
    ends = crc_at.tolist()
    payload = [frames[s + _HEAD : e] for s, e in zip(starts, ends, strict=True)]
    computed = np.array([crc32(frames[s:e]) for s, e in zip(starts, ends, strict=True)], dtype=np.uint32)
    framed = (computed == stored_crc) & _KNOWN_TYPE[rtype_a]
    seq = seq_a.tolist()
    rtype = rtype_a.tolist()

    parts: list[MinuteColumns] = []
    checked = np.zeros(len(starts), dtype=np.bool_)  # decoded here, no need for the reference
    for code, layout in ((protocol.MINUTE2, _minute2), (protocol.MINUTE, _minute)):
        at = np.flatnonzero(framed & (rtype_a == code))
        if at.size:
            first = start[at] + _HEAD
            ok, columns = _decode_minutes(layout, buf, first, head[at, 5].astype(np.int64), seq_a[at], at)
            checked[at[ok]] = True
            parts.append(columns)

    # Every other record, in batch order, so that the first one that does not decode is named.
    events = EventColumns([], [], [], [], [])
    slow: list[tuple[int, int, dict[str, Any]]] = []  # minutes the reference decoded: (index, rtype, fields)
    for i in np.flatnonzero(~checked).tolist():
        try:
            if framed[i] and rtype[i] not in protocol.MINUTE_TYPES:
                fields = protocol.decode_payload(rtype[i], payload[i])
            else:
                _record, fields, _crc, _end = protocol.decode_record_fields(frames, starts[i])
        except protocol.ProtocolError as exc:
            raise UndecodableRecord(i, starts[i], seq[i], exc) from exc
        if rtype[i] in protocol.MINUTE_TYPES:
            slow.append((i, rtype[i], fields))
            continue
        events.position.append(i)
        events.seq.append(seq[i])
        events.rtype.append(rtype[i])
        events.time_s.append(_event_time(fields))
        events.fields.append(fields)
    if broken is not None:
        index = len(starts)
        seq_there = int.from_bytes(frames[broken : broken + 4], "little") if n - broken >= 4 else None
        try:
            protocol.decode_record_fields(frames, broken)
        except protocol.ProtocolError as exc:
            raise UndecodableRecord(index, broken, seq_there, exc) from exc
        raise AssertionError(f"framing stopped at byte {broken}, which decodes")  # pragma: no cover
    if slow:
        parts.append(_minute_columns_of(slow, seq))
    return DecodedBatch(seq, rtype, payload, computed.tolist(), _in_batch_order(parts), events)


def _event_time(fields: dict[str, Any]) -> int:
    for name in _TIME_FIELDS:
        if name in fields:
            return int(fields[name])
    raise ValueError(f"event has no time field: {sorted(fields)}")


def _minute_columns_of(decoded: list[tuple[int, int, dict[str, Any]]], seq: list[int]) -> MinuteColumns:
    """Minute columns from protocol.decode_payload's dicts."""
    columns = MinuteColumns([], [], [], [], [], [], [], [], [], [], [], [])
    for i, _rtype, f in decoded:
        columns.position.append(i)
        columns.seq.append(seq[i])
        columns.start_s.append(f["start_s"])
        columns.worn_s.append(f["worn_s"])
        columns.flexion_bins.append(bytes(f["flexion_bins_s"]))
        columns.inclination_bins.append(bytes(f["inclination_bins_s"]))
        columns.lateral_bins.append(bytes(f["lateral_bins_s"]))
        columns.activity_s.append(bytes(f["activity_s"]))
        columns.alert_count.append(f["alert_count"])
        columns.longest_bout_s.append(f["longest_bout_s"])
        columns.mean_velocity_ddps.append(f["mean_velocity_ddps"])
        columns.curvature_mean_ddeg.append(f["curvature_mean_ddeg"])
    return columns


def _in_batch_order(parts: list[MinuteColumns]) -> MinuteColumns:
    if not parts:
        return MinuteColumns([], [], [], [], [], [], [], [], [], [], [], [])
    if len(parts) == 1:
        return parts[0]
    joined = MinuteColumns._make(
        [v for part in parts for v in part[k]] for k in range(len(MinuteColumns._fields))
    )
    order = sorted(range(len(joined.position)), key=joined.position.__getitem__)
    return joined.take(order)


# ---- the minute layouts, vectorised ---------------------------------------------------------------
# Each takes the minutes' payloads (_Payloads) and returns whether each is valid, with its fields.


class _Payloads:
    """Payloads as the rows of an int64 matrix, zero past each one's length `n` (with one zero
    column at least after the longest).

    A read past a payload's end sees zeros, or, past the matrix, bytes of a neighbour: either
    way harmless, as every read of a section is followed by moving the position past it, so that
    the row's sections then end past its length and the row is refused (pos == n, last check)."""

    def __init__(self, buf: NDArray[np.uint8], first: IntArray, n: IntArray) -> None:
        width = max(int(n.max()) + 2, 8)  # the heads are read whatever the length
        self.columns = np.arange(width)
        p = buf.take(first[:, None] + self.columns, mode="clip").astype(np.int64)
        p[self.columns >= n[:, None]] = 0
        self.p = p
        self.n = n
        self.flat = p.ravel()
        self.rows = np.arange(len(p))
        self.base = self.rows * width
        self.flagged = p >= 0x80  # bit 7: the end of a histogram run

    def at(self, pos: IntArray) -> IntArray:
        """The byte at `pos` of each row."""
        return self.flat.take(self.base + pos, mode="clip")

    def at2(self, pos: IntArray) -> IntArray:
        """The bytes at `pos` (one row of positions per payload)."""
        return self.flat.take(self.base[:, None] + pos, mode="clip")

    def run_end(self, pos: IntArray) -> tuple[IntArray, BoolArray]:
        """The first position after `pos` whose byte has bit 7 set, and whether there is one."""
        after = self.flagged & (self.columns > pos[:, None])
        end = after.argmax(axis=1)
        return end, after.ravel().take(self.base + end)


class _Minutes(NamedTuple):
    start_s: IntArray
    worn_s: IntArray
    activity_s: IntArray  # (m, 5)
    lateral_bins: IntArray  # (m, 5)
    flexion_bins: IntArray  # (m, 20)
    inclination_bins: IntArray  # (m, 20)
    alert_count: IntArray
    longest_bout_s: IntArray
    velocity: IntArray
    has_velocity: BoolArray
    curvature: IntArray
    has_curvature: BoolArray


def _decode_minutes(
    layout: Any, buf: NDArray[np.uint8], first: IntArray, n: IntArray, seq: Any, index: IntArray
) -> tuple[BoolArray, MinuteColumns]:
    """The minutes whose payloads start at `first` (n bytes each) through `layout`: which are
    valid, and the columns of those."""
    ok, m = layout(_Payloads(buf, first, n))
    columns = MinuteColumns(
        index[ok].tolist(),
        seq[ok].tolist(),
        m.start_s[ok].tolist(),
        m.worn_s[ok].tolist(),
        _packed(m.flexion_bins[ok]),
        _packed(m.inclination_bins[ok]),
        _packed(m.lateral_bins[ok]),
        _packed(m.activity_s[ok]),
        m.alert_count[ok].tolist(),
        m.longest_bout_s[ok].tolist(),
        _or_none(m.velocity[ok], m.has_velocity[ok]),
        _or_none(m.curvature[ok], m.has_curvature[ok]),
    )
    return ok, columns


def _packed(bins: IntArray) -> list[bytes]:
    """Each row as bytes, one byte a bin (the store's histogram columns)."""
    packed = np.ascontiguousarray(bins, dtype=np.uint8)
    return packed.view(f"V{packed.shape[1]}").ravel().tolist()  # type: ignore[no-any-return]


def _or_none(values: IntArray, present: BoolArray) -> list[int | None]:
    if present.all():
        return values.tolist()  # type: ignore[no-any-return]
    if not present.any():
        return [None] * len(values)
    return [v if h else None for v, h in zip(values.tolist(), present.tolist(), strict=True)]


def _masked(payloads: _Payloads, pos: IntArray, mask: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Five bins, a non-zero byte for each bin in `mask` from `pos` on: (bins, next pos, ok)."""
    present = _PRESENT[mask]
    values = payloads.at2(pos[:, None] + _RANK[mask]) * present
    ok = ~(present & (values == 0)).any(axis=1)
    return values, pos + _COUNT[mask], ok


def _run_bins(
    payloads: _Payloads, pos: IntArray, first: IntArray, count: IntArray, runs: BoolArray
) -> IntArray:
    """20 bins: where `runs`, the `count` bins from `first` on read from pos+1 on (bit 7 cleared)."""
    offset = _BIN - first[:, None]
    inside = runs[:, None] & (offset >= 0) & (offset < count[:, None])
    return (payloads.at2(pos[:, None] + 1 + offset) & 0x7F) * inside


def _bin(bins: IntArray, rows: IntArray, at: IntArray) -> IntArray:
    # Positions outside 0..19 read a neighbour's bin: only where `at` is refused anyway.
    return bins.ravel().take(rows * bins.shape[1] + at, mode="clip")


def _run(payloads: _Payloads, pos: IntArray, present: BoolArray) -> tuple[IntArray, IntArray, BoolArray]:
    """MINUTE's histogram run where `present`: head byte = first bin, then the bins up to the
    last non-zero one, bit 7 set on the last (protocol._get_run)."""
    rows = payloads.rows
    first = payloads.at(pos)
    end, found = payloads.run_end(pos)
    count = end - pos
    bins = _run_bins(payloads, pos, first, count, present)
    ok = (first < _ANGLE_BINS) & found & (first + count <= _ANGLE_BINS)
    ok &= (_bin(bins, rows, first) != 0) & (_bin(bins, rows, first + count - 1) != 0)
    ok &= bins.sum(axis=1) <= _MINUTE_S
    return bins, np.where(present, end + 1, pos), ~present | ok


def _run2(
    payloads: _Payloads, pos: IntArray, present: BoolArray, posture: IntArray
) -> tuple[IntArray, IntArray, BoolArray]:
    """MINUTE2's histogram run where `present` (protocol._get_run2): head byte = first bin, with
    bit 7 when that bin holds every posture second; otherwise the bins from the first to the
    one before the last, bit 7 set on that one, and the last bin holds the seconds left."""
    rows = payloads.rows
    head = payloads.at(pos)
    first = head & 0x7F
    single = present & (head >= 0x80)
    several = present & (head < 0x80)
    end, found = payloads.run_end(pos)
    count = end - pos
    bins = _run_bins(payloads, pos, first, count, several)
    given = bins.sum(axis=1)
    ok = first < _ANGLE_BINS
    ok &= ~several | (
        found & (first + count <= _ANGLE_BINS - 1) & (_bin(bins, rows, first) != 0) & (given < posture)
    )
    fill = present & ok
    last = np.where(single, first, first + count)[fill]
    bins[rows[fill], last] = np.where(single, posture, posture - given)[fill]
    return bins, np.where(several, end + 1, np.where(single, pos + 1, pos)), ~present | ok


def _tail(payloads: _Payloads, pos: IntArray, present: IntArray) -> tuple[_Tail, IntArray, BoolArray]:
    """Exposure, velocity and curvature sections, alike in both layouts (protocol._minute_fields):
    (their values, pos after them, ok)."""
    exposure = (present & _P_EXPOSURE) != 0
    alert = payloads.at(pos) * exposure
    longest = payloads.at(pos + 1) * exposure
    ok = ~exposure | (alert != 0) | (longest != 0)
    ok &= longest <= _MINUTE_S
    pos = pos + 2 * exposure
    has_velocity = (present & _P_VELOCITY) != 0
    velocity = payloads.at(pos) | payloads.at(pos + 1) << 8
    pos = pos + 2 * has_velocity
    has_curvature = (present & _P_CURVATURE) != 0
    curvature = payloads.at(pos) | payloads.at(pos + 1) << 8
    curvature -= (curvature >= 0x8000) * 0x10000
    ok &= ~has_curvature | (np.abs(curvature) <= _MAX_DDEG)
    pos = pos + 2 * has_curvature
    return _Tail(alert, longest, velocity, has_velocity, curvature, has_curvature), pos, ok


class _Tail(NamedTuple):
    alert_count: IntArray
    longest_bout_s: IntArray
    velocity: IntArray
    has_velocity: BoolArray
    curvature: IntArray
    has_curvature: BoolArray


def _u32(p: IntArray) -> IntArray:
    return p[:, 0] | p[:, 1] << 8 | p[:, 2] << 16 | p[:, 3] << 24


def _minute(payloads: _Payloads) -> tuple[BoolArray, _Minutes]:
    """MINUTE: start_s:u32 | worn_s:u8 | present:u16 | activity | lateral | flexion | inclination | tail."""
    p, n = payloads.p, payloads.n
    worn = p[:, 4]
    present = p[:, 5] | p[:, 6] << 8
    ok = (n >= 7) & ((present & _P_RESERVED) == 0) & (worn <= _MINUTE_S)
    activity, pos, fine = _masked(payloads, np.full(len(p), 7), present & 0x1F)
    ok &= fine & (activity.sum(axis=1) <= _MINUTE_S)
    lateral, pos, fine = _masked(payloads, pos, present >> 5 & 0x1F)
    ok &= fine & (lateral.sum(axis=1) <= _MINUTE_S)
    flexion, pos, fine = _run(payloads, pos, (present & _P_FLEXION) != 0)
    ok &= fine
    inclination, pos, fine = _run(payloads, pos, (present & _P_INCLINATION) != 0)
    ok &= fine
    tail, pos, fine = _tail(payloads, pos, present)
    ok &= fine & (pos == n)
    return ok, _Minutes(_u32(p), worn, activity, lateral, flexion, inclination, *tail)


def _minute2(payloads: _Payloads) -> tuple[BoolArray, _Minutes]:
    """MINUTE2: start_s:u32 | present:u16 | activity | lateral but its last bin | flexion and
    inclination runs | tail; worn_s and each histogram's last bin follow from the activity
    seconds (protocol._decode_minute2)."""
    p, n, rows = payloads.p, payloads.n, payloads.rows
    present = p[:, 4] | p[:, 5] << 8
    ok = (n >= 6) & ((present & _P_RESERVED) == 0)
    activity, pos, fine = _masked(payloads, np.full(len(p), 6), present & 0x1F)
    total = activity.sum(axis=1)
    ok &= fine & (total <= _MINUTE_S)
    worn = total - activity[:, protocol.ACTIVITY_NOT_WORN]
    posture = worn - activity[:, protocol.ACTIVITY_LYING]
    lateral_mask = present >> 5 & 0x1F
    lateral, pos, fine = _masked(payloads, pos, _BELOW_TOP[lateral_mask])
    given = lateral.sum(axis=1)
    has_lateral = lateral_mask != 0
    ok &= fine & (has_lateral == (posture > 0)) & (~has_lateral | (given < posture))
    lateral[rows[has_lateral], _TOP[lateral_mask[has_lateral]]] = (posture - given)[has_lateral]
    has_flexion = (present & _P_FLEXION) != 0
    has_inclination = (present & _P_INCLINATION) != 0
    ok &= (has_flexion == (posture > 0)) & (has_inclination == (posture > 0))
    flexion, pos, fine = _run2(payloads, pos, has_flexion, posture)
    ok &= fine
    inclination, pos, fine = _run2(payloads, pos, has_inclination, posture)
    ok &= fine
    tail, pos, fine = _tail(payloads, pos, present)
    ok &= fine & (pos == n)
    return ok, _Minutes(_u32(p), worn, activity, lateral, flexion, inclination, *tail)
