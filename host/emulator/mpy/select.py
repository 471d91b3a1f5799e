# MicroPython's ``select`` for the emulated board: waiting advances the virtual clock.
#
# asyncio waits for its next deadline in ``poll().ipoll(timeout_ms)``.  Here the wait
# first asks the real poller about real streams (the emulated radio's socket, a
# ThreadSafeFlag) without blocking; if nothing is ready, the virtual clock moves on by the
# timeout instead of the process sleeping.  Waiting in asyncio is the CPU idling awake.
import uselect
import vclock

POLLIN = uselect.POLLIN
POLLOUT = uselect.POLLOUT
POLLERR = uselect.POLLERR
POLLHUP = uselect.POLLHUP

# How long to block for real when only a real stream can wake the loop (radio traffic
# from a peer running in real time).
_REAL_WAIT_MS = 1000


class _Poll:
    def __init__(self):
        self._real = uselect.poll()
        self._registered = 0

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._real.register(obj, eventmask)
        self._registered += 1

    def modify(self, obj, eventmask):
        self._real.modify(obj, eventmask)

    def unregister(self, obj):
        self._real.unregister(obj)
        self._registered -= 1

    def ipoll(self, timeout=-1, flags=0):
        if self._registered:
            ready = self._real.poll(0)
            if ready:
                return iter(ready)
            if timeout < 0:
                # Nothing timed is pending: only the outside world can wake us.
                return iter(self._real.poll(_REAL_WAIT_MS))
        if timeout > 0:
            vclock.advance_us(timeout * 1000)
        return iter(())

    def poll(self, timeout=-1):
        return list(self.ipoll(timeout))


def poll():
    return _Poll()
