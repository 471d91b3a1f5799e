"""The emulated board's radio: a bumble peripheral driven by the firmware over a socket.

The firmware runs in the real ``micropython`` process, where ``host/emulator/mpy/bluetooth.py``
forwards MicroPython's ``bluetooth.BLE`` calls to a TCP socket on 127.0.0.1.  Here, in the
CPython process (the runner or a test), :class:`Radio` owns a bumble ``Device`` on a virtual
controller on a bumble ``LocalLink``: it serves the GATT services the firmware registered,
advertises what the firmware passes, and sends the firmware's IRQ events back (central
connect/disconnect, writes with their stored value, MTU exchanged, indication confirmed).

:class:`Central` is a second bumble device on the same link, for tests and the demo: the host
side's bleak code reaches it through :class:`companion.ble_bumble.BumbleClientBackend`.

Everything runs in one asyncio loop.  Wire format: see ``bluetooth.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Callable
from typing import Any

from bumble import gatt, hci
from bumble.controller import Controller
from bumble.core import UUID as BumbleUUID
from bumble.device import Connection, Device
from bumble.hci import Address, OwnAddressType
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

# Ops and events (mirrors host/emulator/mpy/bluetooth.py)
OP_ACTIVE = 0x41
OP_CONFIG = 0x43
OP_REGISTER = 0x52
OP_ADVERTISE = 0x56
OP_WRITE = 0x57
OP_NOTIFY = 0x4E
OP_INDICATE = 0x49
OP_DISCONNECT = 0x44
OP_BUFFER = 0x42
EV_REPLY = 0x72
EV_IRQ = 0x65
EV_PACE = 0x70

IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_GATTS_INDICATE_DONE = 20
IRQ_MTU_EXCHANGED = 21

DEFAULT_ATTR_LEN = 20  # MicroPython's MP_BLUETOOTH_DEFAULT_ATTR_LEN
ACL_DATA_PACKET_LENGTH = 251  # LE Data Length Extension: a 247-byte ATT MTU fits one PDU
BOARD_ADDRESS = "C4:0F:F1:CE:00:01"
CENTRAL_ADDRESS = "C4:0F:F1:CE:00:C0"

# MicroPython FLAG_* bits 0x01..0x80 equal the GATT characteristic property bits.
_PROPERTY_MASK = 0xFF
_FLAG_READ = 0x0002
_FLAG_WRITE_NO_RESPONSE = 0x0004
_FLAG_WRITE = 0x0008
_FLAG_NOTIFY = 0x0010
_FLAG_INDICATE = 0x0020


class RadioError(RuntimeError):
    """The firmware asked the emulated radio for something it cannot do."""


def _uuid(wire: str) -> BumbleUUID:
    """MicroPython-side UUID text (4 or 32 hex digits, no dashes) to a bumble UUID."""
    if len(wire) == 4:
        return BumbleUUID.from_16_bits(int(wire, 16))
    return BumbleUUID(f"{wire[0:8]}-{wire[8:12]}-{wire[12:16]}-{wire[16:20]}-{wire[20:32]}")


def _mpy_address(address: Address) -> tuple[int, bytes]:
    """(addr_type, 6 bytes most significant first), as MicroPython's IRQs report a peer."""
    kind = 0 if address.is_public else 1
    return kind, bytes(reversed(address.address_bytes))


class _Value:
    """One attribute value as NimBLE's GATT database holds it for MicroPython."""

    def __init__(self) -> None:
        self.data = b""
        self.capacity = DEFAULT_ATTR_LEN
        self.append = False

    def store_write(self, data: bytes) -> bytes:
        """A central's write: truncated to the buffer (or appended up to it)."""
        if self.append:
            self.data = (self.data + data)[: self.capacity]
        else:
            self.data = data[: self.capacity]
        return self.data


class _Controller(Controller):
    """bumble's virtual controller, with LE Create Connection Cancel as the Core spec has it
    (Vol 4, Part E, 7.8.13): the pending connection ends with an LE Connection Complete event
    of status Unknown Connection Identifier.  bumble's own answers "success" and keeps the
    connection pending, so a host that gives up connecting waits for ever."""

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # After the command's own Command Complete, as a controller sends them.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


def make_link_device(link: LocalLink, address: str, name: str) -> Device:
    """A bumble device on a virtual controller on ``link``, with realistic 251-byte LE PDUs."""
    controller = _Controller(name, link=link, public_address=address)
    controller.le_acl_data_packet_length = ACL_DATA_PACKET_LENGTH
    device = Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))
    device.random_address = Address(address, Address.RANDOM_DEVICE_ADDRESS)
    return device


class Radio:
    """The board's BLE peripheral, served to the firmware on a TCP port of 127.0.0.1."""

    def __init__(self, link: LocalLink | None = None, address: str = BOARD_ADDRESS) -> None:
        self.link = link or LocalLink()
        self.device = make_link_device(self.link, address, "posture-board")
        self.address = address
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._values: dict[int, _Value] = {}
        self._characteristics: dict[int, gatt.Characteristic[bytes]] = {}
        self._connections: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._peer_waiting = False
        self._registered = False
        self.board_connected = asyncio.Event()
        self.advertising = False
        self.advertising_data = b""
        # Fault injection: called with (connection handle, data) before each notification;
        # True drops the link instead (the notification and everything after it are lost),
        # as when the wearer walks out of range mid-transfer.
        self.drop_link_before: Callable[[int, bytes], bool] | None = None
        self._dropping: set[int] = set()
        self._accepting = False  # advertising connectably: a connection may complete
        self.links_dropped = 0
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)

    # ---- life cycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Power the peripheral on and listen for the board; returns the TCP port."""
        await self.device.power_on()
        self._server = await asyncio.start_server(self._serve_board, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._writer is not None:
            self._writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.device.power_off()

    def set_peer_waiting(self, waiting: bool) -> None:
        """Tell the board a real-time central is on the link (it then paces its clock)."""
        self._peer_waiting = waiting
        self._send(EV_PACE, bytes([1 if waiting else 0]))

    # ---- socket --------------------------------------------------------------------------------

    def _send(self, op: int, payload: bytes = b"") -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(struct.pack("<HB", len(payload) + 1, op) + payload)

    def _irq(self, event: int, payload: bytes) -> None:
        self._send(EV_IRQ, bytes([event]) + payload)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("radio task failed", exc_info=task.exception())

    async def _serve_board(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.board_connected.set()
        if self._peer_waiting:
            self._send(EV_PACE, b"\x01")
        try:
            while True:
                header = await reader.readexactly(2)
                (n,) = struct.unpack("<H", header)
                frame = await reader.readexactly(n)
                await self._handle(frame[0], frame[1:])
        except asyncio.IncompleteReadError:
            pass  # the board powered off
        finally:
            self._writer = None
            self.board_connected.clear()
            await self._radio_off()

    async def _handle(self, op: int, payload: bytes) -> None:
        if op == OP_ACTIVE:
            if not payload[0]:
                await self._radio_off()
        elif op == OP_CONFIG:
            cfg = json.loads(payload)
            self.device.gatt_server.max_mtu = int(cfg["mtu"])
            self.device.name = cfg["gap_name"]
        elif op == OP_REGISTER:
            self._send(EV_REPLY, json.dumps(self._register(json.loads(payload))).encode())
        elif op == OP_ADVERTISE:
            interval_us, connectable, adv_len = struct.unpack_from("<IBH", payload)
            adv = payload[7 : 7 + adv_len]
            resp = payload[7 + adv_len :]
            await self._advertise(interval_us, bool(connectable), adv, resp)
        elif op == OP_WRITE:
            (handle,) = struct.unpack_from("<H", payload)
            value = self._values.setdefault(handle, _Value())
            value.data = payload[2:]
            value.capacity = max(value.capacity, len(value.data))
        elif op == OP_BUFFER:
            handle, length, append = struct.unpack_from("<HHB", payload)
            value = self._values.setdefault(handle, _Value())
            value.capacity, value.append = length, bool(append)
            value.data = value.data[:length]
        elif op in (OP_NOTIFY, OP_INDICATE):
            conn_handle, handle = struct.unpack_from("<HH", payload)
            await self._notify(op, conn_handle, handle, payload[4:])
        elif op == OP_DISCONNECT:
            (conn_handle,) = struct.unpack_from("<H", payload)
            connection = self._connections.get(conn_handle)
            if connection is not None:
                self._spawn(connection.disconnect())
        else:
            log.warning("unknown radio op 0x%02x from the board", op)

    # ---- GATT server ---------------------------------------------------------------------------

    def _register(self, services: list[list[Any]]) -> list[list[int]]:
        """MicroPython service tuples -> bumble services; returns MicroPython's handle tuples."""
        server = self.device.gatt_server
        if self._registered:
            # gatts_register_services replaces the whole table, as NimBLE's does.
            server.services.clear()
            server.attributes.clear()
            server.attributes_by_handle.clear()
            self.device.add_default_services()
            self._values.clear()
            self._characteristics.clear()
        self._registered = True
        built: list[tuple[gatt.Service, list[tuple[gatt.Characteristic[bytes], list[gatt.Descriptor]]]]] = []
        for service_uuid, chars in services:
            made = []
            for char_uuid, flags, descs in chars:
                char = self._characteristic(char_uuid, flags)
                descriptors = [
                    gatt.Descriptor(_uuid(d_uuid), self._permissions(d_flags), b"")
                    for d_uuid, d_flags in descs
                ]
                char.descriptors = descriptors
                made.append((char, descriptors))
            service = gatt.Service(_uuid(service_uuid), [c for c, _ in made])
            self.device.add_service(service)
            built.append((service, made))
        handles: list[list[int]] = []
        for _service, made in built:
            per_service: list[int] = []
            for char, descriptors in made:
                self._characteristics[char.handle] = char
                self._values.setdefault(char.handle, _Value())
                char.value = self._dynamic_value(char.handle)
                per_service.append(char.handle)
                for d in descriptors:
                    self._values.setdefault(d.handle, _Value())
                    d.value = self._dynamic_value(d.handle)
                    per_service.append(d.handle)
            handles.append(per_service)
        return handles

    @staticmethod
    def _permissions(flags: int) -> gatt.Attribute.Permissions:
        perms = gatt.Attribute.Permissions(0)
        if flags & _FLAG_READ:
            perms |= gatt.Attribute.READABLE
        if flags & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE):
            perms |= gatt.Attribute.WRITEABLE
        return perms

    def _characteristic(self, wire_uuid: str, flags: int) -> gatt.Characteristic[bytes]:
        char: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid(wire_uuid),
            gatt.Characteristic.Properties(flags & _PROPERTY_MASK),
            self._permissions(flags),
            None,
        )
        return char

    def _dynamic_value(self, handle: int) -> gatt.CharacteristicValue[bytes]:
        def read(_connection: Connection | None) -> bytes:
            return self._values[handle].data

        def write(connection: Connection | None, data: bytes) -> None:
            stored = self._values[handle].store_write(bytes(data))
            conn_handle = connection.handle if connection is not None else 0
            self._irq(IRQ_GATTS_WRITE, struct.pack("<HH", conn_handle, handle) + stored)

        return gatt.CharacteristicValue(read=read, write=write)

    async def _notify(self, op: int, conn_handle: int, handle: int, data: bytes) -> None:
        connection = self._connections.get(conn_handle)
        char = self._characteristics.get(handle)
        if connection is None or char is None:
            return
        data = data[: connection.att_mtu - 3]  # NimBLE truncates to the MTU too
        if conn_handle in self._dropping:
            return
        if self.drop_link_before is not None and self.drop_link_before(conn_handle, data):
            self._dropping.add(conn_handle)
            self.links_dropped += 1
            self._spawn(connection.disconnect())
            return
        if op == OP_NOTIFY:
            await self.device.notify_subscriber(connection, char, data, force=True)
        else:

            async def indicate() -> None:
                status = 0
                try:
                    await self.device.indicate_subscriber(connection, char, data, force=True)
                except Exception:  # noqa: BLE001 - any failure is a failed indication to the firmware
                    status = 1
                self._irq(IRQ_GATTS_INDICATE_DONE, struct.pack("<HHB", conn_handle, handle, status))

            self._spawn(indicate())

    # ---- GAP ---------------------------------------------------------------------------------

    async def _advertise(self, interval_us: int, connectable: bool, adv: bytes, resp: bytes) -> None:
        self._accepting = False
        if self.advertising:
            await self.device.stop_advertising()
            self.advertising = False
        if interval_us <= 0:
            return
        from bumble.device import AdvertisingType

        interval_ms = max(20.0, interval_us / 1000)
        self._accepting = connectable
        await self.device.start_advertising(
            advertising_type=(
                AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
                if connectable
                else AdvertisingType.UNDIRECTED_SCANNABLE
            ),
            own_address_type=OwnAddressType.RANDOM,
            advertising_data=adv,
            scan_response_data=resp,
            advertising_interval_min=interval_ms,
            advertising_interval_max=interval_ms,
        )
        self.advertising = True
        self.advertising_data = adv

    def _on_connection(self, connection: Connection) -> None:
        if not self._accepting:
            # A controller that is not advertising connectably (stopped, or reset with the
            # board) never completes a connection: a central's request that was still in
            # flight is turned away before the firmware hears of it.
            self._spawn(connection.disconnect())
            return
        self._accepting = False
        self.advertising = False  # a connectable advertisement stops on connection
        addr_type, addr = _mpy_address(connection.peer_address)
        stale = self._connections.get(connection.handle)
        if stale is not None and stale is not connection:
            # The controller reused the handle before the old link's disconnection reached the
            # host: tell the firmware the old link ended before it hears of the new one, as
            # NimBLE orders them (a handle is free only after its disconnection).
            stale_type, stale_addr = _mpy_address(stale.peer_address)
            self._irq(IRQ_CENTRAL_DISCONNECT, struct.pack("<HB", stale.handle, stale_type) + stale_addr)
            self._dropping.discard(connection.handle)
        self._connections[connection.handle] = connection
        self._irq(IRQ_CENTRAL_CONNECT, struct.pack("<HB", connection.handle, addr_type) + addr)

        def on_mtu() -> None:
            if self._connections.get(connection.handle) is connection:
                self._irq(IRQ_MTU_EXCHANGED, struct.pack("<HH", connection.handle, connection.att_mtu))

        def on_disconnection(_reason: int) -> None:
            if self._connections.get(connection.handle) is not connection:
                return  # already reported when its handle was reused
            self._connections.pop(connection.handle, None)
            self._dropping.discard(connection.handle)
            self._irq(IRQ_CENTRAL_DISCONNECT, struct.pack("<HB", connection.handle, addr_type) + addr)

        connection.on(connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    async def _radio_off(self) -> None:
        self._accepting = False
        for connection in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        if self.advertising:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()
            self.advertising = False


class Central:
    """A host-side BLE central on the radio's link (what the sync agent's PC would be)."""

    def __init__(self, radio: Radio, address: str = CENTRAL_ADDRESS) -> None:
        self.radio = radio
        self.device = make_link_device(radio.link, address, "posture-host")

    async def start(self) -> None:
        await self.device.power_on()
        self.radio.set_peer_waiting(True)

    async def close(self) -> None:
        self.radio.set_peer_waiting(False)
        with contextlib.suppress(Exception):
            await self.device.power_off()
