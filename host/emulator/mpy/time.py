# MicroPython's ``time`` module on the emulated board's virtual clock.
#
# Shadows the unix port's built-in ``time`` (modules on the search path win over
# built-ins); the original stays reachable as ``utime``.  asyncio takes its clock from
# here, and ``select.py`` beside this file advances the clock while asyncio waits, so
# ``await asyncio.sleep_ms(3_600_000)`` returns at once with an hour elapsed.
#
# Wall-clock time follows the ESP32 port: the epoch is 2000-01-01, and the clock starts
# at the epoch on power-up until the firmware sets the RTC (as after a dead battery).
import utime
import vclock

# asyncio's C task queue stamps a task created with no deadline with the *real* ms tick,
# meaning "run it now".  The virtual tick starts a million seconds past the real one, so such
# stamps always lie in the virtual past and those tasks run at once, never delaying the
# virtual clock by the real time the process took.  (ticks wrap only after 2**62 ms here.)
_BASE_MS = utime.ticks_add(utime.ticks_ms(), 1000000000)
_EPOCH_2000_TO_1970_S = 946684800

ticks_add = utime.ticks_add
ticks_diff = utime.ticks_diff


def ticks_ms():
    return utime.ticks_add(_BASE_MS, vclock.now_us() // 1000)


def ticks_us():
    return utime.ticks_add(_BASE_MS * 1000, vclock.now_us())


def ticks_cpu():
    return ticks_us()


def sleep_us(us):
    vclock.advance_us(us)


def sleep_ms(ms):
    vclock.advance_us(ms * 1000)


def sleep(s):
    vclock.advance_us(int(s * 1000000))


def time():
    return vclock.rtc_s()


def time_ns():
    return (vclock.rtc_s() * 1000000 + vclock.now_us() % 1000000) * 1000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return utime.gmtime(secs + _EPOCH_2000_TO_1970_S)


localtime = gmtime


def mktime(tm):
    return utime.mktime(tm) - _EPOCH_2000_TO_1970_S
