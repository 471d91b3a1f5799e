"""companion.batch_decode decodes a batch as protocol.decode_record_fields does, record after
record: the same records and fields, or the same first record refused with the same error.

Generated batches of every record type, minutes with their payloads mutated or arbitrary behind
a good CRC, mutated batches (framing broken), and hand-made edge cases of the two minute
layouts.  Valid minutes must be decoded by the vectorised checks, never handed to the reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_protocol import framed_records, fuzz, minute2_fields, minute_fields, mutated, raw_record

import protocol as p
from companion import batch_decode
from companion.batch_decode import DecodedBatch, UndecodableRecord, decode_batch

MINUTE_COLUMNS = {
    "start_s": "start_s",
    "worn_s": "worn_s",
    "flexion_bins": "flexion_bins_s",
    "inclination_bins": "inclination_bins_s",
    "lateral_bins": "lateral_bins_s",
    "activity_s": "activity_s",
    "alert_count": "alert_count",
    "longest_bout_s": "longest_bout_s",
    "mean_velocity_ddps": "mean_velocity_ddps",
    "curvature_mean_ddeg": "curvature_mean_ddeg",
}


def reference(frames: bytes) -> list[tuple[p.Record, dict[str, Any], int]] | str:
    """protocol's decoding, record after record: (record, fields, crc) each, or the error
    message naming the first record that does not decode."""
    out: list[tuple[p.Record, dict[str, Any], int]] = []
    pos = 0
    while pos < len(frames):
        try:
            record, fields, crc, pos_next = p.decode_record_fields(frames, pos)
        except p.ProtocolError as exc:
            seq = int.from_bytes(frames[pos : pos + 4], "little") if len(frames) - pos >= 4 else None
            where = f"record #{len(out)}" + (
                f" (seq {seq}, if its header is intact)" if seq is not None else ""
            )
            return f"{where} at byte {pos} does not decode: {exc}"
        out.append((record, fields, crc))
        pos = pos_next
    return out


def as_reference(batch: DecodedBatch) -> list[tuple[p.Record, dict[str, Any], int]]:
    """The decoded batch in the reference's terms (fields dicts, histograms as lists)."""
    fields_of: dict[int, dict[str, Any]] = {}
    minutes = batch.minutes
    for k, i in enumerate(minutes.position):
        assert minutes.seq[k] == batch.seq[i]
        fields_of[i] = {
            name: list(getattr(minutes, column)[k])
            if isinstance(getattr(minutes, column)[k], bytes)
            else getattr(minutes, column)[k]
            for column, name in MINUTE_COLUMNS.items()
        }
    events = batch.events
    for k, i in enumerate(events.position):
        assert (events.seq[k], events.rtype[k]) == (batch.seq[i], batch.rtype[i])
        assert events.time_s[k] == next(
            events.fields[k][n] for n in ("start_s", "time_s", "new_s") if n in events.fields[k]
        )
        fields_of[i] = events.fields[k]
    assert sorted(fields_of) == list(range(len(batch.seq))), "every record is a minute or an event, once"
    assert minutes.position == sorted(minutes.position) and events.position == sorted(events.position)
    return [
        (p.Record(seq, rtype, payload), fields_of[i], crc)
        for i, (seq, rtype, payload, crc) in enumerate(
            zip(batch.seq, batch.rtype, batch.payload, batch.crc, strict=True)
        )
    ]


def assert_decodes_as_reference(frames: bytes) -> list[tuple[p.Record, dict[str, Any], int]] | str:
    expected = reference(frames)
    try:
        got: list[tuple[p.Record, dict[str, Any], int]] | str = as_reference(decode_batch(frames))
    except UndecodableRecord as exc:
        got = str(exc)
    assert got == expected
    return expected


def minute_record(seq: int, fields: dict[str, Any], layout: int) -> bytes:
    return p.encode_record(seq, layout, p.encode_payload(layout, fields))


minutes_either_layout = st.one_of(
    minute_fields().map(lambda f: (p.MINUTE, f)),
    minute2_fields().map(lambda f: (p.MINUTE2, f)),
)
batches = st.lists(
    framed_records() | minutes_either_layout.map(lambda m: minute_record(7, m[1], m[0])), max_size=40
)


def decoded_without_the_reference(frames: bytes) -> DecodedBatch:
    """decode_batch(frames), failing if it hands any record to protocol.decode_record_fields."""
    decode = p.decode_record_fields

    def refuse(buf: Any, offset: int = 0) -> Any:
        raise AssertionError(f"the record at byte {offset} went to protocol.decode_record_fields")

    batch_decode.protocol.decode_record_fields = refuse  # type: ignore[assignment]
    try:
        return decode_batch(frames)
    finally:
        batch_decode.protocol.decode_record_fields = decode  # type: ignore[assignment]


# ---- valid batches ------------------------------------------------------------------------------
@fuzz(150)
@given(batches)
def test_a_batch_of_any_records_decodes_as_the_reference_decodes_it(stream):
    assert_decodes_as_reference(b"".join(stream))


@fuzz(150)
@given(st.lists(minutes_either_layout, min_size=1, max_size=60))
def test_valid_minutes_of_both_layouts_never_reach_the_reference(minutes):
    frames = b"".join(minute_record(seq, fields, layout) for seq, (layout, fields) in enumerate(minutes))
    assert as_reference(decoded_without_the_reference(frames)) == reference(frames)


def test_an_empty_batch_has_no_records():
    batch = decode_batch(b"")
    assert (batch.seq, batch.minutes.position, batch.events.position) == ([], [], [])


# ---- minutes that do not decode, or barely do -------------------------------------------------------
def in_a_batch(payload: bytes, layout: int) -> bytes:
    """`payload` as a MINUTE/MINUTE2 record with a good CRC between two valid minutes."""
    fields = {"start_s": 1_767_225_600, "worn_s": 60, "activity_s": [0, 60, 0, 0, 0]}
    fields |= {"lateral_bins_s": [0, 0, 60, 0, 0], "flexion_bins_s": [0, 60] + [0] * 18}
    fields |= {"inclination_bins_s": [0] * 19 + [60]}
    good = minute_record(1, fields, p.MINUTE2)
    return good + raw_record(2, layout, payload[:255]) + good.replace(b"\x01", b"\x03", 1)


minute_payloads = minutes_either_layout.map(lambda m: (m[0], p.encode_payload(*m)))


@fuzz(400)
@given(minute_payloads.flatmap(lambda m: st.tuples(st.just(m[0]), mutated(m[1]))), st.booleans())
def test_a_mutated_minute_behind_a_good_crc_is_refused_or_decoded_as_the_reference_does(minute, swap):
    layout, payload = minute
    if swap:  # a payload of one layout read as the other
        layout = p.MINUTE if layout == p.MINUTE2 else p.MINUTE2
    assert_decodes_as_reference(in_a_batch(payload, layout))


@fuzz(400)
@given(st.sampled_from([p.MINUTE, p.MINUTE2]), st.binary(max_size=60))
def test_arbitrary_bytes_as_a_minute_are_refused_or_decoded_as_the_reference_does(layout, payload):
    assert_decodes_as_reference(in_a_batch(payload, layout))


@fuzz(200)
@given(batches.map(b"".join).flatmap(mutated))
def test_a_mutated_batch_names_the_record_the_reference_names(frames):
    assert_decodes_as_reference(frames)


ZERO20 = [0] * 20


def minute(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "start_s": 0,
        "worn_s": 60,
        "activity_s": [0, 60, 0, 0, 0],
        "lateral_bins_s": [0, 0, 60, 0, 0],
        "flexion_bins_s": [60] + [0] * 19,
        "inclination_bins_s": [0] * 19 + [60],
    }
    return fields | changes


EDGES = {
    "single bins at both ends": minute(),
    "not worn": minute(
        worn_s=0,
        activity_s=[0, 0, 0, 0, 60],
        lateral_bins_s=[0] * 5,
        flexion_bins_s=ZERO20,
        inclination_bins_s=ZERO20,
    ),
    "lying": minute(
        activity_s=[60, 0, 0, 0, 0], lateral_bins_s=[0] * 5, flexion_bins_s=ZERO20, inclination_bins_s=ZERO20
    ),
    "runs over every bin": minute(
        activity_s=[0, 20, 20, 20, 0], flexion_bins_s=[3] * 20, inclination_bins_s=[1] * 19 + [41]
    ),
    "runs with empty bins inside": minute(
        flexion_bins_s=[0, 5] + [0] * 16 + [55, 0], inclination_bins_s=[30] + [0] * 18 + [30]
    ),
    "every optional section at its limits": minute(
        alert_count=255, longest_bout_s=60, mean_velocity_ddps=65535, curvature_mean_ddeg=-1800
    ),
    "curvature only": minute(curvature_mean_ddeg=1800),
    "velocity zero": minute(mean_velocity_ddps=0),
    "lateral in every bin": minute(lateral_bins_s=[12] * 5),
    "start at the end of time": minute(start_s=2**32 - 1),
}


@pytest.mark.parametrize("layout", [p.MINUTE, p.MINUTE2], ids=["MINUTE", "MINUTE2"])
@pytest.mark.parametrize("fields", EDGES.values(), ids=EDGES.keys())
def test_edge_minutes_decode_as_the_reference_decodes_them(fields, layout):
    frames = b"".join(minute_record(seq, fields, layout) for seq in range(3))
    expected = reference(frames)
    assert isinstance(expected, list)
    assert as_reference(decoded_without_the_reference(frames)) == expected


BROKEN = {
    "a bad CRC": lambda good: good[:-1] + bytes([good[-1] ^ 1]),
    "an unknown type": lambda good: raw_record(5, 200, b"\x00" * 8),
    "a record running past the end": lambda good: good[:-3],
    "a piece of a header": lambda good: b"\x01\x02\x03\x04\x05",
    "two bytes of a header": lambda good: b"\x01\x02",
    "a payload too short for a minute": lambda good: raw_record(9, p.MINUTE2, b"\x00\x00\x00"),
}


@pytest.mark.parametrize("damage", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_record_is_named_as_the_reference_names_it(damage):
    good = minute_record(4, minute(), p.MINUTE2)
    frames = good + damage(good)
    message = assert_decodes_as_reference(frames)
    assert isinstance(message, str) and message.startswith("record #1")


def test_the_first_of_two_broken_records_is_named():
    good = minute_record(4, minute(), p.MINUTE2)
    bout = p.encode_record(5, p.BOUT, p.encode_event(p.BOUT, 10, 5, 250, 300))
    bad_bout = raw_record(6, p.BOUT, b"\x00" * 10)  # BOUT with a zero duration: refused
    bad_minute = raw_record(7, p.MINUTE2, b"\x00" * 6 + b"\x01")
    frames = good + bout + bad_bout + good + bad_minute
    assert assert_decodes_as_reference(frames) == reference(frames)
    assert "record #2 (seq 6" in str(reference(frames))
    frames = good + bad_minute + bad_bout
    assert "record #1 (seq 7" in str(assert_decodes_as_reference(frames))
