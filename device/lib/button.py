# The wearer's one button.  Gestures (protocol.BUTTON_*):
#   short press        snooze the alert
#   double press       task switch (the wearer moved to another task: task-rotation segments)
#   long press (2 s)   calibrate the neutral posture (hold still, upright)
#   very long (6 s)    open the BLE sync window (a sync away from the charger)
#
# The pin IRQ only timestamps edges (IRQ handlers must not allocate much or block); the
# sample loop asks `poll()` each drain what the wearer did.  A short press is reported only
# once the double-press gap has passed without a second one, so a double press never snoozes.
import time

from micropython import const

import protocol

_DEBOUNCE_MS = const(30)


class Button:
    def __init__(self, pin_no, long_ms=2000, sync_ms=6000, double_ms=400):
        import machine

        self.long_ms = long_ms
        self.sync_ms = sync_ms
        self.double_ms = double_ms
        self.pin = machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
        self._down = False
        self._down_ms = 0
        self._action = -1
        self._short_pending = False  # a short press waiting to see whether a second follows
        self.release_ms = 0  # ticks_ms of the last release (when the press completed)
        self.pin.irq(self._edge, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _edge(self, pin):
        now = time.ticks_ms()
        if pin.value() == 0:  # pressed (active low)
            self._down = True
            self._down_ms = now
        elif self._down:
            self._down = False
            held = time.ticks_diff(now, self._down_ms)
            if held >= self.sync_ms:
                self._action = protocol.BUTTON_SYNC
            elif held >= self.long_ms:
                self._action = protocol.BUTTON_LONG
            elif held >= _DEBOUNCE_MS:
                if self._short_pending and time.ticks_diff(now, self.release_ms) <= self.double_ms:
                    self._short_pending = False
                    self._action = protocol.BUTTON_TASK_SWITCH
                else:
                    self._short_pending = True
            else:
                return  # contact bounce: not a press
            self.release_ms = now

    def held(self):
        """True while the button is down (a press in progress)."""
        return self._down

    def poll(self):
        """The gesture completed since the last call (protocol.BUTTON_*), or -1."""
        action = self._action
        if action >= 0:
            self._action = -1
            return action
        if self._short_pending and not self._down:
            if time.ticks_diff(time.ticks_ms(), self.release_ms) > self.double_ms:
                self._short_pending = False
                return protocol.BUTTON_SHORT
        return -1
