"""asyncio.run for tests that may share their thread with a running event loop.

Playwright's sync API (tests/test_dashboard_browser.py, through pytest-playwright's session-scoped
fixtures) keeps an event loop running in the main thread for the rest of the session, and
asyncio.run refuses to start inside one.  A coroutine run here gets a thread and a loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(coroutine) in a thread of its own; its result, or its exception."""
    with ThreadPoolExecutor(1, thread_name_prefix="own-loop") as pool:
        return pool.submit(asyncio.run, coroutine).result()
