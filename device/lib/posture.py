# Posture angles of one back sensor: flexion, lateral bend and absolute inclination.
#
# Input: the fusion filter's "up" vector per sample (the direction opposite to gravity in the
# sensor frame, int16 Q14, 16384 = 1.0; x up the spine, y to the wearer's left, z out of the
# back).  Output per sample, in tenths of a degree (int16), into `angles`:
#
#   flexion      signed angle of up from the neutral up vector g0 in the sagittal plane,
#                forward positive: atan2(v3, v1) with v = M u, M the neutral frame below;
#   lateral      frontal-plane bend, positive towards the wearer's right (the left side, +y,
#                rises): atan2(v2, sqrt(v1^2 + v3^2));
#   inclination  angle of up from the reference upright, negative when the tilt is backwards
#                (extension, bin 0 of the histogram): sign(w3) * atan2(sqrt(w2^2 + w3^2), w1)
#                with w = R u, R the reference frame.
#
# Neutral (flexion zero): the wearer's calibration (`calibrate()`: the button or the
# companion's command; the mean up vector of calibration_s seconds) or, while the wearer never
# calibrated, the walking reference.  Reference (inclination zero), as ActiPASS
# zero-references the trunk: the median up vector of upright walking (60 s from walking bouts
# of 10 s or more) turned back by the 6 deg that the trunk leans forward walking; the neutral
# until it is measured.  It is measured again after every time the device was off the body.
#
# The neutral frame M has rows e1 = g0, e2 = the sensor's y axis made orthogonal to g0,
# e3 = e1 x e2.  This is exact for any mounting whose error is a turn about the sensor's z
# axis (the patch turned in the plane of the back) or y axis (the patch tilted by the curve of
# the spine), the two ways a patch really sits wrong; only a twist about the spine axis
# (which a flat patch on the back cannot have by more than a few degrees) leaks flexion into
# the lateral angle (sin(twist) of it) and shrinks flexion by cos(twist): 1 % at 8 deg.
#
# Per sample: integer-only @micropython.viper over preallocated buffers, allocation-free
# (a 65-entry atan table with linear interpolation, 0.01 deg worst error, and an integer
# square root).  Per second (`end_second`): means, calibration, automatic reference from
# walking (floats allowed there).  Under CPython the same kernel runs as plain Python with
# small stand-ins for viper's pointers, so both interpreters compute the same integers.
import sys
from array import array

import protocol

if sys.implementation.name == "micropython":
    import micropython
    from micropython import const  # pyright: ignore[reportAssignmentType]
else:  # CPython (tests, host tools): the viper kernels run as plain Python
    from viper_cpython import const, micropython, ptr16, ptr32

ONE_Q14 = const(16384)

# atan(i/64) in 0.01 deg, i = 0..64 (a literal, so every port has the same table).
_ATAN_CDEG = array(
    "h",
    (
        0, 90, 179, 268, 358, 447, 536, 624, 713, 800, 888, 975, 1062, 1148, 1234, 1319, 1404,
        1488, 1571, 1653, 1735, 1817, 1897, 1977, 2056, 2134, 2211, 2287, 2363, 2438, 2511, 2584,
        2657, 2728, 2798, 2867, 2936, 3003, 3070, 3136, 3201, 3264, 3327, 3390, 3451, 3511, 3571,
        3629, 3687, 3744, 3800, 3855, 3909, 3963, 4016, 4067, 4119, 4169, 4218, 4267, 4315, 4363,
        4409, 4455, 4500,
    ),
)  # fmt: skip

# Accumulator words (array('i')); every value is kept >= 0 (biased) so plain 32-bit loads
# read it the same on the ESP32 and on 64-bit hosts.
_A_START = const(0)  # first sample of the span to process
_A_STOP = const(1)  # one past the last
_A_N = const(2)  # samples this second
_A_UX = const(3)  # sum of up_x + 16384 (Q14), then y, z
_A_UY = const(4)
_A_UZ = const(5)
_A_FLEX = const(6)  # sum of flexion + 2048 (ddeg)
_A_PEAK = const(7)  # max of flexion + 2048
_A_LAT = const(8)  # sum of lateral + 2048
_A_INCL = const(9)  # sum of inclination + 2048
_A_LOW = const(10)  # min of flexion + 2048
_A_WORDS = const(11)
_BIAS = const(2048)

# Calibration hold: seconds skipped after the request (the press itself moves the wearer).
_CAL_SKIP_S = const(1)
CAL_SKIP_S = _CAL_SKIP_S  # (public: const names with an underscore are compiled away)
_CAL_IDLE = const(0)


@micropython.viper
def _posture_kernel(frame, up, out, acc):
    # frame: 18 int16 Q14 (neutral rows e1, e2, e3; reference rows); up: int16 Q14 x, y, z per
    # sample; out: int16 ddeg flexion, lateral, inclination per sample; acc: _A_* words.
    f = ptr16(frame)
    u = ptr16(up)
    o = ptr16(out)
    a = ptr32(acc)
    table = ptr16(_ATAN_CDEG)
    m0 = (f[0] ^ 0x8000) - 0x8000
    m1 = (f[1] ^ 0x8000) - 0x8000
    m2 = (f[2] ^ 0x8000) - 0x8000
    m3 = (f[3] ^ 0x8000) - 0x8000
    m4 = (f[4] ^ 0x8000) - 0x8000
    m5 = (f[5] ^ 0x8000) - 0x8000
    m6 = (f[6] ^ 0x8000) - 0x8000
    m7 = (f[7] ^ 0x8000) - 0x8000
    m8 = (f[8] ^ 0x8000) - 0x8000
    r0 = (f[9] ^ 0x8000) - 0x8000
    r1 = (f[10] ^ 0x8000) - 0x8000
    r2 = (f[11] ^ 0x8000) - 0x8000
    r3 = (f[12] ^ 0x8000) - 0x8000
    r4 = (f[13] ^ 0x8000) - 0x8000
    r5 = (f[14] ^ 0x8000) - 0x8000
    r6 = (f[15] ^ 0x8000) - 0x8000
    r7 = (f[16] ^ 0x8000) - 0x8000
    r8 = (f[17] ^ 0x8000) - 0x8000
    start = int(a[_A_START])
    stop = int(a[_A_STOP])
    sum_x = 0
    sum_y = 0
    sum_z = 0
    sum_flex = 0
    sum_lat = 0
    sum_incl = 0
    peak = int(a[_A_PEAK])
    low = int(a[_A_LOW])
    for i in range(start, stop):
        ux = (u[3 * i] ^ 0x8000) - 0x8000
        uy = (u[3 * i + 1] ^ 0x8000) - 0x8000
        uz = (u[3 * i + 2] ^ 0x8000) - 0x8000
        sum_x += ux
        sum_y += uy
        sum_z += uz
        # Q14 x Q14 -> Q28, three terms < 2**30: no overflow in 32-bit words.
        v1 = (m0 * ux + m1 * uy + m2 * uz) >> 14
        v2 = (m3 * ux + m4 * uy + m5 * uz) >> 14
        v3 = (m6 * ux + m7 * uy + m8 * uz) >> 14
        w1 = (r0 * ux + r1 * uy + r2 * uz) >> 14
        w2 = (r3 * ux + r4 * uy + r5 * uz) >> 14
        w3 = (r6 * ux + r7 * uy + r8 * uz) >> 14
        flex = 0
        lat = 0
        x = 0
        y = 0
        for k in range(3):
            # k = 0: flexion atan2(v3, v1); 1: lateral atan2(v2, |v1, v3|);
            # 2: inclination atan2(|w2, w3|, w1), signed by w3.
            if k == 0:
                y = v3
                x = v1
            else:
                if k == 1:
                    y = v2
                    s = v1 * v1 + v3 * v3
                else:
                    x = w1
                    s = w2 * w2 + w3 * w3
                # integer square root of s, bit by bit (s < 2**30 for unit vectors in Q14)
                if s > 0x3FFFFFFF:
                    s = 0x3FFFFFFF
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
                if k == 1:
                    x = root
                else:
                    y = root
            ay = y if y >= 0 else -y
            ax = x if x >= 0 else -x
            if ay == 0 and ax == 0:
                cdeg = 0
            else:
                if ay <= ax:
                    r = (ay << 14) // ax
                else:
                    r = (ax << 14) // ay
                j = r >> 8
                if j >= 64:
                    cdeg = int(table[64])
                else:
                    t0 = int(table[j])
                    cdeg = t0 + (((int(table[j + 1]) - t0) * (r & 0xFF) + 128) >> 8)
                if ay > ax:
                    cdeg = 9000 - cdeg
            if x < 0:
                cdeg = 18000 - cdeg
            ddeg = (cdeg + 5) // 10
            if k == 0:
                if y < 0:
                    ddeg = -ddeg
                flex = ddeg
                o[3 * i] = ddeg
            elif k == 1:
                if y < 0:
                    ddeg = -ddeg
                lat = ddeg
                o[3 * i + 1] = ddeg
            else:
                if w3 < 0:
                    ddeg = -ddeg
                o[3 * i + 2] = ddeg
                sum_incl += ddeg
        sum_flex += flex
        sum_lat += lat
        if flex + _BIAS > peak:
            peak = flex + _BIAS
        if flex + _BIAS < low:
            low = flex + _BIAS
    n = stop - start
    a[_A_N] = int(a[_A_N]) + n
    a[_A_UX] = int(a[_A_UX]) + sum_x + n * 16384
    a[_A_UY] = int(a[_A_UY]) + sum_y + n * 16384
    a[_A_UZ] = int(a[_A_UZ]) + sum_z + n * 16384
    a[_A_FLEX] = int(a[_A_FLEX]) + sum_flex + n * _BIAS
    a[_A_LAT] = int(a[_A_LAT]) + sum_lat + n * _BIAS
    a[_A_INCL] = int(a[_A_INCL]) + sum_incl + n * _BIAS
    a[_A_PEAK] = peak
    a[_A_LOW] = low


def isqrt(n):
    """Integer square root (floor) of 0 <= n < 2**30, without big ints."""
    root = 0
    bit = 1 << 28
    while bit > n:
        bit >>= 2
    while bit:
        if n >= root + bit:
            n -= root + bit
            root = (root >> 1) + bit
        else:
            root >>= 1
        bit >>= 2
    return root


def atan2_cdeg(y, x):
    """atan2 in 0.01 deg (-18000..18000) of ints |y|, |x| < 2**16, from the same table as the
    per-sample kernel (for per-second code: ints only, nothing allocated)."""
    ay = y if y >= 0 else -y
    ax = x if x >= 0 else -x
    if ay == 0 and ax == 0:
        return 0
    r = (ay << 14) // ax if ay <= ax else (ax << 14) // ay
    j = r >> 8
    if j >= 64:
        cdeg = _ATAN_CDEG[64]
    else:
        t0 = _ATAN_CDEG[j]
        cdeg = t0 + (((_ATAN_CDEG[j + 1] - t0) * (r & 0xFF) + 128) >> 8)
    if ay > ax:
        cdeg = 9000 - cdeg
    if x < 0:
        cdeg = 18000 - cdeg
    return -cdeg if y < 0 else cdeg


def _frame_rows(x, y, z):
    """Rows e1, e2, e3 (floats) of the frame whose e1 is (x, y, z) and whose e2 is the sensor's
    y axis made orthogonal to e1 (the sensor's z axis when e1 lies along y)."""
    norm = (x * x + y * y + z * z) ** 0.5
    if norm <= 0:
        x, y, z, norm = 1.0, 0.0, 0.0, 1.0
    x, y, z = x / norm, y / norm, z / norm
    # e2 = Y - (Y.e1) e1
    bx, by, bz = -y * x, 1.0 - y * y, -y * z
    nb = (bx * bx + by * by + bz * bz) ** 0.5
    if nb < 0.1:
        # e1 (nearly) along y (calibrated lying on one side): build e2 from -z instead.
        bx, by, bz = z * x, z * y, z * z - 1.0
        nb = (bx * bx + by * by + bz * bz) ** 0.5
    bx, by, bz = bx / nb, by / nb, bz / nb
    cx = y * bz - z * by
    cy = z * bx - x * bz
    cz = x * by - y * bx
    return (x, y, z, bx, by, bz, cx, cy, cz)


def _q14(v):
    return int(v * ONE_Q14 + (0.5 if v >= 0 else -0.5))


class PostureSettings:
    """Settings of the posture angles and their calibration.

    calibration_s      seconds of the wearer's neutral posture averaged by `calibrate()`
                       (after one second skipped for the button press); default 3 s.
    auto_calibrate     take the neutral posture from upright walking while the wearer never
                       calibrated (ActiPASS reference method); default True.
    auto_walk_s        walking seconds whose median up vector is the walking reference;
                       default 60 s.
    auto_walk_bout_s   the first seconds of every walking bout are not used (turns, starting
                       and stopping), so bouts shorter than this give nothing; default 10 s.
    auto_walk_lean_deg the trunk leans forward this much more walking than standing upright:
                       the walking median turned back by it is upright.  ActiPASS uses 6 deg
                       (the mean difference in 50 BAuA measurements, EstimateRefTrunk1.m);
                       default 6.
    """

    def __init__(
        self, calibration_s=3, auto_calibrate=True, auto_walk_s=60, auto_walk_bout_s=10, auto_walk_lean_deg=6
    ):
        self.calibration_s = calibration_s
        self.auto_calibrate = auto_calibrate
        self.auto_walk_s = auto_walk_s
        self.auto_walk_bout_s = auto_walk_bout_s
        self.auto_walk_lean_deg = auto_walk_lean_deg

    @classmethod
    def from_config(cls, cfg):
        return cls(
            cfg.get("calibration_s", 3),
            cfg.get("auto_calibrate", True),
            cfg.get("auto_walk_s", 60),
            cfg.get("auto_walk_bout_s", 10),
            cfg.get("auto_walk_lean_deg", 6),
        )


# Neutral sources
NEUTRAL_DEFAULT = const(-1)  # never calibrated: the sensor's x axis is taken as upright


class Posture:
    """Posture angles of one sensor, its neutral posture and its walking reference.

    capacity   samples per batch at most (the size of the fusion filter's up buffer / 3)
    sensor     protocol.SENSOR_UPPER or SENSOR_LOWER (for CALIBRATION events)
    sink       object with append(rtype, payload) (the log store) for CALIBRATION events

    Per batch (any number of spans):  update(up_q14, start, stop)
        angles[3*i], [3*i+1], [3*i+2] = flexion, lateral, inclination of sample i (0.1 deg)
    Per second:  end_second(now_s, activity) -> then read
        samples, flexion_ddeg (mean), flexion_min_ddeg, flexion_peak_ddeg, lateral_ddeg,
        inclination_ddeg (means),
        up_q14 (mean up vector this second, array('h', 3))
    """

    def __init__(self, capacity, sensor=protocol.SENSOR_UPPER, settings=None, sink=None):
        self.settings = settings if settings is not None else PostureSettings()
        self.sensor = sensor
        self.sink = sink
        self.capacity = capacity
        self.angles = array("h", bytes(6 * capacity))
        self._frame = array("h", bytes(36))
        self._acc = array("i", bytes(4 * _A_WORDS))
        self.up_q14 = array("h", (ONE_Q14, 0, 0))
        self.samples = 0
        self.flexion_ddeg = 0
        self.flexion_peak_ddeg = 0
        self.flexion_min_ddeg = 0
        self.lateral_ddeg = 0
        self.inclination_ddeg = 0
        # Neutral (flexion zero) and reference (inclination zero) up vectors, floats.
        self.neutral = (1.0, 0.0, 0.0)
        self.neutral_source = NEUTRAL_DEFAULT
        self.reference = None  # walking reference once measured
        # calibration hold in progress
        self._cal_method = -1
        self._cal_wait = 0
        self._cal_left = 0
        self._cal_list = []
        self._cal_skip = -1  # >= 0: a hold anchored to a sample (see calibrate), else per second
        self._cal_hold = 0
        self._cal_per_s = 1
        self._cal_n = 0
        self._cal_sum = [0, 0, 0]
        self._cal_sec = [0, 0, 0]
        # automatic walking reference
        self._walk = array("h", bytes(6 * self.settings.auto_walk_s))
        self._walk_n = 0
        self._walk_run = 0
        self._walk_done = False
        self._reset_acc()
        self._set_frames()

    # ---- per sample ---------------------------------------------------------------------
    def update(self, up_q14, start, stop):
        """Angles of samples start..stop-1 of the batch (up_q14[3*i..3*i+2]); allocates nothing."""
        acc = self._acc
        acc[_A_START] = start
        acc[_A_STOP] = stop
        _posture_kernel(self._frame, up_q14, self.angles, acc)
        if self._cal_skip >= 0 and self._cal_n < self._cal_hold:
            self._calibration_samples(up_q14, start, stop)

    # ---- per second ---------------------------------------------------------------------
    def end_second(self, now_s, activity):
        """Close the second: means, calibration hold, walking reference (`activity` is this
        second's class, protocol.ACTIVITY_*)."""
        acc = self._acc
        n = acc[_A_N]
        self.samples = n
        if n:
            self.flexion_ddeg = _mean(acc[_A_FLEX], n, _BIAS)
            self.flexion_peak_ddeg = acc[_A_PEAK] - _BIAS
            self.flexion_min_ddeg = acc[_A_LOW] - _BIAS
            self.lateral_ddeg = _mean(acc[_A_LAT], n, _BIAS)
            self.inclination_ddeg = _mean(acc[_A_INCL], n, _BIAS)
            up = self.up_q14
            up[0] = _mean(acc[_A_UX], n, ONE_Q14)
            up[1] = _mean(acc[_A_UY], n, ONE_Q14)
            up[2] = _mean(acc[_A_UZ], n, ONE_Q14)
        self._reset_acc()
        if not n:
            return
        if self._cal_method >= 0:
            if self._cal_skip < 0:
                self._calibration_second(now_s)
            elif self._cal_n >= self._cal_hold:
                self._finish_calibration(now_s)
        if activity == protocol.ACTIVITY_NOT_WORN:
            # Taken off: the next wear may sit differently, so measure the walking reference
            # again (an automatic neutral follows it; a wearer's own calibration stays).
            self._walk_n = 0
            self._walk_run = 0
            self._walk_done = False
        elif activity == protocol.ACTIVITY_WALKING:
            self._walk_run += 1
            if not self._walk_done and self._walk_run > self.settings.auto_walk_bout_s:
                self._walking_second(now_s)
        else:
            self._walk_run = 0

    def _reset_acc(self):
        acc = self._acc
        for i in range(_A_N, _A_WORDS):
            acc[i] = 0
        acc[_A_LOW] = 2 * _BIAS

    # ---- calibration --------------------------------------------------------------------
    def calibrate(self, method=protocol.CAL_BUTTON, skip_samples=None, samples_per_s=None):
        """Start a calibration hold: the mean up vector of the next calibration_s seconds
        (after one skipped second) becomes the neutral posture; logs a CALIBRATION event.

        Without skip_samples the hold is whole seconds: the rest of the second running now
        counts as the skipped second (exact when the request comes at a second boundary, as the
        bench drivers' calibrate command does).  With skip_samples (the button: the pipeline
        knows the release to the sample) the hold starts skip_samples after the last sample
        processed and lasts calibration_s * samples_per_s samples, whatever the phase of the
        seconds: a wearer sways a degree or two within a second, and a hold that starts
        anywhere from 0 to 1.5 s after the release moves the neutral by as much."""
        self._cal_method = method
        self._cal_wait = _CAL_SKIP_S
        self._cal_left = self.settings.calibration_s
        self._cal_list = []
        if skip_samples is None or not samples_per_s:
            self._cal_skip = -1
            return
        self._cal_skip = skip_samples if skip_samples > 0 else 0
        self._cal_per_s = samples_per_s
        self._cal_hold = self.settings.calibration_s * samples_per_s
        self._cal_n = 0
        for k in range(3):
            self._cal_sum[k] = 0
            self._cal_sec[k] = 0

    def _calibration_samples(self, up, start, stop):
        # Only while a sample-anchored hold runs (a few seconds after a button press).
        i = start
        skip = self._cal_skip
        if skip > 0:
            take = stop - i if stop - i < skip else skip
            i += take
            self._cal_skip = skip - take
        total = self._cal_sum
        sec = self._cal_sec
        per_s = self._cal_per_s
        while i < stop and self._cal_n < self._cal_hold:
            for k in range(3):
                v = up[3 * i + k]
                total[k] += v
                sec[k] += v
            self._cal_n += 1
            if self._cal_n % per_s == 0:
                # one vector per second of the hold, for the spread
                self._cal_list.append((sec[0], sec[1], sec[2]))
                sec[0] = sec[1] = sec[2] = 0
            i += 1

    def _finish_calibration(self, now_s):
        total = self._cal_sum
        vectors = self._cal_list
        method = self._cal_method
        self._cal_method = -1
        self._cal_skip = -1
        self._cal_list = []
        mean = _unit(total[0], total[1], total[2])
        self.set_neutral(mean, method, now_s, _spread_ddeg(vectors, mean))

    @property
    def calibrating(self):
        return self._cal_method >= 0

    def _calibration_second(self, now_s):
        if self._cal_wait > 0:
            self._cal_wait -= 1
            return
        up = self.up_q14
        self._cal_list.append((up[0], up[1], up[2]))
        self._cal_left -= 1
        if self._cal_left > 0:
            return
        vectors = self._cal_list
        method = self._cal_method
        self._cal_method = -1
        self._cal_list = []
        mean = _unit(
            sum(v[0] for v in vectors), sum(v[1] for v in vectors), sum(v[2] for v in vectors)
        )
        self.set_neutral(mean, method, now_s, _spread_ddeg(vectors, mean))

    def set_neutral(self, up, method, now_s=0, spread_ddeg=0, log=True):
        """Use `up` (x, y, z; any length) as the neutral posture, calibrated by `method`
        (protocol.CAL_*); logs a CALIBRATION event unless log is False (restored from flash)."""
        self.neutral = _unit(up[0], up[1], up[2])
        self.neutral_source = method
        self._set_frames()
        if log and self.sink is not None:
            x, y, z = self.neutral
            self.sink.append(
                protocol.CALIBRATION,
                protocol.encode_event(
                    protocol.CALIBRATION,
                    now_s,
                    method,
                    self.sensor,
                    int(round(x * 1000)),
                    int(round(y * 1000)),
                    int(round(z * 1000)),
                    min(int(spread_ddeg), 1800),
                ),
            )

    def set_reference(self, up):
        """Use `up` as the zero of absolute inclination (normally measured from walking)."""
        self.reference = _unit(up[0], up[1], up[2])
        self._set_frames()

    def _walking_second(self, now_s):
        up = self.up_q14
        walk = self._walk
        i = 3 * self._walk_n
        walk[i] = up[0]
        walk[i + 1] = up[1]
        walk[i + 2] = up[2]
        self._walk_n += 1
        if self._walk_n < self.settings.auto_walk_s:
            return
        # ActiPASS: the reference is the median of the up vector while walking upright.
        n = self._walk_n
        median = _unit(
            _median([walk[3 * k] for k in range(n)]),
            _median([walk[3 * k + 1] for k in range(n)]),
            _median([walk[3 * k + 2] for k in range(n)]),
        )
        vectors = [(walk[3 * k], walk[3 * k + 1], walk[3 * k + 2]) for k in range(n)]
        spread = _spread_ddeg(vectors, median)
        self._walk_done = True
        self._walk_n = 0
        # Upright = the walking median turned back by the walking lean, in its sagittal plane.
        import math

        lean = math.radians(self.settings.auto_walk_lean_deg)
        r = _frame_rows(*median)
        c, s = math.cos(lean), math.sin(lean)
        upright = (c * r[0] - s * r[6], c * r[1] - s * r[7], c * r[2] - s * r[8])
        self.set_reference(upright)
        if self.settings.auto_calibrate and self.neutral_source in (NEUTRAL_DEFAULT, protocol.CAL_AUTO_WALK):
            self.set_neutral(upright, protocol.CAL_AUTO_WALK, now_s, spread)

    def _set_frames(self):
        frame = self._frame
        rows = _frame_rows(*self.neutral)
        ref = self.reference if self.reference is not None else self.neutral
        rows_ref = _frame_rows(*ref)
        for i in range(9):
            frame[i] = _q14(rows[i])
            frame[9 + i] = _q14(rows_ref[i])


def _mean(total, n, bias):
    # total = sum of (value + bias) over n samples -> rounded mean value (ints only)
    return (2 * total + n) // (2 * n) - bias


def _unit(x, y, z):
    norm = (x * x + y * y + z * z) ** 0.5
    if norm <= 0:
        return (1.0, 0.0, 0.0)
    return (x / norm, y / norm, z / norm)


def _median(values):
    values = sorted(values)
    n = len(values)
    if n % 2:
        return values[n // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2


def _spread_ddeg(vectors, mean):
    """RMS angle (0.1 deg) of the vectors from the unit vector `mean`."""
    import math

    if not vectors:
        return 0
    total = 0.0
    for v in vectors:
        x, y, z = _unit(v[0], v[1], v[2])
        c = x * mean[0] + y * mean[1] + z * mean[2]
        c = 1.0 if c > 1.0 else c
        angle = math.degrees(math.acos(c))
        total += angle * angle
    return int(10 * (total / len(vectors)) ** 0.5 + 0.5)
