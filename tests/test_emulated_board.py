"""The emulated board behaves like the ESP32 port where the firmware can tell."""

from both import run_both


def test_an_emulated_hour_of_asyncio_sleeps_passes_at_once(micropython):
    out = micropython(
        """
import asyncio, time, utime, vclock
async def tick(n):
    for _ in range(n):
        await asyncio.sleep_ms(500)
t0 = time.ticks_ms()
r0 = utime.ticks_ms()
asyncio.run(tick(7200))
print(time.ticks_diff(time.ticks_ms(), t0), utime.ticks_diff(utime.ticks_ms(), r0) < 5000)
"""
    )
    assert out.split() == ["3600000", "True"]


def test_lightsleep_ends_early_only_at_the_configured_wake_source(tmp_path):
    out = run_both(
        """
import esp32, vboard, machine, vclock
presses = []
button = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)
button.irq(lambda p: presses.append(vclock.now_us() // 1000), machine.Pin.IRQ_FALLING)
vboard.press_button(0, 2.5, 1.0)
vboard.press_button(0, 20.0, 1.0)
machine.lightsleep(10000)  # no wake source: the press does not wake the chip
print(vclock.now_us() // 1000, button.value())
esp32.wake_on_ext0(button, esp32.WAKEUP_ALL_LOW)
machine.lightsleep(30000)  # the button is a wake source now
print(vclock.now_us() // 1000, presses, button.value())
machine.lightsleep(5000)  # still held low: the chip does not stay asleep
print(vclock.now_us() // 1000, vclock.accounting()[1] // 1000)
try:
    esp32.wake_on_ext0(machine.Pin(5), esp32.WAKEUP_ALL_LOW)
except ValueError as e:
    print("GPIO5:", e)
""",
        tmp_path,
    )
    assert out.splitlines() == ["10000 1", "20000 [2500, 20000] 0", "20000 20000", "GPIO5: invalid pin"]


def test_a_missed_watchdog_feed_resets_the_board(tmp_path):
    out = run_both(
        """
import vboard, machine, time, vclock
wdt = machine.WDT(timeout=1000)
try:
    time.sleep_ms(900); wdt.feed(); time.sleep_ms(900); wdt.feed(); time.sleep_ms(1500)
    print("no reset")
except vboard.Reset as r:
    print("reset", r.cause == machine.WDT_RESET, vclock.now_us() // 1000)
""",
        tmp_path,
    )
    assert out.strip() == "reset True 2800"  # fed at 1.8 s, 1 s timeout


def test_i2c_to_an_empty_address_raises_enodev_like_the_esp32(tmp_path):
    out = run_both(
        """
import vboard, machine
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
vboard.attach_i2c(0, 0x6A, vboard.RegisterFile({0x0F: 0x6C}))
print(i2c.scan(), i2c.readfrom_mem(0x6A, 0x0F, 1))
try:
    i2c.readfrom_mem(0x6B, 0x0F, 1)
except OSError as e:
    print("OSError", e.args[0])
vboard.add_i2c_fault(0, 0x6A, 0, 10, 116)
try:
    i2c.readfrom_mem(0x6A, 0x0F, 1)
except OSError as e:
    print("OSError", e.args[0])
""",
        tmp_path,
    )
    assert out.splitlines() == ["[106] b'l'", "OSError 19", "OSError 116"]
