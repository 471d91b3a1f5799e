"""A bleak backend over bumble: ``BleakClient(address, backend=BumbleClientBackend, device=...)``.

Production code talks to the posture device through bleak.  Where there is no radio (CI, the
emulator, the demo) the same code runs against a bumble ``Device`` on a virtual link, passed as
the ``device`` keyword: a central already powered on (``emulator.radio.Central().device``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble.core import AdvertisingData, CommandTimeoutError, PhysicalTransport
from bumble.device import Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.hci import Address, HCI_Error

# Property bits of a characteristic declaration, by bleak's names.
_PROPERTY_NAMES: dict[int, CharacteristicPropertyName] = {
    0x01: "broadcast",
    0x02: "read",
    0x04: "write-without-response",
    0x08: "write",
    0x10: "notify",
    0x20: "indicate",
    0x40: "authenticated-signed-writes",
    0x80: "extended-properties",
}


def _uuid_str(bumble_uuid: Any) -> str:
    """A bumble UUID as bleak spells UUIDs: 128-bit, lower case, with dashes."""
    return str(uuid.UUID(bytes=bytes(reversed(bumble_uuid.to_bytes(force_128=True)))))


class BumbleClientBackend(BaseBleakClient):
    """bleak's client interface on a bumble central device.

    Keyword arguments (passed through ``BleakClient``): ``device`` (required, a powered-on
    bumble ``Device``), ``mtu`` (the ATT MTU to request on connect, default 247, as BlueZ and
    CoreBluetooth negotiate one on their own)."""

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        device = kwargs.pop("device", None)
        if not isinstance(device, Device):
            raise BleakError("BumbleClientBackend needs device=<a powered-on bumble Device> (the central)")
        self._mtu_wanted = int(kwargs.pop("mtu", 247))
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._device = device
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscriptions: dict[int, Any] = {}
        self._disconnecting = False

    @property
    def name(self) -> str:
        return str(self.address)

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            raise NotImplementedError("pairing is not emulated")
        target = Address(str(self.address), Address.RANDOM_DEVICE_ADDRESS)
        try:
            # bumble cancels its own pending connection when its timeout expires
            connection = await self._device.connect(target, transport=PhysicalTransport.LE, timeout=self._timeout)
        except (TimeoutError, CommandTimeoutError) as e:
            raise BleakError(f"device {self.address} not found: is it advertising?") from e
        except HCI_Error as e:
            # e.g. a connection attempt still pending in the controller: cancel it, report
            with contextlib.suppress(HCI_Error, CommandTimeoutError):
                await self._device.cancel_connection()
            raise BleakError(f"connecting to {self.address} failed: {e}") from e
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        peer = Peer(connection)
        self._peer = peer
        # A link can drop while it is being set up (the peripheral reset, or turned the
        # connection away); bumble's ATT requests would then wait for ever, where bleak's
        # backends fail the connect.
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_lost(_reason: int) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.on(connection.EVENT_DISCONNECTION, on_lost)
        setup = asyncio.ensure_future(self._set_up(peer))
        waits: list[asyncio.Future[Any]] = [setup, lost]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not setup.done():
            setup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await setup
            raise BleakError(f"{self.address} disconnected while the connection was being set up")
        self.services = setup.result()

    async def _set_up(self, peer: Peer) -> BleakGATTServiceCollection:
        if self._mtu_wanted > 23:
            await peer.request_mtu(self._mtu_wanted)
        return await self._discover(peer)

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for service in peer.services:
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            await service.discover_characteristics()
            for char in service.characteristics:
                props = [name for bit, name in _PROPERTY_NAMES.items() if char.properties & bit]
                bleak_char = BleakGATTCharacteristic(
                    char, char.handle, _uuid_str(char.uuid), props, lambda: self.mtu_size - 3, bleak_service
                )
                collection.add_characteristic(bleak_char)
                await char.discover_descriptors()
                for desc in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char)
                    )
        return collection

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        self._peer = None
        if not self._disconnecting and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._disconnecting = True
        try:
            await connection.disconnect()
        finally:
            self._disconnecting = False
            self._connection = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not emulated")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not emulated")

    def _require(self) -> None:
        if self._connection is None:
            raise BleakError("Not connected")

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        return bytearray(await proxy.read_value())

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require()
        proxy: DescriptorProxy = descriptor.obj
        return bytearray(await proxy.read_value())

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        self._require()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        await proxy.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._require()
        proxy: DescriptorProxy = descriptor.obj
        await proxy.write_value(bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._require()
        proxy: CharacteristicProxy[bytes] = characteristic.obj

        def deliver(value: bytes) -> None:
            callback(bytearray(value))

        # Prefer notifications over indications when both are offered, as bleak does.
        prefer_notify = "notify" in characteristic.properties
        await proxy.subscribe(deliver, prefer_notify=prefer_notify)
        self._subscriptions[characteristic.handle] = deliver

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await proxy.unsubscribe(subscriber)


class BumbleScannerBackend(BaseBleakScanner):
    """bleak's scanner interface on a bumble central: ``BleakScanner(..., backend=
    BumbleScannerBackend, device=<a powered-on bumble Device>)``.  Active scanning; the scan
    response's fields are merged into the advertiser's entry, as the OS stacks do."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        device = kwargs.get("device")
        if not isinstance(device, Device):
            raise BleakError("BumbleScannerBackend needs device=<a powered-on bumble Device> (the central)")
        self._device = device
        self._active = scanning_mode != "passive"
        self._fields: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self.seen_devices = {}
        self._fields = {}
        self._device.on("advertisement", self._on_advertisement)
        await self._device.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        self._device.remove_listener("advertisement", self._on_advertisement)
        await self._device.stop_scanning()

    def _on_advertisement(self, advertisement: Any) -> None:
        address = str(advertisement.address).split("/")[0]
        fields = self._fields.setdefault(address, {"name": None, "uuids": []})
        data = advertisement.data
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
        if name:
            fields["name"] = name.decode() if isinstance(name, bytes) else str(name)
        for kind in (
            AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        ):
            for value in data.get_all(kind):
                for u in value if isinstance(value, list) else [value]:
                    text = _uuid_str(u)
                    if text not in fields["uuids"]:
                        fields["uuids"].append(text)
        if not self.is_allowed_uuid(fields["uuids"]):
            return
        adv = AdvertisementData(
            local_name=fields["name"],
            manufacturer_data={},
            service_data={},
            service_uuids=list(fields["uuids"]),
            tx_power=None,
            rssi=int(advertisement.rssi),
            platform_data=(advertisement,),
        )
        ble_device = self.create_or_update_device(address, address, fields["name"], advertisement, adv)
        self.call_detection_callbacks(ble_device, adv)
