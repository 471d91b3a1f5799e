"""Run the firmware in the real ``micropython`` command on an emulated board.

A run lays out the board's flash folder the way ``tools/flash.py`` lays out a real board
(``/main.py``, ``/lib/*.py``, ``/lib/protocol.py``, ``/config.json``), writes one stimulus
file per IMU from a recording, describes the board in a JSON board file, and powers the
board on until the recording ends.  Afterwards the host reads what the firmware stored on
its flash (the record log), as a companion would after a sync, and what it printed on its
serial console (the optional per-sample trace).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import protocol
from emulator import DEVICE_DIR, MPY_DIR, SHARED_DIR
from emulator.micropython_cmd import micropython_path
from emulator.recording import Recording, write_stimulus

UNIX_2000_S = 946684800
IMU_ADDRESSES = (0x6A, 0x6B)


class FirmwareRunError(RuntimeError):
    """The emulated board did not run to its power-off (the firmware crashed or hung)."""


@dataclass
class SensorSpec:
    variant: str = "LSM6DSO"
    seed: int = 1
    noise: bool = True


@dataclass
class Board:
    """What the emulated board is and what happens to it during the run."""

    sensors: Sequence[SensorSpec] = (SensorSpec(),)
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None  # written verbatim instead of `config` (a damaged file)
    device_id: str = "emulated-1"
    start_unix_s: int | None = 1_767_600_000  # None: the RTC starts at 2000-01-01 (dead battery)
    power_off_s: float | None = None  # None: when the recording ends
    button_presses: Sequence[tuple[float, float]] = ()  # (at_s, hold_s)
    usb_power: Sequence[tuple[float, float]] = ()  # (from_s, to_s) on the charger
    i2c_faults: Sequence[dict[str, Any]] = ()  # {"addr", "start_s", "end_s", "errno"}
    attached: Sequence[bool] = (True, True)  # False: the sensor's connector is loose
    other_devices: Sequence[dict[str, Any]] = ()  # {"addr", "registers": {reg: value}}
    cpu_stalls: Sequence[dict[str, float]] = ()  # {"at_s", "for_s"}: the CPU hangs
    pins: dict[str, int] = field(
        default_factory=lambda: {"motor": 25, "button": 0, "battery_adc": 35, "usb_sense": 34}
    )
    heap_bytes: int | None = None
    radio_port: int | None = None  # TCP port of an emulator.radio.Radio on 127.0.0.1 (None: no peer)


@dataclass
class RunResult:
    records: list[protocol.Record]
    trace_columns: list[str]
    trace: list[list[float]]
    board: dict[str, Any]  # the emulator's own accounting ("@board end" line)
    console: list[str]  # everything else the firmware printed
    notes: list[str]  # what the emulator did that a user should know (resampling…)

    def decoded(self) -> list[tuple[protocol.Record, dict[str, Any]]]:
        return [(r, protocol.decode_payload(r.rtype, r.payload)) for r in self.records]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for r, fields in self.decoded():
            if r.rtype not in protocol.MINUTE_TYPES:
                out.append({"seq": r.seq, "type": protocol.RECORD_NAMES[r.rtype], **fields})
        return out

    def minutes(self) -> list[dict[str, Any]]:
        return [{"seq": r.seq, **f} for r, f in self.decoded() if r.rtype in protocol.MINUTE_TYPES]

    def alerts(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == "alert"]


def firmware_files() -> list[tuple[Path, str]]:
    """(source, path on the board) for every firmware file, as a deploy lays them out."""
    files = [(DEVICE_DIR / "main.py", "main.py")]
    if (DEVICE_DIR / "boot.py").exists():
        files.append((DEVICE_DIR / "boot.py", "boot.py"))
    files += [(p, f"lib/{p.name}") for p in sorted((DEVICE_DIR / "lib").glob("*.py"))]
    files.append((SHARED_DIR / "protocol.py", "lib/protocol.py"))
    return files


def install_firmware(flash_dir: Path) -> None:
    (flash_dir / "lib").mkdir(parents=True, exist_ok=True)
    for src, dest in firmware_files():
        shutil.copyfile(src, flash_dir / dest)


def read_log(flash_dir: Path) -> list[protocol.Record]:
    """Every record in the board's log folder, in seq order (torn tails ignored)."""
    records: list[protocol.Record] = []
    log = flash_dir / "log"
    if not log.exists():
        return records
    for seg in sorted(log.glob("*.seg")):
        found, _valid = protocol.scan_valid_prefix(seg.read_bytes())
        records.extend(found)
    return sorted(records, key=lambda r: r.seq)


def _pairs(words: list[str]) -> dict[str, Any]:
    return {k: int(v) for k, v in zip(words[0::2], words[1::2], strict=False)}


def _parse_board_line(line: str) -> dict[str, Any]:
    """``@board end CAUSE key value …`` -> {"cause": CAUSE, key: value, …}."""
    words = line.split()[2:]
    return {"cause": words[0], **_pairs(words[1:])}


class BoardRunner:
    """One emulated board with its flash folder under ``workdir``."""

    def __init__(self, workdir: Path, board: Board | None = None) -> None:
        self.workdir = Path(workdir)
        self.board = board or Board()
        self.flash_dir = self.workdir / "flash"

    def prepare(self, recording: Recording, *, fresh_flash: bool = True) -> list[str]:
        """Install firmware and config, write stimulus files; returns notes for the user."""
        if fresh_flash and self.flash_dir.exists():
            shutil.rmtree(self.flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        install_firmware(self.flash_dir)
        cfg = dict(self.board.config)
        cfg.setdefault("device_id", self.board.device_id)
        cfg.setdefault("imu_addrs", list(IMU_ADDRESSES[: recording.n_sensors]))
        text = self.board.config_text if self.board.config_text is not None else json.dumps(cfg)
        (self.flash_dir / "config.json").write_text(text)
        notes: list[str] = []
        sensors = []
        for i in range(recording.n_sensors):
            spec = self.board.sensors[min(i, len(self.board.sensors) - 1)]
            path = self.workdir / f"stimulus_{i}.bin"
            write_stimulus(recording, path, sensor=i)
            if self.board.attached[i]:
                sensors.append(
                    {
                        "addr": IMU_ADDRESSES[i],
                        "variant": spec.variant,
                        "stimulus": str(path),
                        "seed": spec.seed + 101 * i,
                        "noise": spec.noise,
                    }
                )
        duration_s = recording.duration_s
        spec_json = {
            "flash_dir": str(self.flash_dir),
            "device_id": self.board.device_id,
            "sensors": sensors,
            "start_time_2000": (
                None if self.board.start_unix_s is None else self.board.start_unix_s - UNIX_2000_S
            ),
            "power_off_s": self.board.power_off_s if self.board.power_off_s is not None else duration_s,
            "buttons": [{"pin": self.board.pins["button"], "presses": list(self.board.button_presses)}],
            "usb_power": list(self.board.usb_power),
            "i2c_faults": list(self.board.i2c_faults),
            "other_devices": list(self.board.other_devices),
            "cpu_stalls": list(self.board.cpu_stalls),
            "pins": self.board.pins,
            "radio_port": self.board.radio_port,
        }
        (self.workdir / "board.json").write_text(json.dumps(spec_json))
        return notes

    def run(self, progress: Callable[[float], None] | None = None, timeout_s: float = 3600) -> RunResult:
        """Power the board on until its power-off time; collect what it stored and printed."""
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(MPY_DIR), ".frozen"])
        env["POSTURE_BOARD"] = str(self.workdir / "board.json")
        cmd = [micropython_path()]
        if self.board.heap_bytes:
            cmd += ["-X", f"heapsize={self.board.heap_bytes}"]
        cmd.append(str(MPY_DIR / "launch.py"))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        board_info: dict[str, Any] = {}
        imus: list[dict[str, Any]] = []
        errors: list[str] = []

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("@board t ") and progress is not None:
                    progress(float(line.split()[2]))
                elif line.startswith("@board end"):
                    board_info.update(_parse_board_line(line))
                elif line.startswith("@board imu "):
                    imus.append(_pairs(["addr"] + line.split()[2:]))
                elif not line.startswith("@board"):
                    errors.append(line.rstrip())

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        columns: list[str] = []
        trace: list[list[float]] = []
        console: list[str] = []
        boot_offset_s = 0.0
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("T,"):
                row = [float(x) for x in line[2:].split(",")]
                row[0] += boot_offset_s
                trace.append(row)
            elif line.startswith("@boot "):
                boot_offset_s = int(line.split()[1].split("=")[1]) / 1000
                console.append(line.rstrip())
            elif line.startswith("T-COLUMNS,"):
                columns = line.rstrip().split(",")[1:]
            else:
                console.append(line.rstrip())
        try:
            proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(timeout=5)
        if proc.returncode != 0:
            raise FirmwareRunError(
                "the firmware did not run to power-off (exit {}):\n{}\n--- console ---\n{}".format(proc.returncode, "\n".join(errors[-40:]), "\n".join(console[-20:]))
            )
        notes: list[str] = []
        for imu in imus:
            source_hz, odr_hz = imu["source_mhz"] / 1000, imu["odr_mhz"] / 1000
            if odr_hz and abs(source_hz - odr_hz) > 0.01:
                notes.append(
                    f"IMU 0x{imu['addr']:02X}: the recording's {source_hz:.2f} Hz was resampled by the "
                    f"LSM6DS model to the {odr_hz:g} Hz output data rate the firmware configured"
                )
        return RunResult(
            records=read_log(self.flash_dir),
            trace_columns=columns,
            trace=trace,
            board=board_info,
            console=console,
            notes=notes,
        )


def run_recording(
    recording: Recording,
    workdir: Path,
    board: Board | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunResult:
    """Prepare a board for ``recording``, run it to the end, return what it produced."""
    runner = BoardRunner(workdir, board)
    notes = runner.prepare(recording)
    result = runner.run(progress)
    result.notes = notes + result.notes
    return result
