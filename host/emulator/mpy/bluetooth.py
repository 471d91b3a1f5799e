# MicroPython's ``bluetooth`` module for the emulated board.
#
# Same names, signatures and behaviour as the ESP32 port (NimBLE) for the peripheral role:
# BLE().active/config/irq, gap_advertise, gatts_register_services, gatts_read/write,
# gatts_notify/indicate, gatts_set_buffer (writes longer than the buffer are truncated),
# gap_disconnect, UUID and the FLAG_* constants.
#
# The radio itself is a bumble peripheral in a CPython process (host/emulator/radio.py).
# Every call is forwarded to it over a TCP socket on 127.0.0.1 (port from the board file's
# "radio_port" or the POSTURE_RADIO environment variable); events from the peripheral
# (central connect/disconnect, writes, MTU exchanged, indication confirmed) come back on the
# same socket and reach the firmware's IRQ handler when the board next waits (select.py's
# poll hook, or any advance of the virtual clock), as MicroPython's scheduler runs IRQs
# between bytecodes on the board.  Without a radio process the radio works alone: it
# advertises into the void and no central ever connects.
#
# Clock policy: while a central is connected (or a central is waiting for the board on the
# link, which the radio says), waits run in real time (select.py), so the host-side peer's
# ATT timeouts see the board answer; otherwise the virtual clock races on as usual.
#
# Wire format (both directions): u16 little-endian length of the rest | u8 op | payload.
import json
import os
import select
import socket
import struct

import vboard
import vclock

FLAG_BROADCAST = 0x0001
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020
FLAG_AUTHENTICATED_SIGNED_WRITE = 0x0040
FLAG_AUX_WRITE = 0x0100
FLAG_READ_ENCRYPTED = 0x0200
FLAG_READ_AUTHENTICATED = 0x0400
FLAG_READ_AUTHORIZED = 0x0800
FLAG_WRITE_ENCRYPTED = 0x1000
FLAG_WRITE_AUTHENTICATED = 0x2000
FLAG_WRITE_AUTHORIZED = 0x4000

_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_GATTS_INDICATE_DONE = 20
_IRQ_MTU_EXCHANGED = 21

# MicroPython's default attribute buffer (MP_BLUETOOTH_DEFAULT_ATTR_LEN).
_DEFAULT_ATTR_LEN = 20
_EPERM = 1
_ENOTCONN = 107
_EINVAL = 22

# Requests (board -> radio)
OP_ACTIVE = 0x41  # 'A' u8 on
OP_CONFIG = 0x43  # 'C' json
OP_REGISTER = 0x52  # 'R' json -> reply 'r' json handles
OP_ADVERTISE = 0x56  # 'V' u32 interval_us | u8 connectable | u16 adv_len | adv | resp
OP_WRITE = 0x57  # 'W' u16 handle | value (the local value the central reads)
OP_NOTIFY = 0x4E  # 'N' u16 conn | u16 handle | data
OP_INDICATE = 0x49  # 'I' u16 conn | u16 handle | data
OP_DISCONNECT = 0x44  # 'D' u16 conn
OP_BUFFER = 0x42  # 'B' u16 handle | u16 len | u8 append
# Events (radio -> board)
EV_REPLY = 0x72  # 'r' json
EV_IRQ = 0x65  # 'e' u8 event | payload
EV_PACE = 0x70  # 'p' u8 on: a central is waiting on the link


class UUID:
    """A 16-bit (int) or 128-bit (string or 16 bytes, little-endian) UUID."""

    def __init__(self, value):
        if isinstance(value, UUID):
            self._s = value._s
            return
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self._s = "%04X" % value
        elif isinstance(value, str):
            s = value.replace("-", "").upper()
            if len(s) == 4 or len(s) == 32:
                int(s, 16)
                self._s = s
            else:
                raise ValueError("invalid UUID")
        else:
            b = bytes(value)
            if len(b) == 2:
                self._s = "%04X" % (b[0] | b[1] << 8)
            elif len(b) == 16:
                self._s = "".join(["%02X" % x for x in reversed(b)])
            else:
                raise ValueError("invalid UUID")

    def __eq__(self, other):
        return isinstance(other, UUID) and other._s == self._s

    def __hash__(self):
        return hash(self._s)

    def __str__(self):
        s = self._s
        if len(s) == 4:
            return "0x" + s.lower()
        s = s.lower()
        return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]

    def __repr__(self):
        return "UUID(" + (("0x" + self._s) if len(self._s) == 4 else ("'" + str(self) + "'")) + ")"

    def __bytes__(self):
        n = int(self._s, 16)
        size = len(self._s) // 2
        return bytes([(n >> (8 * i)) & 0xFF for i in range(size)])

    def wire(self):
        return self._s


class _Attr:
    __slots__ = ("value", "cap", "append")

    def __init__(self):
        self.value = b""
        self.cap = _DEFAULT_ATTR_LEN
        self.append = False


def _addr_from_id():
    dev = vboard.state["spec"].get("device_id", "emulated")
    h = 0x811C9DC5
    for c in dev.encode():
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    return bytes([0xC0 | ((h >> 24) & 0x3F), 0x02, (h >> 16) & 0xFF, (h >> 8) & 0xFF, h & 0xFF, 0x42])


def _interval(kind):
    """Open an accounting interval of ``kind`` (active/advertising/connected)."""
    vboard.radio_interval_start(kind, vclock.now_us())


def _end_interval(kind):
    vboard.radio_interval_end(kind, vclock.now_us())


class BLE:
    _instance = None

    def __new__(cls):
        if BLE._instance is None:
            BLE._instance = object.__new__(cls)
            BLE._instance._setup()
        return BLE._instance

    def __init__(self):
        pass

    def _setup(self):
        self._active = False
        self._handler = None
        self._sock = None
        self._rx = b""
        self._events = []  # (op, payload) received while waiting for a reply
        self._attrs = {}  # value handle -> _Attr
        self._connections = {}  # conn_handle -> mtu
        self._advertising = False
        self._peer_waiting = False
        self._pumping = False
        self._config = {
            "mtu": 23,
            "gap_name": "MPY ESP32",
            "rxbuf": 256,
            "mac": (0, _addr_from_id()),
            "addr_mode": 0,
            "io": 3,
            "bond": False,
            "le_secure": False,
            "mitm": False,
        }
        self._next_handle = 1

    # ---- transport ------------------------------------------------------------------------

    def _port(self):
        port = vboard.state["spec"].get("radio_port") if vboard.state["spec"] else None
        if port is None:
            env = os.getenv("POSTURE_RADIO")
            if env:
                port = int(env.split(":")[-1])
        return port

    def _connect(self):
        port = self._port()
        if port is None:
            return
        addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(addr)
        self._sock = s
        select.add_hook(self)

    def _send(self, op, payload=b""):
        if self._sock is None:
            return
        frame = struct.pack("<HB", len(payload) + 1, op) + payload
        self._sock.write(frame)

    def _send_config(self):
        cfg = {"mtu": self._config["mtu"], "gap_name": self._config["gap_name"]}
        self._send(OP_CONFIG, json.dumps(cfg).encode())

    def _read_frame(self, block):
        """One (op, payload) from the socket, or None when nothing is there (and not block)."""
        while True:
            if len(self._rx) >= 2:
                n = self._rx[0] | self._rx[1] << 8
                if len(self._rx) >= 2 + n:
                    op = self._rx[2]
                    payload = self._rx[3 : 2 + n]
                    self._rx = self._rx[2 + n :]
                    return op, payload
            if not block:
                p = select.uselect.poll()
                p.register(self._sock, select.POLLIN)
                if not p.poll(0):
                    return None
            chunk = self._sock.recv(4096)
            if not chunk:
                # The radio process went away: the radio goes quiet, like an antenna cut.
                select.remove_hook(self)
                self._sock = None
                raise OSError(_ENOTCONN)
            self._rx += chunk

    def _request(self, op, payload):
        """Send a request and wait (really) for the radio's reply; events meanwhile queue up."""
        self._send(op, payload)
        while True:
            frame = self._read_frame(True)
            if frame[0] == EV_REPLY:
                return json.loads(frame[1])
            self._events.append(frame)

    # select.py hook interface
    def stream(self):
        return self._sock

    def realtime(self):
        return self._sock is not None and (
            bool(self._connections) or (self._advertising and self._peer_waiting)
        )

    def pump(self):
        if self._pumping or self._sock is None:
            return
        self._pumping = True
        try:
            while True:
                if self._events:
                    frame = self._events.pop(0)
                else:
                    frame = self._read_frame(False)
                    if frame is None:
                        return
                self._deliver(frame[0], frame[1])
        finally:
            self._pumping = False

    def _deliver(self, op, payload):
        if op == EV_PACE:
            self._peer_waiting = bool(payload[0])
            return
        if op != EV_IRQ:
            return
        event = payload[0]
        if event == _IRQ_CENTRAL_CONNECT:
            conn, addr_type = struct.unpack_from("<HB", payload, 1)
            addr = bytes(payload[4:10])
            if not self._connections:
                _interval("connected")
            self._connections[conn] = 23
            # NimBLE stops advertising when a central connects.
            if self._advertising:
                self._advertising = False
                _end_interval("advertising")
            self._irq(event, (conn, addr_type, addr))
        elif event == _IRQ_CENTRAL_DISCONNECT:
            conn, addr_type = struct.unpack_from("<HB", payload, 1)
            addr = bytes(payload[4:10])
            if conn in self._connections:
                del self._connections[conn]
                if not self._connections:
                    _end_interval("connected")
            self._irq(event, (conn, addr_type, addr))
        elif event == _IRQ_GATTS_WRITE:
            conn, handle = struct.unpack_from("<HH", payload, 1)
            attr = self._attrs.get(handle)
            if attr is not None:
                # The stack already stored the write (truncated to the buffer) on the radio side.
                attr.value = bytes(payload[5:])
            self._irq(event, (conn, handle))
        elif event == _IRQ_MTU_EXCHANGED:
            conn, mtu = struct.unpack_from("<HH", payload, 1)
            self._connections[conn] = mtu
            self._irq(event, (conn, mtu))
        elif event == _IRQ_GATTS_INDICATE_DONE:
            conn, handle, status = struct.unpack_from("<HHB", payload, 1)
            self._irq(event, (conn, handle, status))

    def _irq(self, event, data):
        if self._handler is not None:
            self._handler(event, data)

    def _check_active(self):
        if not self._active:
            raise OSError(_EPERM)

    # ---- MicroPython API --------------------------------------------------------------------

    def active(self, active=None):
        if active is None:
            return self._active
        active = bool(active)
        if active == self._active:
            return active
        if active:
            self._active = True
            _interval("active")
            if self._sock is None:
                self._connect()
            self._send(OP_ACTIVE, b"\x01")
            self._send_config()
        else:
            if self._advertising:
                self._advertising = False
                _end_interval("advertising")
            if self._connections:
                self._connections = {}
                _end_interval("connected")
            self._send(OP_ACTIVE, b"\x00")
            self._active = False
            self._attrs = {}
            self._next_handle = 1
            _end_interval("active")
        return self._active

    def config(self, *args, **kwargs):
        if args:
            if len(args) != 1 or kwargs:
                raise TypeError("config takes one name or keyword arguments")
            name = args[0]
            if name not in self._config:
                raise ValueError("unknown config param")
            if name == "mac":
                self._check_active()
            return self._config[name]
        for name in kwargs:
            if name not in self._config or name == "mac":
                raise ValueError("unknown config param")
            value = kwargs[name]
            if name == "mtu" and not 23 <= value <= 517:
                raise ValueError("invalid mtu")
            self._config[name] = value
        if self._active:
            self._send_config()

    def irq(self, handler):
        self._handler = handler

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        self._check_active()
        if interval_us is None:
            interval_us = 0
        self._adv = bytes(adv_data) if adv_data is not None else getattr(self, "_adv", b"")
        self._resp = bytes(resp_data) if resp_data is not None else getattr(self, "_resp", b"")
        if len(self._adv) > 31 or len(self._resp) > 31:
            raise OSError(_EINVAL)
        on = interval_us > 0
        if on and not self._advertising:
            _interval("advertising")
        elif not on and self._advertising:
            _end_interval("advertising")
        self._advertising = on
        self._send(
            OP_ADVERTISE,
            struct.pack("<IBH", interval_us, 1 if connectable else 0, len(self._adv))
            + self._adv
            + self._resp,
        )

    def gatts_register_services(self, services):
        self._check_active()
        desc = []
        for service in services:
            uuid, chars = service[0], service[1]
            cs = []
            for ch in chars:
                ds = []
                if len(ch) > 2:
                    for d in ch[2]:
                        ds.append([UUID(d[0]).wire(), d[1]])
                cs.append([UUID(ch[0]).wire(), ch[1], ds])
            desc.append([UUID(uuid).wire(), cs])
        if self._sock is not None:
            handles = self._request(OP_REGISTER, json.dumps(desc).encode())
        else:
            handles = self._allocate_handles(desc)
        out = []
        for per_service in handles:
            for h in per_service:
                if h not in self._attrs:
                    self._attrs[h] = _Attr()
            out.append(tuple(per_service))
        return tuple(out)

    def _allocate_handles(self, desc):
        # Without a radio process: NimBLE-like numbering (service, then per characteristic its
        # declaration, value, CCCD when it notifies or indicates, and its descriptors).
        out = []
        h = self._next_handle
        for _uuid, chars in desc:
            h += 1
            per = []
            for _cu, flags, ds in chars:
                h += 2
                per.append(h - 1)
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    h += 1
                for _d in ds:
                    per.append(h)
                    h += 1
            out.append(per)
        self._next_handle = h
        return out

    def _attr(self, handle):
        attr = self._attrs.get(handle)
        if attr is None:
            raise OSError(_EINVAL)
        return attr

    def gatts_read(self, value_handle):
        self._check_active()
        attr = self._attr(value_handle)
        value = attr.value
        if attr.append:
            # Append mode: reading consumes what the central wrote.
            attr.value = b""
            self._send(OP_WRITE, struct.pack("<H", value_handle))
        return value

    def gatts_write(self, value_handle, data, send_update=False):
        self._check_active()
        attr = self._attr(value_handle)
        data = bytes(data)
        if len(data) > attr.cap:
            # Writing more than the buffer holds grows it (as MicroPython's gatts_db_write does).
            attr.cap = len(data)
        attr.value = data
        self._send(OP_WRITE, struct.pack("<H", value_handle) + data)
        if send_update:
            for conn in list(self._connections):
                self.gatts_notify(conn, value_handle)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._notify_or_indicate(OP_NOTIFY, conn_handle, value_handle, data)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._notify_or_indicate(OP_INDICATE, conn_handle, value_handle, data)

    def _notify_or_indicate(self, op, conn_handle, value_handle, data):
        self._check_active()
        if conn_handle not in self._connections:
            raise OSError(_ENOTCONN)
        if data is None:
            data = self._attr(value_handle).value
        self._send(op, struct.pack("<HH", conn_handle, value_handle) + bytes(data))

    def gatts_set_buffer(self, value_handle, length, append=False):
        self._check_active()
        attr = self._attr(value_handle)
        attr.cap = length
        attr.append = bool(append)
        attr.value = attr.value[:length]
        self._send(OP_BUFFER, struct.pack("<HHB", value_handle, length, 1 if append else 0))

    def gap_disconnect(self, conn_handle):
        self._check_active()
        if conn_handle not in self._connections:
            return False
        self._send(OP_DISCONNECT, struct.pack("<H", conn_handle))
        return True

    def gap_scan(self, *args, **kwargs):
        raise OSError(_EPERM)  # the emulated board is a peripheral only

    def gap_connect(self, *args, **kwargs):
        raise OSError(_EPERM)
