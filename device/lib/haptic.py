# Vibration patterns on the coin motor: PWM on the motor pin through a transistor.
#
# A pattern is a tuple of steps (on_ms, off_ms, duty_pct): the motor runs at duty_pct of the
# configured maximum for on_ms, then rests for off_ms.  Playing never blocks: `play()` starts
# the first step and returns; `tick()` moves to the next step when its time has come and says
# how long until the next change.  Drive it either from the asyncio task `run()` (which
# sleeps exactly until the next change) or by calling `tick()` from any loop.
#
# The vibration shakes the accelerometer.  `active()` / `on_since(t_ms)` tell the sensing
# code when the motor ran (plus `settle_ms` for the rotor to spin down), so activity can keep
# its previous class and the fusion filter can rely on the gyro alone for those samples.
import time

from micropython import const

# Escalation levels of a posture alert: a gentle double tap, three firmer pulses, three long
# strong pulses.
PATTERNS = (
    ((120, 120, 60), (120, 0, 60)),
    ((250, 150, 80), (250, 150, 80), (250, 0, 80)),
    ((500, 200, 100), (500, 200, 100), (500, 0, 100)),
)
TEST_PATTERN = ((300, 0, 100),)

_SETTLE_MS = const(150)


class Haptic:
    """The vibration motor.

    motor_pin   GPIO number of the motor driver (config "motor_pin")
    duty_pct    the strongest vibration, % PWM duty (config "haptic_duty_pct"); the steps'
                duty_pct scale it
    freq_hz     PWM frequency; 1 kHz drives a coin motor smoothly through a transistor
    """

    def __init__(self, motor_pin, duty_pct=80, freq_hz=1000, settle_ms=_SETTLE_MS):
        import machine

        self.duty_pct = duty_pct
        self.settle_ms = settle_ms
        self._pwm = machine.PWM(machine.Pin(motor_pin, machine.Pin.OUT), freq=freq_hz, duty_u16=0)
        self._pattern = None
        self._step = 0
        self._on = False
        self._next_ms = time.ticks_ms()
        self._off_ms = self._next_ms
        self._wake = None  # asyncio.Event of the run() task
        self.played = 0  # patterns started (for tests and the BUZZ_TEST reply)

    def play(self, pattern):
        """Start `pattern` now (replacing one that is playing)."""
        self._pattern = pattern
        self._step = 0
        self._start_step(time.ticks_ms())
        self.played += 1
        if self._wake is not None:
            self._wake.set()

    def stop(self):
        if self._on:
            self._motor(0)
        self._pattern = None

    def playing(self):
        return self._pattern is not None

    def active(self):
        """True while the motor runs or spins down."""
        return self.on_since(time.ticks_ms())

    def on_since(self, t_ms):
        """True if the motor ran (or was spinning down) at any time from t_ms until now."""
        if self._on:
            return True
        return time.ticks_diff(time.ticks_add(self._off_ms, self.settle_ms), t_ms) > 0

    def tick(self):
        """Advance the pattern; returns ms until the next change, or -1 when idle."""
        pattern = self._pattern
        if pattern is None:
            return -1
        now = time.ticks_ms()
        while True:
            wait = time.ticks_diff(self._next_ms, now)
            if wait > 0:
                return wait
            if self._on:
                self._motor(0)
                off = int(pattern[self._step][1])
                self._next_ms = time.ticks_add(self._next_ms, off)
                if off > 0:
                    continue
            self._step += 1
            if self._step >= len(pattern):
                self._pattern = None
                return -1
            self._start_step(self._next_ms)

    async def run(self):
        """asyncio task: plays whatever `play()` starts, sleeping between changes."""
        import asyncio

        self._wake = asyncio.Event()
        while True:
            wait = self.tick()
            if wait < 0:
                self._wake.clear()
                await self._wake.wait()
            else:
                await asyncio.sleep_ms(wait)

    def _start_step(self, at_ms):
        pattern = self._pattern
        if pattern is None:
            return
        on, _off, duty = pattern[self._step]
        self._next_ms = time.ticks_add(at_ms, on)
        self._motor(duty)

    def _motor(self, duty):
        if duty > 0:
            self._pwm.duty_u16(65535 * duty * self.duty_pct // 10000)
            self._on = True
        else:
            self._pwm.duty_u16(0)
            self._on = False
            self._off_ms = time.ticks_ms()
