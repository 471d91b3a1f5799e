# Power-on of the emulated board, inside the real `micropython` process.
#
#   MICROPYPATH=host/emulator/mpy:.frozen POSTURE_BOARD=board.json micropython launch.py
#
# Builds the board from the board file, mounts the board's flash folder as the root
# filesystem (as LittleFS is on an ESP32), and runs /boot.py and /main.py the way the
# ESP32 port does, rebooting after machine.reset() or a watchdog reset, until the board
# file's power-off time.  Messages from the emulator itself go to stderr as "@board ..."
# lines; stdout belongs to the firmware (its USB serial console).
# Everything the emulated hardware needs is imported before the flash is mounted over
# '/', after which only the board's own files are reachable.
import asyncio  # noqa: F401  (frozen; imported early so its modules are resident)
import gc
import json  # noqa: F401
import os
import select  # noqa: F401
import sys
import time  # noqa: F401

import esp32  # noqa: F401
import lsm6ds_model  # noqa: F401
import machine
import stimulus  # noqa: F401
import vboard
import vclock

try:
    import bluetooth  # noqa: F401
except ImportError:
    pass

_PROGRESS_EVERY_US = 60 * 1000000


def _say(*words):
    sys.stderr.write("@board " + " ".join([str(w) for w in words]) + "\n")


_last_progress = [0]


def _progress(now_us):
    if now_us - _last_progress[0] >= _PROGRESS_EVERY_US:
        _last_progress[0] = now_us
        _say("t", now_us // 1000000)


def _radio_off():
    # A reset powers the radio down: connections drop, the GATT table is gone.
    ble_module = sys.modules.get("bluetooth")
    if ble_module is not None and ble_module.BLE._instance is not None:
        ble_module.BLE._instance.active(False)


def _forget_firmware_modules(resident):
    for name in list(sys.modules):
        if name not in resident:
            del sys.modules[name]


def _run_file(name):
    """Run /NAME.py as the ESP32 port runs boot.py and main.py: a module of its own."""
    try:
        os.stat("/" + name + ".py")
    except OSError:
        return False
    # Importing (rather than exec() into a dict) gives the file a real module namespace, the
    # one its functions and class methods see as globals, as on the board.
    __import__(name)
    return True


def main():
    spec = vboard.load(os.getenv("POSTURE_BOARD"))
    flash = spec["flash_dir"]
    vclock.on_advance(_progress)
    resident = set(sys.modules)
    os.mount(os.VfsPosix(flash), "/")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]
    cause = "power_off"
    while True:
        gc.collect()
        # The ROM bootloader's line on the serial console, with the board's own clock.
        print("@boot t_ms=%d cause=%d" % (vclock.now_us() // 1000, vboard.state["reset_cause"]))
        try:
            _run_file("boot")
            if not _run_file("main"):
                _say("no /main.py on the flash: idle at the REPL")
            # main.py returned: the board sits at the REPL, powered, until power-off.
            while True:
                vclock.advance_us(3600 * 1000000)
        except vboard.Reset as r:
            _say("reset", r.cause, "at", vclock.now_us() // 1000)
            vboard.stats["resets"].append([vclock.now_us() // 1000, r.cause])
            vboard.state["reset_cause"] = r.cause
            machine._after_reset()
            _radio_off()
            _forget_firmware_modules(resident)
            continue
        except vclock.PowerOff:
            break
        except Exception as e:  # the firmware crashed: on a board it would sit at the REPL
            sys.print_exception(e)
            cause = "firmware_crashed"
            break
    for bus_id in (0, 1):
        devices = vboard.i2c_devices(bus_id)
        for addr in devices:
            dev = devices[addr]
            source = getattr(dev, "source", None)
            if source is not None and hasattr(dev, "odr_hz"):
                # How the IMU model resampled the stimulus, for the user to know.
                _say("imu", addr, "source_mhz", int(source.rate_hz * 1000), "odr_mhz", int(dev.odr_hz() * 1000))
    awake_us, sleep_us = vclock.accounting()
    usb = vboard.supply_report()
    _say(
        "end",
        cause,
        "t_ms",
        vclock.now_us() // 1000,
        "awake_ms",
        awake_us // 1000,
        "sleep_ms",
        sleep_us // 1000,
        "motor_ms",
        vboard.stats["motor_on_us"] // 1000,
        "resets",
        len(vboard.stats["resets"]),
        "i2c_errors",
        vboard.stats["i2c_errors"],
        "radio_ms",
        vboard.radio_us("active") // 1000,
        "radio_adv_ms",
        vboard.radio_us("advertising") // 1000,
        "radio_conn_ms",
        vboard.radio_us("connected") // 1000,
        "usb_ms",
        usb["us"] // 1000,
        "usb_awake_ms",
        usb["awake_us"] // 1000,
        "usb_sleep_ms",
        usb["sleep_us"] // 1000,
        "usb_motor_ms",
        usb["motor_on_us"] // 1000,
        "usb_radio_ms",
        usb["radio_us"] // 1000,
    )
    if cause != "power_off":
        sys.exit(3)


main()
