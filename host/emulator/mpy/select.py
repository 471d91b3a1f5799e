# MicroPython's ``select`` for the emulated board: waiting advances the virtual clock.
#
# asyncio waits for its next deadline in ``poll().ipoll(timeout_ms)``.  Here the wait
# first asks the real poller about real streams (a ThreadSafeFlag, a socket) without
# blocking; if nothing is ready, the virtual clock moves on by the timeout instead of the
# process sleeping.  Waiting in asyncio is the CPU idling awake.
#
# Emulated peripherals with a real-time peer (the radio: ``bluetooth.py``) register a
# *hook* with ``add_hook``: an object with
#
#   stream()    -> a real stream (socket) to watch, or None while the peripheral is off
#   pump()      -> read what the stream has and deliver it (IRQs); never blocks
#   realtime()  -> True while a real-time peer is talking to the board (a connected
#                  central): the wait then happens in real time, so the virtual clock
#                  does not run ahead of the peer's clock.
import uselect
import utime
import vclock

POLLIN = uselect.POLLIN
POLLOUT = uselect.POLLOUT
POLLERR = uselect.POLLERR
POLLHUP = uselect.POLLHUP

# How long to block for real when only a real stream can wake the loop (radio traffic
# from a peer running in real time).
_REAL_WAIT_MS = 1000

_hooks = []


def add_hook(hook):
    """Register a peripheral whose real stream can wake the board (see the header)."""
    if hook not in _hooks:
        _hooks.append(hook)


def remove_hook(hook):
    if hook in _hooks:
        _hooks.remove(hook)


def realtime():
    """True while some hook has a real-time peer: waits then take real time."""
    for h in _hooks:
        if h.realtime():
            return True
    return False


def pump_hooks():
    for h in _hooks:
        h.pump()


def wait_real_ms(ms):
    """Block for up to ``ms`` real milliseconds on the hooks' streams, delivering what arrives.

    Returns early after something was delivered (it may have woken a task)."""
    p = uselect.poll()
    n = 0
    for h in _hooks:
        s = h.stream()
        if s is not None:
            p.register(s, POLLIN)
            n += 1
    if n == 0:
        utime.sleep_ms(ms)
        return
    if p.poll(ms):
        pump_hooks()


class _Poll:
    def __init__(self):
        self._real = uselect.poll()
        self._registered = 0
        self._hooked = []  # hook streams registered in self._real

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._real.register(obj, eventmask)
        self._registered += 1

    def modify(self, obj, eventmask):
        self._real.modify(obj, eventmask)

    def unregister(self, obj):
        self._real.unregister(obj)
        self._registered -= 1

    def _sync_hooks(self):
        want = []
        for h in _hooks:
            s = h.stream()
            if s is not None:
                want.append(s)
        for s in self._hooked:
            if s not in want:
                try:
                    self._real.unregister(s)
                except (OSError, KeyError):
                    pass
        for s in want:
            if s not in self._hooked:
                self._real.register(s, POLLIN)
        self._hooked = want

    def _poll_real(self, ms):
        """Real poll; hook streams are pumped and left out of the answer."""
        ready = self._real.poll(ms)
        if not self._hooked:
            return ready
        out = []
        pumped = False
        for entry in ready:
            if entry[0] in self._hooked:
                if not pumped:
                    pump_hooks()
                    pumped = True
            else:
                out.append(entry)
        if pumped and not out and self._registered:
            # A delivered IRQ may have set a ThreadSafeFlag: look again.
            out = self._real.poll(0)
            out = [e for e in out if e[0] not in self._hooked]
        return out

    def ipoll(self, timeout=-1, flags=0):
        self._sync_hooks()
        if self._registered or self._hooked:
            ready = self._poll_real(0)
            if ready:
                return iter(ready)
        if realtime() and timeout != 0:
            # A peer is talking in real time: wait for real, then let the same time pass.
            wait = _REAL_WAIT_MS if timeout < 0 else timeout
            start = utime.ticks_us()
            ready = self._poll_real(wait)
            elapsed_us = utime.ticks_diff(utime.ticks_us(), start)
            if elapsed_us > wait * 1000:
                elapsed_us = wait * 1000
            _paced[0] = True
            try:
                vclock.advance_us(elapsed_us)
            finally:
                _paced[0] = False
            return iter(ready)
        if (self._registered or self._hooked) and timeout < 0:
            # Nothing timed is pending: only the outside world can wake us, in its own (real)
            # time, which passes on the board too.
            start = utime.ticks_us()
            ready = self._poll_real(_REAL_WAIT_MS)
            _paced[0] = True
            try:
                vclock.advance_us(utime.ticks_diff(utime.ticks_us(), start))
            finally:
                _paced[0] = False
            return iter(ready)
        if timeout > 0:
            vclock.advance_us(timeout * 1000)
        return iter(())

    def poll(self, timeout=-1):
        return list(self.ipoll(timeout))


def poll():
    return _Poll()


# Sleeps outside asyncio (time.sleep_ms, machine.idle) while a real-time peer is connected:
# the virtual clock has already moved, so hold the process until real time caught up.
_paced = [False]
_last_now = [0]


def _pace_advance(now_us):
    dt = now_us - _last_now[0]
    _last_now[0] = now_us
    if dt <= 0 or _paced[0] or not _hooks:
        return
    if realtime():
        _paced[0] = True
        try:
            end = utime.ticks_add(utime.ticks_us(), dt)
            while True:
                left = utime.ticks_diff(end, utime.ticks_us())
                if left <= 0:
                    break
                wait_real_ms((left + 999) // 1000)
        finally:
            _paced[0] = False
    else:
        pump_hooks()


vclock.on_advance(_pace_advance)
