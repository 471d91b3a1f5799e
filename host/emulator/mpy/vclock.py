# Virtual clock of the emulated board.
#
# Runs unchanged on MicroPython (inside the firmware's process) and on CPython (tests,
# the Adafruit conformance check).  Time only moves when something sleeps or waits: an
# emulated hour passes in the time the firmware needs to process an hour of samples.
#
# Every advance is booked to a power state ("awake" or "sleep") so that the energy model
# can turn the run into hours per charge.


class PowerOff(BaseException):
    """The emulated battery was disconnected (end of the stimulus or of the run).

    A BaseException so that firmware code catching ``Exception`` does not swallow it,
    just as no code on a real board outlives a power cut."""


# [now_us, power_off_at_us (-1: never), awake_us, sleep_us, rtc_s_at_zero]
# rtc_s_at_zero: the wall clock (seconds since 2000-01-01, the ESP32 epoch) at virtual time 0.
_state = [0, -1, 0, 0, 0]
_listeners = []
_deadlines = []


def now_us():
    return _state[0]


def now_s():
    return _state[0] / 1000000


def power_off_at_us(t_us):
    """Cut the power when the clock reaches ``t_us`` (-1: never)."""
    _state[1] = t_us


def advance_us(dt_us, state="awake"):
    """Let ``dt_us`` microseconds pass with the CPU in ``state`` ("awake" or "sleep").

    Time stops at every deadline a hardware model announced (a watchdog expiry, a button
    edge) on the way, so that model acts at its own moment and not at the end of the wait."""
    if dt_us <= 0:
        return
    st = _state
    target = st[0] + int(dt_us)
    off = st[1]
    # Every I2C transaction and every wait comes through here: _book is inlined.
    slot = 3 if state == "sleep" else 2
    while True:
        now = st[0]
        step_to = target
        for fn in _deadlines:
            d = fn()
            if now < d < step_to:
                step_to = d
        if off >= 0 and step_to >= off:
            _book(off - now, state)
            raise PowerOff()
        if step_to > now:
            st[0] = step_to
            st[slot] += step_to - now
        for fn in _listeners:
            fn(st[0])
        if step_to >= target:
            return


def _book(dt_us, state):
    if dt_us > 0:
        _state[0] += dt_us
        if state == "sleep":
            _state[3] += dt_us
        else:
            _state[2] += dt_us
    for fn in _listeners:
        fn(_state[0])


def add_deadline(fn):
    """``fn() -> us`` of the model's next moment of its own (-1: none); waits stop there."""
    _deadlines.append(fn)


def on_advance(fn):
    """Call ``fn(now_us)`` after every advance (device models catch up on their own time)."""
    _listeners.append(fn)


def accounting():
    """(awake_us, sleep_us) booked so far."""
    return _state[2], _state[3]


def rtc_s():
    """Wall-clock seconds since 2000-01-01 as the board's RTC reads them now."""
    return _state[4] + _state[0] // 1000000


def set_rtc_s(epoch2000_s):
    """Set the board's RTC so that it reads ``epoch2000_s`` now."""
    _state[4] = int(epoch2000_s) - _state[0] // 1000000


def reset(t_us=0):
    """Back to power-on at ``t_us`` (listeners stay: they belong to the board's hardware)."""
    _state[0] = t_us
    _state[1] = -1
    _state[2] = 0
    _state[3] = 0
    _state[4] = 0
