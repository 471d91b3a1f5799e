# Device settings: defaults in firmware, overrides in config.json on flash.
#
# A settings file can be damaged (power cut while writing, a bad hand edit, a bad value
# pushed from the companion).  Loading never fails: a file that is not JSON gives the
# defaults; a key with a wrong type or out-of-range value keeps its default; each problem
# is reported so that main.py can log a CONFIG event.  The board always boots.
import json

import protocol

PATH = "config.json"

# Problem codes are the CONFIG event's `result` codes.
OK = protocol.CONFIG_OK
BAD_JSON = protocol.CONFIG_BAD_JSON
INVALID_VALUE = protocol.CONFIG_INVALID_VALUE
MISSING_FILE = protocol.CONFIG_MISSING_FILE
UNKNOWN_KEY = protocol.CONFIG_UNKNOWN_KEY

# name: (default, minimum, maximum) for numbers; (default, None, None) for others.
# Order matters: a key's position is the key index the CONFIG event reports.
SCHEMA = (
    ("device_id", "posture", None, None),
    ("i2c_bus", 0, 0, 1),
    ("i2c_scl", 22, 0, 48),
    ("i2c_sda", 21, 0, 48),
    ("i2c_freq", 400000, 100000, 1000000),
    ("imu_addrs", [0x6A], None, None),
    ("odr_hz", 52, 26, 104),
    ("accel_fs_g", 8, 2, 16),
    ("gyro_fs_dps", 1000, 125, 2000),
    ("drain_ms", 500, 100, 2000),
    ("motor_pin", 25, 0, 48),
    ("button_pin", 0, 0, 48),
    ("battery_adc_pin", 35, 0, 48),
    ("usb_sense_pin", 34, 0, 48),
    ("battery_divider", 2.0, 1.0, 4.0),
    ("wdt_ms", 10000, 2000, 60000),
    ("retry_max_s", 300, 10, 3600),
    ("trace", False, None, None),
    # posture and calibration
    ("calibration_s", 3, 1, 10),
    ("auto_calibrate", True, None, None),
    ("auto_walk_s", 60, 20, 600),
    ("auto_walk_bout_s", 10, 3, 60),
    ("auto_walk_lean_deg", 6, 0, 15),
    ("long_press_ms", 2000, 500, 10000),
    # activity
    ("not_worn_s", 20, 10, 3600),
    ("lying_deg", 60, 45, 80),
    ("moving_gyro_dps", 15, 5, 60),
    ("walk_accel_mg", 40, 10, 200),
    # alert
    ("alert_enabled", True, None, None),
    ("alert_threshold_deg", 20, 5, 60),
    ("alert_hold_s", 30, 5, 600),
    ("alert_release_deg", 5, 0, 15),
    ("alert_cooldown_s", 300, 0, 3600),
    ("alert_snooze_s", 1800, 60, 14400),
    ("alert_escalate_s", 15, 5, 300),
    ("alert_max_level", 2, 0, 2),
    ("alert_timeout_s", 120, 10, 3600),
    ("alert_daily_cap", 20, 0, 500),
    ("quiet_start_min", 0, 0, 1439),
    ("quiet_end_min", 0, 0, 1439),
    ("tz_offset_min", 0, -720, 840),
    ("haptic_duty_pct", 80, 10, 100),
    # log store: flash the record log may use before it drops the oldest segments
    ("log_max_bytes", 262144, 16384, 4194304),
    # light sleep between FIFO drains (off only to measure what it saves)
    ("light_sleep", True, None, None),
    # button gestures and sync windows (power.py)
    ("sync_press_ms", 6000, 3000, 20000),
    ("double_press_ms", 400, 150, 1000),
    ("sync_window_s", 120, 30, 1800),
    ("sync_every_min", 0, 0, 1440),
)

_VALID_ODR = (26, 52, 104)
_VALID_ACCEL_FS = (2, 4, 8, 16)
_VALID_GYRO_FS = (125, 250, 500, 1000, 2000)


def defaults():
    d = {}
    for key, default, _lo, _hi in SCHEMA:
        d[key] = list(default) if isinstance(default, list) else default
    return d


def key_index(key):
    for i, row in enumerate(SCHEMA):
        if row[0] == key:
            return i + 1
    return 0


def _valid(key, default, lo, hi, value):
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str) and 0 < len(value) <= 32
    if isinstance(default, list):
        if not isinstance(value, list) or not 1 <= len(value) <= 2:
            return False
        for a in value:
            if not isinstance(a, int) or a not in (0x6A, 0x6B):
                return False
        return True
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
    elif not isinstance(value, int) or isinstance(value, bool):
        return False
    if not lo <= value <= hi:
        return False
    if key == "odr_hz":
        return value in _VALID_ODR
    if key == "accel_fs_g":
        return value in _VALID_ACCEL_FS
    if key == "gyro_fs_dps":
        return value in _VALID_GYRO_FS
    return True


def apply(cfg, overrides, problems):
    """Merge ``overrides`` (a dict) into ``cfg``, appending (code, key_index) to problems."""
    for key in overrides:
        value = overrides[key]
        idx = key_index(key)
        if not idx:
            problems.append((UNKNOWN_KEY, 0))
            continue
        _k, default, lo, hi = SCHEMA[idx - 1]
        if _valid(key, default, lo, hi, value):
            cfg[key] = float(value) if isinstance(default, float) else value
        else:
            problems.append((INVALID_VALUE, idx))
    return cfg


def load(path=PATH):
    """(settings dict, problems list of (code, key_index)); never raises for a bad file."""
    cfg = defaults()
    problems = []
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        problems.append((MISSING_FILE, 0))
        return cfg, problems
    try:
        overrides = json.loads(text)
    except ValueError:
        problems.append((BAD_JSON, 0))
        return cfg, problems
    if not isinstance(overrides, dict):
        problems.append((BAD_JSON, 0))
        return cfg, problems
    return apply(cfg, overrides, problems), problems


def save(cfg, path=PATH):
    """Write only what differs from the defaults, atomically (write then rename)."""
    d = defaults()
    out = {}
    for key in cfg:
        if key in d and cfg[key] != d[key]:
            out[key] = cfg[key]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(out))
    import os

    os.rename(tmp, path)


def crc(cfg):
    """CRC-32 of the settings in force, so the host can tell which settings a record used."""
    parts = []
    for row in SCHEMA:
        parts.append(repr(cfg[row[0]]))
    return protocol.crc32(",".join(parts).encode())
