"""The firmware's sync server (device/lib/blesync.py) in the real micropython, at the stack's edge.

A script of control writes is delivered the way the BLE stack delivers them (the emulated
``bluetooth`` module's IRQ path: central connected, MTU exchanged, a write to `control`), and
every notification the firmware sends back is captured.  The log is a real LogStore on a scratch
folder.  End-to-end sessions over the bumble link with the production sync agent are in
tests/test_sync_e2e.py; this file pins the server's rules down one by one, quickly.
"""

from __future__ import annotations

import json
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol

KEY = bytes(range(1, 33))
CONN = 7

HARNESS = r"""
import asyncio, json, struct, sys
import bluetooth, protocol, logstore, eventlog, blesync

KEY = bytes(range(1, 33))
CONN = 7
SCRIPT = json.loads(open("script.json").read())


class Device:
    # What main.Device gives the sync server, reduced to recording what was asked.
    def __init__(self):
        self.asked = []
        self.crc = 1111
    def battery_percent(self):
        return 77
    def config_crc(self):
        return self.crc
    def apply_config(self, text):
        self.asked.append("config:" + text.hex())
        try:
            d = json.loads(text)
        except ValueError:
            return protocol.ERR_CONFIG_INVALID, self.crc
        if not isinstance(d, dict) or d.get("alert_hold_s", 30) < 5:
            return protocol.ERR_CONFIG_INVALID, self.crc
        self.crc = protocol.crc32(text)
        return protocol.OK, self.crc
    def calibrate(self):
        if SCRIPT.get("calibrate_fails"):
            raise OSError(5)  # EIO: the flash write of the new neutral failed
        self.asked.append("calibrate")
    def buzz_test(self):
        self.asked.append("buzz")
    def reboot(self):
        self.asked.append("reboot")
    def session_done(self):
        self.asked.append("session_done")


log = logstore.LogStore("log", segment_bytes=256)
events = eventlog.EventLog(log, lambda: 1767600000)
for i in range(SCRIPT["records"]):
    log.append(protocol.BATTERY, protocol.encode_event(protocol.BATTERY, 1767600000 + i, 3900, 80, 0))
clock = [1767600000]
def set_now(t):
    old = clock[0]
    clock[0] = t
    return old
dev = Device()
sync = blesync.BleSync("W042", KEY if SCRIPT["key"] else None, log, events, dev, (1, 2, 3), lambda: clock[0], set_now)

ble = bluetooth.BLE()
sent = []
def capture(op, payload=b""):
    if op == bluetooth.OP_NOTIFY:
        sent.append(bytes(payload[4:]).hex())
    elif op == bluetooth.OP_DISCONNECT:
        sent.append("disconnect")
ble._send = capture
sync.open()
h_control = sync._h_control

def irq(event, payload):
    ble._deliver(bluetooth.EV_IRQ, bytes([event]) + payload)

async def main():
    asyncio.create_task(sync.run())
    irq(1, struct.pack("<HB", CONN, 0) + bytes(6))
    irq(21, struct.pack("<HH", CONN, SCRIPT["mtu"]))
    await asyncio.sleep_ms(10)
    for step in SCRIPT["steps"]:
        info = protocol.decode_info(ble._attrs[sync._h_info].value)
        if step == "hello":
            hn = bytes(16)
            data = protocol.encode_command(protocol.CMD_HELLO, hn, protocol.host_auth_proof(KEY, info["nonce"], hn))
        elif step == "bad-hello":
            hn = bytes(16)
            data = protocol.encode_command(protocol.CMD_HELLO, hn, protocol.host_auth_proof(b"x" * 32, info["nonce"], hn))
        elif step == "disconnect" or step == "connect":
            if step == "disconnect":
                irq(2, struct.pack("<HB", CONN, 0) + bytes(6))
            else:
                irq(1, struct.pack("<HB", CONN, 0) + bytes(6))
                irq(21, struct.pack("<HH", CONN, SCRIPT["mtu"]))
            await asyncio.sleep_ms(50)
            print(json.dumps({"step": step, "sent": sent, "info": info["acked_seq"]}))
            del sent[:]
            continue
        else:
            data = bytes.fromhex(step)
        irq(3, struct.pack("<HH", CONN, h_control) + data)
        await asyncio.sleep_ms(500)
        print(json.dumps({"step": step, "sent": sent, "nonce": info["nonce"].hex(), "acked": log.acked,
                          "first": log.first_seq(), "last": log.last_seq(), "asked": dev.asked}))
        del sent[:]
        dev.asked = []

asyncio.run(main())
print(json.dumps({"done": True, "acked": log.acked, "stored": [r.seq for r in log.records()]}))
"""


def run_script(micropython, tmp_path, steps, *, records=40, mtu=247, key=True, **extra):  # type: ignore[no-untyped-def]
    script = {"steps": steps, "records": records, "mtu": mtu, "key": key, **extra}
    (tmp_path / "script.json").write_text(json.dumps(script))
    from emulator.micropython_cmd import run_micropython

    out = run_micropython(HARNESS, cwd=tmp_path, timeout_s=120)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]


def cmd(c: int, *values: object) -> str:
    return protocol.encode_command(c, *values).hex()


def results(step: dict) -> list[tuple[int, int, bytes]]:
    out = []
    for h in step["sent"]:
        if h == "disconnect":
            continue
        ftype, v = protocol.decode_notification(bytes.fromhex(h))
        if ftype == protocol.FRAME_RESULT:
            out.append(v)
    return out


def test_nothing_is_sent_or_deleted_before_hello(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = [cmd(protocol.CMD_FETCH, 1, 8), cmd(protocol.CMD_ACK, 40), cmd(protocol.CMD_CALIBRATE)]
    out, end = run_script(micropython, tmp_path, steps)
    assert [results(s) for s in out] == [
        [(protocol.CMD_FETCH, protocol.ERR_NOT_AUTHENTICATED, b"")],
        [(protocol.CMD_ACK, protocol.ERR_NOT_AUTHENTICATED, b"")],
        [(protocol.CMD_CALIBRATE, protocol.ERR_NOT_AUTHENTICATED, b"")],
    ]
    assert all(s["asked"] == [] for s in out)
    assert end["acked"] == 0 and end["stored"] == list(range(1, 41))


def test_a_wrong_key_is_refused_the_link_dropped_and_the_nonce_never_reused(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, end = run_script(micropython, tmp_path, ["bad-hello", cmd(protocol.CMD_FETCH, 1, 8), "hello"])
    assert results(out[0]) == [(protocol.CMD_HELLO, protocol.ERR_AUTH_FAILED, b"")]
    assert "disconnect" in out[0]["sent"]
    assert results(out[1]) == [(protocol.CMD_FETCH, protocol.ERR_NOT_AUTHENTICATED, b"")]
    assert out[0]["nonce"] != out[1]["nonce"]  # a fresh nonce after every HELLO attempt
    assert end["acked"] == 0 and len(end["stored"]) == 40


def test_a_device_without_a_key_opens_no_session(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, _end = run_script(micropython, tmp_path, ["hello"], key=False)
    assert results(out[0]) == [(protocol.CMD_HELLO, protocol.ERR_AUTH_FAILED, b"")]


def test_the_device_proves_the_key_back_to_the_host(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, _end = run_script(micropython, tmp_path, ["hello"])
    ((c, err, proof),) = results(out[0])
    assert (c, err) == (protocol.CMD_HELLO, protocol.OK)
    assert proof == protocol.device_auth_proof(KEY, bytes.fromhex(out[0]["nonce"]), bytes(16))


def unpack_batch(step: dict) -> tuple[list[bytes], tuple[int, int, int, bytes], int]:
    frames, end, biggest = [], None, 0
    for h in step["sent"]:
        data = bytes.fromhex(h)
        biggest = max(biggest, len(data))
        ftype, v = protocol.decode_notification(data)
        if ftype == protocol.FRAME_BATCH_END:
            end = v
        elif ftype != protocol.FRAME_RESULT:
            frames.append(data)
    assert end is not None
    return protocol.unpack_data_frames(frames, 0), end, biggest


def test_fetch_streams_mtu_sized_frames_then_a_signed_batch_end(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, _end = run_script(micropython, tmp_path, ["hello", cmd(protocol.CMD_FETCH, 1, 2)], mtu=64)
    records, (frame_seq, count, more, mac), biggest = unpack_batch(out[1])
    assert biggest <= 64 - 3
    assert frame_seq == 2 and count == len(records) and more == 1  # the window was the limit
    assert [protocol.decode_record(r)[0].seq for r in records] == list(range(1, count + 1))
    assert mac == protocol.batch_mac(KEY, "W042", b"".join(records))


def test_only_what_was_sent_can_be_acknowledged_and_ack_frees_storage(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = ["hello", cmd(protocol.CMD_ACK, 5), cmd(protocol.CMD_FETCH, 1, 64), cmd(protocol.CMD_ACK, 40), cmd(protocol.CMD_ACK, 41)]
    out, end = run_script(micropython, tmp_path, steps)
    assert results(out[1]) == [(protocol.CMD_ACK, protocol.ERR_BAD_SEQ, b"")]
    records, (_fs, count, more, _mac), _b = unpack_batch(out[2])
    assert count == 40 and more == 0
    assert results(out[3]) == [(protocol.CMD_ACK, protocol.OK, b"")]
    assert results(out[4]) == [(protocol.CMD_ACK, protocol.ERR_BAD_SEQ, b"")]
    assert end["acked"] == 40
    assert not end["stored"] or end["stored"][0] > 1  # acknowledged segments are gone


def test_an_interrupted_session_resumes_from_the_last_ack(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = ["hello", cmd(protocol.CMD_FETCH, 1, 3), cmd(protocol.CMD_ACK, 10), "disconnect",
             "connect", cmd(protocol.CMD_FETCH, 11, 64), "hello", cmd(protocol.CMD_FETCH, 11, 64)]
    out, end = run_script(micropython, tmp_path, steps, records=60)
    assert results(out[5]) == [(protocol.CMD_FETCH, protocol.ERR_NOT_AUTHENTICATED, b"")]  # a new link: HELLO again
    records, (_fs, _count, _more, _mac), _b = unpack_batch(out[7])
    assert protocol.decode_record(records[0])[0].seq == 11
    assert end["acked"] == 10


def test_settings_arrive_in_chunks_and_apply_all_or_nothing(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = json.dumps({"alert_hold_s": 45, "alert_threshold_deg": 25}).encode()
    bad = json.dumps({"alert_hold_s": 1}).encode()
    steps = [
        "hello",
        cmd(protocol.CMD_CONFIG_SET, 0, len(good), good[:20]),
        cmd(protocol.CMD_CONFIG_SET, 20, len(good), good[20:]),
        cmd(protocol.CMD_CONFIG_SET, 0, len(bad), bad),
        cmd(protocol.CMD_CONFIG_SET, 5, len(good), good[5:]),  # a chunk out of order
    ]
    out, _end = run_script(micropython, tmp_path, steps)
    assert results(out[1]) == [(protocol.CMD_CONFIG_SET, protocol.OK, b"")]
    assert out[1]["asked"] == []  # nothing applied before the document is complete
    (c, err, detail) = results(out[2])[0]
    assert err == protocol.OK and struct.unpack("<I", detail)[0] == protocol.crc32(good)
    assert out[2]["asked"] == ["config:" + good.hex()]
    assert results(out[3])[0][1] == protocol.ERR_CONFIG_INVALID
    assert results(out[4])[0][1] == protocol.ERR_MALFORMED


def test_calibrate_buzz_and_reboot_reach_the_device(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = ["hello", cmd(protocol.CMD_CALIBRATE), cmd(protocol.CMD_BUZZ_TEST), cmd(protocol.CMD_REBOOT)]
    out, _end = run_script(micropython, tmp_path, steps)
    assert [s["asked"] for s in out[1:]] == [["calibrate"], ["buzz"], ["reboot"]]
    assert all(results(s)[0][1] == protocol.OK for s in out[1:])


def test_a_failing_device_action_is_reported_and_the_session_goes_on(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = ["hello", cmd(protocol.CMD_CALIBRATE), cmd(protocol.CMD_FETCH, 1, 4)]
    out, _end = run_script(micropython, tmp_path, steps, calibrate_fails=True)
    assert results(out[1]) == [(protocol.CMD_CALIBRATE, protocol.ERR_INTERNAL, b"")]
    assert results(out[2])[0] == (protocol.CMD_FETCH, protocol.OK, b"")


def test_a_small_mtu_gets_a_clear_error_not_a_truncated_proof(micropython, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, _end = run_script(micropython, tmp_path, ["hello"], mtu=23)
    assert results(out[0]) == [(protocol.CMD_HELLO, protocol.ERR_MTU_TOO_SMALL, b"")]


# Random and mutated control writes: whatever arrives, the server answers (or ignores) and lives
# on; nothing is deleted without a valid ACK of sent records.
VALID = [
    cmd(protocol.CMD_TIME_SET, 1767700000),
    cmd(protocol.CMD_FETCH, 1, 4),
    cmd(protocol.CMD_ACK, 3),
    cmd(protocol.CMD_CONFIG_SET, 0, 4, b"{}{}"),
    cmd(protocol.CMD_CALIBRATE),
]


def mutate(data: bytes, flips: list[tuple[int, int]]) -> str:
    b = bytearray(data)
    for pos, value in flips:
        if b:
            b[pos % len(b)] = value
    return bytes(b).hex()


command_bytes = st.one_of(
    st.binary(min_size=0, max_size=260).map(lambda b: b.hex()),
    st.builds(
        mutate,
        st.sampled_from([bytes.fromhex(v) for v in VALID]),
        st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3),
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(command_bytes, max_size=6), after=st.lists(command_bytes, max_size=6))
def test_random_and_mutated_commands_never_crash_the_device(micropython, tmp_path, before, after) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / os.urandom(4).hex()
    work.mkdir()
    steps = [s[: 2 * 244] for s in before] + ["hello"] + [s[: 2 * 244] for s in after] + [cmd(protocol.CMD_FETCH, 1, 64)]
    out, end = run_script(micropython, work, steps)
    assert len(out) == len(steps)  # it answered every write and ran to the end
    for step in out:
        for _cmd, err, _detail in results(step):
            assert err in range(len(protocol.ERROR_NAMES))
    # The final FETCH still works: the session survived whatever came before.
    assert results(out[-1])[0] == (protocol.CMD_FETCH, protocol.OK, b"")
    # Nothing was deleted that had not been sent: acked <= the highest seq any batch carried.
    sent_seqs = [0]
    for step in out[:-1]:
        for h in step["sent"]:
            data = bytes.fromhex(h) if h != "disconnect" else b""
            if data and data[0] == protocol.FRAME_RECORDS:
                sent_seqs += [protocol.decode_record(r)[0].seq for r in protocol.unpack_data_frames([data])]
    assert end["acked"] <= max(sent_seqs)
