# BLE sync: the GATT server the host's sync agent talks to (docs/protocol.md section 8).
#
# One service with three characteristics: `info` (read), `control` (write with response:
# commands) and `data` (notify: command results and frames of records).  A session is
# HELLO (mutual proof of the device key over fresh nonces) -> TIME_SET -> FETCH/ACK rounds
# -> CONFIG_SET and friends.  Nothing is sent and nothing is deleted before HELLO succeeds.
#
# The radio is off unless a sync window is open (power.py decides; main.py calls open() and
# close()).  BLE IRQs run as scheduled callbacks on MicroPython: they only queue the event
# (and copy a control write out of its buffer before the next write overwrites it); the run()
# task handles the queue every _POLL_MS while the radio is on.  (Polling rather than a
# ThreadSafeFlag: the radio is on only in short windows, when a few wake-ups more cost
# nothing, and the sample task's timers stay the only thing the board waits for otherwise.)
#
# The nonce in `info` is the one the next HELLO must answer.  It is made fresh when the
# window opens and after every HELLO attempt and disconnect, never at connect: the stack
# answers a read of `info` by itself, possibly before this code has seen the connect event,
# so the nonce the host reads must already be the one we expect.
import asyncio
import binascii
import os
import struct
import sys

import bluetooth
from micropython import const

import protocol

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)

_ENOMEM = const(12)
_ADV_INTERVAL_US = const(250000)  # a scanning host finds the board within a second or so
_SESSION_MTU = const(247)  # one LE data-length-extended PDU
_CONTROL_BUFFER = const(_SESSION_MTU - 3)
_NOTIFY_RETRIES = const(100)
_RETRY_MS = const(10)
_FETCH_WINDOW_MAX = const(64)  # frames per batch at most, whatever the host asks
_REBOOT_DELAY_MS = const(300)  # lets the REBOOT result reach the host first
_POLL_MS = const(10)  # event latency while the radio is on
_IDLE_MS = const(1000)  # radio off: nothing can arrive

_SERVICE = bluetooth.UUID(protocol.SERVICE_UUID)
_INFO = (bluetooth.UUID(protocol.INFO_UUID), bluetooth.FLAG_READ)
_CONTROL = (bluetooth.UUID(protocol.CONTROL_UUID), bluetooth.FLAG_WRITE)
_DATA = (bluetooth.UUID(protocol.DATA_UUID), bluetooth.FLAG_NOTIFY)


def load_key(path="key.bin"):
    """The device's sync key (tools/flash.py provision writes it), or None if absent."""
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError:
        return None
    if len(key) < 16 or len(key) > 64:
        return None
    return key


def advertising_payloads(device_id):
    """(adv, scan response): flags, our 128-bit service UUID and, when it fits in the 31 bytes,
    the device id as the name; the scan response carries the id (complete, or shortened past 29
    bytes) for scanners that ask."""
    # The UUID's 16 bytes little-endian, as advertising data carries them (bytes(UUID) would
    # do on the ESP32, but the emulator's pure-Python UUID has no buffer protocol).
    uuid = bytes(reversed(binascii.unhexlify(protocol.SERVICE_UUID.replace("-", ""))))
    adv = bytes((2, 0x01, 0x06, len(uuid) + 1, 0x07)) + uuid
    name = device_id.encode()
    if len(adv) + 2 + len(name) <= 31:
        adv += bytes((len(name) + 1, 0x09)) + name
    kind = 0x09  # complete local name
    if len(name) > 29:
        name = name[:29]
        kind = 0x08  # shortened local name
    resp = bytes((len(name) + 1, kind)) + name
    return adv, resp


class BleSync:
    """The sync session server.  ``device`` supplies what the session needs from the rest of
    the firmware: battery_percent(), config_crc(), apply_config(overrides) -> (error, crc),
    calibrate(), buzz_test(), reboot(), session_done()."""

    def __init__(self, device_id, key, log, events, device, fw_version, now_s, set_now_s):
        self.device_id = device_id
        self.key = key
        self.log = log
        self.events = events
        self.device = device
        self.fw_version = fw_version
        self.now_s = now_s
        self.set_now_s = set_now_s
        self.ble = bluetooth.BLE()  # the singleton; the radio stays off until open()
        self.is_open = False
        self._queue = []
        self._h_info = self._h_control = self._h_data = 0
        self._nonce = b""
        self.link_id = 0
        self._reset_session(None)
        self.sessions = 0  # authenticated sessions since boot

    # ---- the window -----------------------------------------------------------------------
    def open(self):
        """Radio on: register the service, publish info, advertise."""
        if self.is_open:
            return
        ble = self.ble
        ble.active(True)
        ble.config(mtu=_SESSION_MTU, gap_name=self.device_id)
        ble.irq(self._irq)
        ((h_info, h_control, h_data),) = ble.gatts_register_services(((_SERVICE, (_INFO, _CONTROL, _DATA)),))
        self._h_info, self._h_control, self._h_data = h_info, h_control, h_data
        ble.gatts_set_buffer(h_control, _CONTROL_BUFFER)
        self.is_open = True
        self._new_nonce()
        self._advertise()

    def close(self):
        """Radio off (a session in progress is dropped; the host resumes next time)."""
        if not self.is_open:
            return
        self.is_open = False
        ble = self.ble
        try:
            ble.gap_advertise(None)  # pyright: ignore[reportArgumentType]  (None stops it)
            if self.conn is not None:
                ble.gap_disconnect(self.conn)
        except OSError:
            pass
        ble.active(False)
        self._queue = []
        self._reset_session(None)

    def connected(self):
        return self.conn is not None

    def _advertise(self):
        adv, resp = advertising_payloads(self.device_id)
        self.ble.gap_advertise(_ADV_INTERVAL_US, adv, resp)  # pyright: ignore[reportCallIssue]

    def _reset_session(self, conn):
        # Connection handles are reused: a batch still streaming for an old link must not
        # leak into a new one with the same handle, so streams check this number instead.
        self.link_id += 1
        self.conn = conn
        self.mtu = 23
        self.authed = False
        self.streaming = False
        self.sent_upto = 0  # highest seq sent on this connection
        self.last_batch_seq = -1  # last seq of the newest batch that said "no more"
        self.complete = False  # that batch was acknowledged: the host has the whole log
        self._config = bytearray()

    def _new_nonce(self):
        self._nonce = os.urandom(protocol.NONCE_SIZE)
        self.refresh_info()

    def refresh_info(self):
        if not self.is_open:
            return
        log = self.log
        first = log.first_seq()
        last = log.last_seq()
        if last < first:
            first = last  # nothing stored: both name the last seq written
        battery = self.device.battery_percent()
        if battery < 0:
            battery = protocol.BATTERY_UNKNOWN
        clock = self.now_s()
        if clock < 0:
            clock = 0
        info = protocol.encode_info(
            protocol.PROTOCOL_VERSION,
            self.fw_version,
            self.device_id,
            first,
            last,
            log.acked,
            battery,
            clock,
            self.device.config_crc(),
            self._nonce,
        )
        self.ble.gatts_write(self._h_info, info)  # pyright: ignore[reportArgumentType]

    # ---- IRQ -> queue ---------------------------------------------------------------------
    def _irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            conn, handle = data
            if handle == self._h_control:
                # Copy it now: the next write would overwrite the buffer.
                self._queue.append((event, conn, self.ble.gatts_read(handle)))
        elif event == _IRQ_CENTRAL_CONNECT or event == _IRQ_CENTRAL_DISCONNECT:
            self._queue.append((event, data[0], None))
        elif event == _IRQ_MTU_EXCHANGED:
            self._queue.append((event, data[0], data[1]))

    async def run(self):
        """Handle radio events for ever (the window being open or not)."""
        while True:
            await asyncio.sleep_ms(_POLL_MS if self.is_open else _IDLE_MS)
            while self._queue:
                event, conn, value = self._queue.pop(0)
                try:
                    self._event(event, conn, value)
                except Exception as e:  # noqa: BLE001 - the radio must outlive any one bad event
                    sys.print_exception(e)
                    if event == _IRQ_GATTS_WRITE and value:
                        self._result(value[0], protocol.ERR_INTERNAL)

    def _event(self, event, conn, value):
        if event == _IRQ_CENTRAL_CONNECT:
            if self.conn is not None:
                # One session at a time: a second central is turned away.
                self.ble.gap_disconnect(conn)
                return
            self._reset_session(conn)
            self.refresh_info()
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if conn != self.conn:
                return
            complete = self.authed and self.complete
            self._reset_session(None)
            if self.is_open:
                self._new_nonce()
                self._advertise()  # NimBLE stopped advertising at connect
            if complete:
                # The host has everything: the window may close.  A session cut short keeps
                # the window open for the host to come back.
                self.device.session_done()
        elif event == _IRQ_MTU_EXCHANGED:
            if conn == self.conn:
                self.mtu = value
        elif event == _IRQ_GATTS_WRITE:
            if conn == self.conn:
                self._command(value)

    # ---- commands -------------------------------------------------------------------------
    def _result(self, cmd, error, detail=b""):
        if self.mtu - 3 < 3 + len(detail):
            detail = b""
            if error == protocol.OK:
                error = protocol.ERR_MTU_TOO_SMALL
        self._send(protocol.encode_result(cmd, error, detail))

    def _send(self, data):
        """One notification now; False if the stack has no room (the caller retries)."""
        if self.conn is None:
            return False
        try:
            # (the stubs miss gatts_notify's conn_handle argument)
            self.ble.gatts_notify(self.conn, self._h_data, data)  # pyright: ignore
            return True
        except OSError:
            return False

    def _command(self, data):
        cmd = data[0] if len(data) else 0
        try:
            cmd, decoded = protocol.decode_command(data)
        except protocol.UnknownCommand:
            self._result(cmd, protocol.ERR_UNKNOWN_COMMAND)
            return
        except protocol.ProtocolError:
            self._result(cmd, protocol.ERR_MALFORMED)
            return
        values = list(decoded)
        if cmd == protocol.CMD_HELLO:
            self._hello(values[0], values[1])
            return
        if not self.authed:
            self._result(cmd, protocol.ERR_NOT_AUTHENTICATED)
            return
        if self.streaming and cmd != protocol.CMD_TIME_SET:
            self._result(cmd, protocol.ERR_BUSY)
            return
        try:
            if cmd == protocol.CMD_TIME_SET:
                self._time_set(values[0])
            elif cmd == protocol.CMD_FETCH:
                self._fetch(values[0], values[1])
            elif cmd == protocol.CMD_ACK:
                self._ack(values[0])
            elif cmd == protocol.CMD_CONFIG_SET:
                self._config_set(values[0], values[1], values[2])
            elif cmd == protocol.CMD_CALIBRATE:
                self.device.calibrate()
                self._result(cmd, protocol.OK)
            elif cmd == protocol.CMD_BUZZ_TEST:
                self.device.buzz_test()
                self._result(cmd, protocol.OK)
            elif cmd == protocol.CMD_REBOOT:
                self._result(cmd, protocol.OK)
                asyncio.create_task(self._reboot())
        except OSError:
            # Flash trouble: the host hears about it; nothing half-done was acknowledged.
            self._result(cmd, protocol.ERR_INTERNAL)

    def _hello(self, host_nonce, proof):
        if self.mtu < protocol.MIN_SESSION_MTU:
            self._result(protocol.CMD_HELLO, protocol.ERR_MTU_TOO_SMALL)
            return
        nonce = self._nonce
        good = self.key is not None and protocol.digest_equal(
            protocol.host_auth_proof(self.key, nonce, host_nonce), proof
        )
        # A nonce answers one HELLO at most, right or wrong.
        self._new_nonce()
        if not good:
            self.authed = False
            self._result(protocol.CMD_HELLO, protocol.ERR_AUTH_FAILED)
            asyncio.create_task(self._drop(self.link_id))
            return
        self.authed = True
        self.sessions += 1
        self._result(protocol.CMD_HELLO, protocol.OK, protocol.device_auth_proof(self.key, nonce, host_nonce))

    async def _drop(self, link_id):
        await asyncio.sleep_ms(100)  # let the result go out first
        if link_id == self.link_id and self.conn is not None:
            try:
                self.ble.gap_disconnect(self.conn)
            except OSError:
                pass

    def _time_set(self, unix_s):
        old = self.set_now_s(unix_s)
        if old - unix_s >= 2 or unix_s - old >= 2:
            # Records written before this carry the old clock: the host corrects them.
            self.events.write(protocol.TIME_SET, old if old > 0 else 0, unix_s)
        self._result(protocol.CMD_TIME_SET, protocol.OK)
        self.refresh_info()

    def _fetch(self, from_seq, window):
        if self.mtu < protocol.MIN_SESSION_MTU:
            self._result(protocol.CMD_FETCH, protocol.ERR_MTU_TOO_SMALL)
            return
        if from_seq > self.log.last_seq() + 1:
            self._result(protocol.CMD_FETCH, protocol.ERR_BAD_SEQ)
            return
        if window > _FETCH_WINDOW_MAX:
            window = _FETCH_WINDOW_MAX
        self.streaming = True
        self._result(protocol.CMD_FETCH, protocol.OK)
        asyncio.create_task(self._stream(self.link_id, from_seq, window))

    def _batch(self, from_seq, window):
        """(framed records, data frames) of the next batch: at most ``window`` frames."""
        mtu = self.mtu
        records = self.log.framed(from_seq, window * (mtu - 6))
        frames = protocol.pack_data_frames(records, mtu)
        while len(frames) > window:
            records.pop()
            frames = protocol.pack_data_frames(records, mtu)
        return records, frames

    async def _stream(self, link_id, from_seq, window):
        try:
            records, frames = self._batch(from_seq, window)
            for frame in frames:
                if not await self._notify(link_id, frame):
                    return
            last = self.sent_upto
            if records:
                last = struct.unpack_from("<I", records[-1], 0)[0]
            more = 1 if records and last < self.log.last_seq() else 0
            mac = protocol.batch_mac(self.key, self.device_id, b"".join(records))
            if await self._notify(link_id, protocol.encode_batch_end(len(frames), len(records), more, mac)):
                if last > self.sent_upto:
                    self.sent_upto = last
                if not more:
                    self.last_batch_seq = last
                    if self.log.acked >= last:
                        self.complete = True  # an empty batch: nothing left to acknowledge
        finally:
            if link_id == self.link_id:
                self.streaming = False

    async def _notify(self, link_id, data):
        """Send one frame, waiting while the stack's buffers are full; False if the link went."""
        for _ in range(_NOTIFY_RETRIES):
            if link_id != self.link_id:
                return False
            if self._send(data):
                await asyncio.sleep_ms(0)  # let the sample task run between frames
                return True
            await asyncio.sleep_ms(_RETRY_MS)
        return False

    def _ack(self, seq):
        # Only what was sent on this connection can be acknowledged, and nothing is deleted
        # that the host has not seen.
        if seq > self.sent_upto or seq > self.log.last_seq():
            self._result(protocol.CMD_ACK, protocol.ERR_BAD_SEQ)
            return
        self.log.ack(seq)
        if seq >= self.last_batch_seq >= 0:
            self.complete = True
        self._result(protocol.CMD_ACK, protocol.OK)
        self.refresh_info()

    def _config_set(self, offset, total, chunk):
        if offset == 0:
            self._config = bytearray()
        if offset != len(self._config):
            self._config = bytearray()
            self._result(protocol.CMD_CONFIG_SET, protocol.ERR_MALFORMED)
            return
        self._config.extend(chunk)
        if len(self._config) < total:
            self._result(protocol.CMD_CONFIG_SET, protocol.OK)
            return
        text = bytes(self._config)
        self._config = bytearray()
        error, crc = self.device.apply_config(text)
        self._result(protocol.CMD_CONFIG_SET, error, struct.pack("<I", crc))
        self.refresh_info()

    async def _reboot(self):
        await asyncio.sleep_ms(_REBOOT_DELAY_MS)
        self.device.reboot()
