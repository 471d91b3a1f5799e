"""The emulated radio end to end: firmware-like MicroPython code in the real ``micropython``
process, its ``bluetooth.BLE`` forwarded to a bumble peripheral, and a host central using
bleak through the bumble backend, on one virtual link."""

from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

pytest.importorskip("bumble")
pytest.importorskip("bleak")

from bleak import BleakClient  # noqa: E402

from companion.ble_bumble import BumbleClientBackend  # noqa: E402
from emulator.micropython_cmd import default_search_path, micropython_path  # noqa: E402
from emulator.radio import Central, Radio  # noqa: E402

SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
READ_CHAR = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
WRITE_CHAR = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
NOTIFY_CHAR = "6e400004-b5a3-f393-e0a9-e50e24dcca9e"

# A tiny firmware: one service with a read, a write (200-byte buffer) and a notify
# characteristic; it answers a 150-byte command with a 244-byte notification.
BOARD = textwrap.dedent(
    """
    import asyncio
    import bluetooth
    import vboard

    ble = bluetooth.BLE()
    ble.active(True)
    ble.config(mtu=247, gap_name="posture-test")
    SERVICE = bluetooth.UUID("{service}")
    READ = (bluetooth.UUID("{read}"), bluetooth.FLAG_READ)
    WRITE = (bluetooth.UUID("{write}"), bluetooth.FLAG_WRITE)
    NOTIFY = (bluetooth.UUID("{notify}"), bluetooth.FLAG_NOTIFY)
    ((h_read, h_write, h_notify),) = ble.gatts_register_services(((SERVICE, (READ, WRITE, NOTIFY)),))
    ble.gatts_write(h_read, b"posture board v1")
    ble.gatts_set_buffer(h_write, 200)
    print("handles", h_read, h_write, h_notify)

    events = []
    flag = asyncio.ThreadSafeFlag()

    def irq(event, data):
        events.append((event, data))
        flag.set()

    ble.irq(irq)
    name = b"posture-test"
    adv = bytes([2, 1, 6, len(name) + 1, 9]) + name
    ble.gap_advertise(100000, adv)
    print("advertising")

    async def main():
        conn = None
        while True:
            await flag.wait()
            while events:
                event, data = events.pop(0)
                if event == 1:
                    conn = data[0]
                    print("connect", conn, data[1], len(data[2]))
                elif event == 21:
                    print("mtu", data[1])
                elif event == 3:
                    value = ble.gatts_read(data[1])
                    ok = value == bytes([i & 0xFF for i in range(len(value))])
                    print("write", data[1] == h_write, len(value), ok)
                    if len(value) == 150:
                        ble.gatts_notify(conn, h_notify, bytes([(255 - i) & 0xFF for i in range(244)]))
                elif event == 2:
                    print("disconnect", data[0] == conn)
                    print("radio", vboard.radio_us("active") > 0, vboard.radio_us("connected") > 0,
                          vboard.stats["radio"]["advertising"][-1][1] >= 0, len(vboard.stats["radio"]["connected"]))
                    return

    asyncio.run(main())
    print("done")
    """.replace("{service}", SERVICE)
    .replace("{read}", READ_CHAR)
    .replace("{write}", WRITE_CHAR)
    .replace("{notify}", NOTIFY_CHAR)
)


@dataclass
class Board:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def expect(self, prefix: str, timeout_s: float = 10) -> str:
        """The next console line starting with ``prefix`` (earlier lines are kept)."""
        assert self.proc.stdout is not None

        async def read() -> str:
            assert self.proc.stdout is not None
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = b""
                    if self.proc.stderr is not None:
                        err = await self.proc.stderr.read()
                    raise AssertionError(
                        f"the board stopped before printing {prefix!r}; console: {self.lines}\n{err.decode()}"
                    )
                line = raw.decode().rstrip()
                self.lines.append(line)
                if line.startswith(prefix):
                    return line

        return await asyncio.wait_for(read(), timeout_s)


@asynccontextmanager
async def emulated_link(code: str) -> AsyncIterator[tuple[Radio, Central, Board]]:
    radio = Radio()
    port = await radio.start()
    central = Central(radio)
    await central.start()
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(default_search_path())
    env["POSTURE_RADIO"] = str(port)
    proc = await asyncio.create_subprocess_exec(
        micropython_path(),
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield radio, central, Board(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await central.close()
        await radio.close()


async def _session() -> tuple[list[str], dict[str, object]]:
    seen: dict[str, object] = {}
    async with emulated_link(BOARD) as (radio, central, board):
        handles = (await board.expect("handles")).split()[1:]
        await board.expect("advertising")
        await asyncio.wait_for(radio.board_connected.wait(), 5)
        notified: asyncio.Queue[bytes] = asyncio.Queue()
        async with BleakClient(radio.address, backend=BumbleClientBackend, device=central.device) as client:
            seen["mtu"] = client.mtu_size
            await board.expect("connect")
            await board.expect("mtu")
            seen["info"] = bytes(await client.read_gatt_char(READ_CHAR))
            await client.start_notify(NOTIFY_CHAR, lambda _c, data: notified.put_nowait(bytes(data)))
            await client.write_gatt_char(WRITE_CHAR, bytes(range(150)), response=True)
            seen["write"] = await board.expect("write")
            seen["notification"] = await asyncio.wait_for(notified.get(), 10)
            # Longer than the 200-byte buffer the firmware set: the stack keeps the first 200.
            await client.write_gatt_char(WRITE_CHAR, bytes([i & 0xFF for i in range(230)]), response=True)
            seen["long_write"] = await board.expect("write")
            # A central reading the write characteristic sees what the board's stack stored.
            char = client.services.get_characteristic(WRITE_CHAR)
            assert char is not None
            seen["write_handle"] = char.handle
            seen["firmware_write_handle"] = int(handles[1])
        seen["disconnect"] = await board.expect("disconnect")
        seen["radio"] = await board.expect("radio")
        await board.expect("done")
        return board.lines, seen


def test_a_bleak_central_talks_to_micropython_firmware_over_the_emulated_radio() -> None:
    lines, seen = asyncio.run(asyncio.wait_for(_session(), 50))
    assert seen["mtu"] == 247
    assert any(line.startswith("mtu 247") for line in lines)
    connect = next(line for line in lines if line.startswith("connect"))
    assert connect.split()[3] == "6"  # a 6-byte peer address
    assert seen["info"] == b"posture board v1"
    assert seen["write"] == "write True 150 True"
    assert seen["notification"] == bytes([(255 - i) & 0xFF for i in range(244)])
    assert seen["long_write"] == "write True 200 True"
    assert seen["firmware_write_handle"] == seen["write_handle"]  # the firmware's handles are ATT handles
    assert seen["disconnect"] == "disconnect True"
    assert seen["radio"] == "radio True True True 1"


# Connected, the firmware keeps a 20 ms timer running and hangs up after 25 ticks.
PACED_BOARD = textwrap.dedent(
    """
    import asyncio
    import bluetooth
    import vboard

    ble = bluetooth.BLE()
    ble.active(True)
    ble.gatts_register_services(((bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), bluetooth.FLAG_READ),)),))
    flag = asyncio.ThreadSafeFlag()
    events = []

    def irq(event, data):
        events.append((event, data))
        flag.set()

    ble.irq(irq)
    ble.gap_advertise(100000, b"\\x02\\x01\\x06")
    print("advertising")

    async def ticker(conn):
        for _ in range(25):
            await asyncio.sleep_ms(20)
        print("hang up", ble.gap_disconnect(conn))

    async def main():
        while True:
            await flag.wait()
            while events:
                event, data = events.pop(0)
                if event == 1:
                    asyncio.create_task(ticker(data[0]))
                elif event == 2:
                    print("connected_ms", vboard.radio_us("connected") // 1000)
                    return

    asyncio.run(main())
    """
)


async def _paced_session() -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    async with emulated_link(PACED_BOARD) as (radio, central, board):
        await board.expect("advertising")
        hung_up = asyncio.Event()
        client = BleakClient(
            radio.address,
            backend=BumbleClientBackend,
            device=central.device,
            disconnected_callback=lambda _c: hung_up.set(),
        )
        await client.connect()
        start = loop.time()
        await asyncio.wait_for(hung_up.wait(), 10)
        real_s = loop.time() - start
        connected_ms = int((await board.expect("connected_ms")).split()[1])
        assert not client.is_connected
        return real_s, connected_ms


def test_while_a_central_is_connected_the_virtual_clock_does_not_run_ahead_of_real_time() -> None:
    real_s, connected_ms = asyncio.run(asyncio.wait_for(_paced_session(), 30))
    assert 500 <= connected_ms < 1500  # 25 timer ticks of 20 ms, and not hours
    assert real_s >= 0.4  # the ticks took real time: the central's timeouts hold


def test_the_radio_works_without_a_peer_and_truncates_like_micropython(micropython) -> None:  # type: ignore[no-untyped-def]
    out = micropython(
        textwrap.dedent(
            """
            import bluetooth
            ble = bluetooth.BLE()
            try:
                ble.gatts_register_services(())
            except OSError as e:
                print("inactive", e.args[0])
            ble.active(True)
            print(ble.active(), bluetooth.FLAG_READ, bluetooth.FLAG_WRITE, bluetooth.FLAG_NOTIFY)
            u = bluetooth.UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")
            print(u == bluetooth.UUID("6e400001-b5a3-f393-e0a9-e50e24dcca9e"), bluetooth.UUID(0x180F))
            ((h1, h2),) = ble.gatts_register_services(
                ((u, ((bluetooth.UUID(0x2A19), bluetooth.FLAG_READ), (u, bluetooth.FLAG_WRITE))),))
            print(h2 > h1 > 0)
            ble.gatts_write(h1, b"x" * 30)
            print(len(ble.gatts_read(h1)))
            ble.gatts_set_buffer(h2, 8)
            ble.gatts_write(h2, b"abc")
            print(ble.gatts_read(h2))
            try:
                ble.gatts_notify(0, h1)
            except OSError as e:
                print("not connected", e.args[0])
            ble.gap_advertise(100000, b"\\x02\\x01\\x06")
            ble.gap_advertise(None)
            import vboard
            print(len(vboard.stats["radio"]["advertising"]), vboard.stats["radio"]["advertising"][0][1] >= 0)
            """
        )
    )
    assert out.split("\n")[:8] == [
        "inactive 1",
        "True 2 8 16",
        "True 0x180f",
        "True",
        "30",
        "b'abc'",
        "not connected 107",
        "1 True",
    ]


# The board registers its service but never advertises; it reports every radio event it hears.
SILENT_BOARD = textwrap.dedent(
    """
    import bluetooth
    import time

    ble = bluetooth.BLE()
    ble.active(True)
    ble.gatts_register_services(((bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), bluetooth.FLAG_READ),)),))
    events = []
    ble.irq(lambda event, data: events.append(event))
    print("silent")
    while True:
        time.sleep_ms(50)
        if events:
            print("event", events.pop(0))
    """
)


async def _connect_to_a_silent_board() -> tuple[bool, list[str]]:
    async with emulated_link(SILENT_BOARD) as (radio, central, board):
        await board.expect("silent")
        await asyncio.wait_for(radio.board_connected.wait(), 5)
        client = BleakClient(radio.address, backend=BumbleClientBackend, device=central.device, timeout=3)
        connected = False
        try:
            await client.connect()
            await asyncio.sleep(0.5)
            connected = client.is_connected
        except Exception:  # noqa: BLE001 - refused or timed out: either way no link
            connected = False
        finally:
            if client.is_connected:
                await client.disconnect()
        with contextlib.suppress(asyncio.TimeoutError):
            await board.expect("event", timeout_s=1.0)
        return connected, board.lines


def test_a_board_that_is_not_advertising_never_hears_of_a_connection() -> None:
    # After a reset the controller is not advertising; a central's connection request still in
    # flight must not reach the new firmware (it would answer a HELLO with a nonce the central
    # never read).
    connected, lines = asyncio.run(asyncio.wait_for(_connect_to_a_silent_board(), 30))
    assert not connected
    assert not any(line.startswith("event") for line in lines)
