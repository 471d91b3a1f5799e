# The IMUs as the rest of the firmware sees them: sensors that are either running or
# being retried.
#
# A sensor that is missing, answers with the wrong WHO_AM_I, or fails on the bus is
# recorded as a SENSOR_FAULT event and tried again with exponential back-off (1 s, 2 s,
# 4 s … up to retry_max_s), so a loose connector never becomes a crash loop or a flood of
# events.  FIFO overflows (the CPU was late draining) are counted and reported at most once
# a minute.
import time

from micropython import const

import lsm6ds
import protocol

_BYTES_PER_SAMPLE = const(12)
_FIRST_RETRY_MS = const(1000)
_OVERFLOW_REPORT_MS = const(60000)


class Sensor:
    """One IMU on the bus: its driver when running, its retry schedule when not."""

    def __init__(self, i2c, addr, cfg, capacity):
        self.addr = addr
        self.i2c = i2c
        self.cfg = cfg
        self.imu = None
        self.buf = bytearray(capacity * _BYTES_PER_SAMPLE)
        self.retry_ms = _FIRST_RETRY_MS
        self.next_try = time.ticks_ms()
        self.overflows_reported = 0
        self.last_overflow_report = time.ticks_ms()
        self.faults = 0
        self.n = 0  # samples in buf after the last drain

    def running(self):
        return self.imu is not None

    def try_start(self, now, events):
        """Detect and configure the IMU; on failure record the fault and back off."""
        if time.ticks_diff(now, self.next_try) < 0:
            return False
        try:
            imu = lsm6ds.LSM6DS(self.i2c, self.addr)
            imu.start(
                odr_hz=self.cfg["odr_hz"],
                accel_fs_g=self.cfg["accel_fs_g"],
                gyro_fs_dps=self.cfg["gyro_fs_dps"],
            )
        except lsm6ds.SensorError as e:
            if e.kind == "missing":
                kind = protocol.FAULT_MISSING
            elif e.kind == "whoami_mismatch":
                kind = protocol.FAULT_WHOAMI_MISMATCH
            else:  # the part answered but did not come out of reset: a bus-level fault
                kind = protocol.FAULT_I2C_ERROR
            self._fail(now, events, kind, e.detail)
            return False
        except OSError as e:
            self._fail(now, events, protocol.FAULT_I2C_ERROR, e.args[0] if e.args else 0)
            return False
        if self.faults:
            events.sensor_fault(self.addr, protocol.FAULT_RECOVERED, self.faults, 0)
        self.imu = imu
        self.faults = 0
        self.retry_ms = _FIRST_RETRY_MS
        self.overflows_reported = 0
        return True

    def _fail(self, now, events, kind, detail):
        self.imu = None
        self.faults += 1
        events.sensor_fault(self.addr, kind, detail & 0xFFFF, self.retry_ms // 1000)
        self.next_try = time.ticks_add(now, self.retry_ms)
        self.retry_ms = min(self.retry_ms * 2, self.cfg["retry_max_s"] * 1000)

    def drain(self, now, events):
        """Samples now in self.buf (0 when not running or on a bus error)."""
        imu = self.imu
        self.n = 0
        if imu is None:
            return 0
        try:
            n = imu.read_fifo(self.buf)
        except OSError as e:
            self._fail(now, events, protocol.FAULT_I2C_ERROR, e.args[0] if e.args else 0)
            return 0
        self.n = n
        if imu.overflows != self.overflows_reported and (
            time.ticks_diff(now, self.last_overflow_report) >= _OVERFLOW_REPORT_MS
            or not self.overflows_reported
        ):
            events.sensor_fault(
                self.addr, protocol.FAULT_FIFO_OVERFLOW, (imu.overflows - self.overflows_reported) & 0xFFFF, 0
            )
            self.overflows_reported = imu.overflows
            self.last_overflow_report = now
        return n


class Sampler:
    """All configured IMUs; the first address is the upper (main) sensor."""

    def __init__(self, i2c, cfg):
        # Room for twice the samples one drain period should bring, so a late wake-up
        # does not overflow our buffer before it overflows the IMU's FIFO.
        capacity = (cfg["odr_hz"] * cfg["drain_ms"] // 1000 + 1) * 2
        self.sensors = [Sensor(i2c, addr, cfg, capacity) for addr in cfg["imu_addrs"]]

    def poll(self, events):
        """Start what is due for a retry, then drain every running sensor.

        Returns the number of samples of the upper sensor now in ``sensors[0].buf``
        (each sensor's own count is its ``n``)."""
        now = time.ticks_ms()
        for s in self.sensors:
            if s.running():
                s.drain(now, events)
            else:
                s.n = 0
                s.try_start(now, events)
        return self.sensors[0].n
