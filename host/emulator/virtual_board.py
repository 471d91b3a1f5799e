"""A virtual posture board on a serial port: MicroPython's REPL on a pseudo-terminal.

    python -m emulator.virtual_board [--dir DIR] [--flash-kib N]     # prints the port

Tools that talk to a real board over USB serial (``mpremote``, ``tools/flash.py``) talk to
this one unchanged.  Two halves:

- this module (CPython) owns the pseudo-terminal and speaks the REPL protocol on it: the
  friendly REPL, the raw REPL (Ctrl-A, Ctrl-B, Ctrl-C, Ctrl-D, soft reset on Ctrl-D with
  an empty buffer) and raw-paste mode (``\\x05A\\x01`` -> ``R\\x01``, window size, ``\\x01``
  flow control);
- ``mpy/rawrepl_board.py`` runs in one persistent real ``micropython`` process with the
  emulator's ``machine``/``time``/``select``/``vboard`` modules loaded, an emulated LSM6DS
  on I2C bus 0, and the board's flash folder mounted at ``/``.  It executes the code the
  REPL receives.

Ctrl-C while code runs becomes SIGINT for the micropython process (KeyboardInterrupt in
the code, as on a board); whatever follows the Ctrl-C is kept and handled afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any

from emulator import MPY_DIR
from emulator.micropython_cmd import micropython_path

BANNER = b"MicroPython v1.29.0 on 2026-01-01; posture virtual board (unix port) with ESP32 pins\r\n"
BANNER += b'Type "help()" for more information.\r\n'
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 512
FOREIGN_GREETING = (
    b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    b"Arduino sketch 'blink' v2 running\r\n"
)
UNIX_2000_S = 946684800
_CTRL_A, _CTRL_B, _CTRL_C, _CTRL_D, _CTRL_E = 1, 2, 3, 4, 5


class VirtualBoardError(RuntimeError):
    """The virtual board could not start or its micropython process failed."""


def write_constant_stimulus(path: Path, accel_g: tuple[float, float, float] = (1.0, 0.0, 0.0)) -> None:
    """A stimulus file (docs/emulator.md) holding the wearer upright and still for 30 days."""
    rate_hz = 1.0 / (30 * 86400)
    rows = 2
    with open(path, "wb") as f:
        f.write(struct.pack("<4sHHfI", b"PSTM", 1, 6, rate_hz, rows))
        for _ in range(rows):
            f.write(struct.pack("<6f", *accel_g, 0.0, 0.0, 0.0))


class VirtualBoard:
    """A pseudo-terminal with a MicroPython REPL in front of a real ``micropython`` process.

    ``workdir`` holds the board's flash (``workdir/flash``), its board file and stimulus.
    ``flash_bytes`` limits the flash (0: the host's disk); writes beyond it fail with
    ``OSError(ENOSPC)``.  ``raw_repl=False`` makes a board that runs something else (a
    foreign firmware that never answers the REPL's control characters)."""

    def __init__(
        self,
        workdir: Path,
        *,
        flash_bytes: int = 0,
        variant: str = "LSM6DSO",
        imu_addr: int = 0x6A,
        raw_repl: bool = True,
        start_unix_s: int = 1_767_600_000,
    ) -> None:
        self.workdir = Path(workdir)
        self.flash_dir = self.workdir / "flash"
        self.flash_bytes = flash_bytes
        self.variant = variant
        self.imu_addr = imu_addr
        self.raw_repl = raw_repl
        self.start_unix_s = start_unix_s
        self.port = ""
        self._master = -1
        self._slave = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._marker = b"\x1b]vb-" + secrets.token_hex(8).encode() + b"-"
        self._started_marker = self._marker + b"s\x07"  # code began to run: Ctrl-C may interrupt
        self._done_marker = self._marker + b"d\x07"  # the command is over
        self._lock = threading.Condition()
        self._pending = bytearray()
        self._executing = False  # a command is with micropython
        self._interruptible = False  # ... and its code is running
        self._interrupt_pending = False  # Ctrl-C came before the code started
        self._done = threading.Event()
        self._stopping = False
        self._mode = "friendly"
        self._threads: list[threading.Thread] = []

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> str:
        """Create the port and power the board on; returns the port's path."""
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        # Keep the slave open: without it the master reads EIO whenever no tool is attached.
        self.port = os.ttyname(self._slave)
        if self.raw_repl:
            self._write_board_file()
            self._start_micropython()
            self._spawn(self._process_input)
        self._spawn(self._read_port)
        return self.port

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            self._lock.notify_all()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Any) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self._threads.append(t)

    def _write_board_file(self) -> None:
        stim = self.workdir / "stimulus_0.bin"
        write_constant_stimulus(stim)
        spec = {
            "flash_dir": str(self.flash_dir),
            "flash_bytes": self.flash_bytes,
            "device_id": "virtual",
            "sensors": [
                {
                    "addr": self.imu_addr,
                    "variant": self.variant,
                    "stimulus": str(stim),
                    "seed": 1,
                    "noise": True,
                }
            ],
            "start_time_2000": self.start_unix_s - UNIX_2000_S,
            "power_off_s": None,
            "pins": {"motor": 25, "button": 0, "battery_adc": 35, "usb_sense": 34},
        }
        (self.workdir / "board.json").write_text(json.dumps(spec))

    def _start_micropython(self) -> None:
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(MPY_DIR), ".frozen"])
        env["POSTURE_BOARD"] = str(self.workdir / "board.json")
        env["POSTURE_VB_MARKER"] = self._marker.decode()
        self._done.clear()
        self._proc = subprocess.Popen(
            [micropython_path(), str(MPY_DIR / "rawrepl_board.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            env=env,
            bufsize=0,
        )
        proc = self._proc
        self._spawn(lambda: self._read_micropython(proc))
        if not self._done.wait(timeout=30):
            raise VirtualBoardError("the virtual board's micropython process did not start")

    # ---- port side ------------------------------------------------------------------------

    def _write_port(self, data: bytes) -> None:
        if data and self._master >= 0:
            try:
                os.write(self._master, data)
            except OSError:
                pass

    def _read_port(self) -> None:
        while not self._stopping:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            if not self.raw_repl:
                self._write_port(FOREIGN_GREETING)
                continue
            with self._lock:
                for byte in data:
                    if byte == _CTRL_C and self._executing:
                        # Interrupt the running code; what follows stays queued.
                        if self._interruptible:
                            self._interrupt()
                        else:
                            self._interrupt_pending = True
                    else:
                        self._pending.append(byte)
                self._lock.notify_all()

    def _interrupt(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)

    def _next_byte(self) -> int:
        with self._lock:
            while not self._pending:
                if self._stopping:
                    raise EOFError
                self._lock.wait(0.5)
            byte = self._pending[0]
            del self._pending[0]
            return byte

    # ---- micropython side -----------------------------------------------------------------

    def _read_micropython(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        started, done = self._started_marker, self._done_marker
        held = b""
        while True:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            held += data
            while True:
                i = held.find(self._marker)
                if i < 0 or len(held) < i + len(done):
                    break
                self._forward(held[:i])
                found = held[i : i + len(done)]
                held = held[i + len(done) :]
                with self._lock:
                    if found == started:
                        self._interruptible = True
                        if self._interrupt_pending:
                            self._interrupt_pending = False
                            self._interrupt()
                    elif found == done:
                        self._interruptible = False
                        self._interrupt_pending = False
                        self._done.set()
            # Forward all but a tail that could be the start of a marker.
            if self._marker in held:
                continue
            keep = 0
            for n in range(min(len(held), len(done) - 1), 0, -1):
                if done.startswith(held[-n:]) or started.startswith(held[-n:]):
                    keep = n
                    break
            self._forward(held[: len(held) - keep])
            held = held[len(held) - keep :]
        self._forward(held)
        if not self._stopping:
            self._write_port(b"\r\nvirtual board: micropython exited (%d)\r\n" % (proc.wait(),))
        self._done.set()

    def _forward(self, data: bytes) -> None:
        if not data:
            return
        if self._mode == "friendly":
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self._write_port(data)

    def _command(self, header: bytes, body: bytes = b"") -> None:
        """Run one command in micropython and wait for its end."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._start_micropython()
            proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._done.clear()
        with self._lock:
            self._interrupt_pending = False
            self._executing = True
        try:
            proc.stdin.write(header + body)
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        self._done.wait()
        with self._lock:
            self._executing = False

    def _soft_reset(self) -> None:
        self._write_port(b"MPY: soft reboot\r\n")
        self._command(b"R\n")

    # ---- the REPL -----------------------------------------------------------------------------

    def _process_input(self) -> None:
        try:
            while True:
                if self._mode == "friendly":
                    self._friendly()
                else:
                    self._raw()
        except EOFError:
            return

    def _friendly(self) -> None:
        line = bytearray()
        while True:
            c = self._next_byte()
            if c == _CTRL_A:
                self._mode = "raw"
                self._write_port(b"\r\n" + RAW_BANNER)
                return
            if c == _CTRL_B:
                self._write_port(b"\r\n" + BANNER + b">>> ")
                line.clear()
            elif c == _CTRL_C:
                self._write_port(b"\r\n>>> ")
                line.clear()
            elif c == _CTRL_D:
                self._write_port(b"\r\n")
                self._soft_reset()
                self._write_port(BANNER + b">>> ")
                line.clear()
            elif c in (0x08, 0x7F):
                if line:
                    line.pop()
                    self._write_port(b"\x08 \x08")
            elif c == 0x0D:
                self._write_port(b"\r\n")
                if line.strip():
                    code = bytes(line)
                    self._command(b"F %d\n" % len(code), code)
                line.clear()
                self._write_port(b">>> ")
            elif c != 0x0A:
                line.append(c)
                self._write_port(bytes([c]))

    def _raw(self) -> None:
        """One raw-REPL prompt: collect a command and run it (or leave raw mode)."""
        self._write_port(b">")
        line = bytearray()
        while True:
            c = self._next_byte()
            if c == _CTRL_A:
                if bytes(line) == b"\x05A":
                    self._raw_paste()
                    return
                self._write_port(RAW_BANNER)
                return
            if c == _CTRL_B:
                self._write_port(b"\r\n" + BANNER + b">>> ")
                self._mode = "friendly"
                return
            if c == _CTRL_C:
                line.clear()
            elif c == _CTRL_D:
                break
            else:
                line.append(c)
        self._write_port(b"OK")
        if not line:
            self._write_port(b"\r\n")
            self._soft_reset()
            self._write_port(RAW_BANNER)
            return
        code = bytes(line)
        self._command(b"E %d\n" % len(code), code)

    def _raw_paste(self) -> None:
        self._write_port(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
        code = bytearray()
        received = 0
        while True:
            c = self._next_byte()
            if c == _CTRL_D:
                break
            if c == _CTRL_C:
                # Abandon the paste, as a board does on a keyboard interrupt.
                self._write_port(b"\x04")
                return
            code.append(c)
            received += 1
            if received % PASTE_WINDOW == 0:
                self._write_port(b"\x01")
        self._write_port(b"\x04")
        self._command(b"E %d\n" % len(code), bytes(code))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.virtual_board",
        description="A virtual posture board on a pseudo-terminal: MicroPython's REPL, an emulated "
        "LSM6DS on I2C, and a flash folder on this machine. Prints the port; Ctrl-C stops it.",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("virtual-board"), help="board folder (flash/ inside)"
    )
    parser.add_argument("--flash-kib", type=int, default=0, help="flash size in KiB (default: unlimited)")
    parser.add_argument("--variant", default="LSM6DSO", help="IMU part (default LSM6DSO)")
    parser.add_argument(
        "--foreign", action="store_true", help="a board running something else (no MicroPython REPL)"
    )
    args = parser.parse_args(argv)
    board = VirtualBoard(
        args.dir, flash_bytes=args.flash_kib * 1024, variant=args.variant, raw_repl=not args.foreign
    )
    port = board.start()
    print(port, flush=True)
    print(
        f"virtual board on {port}; flash in {board.flash_dir}. Try: mpremote connect {port} fs ls\n"
        "Ctrl-C stops the board.",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
