"""The session's transport over bleak: the production BLE code on every OS bleak supports, and on
bumble's virtual link in tests and the demo (``backend=BumbleClientBackend, device=...``)."""

from __future__ import annotations

import asyncio
from typing import Any

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

import protocol
from companion.sync.session import DeviceUnreachable, LinkLost

CONNECT_TIMEOUT_S = 10.0


class BleakTransport:
    """A connected posture device: `info`, `control`, and a queue of `data` notifications."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    @classmethod
    async def connect(
        cls, target: BLEDevice | str, *, timeout_s: float = CONNECT_TIMEOUT_S, **client_kwargs: Any
    ) -> BleakTransport:
        holder: list[BleakTransport] = []

        def lost(_client: BleakClient) -> None:
            if holder:
                holder[0]._queue.put_nowait(None)

        client = BleakClient(target, disconnected_callback=lost, timeout=timeout_s, **client_kwargs)
        transport = cls(client)
        holder.append(transport)
        try:
            await client.connect()
        except (BleakError, TimeoutError, OSError) as e:
            raise DeviceUnreachable(f"cannot connect to {target}: {e} (out of range, or not in a sync window?)") from None
        try:
            if client.services.get_service(protocol.SERVICE_UUID) is None:
                raise DeviceUnreachable(f"{target} is not a posture device (no sync service)")
            await client.start_notify(protocol.DATA_UUID, transport._on_data)
        except BleakError as e:
            await transport.close()
            raise LinkLost(f"the link to {target} dropped while subscribing: {e}") from None
        return transport

    def _on_data(self, _char: Any, data: bytearray) -> None:
        self._queue.put_nowait(bytes(data))

    @property
    def mtu(self) -> int:
        return int(self.client.mtu_size)

    async def read_info(self) -> bytes:
        try:
            return bytes(await self.client.read_gatt_char(protocol.INFO_UUID))
        except BleakError as e:
            raise LinkLost(f"reading info failed: {e}") from None

    async def write_control(self, data: bytes) -> None:
        try:
            await self.client.write_gatt_char(protocol.CONTROL_UUID, data, response=True)
        except BleakError as e:
            raise LinkLost(f"writing a command failed: {e}") from None

    async def next_notification(self, timeout_s: float) -> bytes:
        if not self.client.is_connected and self._queue.empty():
            raise LinkLost("the link dropped")
        item = await asyncio.wait_for(self._queue.get(), timeout_s)
        if item is None:
            raise LinkLost("the link dropped")
        return item

    async def close(self) -> None:
        try:
            await self.client.disconnect()
        except (BleakError, OSError):
            pass
