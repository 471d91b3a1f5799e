"""The BLE contract (shared/protocol.py, second part): GATT UUIDs, the `info` payload,
commands, data frames, HMAC-SHA256 and the batch MAC, on CPython and the real MicroPython."""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
import uuid

from both import run_both
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p
from companion import ingest

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw_record(seq: int, rtype: int, payload: bytes) -> bytes:
    """A framed record (seq, type, len, payload, crc32) without checking the payload's layout:
    the frames carry records as opaque bytes."""
    head = struct.pack("<IBB", seq, rtype, len(payload)) + payload
    return head + struct.pack("<I", p.crc32(head))


def framed(rng: random.Random, payload_len: int) -> bytes:
    return raw_record(rng.randrange(2**32), rng.randrange(1, 255), rng.randbytes(payload_len))


def test_uuids_are_128_bit_and_distinct():
    uuids = [p.SERVICE_UUID, p.INFO_UUID, p.CONTROL_UUID, p.DATA_UUID]
    assert len({str(uuid.UUID(u)) for u in uuids}) == 4
    assert all(str(uuid.UUID(u)) == u for u in uuids)


def test_error_and_command_tables():
    assert p.ERROR_NAMES[p.OK] == "ok"
    for name in ("UNKNOWN_COMMAND", "MALFORMED", "NOT_AUTHENTICATED", "AUTH_FAILED", "BAD_SEQ", "BUSY"):
        assert p.ERROR_NAMES[getattr(p, "ERR_" + name)] == name.lower()
    assert p.ERROR_NAMES[p.ERR_CONFIG_INVALID] == "config_invalid"
    assert len(set(p.COMMAND_NAMES)) == len(p.COMMAND_NAMES) == 8


# ---- HMAC -------------------------------------------------------------------------------------
def test_hmac_matches_cpython_hmac():
    rng = random.Random(1)
    for key_len in (0, 1, 31, 32, 63, 64, 65, 100, 200):
        for msg_len in (0, 1, 55, 56, 64, 119, 1000):
            key = rng.randbytes(key_len)
            msg = rng.randbytes(msg_len)
            assert p.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_batch_mac_equals_ingest_batch_mac():
    rng = random.Random(2)
    for _ in range(50):
        key = rng.randbytes(rng.choice((16, 32, 64, 80)))
        device_id = "".join(rng.choice("abcdefXYZ0123-_é") for _ in range(rng.randint(1, 40)))
        frames = b"".join(framed(rng, 10) for _ in range(rng.randint(0, 20)))
        assert p.batch_mac(key, device_id, frames) == ingest.batch_mac(key, device_id, frames)
    assert p.BATCH_MAC_CONTEXT == ingest.BATCH_MAC_CONTEXT


def test_auth_proofs_differ_and_digest_equal():
    key, dn, hn = b"k" * 32, b"d" * 16, b"h" * 16
    host = p.host_auth_proof(key, dn, hn)
    assert host == hmac.new(key, b"posture/auth/v1\x00" + dn + hn, hashlib.sha256).digest()
    dev = p.device_auth_proof(key, dn, hn)
    assert dev != host and len(dev) == 32
    assert (
        p.digest_equal(host, host) and not p.digest_equal(host, dev) and not p.digest_equal(host, host[:31])
    )


# ---- frames -----------------------------------------------------------------------------------
def test_frames_fit_mtu_and_reassemble():
    rng = random.Random(3)
    for mtu in range(23, 248):
        records = [framed(rng, rng.choice((6, 10, 12, 19, 55, 65, 255))) for _ in range(rng.randint(0, 25))]
        frames = p.pack_data_frames(records, mtu, first_frame_seq=65530)
        assert all(len(f) <= mtu - 3 for f in frames)
        assert p.unpack_data_frames(frames, first_frame_seq=65530) == records
        if mtu >= 10 + 255 + 6:
            assert all(f[0] == p.FRAME_RECORDS for f in frames)
        # a lost frame is noticed (a lost last frame by BATCH_END's frame_seq, which follows it)
        for lost in range(len(frames) - 1):
            rest = frames[:lost] + frames[lost + 1 :]
            assert_protocol_error(lambda r=rest: p.unpack_data_frames(r, first_frame_seq=65530))


def test_small_records_are_never_split_at_mtu_247():
    rng = random.Random(4)
    records = [framed(rng, rng.randint(0, 65)) for _ in range(200)]
    frames = p.pack_data_frames(records, 247)
    assert {f[0] for f in frames} == {p.FRAME_RECORDS}
    assert b"".join(f[3:] for f in frames) == b"".join(records)


def test_batch_end_and_result_round_trip():
    mac = bytes(range(32))
    frame = p.encode_batch_end(7, 12, 1, mac)
    assert len(frame) <= p.MIN_SESSION_MTU - 3
    assert p.decode_notification(frame) == (p.FRAME_BATCH_END, (7, 12, 1, mac))
    result = p.encode_result(p.CMD_HELLO, p.OK, mac)
    assert len(result) <= p.MIN_SESSION_MTU - 3
    assert p.decode_notification(result) == (p.FRAME_RESULT, (p.CMD_HELLO, p.OK, mac))


def assert_protocol_error(fn):
    try:
        fn()
    except p.ProtocolError:
        return
    raise AssertionError("no ProtocolError")


# ---- fuzz -------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=80))
def test_decoding_anything_raises_only_protocol_error(data):
    for fn in (p.decode_command, p.decode_notification, p.decode_info):
        try:
            fn(data)
        except p.ProtocolError:
            pass
    try:
        p.unpack_data_frames([data])
    except p.ProtocolError:
        pass


@FUZZ
@given(st.sampled_from(sorted(p.COMMAND_NAMES)), st.binary(max_size=60))
def test_commands_with_a_known_code_raise_only_protocol_error(cmd, body):
    try:
        got = p.decode_command(bytes([cmd]) + body)
    except p.UnknownCommand:
        raise AssertionError("known command reported unknown") from None
    except p.ProtocolError:
        return
    assert p.encode_command(got[0], *got[1]) == bytes([cmd]) + body


# ---- both interpreters --------------------------------------------------------------------------
BOTH = r"""
import protocol as p

def show(x):
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).hex()
    if isinstance(x, (tuple, list)):
        return "(" + ",".join(show(v) for v in x) + ")"
    if isinstance(x, dict):
        return "{" + ",".join(k + ":" + show(x[k]) for k in sorted(x)) + "}"
    return str(x)

# HMAC on keys/messages of many lengths
for n in (0, 1, 32, 63, 64, 65, 130):
    key = bytes((i * 7 + n) & 255 for i in range(n))
    msg = bytes((i * 13) & 255 for i in range(n * 3 + 1))
    print("hmac", n, p.hmac_sha256(key, msg).hex())
print("batch", p.batch_mac(b"key", "dev-01", b"\x01\x02").hex())
print("auth", p.host_auth_proof(b"k", bytes(16), b"\x01" * 16).hex(), p.device_auth_proof(b"k", bytes(16), b"\x01" * 16).hex())

# every command round trip
cmds = [
    (p.CMD_HELLO, (bytes(range(16)), bytes(range(32)))),
    (p.CMD_TIME_SET, (1764000000,)),
    (p.CMD_FETCH, (4294967295, 16)),
    (p.CMD_ACK, (12345,)),
    (p.CMD_CONFIG_SET, (0, 3, b'{"')),
    (p.CMD_CONFIG_SET, (200, 201, b"}")),
    (p.CMD_CALIBRATE, ()),
    (p.CMD_BUZZ_TEST, ()),
    (p.CMD_REBOOT, ()),
]
for cmd, values in cmds:
    raw = p.encode_command(cmd, *values)
    back = p.decode_command(raw)
    print(p.COMMAND_NAMES[cmd], raw.hex(), show(back), back[0] == cmd and tuple(back[1]) == values)

info = p.encode_info(p.PROTOCOL_VERSION, (1, 2, 3), "posture-0007", 100, 250, 99, 87, 1764000000, 0xDEADBEEF, bytes(range(16)))
print("info", info.hex(), show(p.decode_info(info)))
info = p.encode_info(2, (0, 0, 0), "x", 1, 0, 0, p.BATTERY_UNKNOWN, 0, 0, bytes(16))
print("info", info.hex(), show(p.decode_info(info)))

# frames
import struct
def raw_record(seq, rtype, payload):
    head = struct.pack("<IBB", seq, rtype, len(payload)) + payload
    return head + struct.pack("<I", p.crc32(head))
recs = [raw_record(i, p.BOUT, bytes(10 + (i % 3))) for i in range(30)]
recs.append(raw_record(99, p.BOUT, bytes(200)))
for mtu in (23, 40, 100, 247):
    frames = p.pack_data_frames(recs, mtu, 65534)
    print("frames", mtu, len(frames), max(len(f) for f in frames) <= mtu - 3, p.unpack_data_frames(frames, 65534) == recs)
print("result", p.encode_result(p.CMD_FETCH, p.ERR_BAD_SEQ, b"\x05").hex())
print("end", p.encode_batch_end(3, 30, 0, bytes(32)).hex())

# mutated commands: only ProtocolError, never anything else
bad = [b"", b"\x00", b"\xff", b"\x09", b"\x01", b"\x01" + bytes(47), b"\x01" + bytes(49), b"\x02\x01\x02\x03",
       b"\x02" + bytes(5), b"\x03" + bytes(6), b"\x03" + bytes(4) + b"\x00\x00", b"\x04", b"\x05", b"\x05\x00\x00\x00\x00",
       b"\x05\x00\x00\x00\x00x", b"\x05\x05\x00\x05\x00x", b"\x05\x00\x00\x01\x10x", b"\x06\x00", b"\x07\x07", b"\x08" * 3]
for raw in bad:
    try:
        p.decode_command(raw)
        print("accepted", raw.hex())
    except p.UnknownCommand:
        print("unknown", raw.hex())
    except p.ProtocolError:
        print("malformed", raw.hex())
for raw in (b"", b"\x01", b"\x02\x00\x00", b"\x03\x00\x00\x0a", b"\x05" + bytes(10), b"\x09\x00"):
    try:
        p.decode_notification(raw)
        print("n-accepted", raw.hex())
    except p.ProtocolError:
        print("n-refused", raw.hex())
for raw in (b"", bytes(40), b"\x02\x00\x00\x00\x02xx" + bytes(37)):
    try:
        p.decode_info(raw)
        print("i-accepted")
    except p.ProtocolError:
        print("i-refused")
"""


def test_round_trips_identical_on_both_interpreters(tmp_path):
    out = run_both(BOTH, tmp_path)
    lines = out.splitlines()
    assert "accepted" not in {line.split()[0] for line in lines}
    assert all(line.endswith("True") for line in lines if line.split()[0] in p.COMMAND_NAMES.values())
    assert all(line.endswith("True True") for line in lines if line.startswith("frames"))
    key = bytes((i * 7 + 65) & 255 for i in range(65))
    msg = bytes((i * 13) & 255 for i in range(65 * 3 + 1))
    assert f"hmac 65 {hmac.new(key, msg, hashlib.sha256).hexdigest()}" in lines
    assert "batch " + ingest.batch_mac(b"key", "dev-01", b"\x01\x02").hex() in lines
    assert sum(line.startswith("unknown") for line in lines) == 3
