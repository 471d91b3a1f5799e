"""A simulated wearer's day on an emulated board, ending on the charger with a BLE sync.

The firmware runs in the real ``micropython`` (emulator.runner) while a host task (the sync
agent, on bleak over bumble) waits on the same virtual BLE link (emulator.link).  At the end of
the day the wearer puts the board on USB power: the firmware opens its sync window, advertises,
and the host syncs.  Used by ``posture demo``, the sync benchmark and the end-to-end tests.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.link import Link
from emulator.radio import Central, Radio
from emulator.recording import Recording
from emulator.runner import Board, BoardRunner, RunResult

CHARGE_S = 300.0  # the board's time on the charger at the end of the day


@dataclass
class Wearer:
    """One simulated worker's board for the day."""

    device_id: str
    key: bytes
    recording: Recording
    start_unix_s: int
    board: Board = field(default_factory=Board)
    charge_s: float = CHARGE_S


@dataclass
class DayResult:
    run: RunResult  # what the board printed and what is left on its flash
    host: Any  # what the host task returned
    wall_s: float
    radio: dict[str, int]  # link statistics (links dropped…)


HostTask = Callable[[Radio, Central], Awaitable[Any]]


def prepare_board(wearer: Wearer, workdir: Path, radio_port: int) -> BoardRunner:
    """A board that wears ``wearer.recording`` and then charges for ``charge_s``."""
    day_s = wearer.recording.duration_s
    board = wearer.board
    board.device_id = wearer.device_id
    board.start_unix_s = wearer.start_unix_s
    board.radio_port = radio_port
    board.usb_power = [*board.usb_power, (day_s, day_s + wearer.charge_s)]
    board.power_off_s = day_s + wearer.charge_s
    runner = BoardRunner(workdir, board)
    runner.prepare(wearer.recording)
    # What tools/flash.py provision writes: the device's sync key.
    (runner.flash_dir / "key.bin").write_bytes(wearer.key)
    return runner


def run_day(
    wearer: Wearer,
    workdir: Path,
    host: HostTask,
    *,
    progress: Callable[[float], None] | None = None,
    configure_link: Callable[[Radio], None] | None = None,
    host_timeout_s: float = 120.0,
) -> DayResult:
    """Run the wearer's day and the host task side by side; returns both results."""
    start = time.perf_counter()
    with Link() as link:
        assert link.radio is not None
        if configure_link is not None:
            configure_link(link.radio)
        runner = prepare_board(wearer, workdir, link.port)
        future = link.submit(host)
        board_radio = link.radio
        # Once the host is done, nobody waits on the link: the board's clock may race again.
        future.add_done_callback(lambda _f: link.call_soon(lambda: board_radio.set_peer_waiting(False)))
        result = runner.run(progress)
        host_result = future.result(timeout=host_timeout_s)
        radio = {"links_dropped": link.radio.links_dropped}
    return DayResult(result, host_result, time.perf_counter() - start, radio)
