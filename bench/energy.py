"""Hours per charge: the energy model (emulator.energy, docs/power.md) over an emulated work-day.

    python -m bench energy

The firmware (real micropython, emulated board) wears an 8 h office day, then goes on the
charger where the production sync agent (bleak on a bumble virtual link) pulls the log: one
end-of-day sync.  The emulator books awake, light-sleep, radio and motor time on its virtual
clock, and what of it accrued on USB; the model adds the firmware's computing (its per-sample
path timed in the real MicroPython unix port, x100 for the ESP32) and prices everything with
datasheet currents.  Baseline, same run: the same day with `light_sleep` off (the CPU idles
awake between FIFO drains, as MicroPython does by default).
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.progress import Progress

from bench import BenchResult, one_device_store

HOURS = 8.0
SEED = 21
ODR_HZ = 52
DRAIN_MS = 500
TARGET_H = 40.0
CONSUMERS = ["cpu_awake", "light_sleep", "imu", "radio", "motor", "quiescent"]


def _wear_the_day(
    progress: Progress,
    label: str,
    config: dict[str, Any],
    presses: list[tuple[float, float]] | None = None,
    host: bool = True,
) -> dict[str, Any]:
    from companion.sync.emulated import sync_into_store
    from emulator.runner import Board
    from emulator.scenarios import generate
    from emulator.workday import Wearer, run_day

    recording = generate("office-day", seed=SEED, hours=HOURS)
    key = secrets.token_bytes(32)
    task = progress.add_task(label, total=recording.duration_s + 300)
    with tempfile.TemporaryDirectory(prefix="bench-energy-") as tmp:
        work = Path(tmp)
        engine = one_device_store(work / "companion.db", "E001", key)
        board = Board(config={"odr_hz": ODR_HZ, "drain_ms": DRAIN_MS, **config}, button_presses=presses or [])
        wearer = Wearer("E001", key, recording, 1_767_600_000, board=board)
        sync = sync_into_store(engine, "E001")

        async def nobody(_radio: Any, _central: Any) -> None:
            return None

        day = run_day(
            wearer,
            work / "board",
            sync if host else nobody,
            progress=lambda t: progress.update(task, completed=t),
        )
        engine.dispose()
    synced = day.host.records if day.host is not None else 0
    return {**day.run.board, "records_synced": synced}


def run(progress: Progress) -> BenchResult:
    from bench.firmware import per_sample_cost
    from emulator.energy import Battery, CpuCost, estimate

    task = progress.add_task("timing the per-sample path (micropython)", total=None)
    unix_us = per_sample_cost()["ours_us"]
    progress.remove_task(task)
    cpu = CpuCost.from_unix_port(unix_us)
    battery = Battery()

    ours_board = _wear_the_day(progress, "wearing, light sleep on", {})
    base_board = _wear_the_day(progress, "wearing, light sleep off (baseline)", {"light_sleep": False})
    # The same day with a sync window opened by the wearer at noon and no host in range: the
    # radio is on, on battery, for the whole window (the worst case of a button sync).
    button_board = _wear_the_day(
        progress, "wearing, a button window at noon, no host", {}, presses=[(4 * 3600.0, 7.0)], host=False
    )
    kw = {"odr_hz": ODR_HZ, "drain_s": DRAIN_MS / 1000, "imus": 1}
    ours = estimate(ours_board, cpu=cpu, **kw)  # type: ignore[arg-type]
    base = estimate(base_board, cpu=cpu, **kw)  # type: ignore[arg-type]
    button = estimate(button_board, cpu=cpu, **kw)  # type: ignore[arg-type]
    # How sensitive the answer is to the 100x rule: the ESP32 twice as slow again.
    slow = estimate(ours_board, cpu=replace(cpu, per_sample_s=cpu.per_sample_s * 2), **kw)  # type: ignore[arg-type]

    worn_h = ours.battery_s / 3600
    rows: list[list[Any]] = []
    ours_share, base_share = ours.shares(), base.shares()
    for name in CONSUMERS:
        rows.append(
            [
                f"{name}: mA (share)",
                f"{ours.mah[name] / worn_h:.3f}  {ours_share[name]:.1%}",
                f"{base.mah[name] / (base.battery_s / 3600):.3f}  {base_share[name]:.1%}",
                "",
            ]
        )
    rows += [
        ["mean battery current (mA)", round(ours.mean_ma, 3), round(base.mean_ma, 3), ""],
        [
            "CPU awake on battery (%)",
            round(100 * ours.awake_s / ours.battery_s, 2),
            round(100 * base.awake_s / base.battery_s, 2),
            "",
        ],
        [
            "hours per charge (500 mAh)",
            round(ours.hours_per_charge(battery), 1),
            round(base.hours_per_charge(battery), 1),
            f">= {TARGET_H:g}",
        ],
        ["  with a noon button window, no host", round(button.hours_per_charge(battery), 1), "", ""],
        ["  if the ESP32 is 200x slower", round(slow.hours_per_charge(battery), 1), "", ""],
    ]
    figures: dict[str, Any] = {
        "hours_per_charge": round(ours.hours_per_charge(battery), 1),
        "hours_per_charge_no_light_sleep": round(base.hours_per_charge(battery), 1),
        "hours_ratio_vs_no_light_sleep": round(
            ours.hours_per_charge(battery) / base.hours_per_charge(battery), 2
        ),
        "hours_per_charge_esp32_200x": round(slow.hours_per_charge(battery), 1),
        "hours_per_charge_button_window": round(button.hours_per_charge(battery), 1),
        "button_window_radio_s": round(button.radio_s, 1),
        "mean_ma": round(ours.mean_ma, 3),
        "mean_ma_no_light_sleep": round(base.mean_ma, 3),
        "awake_pct": round(100 * ours.awake_s / ours.battery_s, 2),
        "compute_pct": round(100 * ours.compute_s / ours.battery_s, 2),
        "radio_on_battery_s": round(ours.radio_s, 1),
        "radio_on_usb_s": round(ours_board.get("usb_radio_ms", 0) / 1000, 1),
        "motor_s": round(ours.motor_s, 1),
        "unix_us_per_sample": round(unix_us, 3),
        "battery_hours_emulated": round(worn_h, 2),
        "records_synced": ours_board["records_synced"],
        "share": {k: round(v, 4) for k, v in ours_share.items()},
    }
    return BenchResult(
        title=f"energy of a {HOURS:g} h office day + end-of-day sync, 500 mAh cell ({battery.usable_mah:g} mAh usable)",
        columns=["figure", "ours (light sleep)", "same-run baseline (no light sleep)", "target"],
        rows=rows,
        figures=figures,
        notes=[
            "currents and their sources: docs/power.md; the end-of-day sync runs on USB power (not billed)",
            f"firmware computing: {unix_us:.2f} us/sample on the unix port x100 = "
            f"{cpu.per_sample_s * 1e3:.2f} ms/sample on the ESP32, + {cpu.per_wake_s * 1e3:g} ms per wake",
        ],
    )
