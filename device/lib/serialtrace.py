# Per-sample debug trace on the USB serial console (config key "trace").
#
# One CSV line per processed sample: "T," then the columns in COLUMNS.  It exists for
# replaying recordings on a PC and for bench-side debugging with a cable attached; it
# allocates (string formatting), so it is off in normal wear.
import time

COLUMNS = (
    "t_s",
    "ax_g",
    "ay_g",
    "az_g",
    "gx_dps",
    "gy_dps",
    "gz_dps",
    "up_x",
    "up_y",
    "up_z",
    "flexion_deg",
    "activity",
    "alerting",
)


class Trace:
    def __init__(self, odr_hz, boot_ms):
        self.period_ms = 1000 / odr_hz
        self.boot_ms = boot_ms
        print("T-COLUMNS," + ",".join(COLUMNS))

    def batch(self, imu, buf, n, pipeline=None):
        """Print the ``n`` samples of ``buf`` (12-byte raw samples) drained just now, with the
        pipeline's per-sample outputs (up vector, flexion) and its state after the batch."""
        import struct

        now_s = time.ticks_diff(time.ticks_ms(), self.boot_ms) / 1000
        a_scale = imu.accel_ug_per_lsb / 1e6
        g_scale = imu.gyro_udps_per_lsb / 1e6
        for i in range(n):
            ax, ay, az, gx, gy, gz = struct.unpack_from("<hhhhhh", buf, i * 12)
            t = now_s - (n - 1 - i) * self.period_ms / 1000
            row = "T,%.3f,%.4f,%.4f,%.4f,%.3f,%.3f,%.3f" % (
                t, ax * a_scale, ay * a_scale, az * a_scale, gx * g_scale, gy * g_scale, gz * g_scale
            )
            if pipeline is not None:
                up = pipeline.ups[0]
                row += ",%.4f,%.4f,%.4f,%.1f,%d,%d" % (
                    up[3 * i] / 16384,
                    up[3 * i + 1] / 16384,
                    up[3 * i + 2] / 16384,
                    pipeline.postures[0].angles[3 * i] / 10,
                    pipeline.activity_code,
                    1 if pipeline.alert.open else 0,
                )
            else:
                row += ",,,,,,"
            print(row)
