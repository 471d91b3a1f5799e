# posture firmware: wiring only.
#
# Reads the settings, builds the parts, and runs the asyncio tasks:
#   sample     drain the IMU FIFOs every drain_ms, hand each batch to the processing
#              stages, feed the watchdog only while this loop makes progress;
#   housekeep  battery voltage and USB power every 10 minutes (a battery event when it changed);
#   radio      opens the BLE sync window when power.RadioWindow wants it (USB power, a very
#              long button press, a schedule) and closes it after; blesync.py serves the session.
# The processing stages (fusion, posture, activity, alert, summary) are in pipeline.py; they
# start once the upper IMU runs (its sensitivities and ODR are theirs).
import asyncio
import json
import time

import esp32
import machine

import alert
import blesync
import button
import clock
import config
import eventlog
import haptic
import logstore
import pipeline
import power
import protocol
import sampler
import serialtrace

FW_VERSION = (0, 1, 0)


def boot():
    cfg, problems = config.load()
    log = logstore.LogStore("log", max_bytes=cfg["log_max_bytes"], now_s=clock.unix_s)
    events = eventlog.EventLog(log, clock.unix_s)
    events.boot(machine.reset_cause(), FW_VERSION, config.crc(cfg))
    for code, key_idx in problems:
        events.config_problem(code, key_idx, config.crc(cfg))
    return cfg, log, events


class Device:
    """The parts main() wires together; the sample task drives them."""

    def __init__(self, cfg, log, events, imus, tracer, wdt):
        self.cfg = cfg
        self.log = log
        self.events = events
        self.imus = imus
        self.tracer = tracer
        self.wdt = wdt
        self.button = button.Button(cfg["button_pin"], cfg["long_press_ms"], cfg["sync_press_ms"], cfg["double_press_ms"])
        # A press wakes the CPU from light sleep at once (other pins do not).
        esp32.wake_on_ext0(self.button.pin, esp32.WAKEUP_ALL_LOW)
        self.pipeline = None
        self.battery_pct = -1
        self.window = power.RadioWindow(cfg["sync_window_s"], cfg["sync_every_min"], time.ticks_ms())
        self.usb = machine.Pin(cfg["usb_sense_pin"], machine.Pin.IN)
        self.sync = blesync.BleSync(
            cfg["device_id"], blesync.load_key(), log, events, self, FW_VERSION, clock.unix_s, clock.set_unix_s
        )

    def start_pipeline(self):
        running = [s.imu for s in self.imus.sensors if s.running()]
        capacity = len(self.imus.sensors[0].buf) // 12
        stages = pipeline.Pipeline(self.cfg, running, self.log, capacity, clock.unix_s)
        asyncio.create_task(stages.haptic.run())
        self.pipeline = stages
        return stages

    def handle_button(self):
        action = self.button.poll()
        if action < 0:
            return
        self.events.button(action)
        if action == protocol.BUTTON_SYNC:
            self.window.open_for(power.REASON_BUTTON, time.ticks_ms())
        stages = self.pipeline
        if stages is None:
            return
        if action == protocol.BUTTON_LONG:
            stages.calibrate(protocol.CAL_BUTTON, self.button.release_ms)
        elif action == protocol.BUTTON_SHORT:
            stages.snooze()
        elif action == protocol.BUTTON_SYNC or action == protocol.BUTTON_TASK_SWITCH:
            stages.haptic.play(haptic.PATTERNS[0])  # felt: the press was understood

    # ---- what a sync session asks of the device (blesync.BleSync) ----
    def battery_percent(self):
        return self.battery_pct

    def config_crc(self):
        return config.crc(self.cfg)

    def apply_config(self, text):
        """CONFIG_SET: (error, crc of the settings in force).  All or nothing: a document with
        any bad key or value changes nothing."""
        try:
            overrides = json.loads(text)
        except ValueError:
            overrides = None
        problems = []
        if not isinstance(overrides, dict):
            problems.append((config.BAD_JSON, 0))
        else:
            candidate = config.apply(dict(self.cfg), overrides, problems)
        if problems:
            code, key_idx = problems[0]
            self.events.config_problem(code, key_idx, config.crc(self.cfg), protocol.CONFIG_FROM_BLE)
            return protocol.ERR_CONFIG_INVALID, config.crc(self.cfg)
        config.save(candidate)
        self.cfg.update(candidate)
        crc = config.crc(self.cfg)
        self.events.write(protocol.CONFIG, clock.unix_s(), protocol.CONFIG_FROM_BLE, protocol.CONFIG_OK, crc, 0)
        if self.pipeline is not None:
            # Alert settings take effect now; pins, rates and filters at the next boot.
            self.pipeline.alert.settings = alert.AlertSettings.from_config(self.cfg)
        return protocol.OK, crc

    def calibrate(self):
        if self.pipeline is not None:
            self.pipeline.calibrate(protocol.CAL_COMMAND)

    def buzz_test(self):
        if self.pipeline is not None:
            self.pipeline.haptic.play(haptic.PATTERNS[0])

    def reboot(self):
        if self.pipeline is not None:
            self.pipeline.shutdown()
        machine.reset()

    def session_done(self):
        self.window.session_done()

    def may_sleep(self):
        """Light sleep stops the CPU, PWM and BLE: not while the motor plays a pattern, the
        sync window is open, or the button is held."""
        if not self.cfg["light_sleep"] or self.sync.is_open or self.button.held():
            return False
        stages = self.pipeline
        return stages is None or not (stages.haptic.playing() or stages.haptic.active())

    def radio_wanted(self):
        return self.window.wanted(time.ticks_ms(), self.usb.value() == 1, self.sync.conn is not None)


async def sample_task(dev):
    period_ms = dev.cfg["drain_ms"]
    next_ms = time.ticks_ms()
    while True:
        batch_ms = time.ticks_ms()
        n = dev.imus.poll(dev.events)
        if n:
            stages = dev.pipeline
            if stages is None:
                stages = dev.start_pipeline()
            stages.process(dev.imus.sensors, batch_ms)
            if dev.tracer is not None:
                upper = dev.imus.sensors[0]
                dev.tracer.batch(upper.imu, upper.buf, n, stages)
        dev.handle_button()
        dev.wdt.feed()
        next_ms = time.ticks_add(next_ms, period_ms)
        delay = time.ticks_diff(next_ms, time.ticks_ms())
        if delay < 0:
            # We fell behind (a long flash write): start the schedule again from now.
            next_ms = time.ticks_ms()
            delay = 0
        if delay > 0 and dev.may_sleep():
            # Light sleep until the next drain (the IMU's FIFO keeps sampling); a button or USB
            # edge wakes the board early.  Then let the other tasks catch up.
            machine.lightsleep(delay)
            await asyncio.sleep_ms(0)
        else:
            await asyncio.sleep_ms(delay)


async def housekeep_task(dev):
    cfg, events = dev.cfg, dev.events
    battery = machine.ADC(machine.Pin(cfg["battery_adc_pin"]), atten=machine.ADC.ATTN_11DB)
    while True:
        mv = int(battery.read_uv() * cfg["battery_divider"] / 1000)
        events.battery(mv, dev.usb.value())
        dev.battery_pct = eventlog.battery_percent(mv)
        await asyncio.sleep_ms(600000)


def main():
    boot_ms = time.ticks_ms()
    cfg, log, events = boot()
    i2c = machine.I2C(
        cfg["i2c_bus"], scl=machine.Pin(cfg["i2c_scl"]), sda=machine.Pin(cfg["i2c_sda"]), freq=cfg["i2c_freq"]
    )
    imus = sampler.Sampler(i2c, cfg)
    tracer = serialtrace.Trace(cfg["odr_hz"], boot_ms) if cfg["trace"] else None
    wdt = machine.WDT(timeout=cfg["wdt_ms"])
    dev = Device(cfg, log, events, imus, tracer, wdt)
    # No clean-up on the way out: the board stops by power cut or reset, when nothing runs.
    # Every record is flushed as it is written; a deliberate reboot calls
    # pipeline.shutdown() first.
    asyncio.run(run(dev))


async def radio_task(dev):
    """Open the sync window while power.RadioWindow wants it, close it after."""
    asyncio.create_task(dev.sync.run())
    while True:
        wanted = dev.radio_wanted()
        if wanted and not dev.sync.is_open:
            dev.sync.open()
        elif not wanted and dev.sync.is_open:
            dev.sync.close()
        await asyncio.sleep_ms(1000)


async def run(dev):
    asyncio.create_task(housekeep_task(dev))
    asyncio.create_task(radio_task(dev))
    await sample_task(dev)


main()
