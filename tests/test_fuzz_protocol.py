"""Property tests over every decoder of shared/protocol.py and over the ingest path.

docs/protocol.md section 2: decoding any bytes either returns genuine values or raises
`protocol.ProtocolError`, never anything else; encoders and decoders agree.  Here for every
decoder, on arbitrary bytes and on valid encodings mutated (bits flipped, bytes set, inserted,
deleted, duplicated, cut), and for the records behind a good CRC so that every payload parser
sees arbitrary bytes:

    decode_payload, decode_record, decode_record_fields, decode_records, scan_valid_prefix,
    decode_info, decode_command (config chunks included), decode_notification (results, data
    frames, batch ends), unpack_data_frames

and round trips of valid values for each.  Then the ingest path: a mutated batch uploaded to
POST /api/ingest with a valid agent token is refused with a 4xx and a sentence, and leaves
every table's rows exactly as they were (or, when it still decodes, is stored whole); the same
for companion.ingest.ingest_batch inside a caller's transaction.

Reproducible: derandomized (the examples depend on the test, not on the run), no example
database.  The coverage-guided counterpart is fuzz/ (python -m fuzz)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from databases import BACKENDS, database_url
from db_rows import database_rows
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_api_resources import World, build_world
from test_ingest import JAN1, KEY, minutes_batch

import protocol as p
from companion import ingest
from companion.store import Device, Record, session_factory

T = TypeVar("T")
U8, U16, U32 = 2**8 - 1, 2**16 - 1, 2**32 - 1


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- valid values -------------------------------------------------------------------------------
@st.composite
def seconds(draw: st.DrawFn, nbins: int, total: int | None = None) -> list[int]:
    """Seconds per bin within one minute: at most 60 in all, or exactly `total`."""
    wanted = draw(st.lists(st.integers(0, 60), min_size=nbins, max_size=nbins))
    left = 60 if total is None else total
    bins = []
    for value in wanted:
        bins.append(min(value, left))
        left -= bins[-1]
    if total is not None and left:
        bins[draw(st.integers(0, nbins - 1))] += left
    return bins


def _minute_tail() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "start_s": st.integers(0, U32),
        "alert_count": st.integers(0, U8),
        "longest_bout_s": st.integers(0, 60),
        "mean_velocity_ddps": st.none() | st.integers(0, U16),
        "curvature_mean_ddeg": st.none() | st.integers(-1800, 1800),
    }


def minute_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "worn_s": st.integers(0, 60),
            "activity_s": seconds(5),
            "lateral_bins_s": seconds(p.LATERAL_BINS),
            "flexion_bins_s": seconds(p.ANGLE_BINS),
            "inclination_bins_s": seconds(p.ANGLE_BINS),
            **_minute_tail(),
        }
    )


@st.composite
def minute2_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A minute whose fields agree, as MINUTE2 needs: worn from the activity seconds, each
    histogram adding up to the posture seconds."""
    activity = draw(seconds(5))
    worn = sum(activity) - activity[p.ACTIVITY_NOT_WORN]
    posture = worn - activity[p.ACTIVITY_LYING]
    fields = draw(st.fixed_dictionaries(_minute_tail()))
    fields.update(
        worn_s=worn,
        activity_s=activity,
        lateral_bins_s=draw(seconds(p.LATERAL_BINS, posture)),
        flexion_bins_s=draw(seconds(p.ANGLE_BINS, posture)),
        inclination_bins_s=draw(seconds(p.ANGLE_BINS, posture)),
    )
    return fields


def event_fields(rtype: int) -> st.SearchStrategy[dict[str, Any]]:
    """Any valid values of a fixed-layout event, from its field table (range and None code)."""
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for name, lo, hi, none_code in p._EVENTS[rtype][1]:
        value = st.integers(lo, hi)
        strategies[name] = value | st.none() if none_code is not None else value
    return st.fixed_dictionaries(strategies)


def fields_of(rtype: int) -> st.SearchStrategy[dict[str, Any]]:
    if rtype == p.MINUTE:
        return minute_fields()
    if rtype == p.MINUTE2:
        return minute2_fields()
    return event_fields(rtype)


RECORD_TYPES = sorted(p.RECORD_NAMES)
typed_fields = st.sampled_from(RECORD_TYPES).flatmap(lambda t: fields_of(t).map(lambda f: (t, f)))
seqs = st.integers(0, U32)


@st.composite
def framed_records(draw: st.DrawFn) -> bytes:
    rtype, fields = draw(typed_fields)
    return p.encode_record(draw(seqs), rtype, p.encode_payload(rtype, fields))


record_streams = st.lists(framed_records(), max_size=6)

info_values = st.fixed_dictionaries(
    {
        "protocol_version": st.integers(0, U8),
        "fw_version": st.tuples(st.integers(0, U8), st.integers(0, U8), st.integers(0, U8)),
        "device_id": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32),
        "first_seq": seqs,
        "last_seq": seqs,
        "acked_seq": seqs,
        "battery_percent": st.integers(0, 100) | st.just(p.BATTERY_UNKNOWN),
        "clock_s": seqs,
        "config_crc": seqs,
        "nonce": st.binary(min_size=p.NONCE_SIZE, max_size=p.NONCE_SIZE),
    }
)


@st.composite
def config_chunks(draw: st.DrawFn) -> tuple[int, tuple[Any, ...]]:
    total = draw(st.integers(1, p.CONFIG_MAX))
    offset = draw(st.integers(0, total - 1))
    chunk = draw(st.binary(min_size=1, max_size=min(total - offset, 300)))
    return p.CMD_CONFIG_SET, (offset, total, chunk)


commands = st.one_of(
    st.tuples(
        st.just(p.CMD_HELLO),
        st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32)),
    ),
    st.tuples(st.sampled_from([p.CMD_TIME_SET, p.CMD_ACK]), st.tuples(seqs)),
    st.tuples(st.just(p.CMD_FETCH), st.tuples(seqs, st.integers(1, U16))),
    config_chunks(),
    st.tuples(st.sampled_from([p.CMD_CALIBRATE, p.CMD_BUZZ_TEST, p.CMD_REBOOT]), st.just(())),
)
results = st.tuples(st.integers(0, U8), st.integers(0, U8), st.binary(max_size=241))
batch_ends = st.tuples(
    st.integers(0, U16), st.integers(0, U16), st.integers(0, 1), st.binary(min_size=32, max_size=32)
)


# ---- mutations -----------------------------------------------------------------------------------
MUTATIONS = ("flip", "set", "insert", "delete", "duplicate", "cut")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` changed one to four times, the way a radio, a flash page or an attacker would."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(MUTATIONS if out else ("insert",)))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if how == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            out[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]) | st.integers(0, 255))
        elif how == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif how == "delete":
            del out[at : at + draw(st.integers(1, 12))]
        elif how == "duplicate":
            piece = out[at : at + draw(st.integers(1, 24))]
            where = draw(st.integers(0, len(out)))
            out[where:where] = piece
        else:
            del out[at:]
    return bytes(out)


def mutation_of(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return strategy.flatmap(mutated)


def raw_record(seq: int, rtype: int, payload: bytes) -> bytes:
    """A record framed by hand with a correct CRC, whatever its type and payload."""
    body = struct.pack("<IBB", seq, rtype, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


buffers = st.sampled_from([bytes, bytearray, memoryview])


def unless_refused(code: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """What `code` returns, or None for a ProtocolError; any other exception fails the test."""
    try:
        return code(*args, **kwargs)
    except p.ProtocolError as exc:
        assert str(exc), f"{code.__name__} raised a ProtocolError without a message"
        return None


def assert_genuine(data: bytes, records: list[p.Record]) -> int:
    """Each record re-encodes to exactly the bytes it was read from; returns where they end."""
    pos = 0
    for record in records:
        again = p.encode_record(record.seq, record.rtype, record.payload)
        assert data[pos : pos + len(again)] == again
        pos += len(again)
    return pos


# ---- round trips of valid values ------------------------------------------------------------------
@fuzz(400)
@given(typed_fields, seqs)
def test_every_record_type_round_trips_through_its_payload_and_its_frame(typed, seq):
    rtype, fields = typed
    payload = p.encode_payload(rtype, fields)
    assert p.decode_payload(rtype, payload) == fields
    framed = p.encode_record(seq, rtype, payload)
    record, fields_read, crc, end = p.decode_record_fields(framed)
    assert (record, fields_read, end) == (p.Record(seq, rtype, payload), fields, len(framed))
    assert crc == zlib.crc32(framed[:-4])
    assert p.decode_record(framed) == (record, end)


@fuzz(150)
@given(record_streams)
def test_a_stream_of_records_decodes_to_its_records_and_scans_whole(stream):
    data = b"".join(stream)
    records = p.decode_records(data)
    assert [p.encode_record(r.seq, r.rtype, r.payload) for r in records] == stream
    assert p.scan_valid_prefix(data) == (records, len(data))


@fuzz(150)
@given(info_values)
def test_info_round_trips(values):
    assert p.decode_info(p.encode_info(**values)) == values


@fuzz(200)
@given(commands)
def test_every_command_round_trips(command):
    cmd, values = command
    assert p.decode_command(p.encode_command(cmd, *values)) == (cmd, values)


@fuzz(150)
@given(results, batch_ends)
def test_results_and_batch_ends_round_trip(result, batch_end):
    assert p.decode_notification(p.encode_result(*result)) == (p.FRAME_RESULT, result)
    assert p.decode_notification(p.encode_batch_end(*batch_end)) == (p.FRAME_BATCH_END, batch_end)


@fuzz(150)
@given(record_streams, st.integers(p.MIN_MTU, 517), st.integers(0, U16))
def test_data_frames_carry_any_records_at_any_mtu(stream, mtu, first):
    frames = p.pack_data_frames(stream, mtu, first)
    for frame in frames:
        assert len(frame) <= mtu - 3
        assert p.decode_notification(frame)[0] in (p.FRAME_RECORDS, p.FRAME_PART, p.FRAME_PART_END)
    assert p.unpack_data_frames(frames, first) == stream
    assert p.unpack_data_frames(frames) == stream


@st.composite
def disagreeing_minutes(draw: st.DrawFn) -> dict[str, Any]:
    """Minutes whose fields need not agree: MINUTE2's encoder must refuse those it cannot write."""
    fields = draw(minute2_fields() | minute_fields())
    for name, nbins in (("lateral_bins_s", 5), ("flexion_bins_s", 20), ("inclination_bins_s", 20)):
        if draw(st.booleans()):
            fields[name] = [0] * nbins
    return fields


@fuzz(400)
@given(disagreeing_minutes())
def test_minute2_refuses_a_minute_or_writes_one_that_decodes_to_it(fields):
    payload = unless_refused(p.encode_minute2, **fields)
    if payload is not None:
        assert p.decode_payload(p.MINUTE2, payload) == fields
    assert p.decode_payload(p.MINUTE, p.encode_minute(**fields)) == fields


def test_minute2_refuses_an_empty_lateral_histogram_when_there_are_posture_seconds():
    """Found here: encode_minute2 wrote it, the decoder (rightly) refused it, so the device's
    log store failed to append the minute instead of writing it as MINUTE."""
    static = {"activity_s": [0, 60, 0, 0, 0], "worn_s": 60, "start_s": 1_767_225_600}
    fields = dict(
        static, lateral_bins_s=[0] * 5, flexion_bins_s=[60] + [0] * 19, inclination_bins_s=[60] + [0] * 19
    )
    with pytest.raises(p.ProtocolError, match="lateral_bins_s adds up to 0, not the 60 posture seconds"):
        p.encode_minute2(**fields)
    full = dict(fields, alert_count=0, longest_bout_s=0, mean_velocity_ddps=None, curvature_mean_ddeg=None)
    assert p.decode_payload(p.MINUTE, p.encode_minute(**fields)) == full


# ---- arbitrary bytes -------------------------------------------------------------------------------
@fuzz(400)
@given(st.binary(max_size=300), st.integers(0, 255), st.integers(-4, 320), buffers)
def test_arbitrary_bytes_make_every_decoder_return_or_raise_protocol_error(data, rtype, offset, buffer):
    view = buffer(data)
    records = unless_refused(p.decode_records, view)
    if records is not None:
        assert assert_genuine(data, records) == len(data)
    scanned, valid = p.scan_valid_prefix(view)
    assert assert_genuine(data, scanned) == valid
    unless_refused(p.decode_record, view, offset)
    unless_refused(p.decode_record_fields, view, offset)
    unless_refused(p.decode_payload, rtype, bytes(data))
    unless_refused(p.decode_info, view)
    unless_refused(p.decode_command, view)
    unless_refused(p.decode_notification, view)
    unless_refused(p.unpack_data_frames, [view])


@fuzz(300)
@given(st.lists(st.binary(max_size=40), max_size=6), st.none() | st.integers(0, U16))
def test_arbitrary_frame_sequences_unpack_or_raise_protocol_error(frames, first):
    records = unless_refused(p.unpack_data_frames, frames, first)
    for record in records or ():
        assert len(record) == 10 + record[5]


# ---- mutated valid encodings -------------------------------------------------------------------------
@fuzz(400)
@given(mutation_of(record_streams.map(b"".join)))
def test_a_mutated_record_stream_never_yields_a_record_that_was_not_framed(data):
    records = unless_refused(p.decode_records, data)
    if records is not None:
        assert assert_genuine(data, records) == len(data)
    scanned, valid = p.scan_valid_prefix(data)
    assert assert_genuine(data, scanned) == valid
    assert p.decode_records(data[:valid]) == scanned


@fuzz(500)
@given(typed_fields.flatmap(lambda tf: st.tuples(st.just(tf[0]), mutated(p.encode_payload(*tf)))), st.data())
def test_a_mutated_payload_behind_a_good_crc_is_refused_or_decodes_to_its_one_encoding(typed, data):
    rtype, payload = typed
    rtype = data.draw(st.just(rtype) | st.integers(0, 255), label="rtype")
    if len(payload) > 255:
        payload = payload[:255]
    fields = unless_refused(p.decode_payload, rtype, payload)
    if fields is not None:
        assert p.encode_payload(rtype, fields) == payload
    found = unless_refused(p.decode_record_fields, raw_record(7, rtype, payload))
    assert (found is None) == (fields is None)
    if found is not None:
        assert found[1] == fields


@fuzz(300)
@given(mutation_of(info_values.map(lambda v: p.encode_info(**v))))
def test_a_mutated_info_is_refused_or_re_encodes_exactly(data):
    values = unless_refused(p.decode_info, data)
    if values is not None:
        assert p.encode_info(**values) == data


@fuzz(400)
@given(mutation_of(commands.map(lambda c: p.encode_command(c[0], *c[1]))))
def test_a_mutated_command_or_config_chunk_is_refused_or_re_encodes_exactly(data):
    command = unless_refused(p.decode_command, data)
    if command is not None:
        assert p.encode_command(command[0], *command[1]) == data


notifications = st.one_of(
    results.map(lambda r: p.encode_result(*r)),
    batch_ends.map(lambda b: p.encode_batch_end(*b)),
    st.tuples(record_streams, st.integers(p.MIN_MTU, 247)).map(
        lambda s: b"".join(p.pack_data_frames(s[0], s[1])[:1]) or p.encode_result(0, 0)
    ),
)


@fuzz(300)
@given(mutation_of(notifications))
def test_a_mutated_notification_is_refused_or_re_encodes_exactly(data):
    notification = unless_refused(p.decode_notification, data)
    if notification is None:
        return
    ftype, values = notification
    if ftype == p.FRAME_RESULT and len(values[2]) <= 241:
        assert p.encode_result(*values) == data
    elif ftype == p.FRAME_BATCH_END:
        assert p.encode_batch_end(*values) == data
    elif ftype != p.FRAME_RESULT:
        assert struct.pack("<BH", ftype, values[0]) + values[1] == data


@fuzz(300)
@given(st.tuples(record_streams, st.integers(p.MIN_MTU, 80)), st.data())
def test_mutated_data_frames_unpack_to_whole_records_or_raise_protocol_error(packed, data):
    stream, mtu = packed
    frames = p.pack_data_frames(stream, mtu)
    if frames:
        index = data.draw(st.integers(0, len(frames) - 1), label="frame")
        frames[index] = data.draw(mutated(frames[index]), label="mutated frame")
        if data.draw(st.booleans(), label="reorder"):
            frames.reverse()
    records = unless_refused(p.unpack_data_frames, frames, 0)
    for record in records or ():
        assert len(record) == 10 + record[5]


# ---- the ingest path ---------------------------------------------------------------------------------
DEVICE = "W017"  # the world's device of worker wa, key KEY, seqs 1..60 stored
STORED = minutes_batch(1, JAN1 + 8 * 3600, 60)  # what the world stored: replays of it are duplicates


@pytest.fixture(scope="module", params=BACKENDS)
def ingest_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One world per database (SQLite; PostgreSQL when POSTURE_TEST_POSTGRES_URL is set).
    tmp: Path = tmp_path_factory.mktemp("fuzz-ingest")
    with database_url(request.param, tmp) as url:
        world = build_world(url, tmp)
        yield world
        world.client.close()
        world.engine.dispose()


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    """A batch a device could send: replays of what is stored, records with new seqs, or both."""
    stored = p.decode_records(STORED)
    picked = draw(st.lists(st.sampled_from(stored), max_size=4))
    replays = [p.encode_record(r.seq, r.rtype, r.payload) for r in picked]
    fresh = []
    for rtype, fields in draw(st.lists(typed_fields, max_size=4)):
        seq = draw(st.integers(1, 5000) | seqs)
        fresh.append(p.encode_record(seq, rtype, p.encode_payload(rtype, fields)))
    return b"".join(draw(st.permutations(replays + fresh)))


MAC_MODES = ("none", "signed", "stale", "garbage")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stored_records(world: World) -> dict[int, tuple[int, bytes]]:
    """seq -> (type, payload) of every record of DEVICE in the store."""
    query = (
        sa.select(Record.seq, Record.rtype, Record.payload)
        .join(Device, Device.id == Record.device_pk)
        .where(Device.device_id == DEVICE)
    )
    with world.engine.connect() as connection:
        return {seq: (rtype, bytes(payload)) for seq, rtype, payload in connection.execute(query)}


@fuzz(150)
@given(batches() | mutation_of(batches()), st.sampled_from(MAC_MODES), st.binary(max_size=40))
def test_a_mutated_batch_is_refused_with_a_reason_and_changes_nothing_or_is_stored_whole(
    ingest_world, frames, mac_mode, garbage
):
    world = ingest_world
    if mac_mode == "none":
        mac = None
    elif mac_mode == "signed":  # a device (or its key's holder) signed the mutated bytes
        mac = ingest.batch_mac(KEY, DEVICE, frames)
    elif mac_mode == "stale":  # signed before the bytes changed on their way
        mac = ingest.batch_mac(KEY, DEVICE, STORED[: len(frames)])
    else:
        mac = garbage or None
    before = database_rows(world.engine)
    answer = world.client.post(
        "/api/ingest",
        json={"device_id": DEVICE, "frames_b64": b64(frames), "batch_mac_b64": b64(mac) if mac else None},
        headers=world.headers("agent"),
    )
    event(f"answered {answer.status_code}")  # pytest --hypothesis-show-statistics shows the mix
    # Unsigned batches are refused too (POSTURE_REQUIRE_BATCH_HMAC defaults to true).
    signed = mac == ingest.batch_mac(KEY, DEVICE, frames)
    records = unless_refused(p.decode_records, frames)
    if not signed:
        assert answer.status_code == 403, answer.text
    elif records is None:
        assert answer.status_code == 422, answer.text
        assert "does not decode" in answer.json()["detail"]
    else:
        assert answer.status_code in (200, 409), answer.text
    if answer.status_code >= 400:
        assert isinstance(answer.json()["detail"], str) and answer.json()["detail"]
        assert database_rows(world.engine) == before, f"a {answer.status_code} changed the database"
    else:
        stored = stored_records(world)
        assert records is not None
        for record in records:
            assert stored[record.seq] == (record.rtype, record.payload)
        assert answer.json()["stored"] + answer.json()["duplicates"] == len(records)


upload_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
upload_bodies = st.one_of(
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    upload_values.map(lambda v: ("json", v)),
    st.fixed_dictionaries(
        {
            "device_id": st.sampled_from([DEVICE, "W018", "W999", "", "x" * 65]) | upload_values,
            "frames_b64": st.binary(max_size=120).map(b64)
            | st.text(max_size=40)
            | upload_values
            | mutation_of(st.just(b64(STORED[:58]).encode())).map(lambda b: b.decode("latin-1")),
        },
        optional={"batch_mac_b64": st.none() | st.text(max_size=60) | st.binary(max_size=40).map(b64)},
    ).map(lambda v: ("json", v)),
)


@fuzz(200)
@given(upload_bodies)
def test_a_malformed_upload_is_a_4xx_with_a_sentence_and_changes_nothing(ingest_world, upload):
    world = ingest_world
    kind, body = upload
    before = database_rows(world.engine)
    headers = world.headers("agent")
    # json.dumps writes NaN and Infinity as such, which is not JSON: one more malformed body.
    content = body if kind == "raw" else json.dumps(body).encode()
    answer = world.client.post(
        "/api/ingest", content=content, headers={**headers, "Content-Type": "application/json"}
    )
    event(f"answered {answer.status_code}")
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert isinstance(answer.json()["detail"], str) and answer.json()["detail"]
        assert database_rows(world.engine) == before, f"a {answer.status_code} changed the database"


@fuzz(150)
@given(batches() | mutation_of(batches()), st.booleans())
def test_ingest_batch_in_a_callers_transaction_refuses_before_its_first_write(ingest_world, frames, signed):
    """ingest_batch joins an open transaction; whatever it refuses, it has written nothing, so
    a caller that commits anyway stores nothing of the batch."""
    world = ingest_world
    before = database_rows(world.engine)
    mac = ingest.batch_mac(KEY, DEVICE, frames) if signed else None
    with session_factory(world.engine)() as session, session.begin():
        try:
            ingest.ingest_batch(session, DEVICE, frames, mac, recompute=False)
        except ingest.IngestError as exc:
            assert str(exc)
            assert not (session.new or session.dirty or session.deleted)
            refused = True
        else:
            refused = False
    event("refused" if refused else "stored")
    if refused:
        assert database_rows(world.engine) == before
    else:
        assert p.decode_records(frames) is not None
