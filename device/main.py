# posture firmware: wiring only.
#
# Reads the settings, builds the parts, and runs the asyncio tasks:
#   sample     drain the IMU FIFOs every drain_ms, hand each batch to the processing
#              stages, feed the watchdog only while this loop makes progress;
#   housekeep  battery reading and log upkeep once a minute.
# The processing stages (fusion, posture, activity, alert, summary) plug in at `process`.
import asyncio
import time
import trace

import clock
import config
import eventlog
import logstore
import machine
import sampler

FW_VERSION = (0, 1, 0)


def boot():
    cfg, problems = config.load()
    log = logstore.LogStore("log")
    events = eventlog.EventLog(log, clock.unix_s)
    events.boot(machine.reset_cause(), FW_VERSION, config.crc(cfg))
    for code, key_idx in problems:
        events.config_problem(code, key_idx, config.crc(cfg))
    return cfg, log, events


async def sample_task(cfg, imus, events, tracer, wdt):
    period_ms = cfg["drain_ms"]
    next_ms = time.ticks_ms()
    while True:
        n = imus.poll(events)
        if n and tracer is not None:
            upper = imus.sensors[0]
            tracer.batch(upper.imu, upper.buf, n)
        wdt.feed()
        next_ms = time.ticks_add(next_ms, period_ms)
        delay = time.ticks_diff(next_ms, time.ticks_ms())
        if delay < 0:
            # We fell behind (a long flash write): start the schedule again from now.
            next_ms = time.ticks_ms()
            delay = 0
        await asyncio.sleep_ms(delay)


async def housekeep_task(cfg, events):
    battery = machine.ADC(machine.Pin(cfg["battery_adc_pin"]), atten=machine.ADC.ATTN_11DB)
    usb = machine.Pin(cfg["usb_sense_pin"], machine.Pin.IN)
    while True:
        mv = int(battery.read_uv() * cfg["battery_divider"] / 1000)
        events.battery(mv, usb.value())
        await asyncio.sleep_ms(600000)


def main():
    boot_ms = time.ticks_ms()
    cfg, log, events = boot()
    i2c = machine.I2C(
        cfg["i2c_bus"], scl=machine.Pin(cfg["i2c_scl"]), sda=machine.Pin(cfg["i2c_sda"]), freq=cfg["i2c_freq"]
    )
    imus = sampler.Sampler(i2c, cfg)
    tracer = trace.Trace(cfg["odr_hz"], boot_ms) if cfg["trace"] else None
    wdt = machine.WDT(timeout=cfg["wdt_ms"])
    try:
        asyncio.run(run(cfg, imus, events, tracer, wdt))
    finally:
        log.close()


async def run(cfg, imus, events, tracer, wdt):
    asyncio.create_task(housekeep_task(cfg, events))
    await sample_task(cfg, imus, events, tracer, wdt)


main()
