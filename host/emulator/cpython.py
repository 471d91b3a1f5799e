"""Run firmware modules under CPython, on the emulated board.

``install()`` makes ``import machine``, ``import micropython`` and MicroPython's
``time.ticks_*``/``time.sleep_ms`` work in a CPython process, all on the emulator's
virtual clock, so the same firmware module can be tested in both interpreters.

CPython cannot run ``@micropython.viper``/``@micropython.native`` code, so the
``micropython`` module registered here has neither decorator.  Firmware modules that use
them pick their portable integer twin by ``sys.implementation.name`` (on MicroPython the
decorators are compiler directives, not attributes of the module, so testing for
``micropython.viper`` would not work there).
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from typing import Any

from emulator import DEVICE_DIR, MPY_DIR, SHARED_DIR

_installed = False


def _ticks_add(ticks: int, delta: int) -> int:
    return ticks + delta


def _ticks_diff(a: int, b: int) -> int:
    return a - b


def _micropython_module() -> types.ModuleType:
    mod = types.ModuleType("micropython")

    def const(value: Any) -> Any:
        return value

    def schedule(fn: Callable[[Any], Any], arg: Any) -> None:
        fn(arg)

    def mem_info(*_: Any) -> None:
        print("mem: CPython")

    def heap_lock() -> int:
        return 0

    def heap_unlock() -> int:
        return 0

    def opt_level(_: int | None = None) -> int:
        return 0

    def kbd_intr(_: int) -> None:
        pass

    for fn in (const, schedule, mem_info, heap_lock, heap_unlock, opt_level, kbd_intr):
        setattr(mod, fn.__name__, fn)
    return mod


def install(search_device: bool = True) -> None:
    """Make firmware modules importable and runnable in this CPython process."""
    global _installed
    if _installed:
        return
    # The emulator's hardware modules come after the standard library on the path, so the
    # MicroPython-side time.py/select.py there never shadow CPython's own.
    for path in (MPY_DIR, SHARED_DIR) + ((DEVICE_DIR / "lib",) if search_device else ()):
        if str(path) not in sys.path:
            sys.path.append(str(path))
    import vclock  # type: ignore[import-not-found]

    def ticks_ms() -> int:
        return int(vclock.now_us() // 1000)

    def ticks_us() -> int:
        return int(vclock.now_us())

    def sleep_ms(ms: int) -> None:
        vclock.advance_us(ms * 1000)

    def sleep_us(us: int) -> None:
        vclock.advance_us(us)

    extra: dict[str, Callable[..., Any]] = {
        "ticks_ms": ticks_ms,
        "ticks_us": ticks_us,
        "ticks_cpu": ticks_us,
        "ticks_add": _ticks_add,
        "ticks_diff": _ticks_diff,
        "sleep_ms": sleep_ms,
        "sleep_us": sleep_us,
    }
    for name, fn in extra.items():
        setattr(time, name, fn)
    sys.modules.setdefault("micropython", _micropython_module())
    _installed = True
