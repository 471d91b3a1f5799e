"""Adafruit's CircuitPython LSM6DS driver and ours read the same values from the same model.

Adafruit's ``adafruit_lsm6ds`` (an independent implementation of the same datasheets) runs
under CPython against the register-level model, through a busio-style adapter over the
emulated board's ``machine.I2C``.  For every variant and every full scale, set through each
driver's own API, both drivers read the output registers at the same sample instant and
must agree, and both must match the motion the model was given.

Variant -> Adafruit class (there is no separate Adafruit class for the LSM6DSO):
  LSM6DS3 (WHO_AM_I 0x69)     -> adafruit_lsm6ds.lsm6ds33.LSM6DS33
  LSM6DS3TR-C (0x6A)          -> adafruit_lsm6ds.lsm6ds3trc.LSM6DS3TRC and adafruit_lsm6ds.lsm6ds3.LSM6DS3
                                 (Adafruit's "LSM6DS3" class expects 0x6A, i.e. the TR-C)
  LSM6DSO, LSM6DSOX (0x6C)    -> adafruit_lsm6ds.lsm6dsox.LSM6DSOX (same register map)
  ISM330DHCX (0x6B)           -> adafruit_lsm6ds.ism330dhcx.ISM330DHCX
Adafruit's LSM6DSO32 class also answers to 0x6C but is a different part (4-32 g), so it is
not used.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from emulator import cpython

cpython.install()

import adafruit_lsm6ds  # noqa: E402
import adafruit_lsm6ds.ism330dhcx  # noqa: E402
import lsm6ds_model  # type: ignore[import-not-found]  # noqa: E402
import machine  # type: ignore[import-not-found]  # noqa: E402
import stimulus  # type: ignore[import-not-found]  # noqa: E402
import vboard  # type: ignore[import-not-found]  # noqa: E402
import vclock  # type: ignore[import-not-found]  # noqa: E402
from adafruit_lsm6ds import AccelRange, GyroRange  # noqa: E402
from adafruit_lsm6ds.ism330dhcx import ISM330DHCX  # noqa: E402
from adafruit_lsm6ds.lsm6ds3 import LSM6DS3  # noqa: E402
from adafruit_lsm6ds.lsm6ds3trc import LSM6DS3TRC  # noqa: E402
from adafruit_lsm6ds.lsm6ds33 import LSM6DS33  # noqa: E402
from adafruit_lsm6ds.lsm6dsox import LSM6DSOX  # noqa: E402

import lsm6ds  # type: ignore[import-not-found]  # noqa: E402

G = 9.80665
ADAFRUIT_CLASSES: dict[str, list[type[adafruit_lsm6ds.LSM6DS]]] = {
    "LSM6DS3": [LSM6DS33],
    "LSM6DS3TR-C": [LSM6DS3TRC, LSM6DS3],
    "LSM6DSO": [LSM6DSOX],
    "LSM6DSOX": [LSM6DSOX],
    "ISM330DHCX": [ISM330DHCX],
}
ACCEL_RANGES = {2: "RANGE_2G", 4: "RANGE_4G", 8: "RANGE_8G", 16: "RANGE_16G"}
GYRO_RANGES = {
    125: "RANGE_125_DPS",
    250: "RANGE_250_DPS",
    500: "RANGE_500_DPS",
    1000: "RANGE_1000_DPS",
    2000: "RANGE_2000_DPS",
    4000: "RANGE_4000_DPS",
}
UG = {2: 61, 4: 122, 8: 244, 16: 488}
UDPS = {125: 4375, 250: 8750, 500: 17500, 1000: 35000, 2000: 70000, 4000: 140000}


class BusioI2C:
    """CircuitPython's ``busio.I2C`` interface over the emulated board's ``machine.I2C``."""

    def __init__(self, i2c: Any) -> None:
        self._i2c = i2c
        self._locked = False

    def try_lock(self) -> bool:
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        self._locked = False

    def scan(self) -> list[int]:
        return list(self._i2c.scan())

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._i2c.writeto(address, bytes(buffer[start:end]))

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._i2c.readfrom_into(address, memoryview(buffer)[start:end])

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        self._i2c.writeto(address, bytes(buffer_out[out_start:out_end]), False)
        self._i2c.readfrom_into(address, memoryview(buffer_in)[in_start:in_end])


@pytest.fixture(autouse=True)
def virtual_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adafruit's driver waits with time.sleep(); on the emulated board that is virtual time."""

    def sleep(seconds: float) -> None:
        vclock.advance_us(int(seconds * 1_000_000))

    monkeypatch.setattr(adafruit_lsm6ds, "sleep", sleep)
    monkeypatch.setattr(adafruit_lsm6ds.ism330dhcx, "sleep", sleep)


def slow_motion(accel_fs_g: int, gyro_fs_dps: int):
    """Motion that changes every sample and stays within the full scale."""

    def at(t: float) -> tuple[float, ...]:
        a = 0.45 * accel_fs_g
        w = 0.45 * gyro_fs_dps
        return (
            a * math.sin(0.7 * t + 0.3),
            a * math.cos(0.5 * t),
            -a * math.sin(0.9 * t + 1.0),
            w * math.sin(1.3 * t),
            -w * math.cos(0.4 * t + 0.2),
            w * math.sin(0.8 * t + 2.0),
        )

    return at


def cases() -> list[tuple[str, type, int, int]]:
    out = []
    for variant, classes in ADAFRUIT_CLASSES.items():
        for cls in classes:
            for afs in ACCEL_RANGES:
                for gfs in GYRO_RANGES:
                    if gfs == 4000 and variant != "ISM330DHCX":
                        continue
                    out.append((variant, cls, afs, gfs))
    return out


@pytest.mark.parametrize(
    "variant,adafruit_class,accel_fs_g,gyro_fs_dps",
    cases(),
    ids=lambda x: x.__name__ if isinstance(x, type) else str(x),
)
def test_adafruit_and_our_driver_read_the_same_motion(variant, adafruit_class, accel_fs_g, gyro_fs_dps):
    vclock.reset()
    vboard.reset_all()
    motion = slow_motion(accel_fs_g, gyro_fs_dps)
    model = lsm6ds_model.LSM6DSModel(variant, stimulus.FunctionSource(motion), noise=False)
    vboard.attach_i2c(0, 0x6A, model)
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)

    ours = lsm6ds.LSM6DS(i2c, 0x6A)
    assert ours.variant == ("LSM6DSO" if variant == "LSM6DSOX" else variant)

    for configured_last in ("adafruit", "ours"):
        if configured_last == "adafruit":
            # Ours first (its start() resets the chip), then Adafruit's constructor (which
            # resets it again and sets 104 Hz) and its own range API.
            ours.start(odr_hz=104, accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps)
            theirs = adafruit_class(BusioI2C(i2c))
            theirs.accelerometer_range = getattr(AccelRange, ACCEL_RANGES[accel_fs_g])
            theirs.gyro_range = getattr(GyroRange, GYRO_RANGES[gyro_fs_dps])
        else:
            ours.start(odr_hz=104, accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps)
        assert model.odr_hz() == 104.0
        assert (model.accel_ug_per_lsb, model.gyro_udps_per_lsb) == (UG[accel_fs_g], UDPS[gyro_fs_dps])

        for _ in range(3):
            # Just after a sample: both drivers' reads fall within the same sample period.
            vclock.advance_us(model.next_sample_us() + 150 - vclock.now_us())
            sample_us = model.last_sample_us()
            a_ms2 = theirs.acceleration
            g_rads = theirs.gyro
            mine = ours.read_now()
            assert model.last_sample_us() == sample_us  # no new sample meanwhile

            for i in range(3):
                assert mine[i] * G == pytest.approx(a_ms2[i], rel=1e-9, abs=1e-12)
                assert math.radians(mine[3 + i]) == pytest.approx(g_rads[i], rel=1e-9, abs=1e-12)
            # And both read the motion at that instant, to within half an LSB.
            want = motion(sample_us / 1e6)
            for i in range(3):
                assert abs(mine[i] - want[i]) <= 0.5 * UG[accel_fs_g] / 1e6 + 1e-9
                assert abs(mine[3 + i] - want[3 + i]) <= 0.5 * UDPS[gyro_fs_dps] / 1e6 + 1e-9
            vclock.advance_us(3_000_000 // 104)


def test_every_variant_has_an_adafruit_counterpart():
    assert set(ADAFRUIT_CLASSES) == set(lsm6ds_model.VARIANTS)
    for variant, classes in ADAFRUIT_CLASSES.items():
        for cls in classes:
            assert cls.CHIP_ID == lsm6ds_model.VARIANTS[variant][0], (variant, cls.__name__)
