"""Run one MicroPython-compatible snippet in CPython and in the real micropython.

Firmware tests are written once as a snippet that prints its observations; they run in both
interpreters and must print the same thing, so the firmware's behaviour is checked where it
really runs (MicroPython) and the result is comparable with the host's view (CPython).
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from pathlib import Path

from emulator import cpython
from emulator.micropython_cmd import run_micropython


def run_cpython(code: str, cwd: Path) -> str:
    cpython.install()
    import vclock  # type: ignore[import-not-found]

    vclock.reset()
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<firmware test>", "exec"), {"__name__": "__test__"})
    finally:
        os.chdir(old)
    return out.getvalue()


def run_both(code: str, tmp_path: Path) -> str:
    """Run ``code`` in both interpreters (each in its own empty folder); return the shared output."""
    code = textwrap.dedent(code)
    cpy_dir = tmp_path / "cpython"
    mpy_dir = tmp_path / "micropython"
    cpy_dir.mkdir(exist_ok=True)
    mpy_dir.mkdir(exist_ok=True)
    from_cpython = run_cpython(code, cpy_dir)
    from_micropython = run_micropython(code, cwd=mpy_dir)
    assert from_micropython == from_cpython, (
        f"MicroPython and CPython disagree\n--- micropython ---\n{from_micropython}\n--- cpython ---\n{from_cpython}"
    )
    return from_micropython
