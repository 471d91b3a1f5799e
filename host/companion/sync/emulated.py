"""The production sync agent pointed at emulated boards: bleak's scanner and client on a bumble
central (emulator.link), the same session and upload code as on real hardware."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from companion.ble_bumble import BumbleClientBackend, BumbleScannerBackend
from companion.sync import agent
from companion.sync.agent import DeviceSync
from companion.sync.session import DeviceUnreachable, Uploader


async def wait_for_advertiser(central_device: Any, device_id: str, timeout_s: float = 120.0) -> Any:
    """Scan (bleak, by service UUID) until ``device_id`` advertises; its BLEDevice."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for device, name in await agent.discover(0.5, backend=BumbleScannerBackend, device=central_device):
            if name == device_id:
                return device
    raise DeviceUnreachable(f"device {device_id} did not advertise within {timeout_s:.0f} s")


def sync_into_store(
    engine: Engine,
    device_id: str,
    *,
    uploader: Uploader | None = None,
    window: int = agent.DEFAULT_WINDOW,
    attempts: int = agent.ATTEMPTS,
    timeout_s: float = 120.0,
) -> Callable[[Any, Any], Awaitable[DeviceSync]]:
    """A host task for emulator.link / emulator.workday: find the board, sync it into ``engine``
    (settings waiting for it included), return what the sync did."""

    async def task(_radio: Any, central: Any) -> DeviceSync:
        key = agent.device_key(engine, device_id)
        target = await wait_for_advertiser(central.device, device_id, timeout_s)
        pending = await asyncio.to_thread(agent.pending_settings, engine, device_id)
        return await agent.sync_device(
            target,
            key,
            uploader or agent.store_uploader(engine),
            client_kwargs={"backend": BumbleClientBackend, "device": central.device},
            window=window,
            pending_config=pending,
            on_config_applied=lambda crc, applied: agent.settings_applied(engine, device_id, crc, applied),
            attempts=attempts,
            device_id=device_id,
        )

    return task
