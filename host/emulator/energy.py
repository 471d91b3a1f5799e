"""The energy model: what an emulated board's run would draw from its battery.

The emulator books every microsecond of the virtual clock as awake or light-sleeping, keeps the
radio-on intervals and the motor's duty-weighted on time, and notes which part of all that
accrued on USB power (the charger pays for it).  This module turns those figures into a mean
battery current and hours per charge, with each consumer's share, from datasheet currents
(docs/power.md states them and their sources).

One thing the emulator cannot see is the firmware's own computing: on the virtual clock the
processing of a batch takes no time (only I2C wire time and waits do).  The model adds it from
a measurement: the firmware's per-sample path timed in the real MicroPython unix port, scaled by
DESIGN's rule that an ESP32 is about 100x slower, plus a fixed cost per wake.  That time is taken
out of light sleep, where it would have been spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ESP32_SLOWDOWN = 100.0  # DESIGN's cost model: the ESP32 runs ~100x slower than the unix port here

# Combined accelerometer + gyroscope current of each IMU variant in high-performance mode (mA),
# from ST's datasheets (docs/power.md).
IMU_MA = {
    "LSM6DSO": 0.55,
    "LSM6DSOX": 0.55,
    "LSM6DS3TR-C": 1.25,
    "LSM6DS3": 1.25,
    "ISM330DHCX": 1.50,
}


@dataclass(frozen=True)
class Currents:
    """Currents at the cell (mA); docs/power.md gives the source of each."""

    cpu_awake_ma: float = 44.0  # ESP32 modem-sleep, 160 MHz dual core (upper figure)
    light_sleep_ma: float = 0.8  # ESP32 light sleep
    radio_on_ma: float = 100.0  # ESP32 with BLE receiving/listening (replaces cpu_awake)
    motor_ma: float = 75.0  # 10 mm coin ERM at 3 V, full duty
    quiescent_ma: float = 0.05  # LDO, battery divider, charger standby: always
    imu_ma: float = IMU_MA["LSM6DSO"]  # per IMU, always sampling


@dataclass(frozen=True)
class CpuCost:
    """The firmware's computing per sample and per wake on the ESP32 (seconds)."""

    per_sample_s: float
    per_wake_s: float = 0.002  # leaving light sleep, asyncio, FIFO parsing, alert and log work

    @classmethod
    def from_unix_port(cls, unix_us_per_sample: float, slowdown: float = ESP32_SLOWDOWN) -> CpuCost:
        return cls(per_sample_s=unix_us_per_sample * slowdown / 1e6)


@dataclass
class Battery:
    capacity_mah: float = 500.0
    usable_fraction: float = 0.85  # down to ~3.5 V, where the 3.3 V LDO drops out

    @property
    def usable_mah(self) -> float:
        return self.capacity_mah * self.usable_fraction


@dataclass
class EnergyReport:
    battery_s: float  # virtual time on battery
    awake_s: float  # CPU awake on battery, the firmware's computing included
    sleep_s: float  # CPU light-sleeping on battery
    compute_s: float  # the firmware's estimated computing on battery
    radio_s: float  # radio on, on battery
    motor_s: float  # motor on, full-duty equivalent, on battery
    imus: int
    mah: dict[str, float] = field(default_factory=dict)  # charge per consumer over battery_s

    @property
    def total_mah(self) -> float:
        return sum(self.mah.values())

    @property
    def mean_ma(self) -> float:
        return self.total_mah / (self.battery_s / 3600) if self.battery_s > 0 else 0.0

    def hours_per_charge(self, battery: Battery) -> float:
        return battery.usable_mah / self.mean_ma if self.mean_ma > 0 else float("inf")

    def shares(self) -> dict[str, float]:
        total = self.total_mah
        return {k: (v / total if total else 0.0) for k, v in self.mah.items()}


def estimate(
    board: dict[str, Any],
    *,
    odr_hz: float,
    drain_s: float,
    imus: int,
    cpu: CpuCost,
    currents: Currents | None = None,
) -> EnergyReport:
    """The battery's share of an emulated run, from the board's ``@board end`` figures."""
    c = currents or Currents()
    battery_s = (board["t_ms"] - board.get("usb_ms", 0)) / 1000
    awake_s = (board["awake_ms"] - board.get("usb_awake_ms", 0)) / 1000
    sleep_s = (board["sleep_ms"] - board.get("usb_sleep_ms", 0)) / 1000
    radio_s = (board.get("radio_ms", 0) - board.get("usb_radio_ms", 0)) / 1000
    motor_s = (board.get("motor_ms", 0) - board.get("usb_motor_ms", 0)) / 1000
    samples = odr_hz * imus * battery_s
    wakes = battery_s / drain_s
    compute_s = samples * cpu.per_sample_s + wakes * cpu.per_wake_s
    # Computing happens where the emulator booked sleep (a board without light sleep computes
    # in time it was awake anyway, and has no sleep to take it from).
    moved = min(compute_s, sleep_s)
    awake_s += moved
    sleep_s -= moved
    # While the radio is on the CPU is awake too: radio_on_ma replaces cpu_awake_ma then.
    cpu_only_s = max(0.0, awake_s - radio_s)
    h = 1 / 3600
    mah = {
        "cpu_awake": c.cpu_awake_ma * cpu_only_s * h,
        "light_sleep": c.light_sleep_ma * sleep_s * h,
        "imu": c.imu_ma * imus * battery_s * h,
        "radio": c.radio_on_ma * min(radio_s, awake_s) * h,
        "motor": c.motor_ma * motor_s * h,
        "quiescent": c.quiescent_ma * battery_s * h,
    }
    return EnergyReport(battery_s, awake_s, sleep_s, compute_s, radio_s, motor_s, imus, mah)
