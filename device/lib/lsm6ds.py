# Driver for ST's LSM6DS-family IMUs (LSM6DS3, LSM6DS3TR-C, LSM6DSO, LSM6DSOX, ISM330DHCX)
# on I2C, built for batch reading: the chip samples into its hardware FIFO and the CPU
# wakes now and then to drain it in a few burst reads.
#
# Whatever the variant's FIFO format (16-bit words in a gyro-then-accel pattern on the
# DS3 family, 7-byte tagged words on the DSO family), read_fifo() hands over 12 bytes per
# sample: int16 little-endian ax, ay, az, gx, gy, gz in raw LSBs (docs/emulator.md).
# accel_ug_per_lsb and gyro_udps_per_lsb turn them into physical units with integers.
#
# Steady-state read_fifo() calls allocate nothing: buffers and memoryviews are made in
# start(), and the word shuffling runs in viper (or, where there is no native emitter, in
# plain loops over the same buffers).
import struct
import sys
import time

import micropython
from micropython import const

_WHO_AM_I = const(0x0F)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_CTRL8_XL = const(0x17)
_CTRL9_XL = const(0x18)
_OUT_TEMP_L = const(0x20)
_OUTX_L_G = const(0x22)
_FIFO_STATUS1 = const(0x3A)
# LSM6DS3 / LSM6DS3TR-C FIFO
_DS3_FIFO_CTRL3 = const(0x08)
_DS3_FIFO_CTRL5 = const(0x0A)
_DS3_FIFO_DATA_OUT_L = const(0x3E)
# LSM6DSO / LSM6DSOX / ISM330DHCX FIFO
_DSO_FIFO_CTRL3 = const(0x09)
_DSO_FIFO_CTRL4 = const(0x0A)
_DSO_FIFO_DATA_OUT_TAG = const(0x78)

_SW_RESET = const(0x01)
_IF_INC = const(0x04)
_BDU = const(0x40)
_I3C_DISABLE = const(0x02)  # CTRL9_XL bit 1 (ISM330DHCX: DEVICE_CONF, must be 1)
_FIFO_BYPASS = const(0)
_FIFO_CONTINUOUS = const(6)
_DS3_DEC_NONE_BOTH = const(0x09)  # FIFO_CTRL3: gyro and accel, no decimation
_DS3_OVER_RUN = const(0x40)  # FIFO_STATUS2
_DSO_OVR = const(0x48)  # FIFO_STATUS2: FIFO_OVR_IA | FIFO_OVR_LATCHED
_TAG_GYRO = const(1)
_TAG_ACCEL = const(2)

_MAX_LOOKS = const(64)  # status reads per read_fifo() call at most
_RESET_POLLS = const(20)  # ms to wait for SW_RESET to clear (datasheets: ~50 us)
_SAMPLE_BYTES = const(12)

_VARIANT_BY_ID = {0x69: "LSM6DS3", 0x6A: "LSM6DS3TR-C", 0x6C: "LSM6DSO", 0x6B: "ISM330DHCX"}
# FIFO depth in words (16-bit words on the DS3 family, 7-byte tagged words on the DSO family).
_FIFO_WORDS = {0x69: 4096, 0x6A: 2048, 0x6C: 512, 0x6B: 512}
# Nominal ODRs for codes 1..7 (12.5 Hz to 833 Hz).
_ODRS = (12.5, 26, 52, 104, 208, 416, 833)
# Full scale -> (CTRL1_XL FS bits, ug/LSB); code 01 is 16 g while XL_FS_MODE = 0 (reset value).
_ACCEL_FS = {2: (0, 61), 4: (2, 122), 8: (3, 244), 16: (1, 488)}
# Full scale -> (CTRL2_G bits 3:0, udps/LSB): FS_G in bits 3:2, FS_125 bit 1, FS_4000 bit 0.
_GYRO_FS = {
    125: (0x02, 4375),
    250: (0x00, 8750),
    500: (0x04, 17500),
    1000: (0x08, 35000),
    2000: (0x0C, 70000),
}
_GYRO_FS_4000 = (0x01, 140000)

# Real MicroPython compiles @micropython.viper at compile time (there is no runtime
# micropython.viper attribute to test); the native emitter exists when sys.implementation
# reports a native architecture.  CPython has neither and takes the plain loops.
_VIPER = sys.implementation.name == "micropython" and (getattr(sys.implementation, "_mpy", 0) >> 10) > 0


class SensorError(OSError):
    """The IMU is missing, unknown or misbehaving.

    ``kind`` is "missing" (nothing answers; ``detail`` is the errno), "whoami_mismatch"
    (``detail`` is the WHO_AM_I read) or "reset_timeout" (``detail`` is CTRL3_C)."""

    def __init__(self, kind, detail, message):
        super().__init__(message)
        self.kind = kind
        self.detail = detail


# FIFO words -> samples.  The plain versions run where there is no native emitter
# (CPython) and are the reference the viper versions are tested against.


def _pattern_to_samples_py(raw, sets, out, first):
    # DS3 data sets (gx gy gz ax ay az, 12 bytes) -> samples (ax ay az gx gy gz) at out[first:].
    q = first * 12
    p = 0
    end = sets * 12
    while p < end:
        for j in range(6):
            out[q + j] = raw[p + 6 + j]
            out[q + 6 + j] = raw[p + j]
        p += 12
        q += 12


def _tagged_to_samples_py(raw, words, out, state):
    # DSO tagged words -> samples; returns how many.  state: [0] a word is pending, [1] its
    # tag byte, [2:8] its data, [8:10] next sample index in out (u16 LE).  A gyro and an
    # accel word with the same TAG_CNT make a sample; a word without its partner (lost to
    # an overrun) is replaced by the next one.
    s = state
    idx = s[8] | (s[9] << 8)
    made = 0
    p = 0
    end = words * 7
    while p < end:
        tb = raw[p]
        tag = tb >> 3
        if tag == _TAG_GYRO or tag == _TAG_ACCEL:
            ptb = s[1]
            if s[0] and (ptb >> 3) != tag and ((ptb >> 1) & 3) == ((tb >> 1) & 3):
                q = idx * 12
                a, g = (q, q + 6) if tag == _TAG_ACCEL else (q + 6, q)
                for j in range(6):
                    out[a + j] = raw[p + 1 + j]
                    out[g + j] = s[2 + j]
                idx += 1
                made += 1
                s[0] = 0
            else:
                s[0] = 1
                s[1] = tb
                for j in range(6):
                    s[2 + j] = raw[p + 1 + j]
        p += 7
    s[8] = idx & 0xFF
    s[9] = (idx >> 8) & 0xFF
    return made


if _VIPER:

    @micropython.viper
    def _pattern_to_samples_viper(raw, sets: int, out, first: int):
        src = ptr8(raw)  # noqa: F821
        dst = ptr8(out)  # noqa: F821
        q = first * 12
        p = 0
        end = sets * 12
        while p < end:
            j = 0
            while j < 6:
                dst[q + j] = src[p + 6 + j]
                dst[q + 6 + j] = src[p + j]
                j += 1
            p += 12
            q += 12

    @micropython.viper
    def _tagged_to_samples_viper(raw, words: int, out, state) -> int:
        src = ptr8(raw)  # noqa: F821
        dst = ptr8(out)  # noqa: F821
        s = ptr8(state)  # noqa: F821
        idx = int(s[8]) | (int(s[9]) << 8)
        made = 0
        p = 0
        end = words * 7
        while p < end:
            tb = int(src[p])
            tag = tb >> 3
            if tag == _TAG_GYRO or tag == _TAG_ACCEL:
                paired = 0
                if s[0] != 0:
                    ptb = int(s[1])
                    if (ptb >> 3) != tag and ((ptb >> 1) & 3) == ((tb >> 1) & 3):
                        paired = 1
                if paired:
                    q = idx * 12
                    if tag == _TAG_ACCEL:
                        a = q
                        g = q + 6
                    else:
                        a = q + 6
                        g = q
                    j = 0
                    while j < 6:
                        dst[a + j] = src[p + 1 + j]
                        dst[g + j] = s[2 + j]
                        j += 1
                    idx += 1
                    made += 1
                    s[0] = 0
                else:
                    s[0] = 1
                    s[1] = tb
                    j = 0
                    while j < 6:
                        s[2 + j] = src[p + 1 + j]
                        j += 1
            p += 7
        s[8] = idx & 0xFF
        s[9] = (idx >> 8) & 0xFF
        return made

    _pattern_to_samples = _pattern_to_samples_viper
    _tagged_to_samples = _tagged_to_samples_viper
else:
    _pattern_to_samples = _pattern_to_samples_py
    _tagged_to_samples = _tagged_to_samples_py


def _odr_code(odr_hz):
    # The nominal ODR nearest to odr_hz by ratio: (code, rate).
    if not 10 <= odr_hz <= 1000:
        raise ValueError("odr_hz must be between 12.5 and 833, not %r" % (odr_hz,))
    best = 0
    best_ratio = 1e9
    for i in range(len(_ODRS)):
        r = _ODRS[i] / odr_hz
        if r < 1:
            r = 1 / r
        if r < best_ratio:
            best = i
            best_ratio = r
    return best + 1, _ODRS[best]


class LSM6DS:
    """One LSM6DS-family IMU at ``addr`` (0x6A, or 0x6B with SA0 high) on ``i2c``.

    ``burst_samples`` (a power of two) bounds one I2C read: a drain of n samples takes one
    status read plus about popcount(n) data reads."""

    def __init__(self, i2c, addr=0x6A, burst_samples=32):
        self._i2c = i2c
        self.addr = addr
        self._b1 = bytearray(1)
        self._b2 = bytearray(2)
        self._out12 = bytearray(12)
        b1 = self._b1
        try:
            i2c.readfrom_mem_into(addr, _WHO_AM_I, b1)
        except OSError as e:
            code = e.args[0] if e.args else 0
            raise SensorError(
                "missing",
                code,
                "no LSM6DS IMU answers at I2C address 0x%02x (errno %s): check its wiring, power and SA0 pin"
                % (addr, code),
            )
        who = b1[0]
        variant = _VARIANT_BY_ID.get(who)
        if variant is None:
            raise SensorError(
                "whoami_mismatch",
                who,
                "the chip at I2C address 0x%02x reports WHO_AM_I 0x%02x; this driver knows the "
                "LSM6DS3 (0x69), LSM6DS3TR-C (0x6A), LSM6DSO/LSM6DSOX (0x6C) and ISM330DHCX (0x6B)"
                % (addr, who),
            )
        self.who_am_i = who
        # 0x6C is the LSM6DSO or the LSM6DSOX: WHO_AM_I cannot tell them apart, and
        # everything this driver uses is the same on both.
        self.variant = variant
        self._tagged = who == 0x6C or who == 0x6B
        self._fifo_words = _FIFO_WORDS[who]
        burst = 1
        while burst * 2 <= burst_samples:
            burst *= 2
        self._burst = burst
        self.overflows = 0
        self.odr_hz = 0
        self.accel_fs_g = 0
        self.gyro_fs_dps = 0
        self._read_scales()
        self._raw = None

    # ---- configuration --------------------------------------------------------------------

    def start(self, odr_hz=52, accel_fs_g=4, gyro_fs_dps=500):
        """Reset the chip and sample accel and gyro at ``odr_hz`` into the FIFO (continuous mode)."""
        code, odr = _odr_code(odr_hz)
        if accel_fs_g not in _ACCEL_FS:
            raise ValueError("accel_fs_g must be 2, 4, 8 or 16, not %r" % (accel_fs_g,))
        xl_bits, ug = _ACCEL_FS[accel_fs_g]
        if gyro_fs_dps == 4000 and self.variant == "ISM330DHCX":
            g_bits, udps = _GYRO_FS_4000
        elif gyro_fs_dps in _GYRO_FS:
            g_bits, udps = _GYRO_FS[gyro_fs_dps]
        else:
            raise ValueError(
                "gyro_fs_dps must be 125, 250, 500, 1000 or 2000 (4000 on the ISM330DHCX), not %r"
                % (gyro_fs_dps,)
            )
        self._reset()
        self._write(_CTRL3_C, _BDU | _IF_INC)
        if self._tagged:
            self._write(_CTRL9_XL, self._read(_CTRL9_XL) | _I3C_DISABLE)
            self._write(_DSO_FIFO_CTRL4, _FIFO_BYPASS)
        else:
            self._write(_DS3_FIFO_CTRL5, _FIFO_BYPASS)
        b = self._b2
        b[0] = (code << 4) | (xl_bits << 2)
        b[1] = (code << 4) | g_bits
        self._i2c.writeto_mem(self.addr, _CTRL1_XL, b)
        if self._tagged:
            self._write(_DSO_FIFO_CTRL3, (code << 4) | code)
            self._write(_DSO_FIFO_CTRL4, _FIFO_CONTINUOUS)
        else:
            self._write(_DS3_FIFO_CTRL3, _DS3_DEC_NONE_BOTH)
            self._write(_DS3_FIFO_CTRL5, (code << 3) | _FIFO_CONTINUOUS)
        self.odr_hz = odr
        self.accel_fs_g = accel_fs_g
        self.gyro_fs_dps = gyro_fs_dps
        self.accel_ug_per_lsb = ug
        self.gyro_udps_per_lsb = udps
        self._prepare_buffers()

    def stop(self):
        """Power both sensors down (the FIFO keeps what it holds)."""
        self._b2[0] = 0
        self._b2[1] = 0
        self._i2c.writeto_mem(self.addr, _CTRL1_XL, self._b2)

    def _reset(self):
        self._write(_CTRL3_C, _SW_RESET)
        for _ in range(_RESET_POLLS):
            time.sleep_ms(1)
            ctrl3 = self._read(_CTRL3_C)
            if not ctrl3 & _SW_RESET:
                return
        raise SensorError(
            "reset_timeout",
            ctrl3,
            "the %s at 0x%02x did not finish its software reset within %d ms"
            % (self.variant, self.addr, _RESET_POLLS),
        )

    def _read_scales(self):
        # Sensitivities for the full scale the chip is set to now (read_now() before start()).
        self._i2c.readfrom_mem_into(self.addr, _CTRL1_XL, self._b2)
        xl = (self._b2[0] >> 2) & 3
        g = self._b2[1]
        ug = (61, 488, 122, 244)[xl]
        if xl == 1 and self.who_am_i == 0x6C and self._read(_CTRL8_XL) & 0x02:
            ug = 61  # DSO/DSOX XL_FS_MODE = 1: code 01 is 2 g
        if self.variant == "ISM330DHCX" and g & 0x01:
            udps = 140000
        elif g & 0x02:
            udps = 4375
        else:
            udps = (8750, 17500, 35000, 70000)[(g >> 2) & 3]
        self.accel_ug_per_lsb = ug
        self.gyro_udps_per_lsb = udps

    def _prepare_buffers(self):
        if self._tagged:
            unit = 7  # bytes per FIFO word
            n = 2 * self._burst  # words per burst
            self._status = bytearray(2)
            self._state = bytearray(10)
        else:
            unit = 12  # bytes per data set (6 words)
            n = self._burst
            self._status = bytearray(4)
        raw = bytearray(unit * n)
        mv = memoryview(raw)
        views = []
        size = 1
        while size <= n:
            views.append(mv[: unit * size])
            size *= 2
        self._raw = raw
        self._views = views
        self._top = len(views) - 1
        self._word = mv[:2]

    def _write(self, reg, value):
        self._b1[0] = value
        self._i2c.writeto_mem(self.addr, reg, self._b1)

    def _read(self, reg):
        self._i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    # ---- data -------------------------------------------------------------------------------

    def read_fifo(self, buf):
        """Move the complete samples waiting in the FIFO into ``buf`` (a bytearray, 12 bytes
        per sample: int16 LE ax ay az gx gy gz), at most len(buf) // 12; return the count."""
        if self._raw is None:
            raise SensorError("not_started", 0, "call start() before read_fifo()")
        if self._tagged:
            return self._read_tagged(buf, len(buf) // _SAMPLE_BYTES)
        return self._read_pattern(buf, len(buf) // _SAMPLE_BYTES)

    def _read_pattern(self, buf, cap):
        i2c = self._i2c
        addr = self.addr
        st = self._status
        raw = self._raw
        views = self._views
        done = 0
        counted = False
        roomy = False
        for _ in range(_MAX_LOOKS):
            i2c.readfrom_mem_into(addr, _FIFO_STATUS1, st)
            words = st[0] | ((st[1] & 0x0F) << 8)
            overrun = st[1] & _DS3_OVER_RUN
            if overrun and not counted:
                self.overflows += 1
                counted = True
            pattern = (st[2] | ((st[3] & 0x03) << 8)) % 6
            if pattern and words:
                # An overrun overwrites the oldest words one by one: read up to the next
                # gyro-x word, then look again (a sample may have arrived meanwhile).
                skip = 6 - pattern
                if skip > words:
                    skip = words
                while skip:
                    i2c.readfrom_mem_into(addr, _DS3_FIFO_DATA_OUT_L, self._word)
                    skip -= 1
                continue
            # A full FIFO overwrites part of a set when a sample arrives while we have read
            # only a few words.  Make room with one whole set first, and then look before
            # every burst until the FIFO is no longer nearly full.
            careful = overrun or words + 12 > self._fifo_words
            if careful and not roomy:
                roomy = True
                if words >= 6:
                    i2c.readfrom_mem_into(addr, _DS3_FIFO_DATA_OUT_L, views[0])
                    continue
            sets = words // 6
            if sets > cap - done:
                sets = cap - done
            end = done + sets
            while done < end:
                left = end - done
                j = self._top
                while (1 << j) > left:
                    j -= 1
                i2c.readfrom_mem_into(addr, _DS3_FIFO_DATA_OUT_L, views[j])
                _pattern_to_samples(raw, 1 << j, buf, done)
                done += 1 << j
                if careful:
                    break
            if not careful or sets == 0 or done >= cap:
                break
        return done

    def _read_tagged(self, buf, cap):
        i2c = self._i2c
        addr = self.addr
        st = self._status
        state = self._state
        i2c.readfrom_mem_into(addr, _FIFO_STATUS1, st)
        words = st[0] | ((st[1] & 0x03) << 8)
        if st[1] & _DSO_OVR:
            self.overflows += 1
            state[0] = 0  # the pending word's partner may have been overwritten
        elif words + 4 > self._fifo_words:
            state[0] = 0  # about to overrun: the same
        limit = 2 * cap - state[0]
        if words > limit:
            words = limit
        state[8] = 0
        state[9] = 0
        made = 0
        raw = self._raw
        views = self._views
        while words > 0:
            j = self._top
            while (1 << j) > words:
                j -= 1
            i2c.readfrom_mem_into(addr, _DSO_FIFO_DATA_OUT_TAG, views[j])
            made += _tagged_to_samples(raw, 1 << j, buf, state)
            words -= 1 << j
        return made

    def read_now(self):
        """The current output registers: (ax_g, ay_g, az_g, gx_dps, gy_dps, gz_dps)."""
        b = self._out12
        self._i2c.readfrom_mem_into(self.addr, _OUTX_L_G, b)
        gx, gy, gz, ax, ay, az = struct.unpack("<6h", b)
        ka = self.accel_ug_per_lsb / 1000000
        kg = self.gyro_udps_per_lsb / 1000000
        return (ax * ka, ay * ka, az * ka, gx * kg, gy * kg, gz * kg)

    def temperature_c(self):
        self._i2c.readfrom_mem_into(self.addr, _OUT_TEMP_L, self._b2)
        raw = struct.unpack("<h", self._b2)[0]
        return 25.0 + raw / (16 if self.variant == "LSM6DS3" else 256)
