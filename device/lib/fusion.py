"""Tilt (gravity direction) from gyro + accelerometer: an allocation-free fixed-point filter.

Output: "up" (the direction opposite to gravity) as a unit vector in the sensor frame, Q14
(16384 = 1.0). Upright wearer: about (16384, 0, 0). Heading is not estimated (6-axis).

The method follows VQF (Laidig & Seel 2023, "VQF: Highly accurate IMU orientation estimation
with bias estimation and magnetic disturbance rejection"), reduced to what tilt needs:

1. The gyro rate, minus the estimated bias, is integrated into a quaternion ``q`` that maps the
   sensor frame to an almost-inertial frame I (it drifts only as slowly as the gyro errors).
   A two-sample coning term ``coning_gain * (theta_prev x theta)`` recovers part of the rotation
   lost when the IMU averages its rate over a sample period.
2. The accelerometer is rotated into I and low-passed there (2nd-order Butterworth, time
   constant ``tau_acc_s``). In an inertial frame linear accelerations average out, gravity does
   not, so the low-passed vector is "up" in I; rotated back with ``q`` it is up in the sensor.
   This is the acceleration rejection: there is no magnitude gate to tune, and 10 g impacts,
   taps and vibration only pass through the low-pass. For the first ``tau_acc_s`` the output is
   the running mean of the inertial accelerations (fast start-up).
3. Rest detection (gyro and accelerometer stay within ``rest_gyro_dps``/``rest_accel_g`` of
   their 0.5 s low-pass for ``rest_min_s``) and, at rest, a scalar Kalman update of the gyro bias
   towards the low-passed rate (VQF's rest bias estimation with its default noise figures).
   While at rest the inertial low-pass runs with the shorter ``tau_acc_rest_s``: a residual gyro
   bias lags the output by about bias x tau, and at rest there is nothing to reject
   (docs/fusion.md).

Fixed point (all values fit in signed 32 bits; products are shifted at once, so the same code
gives the same integers on the ESP32 (32-bit viper words) and on 64-bit hosts):

- quaternion, gyro half-angle per sample, gyro bias: Q29 (1.0 = 2**29, rad for angles);
  products of two Q29 numbers of magnitude <= 1 use a split 15-bit multiply (MULHI29 below);
- accelerometer: Q12 g (16 g = 2**16); inertial low-pass: Q22 g; rotation matrix: Q14;
- rest-detection low-pass: Q20 g and Q24 rad (half-angle per sample);
- up vector: Q14.

Multiplying by a positive Q15 constant ``c`` (< 2**15) is written out as
``(v >> 15) * c + (((v & 0x7FFF) * c + 0x4000) >> 15)`` = round(v * c / 2**15) exactly, valid
for |v| < 2**30 ("MULC" in the comments). MULHI29(a, b) = a * b / 2**29 for |a|, |b| <= 2**29 is
``((ah * bh) << 1) + ((ah * bl + al * bh) >> 14)`` with ``ah = a >> 15`` and ``al = a & 0x7FFF``.

On MicroPython the batch update is ``@micropython.viper`` native code reading the raw FIFO
bytes through ``ptr16``; it allocates nothing. Under CPython (tests, host tools) the very same
function runs as plain Python on the same integers, with small stand-ins for ``ptr16``/``ptr32``.

On the BROAD recordings (real IMU data with optical ground truth; bench/fusion_broad.py) this
filter, fed raw int16 samples at +-16 g / +-2000 deg/s in the micropython unix port, scores a mean
inclination RMSE of 0.84 deg over 16 trials, against 0.93 deg for VQF on the float data.

Minimal use::

    fusion = FusionFilter(52, imu.accel_ug_per_lsb, imu.gyro_udps_per_lsb)
    up_per_sample = array("h", bytes(6 * 64))       # 3 x int16 per sample, preallocated
    n = imu.read_fifo(buf)                          # 12 bytes per sample
    fusion.update_batch(buf, n, up_per_sample)     # or update_batch(buf, n)
    x_q14, y_q14, z_q14 = fusion.up_q14             # latest; fusion.up() gives floats
"""

import sys
from array import array

if sys.implementation.name == "micropython":
    import micropython
    from micropython import const  # pyright: ignore[reportAssignmentType]
else:  # CPython (tests, host tools): the viper kernels run as plain Python
    from viper_cpython import const, micropython, ptr16, ptr32

ONE_Q14 = const(16384)  # 1.0 in the up vector
SAMPLE_BYTES = const(12)  # int16 LE ax, ay, az, gx, gy, gz

_ONE_Q29 = const(1 << 29)
_SQRT2_M1_Q15 = const(13573)  # (sqrt(2) - 1) * 2**15: Butterworth damping 2*zeta = sqrt(2)
# 1/12, 1/30, 1/6, 1/20, 1/42 in Q15: the cos/sin series in Horner form
_INV12_Q15 = const(2731)
_INV30_Q15 = const(1092)
_INV6_Q15 = const(5461)
_INV20_Q15 = const(1638)
_INV42_Q15 = const(780)
_V_MAX = const(429496730)  # 0.8 rad in Q29: per-axis limit of the half-angle per sample

# State words (array('i')); signed values, loaded as two 16-bit halves (see _update_batch).
_Q0 = const(0)  # quaternion sensor -> I, Q29 (4 words)
_HP0 = const(4)  # previous bias-free half-angle per sample, Q29 (3 words), for coning
_B0 = const(7)  # gyro bias as half-angle per sample, Q29 (3 words)
_BIAS_P = const(10)  # bias variance, (0.01 deg/s)^2 * 2**14
_REST_N = const(11)  # consecutive samples that looked still
_INIT_N = const(12)  # samples averaged so far at start-up
_RESTING = const(13)  # 1 while rest is detected
_REST_READY = const(14)  # 1 once the rest low-pass holds a first sample
_ACC_Y = const(15)  # inertial acceleration low-pass output, Q22 g (3 words)
_ACC_W = const(18)  # its second state, Q22 g (3 words)
_REST_Y = const(21)  # rest low-pass outputs: accel Q20 g (3), gyro Q24 rad (3) (6 words)
_REST_W = const(27)  # their second states (6 words)
_UP = const(33)  # latest up vector, Q14 (3 words)
_STATE_WORDS = const(36)

# Coefficient words (array('i')), all >= 0, set once by the constructor.
_K_ACC_MUL = const(0)  # raw accel LSB -> Q12 g: (raw * mul + round) >> shift
_K_ACC_SHIFT = const(1)
_K_ACC_ROUND = const(2)
_K_GYR_HI = const(3)  # raw gyro LSB -> Q29 half-angle per sample: raw * hi + (raw * lo) / 2**15
_K_GYR_LO = const(4)
_K_C_ACC = const(5)  # omega * Ts of the inertial low-pass, Q15
_K_C_REST = const(6)  # omega * Ts of the rest low-pass, Q15
_K_CONING = const(7)  # 2 * coning_gain, Q15 (half-angles: phi/2 = h + 2c (h_prev x h))
_K_TH_GYR = const(8)  # rest threshold, Q24 half-angle per sample, and its square
_K_TH_GYR2 = const(9)
_K_TH_ACC = const(10)  # rest threshold, Q16 g, and its square
_K_TH_ACC2 = const(11)
_K_BIAS_CLIP = const(12)  # Q29 half-angle per sample
_K_REST_MIN = const(13)  # samples
_K_INIT_SAMPLES = const(14)  # samples of running mean at start-up
_K_P0 = const(15)  # bias Kalman filter: initial/maximum variance, growth per sample,
_K_V = const(16)  # rest measurement noise; (0.01 deg/s)^2 * 2**14
_K_W = const(17)
_K_C_ACC_REST = const(18)  # omega * Ts of the inertial low-pass while at rest, Q15
_COEF_WORDS = const(19)


class FusionSettings:
    """Tuning of FusionFilter. The defaults are VQF's (tuned there on real data), except
    coning_gain, which VQF lacks: 1/8 is best on BROAD's undisturbed trials (1/12, the textbook
    value for linearly varying rates, is close behind; 0 disables the correction).

    tau_acc_s            time constant of the inertial-frame accelerometer low-pass, s (3.0)
    tau_acc_rest_s       the same while rest is detected, s (0.5): at rest the accelerometer
                         measures gravity alone, and a shorter low-pass shrinks the lag that a
                         gyro bias error causes (bias error x tau: 0.3 deg/s -> ~1 deg at 3 s);
                         a seated wearer's slow slouch drift passes as rest, and its rate goes
                         into the bias estimate: the same lag, drift rate x tau
    coning_gain          two-sample coning correction gain (0.125)
    rest_tau_s           low-pass time constant used by rest detection, s (0.5)
    rest_gyro_dps        rest: max deviation of the gyro from its low-pass, deg/s (2.0)
    rest_accel_g         rest: max deviation of the accelerometer from its low-pass, g (0.05)
    rest_min_s           rest: how long both must stay within the thresholds, s (1.5)
    bias_clip_dps        largest gyro bias accepted, deg/s (3.0; VQF's 2.0 is below the
                         LSM6DSO's zero-rate level plus drift, and then rest is rarely detected)
    bias_sigma_init_dps  initial bias uncertainty, deg/s (0.5)
    bias_forget_s        time for the bias uncertainty to grow by 0.1 deg/s, s (100.0)
    bias_sigma_rest_dps  noise of a rest bias measurement, deg/s (0.03)
    """

    def __init__(
        self,
        tau_acc_s=3.0,
        coning_gain=0.125,
        tau_acc_rest_s=0.5,
        rest_tau_s=0.5,
        rest_gyro_dps=2.0,
        rest_accel_g=0.05,
        rest_min_s=1.5,
        bias_clip_dps=3.0,
        bias_sigma_init_dps=0.5,
        bias_forget_s=100.0,
        bias_sigma_rest_dps=0.03,
    ):
        self.tau_acc_s = tau_acc_s
        self.coning_gain = coning_gain
        self.tau_acc_rest_s = tau_acc_rest_s
        self.rest_tau_s = rest_tau_s
        self.rest_gyro_dps = rest_gyro_dps
        self.rest_accel_g = rest_accel_g
        self.rest_min_s = rest_min_s
        self.bias_clip_dps = bias_clip_dps
        self.bias_sigma_init_dps = bias_sigma_init_dps
        self.bias_forget_s = bias_forget_s
        self.bias_sigma_rest_dps = bias_sigma_rest_dps


_RAD_PER_DEG = 0.017453292519943295


class FusionFilter:
    """6-axis tilt filter over raw LSM6DS samples (12 bytes each: int16 LE ax ay az gx gy gz).

    rate_hz            sample rate, Hz (26..208 typical)
    accel_ug_per_lsb   accelerometer sensitivity, micro-g per LSB (488 at +-16 g)
    gyro_udps_per_lsb  gyro sensitivity, micro-deg/s per LSB (70000 at +-2000 deg/s)
    settings           FusionSettings (defaults when None)

    ``update_batch(buf, n)`` processes n samples; ``up_q14`` is the latest up vector.
    """

    def __init__(self, rate_hz, accel_ug_per_lsb, gyro_udps_per_lsb, settings=None):
        s = settings if settings is not None else FusionSettings()
        self.settings = s
        self.rate_hz = rate_hz
        self.accel_ug_per_lsb = accel_ug_per_lsb
        self.gyro_udps_per_lsb = gyro_udps_per_lsb
        ts_s = 1.0 / rate_hz
        k = array("i", [0] * _COEF_WORDS)

        # Accelerometer: raw -> Q12 g with the largest shift that keeps raw * mul within 2**30.
        acc_q12_per_lsb = accel_ug_per_lsb * 4096 / 1000000
        if acc_q12_per_lsb * 32768 > 65536.5:
            raise ValueError("accelerometer full scale above +-16 g is not supported")
        shift = 0
        while acc_q12_per_lsb * (1 << (shift + 1)) < 32767 and shift < 24:
            shift += 1
        k[_K_ACC_MUL] = int(acc_q12_per_lsb * (1 << shift) + 0.5)
        k[_K_ACC_SHIFT] = shift
        k[_K_ACC_ROUND] = (1 << shift) >> 1

        # Gyro: raw -> half-angle per sample in Q29 rad, split in integer and 15-bit fraction.
        half_q29_per_lsb = gyro_udps_per_lsb * 1e-6 * _RAD_PER_DEG * ts_s / 2 * (1 << 29)
        if half_q29_per_lsb * 32768 > _V_MAX:
            raise ValueError("gyro full scale too large for this rate: over 92 deg per sample")
        hi = int(half_q29_per_lsb)
        lo = int((half_q29_per_lsb - hi) * 32768 + 0.5)
        if lo >= 32768:
            hi, lo = hi + 1, 0
        k[_K_GYR_HI] = hi
        k[_K_GYR_LO] = lo

        k[_K_C_ACC] = int(1.4142135623730951 / s.tau_acc_s * ts_s * 32768 + 0.5)
        k[_K_C_REST] = int(1.4142135623730951 / s.rest_tau_s * ts_s * 32768 + 0.5)
        k[_K_C_ACC_REST] = int(1.4142135623730951 / s.tau_acc_rest_s * ts_s * 32768 + 0.5)
        if k[_K_C_ACC_REST] < 16 or k[_K_C_ACC_REST] >= 32768:
            raise ValueError("tau_acc_rest_s out of range for this rate")
        if k[_K_C_ACC] < 16 or k[_K_C_REST] < 16 or k[_K_C_REST] >= 32768:
            raise ValueError("tau_acc_s/rest_tau_s out of range for this rate")
        k[_K_CONING] = int(2 * s.coning_gain * 32768 + 0.5)
        q24_per_dps = _RAD_PER_DEG * ts_s / 2 * (1 << 24)
        th_gyr = int(s.rest_gyro_dps * q24_per_dps + 0.5)
        if 3 * th_gyr * th_gyr >= 1 << 31:
            raise ValueError("rest_gyro_dps too large for this rate")
        k[_K_TH_GYR] = th_gyr
        k[_K_TH_GYR2] = th_gyr * th_gyr
        th_acc = int(s.rest_accel_g * 65536 + 0.5)
        if 3 * th_acc * th_acc >= 1 << 31:
            raise ValueError("rest_accel_g too large")
        k[_K_TH_ACC] = th_acc
        k[_K_TH_ACC2] = th_acc * th_acc
        k[_K_BIAS_CLIP] = int(s.bias_clip_dps * q24_per_dps * 32 + 0.5)
        k[_K_REST_MIN] = int(s.rest_min_s * rate_hz + 0.5)
        k[_K_INIT_SAMPLES] = max(1, int(s.tau_acc_s * rate_hz + 0.5))
        # Bias Kalman filter (VQF's rest update), variances in (0.01 deg/s)^2, scaled by 2**14.
        p0 = (s.bias_sigma_init_dps * 100.0) ** 2
        v = (0.1 * 100.0) ** 2 * ts_s / s.bias_forget_s
        p_rest = (s.bias_sigma_rest_dps * 100.0) ** 2
        w = p_rest * p_rest / v + p_rest
        if (p0 + w) * 16384 >= 1 << 31 or w * 16384 < 1 << 16:
            raise ValueError("bias noise settings out of range")
        k[_K_P0] = int(p0 * 16384 + 0.5)
        k[_K_V] = max(1, int(v * 16384 + 0.5))
        k[_K_W] = int(w * 16384 + 0.5)
        self._coef = k

        self._state = array("i", [0] * _STATE_WORDS)
        self.up_q14 = memoryview(self._state)[_UP : _UP + 3]  # latest up vector, Q14
        self.reset()

    def reset(self):
        """Forget everything: identity attitude, zero bias, start-up averaging again."""
        st = self._state
        for i in range(_STATE_WORDS):
            st[i] = 0
        st[_Q0] = _ONE_Q29
        st[_BIAS_P] = self._coef[_K_P0]
        st[_UP] = ONE_Q14  # before the first sample: assume upright

    def update_batch(self, buf, n, up_out=None):
        """Process n samples from ``buf`` (>= 12*n bytes, 2-byte aligned).

        up_out: optional array('h') of >= 3*n: the up vector after each sample, Q14 (x, y, z).
        Allocates nothing.
        """
        if n <= 0:
            return
        if len(buf) < n * SAMPLE_BYTES:
            raise ValueError("buffer holds fewer than n samples")
        if up_out is None:
            _update_batch(self._state, self._coef, buf, n, self._state, 0)
        else:
            if len(up_out) < 3 * n:
                raise ValueError("up_out needs 3*n entries")
            _update_batch(self._state, self._coef, buf, n, up_out, 1)

    def up(self):
        """Latest up vector as floats (x, y, z); allocates, so call it per second, not per sample."""
        u = self.up_q14
        return (u[0] / ONE_Q14, u[1] / ONE_Q14, u[2] / ONE_Q14)

    @property
    def at_rest(self):
        return self._state[_RESTING] != 0

    def gyro_bias_dps(self):
        """Estimated gyro bias (x, y, z) in deg/s (floats: allocates)."""
        per_dps = _RAD_PER_DEG / self.rate_hz / 2 * (1 << 29)
        st = self._state
        return (st[_B0] / per_dps, st[_B0 + 1] / per_dps, st[_B0 + 2] / per_dps)


@micropython.viper
def _update_batch(state, coef, buf, n: int, up_out, want_out: int):
    raw = ptr16(buf)
    st32 = ptr32(state)
    # Signed state words are read as two 16-bit halves: ptr32 loads do not sign-extend on 64-bit
    # hosts (on the ESP32 a word is 32 bits and either way gives the same value).
    st16 = ptr16(state)
    k = ptr32(coef)  # coefficients are >= 0: plain 32-bit loads
    out = ptr16(up_out)

    acc_mul = k[_K_ACC_MUL]
    acc_shift = k[_K_ACC_SHIFT]
    acc_round = k[_K_ACC_ROUND]
    gyr_hi = k[_K_GYR_HI]
    gyr_lo = k[_K_GYR_LO]
    c_acc_move = k[_K_C_ACC]
    c_acc_rest = k[_K_C_ACC_REST]
    c_rest = k[_K_C_REST]
    c_con = k[_K_CONING]
    th_gyr = k[_K_TH_GYR]
    th_gyr2 = k[_K_TH_GYR2]
    th_acc = k[_K_TH_ACC]
    th_acc2 = k[_K_TH_ACC2]
    bias_clip = k[_K_BIAS_CLIP]
    rest_clip = bias_clip >> 5  # same limit in the rest low-pass's Q24
    rest_min = k[_K_REST_MIN]
    init_samples = k[_K_INIT_SAMPLES]
    p0 = k[_K_P0]
    p_growth = k[_K_V]
    w_rest = k[_K_W]

    # Carried across samples in locals: quaternion, previous half-angle, bias, up vector.
    q0 = ((st16[2 * _Q0 + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * _Q0]
    q1 = ((st16[2 * _Q0 + 3] ^ 0x8000) - 0x8000) << 16 | st16[2 * _Q0 + 2]
    q2 = ((st16[2 * _Q0 + 5] ^ 0x8000) - 0x8000) << 16 | st16[2 * _Q0 + 4]
    q3 = ((st16[2 * _Q0 + 7] ^ 0x8000) - 0x8000) << 16 | st16[2 * _Q0 + 6]
    hp0 = ((st16[2 * _HP0 + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * _HP0]
    hp1 = ((st16[2 * _HP0 + 3] ^ 0x8000) - 0x8000) << 16 | st16[2 * _HP0 + 2]
    hp2 = ((st16[2 * _HP0 + 5] ^ 0x8000) - 0x8000) << 16 | st16[2 * _HP0 + 4]
    b0 = ((st16[2 * _B0 + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0]
    b1 = ((st16[2 * _B0 + 3] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0 + 2]
    b2 = ((st16[2 * _B0 + 5] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0 + 4]
    up0 = ((st16[2 * _UP + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * _UP]
    up1 = ((st16[2 * _UP + 3] ^ 0x8000) - 0x8000) << 16 | st16[2 * _UP + 2]
    up2 = ((st16[2 * _UP + 5] ^ 0x8000) - 0x8000) << 16 | st16[2 * _UP + 4]
    bias_p = st32[_BIAS_P]  # >= 0
    rest_n = st32[_REST_N]
    init_n = st32[_INIT_N]
    resting = st32[_RESTING]

    for s in range(n):
        # ---- raw sample -> accel Q12 g, gyro half-angle per sample Q29 rad (bias included)
        base = s * 6
        r = (raw[base] ^ 0x8000) - 0x8000
        ax = (r * acc_mul + acc_round) >> acc_shift
        r = (raw[base + 1] ^ 0x8000) - 0x8000
        ay = (r * acc_mul + acc_round) >> acc_shift
        r = (raw[base + 2] ^ 0x8000) - 0x8000
        az = (r * acc_mul + acc_round) >> acc_shift
        r = (raw[base + 3] ^ 0x8000) - 0x8000
        gx = r * gyr_hi + ((r * gyr_lo + 0x4000) >> 15)
        r = (raw[base + 4] ^ 0x8000) - 0x8000
        gy = r * gyr_hi + ((r * gyr_lo + 0x4000) >> 15)
        r = (raw[base + 5] ^ 0x8000) - 0x8000
        gz = r * gyr_hi + ((r * gyr_lo + 0x4000) >> 15)

        # ---- rest detection: 2nd-order low-pass of each channel in the sensor frame;
        # still = every deviation from it small, and the low-passed rate below the bias clip.
        still = 1
        dev_acc2 = 0
        dev_gyr2 = 0
        first = st32[_REST_READY] == 0
        st32[_REST_READY] = 1
        for i in range(6):
            if i == 0:
                x = ax << 8  # Q20 g
            elif i == 1:
                x = ay << 8
            elif i == 2:
                x = az << 8
            elif i == 3:
                x = gx >> 5  # Q24 rad
            elif i == 4:
                x = gy >> 5
            else:
                x = gz >> 5
            jy = 2 * (_REST_Y + i)
            jw = 2 * (_REST_W + i)
            if first:
                y = x
                w = 0
            else:
                y = ((st16[jy + 1] ^ 0x8000) - 0x8000) << 16 | st16[jy]
                w = ((st16[jw + 1] ^ 0x8000) - 0x8000) << 16 | st16[jw]
                # w += c*(x - y - sqrt2*w); y += c*w   (MULC by the Q15 constants)
                e = x - y - w - ((w >> 15) * _SQRT2_M1_Q15 + (((w & 0x7FFF) * _SQRT2_M1_Q15 + 0x4000) >> 15))
                w += (e >> 15) * c_rest + (((e & 0x7FFF) * c_rest + 0x4000) >> 15)
                y += (w >> 15) * c_rest + (((w & 0x7FFF) * c_rest + 0x4000) >> 15)
            st32[_REST_Y + i] = y
            st32[_REST_W + i] = w
            d = x - y
            if i < 3:
                d = d >> 4  # Q16 g
                if d > th_acc or d < -th_acc:
                    still = 0
                else:
                    dev_acc2 += d * d
            else:
                if d > th_gyr or d < -th_gyr or y > rest_clip or y < -rest_clip:
                    still = 0
                else:
                    dev_gyr2 += d * d
        if still and dev_acc2 < th_acc2 and dev_gyr2 < th_gyr2:
            if rest_n < rest_min:
                rest_n += 1
        else:
            rest_n = 0
        resting = 1 if rest_n >= rest_min else 0

        # ---- gyro bias: VQF's rest update, a scalar Kalman filter per axis
        if bias_p < p0:
            bias_p += p_growth
        if resting:
            gain = bias_p // ((bias_p + w_rest) >> 15)  # Q15
            for i in range(3):
                jy = 2 * (_REST_Y + 3 + i)
                lp = (((st16[jy + 1] ^ 0x8000) - 0x8000) << 16 | st16[jy]) << 5  # Q29
                b = ((st16[2 * (_B0 + i) + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * (_B0 + i)]
                e = lp - b
                if e > bias_clip:
                    e = bias_clip
                elif e < -bias_clip:
                    e = -bias_clip
                b += (e >> 15) * gain + (((e & 0x7FFF) * gain + 0x4000) >> 15)
                if b > bias_clip:
                    b = bias_clip
                elif b < -bias_clip:
                    b = -bias_clip
                st32[_B0 + i] = b
            bias_p -= (bias_p >> 15) * gain + (((bias_p & 0x7FFF) * gain + 0x4000) >> 15)
            b0 = ((st16[2 * _B0 + 1] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0]
            b1 = ((st16[2 * _B0 + 3] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0 + 2]
            b2 = ((st16[2 * _B0 + 5] ^ 0x8000) - 0x8000) << 16 | st16[2 * _B0 + 4]

        # ---- strapdown integration: half-angle v = h + 2c (h_prev x h), all Q29
        h0 = gx - b0
        h1 = gy - b1
        h2 = gz - b2
        # h_prev x h with MULHI29 (operands split into >> 15 and & 0x7FFF parts)
        ph0 = hp0 >> 15
        pl0 = hp0 & 0x7FFF
        ph1 = hp1 >> 15
        pl1 = hp1 & 0x7FFF
        ph2 = hp2 >> 15
        pl2 = hp2 & 0x7FFF
        hh0 = h0 >> 15
        hl0 = h0 & 0x7FFF
        hh1 = h1 >> 15
        hl1 = h1 & 0x7FFF
        hh2 = h2 >> 15
        hl2 = h2 & 0x7FFF
        c0 = (((ph1 * hh2) << 1) + ((ph1 * hl2 + pl1 * hh2) >> 14)) - (
            ((ph2 * hh1) << 1) + ((ph2 * hl1 + pl2 * hh1) >> 14)
        )
        c1 = (((ph2 * hh0) << 1) + ((ph2 * hl0 + pl2 * hh0) >> 14)) - (
            ((ph0 * hh2) << 1) + ((ph0 * hl2 + pl0 * hh2) >> 14)
        )
        c2 = (((ph0 * hh1) << 1) + ((ph0 * hl1 + pl0 * hh1) >> 14)) - (
            ((ph1 * hh0) << 1) + ((ph1 * hl0 + pl1 * hh0) >> 14)
        )
        v0 = h0 + (c0 >> 15) * c_con + (((c0 & 0x7FFF) * c_con + 0x4000) >> 15)
        v1 = h1 + (c1 >> 15) * c_con + (((c1 & 0x7FFF) * c_con + 0x4000) >> 15)
        v2 = h2 + (c2 >> 15) * c_con + (((c2 & 0x7FFF) * c_con + 0x4000) >> 15)
        hp0 = h0
        hp1 = h1
        hp2 = h2

        # dq = (cos|v|, sin|v| v/|v|) from series in n2 = |v|^2, in Horner form so that every
        # intermediate stays below 2**30 (|v|^2 <= 1.92 with the per-axis limit):
        #   cos|v| = 1 - n2/2 (1 - n2/12 (1 - n2/30)),  sin|v|/|v| = 1 - n2/6 (1 - n2/20 (1 - n2/42))
        # The limit only acts beyond 92 deg per sample about one axis: the constructor keeps the
        # gyro's full scale below it, only the coning term could add a little.
        if v0 > _V_MAX:
            v0 = _V_MAX
        elif v0 < -_V_MAX:
            v0 = -_V_MAX
        if v1 > _V_MAX:
            v1 = _V_MAX
        elif v1 < -_V_MAX:
            v1 = -_V_MAX
        if v2 > _V_MAX:
            v2 = _V_MAX
        elif v2 < -_V_MAX:
            v2 = -_V_MAX
        vh0 = v0 >> 15
        vl0 = v0 & 0x7FFF
        vh1 = v1 >> 15
        vl1 = v1 & 0x7FFF
        vh2 = v2 >> 15
        vl2 = v2 & 0x7FFF
        n2 = (
            ((vh0 * vh0) << 1)
            + ((vh0 * vl0) >> 13)
            + ((vh1 * vh1) << 1)
            + ((vh1 * vl1) >> 13)
            + ((vh2 * vh2) << 1)
            + ((vh2 * vl2) >> 13)
        )
        nh = n2 >> 15
        nl = n2 & 0x7FFF
        # cos: t = 1 - n2/30; t = 1 - (n2/12) t; dw = 1 - (n2/2) t
        t = _ONE_Q29 - ((n2 >> 15) * _INV30_Q15 + (((n2 & 0x7FFF) * _INV30_Q15 + 0x4000) >> 15))
        f = (n2 >> 15) * _INV12_Q15 + (((n2 & 0x7FFF) * _INV12_Q15 + 0x4000) >> 15)
        th = t >> 15
        t = _ONE_Q29 - (((f >> 15) * th << 1) + (((f >> 15) * (t & 0x7FFF) + (f & 0x7FFF) * th) >> 14))
        th = t >> 15
        dw = _ONE_Q29 - ((nh * th) + ((nh * (t & 0x7FFF) + nl * th) >> 15))
        # sin/|v|: t = 1 - n2/42; t = 1 - (n2/20) t; sv = 1 - (n2/6) t
        t = _ONE_Q29 - ((n2 >> 15) * _INV42_Q15 + (((n2 & 0x7FFF) * _INV42_Q15 + 0x4000) >> 15))
        f = (n2 >> 15) * _INV20_Q15 + (((n2 & 0x7FFF) * _INV20_Q15 + 0x4000) >> 15)
        th = t >> 15
        t = _ONE_Q29 - (((f >> 15) * th << 1) + (((f >> 15) * (t & 0x7FFF) + (f & 0x7FFF) * th) >> 14))
        f = (n2 >> 15) * _INV6_Q15 + (((n2 & 0x7FFF) * _INV6_Q15 + 0x4000) >> 15)
        th = t >> 15
        sv = _ONE_Q29 - (((f >> 15) * th << 1) + (((f >> 15) * (t & 0x7FFF) + (f & 0x7FFF) * th) >> 14))
        sh = sv >> 15
        sl = sv & 0x7FFF
        dx = ((sh * vh0) << 1) + ((sh * vl0 + sl * vh0) >> 14)
        dy = ((sh * vh1) << 1) + ((sh * vl1 + sl * vh1) >> 14)
        dz = ((sh * vh2) << 1) + ((sh * vl2 + sl * vh2) >> 14)

        # q <- q (x) dq, every product MULHI29
        ah0 = q0 >> 15
        al0 = q0 & 0x7FFF
        ah1 = q1 >> 15
        al1 = q1 & 0x7FFF
        ah2 = q2 >> 15
        al2 = q2 & 0x7FFF
        ah3 = q3 >> 15
        al3 = q3 & 0x7FFF
        bhw = dw >> 15
        blw = dw & 0x7FFF
        bhx = dx >> 15
        blx = dx & 0x7FFF
        bhy = dy >> 15
        bly = dy & 0x7FFF
        bhz = dz >> 15
        blz = dz & 0x7FFF
        p0 = (
            (((ah0 * bhw) << 1) + ((ah0 * blw + al0 * bhw) >> 14))
            - (((ah1 * bhx) << 1) + ((ah1 * blx + al1 * bhx) >> 14))
            - (((ah2 * bhy) << 1) + ((ah2 * bly + al2 * bhy) >> 14))
            - (((ah3 * bhz) << 1) + ((ah3 * blz + al3 * bhz) >> 14))
        )
        p1 = (
            (((ah0 * bhx) << 1) + ((ah0 * blx + al0 * bhx) >> 14))
            + (((ah1 * bhw) << 1) + ((ah1 * blw + al1 * bhw) >> 14))
            + (((ah2 * bhz) << 1) + ((ah2 * blz + al2 * bhz) >> 14))
            - (((ah3 * bhy) << 1) + ((ah3 * bly + al3 * bhy) >> 14))
        )
        p2 = (
            (((ah0 * bhy) << 1) + ((ah0 * bly + al0 * bhy) >> 14))
            - (((ah1 * bhz) << 1) + ((ah1 * blz + al1 * bhz) >> 14))
            + (((ah2 * bhw) << 1) + ((ah2 * blw + al2 * bhw) >> 14))
            + (((ah3 * bhx) << 1) + ((ah3 * blx + al3 * bhx) >> 14))
        )
        p3 = (
            (((ah0 * bhz) << 1) + ((ah0 * blz + al0 * bhz) >> 14))
            + (((ah1 * bhy) << 1) + ((ah1 * bly + al1 * bhy) >> 14))
            - (((ah2 * bhx) << 1) + ((ah2 * blx + al2 * bhx) >> 14))
            + (((ah3 * bhw) << 1) + ((ah3 * blw + al3 * bhw) >> 14))
        )
        # Renormalise: |q|^2 = 1 + err with tiny err, so q *= 1 - err/2 (first-order 1/sqrt).
        ah0 = p0 >> 15
        ah1 = p1 >> 15
        ah2 = p2 >> 15
        ah3 = p3 >> 15
        err = (
            ((ah0 * ah0) << 1)
            + ((ah0 * (p0 & 0x7FFF)) >> 13)
            + ((ah1 * ah1) << 1)
            + ((ah1 * (p1 & 0x7FFF)) >> 13)
            + ((ah2 * ah2) << 1)
            + ((ah2 * (p2 & 0x7FFF)) >> 13)
            + ((ah3 * ah3) << 1)
            + ((ah3 * (p3 & 0x7FFF)) >> 13)
            - _ONE_Q29
        )
        eh = err >> 15
        el = err & 0x7FFF
        q0 = p0 - ((((ah0 * eh) << 1) + ((ah0 * el + (p0 & 0x7FFF) * eh) >> 14)) >> 1)
        q1 = p1 - ((((ah1 * eh) << 1) + ((ah1 * el + (p1 & 0x7FFF) * eh) >> 14)) >> 1)
        q2 = p2 - ((((ah2 * eh) << 1) + ((ah2 * el + (p2 & 0x7FFF) * eh) >> 14)) >> 1)
        q3 = p3 - ((((ah3 * eh) << 1) + ((ah3 * el + (p3 & 0x7FFF) * eh) >> 14)) >> 1)

        # ---- rotation matrix sensor -> I, Q14, from q rounded to Q15
        a0 = (q0 + 0x2000) >> 14
        a1 = (q1 + 0x2000) >> 14
        a2 = (q2 + 0x2000) >> 14
        a3 = (q3 + 0x2000) >> 14
        r00 = ONE_Q14 - ((a2 * a2 + a3 * a3 + 0x4000) >> 15)
        r11 = ONE_Q14 - ((a1 * a1 + a3 * a3 + 0x4000) >> 15)
        r22 = ONE_Q14 - ((a1 * a1 + a2 * a2 + 0x4000) >> 15)
        r01 = (a1 * a2 - a0 * a3 + 0x4000) >> 15
        r10 = (a1 * a2 + a0 * a3 + 0x4000) >> 15
        r02 = (a1 * a3 + a0 * a2 + 0x4000) >> 15
        r20 = (a1 * a3 - a0 * a2 + 0x4000) >> 15
        r12 = (a2 * a3 - a0 * a1 + 0x4000) >> 15
        r21 = (a2 * a3 + a0 * a1 + 0x4000) >> 15

        # ---- accelerometer into I (Q22 g), low-passed there
        starting = init_n < init_samples
        c_acc = c_acc_rest if resting else c_acc_move
        if starting:
            init_n += 1
        y0 = 0
        y1 = 0
        y2 = 0
        for i in range(3):
            if i == 0:
                x = ((r00 * ax) >> 4) + ((r01 * ay) >> 4) + ((r02 * az) >> 4)
            elif i == 1:
                x = ((r10 * ax) >> 4) + ((r11 * ay) >> 4) + ((r12 * az) >> 4)
            else:
                x = ((r20 * ax) >> 4) + ((r21 * ay) >> 4) + ((r22 * az) >> 4)
            jy = 2 * (_ACC_Y + i)
            y = ((st16[jy + 1] ^ 0x8000) - 0x8000) << 16 | st16[jy]
            if starting:
                y += (x - y) // init_n  # start-up: running mean
            else:
                jw = 2 * (_ACC_W + i)
                w = ((st16[jw + 1] ^ 0x8000) - 0x8000) << 16 | st16[jw]
                e = x - y - w - ((w >> 15) * _SQRT2_M1_Q15 + (((w & 0x7FFF) * _SQRT2_M1_Q15 + 0x4000) >> 15))
                w += (e >> 15) * c_acc + (((e & 0x7FFF) * c_acc + 0x4000) >> 15)
                y += (w >> 15) * c_acc + (((w & 0x7FFF) * c_acc + 0x4000) >> 15)
                st32[_ACC_W + i] = w
            st32[_ACC_Y + i] = y
            if i == 0:
                y0 = y
            elif i == 1:
                y1 = y
            else:
                y2 = y

        # ---- normalise the low-passed vector (scale to 14 bits, integer sqrt, divide) -> Q14
        m = y0 if y0 > 0 else -y0
        t = y1 if y1 > 0 else -y1
        if t > m:
            m = t
        t = y2 if y2 > 0 else -y2
        if t > m:
            m = t
        if m > 0:
            shift = 0
            while (m >> shift) >= 0x4000:
                shift += 1
            u0 = y0 >> shift
            u1 = y1 >> shift
            u2 = y2 >> shift
            m = m >> shift
            while m < 0x2000:
                m = m << 1
                u0 = u0 << 1
                u1 = u1 << 1
                u2 = u2 << 1
            rem = u0 * u0 + u1 * u1 + u2 * u2
            root = 0
            bit = 1 << 28
            while bit > rem:
                bit = bit >> 2
            while bit != 0:
                if rem >= root + bit:
                    rem -= root + bit
                    root = (root >> 1) + bit
                else:
                    root = root >> 1
                bit = bit >> 2
            half = root >> 1
            u0 = ((u0 << 14) + half) // root
            u1 = ((u1 << 14) + half) // root
            u2 = ((u2 << 14) + half) // root
            # up in the sensor frame = R^T u
            up0 = (r00 * u0 + r10 * u1 + r20 * u2 + 0x2000) >> 14
            up1 = (r01 * u0 + r11 * u1 + r21 * u2 + 0x2000) >> 14
            up2 = (r02 * u0 + r12 * u1 + r22 * u2 + 0x2000) >> 14

        if want_out:
            out[3 * s] = up0
            out[3 * s + 1] = up1
            out[3 * s + 2] = up2

    st32[_Q0] = q0
    st32[_Q0 + 1] = q1
    st32[_Q0 + 2] = q2
    st32[_Q0 + 3] = q3
    st32[_HP0] = hp0
    st32[_HP0 + 1] = hp1
    st32[_HP0 + 2] = hp2
    st32[_BIAS_P] = bias_p
    st32[_REST_N] = rest_n
    st32[_INIT_N] = init_n
    st32[_RESTING] = resting
    st32[_UP] = up0
    st32[_UP + 1] = up1
    st32[_UP + 2] = up2
