# MicroPython's `machine` module for the emulated ESP32 board.
#
# Same names, signatures and error behaviour as the ESP32 port for what the firmware uses:
# Pin (with IRQ), I2C/SoftI2C (register reads and writes reach the device models that
# `board` attached), PWM, ADC, RTC, WDT, lightsleep/deepsleep, reset and reset_cause.
# Time comes from the virtual clock; a light sleep is booked as sleep time and ends early
# only at the wake source the firmware configured (esp32.wake_on_ext0), as on the chip.
#
# Runs on MicroPython and on CPython (tests), so: no f-strings with '=', no typing.
import vboard
import vclock

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

PIN_WAKE = 2
EXT0_WAKE = 2
TIMER_WAKE = 4

_ENODEV = 19
_EINVAL = 22


def reset_cause():
    return vboard.state["reset_cause"]


def wake_reason():
    return 0


def reset():
    raise vboard.Reset(HARD_RESET)


def soft_reset():
    raise vboard.Reset(SOFT_RESET)


def freq(hz=None):
    return 160000000 if hz is None else None


def unique_id():
    dev = vboard.state["spec"].get("device_id", "emulated")
    return bytes(dev.encode())[:6]


def idle():
    # Waits for the next interrupt; the tick interrupt comes within a millisecond.
    vclock.advance_us(1000)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def lightsleep(time_ms=None):
    """Sleep with RAM kept; wakes at the deadline or when the EXT0 wake source
    (esp32.wake_on_ext0) reaches its level.  Other pins do not wake the chip."""
    now = vclock.now_us()
    wake = now + time_ms * 1000 if time_ms is not None else -1
    nxt = vboard.next_wake_us()
    if nxt >= 0 and (wake < 0 or nxt < wake):
        wake = nxt
    if wake < 0:
        raise OSError(_EINVAL)
    vclock.advance_us(wake - now, "sleep")


def deepsleep(time_ms=None):
    lightsleep(time_ms)
    raise vboard.Reset(DEEPSLEEP_RESET)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._mode = mode
        self._pull = pull
        self._out = 0 if value is None else value
        self._handler = None
        self._trigger = 0

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self._out = value

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.OUT:
                return self._out
            default = 1 if self._pull == Pin.PULL_UP else 0
            return vboard.pin_level(self.id, default)
        self._out = 1 if v else 0

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self._out = 1

    def off(self):
        self._out = 0

    def irq(self, handler=None, trigger=3, wake=None, hard=False):
        self._handler = handler
        self._trigger = trigger
        vboard.register_irq(self.id, self)

    def _edge(self, old, new):
        if self._handler is None:
            return
        rising = new > old
        if (rising and self._trigger & Pin.IRQ_RISING) or (not rising and self._trigger & Pin.IRQ_FALLING):
            self._handler(self)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self._bus = id
        self._freq = freq

    def init(self, scl=None, sda=None, freq=400000):
        self._freq = freq

    def deinit(self):
        pass

    def _device(self, addr):
        vboard.stats["i2c_transactions"] += 1
        err = vboard.i2c_fault(self._bus, addr)
        if err:
            vboard.stats["i2c_errors"] += 1
            raise OSError(err)
        dev = vboard.i2c_devices(self._bus).get(addr)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def _wire_time(self, nbytes):
        # Clock stretching aside, a transaction takes ~9 bit times per byte plus addressing.
        vclock.advance_us((nbytes + 3) * 9 * 1000000 // self._freq)

    def scan(self):
        found = []
        for addr in sorted(vboard.i2c_devices(self._bus)):
            if not vboard.i2c_fault(self._bus, addr):
                found.append(addr)
        return found

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        dev = self._device(addr)
        self._wire_time(nbytes)
        return bytes(dev.i2c_read(memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        # The driver's FIFO drains come through here: the wire time is inlined (_wire_time).
        dev = self._device(addr)
        vclock.advance_us((len(buf) + 3) * 9 * 1000000 // self._freq)
        read_into = getattr(dev, "i2c_read_into", None)
        if read_into is not None:
            read_into(memaddr, buf)
        else:
            buf[:] = dev.i2c_read(memaddr, len(buf))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        dev = self._device(addr)
        self._wire_time(len(buf))
        dev.i2c_write(memaddr, bytes(buf))

    # Register-less transfers: the first written byte is the register address, as the
    # LSM6DS family (and busio-style drivers) use them.
    def writeto(self, addr, buf, stop=True):
        dev = self._device(addr)
        self._wire_time(len(buf))
        if len(buf) > 1:
            dev.i2c_write(buf[0], bytes(buf[1:]))
        elif len(buf) == 1:
            self._pending = (addr, buf[0])
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._device(addr)
        self._wire_time(len(buf))
        pending = getattr(self, "_pending", None)
        reg = pending[1] if pending and pending[0] == addr else 0
        buf[:] = dev.i2c_read(reg, len(buf))

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)


SoftI2C = I2C


class PWM:
    def __init__(self, dest, freq=None, duty_u16=None, duty_ns=None, duty=None):
        self._pin = dest.id if hasattr(dest, "id") else dest
        self._freq = freq or 5000
        self._duty = 0
        self._since = vclock.now_us()
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        elif duty is not None:
            self.duty(duty)

    def _book(self):
        now = vclock.now_us()
        if self._duty > 0 and self._pin == vboard.state["spec"].get("pins", {}).get("motor"):
            vboard.stats["motor_on_us"] += (now - self._since) * self._duty // 65535
        self._since = now

    def _set(self, duty):
        self._book()
        self._duty = duty
        if self._pin == vboard.state["spec"].get("pins", {}).get("motor"):
            vboard.motor_changed(vclock.now_us(), duty)

    def init(self, freq=None, duty_u16=None):
        if freq is not None:
            self._freq = freq
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def freq(self, hz=None):
        if hz is None:
            return self._freq
        self._freq = hz

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        if not 0 <= value <= 65535:
            raise ValueError("duty must be 0-65535")
        self._set(value)

    def duty(self, value=None):
        if value is None:
            return self._duty >> 6
        self.duty_u16(value * 65535 // 1023)

    def deinit(self):
        self._set(0)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=3):
        self._pin = pin.id if hasattr(pin, "id") else pin
        self._atten = atten

    def atten(self, a):
        self._atten = a

    def width(self, w):
        pass

    def read_uv(self):
        return vboard.adc_mv(self._pin) * 1000

    def read_u16(self):
        # 11 dB attenuation: about 0-3.1 V full scale.
        v = vboard.adc_mv(self._pin) * 65535 // 3100
        return 65535 if v > 65535 else v

    def read(self):
        return self.read_u16() >> 4


class RTC:
    def __init__(self, id=0):
        pass

    def init(self, datetime_tuple):
        self.datetime(datetime_tuple)

    def datetime(self, dt=None):
        import time

        if dt is None:
            tm = time.gmtime(time.time())
            # (year, month, day, weekday, hours, minutes, seconds, subseconds)
            return (tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], dt[3], 0))
        vclock.set_rtc_s(secs)


_wdt = [None]


class WDT:
    """The watchdog: once started it cannot be stopped; a missed feed resets the board."""

    def __init__(self, id=0, timeout=5000):
        self._timeout_us = timeout * 1000
        self._fed = vclock.now_us()
        _wdt[0] = self

    def feed(self):
        self._fed = vclock.now_us()


def _wdt_check(now_us):
    w = _wdt[0]
    if w is not None and now_us - w._fed > w._timeout_us:
        _wdt[0] = None
        raise vboard.Reset(WDT_RESET)


def _wdt_deadline():
    w = _wdt[0]
    return w._fed + w._timeout_us + 1 if w is not None else -1


vclock.on_advance(_wdt_check)
vclock.add_deadline(_wdt_deadline)


def _after_reset():
    # A reset stops the watchdog (the firmware starts it again) and lets pins float.
    _wdt[0] = None
