"""The wire contract (shared/protocol.py): record framing, payload layouts, the error contract.

The same module runs on the board (MicroPython) and on the host (CPython); the tests check
both interpreters produce the same bytes and read each other's, with one micropython process
per test.
"""

from __future__ import annotations

import random
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p
from emulator.micropython_cmd import default_search_path

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_TYPES = sorted(t for t in p.RECORD_NAMES if t not in p.MINUTE_TYPES)

# Payload sizes as docs/protocol.md states them.
EVENT_PAYLOAD_BYTES = {
    p.BOUT: 10,
    p.ALERT: 12,
    p.CALIBRATION: 14,
    p.BUTTON: 6,
    p.BOOT: 12,
    p.SENSOR_FAULT: 10,
    p.BATTERY: 8,
    p.TIME_SET: 8,
    p.CONFIG: 11,
    p.GAP: 12,
}


# ---- building valid and invalid cases ----------------------------------------------------------
def zeros(n: int) -> list[int]:
    return [0] * n


def sitting_minute(start_s: int = 1_700_000_040, **changes: Any) -> dict[str, Any]:
    """A typical minute at a desk: worn, static, upright-ish, a little slouch, one IMU."""
    fields: dict[str, Any] = {
        "start_s": start_s,
        "worn_s": 60,
        "activity_s": [0, 60, 0, 0, 0],
        "lateral_bins_s": [0, 0, 60, 0, 0],
        "flexion_bins_s": zeros(4) + [12, 31, 17] + zeros(13),
        "inclination_bins_s": zeros(5) + [20, 33, 7] + zeros(12),
        "alert_count": 0,
        "longest_bout_s": 0,
        "mean_velocity_ddps": 48,
        "curvature_mean_ddeg": None,
    }
    fields.update(changes)
    return fields


def random_seconds(rng: random.Random, nbins: int) -> list[int]:
    bins = zeros(nbins)
    shape = rng.randrange(5)
    if shape == 0:
        return bins
    if shape == 1:  # a whole minute in one bin, often an edge bin
        bins[rng.choice([0, nbins - 1, rng.randrange(nbins)])] = 60
        return bins
    if shape == 2:  # every bin used
        for i in range(nbins):
            bins[i] = 60 // nbins
        return bins
    for _ in range(rng.randrange(61)):  # scattered seconds, with gaps inside the run
        bins[min(nbins - 1, max(0, int(rng.gauss(rng.randrange(nbins), 2))))] += 1
    return bins


def random_minute(rng: random.Random) -> dict[str, Any]:
    return {
        "start_s": rng.choice([0, 2**32 - 1, 946_684_800, rng.randrange(2**32)]),
        "worn_s": rng.randrange(61),
        "activity_s": random_seconds(rng, 5),
        "lateral_bins_s": random_seconds(rng, 5),
        "flexion_bins_s": random_seconds(rng, 20),
        "inclination_bins_s": random_seconds(rng, 20),
        "alert_count": rng.choice([0, 0, 1, 255]),
        "longest_bout_s": rng.choice([0, 0, 5, 60]),
        "mean_velocity_ddps": rng.choice([None, 0, 48, 65535]),
        "curvature_mean_ddeg": rng.choice([None, -1800, 0, 123, 1800]),
    }


def random_histogram(rng: random.Random, nbins: int, total: int) -> list[int]:
    bins = zeros(nbins)
    if total == 0:
        return bins
    if rng.randrange(3) == 0:  # every second in one bin, often an edge bin
        bins[rng.choice([0, nbins - 1, rng.randrange(nbins)])] = total
        return bins
    centre = rng.randrange(nbins)
    for _ in range(total):  # scattered seconds, with gaps inside the run
        bins[min(nbins - 1, max(0, int(rng.gauss(centre, 3))))] += 1
    return bins


def random_minute2(rng: random.Random) -> dict[str, Any]:
    """A minute whose fields agree (what MINUTE2 needs): worn from activity, histograms adding
    up to the posture seconds."""
    fields = random_minute(rng)
    activity = fields["activity_s"]
    worn = sum(activity) - activity[p.ACTIVITY_NOT_WORN]
    posture = worn - activity[p.ACTIVITY_LYING]
    fields["worn_s"] = worn
    fields["lateral_bins_s"] = random_histogram(rng, 5, posture)
    fields["flexion_bins_s"] = random_histogram(rng, 20, posture)
    fields["inclination_bins_s"] = random_histogram(rng, 20, posture)
    return fields


def random_event(rng: random.Random, rtype: int) -> dict[str, Any]:
    fields = {}
    for name, lo, hi, none_code in p._EVENTS[rtype][1]:
        choices = [lo, hi, rng.randint(lo, hi)]
        if none_code is not None:
            choices.append(None)
        fields[name] = rng.choice(choices)
    return fields


def random_fields(rng: random.Random, rtype: int) -> dict[str, Any]:
    if rtype == p.MINUTE2:
        return random_minute2(rng)
    return random_minute(rng) if rtype == p.MINUTE else random_event(rng, rtype)


def seeded_cases(seed: int, per_type: int) -> list[tuple[int, int, dict[str, Any]]]:
    """(seq, type, fields) for every record type, valid values including the range limits."""
    rng = random.Random(seed)
    cases = [(1, p.MINUTE, sitting_minute())]
    for rtype in sorted(p.RECORD_NAMES):
        for _ in range(per_type):
            cases.append(
                (rng.choice([0, 1, 2**32 - 1, rng.randrange(2**32)]), rtype, random_fields(rng, rtype))
            )
    return cases


def frame(seq: int, rtype: int, fields: dict[str, Any]) -> bytes:
    return p.encode_record(seq, rtype, p.encode_payload(rtype, fields))


def raw_record(seq: int, rtype: int, payload: bytes) -> bytes:
    """A record framed by hand, with a correct CRC, whatever its payload."""
    body = struct.pack("<IBB", seq, rtype, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def valid_stream(seed: int, count: int = 12) -> bytes:
    rng = random.Random(seed)
    types = sorted(p.RECORD_NAMES)
    return b"".join(
        frame(100 + i, t, random_fields(rng, t))
        for i, t in enumerate(rng.choice(types) for _ in range(count))
    )


def assert_records_are_genuine(data: bytes, records: list[p.Record], start: int = 0) -> int:
    """Each returned record re-encodes to exactly the bytes it was read from (so its CRC held)."""
    pos = start
    for record in records:
        framed = p.encode_record(record.seq, record.rtype, record.payload)
        assert data[pos : pos + len(framed)] == framed
        pos += len(framed)
    return pos


# ---- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("rtype", sorted(p.RECORD_NAMES), ids=lambda t: p.RECORD_NAMES[t])
def test_every_record_type_round_trips(rtype):
    rng = random.Random(rtype)
    for _ in range(200):
        fields = random_fields(rng, rtype)
        seq = rng.randrange(2**32)
        record, end = p.decode_record(frame(seq, rtype, fields))
        assert (record.seq, record.rtype, record.name) == (seq, rtype, p.RECORD_NAMES[rtype])
        assert record.fields() == fields
        assert end == len(record.payload) + 10


@pytest.mark.parametrize("rtype", sorted(p.RECORD_NAMES), ids=lambda t: p.RECORD_NAMES[t])
def test_decode_record_fields_gives_the_fields_and_crc_it_checked(rtype):
    rng = random.Random(rtype)
    fields = random_fields(rng, rtype)
    framed = frame(7, rtype, fields) + frame(8, rtype, fields)
    record, decoded, crc, end = p.decode_record_fields(framed)
    assert (record, end) == p.decode_record(framed)
    assert decoded == fields == p.decode_payload(rtype, record.payload)
    assert crc.to_bytes(4, "little") == framed[end - 4 : end]
    assert p.decode_record_fields(framed, end)[0].seq == 8


@pytest.mark.parametrize("rtype", EVENT_TYPES, ids=lambda t: p.RECORD_NAMES[t])
def test_event_payload_has_its_documented_size(rtype):
    fields = random_event(random.Random(0), rtype)
    assert len(p.encode_payload(rtype, fields)) == EVENT_PAYLOAD_BYTES[rtype]


def test_positional_event_encoding_equals_the_dict_encoding():
    fields = {"start_s": 1_700_000_000, "duration_s": 42, "mean_flexion_ddeg": 312, "peak_flexion_ddeg": 455}
    assert p.encode_event(p.BOUT, 1_700_000_000, 42, 312, 455) == p.encode_payload(p.BOUT, fields)
    assert p.field_names(p.BOUT) == tuple(fields)


def test_uncorrected_alert_decodes_time_to_correct_as_none():
    payload = p.encode_event(p.ALERT, 1_700_000_000, 90, 380, None, 2, p.OUTCOME_TIMED_OUT)
    assert struct.unpack_from("<H", payload, 8)[0] == p.NOT_CORRECTED
    assert p.decode_payload(p.ALERT, payload)["time_to_correct_s"] is None


def test_decoded_minute_has_full_length_lists_and_defaults():
    fields = sitting_minute()
    for name in ("alert_count", "longest_bout_s", "mean_velocity_ddps", "curvature_mean_ddeg"):
        del fields[name]
    decoded = p.decode_payload(p.MINUTE, p.encode_payload(p.MINUTE, fields))
    assert [
        len(decoded[k]) for k in ("activity_s", "lateral_bins_s", "flexion_bins_s", "inclination_bins_s")
    ] == [
        5,
        5,
        20,
        20,
    ]
    assert decoded["alert_count"] == decoded["longest_bout_s"] == 0
    assert decoded["mean_velocity_ddps"] is None and decoded["curvature_mean_ddeg"] is None


def test_minute_with_nothing_measured_is_seven_bytes():
    empty = p.encode_minute(1_700_000_000, 0, zeros(5), zeros(5), zeros(20), zeros(20))
    assert len(empty) == 7
    assert p.decode_payload(p.MINUTE, empty)["flexion_bins_s"] == zeros(20)


def seconds_lists(nbins: int) -> st.SearchStrategy[list[int]]:
    """Per-bin seconds of one minute: up to 60 seconds dropped into bins."""
    return st.lists(st.integers(0, nbins - 1), max_size=60).map(
        lambda hits: [hits.count(i) for i in range(nbins)]
    )


minutes = st.fixed_dictionaries(
    {
        "start_s": st.integers(0, 2**32 - 1),
        "worn_s": st.integers(0, 60),
        "activity_s": seconds_lists(5),
        "lateral_bins_s": seconds_lists(5),
        "flexion_bins_s": seconds_lists(20),
        "inclination_bins_s": seconds_lists(20),
        "alert_count": st.integers(0, 255),
        "longest_bout_s": st.integers(0, 60),
        "mean_velocity_ddps": st.none() | st.integers(0, 65535),
        "curvature_mean_ddeg": st.none() | st.integers(-1800, 1800),
    }
)


@FUZZ
@given(minutes)
def test_any_minute_summary_round_trips(fields):
    assert p.decode_payload(p.MINUTE, p.encode_payload(p.MINUTE, fields)) == fields


@FUZZ
@given(st.binary(min_size=7, max_size=70))
def test_a_minute_payload_that_decodes_has_exactly_one_encoding(payload):
    # Canonical encoding: whatever the decoder accepts, the encoder reproduces byte for byte.
    try:
        fields = p.decode_payload(p.MINUTE, payload)
    except p.ProtocolError:
        return
    assert p.encode_payload(p.MINUTE, fields) == payload


# ---- compactness ------------------------------------------------------------------------------
def test_typical_sitting_minute_is_at_most_24_payload_bytes():
    payload = p.encode_payload(p.MINUTE, sitting_minute())
    assert len(payload) == 19
    assert len(p.encode_record(1, p.MINUTE, payload)) == 29


def test_minute2_leaves_out_what_the_other_fields_imply():
    # worn_s (= activity but not_worn) and the last bin of each histogram (they add up to the
    # posture seconds): 4 bytes of a typical minute, 240 bytes of a worn hour.
    fields = sitting_minute()
    payload = p.encode_payload(p.MINUTE2, fields)
    assert len(payload) == 15
    assert p.decode_payload(p.MINUTE2, payload) == fields
    lying = sitting_minute(
        activity_s=[20, 30, 5, 0, 5], worn_s=55, lateral_bins_s=[0, 1, 34, 0, 0],
        flexion_bins_s=[2] + zeros(18) + [33], inclination_bins_s=[35] + zeros(19),
    )
    assert p.decode_payload(p.MINUTE2, p.encode_payload(p.MINUTE2, lying)) == lying
    off = sitting_minute(
        activity_s=[0, 0, 0, 0, 60], worn_s=0, lateral_bins_s=zeros(5), flexion_bins_s=zeros(20),
        inclination_bins_s=zeros(20), mean_velocity_ddps=None,
    )
    assert p.decode_payload(p.MINUTE2, p.encode_payload(p.MINUTE2, off)) == off


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"worn_s": 59}, "activity seconds say 60"),
        ({"flexion_bins_s": zeros(4) + [12, 31, 16] + zeros(13)}, "adds up to 59"),
        ({"lateral_bins_s": [0, 0, 59, 0, 0]}, "lateral_bins_s adds up to 59"),
        ({"inclination_bins_s": zeros(20)}, "empty but there are 60"),
    ],
)
def test_minute2_refuses_fields_that_disagree(changes, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.encode_payload(p.MINUTE2, sitting_minute(**changes))


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<IH", 1, 0x8000), "reserved bit"),
        (struct.pack("<IHB", 1, 0x0002, 60), "lateral bins do not match"),
        (struct.pack("<IHB", 1, 0x0002 | 0x0080 | 0x0C00, 60) + bytes([3]), "ends inside"),
        (struct.pack("<IHB", 1, 0x0002 | 0x0080 | 0x0C00, 60) + bytes([3, 0xBC, 0x85]), "no seconds for its last"),
        (struct.pack("<IHB", 1, 0x0002 | 0x0080 | 0x0C00, 60) + bytes([19, 5, 0x85]), "runs past bin 19"),
        (struct.pack("<IHB", 1, 0x0002 | 0x0080 | 0x0400, 60) + bytes([0x85]), "inclination_bins_s is missing"),
        (b"\x01\x02", "at least 6"),
    ],
)
def test_minute2_decoding_rejects_malformed_payloads(payload, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.decode_payload(p.MINUTE2, payload)


@FUZZ
@given(st.binary(min_size=6, max_size=70))
def test_a_minute2_payload_that_decodes_has_exactly_one_encoding(payload):
    try:
        fields = p.decode_payload(p.MINUTE2, payload)
    except p.ProtocolError:
        return
    assert p.encode_payload(p.MINUTE2, fields) == payload


def test_a_worn_hour_at_a_desk_logs_under_2_kb():
    hour = [frame(i, p.MINUTE, sitting_minute(1_700_000_040 + 60 * i)) for i in range(60)]
    # A busy desk hour: ten slouch bouts, two alerts, a task switch, a battery reading.
    hour += [
        p.encode_record(100 + i, p.BOUT, p.encode_event(p.BOUT, 1_700_000_100 + i, 25, 260, 340))
        for i in range(10)
    ]
    hour += [
        p.encode_record(200 + i, p.ALERT, p.encode_event(p.ALERT, 1_700_000_500, 40, 330, 12, 0, 0))
        for i in range(2)
    ]
    hour.append(
        p.encode_record(300, p.BUTTON, p.encode_event(p.BUTTON, 1_700_001_000, p.BUTTON_TASK_SWITCH, 3))
    )
    hour.append(p.encode_record(301, p.BATTERY, p.encode_event(p.BATTERY, 1_700_001_000, 3950, 81, 0)))
    assert sum(len(r) for r in hour) <= 2048


def test_largest_minute_summary_fits_one_record():
    fields = {
        "start_s": 2**32 - 1,
        "worn_s": 60,
        "activity_s": [12] * 5,
        "lateral_bins_s": [12] * 5,
        "flexion_bins_s": [3] * 20,
        "inclination_bins_s": [3] * 20,
        "alert_count": 255,
        "longest_bout_s": 60,
        "mean_velocity_ddps": 65535,
        "curvature_mean_ddeg": -1800,
    }
    assert len(p.encode_payload(p.MINUTE, fields)) == 65


# ---- the error contract -------------------------------------------------------------------------
def decode_outcome(data: bytes) -> tuple[str, int]:
    """('ok', records) or ('error', 0); anything but ProtocolError propagates and fails the test."""
    try:
        records = p.decode_records(data)
    except p.ProtocolError:
        return ("error", 0)
    assert assert_records_are_genuine(data, records) == len(data)
    return ("ok", len(records))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data):
    decode_outcome(data)
    records, valid = p.scan_valid_prefix(data)
    assert assert_records_are_genuine(data, records) == valid


@FUZZ
@given(st.binary(max_size=80), st.sampled_from(sorted(p.RECORD_NAMES) + [0, 42, 255]))
def test_random_payload_with_a_good_crc_decodes_or_raises_protocol_error(payload, rtype):
    # The CRC holds here, so this reaches every payload parser with arbitrary bytes.
    try:
        record, _ = p.decode_record(raw_record(7, rtype, payload))
    except p.ProtocolError:
        return
    assert record.fields() == p.decode_payload(rtype, payload)


@FUZZ
@given(st.integers(0, 10_000), st.data())
def test_truncated_stream_keeps_whole_records_or_raises_protocol_error(seed, data):
    stream = valid_stream(seed)
    cut = data.draw(st.integers(0, len(stream)))
    whole = p.decode_records(stream)
    kind, count = decode_outcome(stream[:cut])
    records, valid = p.scan_valid_prefix(stream[:cut])
    assert records == whole[: len(records)]
    assert valid == assert_records_are_genuine(stream, records)
    if kind == "ok":
        assert count == len(records) and valid == cut


@FUZZ
@given(st.integers(0, 10_000), st.data())
def test_flipped_byte_is_rejected_by_crc(seed, data):
    rng = random.Random(seed)
    rtype = rng.choice(sorted(p.RECORD_NAMES))
    record = bytearray(frame(seed, rtype, random_fields(rng, rtype)))
    index = data.draw(st.integers(0, len(record) - 1))
    record[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(p.ProtocolError):
        p.decode_records(bytes(record))
    assert p.scan_valid_prefix(bytes(record)) == ([], 0)


@FUZZ
@given(st.integers(0, 10_000), st.data())
def test_mutated_stream_never_yields_a_record_that_was_not_written(seed, data):
    written = valid_stream(seed)
    stream = bytearray(written)
    index = data.draw(st.integers(0, len(stream) - 1))
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if how == "replace":
        stream[index] = data.draw(st.integers(0, 255).filter(lambda b: b != stream[index]))
    elif how == "insert":
        stream.insert(index, data.draw(st.integers(0, 255)))
    else:
        del stream[index]
    kind, _ = decode_outcome(bytes(stream))
    assert kind == "error"
    records, valid = p.scan_valid_prefix(bytes(stream))
    # Only the bytes before the first difference are the written stream's.  That is `index`,
    # unless the byte deleted or inserted equals its neighbour (seed 2338, byte 40 deleted).
    same = 0
    while same < min(len(stream), len(written)) and stream[same] == written[same]:
        same += 1
    assert valid <= same and assert_records_are_genuine(bytes(stream), records) == valid


def test_scan_cuts_a_torn_tail_at_every_possible_byte():
    stream = valid_stream(1, count=5)
    ends = [0]
    for record in p.decode_records(stream):
        ends.append(ends[-1] + len(record.payload) + 10)
    for cut in range(len(stream) + 1):
        records, valid = p.scan_valid_prefix(stream[:cut])
        assert valid == max(e for e in ends if e <= cut)
        assert len(records) == ends.index(valid)


def test_scan_stops_at_a_corrupt_record_and_keeps_what_came_before():
    good = frame(1, p.BATTERY, {"time_s": 5, "battery_mv": 3900, "percent": 80, "charging": 1})
    bad = bytearray(frame(2, p.BATTERY, {"time_s": 6, "battery_mv": 3900, "percent": 80, "charging": 1}))
    bad[-1] ^= 0x01
    records, valid = p.scan_valid_prefix(good + bytes(bad) + good)
    assert [r.seq for r in records] == [1] and valid == len(good)


def test_empty_input_is_an_empty_sequence_of_records():
    assert p.decode_records(b"") == []
    assert p.scan_valid_prefix(b"") == ([], 0)


def test_unknown_type_with_a_good_crc_raises_unknown_record_type():
    with pytest.raises(p.UnknownRecordType, match="type 42"):
        p.decode_record(raw_record(9, 42, b"\x01\x02"))
    assert issubclass(p.UnknownRecordType, p.ProtocolError)
    assert issubclass(p.ProtocolError, ValueError)


@pytest.mark.parametrize(
    "rtype, payload, reason",
    [
        (p.BOUT, struct.pack("<IHh", 1, 10, 300), "BOUT payload is 8 bytes"),
        (p.BOUT, struct.pack("<IHhhB", 1, 10, 300, 400, 0), "BOUT payload is 11 bytes"),
        (p.BOUT, struct.pack("<IHhh", 1, 0, 300, 400), "duration_s = 0"),
        (p.ALERT, struct.pack("<IHhHBB", 1, 10, 300, 5, 0, 9), "outcome = 9"),
        (p.BATTERY, struct.pack("<IHBB", 1, 3900, 101, 0), "percent = 101"),
        (p.SENSOR_FAULT, struct.pack("<IBBHH", 1, 0x80, 0, 0, 0), "i2c_addr = 128"),
        (p.GAP, struct.pack("<III", 1, 5, 0), "lost_count = 0"),
        (p.MINUTE, struct.pack("<IBH", 1, 60, 0x8000), "reserved bit"),
        (p.MINUTE, struct.pack("<IBH", 1, 61, 0), "worn_s = 61"),
        (p.MINUTE, struct.pack("<IBHB", 1, 60, 0x0002, 0), "marked present but zero"),
        (p.MINUTE, struct.pack("<IBHBB", 1, 60, 0x0003, 40, 30), "activity_s adds up to 70"),
        (
            p.MINUTE,
            struct.pack("<IBH", 1, 60, 0x0400) + bytes([3, 0, 0x85]),
            "starts or ends with an empty bin",
        ),
        (p.MINUTE, struct.pack("<IBH", 1, 60, 0x0400) + bytes([19, 5, 0x85]), "runs past bin 19"),
        (p.MINUTE, struct.pack("<IBH", 1, 60, 0x0400) + bytes([20, 0x85]), "starts at bin 20"),
        (p.MINUTE, struct.pack("<IBH", 1, 60, 0x0400) + bytes([3, 5, 6]), "ends inside flexion_bins_s"),
        (p.MINUTE, struct.pack("<IBHBB", 1, 60, 0x1000, 0, 0), "both are zero"),
        (p.MINUTE, struct.pack("<IBHBB", 1, 60, 0x1000, 0, 61), "longest_bout_s = 61"),
        (p.MINUTE, struct.pack("<IBHh", 1, 60, 0x4000, 1801), "curvature_mean_ddeg = 1801"),
        (p.MINUTE, struct.pack("<IBHB", 1, 60, 0x2000, 7), "ends inside mean_velocity_ddps"),
        (p.MINUTE, struct.pack("<IBHB", 1, 60, 0, 7), "1 bytes after its last section"),
        (p.MINUTE, b"\x01\x02", "at least 7"),
    ],
)
def test_payload_that_does_not_parse_is_rejected_despite_a_good_crc(rtype, payload, reason):
    with pytest.raises(p.ProtocolError, match=reason):
        p.decode_record(raw_record(3, rtype, payload))
    with pytest.raises(p.ProtocolError):
        p.encode_record(3, rtype, payload)


# ---- range validation on encoding -----------------------------------------------------------
@pytest.mark.parametrize(
    "encode, reason",
    [
        (lambda: p.encode_event(p.BOUT, -1, 10, 300, 400), "BOUT.start_s = -1 is outside"),
        (lambda: p.encode_event(p.BOUT, 2**32, 10, 300, 400), "start_s = 4294967296 is outside"),
        (lambda: p.encode_event(p.BOUT, 1, 65536, 300, 400), "duration_s = 65536"),
        (lambda: p.encode_event(p.BOUT, 1, 10, 300, 1801), "peak_flexion_ddeg = 1801"),
        (lambda: p.encode_event(p.BOUT, 1, 10, 300.0, 400), "mean_flexion_ddeg must be an integer"),
        (lambda: p.encode_event(p.BOUT, 1, 10, 300), "takes 4 values"),
        (lambda: p.encode_event(p.ALERT, 1, 10, 300, 0xFFFF, 0, 0), "time_to_correct_s = 65535"),
        (lambda: p.encode_event(p.ALERT, 1, 10, 300, None, 256, 0), "escalation_level = 256"),
        (lambda: p.encode_event(p.ALERT, 1, 10, 300, None, 0, len(p.OUTCOMES)), "outcome = 4"),
        (lambda: p.encode_event(p.CALIBRATION, 1, 3, 0, 1000, 0, 0, 5), "method = 3"),
        (lambda: p.encode_event(p.CALIBRATION, 1, 0, 0, 16001, 0, 0, 5), "neutral_x_mg = 16001"),
        (lambda: p.encode_event(p.BOOT, 1, 7, 1, 0, 0, 0), "reset_cause = 7"),
        (lambda: p.encode_event(p.BOOT, 1, 1, 256, 0, 0, 0), "fw_major = 256"),
        (lambda: p.encode_event(p.SENSOR_FAULT, 1, 0x6A, 5, 0, 0), "kind = 5"),
        (lambda: p.encode_event(p.BATTERY, 1, 70000, 50, 0), "battery_mv = 70000"),
        (lambda: p.encode_event(p.BATTERY, 1, 3900, 50, 2), "charging = 2"),
        (lambda: p.encode_event(p.CONFIG, 1, 0, 5, 0, 0), "result = 5"),
        (lambda: p.encode_event(p.TIME_SET, 1, -5), "new_s = -5"),
        (lambda: p.encode_event(p.MINUTE, 1), "use encode_minute"),
        (lambda: p.encode_event(42, 1), "unknown record type 42"),
        (lambda: p.encode_minute(1, 61, zeros(5), zeros(5), zeros(20), zeros(20)), "worn_s = 61"),
        (
            lambda: p.encode_minute(1, 60, [0, 61, 0, 0, 0], zeros(5), zeros(20), zeros(20)),
            r"activity_s\[1\] = 61",
        ),
        (lambda: p.encode_minute(1, 60, [30, 31, 0, 0, 0], zeros(5), zeros(20), zeros(20)), "adds up to 61"),
        (
            lambda: p.encode_minute(1, 60, zeros(5), zeros(5), zeros(19), zeros(20)),
            "must have 20 values, got 19",
        ),
        (lambda: p.encode_minute(1, 60, zeros(5), zeros(5), zeros(20), None), "must be a list of 20"),
        (lambda: p.encode_minute(1, 60, zeros(5), [0, -1, 0, 0, 0], zeros(20), zeros(20)), r"\[1\] = -1"),
        (
            lambda: p.encode_minute(1, 60, zeros(5), zeros(5), zeros(20), zeros(20), alert_count=256),
            "alert_count",
        ),
        (
            lambda: p.encode_minute(1, 60, zeros(5), zeros(5), zeros(20), zeros(20), longest_bout_s=61),
            "longest",
        ),
        (
            lambda: p.encode_minute(1, 0, zeros(5), zeros(5), zeros(20), zeros(20), mean_velocity_ddps=-1),
            "velocity",
        ),
        (
            lambda: p.encode_minute(
                1, 0, zeros(5), zeros(5), zeros(20), zeros(20), curvature_mean_ddeg=-1801
            ),
            "curv",
        ),
        (lambda: p.encode_payload(p.BUTTON, {"time_s": 1, "action": 0}), "needs field 'task_id'"),
        (
            lambda: p.encode_payload(p.BUTTON, {"time_s": 1, "action": 0, "task_id": 1, "x": 0}),
            "no field 'x'",
        ),
        (lambda: p.encode_payload(p.MINUTE, {"start_s": 1}), "needs field 'worn_s'"),
        (lambda: p.encode_record(-1, p.BATTERY, p.encode_event(p.BATTERY, 1, 3900, 50, 0)), "seq = -1"),
        (
            lambda: p.encode_record(2**32, p.BATTERY, p.encode_event(p.BATTERY, 1, 3900, 50, 0)),
            "seq = 4294967296",
        ),
        (lambda: p.encode_record(1, 0, b""), "unknown record type 0"),
        (lambda: p.encode_record(1, p.BATTERY, b"\x00" * 256), "at most 255"),
        (lambda: p.encode_record(1, p.BATTERY, b"\x00" * 7), "BATTERY payload is 7 bytes"),
    ],
)
def test_out_of_range_values_are_refused_not_wrapped(encode, reason):
    with pytest.raises(p.ProtocolError, match=reason):
        encode()


def test_booleans_encode_as_zero_and_one():
    assert p.encode_event(p.BATTERY, 1, 3900, 50, True) == p.encode_event(p.BATTERY, 1, 3900, 50, 1)


# ---- CRC-32 ---------------------------------------------------------------------------------
def test_crc32_is_zlibs_crc32():
    assert p.crc32(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")
    assert p.crc32(b"") == 0


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_crc32_fallback_agrees_with_zlib(data, start):
    assert p._crc32_table_driven(data) == zlib.crc32(data)
    assert p._crc32_table_driven(data, start) == zlib.crc32(data, start)
    assert p.crc32(data, start) == zlib.crc32(data, start)


# ---- shared tables ----------------------------------------------------------------------------
def test_record_names_and_codes_are_one_table():
    assert {p.RECORD_CODES[name]: name for name in p.RECORD_CODES} == p.RECORD_NAMES
    assert all(getattr(p, name.upper()) == code for code, name in p.RECORD_NAMES.items())
    assert 0 not in p.RECORD_NAMES and 255 not in p.RECORD_NAMES


@pytest.mark.parametrize(
    "table, prefix",
    [
        (p.ACTIVITIES, "ACTIVITY_"),
        (p.RESET_CAUSES, "RESET_"),
        (p.FAULT_KINDS, "FAULT_"),
        (p.OUTCOMES, "OUTCOME_"),
        (p.CALIBRATION_METHODS, "CAL_"),
        (p.SENSORS, "SENSOR_"),
        (p.BUTTON_ACTIONS, "BUTTON_"),
        (p.CONFIG_RESULTS, "CONFIG_"),
    ],
)
def test_enumeration_constants_index_their_name_tables(table, prefix):
    for code, name in enumerate(table):
        assert getattr(p, prefix + name.upper()) == code


def test_config_sources_have_constants_in_table_order():
    assert [p.CONFIG_FROM_FILE, p.CONFIG_FROM_DEFAULTS, p.CONFIG_FROM_BLE, p.CONFIG_FROM_BUTTON] == [
        p.CONFIG_SOURCES.index(s) for s in ("file", "defaults_fallback", "ble", "button")
    ]


def test_reset_causes_1_to_5_are_micropython_machine_codes():
    # machine.PWRON_RESET .. machine.SOFT_RESET on MicroPython ports, 0 when unknown
    assert (p.RESET_POWER_ON, p.RESET_HARD, p.RESET_WDT, p.RESET_DEEPSLEEP, p.RESET_SOFT) == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("rtype", EVENT_TYPES, ids=lambda t: p.RECORD_NAMES[t])
def test_every_event_field_has_a_struct_slot(rtype):
    fmt, fields = p._EVENTS[rtype]
    assert len(fmt) - 1 == len(fields) == len(p.field_names(rtype))


def test_angle_bins_follow_the_documented_edges():
    assert [p.angle_bin(a) for a in (-1, 0, 49, 50, 199, 200, 899, 900, 1800)] == [
        0,
        1,
        1,
        2,
        4,
        5,
        18,
        19,
        19,
    ]
    assert len(p.ANGLE_EDGES_DEG) + 1 == p.ANGLE_BINS
    assert [p.lateral_bin(a) for a in (-201, -200, -101, -100, 99, 100, 199, 200)] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert len(p.LATERAL_EDGES_DEG) + 1 == p.LATERAL_BINS


# ---- the same module in the real MicroPython --------------------------------------------------
ENCODE_ON_BOARD = """
import sys, protocol
for line in sys.stdin.read().split("\\n"):
    if not line:
        continue
    seq, rtype, fields = eval(line)
    try:
        print(protocol.encode_record(seq, rtype, protocol.encode_payload(rtype, fields)).hex())
    except protocol.ProtocolError:
        print("refused")
"""


def encode_here(seq: int, rtype: int, fields: dict[str, Any]) -> str:
    try:
        return frame(seq, rtype, fields).hex()
    except p.ProtocolError:
        return "refused"


def test_encoding_is_byte_identical_on_micropython(micropython):
    cases: list[tuple[int, int, dict[str, Any]]] = seeded_cases(seed=7, per_type=25)
    # and values that both must refuse
    cases += [
        (1, p.BOUT, {"start_s": 1, "duration_s": 70000, "mean_flexion_ddeg": 0, "peak_flexion_ddeg": 0}),
        (1, p.MINUTE, sitting_minute(worn_s=61)),
        (1, p.MINUTE, sitting_minute(flexion_bins_s=[3] * 21)),
        (2**32, p.GAP, {"time_s": 1, "first_lost_seq": 5, "lost_count": 2}),
    ]
    out = micropython(ENCODE_ON_BOARD, stdin="\n".join(repr(c) for c in cases).encode())
    assert out.split() == [encode_here(*c) for c in cases]
    assert out.split().count("refused") == 4


DECODE_ON_BOARD = """
import sys, binascii, protocol
data = binascii.unhexlify(sys.stdin.read().strip())
for r in protocol.decode_records(data):
    print(r.seq, r.rtype, sorted(r.fields().items()))
"""


def test_micropython_decodes_what_cpython_encoded(micropython):
    cases = seeded_cases(seed=11, per_type=15)
    stream = b"".join(frame(*c) for c in cases)
    out = micropython(DECODE_ON_BOARD, stdin=stream.hex().encode())
    expected = [f"{seq} {rtype} {sorted(fields.items())}" for seq, rtype, fields in cases]
    assert out.splitlines() == expected


FUZZ_ON_BOARD = """
import sys, binascii, protocol
for line in sys.stdin.read().split():
    data = binascii.unhexlify(line[1:])   # a leading "x" keeps empty streams on their line
    try:
        outcome = "ok %d" % len(protocol.decode_records(data))
    except protocol.ProtocolError:
        outcome = "error"
    except Exception as e:
        outcome = "BUG %s %s" % (type(e).__name__, e)
    records, valid = protocol.scan_valid_prefix(data)
    print(outcome, len(records), valid)
"""


def mutated_streams(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    streams = [b"", b"\x00" * 10, b"\xff" * 40]
    while len(streams) < count:
        stream = bytearray(valid_stream(rng.randrange(10_000), count=rng.randrange(1, 6)))
        how = rng.randrange(5)
        i = rng.randrange(len(stream))
        if how == 0:
            stream[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            del stream[i:]
        elif how == 2:
            stream.insert(i, rng.randrange(256))
        elif how == 3:
            stream = bytearray(rng.randbytes(rng.randrange(80)))
        streams.append(bytes(stream))  # how == 4: left valid
    return streams


def fuzz_here(data: bytes) -> str:
    kind, count = decode_outcome(data)
    records, valid = p.scan_valid_prefix(data)
    outcome = f"ok {count}" if kind == "ok" else "error"
    return f"{outcome} {len(records)} {valid}"


def test_micropython_decoder_raises_only_protocol_error_on_mutated_streams(micropython):
    streams = mutated_streams(seed=3, count=250)
    out = micropython(FUZZ_ON_BOARD, stdin="\n".join("x" + s.hex() for s in streams).encode())
    assert "BUG" not in out
    assert out.splitlines() == [fuzz_here(s) for s in streams]


CRC_ON_BOARD = """
import sys, binascii, protocol
print(protocol.crc32 is protocol._crc32_table_driven)
for line in sys.stdin.read().split():
    data = binascii.unhexlify(line[1:])
    print(protocol.crc32(data), protocol._crc32_table_driven(data), protocol._crc32_table_driven(data, 12345))
"""


def crc_vectors() -> list[bytes]:
    rng = random.Random(5)
    return [b"", b"123456789", b"\xff" * 64] + [rng.randbytes(rng.randrange(1, 200)) for _ in range(30)]


def test_micropython_crc32_and_its_fallback_agree_with_zlib(micropython):
    vectors = crc_vectors()
    out = micropython(CRC_ON_BOARD, stdin="\n".join("x" + v.hex() for v in vectors).encode()).splitlines()
    assert out[0] == "False"  # the unix port has binascii.crc32
    assert out[1:] == [f"{zlib.crc32(v)} {zlib.crc32(v)} {zlib.crc32(v, 12345)}" for v in vectors]


FALLBACK_ON_BOARD = """
import sys, protocol
print(protocol.crc32 is protocol._crc32_table_driven)
for line in sys.stdin.read().split("\\n"):
    what, value = line.split(" ", 1)
    if what == "crc":
        data = eval(value)
        print(protocol.crc32(data), protocol.crc32(data, 12345))
    else:
        seq, rtype, fields = eval(value)
        print(protocol.encode_record(seq, rtype, protocol.encode_payload(rtype, fields)).hex())
"""


def test_protocol_falls_back_to_its_own_crc32_without_binascii_crc32(micropython, tmp_path):
    # Like an ESP32 build without binascii.crc32: a binascii module that lacks it shadows
    # the built-in one.  Records must come out the same.
    (tmp_path / "binascii.py").write_text("# binascii without crc32\n")
    vectors = crc_vectors()
    cases = seeded_cases(seed=13, per_type=3)
    stdin = [f"crc {v!r}" for v in vectors] + [f"record {c!r}" for c in cases]
    out = micropython(
        FALLBACK_ON_BOARD,
        search_path=[str(tmp_path), *default_search_path()],
        stdin="\n".join(stdin).encode(),
    ).splitlines()
    assert out[0] == "True"
    assert out[1 : 1 + len(vectors)] == [f"{zlib.crc32(v)} {zlib.crc32(v, 12345)}" for v in vectors]
    assert out[1 + len(vectors) :] == [frame(*c).hex() for c in cases]
