"""The energy model (emulator.energy) on constructed accounting, checked by hand."""

from __future__ import annotations

import pytest

from emulator.energy import Battery, CpuCost, Currents, estimate

HOUR_MS = 3_600_000


def board(**over: int) -> dict[str, int]:
    figures = {
        "t_ms": HOUR_MS,
        "awake_ms": 36_000,  # 1 % awake
        "sleep_ms": HOUR_MS - 36_000,
        "motor_ms": 0,
        "radio_ms": 0,
        "usb_ms": 0,
        "usb_awake_ms": 0,
        "usb_sleep_ms": 0,
        "usb_motor_ms": 0,
        "usb_radio_ms": 0,
    }
    figures.update(over)
    return figures


NO_COMPUTE = CpuCost(per_sample_s=0.0, per_wake_s=0.0)


def test_an_hour_at_one_percent_awake_costs_what_the_currents_say() -> None:
    c = Currents(cpu_awake_ma=40, light_sleep_ma=1, imu_ma=0.5, quiescent_ma=0.1)
    r = estimate(board(), odr_hz=52, drain_s=0.5, imus=1, cpu=NO_COMPUTE, currents=c)
    assert r.mah["cpu_awake"] == pytest.approx(40 * 0.01)
    assert r.mah["light_sleep"] == pytest.approx(1 * 0.99)
    assert r.mah["imu"] == pytest.approx(0.5)
    assert r.mah["quiescent"] == pytest.approx(0.1)
    assert r.mean_ma == pytest.approx(0.4 + 0.99 + 0.5 + 0.1)
    assert r.hours_per_charge(Battery(500, 0.8)) == pytest.approx(400 / 1.99)


def test_time_on_usb_power_is_not_billed_to_the_battery() -> None:
    # The second half hour on the charger, radio on and awake the whole time.
    half = HOUR_MS // 2
    on_usb = board(
        awake_ms=18_000 + half,
        sleep_ms=half - 18_000,
        radio_ms=half,
        usb_ms=half,
        usb_awake_ms=half,
        usb_radio_ms=half,
    )
    r = estimate(on_usb, odr_hz=52, drain_s=0.5, imus=1, cpu=NO_COMPUTE)
    assert r.battery_s == pytest.approx(1800)
    assert r.radio_s == 0
    assert r.awake_s == pytest.approx(18)
    battery_only = estimate(
        board(t_ms=half, awake_ms=18_000, sleep_ms=half - 18_000),
        odr_hz=52,
        drain_s=0.5,
        imus=1,
        cpu=NO_COMPUTE,
    )
    assert r.mean_ma == pytest.approx(battery_only.mean_ma)


def test_the_firmwares_computing_comes_out_of_light_sleep() -> None:
    cpu = CpuCost(per_sample_s=100e-6, per_wake_s=2e-3)  # 52 Hz: 5.2 ms/s + 2 wakes x 2 ms/s
    r = estimate(board(), odr_hz=52, drain_s=0.5, imus=1, cpu=cpu)
    assert r.compute_s == pytest.approx(3600 * (52 * 100e-6 + 2 * 2e-3))
    assert r.awake_s == pytest.approx(36 + r.compute_s)
    assert r.sleep_s == pytest.approx(3600 - 36 - r.compute_s)
    # A board that never sleeps computes in time it was awake anyway.
    never = estimate(board(awake_ms=HOUR_MS, sleep_ms=0), odr_hz=52, drain_s=0.5, imus=1, cpu=cpu)
    assert never.awake_s == pytest.approx(3600)


def test_radio_time_is_priced_at_the_radio_current_not_twice() -> None:
    c = Currents(cpu_awake_ma=40, radio_on_ma=100)
    r = estimate(
        board(awake_ms=36_000, radio_ms=36_000), odr_hz=52, drain_s=0.5, imus=1, cpu=NO_COMPUTE, currents=c
    )
    assert r.mah["radio"] == pytest.approx(100 * 0.01)
    assert r.mah["cpu_awake"] == pytest.approx(0)


def test_a_second_imu_doubles_the_imu_share_and_the_motor_is_priced_by_duty_time() -> None:
    c = Currents(imu_ma=0.55, motor_ma=75)
    r = estimate(board(motor_ms=36_000), odr_hz=52, drain_s=0.5, imus=2, cpu=NO_COMPUTE, currents=c)
    assert r.mah["imu"] == pytest.approx(1.1)
    assert r.mah["motor"] == pytest.approx(0.75)
    assert sum(r.shares().values()) == pytest.approx(1.0)
