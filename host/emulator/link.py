"""A virtual BLE link beside a running board: the board's radio and a host central.

The board runs in a ``micropython`` subprocess (emulator.runner); its ``bluetooth`` module talks
to a :class:`emulator.radio.Radio` over a local socket.  That radio, and the host side's central,
live in one asyncio loop; :class:`Link` runs that loop in a thread, so the (blocking) runner and
the host code (a sync agent on bleak over bumble) run side by side::

    with Link() as link:
        board.radio_port = link.port
        future = link.submit(lambda radio, central: agent.sync_all(central.device))
        runner.run()               # the board powers off at the end of its day
        result = future.result()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from emulator.radio import Central, Radio

T = TypeVar("T")
HostTask = Callable[[Radio, Central], Awaitable[T]]


class Link:
    """The radio and a central on a bumble link, served by an event loop in a thread."""

    def __init__(self, central: bool = True) -> None:
        self._want_central = central
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ble-link", daemon=True)
        self._futures: list[concurrent.futures.Future[Any]] = []
        self.radio: Radio | None = None
        self.central: Central | None = None
        self.port = 0

    def __enter__(self) -> Link:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _start(self) -> None:
        self.radio = Radio()
        self.port = await self.radio.start()
        if self._want_central:
            self.central = Central(self.radio)
            await self.central.start()

    def submit(self, task: HostTask[T]) -> concurrent.futures.Future[T]:
        """Run ``task(radio, central)`` on the link's loop; its future gives the result."""
        assert self.radio is not None and self.central is not None, "the link is not started"
        coro: Coroutine[Any, Any, T] = task(self.radio, self.central)  # type: ignore[assignment]
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        self._futures.append(future)
        return future

    def call(self, task: HostTask[T], timeout_s: float = 60) -> T:
        """Run ``task`` on the link's loop and wait for it."""
        return self.submit(task).result(timeout=timeout_s)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` on the link's loop (thread-safe)."""
        if self._thread.is_alive() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        for future in self._futures:
            future.cancel()

        async def stop() -> None:
            if self.central is not None:
                await self.central.close()
            if self.radio is not None:
                await self.radio.close()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
