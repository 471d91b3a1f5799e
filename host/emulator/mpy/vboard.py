# The emulated board: which device models sit on which bus, what the outside world does
# to the board (button presses, USB power, bus faults), and what the board measures about
# itself (motor-on time, resets).  `machine.py` asks this module; the runner describes a
# board in a JSON "board file" that `load()` reads.
#
# Runs on MicroPython (inside the firmware's process) and on CPython (tests).
import json
import math

import vclock

_i2c = {}  # bus id -> {addr: model}
_i2c_faults = []  # [bus, addr (-1: any), start_us, end_us, errno]
_pin_events = []  # [t_us, pin, level], sorted by time
_pin_levels = {}  # pin -> level driven from outside (button, USB sense)
_pin_irqs = {}  # pin -> Pin object with a handler
_adc_mv = {}  # pin -> function(now_us) -> millivolts at the pin

# What the board measured about itself.
stats = {
    "motor_on_us": 0,
    "resets": [],
    "i2c_transactions": 0,
    "i2c_errors": 0,
    # Radio-on intervals on the virtual clock, [start_us, end_us] (end -1: still open), per
    # kind: "active" (BLE().active(True)), "advertising", "connected" (a central on the link).
    "radio": {"active": [], "advertising": [], "connected": []},
    # What of the totals accrued on USB power (the rest was drawn from the battery).
    "usb": {"us": 0, "awake_us": 0, "sleep_us": 0, "motor_on_us": 0, "radio_us": 0},
}
# Reset cause of the current boot, as machine.reset_cause() reports it (1: power-on).
state = {"reset_cause": 1, "flash_dir": None, "spec": {}, "ext0": None}


class Reset(BaseException):
    """The board resets (machine.reset(), watchdog, brown-out); the launcher reboots it."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


def reset_all():
    _i2c.clear()
    del _i2c_faults[:]
    del _pin_events[:]
    _pin_levels.clear()
    _pin_irqs.clear()
    _adc_mv.clear()
    del _stalls[:]
    del _motor[:]
    stats["motor_on_us"] = 0
    stats["resets"] = []
    stats["i2c_transactions"] = 0
    stats["i2c_errors"] = 0
    stats["radio"] = {"active": [], "advertising": [], "connected": []}
    stats["usb"] = {"us": 0, "awake_us": 0, "sleep_us": 0, "motor_on_us": 0, "radio_us": 0}
    state["ext0"] = None
    del _usb_edges[:]
    del _usb_since[:]
    state["reset_cause"] = 1


# ---- I2C ------------------------------------------------------------------------------


def attach_i2c(bus_id, addr, model):
    """Put a device model (i2c_read/i2c_write) on bus ``bus_id`` at ``addr``."""
    if bus_id not in _i2c:
        _i2c[bus_id] = {}
    _i2c[bus_id][addr] = model


def detach_i2c(bus_id, addr):
    if bus_id in _i2c and addr in _i2c[bus_id]:
        del _i2c[bus_id][addr]


def i2c_devices(bus_id):
    return _i2c.get(bus_id, {})


def add_i2c_fault(bus_id, addr, start_s, end_s, errno_code=116):
    """Make transactions to ``addr`` (-1: any) fail with OSError(errno_code) in [start, end)."""
    _i2c_faults.append([bus_id, addr, int(start_s * 1000000), int(end_s * 1000000), errno_code])


def i2c_fault(bus_id, addr):
    """The errno a transaction now would fail with, or 0."""
    now = vclock.now_us()
    for f in _i2c_faults:
        if f[0] == bus_id and (f[1] < 0 or f[1] == addr) and f[2] <= now < f[3]:
            return f[4]
    return 0


# ---- Pins driven from outside ------------------------------------------------------------


def drive_pin(t_s, pin, level):
    """Schedule the outside world setting ``pin`` to ``level`` at ``t_s``."""
    _pin_events.append([int(t_s * 1000000), pin, level])
    _pin_events.sort(key=lambda e: e[0])


def press_button(pin, at_s, hold_s, active_level=0):
    drive_pin(at_s, pin, active_level)
    drive_pin(at_s + hold_s, pin, 1 - active_level)


def pin_level(pin, default):
    return _pin_levels.get(pin, default)


def register_irq(pin, pin_obj):
    _pin_irqs[pin] = pin_obj


def next_pin_event_us():
    """Virtual time of the next outside pin change (-1: none)."""
    return _pin_events[0][0] if _pin_events else -1


def next_wake_us():
    """Virtual time the EXT0 wake source (esp32.wake_on_ext0) next reaches its level (-1: never)."""
    ext0 = state["ext0"]
    if ext0 is None:
        return -1
    pin, level = ext0
    if _pin_levels.get(pin, 1 - level) == level:
        return vclock.now_us()  # already at the level: the chip does not stay asleep
    for t_us, p, lv in _pin_events:
        if p == pin and lv == level:
            return t_us
    return -1


def _fire_pin_events(now_us):
    while _pin_events and _pin_events[0][0] <= now_us:
        t_us, pin, level = _pin_events.pop(0)
        old = _pin_levels.get(pin, 1 - level)
        _pin_levels[pin] = level
        obj = _pin_irqs.get(pin)
        if obj is not None and old != level:
            obj._edge(old, level)


vclock.on_advance(_fire_pin_events)
vclock.add_deadline(next_pin_event_us)


# ---- Radio accounting --------------------------------------------------------------------


def radio_interval_start(kind, now_us):
    spans = stats["radio"][kind]
    if not spans or spans[-1][1] >= 0:
        spans.append([now_us, -1])


def radio_interval_end(kind, now_us):
    spans = stats["radio"][kind]
    if spans and spans[-1][1] < 0:
        spans[-1][1] = now_us


def radio_us(kind, now_us=None):
    """Total virtual time the radio spent in ``kind`` (open intervals count up to now)."""
    if now_us is None:
        now_us = vclock.now_us()
    total = 0
    for start, end in stats["radio"][kind]:
        total += (now_us if end < 0 else end) - start
    return total


# ---- Supply: battery or USB ----------------------------------------------------------------
#
# The energy model charges the battery only for what the board spent off USB.  At every USB
# edge (a deadline, so the clock stops exactly there) the board's running totals are noted;
# what accrued while USB was present is summed into stats["usb"].

_usb_edges = []  # [t_us, present], in time order
_usb_since = []  # the totals when USB power came on ([] while on battery)


def _supply_totals():
    awake_us, sleep_us = vclock.accounting()
    return [vclock.now_us(), awake_us, sleep_us, stats["motor_on_us"], radio_us("active")]


def _book_usb():
    if _usb_since:
        now = _supply_totals()
        usb = stats["usb"]
        for i, key in enumerate(("us", "awake_us", "sleep_us", "motor_on_us", "radio_us")):
            usb[key] += now[i] - _usb_since[i]
        del _usb_since[:]


def _supply_edges(now_us):
    while _usb_edges and _usb_edges[0][0] <= now_us:
        _t, present = _usb_edges.pop(0)
        if present and not _usb_since:
            _usb_since[:] = _supply_totals()
        elif not present:
            _book_usb()


def set_usb_power(intervals_us):
    """USB power present over these [start_us, end_us) intervals of the virtual clock."""
    del _usb_edges[:]
    for a, b in intervals_us:
        _usb_edges.append([a, True])
        _usb_edges.append([b, False])
    _usb_edges.sort(key=lambda e: e[0])


def supply_report():
    """stats["usb"] with an interval still open at this moment included."""
    if _usb_since:
        _book_usb()
        _usb_since[:] = _supply_totals()
    return stats["usb"]


vclock.on_advance(_supply_edges)
vclock.add_deadline(lambda: _usb_edges[0][0] if _usb_edges else -1)


# ---- Analogue inputs ---------------------------------------------------------------------


def set_adc_source(pin, fn):
    """``fn(now_us) -> millivolts`` at the ADC pin."""
    _adc_mv[pin] = fn


def adc_mv(pin):
    fn = _adc_mv.get(pin)
    return fn(vclock.now_us()) if fn else 0


# ---- The vibration motor shaking the IMUs -----------------------------------------------------
#
# A coin ERM motor spins at ~170 Hz and shakes the enclosure, and the IMUs with it.  The
# LSM6DS's own low-pass filter removes most of it, but what remains aliases into the samples:
# modelled as ACC_G (g) and GYRO_DPS (deg/s) of a 170 Hz sine per unit duty, sampled at the
# IMU's sample instants.  (An assumption of this emulator, not a measurement: enough to make
# motor-induced disturbance visible to the firmware, as on real devices.)

MOTOR_HZ = 170.0
MOTOR_ACC_G = 0.08
MOTOR_GYRO_DPS = 1.5
_motor = []  # [t_us, duty_u16] changes, in time order


def motor_changed(t_us, duty_u16):
    _motor.append([t_us, duty_u16])


def motor_duty_at(t_us):
    """Motor PWM duty (0..1) at ``t_us``."""
    # The IMU asks about recent instants: search from the newest change back.
    i = len(_motor) - 1
    while i >= 0 and _motor[i][0] > t_us:
        i -= 1
    return _motor[i][1] / 65535 if i >= 0 else 0


class MotorShake:
    """A stimulus source with the motor's vibration added while the motor runs."""

    def __init__(self, source):
        self.source = source
        self.rate_hz = source.rate_hz
        self.duration_s = source.duration_s

    def sample_at(self, t_s, out):
        more = self.source.sample_at(t_s, out)
        if _motor:
            duty = motor_duty_at(int(t_s * 1000000))
            if duty:
                w = math.sin(2 * math.pi * MOTOR_HZ * t_s) * duty
                out[1] += MOTOR_ACC_G * w
                out[2] += MOTOR_ACC_G * w
                out[3] += MOTOR_GYRO_DPS * w
        return more

    def quiet_us(self, t0_us, t1_us):
        """True when the motor is off from t0_us to t1_us: the stimulus alone reaches the IMU
        (the IMU model then makes those samples in a batch straight from the stimulus file)."""
        i = len(_motor) - 1
        while i >= 0 and _motor[i][0] > t1_us:
            i -= 1
        while i >= 0:
            if _motor[i][1]:
                return False
            if _motor[i][0] <= t0_us:
                return True
            i -= 1
        return True


# ---- Other devices and CPU stalls ----------------------------------------------------------


class RegisterFile:
    """A plain I2C register device: another chip answering at an address (a wrong part
    fitted, a different sensor family); reads return what was written or preset."""

    def __init__(self, registers=None):
        self.regs = bytearray(256)
        for reg, value in (registers or {}).items():
            self.regs[int(reg)] = value

    def i2c_read(self, reg, nbytes):
        return bytes(self.regs[(reg + i) & 0xFF] for i in range(nbytes))

    def i2c_write(self, reg, data):
        for i in range(len(data)):
            self.regs[(reg + i) & 0xFF] = data[i]


_stalls = []  # [at_us, for_us]


def add_cpu_stall(at_s, for_s):
    """At ``at_s`` the CPU hangs for ``for_s`` (a long flash erase, a stuck driver)."""
    _stalls.append([int(at_s * 1000000), int(for_s * 1000000)])
    _stalls.sort(key=lambda x: x[0])


def _run_stalls(now_us):
    while _stalls and _stalls[0][0] <= now_us:
        _at, dur = _stalls.pop(0)
        vclock.advance_us(dur)


vclock.on_advance(_run_stalls)
vclock.add_deadline(lambda: _stalls[0][0] if _stalls else -1)


# ---- Board files -------------------------------------------------------------------------


def _battery_fn(spec, usb):
    # A LiPo cell falling linearly from full_mv to empty_mv over the run, seen through the
    # board's divider; while USB power is present the charger holds it near full.
    full_mv = spec.get("full_mv", 4150)
    empty_mv = spec.get("empty_mv", 3950)
    hours = spec.get("hours_to_empty", 60.0)
    divider = spec.get("divider", 2.0)

    def fn(now_us):
        for a, b in usb:
            if a <= now_us < b:
                return int(4180 / divider)
        frac = now_us / (hours * 3600e6)
        if frac > 1:
            frac = 1
        return int((full_mv - (full_mv - empty_mv) * frac) / divider)

    return fn


def load(path):
    """Build the board described by the JSON board file at ``path``."""
    import lsm6ds_model
    import stimulus

    with open(path) as f:
        spec = json.load(f)
    state["spec"] = spec
    state["flash_dir"] = spec.get("flash_dir")
    if spec.get("start_time_2000") is not None:
        vclock.set_rtc_s(spec["start_time_2000"])
    for s in spec.get("sensors", ()):
        src = MotorShake(stimulus.StimulusSource(s["stimulus"]))
        model = lsm6ds_model.LSM6DSModel(
            s.get("variant", "LSM6DSO"), src, seed=s.get("seed", 0), noise=s.get("noise", True)
        )
        attach_i2c(s.get("bus", 0), s.get("addr", 0x6A), model)
    for d in spec.get("other_devices", ()):
        attach_i2c(d.get("bus", 0), d["addr"], RegisterFile(d.get("registers")))
    for st in spec.get("cpu_stalls", ()):
        add_cpu_stall(st["at_s"], st["for_s"])
    for f in spec.get("i2c_faults", ()):
        add_i2c_fault(f.get("bus", 0), f.get("addr", -1), f["start_s"], f["end_s"], f.get("errno", 116))
    for b in spec.get("buttons", ()):
        for at_s, hold_s in b.get("presses", ()):
            press_button(b["pin"], at_s, hold_s, b.get("active_level", 0))
    usb = [(int(a * 1e6), int(b * 1e6)) for a, b in spec.get("usb_power", ())]
    set_usb_power(usb)
    pins = spec.get("pins", {})
    if "usb_sense" in pins:
        for a, b in usb:
            drive_pin(a / 1e6, pins["usb_sense"], 1)
            drive_pin(b / 1e6, pins["usb_sense"], 0)
    if "battery_adc" in pins:
        set_adc_source(pins["battery_adc"], _battery_fn(spec.get("battery", {}), usb))
    if spec.get("power_off_s") is not None:
        vclock.power_off_at_us(int(spec["power_off_s"] * 1000000))
    return spec
