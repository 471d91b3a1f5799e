# The processing stages of the firmware, from FIFO samples to the log.
#
#   per sample   fusion (up vector) -> posture (angles) -> summary (histogram bins),
#                activity statistics                    all allocation-free viper code
#   per second   activity class, posture means, alert state machine, summary seconds
#   per minute   the minute summary record (inside summary)
#
# A batch from the FIFO is split at second boundaries (every odr_hz samples) so per-second
# figures cover exactly one second of samples, whatever the drain period.
import time
from array import array

import activity
import alert
import fusion
import haptic
import posture
import protocol
import summary


class Pipeline:
    def __init__(self, cfg, imus, log, capacity, now_s):
        """``imus``: the running drivers (upper first); ``now_s()``: unix seconds."""
        upper_imu = imus[0]
        odr = upper_imu.odr_hz
        self.odr = odr
        self.now_s = now_s
        self.capacity = capacity
        self.haptic = haptic.Haptic(cfg["motor_pin"], cfg["haptic_duty_pct"])
        self.fusions = [fusion.FusionFilter(odr, i.accel_ug_per_lsb, i.gyro_udps_per_lsb) for i in imus]
        self.ups = [array("h", bytes(6 * capacity)) for _ in imus]
        settings = posture.PostureSettings.from_config(cfg)
        self.postures = [
            posture.Posture(capacity, protocol.SENSOR_UPPER if k == 0 else protocol.SENSOR_LOWER, settings, log)
            for k in range(len(imus))
        ]
        self.activity = activity.Activity(
            odr, upper_imu.accel_ug_per_lsb, upper_imu.gyro_udps_per_lsb, activity.ActivitySettings.from_config(cfg)
        )
        self.alert = alert.Alert(alert.AlertSettings.from_config(cfg), self.haptic, log)
        self.summary = summary.Summary(odr, log)
        self.left = odr  # samples until the end of the current second
        self.activity_code = protocol.ACTIVITY_STATIC
        self.last_batch_ms = None  # ticks_ms when the newest processed sample was read
        self.cal_skip_s = posture.CAL_SKIP_S

    def process(self, sensors, batch_start_ms):
        """Run one drained batch: ``sensors`` are the sampler's Sensor objects (buf, n)."""
        upper = sensors[0]
        n = upper.n
        if n == 0:
            return
        self.last_batch_ms = batch_start_ms
        for k in range(len(self.fusions)):
            s = sensors[k]
            if s.n:
                self.fusions[k].update_batch(s.buf, s.n, self.ups[k])
        up0 = self.ups[0]
        p0 = self.postures[0]
        lower = self.postures[1] if len(self.postures) > 1 else None
        n1 = sensors[1].n if lower is not None else 0
        i = 0
        while i < n:
            k = i + self.left
            if k > n:
                k = n
            p0.update(up0, i, k)
            self.activity.update(upper.buf, i, k)
            self.summary.add_samples(p0.angles, i, k)
            if lower is not None and i < n1:
                lower.update(self.ups[1], i, k if k < n1 else n1)
            self.left -= k - i
            i = k
            if self.left == 0:
                self.left = self.odr
                self.end_second(batch_start_ms)

    def end_second(self, batch_start_ms):
        now = self.now_s()
        # The motor shakes the accelerometer: that is not the wearer moving.
        code = self.activity.end_second(self.haptic.on_since(batch_start_ms))
        self.activity_code = code
        p0 = self.postures[0]
        p0.end_second(now, code)
        curvature = None
        if len(self.postures) > 1:
            lower = self.postures[1]
            lower.end_second(now, code)
            curvature = p0.flexion_ddeg - lower.flexion_ddeg
        self.activity.reference = p0.neutral
        buzzed = self.alert.update(now, code, p0.flexion_ddeg, p0.flexion_min_ddeg, p0.flexion_peak_ddeg)
        self.summary.add_second(now, code, p0, self.activity.velocity_ddps, buzzed, curvature)

    def calibrate(self, method, release_ms=None):
        """Start a calibration hold.  release_ms (ticks_ms of the button's release): the hold
        starts cal_skip_s after it, to the sample (posture.Posture.calibrate), rather than with
        the next whole second, which begins anywhere from 0 to 1.5 s after the release."""
        skip = None
        if release_ms is not None and self.last_batch_ms is not None:
            # the next sample to process is read one period after the newest processed one
            start_ms = time.ticks_add(release_ms, 1000 * self.cal_skip_s)
            next_ms = time.ticks_add(self.last_batch_ms, 1000 // self.odr)
            skip = time.ticks_diff(start_ms, next_ms) * self.odr // 1000
            if skip < 0:
                skip = 0
        for p in self.postures:
            p.calibrate(method, skip, self.odr)

    def snooze(self):
        self.alert.snooze(self.now_s())

    def shutdown(self):
        """Before a reboot: close the open alert and write the partial minute."""
        self.alert.close(self.now_s())
        self.summary.flush()
