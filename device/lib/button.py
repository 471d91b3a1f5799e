# The wearer's one button: a short press snoozes the alert, a long press (hold still,
# upright) calibrates the neutral posture.
#
# The pin IRQ only timestamps edges (IRQ handlers must not allocate much or block); the
# sample loop asks `poll()` each drain what the wearer did.
import time

from micropython import const

import protocol

_DEBOUNCE_MS = const(30)


class Button:
    def __init__(self, pin_no, long_ms=2000):
        import machine

        self.long_ms = long_ms
        self._pin = machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
        self._down = False
        self._down_ms = 0
        self._action = -1
        self.release_ms = 0  # ticks_ms of the last release (when the press completed)
        self._pin.irq(self._edge, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _edge(self, pin):
        now = time.ticks_ms()
        if pin.value() == 0:  # pressed (active low)
            self._down = True
            self._down_ms = now
        elif self._down:
            self._down = False
            held = time.ticks_diff(now, self._down_ms)
            self.release_ms = now
            if held >= self.long_ms:
                self._action = protocol.BUTTON_LONG
            elif held >= _DEBOUNCE_MS:
                self._action = protocol.BUTTON_SHORT

    def held(self):
        """True while the button is down (a press in progress)."""
        return self._down

    def poll(self):
        """The press completed since the last call (protocol.BUTTON_*), or -1."""
        action = self._action
        self._action = -1
        return action
