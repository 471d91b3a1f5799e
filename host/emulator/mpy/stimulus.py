# Motion stimulus for the emulated IMU: the physical acceleration (g) and rotation rate
# (dps) at the sensor, as a function of virtual time.
#
# Runs unchanged on MicroPython (inside the firmware's process) and on CPython.  The file
# format (docs/emulator.md, "Stimulus files"):
#
#   header (16 bytes): magic b"PSTM" | u16 version = 1 | u16 channels = 6 | f32 rate_hz | u32 rows
#   rows:              f32 ax_g, ay_g, az_g, gx_dps, gy_dps, gz_dps   (24 bytes per row)
#
# Row k is at k / rate_hz seconds after power-on.  Every source offers the same three
# things: ``rate_hz``, ``duration_s`` and ``sample_at(t_s, out) -> bool``.
import math
import struct

MAGIC = b"PSTM"
VERSION = 1
CHANNELS = 6
HEADER_FORMAT = "<4sHHfI"
HEADER_SIZE = 16
ROW_FORMAT = "<6f"
ROW_SIZE = 24


class StimulusError(ValueError):
    """The stimulus file is not one this emulator can play."""


class _Interpolated:
    """Linear interpolation between rows k/rate_hz apart; subclasses provide ``_row(i)``.

    The two rows around the last requested time are cached, so a model asking at its own
    ODR (52 Hz from a 57 Hz recording, say) decodes about one row per request."""

    def __init__(self, rate_hz, rows):
        if rate_hz <= 0:
            raise StimulusError("rate_hz must be positive, not %r" % (rate_hz,))
        self.rate_hz = rate_hz
        self.rows = rows
        self.duration_s = rows / rate_hz
        self._i = -2  # index of row a; row b is _i + 1
        self._a = None
        self._b = None

    def _row(self, i):  # pragma: no cover - abstract
        raise NotImplementedError

    def _pair(self, i):
        if i == self._i:
            return
        if i == self._i + 1:
            self._a = self._b
        else:
            self._a = self._row(i)
        last = self.rows - 1
        self._b = self._row(i + 1 if i < last else last)
        self._i = i

    def sample_at(self, t_s, out):
        """Fill ``out[0:6]`` with the values at ``t_s``; False once ``t_s`` is past the end
        (``out`` then holds the last row)."""
        rows = self.rows
        if rows == 0:
            return False
        x = t_s * self.rate_hz
        if x <= 0:
            self._pair(0)
            a = self._a
            for c in range(6):
                out[c] = a[c]
            return True
        i = int(x)
        if i >= rows - 1:
            self._pair(rows - 1)
            a = self._a
            for c in range(6):
                out[c] = a[c]
            return t_s < self.duration_s
        self._pair(i)
        f = x - i
        a = self._a
        b = self._b
        a0, a1, a2, a3, a4, a5 = a
        b0, b1, b2, b3, b4, b5 = b
        out[0] = a0 + (b0 - a0) * f
        out[1] = a1 + (b1 - a1) * f
        out[2] = a2 + (b2 - a2) * f
        out[3] = a3 + (b3 - a3) * f
        out[4] = a4 + (b4 - a4) * f
        out[5] = a5 + (b5 - a5) * f
        return True


class StimulusSource(_Interpolated):
    """A stimulus file, read in chunks of ``chunk_rows`` rows (never the whole file).

    Besides ``sample_at`` it hands out its raw rows for batch consumers (the LSM6DS model's
    integer kernel): ``rows_per_us()`` is the exact row rate and ``rows_f32(first, last)``
    a chunk of float32 rows holding rows first..last."""

    def __init__(self, path, chunk_rows=512):
        f = open(path, "rb")
        try:
            head = f.read(HEADER_SIZE)
            if len(head) != HEADER_SIZE:
                raise StimulusError("%s: too short for a stimulus header" % path)
            magic, version, channels, rate_hz, rows = struct.unpack(HEADER_FORMAT, head)
            if magic != MAGIC:
                raise StimulusError("%s: not a stimulus file (magic %r)" % (path, magic))
            if version != VERSION or channels != CHANNELS:
                raise StimulusError(
                    "%s: stimulus version %d with %d channels; this emulator plays version %d, %d channels"
                    % (path, version, channels, VERSION, CHANNELS)
                )
        except BaseException:
            f.close()
            raise
        self.path = path
        self._f = f
        if chunk_rows < 2:
            raise ValueError("chunk_rows must be at least 2 (interpolation needs two rows)")
        self.chunk_rows = chunk_rows
        self._chunk = bytearray(chunk_rows * ROW_SIZE)
        self._c0 = 0  # first row in the chunk
        self._cn = 0  # rows in the chunk
        _Interpolated.__init__(self, rate_hz, rows)

    def _load(self, i):
        # One read of up to chunk_rows rows starting at row i.
        self._f.seek(HEADER_SIZE + i * ROW_SIZE)
        n = self._f.readinto(self._chunk) or 0
        self._c0 = i
        self._cn = n // ROW_SIZE
        if self._cn == 0:
            raise StimulusError("%s: truncated at row %d of %d" % (self.path, i, self.rows))

    def _row(self, i):
        j = i - self._c0
        if j < 0 or j >= self._cn:
            self._load(i)
            j = 0
        return struct.unpack_from(ROW_FORMAT, self._chunk, j * ROW_SIZE)

    def rows_per_us(self):
        """(P, Q): rows per microsecond is exactly P / Q (the header's float32 rate as a
        fraction), so row positions can be computed in integers."""
        f, e = math.frexp(self.rate_hz)
        p = int(f * (1 << 24))  # the float32 mantissa: exact
        e -= 24
        q = 1000000
        if e >= 0:
            p <<= e
        else:
            q <<= -e
        g = _gcd(p, q)
        return p // g, q // g

    def rows_f32(self, first, last):
        """(chunk, row0): ``chunk`` holds rows row0, row0 + 1, ... as float32 (6 per row, the
        file's own bytes) including rows ``first`` to ``last`` (last - first < chunk_rows)."""
        if first < self._c0 or last >= self._c0 + self._cn:
            self._load(first)
            if last >= self._c0 + self._cn:
                raise StimulusError("%s: truncated at row %d of %d" % (self.path, last, self.rows))
        return self._chunk, self._c0

    def close(self):
        self._f.close()


class RowSource(_Interpolated):
    """In-memory rows (sequences of 6 numbers) at ``rate_hz``: a stimulus file without the file."""

    def __init__(self, rows, rate_hz):
        self._rows = [tuple(float(x) for x in r) for r in rows]
        _Interpolated.__init__(self, rate_hz, len(self._rows))

    def _row(self, i):
        return self._rows[i]


class ConstantSource:
    """The same six values at every instant (for ``duration_s`` seconds, or forever)."""

    def __init__(self, values=(1.0, 0.0, 0.0, 0.0, 0.0, 0.0), duration_s=None):
        self.values = [float(x) for x in values]
        self.rate_hz = 0
        self.duration_s = duration_s

    def sample_at(self, t_s, out):
        v = self.values
        out[0] = v[0]
        out[1] = v[1]
        out[2] = v[2]
        out[3] = v[3]
        out[4] = v[4]
        out[5] = v[5]
        return self.duration_s is None or t_s < self.duration_s


class FunctionSource:
    """Values from ``fn(t_s)`` -> six numbers: exact at every instant the model asks for."""

    def __init__(self, fn, duration_s=None):
        self.fn = fn
        self.rate_hz = 0
        self.duration_s = duration_s

    def sample_at(self, t_s, out):
        v = self.fn(t_s)
        for c in range(6):
            out[c] = v[c]
        return self.duration_s is None or t_s < self.duration_s


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def write(path, rate_hz, rows):
    """Write ``rows`` (an iterable of ax_g, ay_g, az_g, gx_dps, gy_dps, gz_dps) as a stimulus
    file, streaming (the row count goes into the header at the end); returns the count."""
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack(HEADER_FORMAT, MAGIC, VERSION, CHANNELS, rate_hz, 0))
        for r in rows:
            f.write(struct.pack(ROW_FORMAT, r[0], r[1], r[2], r[3], r[4], r[5]))
            n += 1
        f.seek(12)
        f.write(struct.pack("<I", n))
    return n
