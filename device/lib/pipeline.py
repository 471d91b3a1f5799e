# The processing stages of the firmware, from FIFO samples to the log.
#
#   per sample   fusion (up vector) -> posture (angles) -> summary (histogram bins),
#                activity statistics                    all allocation-free viper code
#   per second   activity class, posture means, alert state machine, summary seconds
#   per minute   the minute summary record (inside summary)
#
# A batch from the FIFO is split at second boundaries (every odr_hz samples) so per-second
# figures cover exactly one second of samples, whatever the drain period.
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

    def process(self, sensors, batch_start_ms):
        """Run one drained batch: ``sensors`` are the sampler's Sensor objects (buf, n)."""
        upper = sensors[0]
        n = upper.n
        if n == 0:
            return
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

    def calibrate(self, method):
        for p in self.postures:
            p.calibrate(method)

    def snooze(self):
        self.alert.snooze(self.now_s())

    def shutdown(self):
        """Before a reboot: close the open alert and write the partial minute."""
        self.alert.close(self.now_s())
        self.summary.flush()
