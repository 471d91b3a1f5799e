# Plain-Python stand-ins for running the firmware's viper kernels under CPython.
#
# On the board, `@micropython.viper` compiles the per-sample kernels to machine code and
# `ptr16`/`ptr32` are viper built-ins.  Tests and host tools run the very same kernels under
# CPython with these: `micropython.viper` leaves the function as it is, and the pointers
# behave like viper's on a 64-bit host: loads are unsigned (the kernels sign-extend 16-bit
# values themselves) and a store must fit the element (a value that would not is a bug,
# and raises).  Firmware modules import this only when not on MicroPython.


def const(value):
    return value


class _PlainPython:
    @staticmethod
    def viper(fn):
        return fn


micropython = _PlainPython()


class _Pointer:
    def __init__(self, buf, load_format, store_format):
        raw = memoryview(buf).cast("B")
        self._load = raw.cast(load_format)
        self._store = raw.cast(store_format)

    def __getitem__(self, i):
        return self._load[i]

    def __setitem__(self, i, value):
        self._store[i] = value


def ptr16(buf):
    return _Pointer(buf, "H", "h")


def ptr32(buf):
    return _Pointer(buf, "I", "i")
