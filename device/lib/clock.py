# Wall-clock time as the protocol wants it: unix seconds.
#
# MicroPython ports differ in their epoch (the ESP32 port counts from 2000-01-01, the unix
# port from 1970); the device's records always carry unix seconds.  After a dead battery
# the RTC restarts at its epoch: records then carry a time near 2000 until the host sets
# the clock (TIME_SET), and the TIME_SET event lets the host correct them.
import time

_EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0


def unix_s():
    return time.time() + _EPOCH_OFFSET_S


def set_unix_s(t):
    """Set the RTC to unix time ``t``; returns the unix time it read before."""
    import machine

    old = unix_s()
    tm = time.gmtime(t - _EPOCH_OFFSET_S)
    # RTC.datetime takes (year, month, day, weekday, hours, minutes, seconds, subseconds).
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
    return old
