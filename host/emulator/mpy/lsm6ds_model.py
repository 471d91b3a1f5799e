# Register-level model of ST's LSM6DS family of 6-axis IMUs on the emulated I2C bus.
#
# Runs unchanged on MicroPython (inside the firmware's process, where its cost is part of
# every emulated hour) and on CPython (tests, the Adafruit conformance check), so: no
# f-strings with '=', no typing, integers in the per-sample path wherever possible.
#
# What is modelled (register maps checked against ST's lsm6ds3/lsm6ds3tr-c/lsm6dso/
# lsm6dsox/ism330dhcx "-pid" register headers and the Adafruit driver):
#   * WHO_AM_I, the CTRL registers (ODR, full scale incl. FS_125, ISM330DHCX's FS_4000 and
#     the DSO/DSOX XL_FS_MODE quirk, BDU/IF_INC, self-clearing SW_RESET and BOOT), every
#     other register as plain storage;
#   * STATUS_REG (XLDA/GDA/TDA, cleared by reading the outputs), OUT_TEMP, OUTX/Y/Z of
#     gyro and accelerometer: the latest sample, scaled by the full scale, saturated;
#   * the FIFO of each family: LSM6DS3/DS3TR-C (FIFO_CTRL1..5, FIFO_STATUS1..4 with the
#     pattern, 16-bit words gyro x,y,z then accel x,y,z) and LSM6DSO/DSOX/ISM330DHCX
#     (FIFO_CTRL1..4, FIFO_STATUS1/2, 7-byte tagged words), watermark, stop-on-watermark,
#     bypass/FIFO/continuous modes, overrun, and the address roll-over that lets one burst
#     read drain many words;
#   * ODR timing on the virtual clock: samples exist at t0 + k/ODR; the model catches up
#     lazily on each register access and asks the stimulus source for the value at each
#     tick (so a recording is resampled to the configured ODR);
#   * physics -> raw: input + per-device bias + slow bias drift (Ornstein-Uhlenbeck) +
#     white noise at the datasheet noise density x sqrt(ODR/2), quantised by the full-scale
#     sensitivity (round to nearest), saturated to int16.  ``noise=False`` gives an ideal
#     sensor (no bias, drift or noise): raw = round(value / sensitivity).
#
# Not modelled: interrupts/embedded functions, filters, self-test, sensor hub, FIFO
# compression, timestamp/temperature batching, register banks (FUNC_CFG_ACCESS).
import array
import math
import os
import struct
import sys

import vclock

try:
    from micropython import const
except ImportError:  # CPython without emulator.cpython.install()

    def const(value):
        return value


FAMILY_DS3 = 0  # LSM6DS3, LSM6DS3TR-C: 16-bit FIFO words in a fixed pattern
FAMILY_DSO = 1  # LSM6DSO, LSM6DSOX, ISM330DHCX: 7-byte tagged FIFO words

# variant: (WHO_AM_I, family, FIFO depth in words, DIFF_FIFO bits, watermark bits,
#           accel noise density ug/sqrt(Hz), gyro noise density mdps/sqrt(Hz),
#           has XL_FS_MODE, has FS_4000, temperature LSB per degC)
# Noise densities are the datasheets' typical high-performance figures (FS = 2 g).
VARIANTS = {
    "LSM6DS3": (0x69, FAMILY_DS3, 4096, 12, 12, 90, 7.0, False, False, 16),
    "LSM6DS3TR-C": (0x6A, FAMILY_DS3, 2048, 11, 11, 90, 5.0, False, False, 256),
    "LSM6DSO": (0x6C, FAMILY_DSO, 512, 10, 9, 70, 3.8, True, False, 256),
    "LSM6DSOX": (0x6C, FAMILY_DSO, 512, 10, 9, 70, 3.8, True, False, 256),
    "ISM330DHCX": (0x6B, FAMILY_DSO, 512, 10, 9, 60, 5.0, False, True, 256),
}

# Registers common to the family.
FUNC_CFG_ACCESS = 0x01
WHO_AM_I = 0x0F
CTRL1_XL = 0x10
CTRL2_G = 0x11
CTRL3_C = 0x12
CTRL4_C = 0x13
CTRL8_XL = 0x17
CTRL9_XL = 0x18
CTRL10_C = 0x19
STATUS_REG = 0x1E
OUT_TEMP_L = 0x20
OUTX_L_G = 0x22
OUTX_L_XL = 0x28
FIFO_STATUS1 = 0x3A
FIFO_STATUS2 = 0x3B
# LSM6DS3 / LSM6DS3TR-C
DS3_FIFO_CTRL1 = 0x06
DS3_FIFO_CTRL2 = 0x07
DS3_FIFO_CTRL3 = 0x08
DS3_FIFO_CTRL4 = 0x09
DS3_FIFO_CTRL5 = 0x0A
DS3_FIFO_STATUS3 = 0x3C
DS3_FIFO_STATUS4 = 0x3D
DS3_FIFO_DATA_OUT_L = 0x3E
# LSM6DSO / LSM6DSOX / ISM330DHCX
DSO_FIFO_CTRL1 = 0x07
DSO_FIFO_CTRL2 = 0x08
DSO_FIFO_CTRL3 = 0x09
DSO_FIFO_CTRL4 = 0x0A
DSO_FIFO_DATA_OUT_TAG = 0x78

# CTRL3_C bits
BOOT = 0x80
BDU = 0x40
IF_INC = 0x04
SW_RESET = 0x01

# FIFO tags (DSO family, FIFO_DATA_OUT_TAG bits 7:3)
TAG_GYRO_NC = 0x01
TAG_ACCEL_NC = 0x02

SW_RESET_US = 50  # datasheets: the software reset takes ~50 us
BOOT_US = 10000  # reboot of the trimming memory: ~10 ms

# ODR codes (CTRL1_XL/CTRL2_G bits 7:4, FIFO ODR/BDR codes): nominal rate in mHz, and
# the rate's octave (all rates are 12.5 Hz * 2^n; 1.6 Hz is accel low-power only).
_ODR_MHZ = (0, 12500, 26000, 52000, 104000, 208000, 416000, 833000, 1666000, 3332000, 6664000, 1600)
_OCTAVE = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -2)
# Accel FS_XL code -> ug/LSB (code 01 is 16 g, or 2 g on DSO/DSOX with XL_FS_MODE = 1).
_ACCEL_UG = (61, 488, 122, 244)
# Gyro FS_G code -> udps/LSB (FS_125 and FS_4000 override it).
_GYRO_UDPS = (8750, 17500, 35000, 70000)
# DS3 FIFO decimation codes -> factor (0: not in FIFO).
_DECIMATION = (0, 1, 2, 3, 4, 8, 16, 32)

_NOISE_ROWS = 512  # distinct 6-axis noise vectors, drawn at random every sample ...
_NOISE_SHIFT = 22  # ... indexed by the top 9 bits of a 31-bit LCG
_DRIFT_TAU_S = 600.0  # bias drift: Ornstein-Uhlenbeck time constant ...
_DRIFT_STD_ACCEL_G = 0.0005  # ... and stationary standard deviations
_DRIFT_STD_GYRO_DPS = 0.1
_DRIFT_A = math.exp(-1.0 / _DRIFT_TAU_S)  # per-step decay ...
_DRIFT_Q = math.sqrt(1 - _DRIFT_A * _DRIFT_A)  # ... and innovation scale, per axis:
_DRIFT_ROWS = 256  # unit-normal 6-vectors for the drift's innovations ...
_DRIFT_SHIFT = 23  # ... indexed by the top 8 bits of the device's 31-bit LCG
_DRIFT_Q_SD_NANO = tuple(
    int(round(_DRIFT_Q * (_DRIFT_STD_ACCEL_G if c < 3 else _DRIFT_STD_GYRO_DPS) * 1e9)) for c in range(6)
)
_DRIFT_A_Q30 = int(round(_DRIFT_A * (1 << 30)))

_MODE_OFF = 0
_MODE_FIFO = 1
_MODE_CONTINUOUS = 2


def _ds3_mode(bits):
    # 001 FIFO; 011 continuous-to-FIFO and 110 continuous run as continuous (no trigger is
    # modelled); 000 bypass, 100 bypass-to-continuous and reserved codes store nothing.
    if bits == 1:
        return _MODE_FIFO
    if bits == 3 or bits == 6:
        return _MODE_CONTINUOUS
    return _MODE_OFF


# ---- batch generation from stimulus rows --------------------------------------------------
#
# The samples of a stimulus file are made in batches by one integer kernel: for every tick it
# finds the two stimulus rows around the tick's instant (exact rational arithmetic, no float),
# decodes their float32 values straight into 1/65536 LSB, interpolates, adds offset and table
# noise, rounds, saturates and stores the sample in the FIFO ring.  The same source text is
# compiled by @micropython.viper on MicroPython (machine code: about 0.3 us a sample instead of
# about 15 us for the per-sample Python path) and run as plain Python on CPython, so both
# interpreters produce the same bytes.  The kernel relies on 64-bit integers (the unix port's
# machine word; CPython's are unbounded), and every intermediate stays below 2**62.
#
# ctx = [par, ring, noise table (array "i", 6 per row), stimulus chunk (float32 rows), aux]
# par (a list of ints, read and written back): see _P_* below; aux (bytearray): the DSO tag
# bytes of gyro [0:4] and accel [4:8] words, then the DS3 FIFO plan as (gyro, accel) pairs.
# io (array "i", 12): [0:6] per-axis offsets, [6:12] the current outputs ax..gz (in/out).
_P_N = const(0)  # ticks in this batch
_P_K = const(1)  # index of the first tick
_P_RB = const(2)  # k * 1e9 = q * rate + rb: tick k + j lies at t0 + q + (rb + j * 1e9) // rate us
_P_RATE = const(3)  # the model's base rate, mHz
_P_P = const(4)  # stimulus rows per us = P / Q, exactly (the file's float32 rate as a fraction)
_P_Q = const(5)
_P_SB = const(6)  # row position of the batch's base instant: IB + SB / Q
_P_IB = const(7)
_P_ROW0 = const(8)  # stimulus row held first in the chunk
_P_LAST = const(9)  # index of the file's last row (held after the end)
_P_SMX = const(10)  # accel scale to 1/65536 LSB: SMX * 2**-SSX per g
_P_SSX = const(11)
_P_SMG = const(12)  # gyro scale: SMG * 2**-SSG per dps
_P_SSG = const(13)
_P_LCG = const(14)
_P_XDIV = const(15)
_P_GDIV = const(16)
_P_FMODE = const(17)
_P_DSO = const(18)
_P_DEPTH = const(19)
_P_CAP = const(20)
_P_HEAD = const(21)
_P_COUNT = const(22)
_P_OVR = const(23)
_P_BXD = const(24)
_P_BGD = const(25)
_P_TAG = const(26)
_P_FDIV = const(27)
_P_NPLAN = const(28)
_P_EV = const(29)
_P_PATLEN = const(30)
_P_PAT = const(31)
_P_PER_S = const(32)  # ticks per drift step (not used by the kernel)
_P_SIZE = const(33)

_KERNEL = """
def _gen_rows(ctx, io_buf) -> int:
    par = ctx[0]
    ring = ptr8(ctx[1])
    tbl = ptr32(ctx[2])
    src = ptr32(ctx[3])
    aux = ptr8(ctx[4])
    io = ptr32(io_buf)
    n = int(par[0])
    k = int(par[1])
    rb = int(par[2])
    rate = int(par[3])
    pp = int(par[4])
    qq = int(par[5])
    sb = int(par[6])
    ib = int(par[7])
    row0 = int(par[8])
    last = int(par[9])
    smx = int(par[10])
    ssx = int(par[11])
    smg = int(par[12])
    ssg = int(par[13])
    lcg = int(par[14])
    xdiv = int(par[15])
    gdiv = int(par[16])
    fmode = int(par[17])
    dso = int(par[18])
    depth = int(par[19])
    cap = int(par[20])
    head = int(par[21])
    count = int(par[22])
    ovr = int(par[23])
    bxd = int(par[24])
    bgd = int(par[25])
    tag = int(par[26])
    fdiv = int(par[27])
    nplan = int(par[28])
    ev = int(par[29])
    pat_len = int(par[30])
    pat = int(par[31])
    # Beyond any full scale (2**21 LSB): saturates, and (b - a) * fr stays below 2**62.
    big = 1 << 37
    flags = 0
    j = 0
    while j < n:
        kk = k + j
        # The tick's instant and the stimulus position there, in exact integers.
        d = (rb + j * 1000000000) // rate
        num = sb + d * pp
        row = ib + num // qq
        fr = (num % qq) * 16777216 // qq  # 24 fraction bits
        if row >= last:
            row = last
            fr = 0
        ia = (row - row0) * 6
        lcg = (lcg * 1103515245 + 12345) & 0x7FFFFFFF
        ni = (lcg >> 22) * 6
        xdue = 0
        if xdiv != 0:
            if kk % xdiv == 0:
                xdue = 1
                flags |= 1
        gdue = 0
        if gdiv != 0:
            if kk % gdiv == 0:
                gdue = 1
                flags |= 2
        c = 0
        while c < 6:
            due = gdue
            sm = smg
            ss = ssg
            if c < 3:
                due = xdue
                sm = smx
                ss = ssx
            if due != 0:
                # float32 bits -> value * scale, truncated towards zero (as int() would)
                w = src[ia + c]
                e = (w >> 23) & 0xFF
                a = 0
                if e != 0:
                    sh = ss + 150 - e
                    if sh <= 0:
                        a = big
                    elif sh < 63:
                        a = (((w & 0x7FFFFF) | 0x800000) * sm) >> sh
                        if a > big:
                            a = big
                    if w & 0x80000000:
                        a = 0 - a
                if fr != 0:
                    w = src[ia + 6 + c]
                    e = (w >> 23) & 0xFF
                    b = 0
                    if e != 0:
                        sh = ss + 150 - e
                        if sh <= 0:
                            b = big
                        elif sh < 63:
                            b = (((w & 0x7FFFFF) | 0x800000) * sm) >> sh
                            if b > big:
                                b = big
                        if w & 0x80000000:
                            b = 0 - b
                    a = a + (((b - a) * fr) >> 24)
                o = io[c]
                o = (o ^ 0x80000000) - 0x80000000
                z = tbl[ni + c]
                z = (z ^ 0x80000000) - 0x80000000
                x = (a + o + z) >> 16
                if x > 32767:
                    x = 32767
                elif x < -32768:
                    x = -32768
                io[6 + c] = x
            c += 1
        if fmode != 0:
            if dso != 0:
                g_in = 0
                if bgd != 0:
                    if kk % bgd == 0:
                        g_in = 1
                x_in = 0
                if bxd != 0:
                    if kk % bxd == 0:
                        x_in = 1
                need = g_in + x_in
                if need != 0:
                    if count + need > cap:
                        if fmode == 2:
                            drop = count + need - cap
                            head = (head + drop) % depth
                            count -= drop
                        else:
                            need = 0
                            fmode = 0
                        ovr = 1
                    if need != 0:
                        if g_in != 0:
                            w = head + count
                            if w >= depth:
                                w -= depth
                            o = w * 7
                            ring[o] = aux[tag]
                            c = 0
                            while c < 3:
                                x = io[9 + c]
                                ring[o + 1 + 2 * c] = x & 0xFF
                                ring[o + 2 + 2 * c] = (x >> 8) & 0xFF
                                c += 1
                            count += 1
                        if x_in != 0:
                            w = head + count
                            if w >= depth:
                                w -= depth
                            o = w * 7
                            ring[o] = aux[4 + tag]
                            c = 0
                            while c < 3:
                                x = io[6 + c]
                                ring[o + 1 + 2 * c] = x & 0xFF
                                ring[o + 2 + 2 * c] = (x >> 8) & 0xFF
                                c += 1
                            count += 1
                        tag = (tag + 1) & 3
            elif kk % fdiv == 0:
                g_in = aux[8 + 2 * ev]
                x_in = aux[9 + 2 * ev]
                ev += 1
                if ev == nplan:
                    ev = 0
                need = 3 * (g_in + x_in)
                if count + need > cap:
                    if fmode == 2:
                        drop = count + need - cap
                        head = (head + drop) % depth
                        count -= drop
                        pat = (pat + drop) % pat_len
                    else:
                        need = 0
                        fmode = 0
                    ovr = 1
                if need != 0:
                    w = head + count
                    if w >= depth:
                        w -= depth
                    c = 0
                    while c < 6:
                        # gyro x, y, z (outputs 3..5) before accel x, y, z (0..2)
                        sel = c + 3
                        inn = g_in
                        if c >= 3:
                            sel = c - 3
                            inn = x_in
                        if inn != 0:
                            x = io[6 + sel]
                            o = w * 2
                            ring[o] = x & 0xFF
                            ring[o + 1] = (x >> 8) & 0xFF
                            w += 1
                            if w == depth:
                                w = 0
                        c += 1
                    count += need
        j += 1
    par[14] = lcg
    par[17] = fmode
    par[21] = head
    par[22] = count
    par[23] = ovr
    par[26] = tag
    par[29] = ev
    par[31] = pat
    return flags


def _copy_ring(dst, dpos: int, ring, spec: int):
    # spec = ring offset << 32 | byte count: bytes out of the ring (wrapping) into dst[dpos:]
    d = ptr8(dst)
    r = ptr8(ring)
    end = int(len(ring))
    o = spec >> 32
    stop = dpos + (spec & 0xFFFFFFFF)
    while dpos < stop:
        d[dpos] = r[o]
        o += 1
        if o == end:
            o = 0
        dpos += 1
"""

_ON_MICROPYTHON = sys.implementation.name == "micropython"
# The native emitter exists when the port's .mpy ABI says so (as device/lib/lsm6ds.py checks).
_VIPER = _ON_MICROPYTHON and (getattr(sys.implementation, "_mpy", 0) >> 10) > 0


_BATCH_MIN_RATE_HZ = 1.0


class _Ptr32:
    # viper's ptr32 on CPython: unsigned loads, stores truncated to 32 bits
    def __init__(self, buf):
        self._u = memoryview(buf).cast("B").cast("I")

    def __getitem__(self, i):
        return self._u[i]

    def __setitem__(self, i, value):
        self._u[i] = value & 0xFFFFFFFF


def _compile_kernels():
    if _VIPER:
        scope = {}
        exec("import micropython\n" + _KERNEL.replace("\ndef ", "\n@micropython.viper\ndef "), scope)
    else:
        scope = {"ptr8": lambda b: b, "ptr32": _Ptr32}
        exec(_KERNEL, scope)
    return scope["_gen_rows"], scope["_copy_ring"]


_gen_rows, _copy_ring = _compile_kernels()
# How many ticks one kernel call makes at most (bounds the row span it needs from the file).
_BATCH_TICKS = 512
# POSTURE_EMU_PATH=reference makes every sample on the per-sample Python path (the baseline of
# `python -m bench emulator`); the kernel is the default.
_REFERENCE_ONLY = os.getenv("POSTURE_EMU_PATH") == "reference"


def _scale_parts(scale):
    # scale ~= m * 2**-s with m < 2**38, so that a 24-bit mantissa times m fits in 62 bits
    f, e = math.frexp(scale)
    return int(f * (1 << 38)), 38 - e


class _Rng:
    """31-bit LCG with Box-Muller normals: cheap, seeded, the same on both interpreters."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 0x5DEECE6) & 0x7FFFFFFF

    def uniform(self):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s + 1) / 2147483649.0

    def normal(self):
        return math.sqrt(-2.0 * math.log(self.uniform())) * math.cos(6.283185307179586 * self.uniform())


def _unit_normals(rng, rows):
    # rows x 6 normals from rng in 1/65536 (array "i"), normalised per axis to zero mean and
    # unit variance (so a table draw has the statistics of a true normal draw).
    z = [rng.normal() for _ in range(6 * rows)]
    tbl = array.array("i", [0] * (6 * rows))
    for c in range(6):
        m = sum(z[i] for i in range(c, 6 * rows, 6)) / rows
        v = sum((z[i] - m) ** 2 for i in range(c, 6 * rows, 6)) / rows
        sd = math.sqrt(v) if v > 0 else 1.0
        for i in range(c, 6 * rows, 6):
            tbl[i] = int(round((z[i] - m) / sd * 65536))
    return tbl


class LSM6DSModel:
    """One LSM6DS-family IMU on the emulated I2C bus (attach it with ``board.attach_i2c``).

    ``source`` gives the physical motion (``sample_at(t_s, out)``, see ``stimulus.py``);
    ``seed`` picks this device's bias, drift and noise; ``noise=False`` makes it ideal."""

    def __init__(self, variant, source=None, seed=0, noise=True):
        if variant not in VARIANTS:
            raise ValueError(
                "unknown LSM6DS variant %r: use one of %s" % (variant, ", ".join(sorted(VARIANTS)))
            )
        spec = VARIANTS[variant]
        self.variant = variant
        self.who_am_i = spec[0]
        self.family = spec[1]
        self.fifo_depth_words = spec[2]
        self._diff_max = (1 << spec[3]) - 1
        self._wtm_mask = (1 << spec[4]) - 1
        self._xl_density_ug = spec[5]
        self._g_density_mdps = spec[6]
        self._has_xl_fs_mode = spec[7]
        self._has_fs_4000 = spec[8]
        self._temp_lsb_per_c = spec[9]
        dso = self.family == FAMILY_DSO
        self._word_bytes = 7 if dso else 2
        self._fifo_out = DSO_FIFO_DATA_OUT_TAG if dso else DS3_FIFO_DATA_OUT_L
        self._fifo_out_last = self._fifo_out + self._word_bytes - 1
        self._ring = bytearray(self.fifo_depth_words * self._word_bytes)
        if source is None:
            import stimulus

            source = stimulus.ConstantSource((0, 0, 0, 0, 0, 0))
        self.source = source
        self.noise = bool(noise)
        self.seed = seed
        self._rng = _Rng(seed)
        self._noise_seed = (seed * 7919 + 17) & 0x7FFFFFFF
        self._lcg = self._noise_seed
        # Per-device constant bias: a few mg, 0.5-2 dps per axis, random signs.
        self._bias = [0.0] * 6
        # Bias drift in integer nano-g / nano-dps: the once-a-second step allocates nothing.
        self._drift_nano = [0] * 6
        if self.noise:
            r = self._rng
            for c in range(6):
                lo, hi = (0.001, 0.008) if c < 3 else (0.5, 2.0)
                mag = lo + (hi - lo) * r.uniform()
                self._bias[c] = mag if r.uniform() < 0.5 else -mag
        self._drift_tbl = _unit_normals(_Rng(seed + 2), _DRIFT_ROWS)
        self._temperature_c = 30.0
        self._v = [0.0] * 6
        self._regs = bytearray(128)
        self.ticks = 0  # samples generated
        self.skipped = 0  # ticks skipped during long gaps (only the newest ones can matter)
        self._noise_key = None
        self._noise_tbl = None
        self._noise_flat = None  # the same table as array("i"), row-major, for the kernel
        # Batch generation state: the kernel's parameters, its offset/output scratch, and the
        # stimulus-row source behind self.source (resolved when self.source changes).
        self._par = [0] * _P_SIZE
        self._io = array.array("i", [0] * 12)
        self._aux = bytearray(8 + 2 * 32)
        for c in range(4):
            self._aux[c] = _TAG_BYTES_G[c]
            self._aux[4 + c] = _TAG_BYTES_XL[c]
        self._ctx = [self._par, self._ring, None, None, self._aux]
        self._par_ok = False
        self._rows_for = None  # the source self._rows_src was resolved for
        self._rows_src = None
        self._rows_wrapper = None
        self._rate_mhz = 0
        self._next_us = -1
        self._power_on()

    # ---- public helpers for the board and tests --------------------------------------------

    def odr_hz(self):
        """The rate at which new samples appear (the faster of accel and gyro ODR; 0: off)."""
        return self._rate_mhz / 1000

    def next_sample_us(self):
        """Virtual time of the next sample (-1: both sensors powered down)."""
        return self._next_us if self._rate_mhz else -1

    def last_sample_us(self):
        """Virtual time of the sample the output registers hold (-1: none yet)."""
        self._catch_up()
        if not self._rate_mhz or self._k < 2:
            return -1
        return self._t0 + (self._k - 1) * 1000000000 // self._rate_mhz

    def fifo_unread_words(self):
        self._catch_up()
        return self._fcount

    def force_fifo_overflow(self, lost_words=1):
        """Fault injection: the FIFO overran and its ``lost_words`` oldest words were overwritten."""
        self._catch_up()
        self._drop_words(min(lost_words, self._fcount))
        self._fovr = 1
        self._fovr_latched = 1

    def set_bias(self, accel_g=None, gyro_dps=None):
        """Set the constant bias (the drift, if any, stays on top)."""
        if accel_g is not None:
            self._bias[0:3] = [float(x) for x in accel_g]
        if gyro_dps is not None:
            self._bias[3:6] = [float(x) for x in gyro_dps]
        self._update_offsets()

    def bias(self):
        """((ax, ay, az) g, (gx, gy, gz) dps): the bias now, drift included."""
        b = [self._bias[c] + self._drift_nano[c] * 1e-9 for c in range(6)]
        return (tuple(b[0:3]), tuple(b[3:6]))

    @property
    def temperature_c(self):
        return self._temperature_c

    @temperature_c.setter
    def temperature_c(self, value):
        self._temperature_c = value
        self._temp_raw = self._saturate(int(round((value - 25.0) * self._temp_lsb_per_c)))

    # ---- the I2C device interface -------------------------------------------------------------

    def i2c_read(self, reg, nbytes):
        buf = bytearray(nbytes)
        self.i2c_read_into(reg, buf)
        return bytes(buf)

    def i2c_read_into(self, reg, buf):
        """Register-addressed read into ``buf``; allocates nothing when no new sample is due."""
        self._catch_up()
        fb = self._fifo_out
        fl = self._fifo_out_last
        a = reg & 0x7F
        if a < fb or a > fl:
            # A read that starts at the FIFO output stays there (roll-over): only others can
            # reach the FIFO status registers.
            self._refresh_fifo_status()
        regs = self._regs
        n = len(buf)
        inc = regs[CTRL3_C] & IF_INC
        ws = self._word_bytes
        i = 0
        while i < n:
            if a == fb and inc and n - i >= ws:
                # Whole FIFO words in one go; the address rolls back to the first output byte.
                words = (n - i) // ws
                self._read_words(buf, i, words)
                i += words * ws
                continue
            if fb <= a <= fl:
                buf[i] = self._read_fifo_byte(a - fb)
            else:
                buf[i] = regs[a]
                if 0x1E <= a <= 0x2D or a == FIFO_STATUS2:  # reads with side effects
                    self._after_read(a)
            i += 1
            if inc:
                a = fb if a == fl else (a + 1) & 0x7F

    def i2c_write(self, reg, data):
        self._catch_up()
        if self._reset_done_us >= 0:
            return  # the chip is resetting: writes are lost, as on the real part
        regs = self._regs
        inc = regs[CTRL3_C] & IF_INC
        a = reg & 0x7F
        sensors = False
        fifo = False
        ctrl3 = -1
        for b in data:
            if not self._read_only(a):
                old = regs[a]
                regs[a] = b
                if a == CTRL3_C:
                    ctrl3 = b
                elif a == CTRL1_XL or a == CTRL2_G or a == CTRL8_XL:
                    sensors = sensors or old != b
                elif 0x06 <= a <= 0x0A or a == CTRL4_C:
                    fifo = fifo or old != b
            if inc:
                a = (a + 1) & 0x7F
        if ctrl3 >= 0:
            if ctrl3 & SW_RESET:
                self._software_reset()
                return
            if ctrl3 & BOOT and self._boot_done_us < 0:
                self._boot_done_us = vclock.now_us() + BOOT_US
        if sensors:
            self._configure_sensors()
        elif fifo:
            self._configure_fifo()

    # ---- reset and configuration -------------------------------------------------------------

    def _read_only(self, a):
        if a == WHO_AM_I or 0x1B <= a <= 0x55:
            return True
        return self.family == FAMILY_DSO and a >= DSO_FIFO_DATA_OUT_TAG

    def _power_on(self):
        self._reset_done_us = -1
        self._boot_done_us = -1
        self._load_defaults()

    def _software_reset(self):
        self._load_defaults()
        self._regs[CTRL3_C] = IF_INC | SW_RESET
        self._reset_done_us = vclock.now_us() + SW_RESET_US

    def _load_defaults(self):
        regs = self._regs
        for a in range(128):
            regs[a] = 0
        regs[WHO_AM_I] = self.who_am_i
        regs[CTRL3_C] = IF_INC
        if self.variant == "LSM6DS3":
            regs[CTRL9_XL] = 0x38  # accel axes enabled
            regs[CTRL10_C] = 0x38  # gyro axes enabled
        else:
            regs[CTRL9_XL] = 0xE0  # DEN_X/Y/Z
        self._out = [0, 0, 0, 0, 0, 0]
        self._fhead = 0
        self._fcount = 0
        self._fovr = 0
        self._fovr_latched = 0
        self._fmode = _MODE_OFF
        self._fflow = _MODE_OFF
        self._fstopped = False
        self._fpat = 0
        self._fevent = 0
        self._ftag = 0
        self.temperature_c = self._temperature_c
        self._configure_sensors()

    def _configure_sensors(self):
        regs = self._regs
        xl_code = regs[CTRL1_XL] >> 4
        g_code = regs[CTRL2_G] >> 4
        if xl_code > 11:
            xl_code = 0
        if g_code > 10:
            g_code = 0
        fs = (regs[CTRL1_XL] >> 2) & 3
        if fs == 1 and self._has_xl_fs_mode and regs[CTRL8_XL] & 0x02:
            ug = 61  # XL_FS_MODE = 1: code 01 means 2 g, not 16 g
        else:
            ug = _ACCEL_UG[fs]
        c2 = regs[CTRL2_G]
        if self._has_fs_4000 and c2 & 0x01:
            udps = 140000
        elif c2 & 0x02:
            udps = 4375
        else:
            udps = _GYRO_UDPS[(c2 >> 2) & 3]
        self.accel_ug_per_lsb = ug
        self.gyro_udps_per_lsb = udps
        # raw * 65536 per unit: the per-sample path works in 1/65536 LSB, integers.
        self._sx = 65536e6 / ug
        self._sg = 65536e6 / udps
        self._smx = _scale_parts(self._sx)
        self._smg = _scale_parts(self._sg)
        self._xl_code = xl_code
        self._g_code = g_code
        xo = _OCTAVE[xl_code] if xl_code else -99
        go = _OCTAVE[g_code] if g_code else -99
        base = xl_code if xo >= go else g_code
        rate = _ODR_MHZ[base] if base else 0
        if rate != self._rate_mhz:
            self._rate_mhz = rate
            if rate:
                self._t0 = vclock.now_us()
                self._k = 1
                self._next_us = self._t0 + 1000000000 // rate
        base_oct = _OCTAVE[base] if base else 0
        self._base_oct = base_oct
        self._xl_div = (1 << (base_oct - xo)) if xl_code else 0
        self._g_div = (1 << (base_oct - go)) if g_code else 0
        self._update_noise()
        self._update_offsets()
        self._configure_fifo()

    def _update_noise(self):
        xl_hz = _ODR_MHZ[self._xl_code] / 1000
        g_hz = _ODR_MHZ[self._g_code] / 1000
        sig_x = self._xl_density_ug * math.sqrt(xl_hz / 2) / self.accel_ug_per_lsb if self.noise else 0.0
        sig_g = (
            self._g_density_mdps * 1000 * math.sqrt(g_hz / 2) / self.gyro_udps_per_lsb if self.noise else 0.0
        )
        key = (sig_x, sig_g)
        if key == self._noise_key:
            return
        self._noise_key = key
        self.noise_lsb = key
        if sig_x == 0 and sig_g == 0:
            zero = (0, 0, 0, 0, 0, 0)
            self._noise_tbl = [zero] * _NOISE_ROWS
            self._noise_flat = array.array("i", [0] * (6 * _NOISE_ROWS))
            return
        # Unit normals, normalised per axis to exactly zero mean and unit variance, then in
        # 1/65536 LSB.  Two passes over the same seeded sequence keep memory small.
        sums = [0.0] * 6
        sq = [0.0] * 6
        r = _Rng(self.seed + 1)
        for _ in range(_NOISE_ROWS):
            for c in range(6):
                z = r.normal()
                sums[c] += z
                sq[c] += z * z
        scale = []
        mean = []
        for c in range(6):
            m = sums[c] / _NOISE_ROWS
            sd = math.sqrt(max(sq[c] / _NOISE_ROWS - m * m, 1e-12))
            mean.append(m)
            scale.append((sig_x if c < 3 else sig_g) * 65536 / sd)
        r = _Rng(self.seed + 1)
        tbl = []
        for _ in range(_NOISE_ROWS):
            row = [0] * 6
            for c in range(6):
                row[c] = int((r.normal() - mean[c]) * scale[c])
            tbl.append(tuple(row))
        self._noise_tbl = tbl
        flat = array.array("i", [0] * (6 * _NOISE_ROWS))
        for i in range(_NOISE_ROWS):
            row = tbl[i]
            for c in range(6):
                flat[6 * i + c] = row[c]
        self._noise_flat = flat

    def _update_offsets(self):
        # Offset per axis in 1/65536 LSB, with +1/2 LSB so that ">> 16" rounds to nearest.
        off = [0] * 6
        for c in range(6):
            s = self._sx if c < 3 else self._sg
            off[c] = int((self._bias[c] + self._drift_nano[c] * 1e-9) * s) + 32768
        self._off = off
        io = self._io  # the kernel's copy, as int32 (more than a full scale of bias saturates)
        for c in range(6):
            o = off[c]
            io[c] = 2147483647 if o > 2147483647 else (-2147483648 if o < -2147483648 else o)

    def _drift_step(self, steps=1):
        # Ornstein-Uhlenbeck bias drift, one step per second of samples.
        # The innovations are rows of a table of unit normals (exact zero mean and unit
        # variance per axis) picked by the device's LCG: no logarithms, no square roots.
        # Fixed point: decay a as A / 2**30, innovations q * sd in nano units times the
        # table's normals in 1/65536.
        a = _DRIFT_A_Q30
        q0, q1, q2, q3, q4, q5 = _DRIFT_Q_SD_NANO
        r = self._rng
        d = self._drift_nano
        tbl = self._drift_tbl
        shift = _DRIFT_SHIFT
        for _ in range(steps):
            s = (r.s * 1103515245 + 12345) & 0x7FFFFFFF
            r.s = s
            i = (s >> shift) * 6
            d[0] = ((d[0] * a) >> 30) + ((q0 * tbl[i]) >> 16)
            d[1] = ((d[1] * a) >> 30) + ((q1 * tbl[i + 1]) >> 16)
            d[2] = ((d[2] * a) >> 30) + ((q2 * tbl[i + 2]) >> 16)
            d[3] = ((d[3] * a) >> 30) + ((q3 * tbl[i + 3]) >> 16)
            d[4] = ((d[4] * a) >> 30) + ((q4 * tbl[i + 4]) >> 16)
            d[5] = ((d[5] * a) >> 30) + ((q5 * tbl[i + 5]) >> 16)

    def _configure_fifo(self):
        regs = self._regs
        cap = self.fifo_depth_words
        base_oct = self._base_oct
        if self.family == FAMILY_DS3:
            mode = _ds3_mode(regs[DS3_FIFO_CTRL5] & 7)
            code = (regs[DS3_FIFO_CTRL5] >> 3) & 0x0F
            wtm = (regs[DS3_FIFO_CTRL1] | (regs[DS3_FIFO_CTRL2] << 8)) & self._wtm_mask
            if self.variant == "LSM6DS3":
                stop = regs[CTRL4_C] & 0x01
            else:
                stop = regs[DS3_FIFO_CTRL4] & 0x80
            dec_x = _DECIMATION[regs[DS3_FIFO_CTRL3] & 7]
            dec_g = _DECIMATION[(regs[DS3_FIFO_CTRL3] >> 3) & 7]
            flow = 1 <= code <= 10 and self._rate_mhz and (dec_x or dec_g)
            div = 1 << (base_oct - _OCTAVE[code]) if 1 <= code <= 10 and _OCTAVE[code] < base_oct else 1
            # One pattern period: L FIFO events; event j stores gyro if j % dec_g == 0, then
            # accel if j % dec_x == 0.
            period = dec_x * dec_g // _gcd(dec_x, dec_g) if dec_x and dec_g else (dec_x or dec_g or 1)
            plan = []
            pat_len = 0
            for j in range(period):
                g_in = 1 if dec_g and j % dec_g == 0 else 0
                x_in = 1 if dec_x and j % dec_x == 0 else 0
                plan.append((g_in, x_in))
                pat_len += 3 * (g_in + x_in)
            self._plan = plan
            aux = self._aux  # the plan again, as bytes for the kernel
            for j in range(period):
                aux[8 + 2 * j] = plan[j][0]
                aux[9 + 2 * j] = plan[j][1]
            self._pat_len = pat_len or 1
            self._fdiv = div
            self._skip_period = 4 * max(self._xl_div, self._g_div, 1) * div * period
        else:
            mode = _ds3_mode(regs[DSO_FIFO_CTRL4] & 7)
            wtm = (regs[DSO_FIFO_CTRL1] | (regs[DSO_FIFO_CTRL2] << 8)) & self._wtm_mask
            stop = regs[DSO_FIFO_CTRL2] & 0x80
            bx = regs[DSO_FIFO_CTRL3] & 0x0F
            bg = regs[DSO_FIFO_CTRL3] >> 4
            self._bx_div = self._batch_div(bx, self._xl_code, 11)
            self._bg_div = self._batch_div(bg, self._g_code, 10)
            flow = self._bx_div or self._bg_div
            m = max(self._bx_div, self._bg_div, self._xl_div, self._g_div, 1)
            self._skip_period = 4 * m * m
        if stop and 0 < wtm < cap:
            cap = wtm
        self._fcap = cap
        self._wtm = wtm
        if mode != self._fmode:
            self._fstopped = False  # a new mode (re)starts collecting
        if mode == _MODE_OFF:
            # Bypass empties the FIFO and restarts its pattern.
            self._fhead = 0
            self._fcount = 0
            self._fovr = 0
            self._fovr_latched = 0
            self._fpat = 0
            self._fevent = 0
            self._ftag = 0
        self._fmode = mode
        # FIFO storing right now: in FIFO/continuous mode with data flowing into it.
        self._fflow = mode if flow and not self._fstopped else _MODE_OFF
        self._par_ok = False  # the kernel's fixed parameters are to be set again

    def _batch_div(self, bdr, odr_code, max_code):
        # Ticks of the base rate between two batched samples of one sensor (0: not batched).
        if not (1 <= bdr <= max_code) or not odr_code:
            return 0
        o = min(_OCTAVE[bdr], _OCTAVE[odr_code])
        return 1 << (self._base_oct - o)

    # ---- time ------------------------------------------------------------------------------------

    def _catch_up(self):
        now = vclock.now_us()
        if self._reset_done_us >= 0 and now >= self._reset_done_us:
            self._reset_done_us = -1
            self._regs[CTRL3_C] &= ~SW_RESET & 0xFF
        if self._boot_done_us >= 0 and now >= self._boot_done_us:
            self._boot_done_us = -1
            self._regs[CTRL3_C] &= ~BOOT & 0xFF
        rate = self._rate_mhz
        if rate and now >= self._next_us:
            due = ((now - self._t0 + 1) * rate - 1) // 1000000000 - self._k + 1
            while due > 0:
                keep = self._keep_ticks()
                if self._fflow == _MODE_FIFO:
                    # FIFO mode keeps the oldest samples: fill it, then it stops.
                    n = due if due < keep else keep
                else:
                    # Otherwise only the newest samples can still show: skip the rest.
                    if due > keep:
                        skip = due - keep
                        skip -= skip % self._skip_period
                        if skip > 0:
                            self._skip(skip)
                            due -= skip
                    n = due
                self._run_ticks(n)
                due -= n
            self._next_us = self._t0 + self._k * 1000000000 // rate

    def _keep_ticks(self):
        # How many of the newest due ticks can still change what the chip shows: the
        # output registers need one; a FIFO that keeps filling needs enough to fill it.
        mode = self._fflow
        if mode == _MODE_OFF:
            return 1
        if self.family == FAMILY_DS3:
            ticks = self._fdiv * len(self._plan)  # one pattern period ...
            words = self._pat_len  # ... stores this many words
        else:
            ticks = max(self._bx_div, self._bg_div)
            words = (ticks // self._bx_div if self._bx_div else 0) + (
                ticks // self._bg_div if self._bg_div else 0
            )
        room = self._fcap if mode == _MODE_CONTINUOUS else self._fcap - self._fcount
        return (room // words + 2) * ticks + 1

    def _skip(self, n):
        self._k += n
        self.skipped += n
        if self.noise:
            per_s = max(1, self._rate_mhz // 1000)
            steps = (self._k // per_s) - ((self._k - n) // per_s)
            if steps:
                self._drift_step(steps)
                self._update_offsets()

    def _drop_words(self, n):
        if n <= 0:
            return
        self._fhead = (self._fhead + n) % self.fifo_depth_words
        self._fcount -= n
        self._fpat = (self._fpat + n) % self._pat_len if self.family == FAMILY_DS3 else 0

    def _run_ticks(self, n):
        """Generate ``n`` samples at the ticks k, k+1, ...: the hot path of the emulator.

        From a stimulus file the integer kernel makes them in batches; other sources (a
        function, constant values) and a wrapper that is not quiet go sample by sample."""
        flags = 0
        src = self._rows_src if self.source is self._rows_for else self._row_source()
        if src is None or src.rows == 0:
            flags = self._ticks_python(n)
        else:
            wrapper = self._rows_wrapper
            rate = self._rate_mhz
            per_s = max(1, rate // 1000)
            noise = self.noise
            while n > 0:
                m = n if n < _BATCH_TICKS else _BATCH_TICKS
                k = self._k
                if noise:
                    # The drift steps once per second of samples: a batch ends there.
                    to_step = per_s - k % per_s
                    if to_step < m:
                        m = to_step
                if wrapper is not None and not wrapper.quiet_us(
                    self._t0 + k * 1000000000 // rate,
                    self._t0 + (k + m - 1) * 1000000000 // rate,
                ):
                    flags |= self._ticks_python(m)
                else:
                    flags |= self._ticks_rows(src, m)  # may make fewer (chunk size)
                n -= self._k - k
        regs = self._regs
        out = self._out
        struct.pack_into(
            "<7h", regs, OUT_TEMP_L, self._temp_raw, out[3], out[4], out[5], out[0], out[1], out[2]
        )
        regs[STATUS_REG] |= 0x04 | flags

    def _row_source(self):
        # The stimulus file behind self.source: itself, or the file under a wrapper that adds
        # something only at times (it says when with quiet_us(t0_us, t1_us)).  None: per sample.
        source = self.source
        if source is not self._rows_for:
            self._rows_for = source
            self._par_ok = False
            self._rows_src = None
            self._rows_wrapper = None
            if _REFERENCE_ONLY:
                pass
            elif hasattr(source, "rows_f32"):
                self._rows_src = source
            else:
                inner = getattr(source, "source", None)
                if inner is not None and hasattr(inner, "rows_f32") and hasattr(source, "quiet_us"):
                    self._rows_src = inner
                    self._rows_wrapper = source
        if self._rows_src is not None and self._rows_src.rate_hz < _BATCH_MIN_RATE_HZ:
            # A stimulus of a few rows over days (the virtual board's "still, upright"): its row
            # step does not fit the kernel's fixed-point row clock; per sample is exact and
            # cheap enough there.
            self._rows_src = None
            self._rows_wrapper = None
        return self._rows_src

    def _ticks_rows(self, src, n):
        """``n`` ticks (or fewer, to fit a chunk) from the stimulus rows by the kernel;
        returns the XLDA/GDA flags."""
        par = self._par
        if not self._par_ok:
            self._set_fixed_params(src)
        rate = par[_P_RATE]
        pp = par[_P_P]
        qq = par[_P_Q]
        last = par[_P_LAST]
        k = self._k
        qb, rb = divmod(k * 1000000000, rate)
        ib, sb = divmod((self._t0 + qb) * pp, qq)
        first = ib if ib < last else last
        span_max = src.chunk_rows - 1
        while True:
            # The rows the batch needs (the one after the last tick's too) must fit in a chunk.
            d = (rb + (n - 1) * 1000000000) // rate
            i_end = ib + (sb + d * pp) // qq + 1
            if i_end > last:
                i_end = last
            span = i_end - first
            if span <= span_max or n == 1:
                break
            n = max(1, n * span_max // (span + 1))
        chunk, row0 = src.rows_f32(first, i_end)
        par[_P_N] = n
        par[_P_K] = k
        par[_P_RB] = rb
        par[_P_SB] = sb
        par[_P_IB] = ib
        par[_P_ROW0] = row0
        par[_P_LCG] = self._lcg
        fmode = self._fflow
        par[_P_FMODE] = fmode
        par[_P_HEAD] = self._fhead
        par[_P_COUNT] = self._fcount
        par[_P_OVR] = self._fovr
        dso = self.family == FAMILY_DSO
        if dso:
            par[_P_TAG] = self._ftag
        else:
            par[_P_EV] = self._fevent
            par[_P_PAT] = self._fpat
        ctx = self._ctx
        ctx[3] = chunk
        io = self._io
        out = self._out
        io[6] = out[0]
        io[7] = out[1]
        io[8] = out[2]
        io[9] = out[3]
        io[10] = out[4]
        io[11] = out[5]
        flags = _gen_rows(ctx, io)
        out[0] = io[6]
        out[1] = io[7]
        out[2] = io[8]
        out[3] = io[9]
        out[4] = io[10]
        out[5] = io[11]
        k += n
        self._k = k
        self._lcg = par[_P_LCG]
        self.ticks += n
        self._fhead = par[_P_HEAD]
        self._fcount = par[_P_COUNT]
        ovr = par[_P_OVR]
        if ovr and not self._fovr:
            self._fovr_latched = 1
        self._fovr = ovr
        if par[_P_FMODE] != fmode:
            self._fstopped = True
            self._fflow = _MODE_OFF
        if dso:
            self._ftag = par[_P_TAG]
        else:
            self._fevent = par[_P_EV]
            self._fpat = par[_P_PAT]
        if self.noise and k % par[_P_PER_S] == 0:
            self._drift_step()
            self._update_offsets()
        return flags

    def _set_fixed_params(self, src):
        # What stays the same from batch to batch until the configuration or source changes.
        par = self._par
        rate = self._rate_mhz
        par[_P_RATE] = rate
        par[_P_PER_S] = max(1, rate // 1000)
        par[_P_P], par[_P_Q] = src.rows_per_us()
        par[_P_LAST] = src.rows - 1
        par[_P_SMX], par[_P_SSX] = self._smx
        par[_P_SMG], par[_P_SSG] = self._smg
        par[_P_XDIV] = self._xl_div
        par[_P_GDIV] = self._g_div
        par[_P_DEPTH] = self.fifo_depth_words
        par[_P_CAP] = self._fcap
        if self.family == FAMILY_DSO:
            par[_P_DSO] = 1
            par[_P_BXD] = self._bx_div
            par[_P_BGD] = self._bg_div
        else:
            par[_P_DSO] = 0
            par[_P_FDIV] = self._fdiv
            par[_P_NPLAN] = len(self._plan)
            par[_P_PATLEN] = self._pat_len
        self._ctx[2] = self._noise_flat
        self._par_ok = True

    def _ticks_python(self, n):
        """``n`` ticks sample by sample from ``source.sample_at`` (the reference path)."""
        v = self._v
        sample_at = self.source.sample_at
        rate = self._rate_mhz
        t0 = self._t0
        k = self._k
        sx = self._sx
        sg = self._sg
        o0, o1, o2, o3, o4, o5 = self._off
        tbl = self._noise_tbl
        lcg = self._lcg
        xdiv = self._xl_div
        gdiv = self._g_div
        ax, ay, az, gx, gy, gz = self._out
        per_s = max(1, rate // 1000)
        noise = self.noise
        fmode = self._fflow
        dso = self.family == FAMILY_DSO
        ring = self._ring
        depth = self.fifo_depth_words
        cap = self._fcap
        head = self._fhead
        count = self._fcount
        ovr = self._fovr
        pack_into = struct.pack_into
        if dso:
            bxd = self._bx_div
            bgd = self._bg_div
            tag = self._ftag
        else:
            fdiv = self._fdiv
            plan = self._plan
            nplan = len(plan)
            ev = self._fevent
            pat_len = self._pat_len
            pat = self._fpat
        xl_new = False
        g_new = False
        for _ in range(n):
            sample_at((t0 + k * 1000000000 // rate) / 1000000, v)
            lcg = (lcg * 1103515245 + 12345) & 0x7FFFFFFF
            n0, n1, n2, n3, n4, n5 = tbl[lcg >> _NOISE_SHIFT]
            xdue = xdiv and k % xdiv == 0
            gdue = gdiv and k % gdiv == 0
            if xdue:
                xl_new = True
                ax = (int(v[0] * sx) + o0 + n0) >> 16
                ay = (int(v[1] * sx) + o1 + n1) >> 16
                az = (int(v[2] * sx) + o2 + n2) >> 16
                if ax > 32767:
                    ax = 32767
                elif ax < -32768:
                    ax = -32768
                if ay > 32767:
                    ay = 32767
                elif ay < -32768:
                    ay = -32768
                if az > 32767:
                    az = 32767
                elif az < -32768:
                    az = -32768
            if gdue:
                g_new = True
                gx = (int(v[3] * sg) + o3 + n3) >> 16
                gy = (int(v[4] * sg) + o4 + n4) >> 16
                gz = (int(v[5] * sg) + o5 + n5) >> 16
                if gx > 32767:
                    gx = 32767
                elif gx < -32768:
                    gx = -32768
                if gy > 32767:
                    gy = 32767
                elif gy < -32768:
                    gy = -32768
                if gz > 32767:
                    gz = 32767
                elif gz < -32768:
                    gz = -32768
            if fmode:
                if dso:
                    g_in = 1 if bgd and k % bgd == 0 else 0
                    x_in = 1 if bxd and k % bxd == 0 else 0
                    need = g_in + x_in
                    if need:
                        if count + need > cap:
                            if fmode == _MODE_CONTINUOUS:
                                drop = count + need - cap
                                head = (head + drop) % depth
                                count -= drop
                            else:
                                need = 0
                                fmode = _MODE_OFF  # FIFO mode: full, stop collecting
                            ovr = 1
                        if need:
                            if g_in:
                                w = head + count
                                if w >= depth:
                                    w -= depth
                                pack_into("<Bhhh", ring, w * 7, _TAG_BYTES_G[tag], gx, gy, gz)
                                count += 1
                            if x_in:
                                w = head + count
                                if w >= depth:
                                    w -= depth
                                pack_into("<Bhhh", ring, w * 7, _TAG_BYTES_XL[tag], ax, ay, az)
                                count += 1
                            tag = (tag + 1) & 3
                elif k % fdiv == 0:
                    g_in, x_in = plan[ev]
                    ev += 1
                    if ev == nplan:
                        ev = 0
                    need = 3 * (g_in + x_in)
                    if count + need > cap:
                        if fmode == _MODE_CONTINUOUS:
                            drop = count + need - cap
                            head = (head + drop) % depth
                            count -= drop
                            pat = (pat + drop) % pat_len
                        else:
                            need = 0
                            fmode = _MODE_OFF  # FIFO mode: full, stop collecting
                        ovr = 1
                    if need:
                        w = head + count
                        if w >= depth:
                            w -= depth
                        if need == 6 and w + 6 <= depth:
                            pack_into("<6h", ring, w * 2, gx, gy, gz, ax, ay, az)
                        else:
                            if g_in:
                                _put3(ring, w, depth, gx, gy, gz)
                                w = (w + 3) % depth
                            if x_in:
                                _put3(ring, w, depth, ax, ay, az)
                        count += need
            k += 1
            if noise and k % per_s == 0:
                self._drift_step()
                self._update_offsets()
                o0, o1, o2, o3, o4, o5 = self._off
        self._k = k
        self._lcg = lcg
        self.ticks += n
        out = self._out
        out[0] = ax
        out[1] = ay
        out[2] = az
        out[3] = gx
        out[4] = gy
        out[5] = gz
        self._fhead = head
        self._fcount = count
        if fmode != self._fflow:
            self._fstopped = True
            self._fflow = _MODE_OFF
        if ovr and not self._fovr:
            self._fovr_latched = 1
        self._fovr = ovr
        if dso:
            self._ftag = tag
        else:
            self._fevent = ev
            self._fpat = pat
        st = 0
        if xl_new:
            st |= 0x01
        if g_new:
            st |= 0x02
        return st

    # ---- register reads with side effects -------------------------------------------------------

    def _after_read(self, a):
        regs = self._regs
        if a == STATUS_REG or a > OUTX_L_XL + 5:
            if a == FIFO_STATUS2 and self.family == FAMILY_DSO:
                self._fovr_latched = 0
            return
        # Reading an output clears its data-ready flag.
        if a >= OUTX_L_XL:
            regs[STATUS_REG] &= ~0x01 & 0xFF
        elif a >= OUTX_L_G:
            regs[STATUS_REG] &= ~0x02 & 0xFF
        elif a >= OUT_TEMP_L:
            regs[STATUS_REG] &= ~0x04 & 0xFF

    def _refresh_fifo_status(self):
        regs = self._regs
        c = self._fcount
        diff = c if c <= self._diff_max else self._diff_max
        wtm = self._wtm
        if self.family == FAMILY_DS3:
            s2 = diff >> 8
            if c == 0:
                s2 |= 0x10
            if self._fflow and c + 6 > self._fcap:
                s2 |= 0x20
            if self._fovr:
                s2 |= 0x40
            if wtm and c >= wtm:
                s2 |= 0x80
            pat = self._fpat
            regs[DS3_FIFO_STATUS3] = pat & 0xFF
            regs[DS3_FIFO_STATUS4] = pat >> 8
        else:
            s2 = (diff >> 8) & 0x03
            if self._fovr_latched:
                s2 |= 0x08
            if self._fflow and c + 2 > self._fcap:
                s2 |= 0x20
            if self._fovr:
                s2 |= 0x40
            if wtm and c >= wtm:
                s2 |= 0x80
        regs[FIFO_STATUS1] = diff & 0xFF
        regs[FIFO_STATUS2] = s2

    def _read_fifo_byte(self, j):
        # Byte j of the oldest word; reading its last byte pops it.
        if self._fcount == 0:
            return 0
        b = self._ring[self._fhead * self._word_bytes + j]
        if j == self._word_bytes - 1:
            self._pop(1)
        return b

    def _read_words(self, buf, pos, words):
        ring = self._ring
        ws = self._word_bytes
        take = words if words <= self._fcount else self._fcount
        if take:
            _copy_ring(buf, pos, ring, (self._fhead * ws) << 32 | take * ws)
            pos += take * ws
        stop = pos + (words - take) * ws
        while pos < stop:  # an empty FIFO reads as zeros
            buf[pos] = 0
            pos += 1
        if take:
            # _pop(take), inlined: this runs for every burst the driver reads
            self._fhead = (self._fhead + take) % self.fifo_depth_words
            self._fcount -= take
            if self.family == FAMILY_DS3:
                self._fpat = (self._fpat + take) % self._pat_len
            self._fovr = 0

    def _pop(self, n):
        self._drop_words(n)
        self._fovr = 0

    def _saturate(self, x):
        return 32767 if x > 32767 else (-32768 if x < -32768 else x)

    def __repr__(self):
        return "<LSM6DSModel %s odr=%sHz fifo=%d/%d words>" % (
            self.variant,
            self.odr_hz(),
            self._fcount,
            self.fifo_depth_words,
        )


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _parity(tag_byte):
    # TAG_PARITY makes the number of ones in the tag byte even.
    x = tag_byte
    x ^= x >> 4
    x ^= x >> 2
    x ^= x >> 1
    return x & 1


def _put3(ring, w, depth, x, y, z):
    # Three 16-bit words at word index w of a ring of `depth` words, wrapping.
    for val in (x, y, z):
        o = w * 2
        ring[o] = val & 0xFF
        ring[o + 1] = (val >> 8) & 0xFF
        w += 1
        if w == depth:
            w = 0


# Tag bytes of gyro and accel words for TAG_CNT 0..3, parity included.
_TAG_BYTES_G = [(TAG_GYRO_NC << 3) | (c << 1) | _parity((TAG_GYRO_NC << 3) | (c << 1)) for c in range(4)]
_TAG_BYTES_XL = [(TAG_ACCEL_NC << 3) | (c << 1) | _parity((TAG_ACCEL_NC << 3) | (c << 1)) for c in range(4)]
