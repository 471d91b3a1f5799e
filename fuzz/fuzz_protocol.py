"""Harness: every decoder of shared/protocol.py (docs/protocol.md section 2).

An input is ``selector | rest``: the selector byte picks what reads `rest`.  A decoder may return
or raise protocol.ProtocolError; anything else is a finding, and so is a decoded value that does
not re-encode to the bytes it came from (each encoding is the only one).  Selector RECORD frames
`rest` behind a correct CRC, which random mutation would hardly ever get past, so that every
payload parser sees arbitrary bytes; selector MINUTE_LAYOUTS re-encodes a decoded minute in both
layouts, which must read back the same; selector MINUTE_FIELDS does so for minutes built from
`rest` as the firmware fills them (worn and posture seconds from the activity seconds, each
histogram holding the posture seconds or empty), structure-aware where byte mutation would hardly
ever make the sums agree.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["protocol"]):
    import protocol as p

(
    RECORDS,
    SCAN,
    RECORD_AT,
    PAYLOAD,
    RECORD,
    INFO,
    COMMAND,
    NOTIFICATION,
    FRAMES,
    MINUTE_LAYOUTS,
    MINUTE_FIELDS,
) = range(11)
SELECTORS = 11


def _refused(decode: Callable[..., Any], *args: Any) -> Any:
    """What `decode` returns, or None when it raises ProtocolError (with a message)."""
    try:
        return decode(*args)
    except p.ProtocolError as exc:
        if not str(exc):
            raise AssertionError(f"{decode.__name__} raised a ProtocolError without a message") from exc
        return None


def _genuine(data: bytes, records: list[p.Record]) -> int:
    pos = 0
    for record in records:
        again = p.encode_record(record.seq, record.rtype, record.payload)
        if data[pos : pos + len(again)] != again:
            raise AssertionError(f"record {record!r} at {pos} is not the bytes it was read from")
        pos += len(again)
    return pos


def framed(seq: int, rtype: int, payload: bytes) -> bytes:
    """A record with a correct CRC whatever its type and payload (the RECORD selector's input)."""
    body = struct.pack("<IBB", seq, rtype, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def split_frames(rest: bytes) -> list[bytes]:
    """Data frames from `rest`: each a length byte and that many bytes."""
    frames, pos = [], 0
    while pos < len(rest):
        size = rest[pos]
        frames.append(rest[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return frames


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, rest = data[0] % SELECTORS, data[1:]
    if selector == RECORDS:
        records = _refused(p.decode_records, rest)
        if records is not None and _genuine(rest, records) != len(rest):
            raise AssertionError("decode_records left bytes over")
    elif selector == SCAN:
        records, valid = p.scan_valid_prefix(rest)
        if _genuine(rest, records) != valid or p.decode_records(rest[:valid]) != records:
            raise AssertionError("scan_valid_prefix: the valid prefix is not its records")
    elif selector == RECORD_AT:
        offset = rest[0] - 8 if rest else 0
        _refused(p.decode_record_fields, rest, offset)
    elif selector in (PAYLOAD, RECORD):
        if not rest:
            return
        rtype, payload = rest[0], rest[1:256]
        fields = _refused(p.decode_payload, rtype, payload)
        if fields is not None and p.encode_payload(rtype, fields) != payload:
            raise AssertionError(f"type {rtype}: {payload.hex()} is not the one encoding of {fields}")
        if selector == RECORD:
            found = _refused(p.decode_record_fields, framed(7, rtype, payload))
            if (found is None) != (fields is None) or (found is not None and found[1] != fields):
                raise AssertionError("decode_record_fields disagrees with decode_payload")
    elif selector == INFO:
        info = _refused(p.decode_info, rest)
        if info is not None and p.encode_info(**info) != rest:
            raise AssertionError(f"info {info} re-encodes differently")
    elif selector == COMMAND:
        command = _refused(p.decode_command, rest)
        if command is not None and p.encode_command(command[0], *command[1]) != rest:
            raise AssertionError(f"command {command} re-encodes differently")
    elif selector == NOTIFICATION:
        notification = _refused(p.decode_notification, rest)
        if notification is not None:
            _check_notification(rest, *notification)
    elif selector == FRAMES:
        records = _refused(p.unpack_data_frames, split_frames(rest), 0)
        for record in records or ():
            if len(record) != 10 + record[5]:
                raise AssertionError("unpack_data_frames returned a cut record")
    elif selector == MINUTE_LAYOUTS:
        fields = _refused(p.decode_payload, p.MINUTE, rest)
        if fields is None:
            return
        _both_layouts(fields)
    elif selector == MINUTE_FIELDS:
        _both_layouts(minute_from(rest))


def _both_layouts(fields: dict[str, Any]) -> None:
    """MINUTE writes any minute, MINUTE2 refuses or writes one that reads back the same."""
    if p.decode_payload(p.MINUTE, p.encode_payload(p.MINUTE, fields)) != fields:
        raise AssertionError(f"MINUTE does not read back {fields}")
    payload2 = _refused(p.encode_payload, p.MINUTE2, fields)
    if payload2 is not None and p.decode_payload(p.MINUTE2, payload2) != fields:
        raise AssertionError(f"MINUTE2 wrote {payload2.hex()} for {fields} and reads back otherwise")


def minute_from(rest: bytes) -> dict[str, Any]:
    """Minute fields from fuzz bytes, as summary.py fills them: activity seconds (at most a
    minute), worn and posture seconds from them, each histogram either empty or holding exactly
    the posture seconds."""
    draw = atheris.FuzzedDataProvider(rest)
    left, activity = 60, []
    for _ in range(5):
        activity.append(min(draw.ConsumeIntInRange(0, 60), left))
        left -= activity[-1]
    worn = sum(activity) - activity[p.ACTIVITY_NOT_WORN]
    posture = worn - activity[p.ACTIVITY_LYING]
    bins = {}
    for name, nbins in (("lateral_bins_s", 5), ("flexion_bins_s", 20), ("inclination_bins_s", 20)):
        histogram = [0] * nbins
        if not draw.ConsumeBool():
            given = 0
            for i in range(nbins):
                histogram[i] = min(draw.ConsumeIntInRange(0, 60), posture - given)
                given += histogram[i]
            histogram[draw.ConsumeIntInRange(0, nbins - 1)] += posture - given
        bins[name] = histogram
    return {
        "start_s": draw.ConsumeIntInRange(0, 2**32 - 1),
        "worn_s": worn,
        "activity_s": activity,
        **bins,
        "alert_count": draw.ConsumeIntInRange(0, 255),
        "longest_bout_s": draw.ConsumeIntInRange(0, 60),
        "mean_velocity_ddps": draw.ConsumeIntInRange(0, 65535) if draw.ConsumeBool() else None,
        "curvature_mean_ddeg": draw.ConsumeIntInRange(-1800, 1800) if draw.ConsumeBool() else None,
    }


def _check_notification(data: bytes, ftype: int, values: tuple[Any, ...]) -> None:
    if ftype == p.FRAME_RESULT:
        again = p.encode_result(*values) if len(values[2]) <= 241 else data
    elif ftype == p.FRAME_BATCH_END:
        again = p.encode_batch_end(*values)
    else:
        again = struct.pack("<BH", ftype, values[0]) + values[1]
    if again != data:
        raise AssertionError(f"notification {ftype} {values} re-encodes differently")


def seeds() -> list[bytes]:
    """Valid inputs for every selector, made from valid records of every type."""
    zeros = [0] * 20
    sitting = p.encode_minute(
        1_767_225_600, 60, [0, 60, 0, 0, 0], [0, 0, 60, 0, 0], zeros[:4] + [12, 31, 17] + zeros[:13],
        zeros[:5] + [20, 33, 7] + zeros[:12], 1, 12, 48, -35,
    )  # fmt: skip
    sitting2 = p.encode_payload(p.MINUTE2, p.decode_payload(p.MINUTE, sitting))
    payloads = {p.MINUTE: sitting, p.MINUTE2: sitting2}
    for rtype in p.RECORD_NAMES:
        if rtype not in payloads:
            names = p.field_names(rtype)
            payloads[rtype] = p.encode_event(
                rtype, *[1 if "count" in n or "duration" in n else 0 for n in names]
            )
    records = [
        p.encode_record(seq, rtype, payload) for seq, (rtype, payload) in enumerate(payloads.items(), 1)
    ]
    stream = b"".join(records)
    out = [bytes([RECORDS]) + stream, bytes([SCAN]) + stream + records[0][:9], bytes([RECORD_AT, 8]) + stream]
    for rtype, payload in payloads.items():
        out += [bytes([PAYLOAD, rtype]) + payload, bytes([RECORD, rtype]) + payload]
    out.append(bytes([MINUTE_LAYOUTS]) + sitting)
    out += [bytes([MINUTE_FIELDS]) + bytes(range(k, k + 64)) for k in (0, 60, 120)]
    info = p.encode_info(2, (1, 4, 0), "W017", 1, 900, 850, 77, 1_767_225_600, 0xC0FFEE, bytes(range(16)))
    out.append(bytes([INFO]) + info)
    for command in (
        p.encode_command(p.CMD_HELLO, bytes(16), bytes(range(32))),
        p.encode_command(p.CMD_TIME_SET, 1_767_225_600),
        p.encode_command(p.CMD_FETCH, 851, 64),
        p.encode_command(p.CMD_ACK, 900),
        p.encode_command(p.CMD_CONFIG_SET, 0, 27, b'{"alert_threshold_deg": 25}'),
        p.encode_command(p.CMD_CONFIG_SET, 12, 40, b"_deg"),
        p.encode_command(p.CMD_CALIBRATE),
    ):
        out.append(bytes([COMMAND]) + command)
    frames = p.pack_data_frames(records, 23) + p.pack_data_frames(records, 247)
    out += [bytes([NOTIFICATION]) + frame for frame in frames[:4]]
    out.append(bytes([NOTIFICATION]) + p.encode_result(p.CMD_HELLO, p.OK, bytes(32)))
    out.append(bytes([NOTIFICATION]) + p.encode_batch_end(3, 12, 1, bytes(32)))
    small = p.pack_data_frames(records, 23)
    out.append(bytes([FRAMES]) + b"".join(bytes([len(f)]) + f for f in small))
    return out
