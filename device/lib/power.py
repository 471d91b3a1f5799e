# When the BLE radio may be on: the sync windows (DESIGN §3 Power).
#
# An ESP32 with its radio on draws ~100 mA, light-sleeping ~1 mA, and MicroPython's light
# sleep drops BLE links: so the radio is off unless a window is open.  Windows open
#   - while the board sees USB power (on the charger at the end of the day), until the host
#     has taken the whole log (then not again until the board has been off USB);
#   - after the wearer's very long button press, for sync_window_s;
#   - every sync_every_min minutes (0: never), for sync_window_s.
# A timed window stays open past its time while a host is connected (a session in progress),
# but never beyond four times its length; it closes as soon as a session takes the whole log.
import time

from micropython import const

REASON_USB = const(1)
REASON_BUTTON = const(2)
REASON_SCHEDULE = const(4)
_CAP_WINDOWS = const(4)


class RadioWindow:
    def __init__(self, window_s, every_min, now_ms):
        self.window_ms = window_s * 1000
        self.every_ms = every_min * 60000
        self._next_ms = time.ticks_add(now_ms, self.every_ms)
        self._until_ms = now_ms
        self._cap_ms = now_ms
        self.timed = 0  # REASON_BUTTON / REASON_SCHEDULE bits of the open timed window
        self.usb_done = False  # the host took everything while on USB
        self.opened = 0  # timed windows opened since boot

    def open_for(self, reason, now_ms):
        """Open (or extend) a timed window from now."""
        if not self.timed:
            self.opened += 1
            self._cap_ms = time.ticks_add(now_ms, _CAP_WINDOWS * self.window_ms)
        self.timed |= reason
        self._until_ms = time.ticks_add(now_ms, self.window_ms)

    def session_done(self):
        """The host has the whole log: every window closes."""
        self.usb_done = True
        self.timed = 0

    def wanted(self, now_ms, usb, connected):
        """Whether the radio should be on now; call about once a second."""
        if not usb:
            self.usb_done = False  # the next time on the charger syncs again
        if self.every_ms and time.ticks_diff(now_ms, self._next_ms) >= 0:
            self._next_ms = time.ticks_add(now_ms, self.every_ms)
            self.open_for(REASON_SCHEDULE, now_ms)
        if self.timed:
            over = time.ticks_diff(now_ms, self._until_ms) >= 0
            capped = time.ticks_diff(now_ms, self._cap_ms) >= 0
            if capped or (over and not connected):
                self.timed = 0
        return (usb and not self.usb_done) or self.timed != 0
