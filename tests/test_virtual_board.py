"""The virtual board speaks MicroPython's REPL protocols well enough for real mpremote."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mpremote.transport_serial import SerialTransport

from emulator.virtual_board import VirtualBoard

MPREMOTE = [sys.executable, "-m", "mpremote"]


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "board") as vb:
        yield vb


@pytest.fixture
def transport(board: VirtualBoard) -> Iterator[SerialTransport]:
    t = SerialTransport(board.port)
    t.serial.timeout = 5
    t.enter_raw_repl(soft_reset=True)
    yield t
    t.close()


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=60)


def test_mpremote_copies_files_and_lists_them_with_their_sizes(board: VirtualBoard, tmp_path: Path) -> None:
    local = tmp_path / "hello.py"
    local.write_text("print('hello from the flash')\n" * 100)
    assert mpremote(board.port, "fs", "mkdir", ":lib").returncode == 0
    assert mpremote(board.port, "fs", "cp", str(local), ":lib/hello.py").returncode == 0
    assert (board.flash_dir / "lib" / "hello.py").read_bytes() == local.read_bytes()

    listing = mpremote(board.port, "fs", "ls", "--size", ":lib")
    assert listing.returncode == 0, listing.stderr
    assert f"{local.stat().st_size} hello.py" in " ".join(listing.stdout.split())

    run = mpremote(board.port, "exec", "import hello")
    assert run.stdout.count("hello from the flash") == 100


def test_the_board_has_the_emulated_hardware(board: VirtualBoard) -> None:
    r = mpremote(board.port, "exec", "import machine, sys; print(machine.I2C(0).scan(), sys.platform)")
    assert r.returncode == 0, r.stderr
    assert "[106] linux" in r.stdout  # the IMU at 0x6A


def test_raw_paste_moves_code_larger_than_its_window(transport: SerialTransport) -> None:
    code = "x = 0\n" + "x += 1\n" * 3000 + "print(x)"
    assert transport.exec(code).strip() == b"3000"
    assert transport.use_raw_paste  # it did not fall back to the plain raw REPL


def test_errors_come_back_as_the_boards_traceback(transport: SerialTransport) -> None:
    out, err = transport.exec_raw("print('before')\nopen('/no/such/file')")
    assert out.strip() == b"before"
    assert b"OSError: [Errno 2] ENOENT" in err


def test_globals_persist_until_a_soft_reset(transport: SerialTransport) -> None:
    transport.exec("kept = 41")
    assert transport.eval("kept + 1") == 42
    transport.enter_raw_repl(soft_reset=True)
    _out, err = transport.exec_raw("print(kept)")
    assert b"NameError" in err


def test_ctrl_c_interrupts_running_code_and_keeps_what_follows(transport: SerialTransport) -> None:
    transport.exec_raw_no_follow("while True:\n    pass")
    time.sleep(0.3)
    # Ctrl-C and the next command arrive together, as mpremote sends them.
    transport.serial.write(b"\x03print('after')\x04")
    out, err = transport.follow(timeout=10)
    assert out == b"" and b"KeyboardInterrupt" in err
    assert transport.read_until(1, b">", timeout=10).endswith(b">")
    assert transport.serial.read(2) == b"OK"
    out, err = transport.follow(timeout=10)
    assert out.strip() == b"after" and err == b""


def test_mpremote_resumes_after_interrupting_a_running_program(board: VirtualBoard) -> None:
    # A program left running (the firmware's main loop, say): the next mpremote interrupts it.
    t = SerialTransport(board.port)
    t.enter_raw_repl(soft_reset=True)
    t.exec_raw_no_follow("import time\nwhile True:\n    time.sleep_ms(10)")
    t.close()
    r = mpremote(board.port, "exec", "print('next session')")
    assert r.returncode == 0, r.stderr
    assert "next session" in r.stdout


def test_the_friendly_repl_evaluates_lines(board: VirtualBoard) -> None:
    t = SerialTransport(board.port)
    t.serial.timeout = 5
    try:
        t.serial.write(b"\x02")
        assert t.read_until(1, b">>> ", timeout=5).endswith(b">>> ")
        t.serial.write(b"6 * 7\r")
        assert b"42\r\n>>> " in t.read_until(1, b"42\r\n>>> ", timeout=5)
    finally:
        t.close()


def test_module_entry_point_prints_the_port(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.virtual_board", "--dir", str(tmp_path / "vb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        r = mpremote(port, "exec", "print(1 + 1)")
        assert r.stdout.strip() == "2"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
