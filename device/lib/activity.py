# Activity class per second from the raw IMU samples: lying, static, moving, walking, not_worn.
#
# Per sample (integer @micropython.viper, allocation-free, over the FIFO bytes: int16 LE
# ax, ay, az, gx, gy, gz):
#   - accelerometer magnitude |a| in mg: sum and sum of squares of |a| - 1 g (its variance is
#     the intensity of motion whatever the orientation), and the mean accelerometer vector
#     (gravity direction over the second: the orientation);
#   - |a| - 1 g also goes into a ring of the last 256 samples for the step periodicity;
#   - gyro: per-axis sum and sum of squares of the raw rate (stillness, bias learning) and the
#     sum of the bias-corrected rate magnitude (motion intensity, mean angular velocity).
# Per second (`end_second`, small ints only: nothing to collect on the unix port, and on the
# ESP32 only the rare sum above 2**30):
#   - periodicity: normalised autocorrelation of |a| over the last 2 s at the lags of a step
#     (1.2-2.6 steps/s); walking = periodic and vigorous enough;
#   - orientation: the mean accelerometer vector of the second against the neutral posture;
#   - lying = the spine axis 60 deg or more from vertical sideways or backwards (supine, on a
#     side), or 83 deg forwards for 5 s (prone; deep bends do not last), and not turning;
#   - not_worn = perfect stillness: every gyro axis and |a| flat to within the sensor noise for
#     not_worn_s (a worn sensor always sees breathing and the heartbeat, at least 0.3 deg/s
#     swings every few seconds), or an orientation no wearer has (upside down) for 5 s;
#   - moving = the trunk turns or accelerates beyond the thresholds; static otherwise.
# While the haptic motor runs, its vibration is not motion: `end_second(motor_on=True)` keeps
# the previous class and leaves the stillness and bias statistics alone.
#
# Known limits: the first not_worn_s seconds on a desk still count as worn (lying or static:
# the minute already logged is not rewritten), and a reach's bent hold of a second or two
# reads as static (its moving seconds are the turning ones).
import sys
from array import array

import protocol

if sys.implementation.name == "micropython":
    import micropython
    from micropython import const  # pyright: ignore[reportAssignmentType]
else:  # CPython (tests, host tools): the viper kernels run as plain Python
    from viper_cpython import const, micropython, ptr16, ptr32

from posture import _frame_rows, atan2_cdeg, isqrt

_RING = const(256)  # samples of |a| kept for the periodicity (>= 2 s at 104 Hz)
_RING_MASK = const(255)

# Coefficient words (array('h'))
_K_ACC = const(0)  # raw accel LSB -> mg: (raw * k) >> 12
_K_GYR = const(1)  # raw gyro LSB -> 0.1 deg/s: (raw * k) >> 12
_K_BX = const(2)  # gyro bias (LSB) per axis, signed
_K_WORDS = const(5)

# Accumulator words (array('i')), all >= 0
_A_START = const(0)
_A_STOP = const(1)
_A_N = const(2)
_A_D = const(3)  # sum of (|a| - 1000 mg, clamped to +-4000) + 4000
_A_D2 = const(4)  # sum of its squares
_A_G = const(5)  # sum of |gyro - bias| in 0.1 deg/s
_A_GX = const(6)  # sum of raw gyro x + 2048 (clamped to +-2047 LSB), then y, z
_A_GX2 = const(9)  # sum of squares of the clamped raw gyro x, then y, z
_A_AX = const(12)  # sum of raw accel x + 32768, then y, z
_A_POS = const(15)  # next ring slot
_A_FILL = const(16)  # samples in the ring (saturates at _RING)
_A_WORDS = const(17)
_A_SECOND = const(2)  # words from here on are per-second (cleared by end_second)
_A_SECOND_END = const(15)

# Periodicity words (array('i'))
_P_WINDOW = const(0)
_P_LAG_MIN = const(1)
_P_LAG_MAX = const(2)
_P_BEST = const(3)  # best normalised autocorrelation, Q10
_P_LAG = const(4)  # its lag (samples)
_P_WORDS = const(5)


@micropython.viper
def _activity_kernel(coef, raw, ring, acc):
    k = ptr16(coef)
    s16 = ptr16(raw)
    x = ptr16(ring)
    a = ptr32(acc)
    k_acc = int(k[_K_ACC])
    k_gyr = int(k[_K_GYR])
    bx = (k[_K_BX] ^ 0x8000) - 0x8000
    by = (k[_K_BX + 1] ^ 0x8000) - 0x8000
    bz = (k[_K_BX + 2] ^ 0x8000) - 0x8000
    start = int(a[_A_START])
    stop = int(a[_A_STOP])
    pos = int(a[_A_POS])
    sum_d = 0
    sum_d2 = 0
    sum_g = 0
    sgx = 0
    sgy = 0
    sgz = 0
    sgx2 = 0
    sgy2 = 0
    sgz2 = 0
    sax = 0
    say = 0
    saz = 0
    for i in range(start, stop):
        b = 6 * i
        rx = (s16[b] ^ 0x8000) - 0x8000
        ry = (s16[b + 1] ^ 0x8000) - 0x8000
        rz = (s16[b + 2] ^ 0x8000) - 0x8000
        sax += rx
        say += ry
        saz += rz
        # |a| in mg; each axis < 16000 mg, so the sum of squares < 2**30
        ax = (rx * k_acc) >> 12
        ay = (ry * k_acc) >> 12
        az = (rz * k_acc) >> 12
        s = ax * ax + ay * ay + az * az
        root = 0
        bit = 1 << 28
        while bit > s:
            bit >>= 2
        while bit != 0:
            if s >= root + bit:
                s -= root + bit
                root = (root >> 1) + bit
            else:
                root >>= 1
            bit >>= 2
        d = root - 1000
        if d > 4000:
            d = 4000
        elif d < -4000:
            d = -4000
        sum_d += d
        sum_d2 += d * d
        x[pos] = d
        pos = (pos + 1) & _RING_MASK
        # gyro: raw statistics (clamped to +-2047 LSB) and the bias-free magnitude
        gx = (s16[b + 3] ^ 0x8000) - 0x8000
        gy = (s16[b + 4] ^ 0x8000) - 0x8000
        gz = (s16[b + 5] ^ 0x8000) - 0x8000
        c = gx if gx < 2047 else 2047
        c = c if c > -2047 else -2047
        sgx += c
        sgx2 += c * c
        c = gy if gy < 2047 else 2047
        c = c if c > -2047 else -2047
        sgy += c
        sgy2 += c * c
        c = gz if gz < 2047 else 2047
        c = c if c > -2047 else -2047
        sgz += c
        sgz2 += c * c
        gx = ((gx - bx) * k_gyr) >> 12
        gy = ((gy - by) * k_gyr) >> 12
        gz = ((gz - bz) * k_gyr) >> 12
        # at most 1800 deg/s per axis in the magnitude: the sum of squares stays < 2**30
        gx = gx if gx < 18000 else 18000
        gx = gx if gx > -18000 else -18000
        gy = gy if gy < 18000 else 18000
        gy = gy if gy > -18000 else -18000
        gz = gz if gz < 18000 else 18000
        gz = gz if gz > -18000 else -18000
        s = gx * gx + gy * gy + gz * gz
        root = 0
        bit = 1 << 28
        while bit > s:
            bit >>= 2
        while bit != 0:
            if s >= root + bit:
                s -= root + bit
                root = (root >> 1) + bit
            else:
                root >>= 1
            bit >>= 2
        sum_g += root
    n = stop - start
    a[_A_N] = int(a[_A_N]) + n
    a[_A_D] = int(a[_A_D]) + sum_d + 4000 * n
    a[_A_D2] = int(a[_A_D2]) + sum_d2
    a[_A_G] = int(a[_A_G]) + sum_g
    a[_A_GX] = int(a[_A_GX]) + sgx + 2048 * n
    a[_A_GX + 1] = int(a[_A_GX + 1]) + sgy + 2048 * n
    a[_A_GX + 2] = int(a[_A_GX + 2]) + sgz + 2048 * n
    a[_A_GX2] = int(a[_A_GX2]) + sgx2
    a[_A_GX2 + 1] = int(a[_A_GX2 + 1]) + sgy2
    a[_A_GX2 + 2] = int(a[_A_GX2 + 2]) + sgz2
    a[_A_AX] = int(a[_A_AX]) + sax + 32768 * n
    a[_A_AX + 1] = int(a[_A_AX + 1]) + say + 32768 * n
    a[_A_AX + 2] = int(a[_A_AX + 2]) + saz + 32768 * n
    a[_A_POS] = pos
    fill = int(a[_A_FILL]) + n
    a[_A_FILL] = fill if fill < _RING else _RING


@micropython.viper
def _periodicity_kernel(ring, acc, per):
    # Normalised autocorrelation of the last `window` ring samples at lags lag_min..lag_max;
    # the best value (Q10) and its lag go to per[_P_BEST], per[_P_LAG].
    x = ptr16(ring)
    a = ptr32(acc)
    p = ptr32(per)
    w = int(p[_P_WINDOW])
    lo = int(p[_P_LAG_MIN])
    hi = int(p[_P_LAG_MAX])
    first = (int(a[_A_POS]) - w) & _RING_MASK
    total = 0
    for i in range(w):
        total += (x[(first + i) & _RING_MASK] ^ 0x8000) - 0x8000
    mean = total // w
    # centred values / 4 (|v| <= 2000): w * 2000**2 < 2**31 for w <= 256
    c0 = 0
    for i in range(w):
        v = (((x[(first + i) & _RING_MASK] ^ 0x8000) - 0x8000) - mean) >> 2
        c0 += v * v
    best = 0
    best_lag = 0
    for lag in range(lo, hi + 1):
        c = 0
        for i in range(lag, w):
            v = (((x[(first + i) & _RING_MASK] ^ 0x8000) - 0x8000) - mean) >> 2
            u = (((x[(first + i - lag) & _RING_MASK] ^ 0x8000) - 0x8000) - mean) >> 2
            c += v * u
        den = ((c0 >> 10) * (w - lag)) // w
        if den > 0:
            r = c // den
            if r > best:
                best = r
                best_lag = lag
    p[_P_BEST] = best
    p[_P_LAG] = best_lag


class ActivitySettings:
    """Thresholds of the per-second activity classes (units in the names).

    not_worn_s            perfect stillness this long means the device is off the body; 20 s
                          (worn, the scenarios never show more than 4 s: breathing and the
                          heartbeat keep a worn sensor moving)
    still_gyro_mdps       "perfectly still": every gyro axis varies less than this within the
                          second (standard deviation); 100 mdps (3x the LSM6DS noise at 52 Hz)
    still_accel_mg        ... and |a| less than this; 3 mg
    lying_deg             spine axis this far from vertical (sideways/backwards) = lying; 60
    lying_prone_deg       forwards this far for lying_prone_s = lying prone; 83 deg, 5 s
                          (deep bends and hip hinges stay below, or do not last)
    walk_periodicity_pct  normalised autocorrelation of |a| at a step lag for walking; 40 %
    walk_accel_mg         and a standard deviation of |a| of at least this; 40 mg
    moving_gyro_dps       mean trunk angular speed above this = moving; 15 deg/s
    moving_accel_mg       or a standard deviation of |a| above this; 60 mg
    """

    def __init__(
        self,
        not_worn_s=20,
        still_gyro_mdps=100,
        still_accel_mg=3,
        lying_deg=60,
        lying_prone_deg=83,
        lying_prone_s=5,
        walk_periodicity_pct=40,
        walk_accel_mg=40,
        moving_gyro_dps=15,
        moving_accel_mg=60,
    ):
        self.not_worn_s = not_worn_s
        self.still_gyro_mdps = still_gyro_mdps
        self.still_accel_mg = still_accel_mg
        self.lying_deg = lying_deg
        self.lying_prone_deg = lying_prone_deg
        self.lying_prone_s = lying_prone_s
        self.walk_periodicity_pct = walk_periodicity_pct
        self.walk_accel_mg = walk_accel_mg
        self.moving_gyro_dps = moving_gyro_dps
        self.moving_accel_mg = moving_accel_mg

    @classmethod
    def from_config(cls, cfg):
        s = cls()
        for key in ("not_worn_s", "lying_deg", "moving_gyro_dps", "walk_accel_mg"):
            if key in cfg:
                setattr(s, key, cfg[key])
        return s


_IMPLAUSIBLE_S = const(5)
_IMPLAUSIBLE_CDEG = const(13500)  # the spine axis pointing down: nobody wears it so
_WALK_TILT_CDEG = const(4500)  # walking is upright
_WALK_ON_MG = const(5)  # a walk already detected goes on down to this |a| deviation
_QUIET_MDPS = const(500)  # seconds this still (each gyro axis) teach the gyro bias
_BIAS_SHIFT = const(6)  # gyro bias: exponential mean of quiet seconds, weight 1/64
_SATURATED = const(0x3FFFFFFF)


def _var16(s1, s2, n):
    """16 x the variance of n values from their sum s1 and sum of squares s2, exactly (floor),
    in small ints (no big-int allocation on the ESP32); large variances saturate.

    With s1 = q n + r (0 <= r < n): n s2 - s1^2 = n (s2 - q^2 n - 2 q r) - r^2."""
    if s2 >= 0x4000000:
        return _SATURATED
    q = s1 // n
    r = s1 - q * n
    t = s2 - q * q * n - 2 * q * r  # q^2 n <= s2 < 2**26
    v = ((t << 4) - ((r * r) << 4) // n) // n
    return v if v > 0 else 0


class Activity:
    """Per-second activity from the raw samples of the upper sensor.

    odr_hz                                samples per second
    accel_ug_per_lsb, gyro_udps_per_lsb   the driver's integer sensitivities

    Per batch:   update(raw, start, stop)   samples start..stop-1 of the 12-byte-sample buffer
    Per second:  end_second(motor_on=False) -> protocol.ACTIVITY_* (also in .code); then
                 .velocity_ddps (mean trunk angular speed, 0.1 deg/s), .tilt_cdeg (spine axis
                 from vertical, 0.01 deg), .periodicity_q10, .accel_sd_mg, .still
    `reference`: the upright up vector (x, y, z) that orientation is judged from (default the
    sensor's x axis; the glue sets the posture's neutral).
    Per second it allocates a few small objects at most (integer arithmetic throughout).
    """

    def __init__(self, odr_hz, accel_ug_per_lsb, gyro_udps_per_lsb, settings=None):
        self.settings = settings if settings is not None else ActivitySettings()
        self.odr_hz = odr_hz
        self.gyro_udps_per_lsb = gyro_udps_per_lsb
        self._coef = array("h", bytes(2 * _K_WORDS))
        self._coef[_K_ACC] = (accel_ug_per_lsb * 4096 + 500) // 1000
        self._coef[_K_GYR] = (gyro_udps_per_lsb * 4096 + 50000) // 100000
        self._acc = array("i", bytes(4 * _A_WORDS))
        self._ring = array("h", bytes(2 * _RING))
        self._per = array("i", bytes(4 * _P_WORDS))
        self._per[_P_WINDOW] = min(2 * odr_hz, _RING)
        self._per[_P_LAG_MIN] = max(2, odr_hz * 10 // 26)  # 2.6 steps/s
        self._per[_P_LAG_MAX] = odr_hz * 10 // 12  # 1.2 steps/s
        self._bias16 = array("i", bytes(12))  # gyro bias, LSB * 16
        self.reference = (1.0, 0.0, 0.0)
        self._rows = (16384, 0, 0, 0, 16384, 0, 0, 0, 16384)  # Q14 frame of `reference`
        self._rows_for = self.reference
        self.code = protocol.ACTIVITY_STATIC
        self.velocity_ddps = 0
        self.accel_var16 = 0  # 16 x variance of |a| in mg^2
        self.periodicity_q10 = 0
        self.tilt_cdeg = 0
        self.still = False
        self._forward = False
        self._still_run = 0
        self._implausible_run = 0
        self._prone_run = 0

    @property
    def accel_sd_mg(self):
        return self.accel_var16**0.5 / 4

    @property
    def tilt_deg(self):
        return self.tilt_cdeg / 100

    # ---- per sample ---------------------------------------------------------------------
    def update(self, raw, start, stop):
        """Accumulate samples start..stop-1 of `raw` (12 bytes each); allocates nothing."""
        acc = self._acc
        acc[_A_START] = start
        acc[_A_STOP] = stop
        _activity_kernel(self._coef, raw, self._ring, acc)

    # ---- per second ---------------------------------------------------------------------
    def end_second(self, motor_on=False):
        """Classify the second just ended.  motor_on: the haptic motor ran during it (its
        vibration is not the wearer's motion): the previous class is kept."""
        s = self.settings
        acc = self._acc
        n = acc[_A_N]
        if n == 0 or motor_on:
            self._clear()
            return self.code
        # intensity of motion
        self.accel_var16 = _var16(acc[_A_D] - 4000 * n, acc[_A_D2], n)
        self.velocity_ddps = (acc[_A_G] + n // 2) // n
        # stillness per gyro axis (variance in (LSB/4)^2), and the gyro bias from quiet seconds
        udps = self.gyro_udps_per_lsb
        still = 4000 * s.still_gyro_mdps // udps
        quiet = 4000 * _QUIET_MDPS // udps
        max_var = 0
        for i in range(3):
            v = _var16(acc[_A_GX + i] - 2048 * n, acc[_A_GX2 + i], n)
            if v > max_var:
                max_var = v
        self.still = max_var < still * still and self.accel_var16 < 16 * s.still_accel_mg * s.still_accel_mg
        if max_var < quiet * quiet:
            coef = self._coef
            bias = self._bias16
            for i in range(3):
                b = bias[i]
                b += (((acc[_A_GX + i] - 2048 * n) << 4) // n - b) >> _BIAS_SHIFT
                bias[i] = b
                coef[_K_BX + i] = (b + 8) >> 4
        # orientation of the spine axis: the mean accelerometer vector (mg)
        k = self._coef[_K_ACC]
        self._orientation(
            (((acc[_A_AX] - 32768 * n) // n) * k) >> 12,
            (((acc[_A_AX + 1] - 32768 * n) // n) * k) >> 12,
            (((acc[_A_AX + 2] - 32768 * n) // n) * k) >> 12,
        )
        # step periodicity over the last 2 s
        if acc[_A_FILL] >= self._per[_P_WINDOW]:
            _periodicity_kernel(self._ring, acc, self._per)
            self.periodicity_q10 = self._per[_P_BEST]
        else:
            self.periodicity_q10 = 0
        self._clear()
        self.code = self._classify()
        return self.code

    def _clear(self):
        acc = self._acc
        for i in range(_A_SECOND, _A_SECOND_END):
            acc[i] = 0

    def _orientation(self, ax, ay, az):
        if self._rows_for is not self.reference:
            self._rows = tuple(int(v * 16384) for v in _frame_rows(*self.reference))
            self._rows_for = self.reference
        r = self._rows
        # mg (< 16000) x Q14: three products < 2**30 in all
        w1 = (r[0] * ax + r[1] * ay + r[2] * az) >> 14
        w2 = (r[3] * ax + r[4] * ay + r[5] * az) >> 14
        w3 = (r[6] * ax + r[7] * ay + r[8] * az) >> 14
        side = isqrt(w2 * w2 + w3 * w3)
        self.tilt_cdeg = atan2_cdeg(side, w1)
        # forward: the tilt is mostly a forward bend (or prone), not sideways or backwards
        self._forward = 10 * w3 > 7 * side

    def _classify(self):
        s = self.settings
        if self.still:
            self._still_run += 1
        else:
            self._still_run = 0
        if self.tilt_cdeg > _IMPLAUSIBLE_CDEG:
            self._implausible_run += 1
        else:
            self._implausible_run = 0
        if self.code == protocol.ACTIVITY_NOT_WORN:
            if self.still or self._implausible_run:
                return protocol.ACTIVITY_NOT_WORN
        elif self._still_run >= s.not_worn_s or self._implausible_run >= _IMPLAUSIBLE_S:
            return protocol.ACTIVITY_NOT_WORN
        # lying: sideways or backwards at once; forwards (prone) only when it lasts.  Rolling
        # over is moving.
        var16 = self.accel_var16
        intense = (
            self.velocity_ddps >= 10 * s.moving_gyro_dps or var16 >= 16 * s.moving_accel_mg * s.moving_accel_mg
        )
        if self._forward and self.tilt_cdeg >= 100 * s.lying_prone_deg:
            self._prone_run += 1
        else:
            self._prone_run = 0
        if (self.tilt_cdeg >= 100 * s.lying_deg and not self._forward) or self._prone_run >= s.lying_prone_s:
            return protocol.ACTIVITY_MOVING if intense else protocol.ACTIVITY_LYING
        # walking: periodic steps, vigorous; a walk goes on while the steps stay periodic
        # (slowing down to stop, turning at a landing)
        if self.periodicity_q10 * 100 >= 1024 * s.walk_periodicity_pct and self.tilt_cdeg < _WALK_TILT_CDEG:
            if var16 >= 16 * s.walk_accel_mg * s.walk_accel_mg or (
                self.code == protocol.ACTIVITY_WALKING and var16 >= 16 * _WALK_ON_MG * _WALK_ON_MG
            ):
                return protocol.ACTIVITY_WALKING
        if intense:
            return protocol.ACTIVITY_MOVING
        return protocol.ACTIVITY_STATIC
