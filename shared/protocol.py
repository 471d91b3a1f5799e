# The wire contract between the posture device and its host: record framing, record
# payload layouts, the enumerations they use, and CRC-32.
#
# This one file runs unchanged on MicroPython (the firmware imports it as `protocol`) and on
# CPython (the host companion).  So: no f-strings with '=', no dataclasses, typing, enum or abc
# at runtime, only struct formats MicroPython knows, and `const()` from micropython where it
# exists.  docs/protocol.md describes every byte; keep the two in step.
#
# Record framing (little-endian), CRC-32 (IEEE 802.3, as zlib.crc32) over seq..payload:
#
#     seq:u32 | type:u8 | len:u8 | payload (len bytes) | crc32:u32
#
# Error contract: decoding any byte string either returns records or raises ProtocolError.
# A returned record has passed its CRC, has a known type code and a payload that parses for
# that type.  Encoders check every value's range and raise ProtocolError instead of wrapping.
#
# Versioning: a released payload layout never changes.  A new layout gets a new type code
# (the old code stays decodable), and PROTOCOL_VERSION goes up whenever a type code, a
# framing rule or (later) a GATT characteristic is added.  Reserved bits must be zero, so a
# layout cannot grow silently.
import struct

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


PROTOCOL_VERSION = const(2)  # 2: MINUTE2


class ProtocolError(ValueError):
    """Bytes that are not a valid record, or values a record cannot carry."""


class UnknownRecordType(ProtocolError):
    """A record with a good CRC but a type code this protocol version does not define.

    Raised instead of guessing: the host is older than the device and must be updated."""


# ---- record type codes ------------------------------------------------------------------
# 0 and 255 are never used (zero-filled and erased flash).
MINUTE = const(1)
BOUT = const(2)
ALERT = const(3)
CALIBRATION = const(4)
BUTTON = const(5)
BOOT = const(6)
SENSOR_FAULT = const(7)
BATTERY = const(8)
TIME_SET = const(9)
CONFIG = const(10)
GAP = const(11)
MINUTE2 = const(12)  # the minute summary without the fields the others imply (docs/protocol.md)

RECORD_NAMES = {
    MINUTE: "minute",
    BOUT: "bout",
    ALERT: "alert",
    CALIBRATION: "calibration",
    BUTTON: "button",
    BOOT: "boot",
    SENSOR_FAULT: "sensor_fault",
    BATTERY: "battery",
    TIME_SET: "time_set",
    CONFIG: "config",
    GAP: "gap",
    MINUTE2: "minute2",
}
# Both minute layouts decode to the same fields; the firmware writes MINUTE2.
MINUTE_TYPES = (MINUTE, MINUTE2)
RECORD_CODES = {name: code for code, name in RECORD_NAMES.items()}

# ---- enumerations (index = code on the wire) ----------------------------------------------
# Activity classes, the order of the minute summary's activity seconds.
ACTIVITIES = ("lying", "static", "moving", "walking", "not_worn")
ACTIVITY_LYING = const(0)
ACTIVITY_STATIC = const(1)
ACTIVITY_MOVING = const(2)
ACTIVITY_WALKING = const(3)
ACTIVITY_NOT_WORN = const(4)

# BOOT.reset_cause.  Codes 1..5 equal MicroPython's machine.*_RESET constants, so the
# firmware can log machine.reset_cause() as it is; 0 is what the ESP32 port returns when it
# cannot tell.  (The ESP32 port reports a brownout as PWRON_RESET.)
RESET_CAUSES = ("unknown", "power_on", "hard", "wdt", "deepsleep", "soft", "brownout")
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)
RESET_HARD = const(2)
RESET_WDT = const(3)
RESET_DEEPSLEEP = const(4)
RESET_SOFT = const(5)
RESET_BROWNOUT = const(6)

# SENSOR_FAULT.kind
FAULT_KINDS = ("missing", "whoami_mismatch", "i2c_error", "fifo_overflow", "recovered")
FAULT_MISSING = const(0)
FAULT_WHOAMI_MISMATCH = const(1)
FAULT_I2C_ERROR = const(2)
FAULT_FIFO_OVERFLOW = const(3)
FAULT_RECOVERED = const(4)

# ALERT.outcome
OUTCOMES = ("corrected", "snoozed", "suppressed", "timed_out")
OUTCOME_CORRECTED = const(0)
OUTCOME_SNOOZED = const(1)
OUTCOME_SUPPRESSED = const(2)
OUTCOME_TIMED_OUT = const(3)

# CALIBRATION.method and CALIBRATION.sensor
CALIBRATION_METHODS = ("button", "command", "auto_walk")
CAL_BUTTON = const(0)
CAL_COMMAND = const(1)
CAL_AUTO_WALK = const(2)
SENSORS = ("upper", "lower")
SENSOR_UPPER = const(0)  # between the shoulder blades, I2C 0x6A
SENSOR_LOWER = const(1)  # lower thoracic spine, I2C 0x6B

# BUTTON.action
BUTTON_ACTIONS = ("short", "long", "double", "task_switch", "sync")
BUTTON_SHORT = const(0)
BUTTON_LONG = const(1)
BUTTON_DOUBLE = const(2)  # reserved: the firmware reports a double press by its meaning, task_switch
BUTTON_TASK_SWITCH = const(3)  # the firmware's double press
BUTTON_SYNC = const(4)  # a very long press: open the sync window

# CONFIG.source and CONFIG.result (device/lib/config.py uses the same result codes)
CONFIG_SOURCES = ("file", "defaults_fallback", "ble", "button")
CONFIG_FROM_FILE = const(0)
CONFIG_FROM_DEFAULTS = const(1)
CONFIG_FROM_BLE = const(2)
CONFIG_FROM_BUTTON = const(3)
CONFIG_RESULTS = ("ok", "bad_json", "invalid_value", "missing_file", "unknown_key")
CONFIG_OK = const(0)
CONFIG_BAD_JSON = const(1)
CONFIG_INVALID_VALUE = const(2)
CONFIG_MISSING_FILE = const(3)
CONFIG_UNKNOWN_KEY = const(4)

# ---- histogram bins -----------------------------------------------------------------------
# Flexion and absolute inclination: 20 bins, bin 0 is < 0 deg, bin k (1..18) is
# [5(k-1), 5k) deg, bin 19 is >= 90 deg.  Lateral bend: 5 bins split at these edges
# (< -20, [-20, -10), [-10, 10), [10, 20), >= 20 deg), positive towards the wearer's right.
ANGLE_BINS = const(20)
ANGLE_EDGES_DEG = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90)
LATERAL_BINS = const(5)
LATERAL_EDGES_DEG = (-20, -10, 10, 20)

# A posture bout (BOUT event, MINUTE.longest_bout_s) is a continuous spell with flexion
# above BOUT_THRESHOLD_DEG; a BOUT event is logged when it lasted longer than BOUT_MIN_S.
BOUT_THRESHOLD_DEG = const(20)
BOUT_MIN_S = const(4)

# ALERT.time_to_correct_s on the wire when the posture was never corrected (decodes to None)
NOT_CORRECTED = const(0xFFFF)


def angle_bin(angle_ddeg):
    """Flexion / inclination bin index (0..19) of an angle in tenths of a degree."""
    angle_ddeg = int(angle_ddeg)
    if angle_ddeg < 0:
        return 0
    if angle_ddeg >= 900:
        return 19
    return 1 + angle_ddeg // 50


def lateral_bin(angle_ddeg):
    """Lateral-bend bin index (0..4) of an angle in tenths of a degree."""
    angle_ddeg = int(angle_ddeg)
    if angle_ddeg < -200:
        return 0
    if angle_ddeg < -100:
        return 1
    if angle_ddeg < 100:
        return 2
    if angle_ddeg < 200:
        return 3
    return 4


# ---- CRC-32 -------------------------------------------------------------------------------
_crc_table = None


def _crc32_table_driven(data, crc=0):
    """CRC-32 (IEEE, reflected, poly 0xEDB88320) for builds without binascii.crc32."""
    global _crc_table
    table = _crc_table
    if table is None:
        # Built on first use only: 1 KB the board spends only when binascii lacks crc32.
        from array import array

        table = array("I", bytes(1024))
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            table[i] = c
        _crc_table = table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    from binascii import crc32 as _binascii_crc32

    def crc32(data, crc=0):
        """CRC-32 of `data` (bytes-like), continuing from `crc`; equals zlib.crc32."""
        return _binascii_crc32(data, crc)

except ImportError:  # some ESP32 builds have no binascii.crc32
    crc32 = _crc32_table_driven


# ---- value checks -------------------------------------------------------------------------
_U8 = const(0xFF)
_U16 = const(0xFFFF)
_U32 = 0xFFFFFFFF  # not const(): above the ESP32's small-int range
_MAX_DDEG = const(1800)
_MAX_MG = const(16000)  # the LSM6DS family's largest full scale is 16 g
_MINUTE_S = const(60)


def _int_in(where, value, lo, hi):
    # bool is not an int subclass on MicroPython: accept it on both as 0/1.
    if value is True or value is False:
        value = int(value)
    if not isinstance(value, int):
        raise ProtocolError("%s must be an integer, got %r" % (where, value))
    if value < lo or value > hi:
        raise ProtocolError("%s = %d is outside %d..%d" % (where, value, lo, hi))
    return value


# ---- fixed-layout events ------------------------------------------------------------------
# type -> (struct format, fields); a field is (name, lowest, highest, none_code): values
# outside lowest..highest are refused, and none_code (when not None) is the wire value that
# stands for None ("not measured").  The field order is the wire order.
_TIME = ("time_s", 0, _U32, None)
_START = ("start_s", 0, _U32, None)

_EVENTS = {
    BOUT: (
        "<IHhh",
        (
            _START,
            ("duration_s", 1, _U16, None),
            ("mean_flexion_ddeg", -_MAX_DDEG, _MAX_DDEG, None),
            ("peak_flexion_ddeg", -_MAX_DDEG, _MAX_DDEG, None),
        ),
    ),
    ALERT: (
        "<IHhHBB",
        (
            _START,
            ("duration_s", 0, _U16, None),
            ("peak_flexion_ddeg", -_MAX_DDEG, _MAX_DDEG, None),
            ("time_to_correct_s", 0, NOT_CORRECTED - 1, NOT_CORRECTED),
            ("escalation_level", 0, _U8, None),
            ("outcome", 0, len(OUTCOMES) - 1, None),
        ),
    ),
    CALIBRATION: (
        "<IBBhhhH",
        (
            _TIME,
            ("method", 0, len(CALIBRATION_METHODS) - 1, None),
            ("sensor", 0, len(SENSORS) - 1, None),
            ("neutral_x_mg", -_MAX_MG, _MAX_MG, None),
            ("neutral_y_mg", -_MAX_MG, _MAX_MG, None),
            ("neutral_z_mg", -_MAX_MG, _MAX_MG, None),
            ("spread_ddeg", 0, _MAX_DDEG, None),
        ),
    ),
    BUTTON: (
        "<IBB",
        (
            _TIME,
            ("action", 0, len(BUTTON_ACTIONS) - 1, None),
            ("task_id", 0, _U8, None),
        ),
    ),
    BOOT: (
        "<IBBBBI",
        (
            _TIME,
            ("reset_cause", 0, len(RESET_CAUSES) - 1, None),
            ("fw_major", 0, _U8, None),
            ("fw_minor", 0, _U8, None),
            ("fw_patch", 0, _U8, None),
            ("config_crc", 0, _U32, None),
        ),
    ),
    SENSOR_FAULT: (
        "<IBBHH",
        (
            _TIME,
            ("i2c_addr", 0, 0x7F, None),
            ("kind", 0, len(FAULT_KINDS) - 1, None),
            ("detail", 0, _U16, None),
            ("retry_in_s", 0, _U16, None),
        ),
    ),
    BATTERY: (
        "<IHBB",
        (
            _TIME,
            ("battery_mv", 0, _U16, None),
            ("percent", 0, 100, None),
            ("charging", 0, 1, None),
        ),
    ),
    TIME_SET: (
        "<II",
        (
            ("old_s", 0, _U32, None),
            ("new_s", 0, _U32, None),
        ),
    ),
    CONFIG: (
        "<IBBIB",
        (
            _TIME,
            ("source", 0, len(CONFIG_SOURCES) - 1, None),
            ("result", 0, len(CONFIG_RESULTS) - 1, None),
            ("config_crc", 0, _U32, None),
            ("key_index", 0, _U8, None),
        ),
    ),
    GAP: (
        "<III",
        (
            _TIME,
            ("first_lost_seq", 0, _U32, None),
            ("lost_count", 1, _U32, None),
        ),
    ),
}


def _label(rtype):
    # MINUTE, BOUT, ...: the constant's name, for error messages
    return RECORD_NAMES[rtype].upper()


def field_names(rtype):
    """Names of a record type's fields, in wire order (the order encode_event takes)."""
    if rtype == MINUTE or rtype == MINUTE2:
        return _MINUTE_FIELDS
    return tuple(f[0] for f in _layout(rtype)[1])


def _layout(rtype):
    layout = _EVENTS.get(rtype)
    if layout is None:
        if rtype == MINUTE or rtype == MINUTE2:
            raise ProtocolError("the minute summary is not a fixed-layout event: use encode_minute")
        raise UnknownRecordType("unknown record type %r" % (rtype,))
    return layout


def encode_event(rtype, *values):
    """Payload of a fixed-layout event from its field values in wire order.

    encode_event(BOUT, start_s, duration_s, mean_flexion_ddeg, peak_flexion_ddeg)"""
    fmt, fields = _layout(rtype)
    if len(values) != len(fields):
        raise ProtocolError(
            "%s takes %d values (%s), got %d"
            % (_label(rtype), len(fields), ", ".join(f[0] for f in fields), len(values))
        )
    wire = []
    for i in range(len(fields)):
        name, lo, hi, none_code = fields[i]
        value = values[i]
        if value is None and none_code is not None:
            value = none_code
        elif type(value) is not int or value < lo or value > hi:
            # the message is built only here: the good path allocates no strings
            value = _int_in(_label(rtype) + "." + name, value, lo, hi)
        wire.append(value)
    return struct.pack(fmt, *wire)


def _decode_event(rtype, payload):
    fmt, fields = _layout(rtype)
    if len(payload) != struct.calcsize(fmt):
        raise ProtocolError(
            "%s payload is %d bytes, expected %d" % (_label(rtype), len(payload), struct.calcsize(fmt))
        )
    wire = struct.unpack(fmt, payload)
    out = {}
    for i in range(len(fields)):
        name, lo, hi, none_code = fields[i]
        value = wire[i]
        if none_code is not None and value == none_code:
            out[name] = None
        elif value < lo or value > hi:
            raise ProtocolError("%s.%s = %d is outside %d..%d" % (_label(rtype), name, value, lo, hi))
        else:
            out[name] = value
    return out


# ---- minute summary -------------------------------------------------------------------------
# start_s:u32 | worn_s:u8 | present:u16 | sections (see docs/protocol.md)
# `present` bits 0-4: the activity with that index has a seconds byte; bits 5-9: the lateral
# bin has a seconds byte; then one bit per optional section; bit 15 is reserved (0).
_P_LATERAL_SHIFT = const(5)
_P_FLEXION = const(0x0400)
_P_INCLINATION = const(0x0800)
_P_EXPOSURE = const(0x1000)
_P_VELOCITY = const(0x2000)
_P_CURVATURE = const(0x4000)
_P_RESERVED = const(0x8000)
_MINUTE_HEAD = const(7)
_LAST_BIN = const(0x80)  # marks the last bin of a histogram run

_MINUTE_FIELDS = (
    "start_s",
    "worn_s",
    "activity_s",
    "lateral_bins_s",
    "flexion_bins_s",
    "inclination_bins_s",
    "alert_count",
    "longest_bout_s",
    "mean_velocity_ddps",
    "curvature_mean_ddeg",
)
_MINUTE_REQUIRED = const(6)  # the first six fields have no default


def _seconds(where, values, count):
    """Check a list of per-bin seconds within one minute; returns it (as ints)."""
    try:
        n = len(values)
    except TypeError:
        raise ProtocolError("MINUTE.%s must be a list of %d integers" % (where, count)) from None
    if n != count:
        raise ProtocolError("MINUTE.%s must have %d values, got %d" % (where, count, n))
    total = 0
    for i in range(count):
        v = values[i]
        if type(v) is not int or v < 0 or v > _MINUTE_S:
            # Only a bool gets past _int_in (as 0/1): copy rather than change the caller's list.
            v = _int_in("MINUTE.%s[%d]" % (where, i), v, 0, _MINUTE_S)
            values = list(values)
            values[i] = v
        total += v
    if total > _MINUTE_S:
        raise ProtocolError("MINUTE.%s adds up to %d s, more than a minute" % (where, total))
    return values


def encode_minute(
    start_s,
    worn_s,
    activity_s,
    lateral_bins_s,
    flexion_bins_s,
    inclination_bins_s,
    alert_count=0,
    longest_bout_s=0,
    mean_velocity_ddps=None,
    curvature_mean_ddeg=None,
):
    """Payload of a minute summary.

    start_s: unix seconds at the start of the minute; worn_s: seconds worn (0..60);
    activity_s: 5 seconds counts in ACTIVITIES order; lateral_bins_s: 5 (LATERAL_EDGES_DEG);
    flexion_bins_s, inclination_bins_s: 20 each (ANGLE_EDGES_DEG).  Each list adds up to at
    most 60.  alert_count: alerts fired; longest_bout_s: longest continuous spell above
    BOUT_THRESHOLD_DEG within this minute; mean_velocity_ddps: mean trunk angular velocity in
    0.1 deg/s, None if not measured; curvature_mean_ddeg: mean thoracic curvature (upper
    minus lower flexion) in 0.1 deg, None without a second sensor."""
    start_s = _int_in("MINUTE.start_s", start_s, 0, _U32)
    worn_s = _int_in("MINUTE.worn_s", worn_s, 0, _MINUTE_S)
    activity_s = _seconds("activity_s", activity_s, len(ACTIVITIES))
    lateral_bins_s = _seconds("lateral_bins_s", lateral_bins_s, LATERAL_BINS)
    flexion_bins_s = _seconds("flexion_bins_s", flexion_bins_s, ANGLE_BINS)
    inclination_bins_s = _seconds("inclination_bins_s", inclination_bins_s, ANGLE_BINS)
    alert_count = _int_in("MINUTE.alert_count", alert_count, 0, _U8)
    longest_bout_s = _int_in("MINUTE.longest_bout_s", longest_bout_s, 0, _MINUTE_S)

    body = bytearray()
    present = 0
    for i in range(len(ACTIVITIES)):
        if activity_s[i]:
            present |= 1 << i
            body.append(activity_s[i])
    for i in range(LATERAL_BINS):
        if lateral_bins_s[i]:
            present |= 1 << (i + _P_LATERAL_SHIFT)
            body.append(lateral_bins_s[i])
    if _put_run(body, flexion_bins_s):
        present |= _P_FLEXION
    if _put_run(body, inclination_bins_s):
        present |= _P_INCLINATION
    if alert_count or longest_bout_s:
        present |= _P_EXPOSURE
        body.append(alert_count)
        body.append(longest_bout_s)
    if mean_velocity_ddps is not None:
        present |= _P_VELOCITY
        body += struct.pack("<H", _int_in("MINUTE.mean_velocity_ddps", mean_velocity_ddps, 0, _U16))
    if curvature_mean_ddeg is not None:
        present |= _P_CURVATURE
        value = _int_in("MINUTE.curvature_mean_ddeg", curvature_mean_ddeg, -_MAX_DDEG, _MAX_DDEG)
        body += struct.pack("<h", value)
    return struct.pack("<IBH", start_s, worn_s, present) + body


def _put_run(body, bins):
    # A histogram as its shortest run: first bin index, then the bins up to the last
    # non-zero one, with _LAST_BIN set on the last.  All zero: nothing (present bit clear).
    first = 0
    last = len(bins) - 1
    while first <= last and not bins[first]:
        first += 1
    if first > last:
        return False
    while not bins[last]:
        last -= 1
    body.append(first)
    for i in range(first, last):
        body.append(bins[i])
    body.append(bins[last] | _LAST_BIN)
    return True


def _get_run(p, pos, where):
    # Inverse of _put_run: (bins, next position).  Rejects every non-canonical form.
    n = len(p)
    if pos >= n:
        raise ProtocolError("MINUTE payload ends inside %s" % where)
    i = p[pos]
    if i >= ANGLE_BINS:
        raise ProtocolError("MINUTE.%s starts at bin %d of %d" % (where, i, ANGLE_BINS))
    pos += 1
    bins = [0] * ANGLE_BINS
    first = i
    total = 0  # summed on the way: the host decodes every minute it stores
    while True:
        if pos >= n:
            raise ProtocolError("MINUTE payload ends inside %s" % where)
        if i >= ANGLE_BINS:
            raise ProtocolError("MINUTE.%s runs past bin %d" % (where, ANGLE_BINS - 1))
        b = p[pos]
        pos += 1
        v = b & 0x7F
        bins[i] = v
        total += v
        i += 1
        if b & _LAST_BIN:
            break
    if not bins[first] or not bins[i - 1]:
        raise ProtocolError("MINUTE.%s run starts or ends with an empty bin" % where)
    if total > _MINUTE_S:
        _too_long(where, total)
    return bins, pos


def _too_long(where, total):
    raise ProtocolError("MINUTE.%s adds up to %d s, more than a minute" % (where, total))


def _get_masked(p, pos, present, shift, count, where):
    out = [0] * count
    n = len(p)
    total = 0
    bit = 1 << shift
    for i in range(count):
        if present & bit:
            if pos >= n:
                raise ProtocolError("MINUTE payload ends inside %s" % where)
            v = p[pos]
            if not v:
                raise ProtocolError("MINUTE.%s[%d] is marked present but zero" % (where, i))
            out[i] = v
            total += v
            pos += 1
        bit <<= 1
    if total > _MINUTE_S:
        _too_long(where, total)
    return out, pos


def _decode_minute(p):
    n = len(p)
    if n < _MINUTE_HEAD:
        raise ProtocolError("MINUTE payload is %d bytes, at least %d needed" % (n, _MINUTE_HEAD))
    start_s, worn_s, present = struct.unpack_from("<IBH", p, 0)
    if present & _P_RESERVED:
        raise ProtocolError("MINUTE has reserved bit 15 set (a newer layout needs a new type code)")
    if worn_s > _MINUTE_S:
        raise ProtocolError("MINUTE.worn_s = %d is more than a minute" % worn_s)
    pos = _MINUTE_HEAD
    activity_s, pos = _get_masked(p, pos, present, 0, len(ACTIVITIES), "activity_s")
    lateral, pos = _get_masked(p, pos, present, _P_LATERAL_SHIFT, LATERAL_BINS, "lateral_bins_s")
    if present & _P_FLEXION:
        flexion, pos = _get_run(p, pos, "flexion_bins_s")
    else:
        flexion = [0] * ANGLE_BINS
    if present & _P_INCLINATION:
        inclination, pos = _get_run(p, pos, "inclination_bins_s")
    else:
        inclination = [0] * ANGLE_BINS
    return _minute_fields(p, pos, present, start_s, worn_s, activity_s, lateral, flexion, inclination)


def _minute_fields(p, pos, present, start_s, worn_s, activity_s, lateral, flexion, inclination):
    # The sections after the histograms, laid out alike in MINUTE and MINUTE2, then the dict.
    n = len(p)
    alert_count = longest_bout_s = 0
    velocity = curvature = None
    if present & _P_EXPOSURE:
        if pos + 2 > n:
            raise ProtocolError("MINUTE payload ends inside alert_count/longest_bout_s")
        alert_count = p[pos]
        longest_bout_s = p[pos + 1]
        pos += 2
        if not alert_count and not longest_bout_s:
            raise ProtocolError("MINUTE marks alert_count/longest_bout_s present but both are zero")
        if longest_bout_s > _MINUTE_S:
            raise ProtocolError("MINUTE.longest_bout_s = %d is more than a minute" % longest_bout_s)
    if present & _P_VELOCITY:
        if pos + 2 > n:
            raise ProtocolError("MINUTE payload ends inside mean_velocity_ddps")
        velocity = struct.unpack_from("<H", p, pos)[0]
        pos += 2
    if present & _P_CURVATURE:
        if pos + 2 > n:
            raise ProtocolError("MINUTE payload ends inside curvature_mean_ddeg")
        curvature = struct.unpack_from("<h", p, pos)[0]
        pos += 2
        if curvature < -_MAX_DDEG or curvature > _MAX_DDEG:
            raise ProtocolError("MINUTE.curvature_mean_ddeg = %d is outside +-1800" % curvature)
    if pos != n:
        raise ProtocolError("MINUTE payload has %d bytes after its last section" % (n - pos))
    return {
        "start_s": start_s,
        "worn_s": worn_s,
        "activity_s": activity_s,
        "lateral_bins_s": lateral,
        "flexion_bins_s": flexion,
        "inclination_bins_s": inclination,
        "alert_count": alert_count,
        "longest_bout_s": longest_bout_s,
        "mean_velocity_ddps": velocity,
        "curvature_mean_ddeg": curvature,
    }


# ---- minute summary, layout 2 (MINUTE2) -------------------------------------------------------
# start_s:u32 | present:u16 | sections: the MINUTE layout without what the rest implies.
#   worn_s    = the activity seconds minus not_worn (not stored);
#   posture seconds = worn_s minus lying: every histogram (lateral, flexion, inclination) adds
#               up to exactly this, so its last non-zero bin is not stored either:
#   lateral   one byte per present bin except the last present one;
#   flexion, inclination   head byte = first bin (bits 0-4), bit 7 set when that one bin holds
#               every posture second (nothing follows); otherwise the bins first .. last-1,
#               0x80 marking the value of bin last-1, and bin last holds the rest (> 0).
# Exposure, velocity and curvature sections as in MINUTE.  The encoder refuses a minute whose
# histograms do not add up to the posture seconds (write it as MINUTE then).
_MINUTE2_HEAD = const(6)
_SINGLE_BIN = const(0x80)


def _worn_posture(activity_s):
    total = 0
    for v in activity_s:
        total += v
    worn = total - activity_s[ACTIVITY_NOT_WORN]
    return worn, worn - activity_s[ACTIVITY_LYING]


def encode_minute2(
    start_s,
    worn_s,
    activity_s,
    lateral_bins_s,
    flexion_bins_s,
    inclination_bins_s,
    alert_count=0,
    longest_bout_s=0,
    mean_velocity_ddps=None,
    curvature_mean_ddeg=None,
):
    """Payload of a minute summary in layout 2: the fields of encode_minute, which must agree
    with each other: worn_s = activity seconds other than not_worn, and the lateral, flexion
    and inclination bins each add up to the posture seconds (worn_s minus lying), or are all
    zero when there are none."""
    full = encode_minute(
        start_s,
        worn_s,
        activity_s,
        lateral_bins_s,
        flexion_bins_s,
        inclination_bins_s,
        alert_count,
        longest_bout_s,
        mean_velocity_ddps,
        curvature_mean_ddeg,
    )  # checks every value
    worn, posture = _worn_posture(activity_s)
    if worn != worn_s:
        raise ProtocolError("MINUTE2.worn_s = %d but the activity seconds say %d" % (worn_s, worn))
    body = bytearray()
    present = struct.unpack_from("<H", full, 5)[0]
    for i in range(len(ACTIVITIES)):
        if activity_s[i]:
            body.append(activity_s[i])
    last = -1
    total = 0
    for i in range(LATERAL_BINS):
        total += lateral_bins_s[i]
        if lateral_bins_s[i]:
            last = i
    # An empty lateral histogram is refused too when there are posture seconds: the decoder
    # reads a missing lateral section as "no posture seconds" (found by tests/test_fuzz_protocol.py).
    if total != posture:
        raise ProtocolError(
            "MINUTE2.lateral_bins_s adds up to %d, not the %d posture seconds" % (total, posture)
        )
    for i in range(last):
        if lateral_bins_s[i]:
            body.append(lateral_bins_s[i])
    for where, bins in (("flexion_bins_s", flexion_bins_s), ("inclination_bins_s", inclination_bins_s)):
        _put_run2(body, bins, posture, where)
    # exposure, velocity, curvature: the tail of the MINUTE payload, unchanged
    tail = 0
    if present & _P_EXPOSURE:
        tail += 2
    if present & _P_VELOCITY:
        tail += 2
    if present & _P_CURVATURE:
        tail += 2
    if tail:
        body += full[len(full) - tail :]
    return struct.pack("<IH", start_s, present) + body


def _put_run2(body, bins, posture, where):
    first = 0
    last = len(bins) - 1
    while first <= last and not bins[first]:
        first += 1
    if first > last:
        if posture:
            raise ProtocolError("MINUTE2.%s is empty but there are %d posture seconds" % (where, posture))
        return
    while not bins[last]:
        last -= 1
    total = 0
    for v in bins:
        total += v
    if total != posture:
        raise ProtocolError("MINUTE2.%s adds up to %d, not the %d posture seconds" % (where, total, posture))
    if first == last:
        body.append(first | _SINGLE_BIN)
        return
    body.append(first)
    for i in range(first, last - 1):
        body.append(bins[i])
    body.append(bins[last - 1] | _LAST_BIN)


def _get_run2(p, pos, where, posture):
    n = len(p)
    if pos >= n:
        raise ProtocolError("MINUTE2 payload ends inside %s" % where)
    head = p[pos]
    pos += 1
    first = head & 0x7F
    if first >= ANGLE_BINS:
        raise ProtocolError("MINUTE2.%s starts at bin %d of %d" % (where, first, ANGLE_BINS))
    bins = [0] * ANGLE_BINS
    if head & _SINGLE_BIN:
        bins[first] = posture
        return bins, pos
    i = first
    given = 0
    while True:
        if pos >= n:
            raise ProtocolError("MINUTE2 payload ends inside %s" % where)
        if i >= ANGLE_BINS - 1:
            raise ProtocolError("MINUTE2.%s runs past bin %d" % (where, ANGLE_BINS - 1))
        b = p[pos]
        pos += 1
        bins[i] = b & 0x7F
        given += b & 0x7F
        i += 1
        if b & _LAST_BIN:
            break
    if not bins[first]:
        raise ProtocolError("MINUTE2.%s run starts with an empty bin" % where)
    if given >= posture:
        raise ProtocolError("MINUTE2.%s leaves no seconds for its last bin" % where)
    bins[i] = posture - given
    return bins, pos


def _decode_minute2(p):
    n = len(p)
    if n < _MINUTE2_HEAD:
        raise ProtocolError("MINUTE2 payload is %d bytes, at least %d needed" % (n, _MINUTE2_HEAD))
    start_s, present = struct.unpack_from("<IH", p, 0)
    if present & _P_RESERVED:
        raise ProtocolError("MINUTE2 has reserved bit 15 set (a newer layout needs a new type code)")
    pos = _MINUTE2_HEAD
    activity_s, pos = _get_masked(p, pos, present, 0, len(ACTIVITIES), "activity_s")
    worn_s, posture = _worn_posture(activity_s)
    lateral = [0] * LATERAL_BINS
    last = -1
    for i in range(LATERAL_BINS):
        if present & (1 << (i + _P_LATERAL_SHIFT)):
            last = i
    if (last >= 0) != (posture > 0):
        raise ProtocolError("MINUTE2 lateral bins do not match the %d posture seconds" % posture)
    given = 0
    for i in range(last):
        if present & (1 << (i + _P_LATERAL_SHIFT)):
            if pos >= n:
                raise ProtocolError("MINUTE2 payload ends inside lateral_bins_s")
            if not p[pos]:
                raise ProtocolError("MINUTE2.lateral_bins_s[%d] is marked present but zero" % i)
            lateral[i] = p[pos]
            given += p[pos]
            pos += 1
    if last >= 0:
        if given >= posture:
            raise ProtocolError("MINUTE2.lateral_bins_s leaves no seconds for its last bin")
        lateral[last] = posture - given
    zeros = [0] * ANGLE_BINS
    hist = []
    for bit, where in ((_P_FLEXION, "flexion_bins_s"), (_P_INCLINATION, "inclination_bins_s")):
        if present & bit:
            if not posture:
                raise ProtocolError("MINUTE2.%s is present without posture seconds" % where)
            bins, pos = _get_run2(p, pos, where, posture)
        else:
            if posture:
                raise ProtocolError("MINUTE2.%s is missing for %d posture seconds" % (where, posture))
            bins = list(zeros)
        hist.append(bins)
    return _minute_fields(p, pos, present, start_s, worn_s, activity_s, lateral, hist[0], hist[1])


# ---- payloads by type -----------------------------------------------------------------------
def encode_payload(rtype, fields):
    """Payload of any record type from a dict of its fields (the dict decode_payload returns).

    Missing or unknown field names raise ProtocolError; for MINUTE the last four fields
    may be left out (defaults as in encode_minute)."""
    names = field_names(rtype)
    for key in fields:
        if key not in names:
            raise ProtocolError("%s has no field %r" % (_label(rtype), key))
    minute = rtype == MINUTE or rtype == MINUTE2
    required = names[:_MINUTE_REQUIRED] if minute else names
    for name in required:
        if name not in fields:
            raise ProtocolError("%s needs field %r" % (_label(rtype), name))
    if rtype == MINUTE:
        return encode_minute(**fields)
    if rtype == MINUTE2:
        return encode_minute2(**fields)
    return encode_event(rtype, *[fields[name] for name in names])


def decode_payload(rtype, payload):
    """Dict of a payload's fields (names carry units); ProtocolError if it does not parse.

    MINUTE gives full-length lists: activity_s (5, ACTIVITIES order), lateral_bins_s (5),
    flexion_bins_s and inclination_bins_s (20); enumerated fields stay integer codes (the
    name tables above translate them)."""
    if rtype == MINUTE:
        return _decode_minute(payload)
    if rtype == MINUTE2:
        return _decode_minute2(payload)
    return _decode_event(rtype, payload)


# ---- records --------------------------------------------------------------------------------
_HEAD = const(6)  # seq, type, len
_OVERHEAD = const(10)  # head + crc32
_MAX_PAYLOAD = const(255)


class Record:
    """One framed record: sequence number, type code and (validated) payload bytes."""

    __slots__ = ("seq", "rtype", "payload")

    def __init__(self, seq, rtype, payload):
        self.seq = seq
        self.rtype = rtype
        self.payload = payload

    @property
    def name(self):
        return RECORD_NAMES.get(self.rtype, "unknown")

    def fields(self):
        return decode_payload(self.rtype, self.payload)

    def __eq__(self, other):
        return (
            isinstance(other, Record)
            and self.seq == other.seq
            and self.rtype == other.rtype
            and bytes(self.payload) == bytes(other.payload)
        )

    def __repr__(self):
        return "Record(seq=%d, rtype=%d, payload=%r)" % (self.seq, self.rtype, bytes(self.payload))


def encode_record(seq, rtype, payload):
    """The framed bytes of one record.  The payload must be valid for its type."""
    seq = _int_in("record seq", seq, 0, _U32)
    if rtype not in RECORD_NAMES:
        raise UnknownRecordType("unknown record type %r" % (rtype,))
    if len(payload) > _MAX_PAYLOAD:
        raise ProtocolError("payload is %d bytes, at most %d fit a record" % (len(payload), _MAX_PAYLOAD))
    decode_payload(rtype, payload)  # never write what cannot be read back
    body = struct.pack("<IBB", seq, rtype, len(payload)) + bytes(payload)
    return body + struct.pack("<I", crc32(body))


def decode_record(buf, offset=0):
    """(Record, offset of the next record) for the record at `offset` in `buf`.

    Raises ProtocolError for a truncated record, a CRC mismatch or a payload that does not
    parse, and UnknownRecordType (a ProtocolError) for a good CRC on an unknown type code."""
    record, _fields, _crc, end = decode_record_fields(buf, offset)
    return record, end


def decode_record_fields(buf, offset=0):
    """(Record, fields, crc, offset of the next record): decode_record, keeping what checking
    the record computed anyway -- its payload's fields (the dict decode_payload gives) and its
    CRC -- so a host that stores them does not decode the payload twice.  Raises as
    decode_record does."""
    n = len(buf)
    if offset < 0 or offset > n:
        raise ProtocolError("offset %d is outside the %d-byte buffer" % (offset, n))
    if n - offset < _OVERHEAD:
        raise ProtocolError("truncated record at offset %d: %d bytes left" % (offset, n - offset))
    seq, rtype, plen = struct.unpack_from("<IBB", buf, offset)
    end = offset + _OVERHEAD + plen
    if end > n:
        raise ProtocolError(
            "truncated record at offset %d: needs %d bytes, %d left" % (offset, end - offset, n - offset)
        )
    crc = struct.unpack_from("<I", buf, end - 4)[0]
    if crc32(memoryview(buf)[offset : end - 4]) != crc:
        raise ProtocolError("CRC mismatch in the record at offset %d" % offset)
    if rtype not in RECORD_NAMES:
        raise UnknownRecordType(
            "record seq %d at offset %d has type %d, unknown to protocol version %d: update the host"
            % (seq, offset, rtype, PROTOCOL_VERSION)
        )
    payload = bytes(buf[offset + _HEAD : end - 4])
    fields = decode_payload(rtype, payload)
    return Record(seq, rtype, payload), fields, crc, end


def decode_records(data):
    """Every record in `data`, which must be exactly a sequence of valid records."""
    records = []
    pos = 0
    n = len(data)
    while pos < n:
        record, pos = decode_record(data, pos)
        records.append(record)
    return records


def scan_valid_prefix(data):
    """(records, valid_length): the valid records from the start of `data`, stopping at the
    first torn or corrupt one instead of raising; data[:valid_length] holds exactly them.

    For the log store's boot-time scan: cutting the file at valid_length removes a torn tail."""
    records = []
    pos = 0
    n = len(data)
    while pos < n:
        try:
            record, nxt = decode_record(data, pos)
        except ProtocolError:
            break
        records.append(record)
        pos = nxt
    return records, pos


# =============================================================================================
# ---- BLE: GATT service, info, commands, notifications, HMAC (docs/protocol.md section 8) ----
# =============================================================================================
# Strings usable as bluetooth.UUID(str) on MicroPython and as UUIDs in bleak.
SERVICE_UUID = "7c3e0001-5f2a-4d8b-9e61-3a0c2b7d4f10"
INFO_UUID = "7c3e0002-5f2a-4d8b-9e61-3a0c2b7d4f10"  # read
CONTROL_UUID = "7c3e0003-5f2a-4d8b-9e61-3a0c2b7d4f10"  # write with response
DATA_UUID = "7c3e0004-5f2a-4d8b-9e61-3a0c2b7d4f10"  # notify

NONCE_SIZE = const(16)
MAC_SIZE = const(32)
DEVICE_ID_MAX = const(32)
# A session needs this ATT MTU (the HELLO result and BATCH_END carry a 32-byte MAC); the host
# asks for 247.  pack_data_frames itself works down to the BLE minimum, 23.
MIN_SESSION_MTU = const(48)
MIN_MTU = const(23)
CONFIG_MAX = const(4096)  # largest CONFIG_SET JSON document
BATTERY_UNKNOWN = const(255)

AUTH_HOST_CONTEXT = b"posture/auth/v1\x00"
AUTH_DEVICE_CONTEXT = b"posture/auth-device/v1\x00"
BATCH_MAC_CONTEXT = b"posture/batch/v1\x00"

# ---- error codes (command results) ----
OK = const(0)
ERR_UNKNOWN_COMMAND = const(1)
ERR_MALFORMED = const(2)
ERR_NOT_AUTHENTICATED = const(3)
ERR_AUTH_FAILED = const(4)
ERR_BAD_SEQ = const(5)
ERR_BUSY = const(6)
ERR_CONFIG_INVALID = const(7)
ERR_MTU_TOO_SMALL = const(8)
ERR_INTERNAL = const(9)
ERROR_NAMES = (
    "ok",
    "unknown_command",
    "malformed",
    "not_authenticated",
    "auth_failed",
    "bad_seq",
    "busy",
    "config_invalid",
    "mtu_too_small",
    "internal",
)

# ---- commands (control writes: cmd:u8 | body) ----
CMD_HELLO = const(1)
CMD_TIME_SET = const(2)
CMD_FETCH = const(3)
CMD_ACK = const(4)
CMD_CONFIG_SET = const(5)
CMD_CALIBRATE = const(6)
CMD_BUZZ_TEST = const(7)
CMD_REBOOT = const(8)
COMMAND_NAMES = {
    CMD_HELLO: "hello",
    CMD_TIME_SET: "time_set",
    CMD_FETCH: "fetch",
    CMD_ACK: "ack",
    CMD_CONFIG_SET: "config_set",
    CMD_CALIBRATE: "calibrate",
    CMD_BUZZ_TEST: "buzz_test",
    CMD_REBOOT: "reboot",
}

# ---- notification frame types (first byte of every `data` notification) ----
FRAME_RESULT = const(1)  # cmd:u8 | error:u8 | detail
FRAME_RECORDS = const(2)  # frame_seq:u16 | one or more whole framed records
FRAME_PART = const(3)  # frame_seq:u16 | a piece of one record, more pieces follow
FRAME_PART_END = const(4)  # frame_seq:u16 | the last piece of that record
FRAME_BATCH_END = const(5)  # frame_seq:u16 | count:u16 | more:u8 | mac:32
FRAME_NAMES = {
    FRAME_RESULT: "result",
    FRAME_RECORDS: "records",
    FRAME_PART: "part",
    FRAME_PART_END: "part_end",
    FRAME_BATCH_END: "batch_end",
}
_FRAME_HEAD = const(3)  # type + frame_seq


class UnknownCommand(ProtocolError):
    """A control write whose command code this protocol version does not define."""


def _bytes_of(where, value, lo, hi):
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ProtocolError("%s must be bytes" % where)
    value = bytes(value)
    if len(value) < lo or len(value) > hi:
        raise ProtocolError("%s is %d bytes, expected %d..%d" % (where, len(value), lo, hi))
    return value


# ---- HMAC-SHA256 (MicroPython has hashlib.sha256 but no hmac) ----
def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) of `msg` with `key`: 32 bytes, equal to CPython's hmac."""
    from hashlib import sha256

    key = bytes(key)
    if len(key) > 64:
        key = sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def digest_equal(a, b):
    """Constant-time comparison of two MACs."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _device_id_bytes(device_id):
    if not isinstance(device_id, str):
        raise ProtocolError("device id must be a str")
    ident = device_id.encode()
    if len(ident) < 1 or len(ident) > 255:
        raise ProtocolError("device id must be 1..255 bytes of UTF-8")
    return ident


def batch_mac(key, device_id, frames_bytes):
    """HMAC-SHA256(key, b"posture/batch/v1\\x00" || u8 len(id) || id || frames): the batch
    MAC the server checks (host/companion/ingest.py batch_mac is the same construction)."""
    ident = _device_id_bytes(device_id)
    return hmac_sha256(key, BATCH_MAC_CONTEXT + bytes((len(ident),)) + ident + bytes(frames_bytes))


def host_auth_proof(key, device_nonce, host_nonce):
    """The host's HELLO proof: HMAC-SHA256(key, b"posture/auth/v1\\x00" || device_nonce || host_nonce)."""
    return hmac_sha256(key, AUTH_HOST_CONTEXT + bytes(device_nonce) + bytes(host_nonce))


def device_auth_proof(key, device_nonce, host_nonce):
    """The device's answer: HMAC-SHA256(key, b"posture/auth-device/v1\\x00" || device_nonce || host_nonce)."""
    return hmac_sha256(key, AUTH_DEVICE_CONTEXT + bytes(device_nonce) + bytes(host_nonce))


# ---- info characteristic ----
# version:u8 | fw:3*u8 | id_len:u8 | id | first_seq:u32 | last_seq:u32 | acked_seq:u32 |
# battery:u8 | clock_s:u32 | config_crc:u32 | nonce:16
_INFO_TAIL = "<IIIBII16s"
_INFO_TAIL_SIZE = const(37)
INFO_FIELDS = (
    "protocol_version",
    "fw_version",
    "device_id",
    "first_seq",
    "last_seq",
    "acked_seq",
    "battery_percent",
    "clock_s",
    "config_crc",
    "nonce",
)


def _check_device_id(ident):
    if len(ident) < 1 or len(ident) > DEVICE_ID_MAX:
        raise ProtocolError("device id must be 1..%d bytes" % DEVICE_ID_MAX)
    for b in ident:
        if b < 0x21 or b > 0x7E:
            raise ProtocolError("device id must be printable ASCII without spaces")


def encode_info(
    protocol_version,
    fw_version,
    device_id,
    first_seq,
    last_seq,
    acked_seq,
    battery_percent,
    clock_s,
    config_crc,
    nonce,
):
    """The `info` payload; fw_version is (major, minor, patch), battery 0..100 or 255 unknown."""
    _int_in("info.protocol_version", protocol_version, 0, _U8)
    try:
        fw = tuple(fw_version)
    except TypeError:
        raise ProtocolError("info.fw_version must be (major, minor, patch)") from None
    if len(fw) != 3:
        raise ProtocolError("info.fw_version must be (major, minor, patch)")
    for v in fw:
        _int_in("info.fw_version", v, 0, _U8)
    if not isinstance(device_id, str):
        raise ProtocolError("info.device_id must be a str")
    ident = device_id.encode()
    _check_device_id(ident)
    for name, v in (("first_seq", first_seq), ("last_seq", last_seq), ("acked_seq", acked_seq)):
        _int_in("info." + name, v, 0, _U32)
    if battery_percent != BATTERY_UNKNOWN:
        _int_in("info.battery_percent", battery_percent, 0, 100)
    _int_in("info.clock_s", clock_s, 0, _U32)
    _int_in("info.config_crc", config_crc, 0, _U32)
    nonce = _bytes_of("info.nonce", nonce, NONCE_SIZE, NONCE_SIZE)
    head = bytes((protocol_version, fw[0], fw[1], fw[2], len(ident))) + ident
    tail = struct.pack(
        _INFO_TAIL, first_seq, last_seq, acked_seq, int(battery_percent), clock_s, config_crc, nonce
    )
    return head + tail


def decode_info(data):
    """dict of the `info` payload (fields INFO_FIELDS; fw_version a tuple); ProtocolError if bad."""
    data = bytes(data)
    if len(data) < 5:
        raise ProtocolError("info is %d bytes, too short" % len(data))
    n = data[4]
    if len(data) != 5 + n + _INFO_TAIL_SIZE:
        raise ProtocolError("info is %d bytes, expected %d" % (len(data), 5 + n + _INFO_TAIL_SIZE))
    ident = data[5 : 5 + n]
    _check_device_id(ident)
    t = struct.unpack(_INFO_TAIL, data[5 + n :])
    if t[3] > 100 and t[3] != BATTERY_UNKNOWN:
        raise ProtocolError("info.battery_percent = %d is outside 0..100" % t[3])
    return {
        "protocol_version": data[0],
        "fw_version": (data[1], data[2], data[3]),
        "device_id": ident.decode(),
        "first_seq": t[0],
        "last_seq": t[1],
        "acked_seq": t[2],
        "battery_percent": t[3],
        "clock_s": t[4],
        "config_crc": t[5],
        "nonce": t[6],
    }


# ---- commands ----
def encode_command(cmd, *values):
    """A control write from the command's values (docs/protocol.md, command table):

    HELLO(host_nonce, proof) | TIME_SET(unix_s) | FETCH(from_seq, window) | ACK(seq) |
    CONFIG_SET(offset, total, chunk) | CALIBRATE() | BUZZ_TEST() | REBOOT()"""
    if cmd == CMD_HELLO:
        _nargs(cmd, values, 2)
        return (
            bytes((cmd,))
            + _bytes_of("HELLO.host_nonce", values[0], NONCE_SIZE, NONCE_SIZE)
            + _bytes_of("HELLO.proof", values[1], MAC_SIZE, MAC_SIZE)
        )
    if cmd == CMD_TIME_SET or cmd == CMD_ACK:
        _nargs(cmd, values, 1)
        return struct.pack("<BI", cmd, _int_in(COMMAND_NAMES[cmd], values[0], 0, _U32))
    if cmd == CMD_FETCH:
        _nargs(cmd, values, 2)
        return struct.pack(
            "<BIH",
            cmd,
            _int_in("FETCH.from_seq", values[0], 0, _U32),
            _int_in("FETCH.window", values[1], 1, _U16),
        )
    if cmd == CMD_CONFIG_SET:
        _nargs(cmd, values, 3)
        offset = _int_in("CONFIG_SET.offset", values[0], 0, CONFIG_MAX - 1)
        total = _int_in("CONFIG_SET.total", values[1], 1, CONFIG_MAX)
        chunk = _bytes_of("CONFIG_SET.chunk", values[2], 1, CONFIG_MAX)
        if offset + len(chunk) > total:
            raise ProtocolError("CONFIG_SET chunk ends past total")
        return struct.pack("<BHH", cmd, offset, total) + chunk
    if cmd == CMD_CALIBRATE or cmd == CMD_BUZZ_TEST or cmd == CMD_REBOOT:
        _nargs(cmd, values, 0)
        return bytes((cmd,))
    raise UnknownCommand("unknown command %r" % (cmd,))


def _nargs(cmd, values, n):
    if len(values) != n:
        raise ProtocolError("%s takes %d values, got %d" % (COMMAND_NAMES[cmd], n, len(values)))


def decode_command(data):
    """(cmd, values) of a control write, values as encode_command takes them.

    Raises UnknownCommand (error ERR_UNKNOWN_COMMAND) or ProtocolError (ERR_MALFORMED), nothing else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("a command is bytes")
    data = bytes(data)
    if not data:
        raise ProtocolError("empty command")
    cmd = data[0]
    n = len(data)
    if cmd == CMD_HELLO:
        if n != 1 + NONCE_SIZE + MAC_SIZE:
            raise ProtocolError("HELLO is %d bytes, expected %d" % (n, 1 + NONCE_SIZE + MAC_SIZE))
        return cmd, (data[1 : 1 + NONCE_SIZE], data[1 + NONCE_SIZE :])
    if cmd == CMD_TIME_SET or cmd == CMD_ACK:
        if n != 5:
            raise ProtocolError("%s is %d bytes, expected 5" % (COMMAND_NAMES[cmd], n))
        return cmd, struct.unpack("<I", data[1:])
    if cmd == CMD_FETCH:
        if n != 7:
            raise ProtocolError("fetch is %d bytes, expected 7" % n)
        v = struct.unpack("<IH", data[1:])
        if v[1] < 1:
            raise ProtocolError("FETCH.window must be at least 1")
        return cmd, v
    if cmd == CMD_CONFIG_SET:
        if n < 6:
            raise ProtocolError("config_set is %d bytes, too short" % n)
        offset, total = struct.unpack("<HH", data[1:5])
        chunk = data[5:]
        if total < 1 or total > CONFIG_MAX or offset + len(chunk) > total:
            raise ProtocolError(
                "CONFIG_SET offset %d + %d bytes outside total %d" % (offset, len(chunk), total)
            )
        return cmd, (offset, total, chunk)
    if cmd == CMD_CALIBRATE or cmd == CMD_BUZZ_TEST or cmd == CMD_REBOOT:
        if n != 1:
            raise ProtocolError("%s takes no body" % COMMAND_NAMES[cmd])
        return cmd, ()
    raise UnknownCommand("unknown command %d" % cmd)


# ---- notifications on `data` ----
def encode_result(cmd, error, detail=b""):
    """A command result: FRAME_RESULT | cmd | error | detail (HELLO ok: the device's proof)."""
    _int_in("result.cmd", cmd, 0, _U8)
    _int_in("result.error", error, 0, _U8)
    return bytes((FRAME_RESULT, cmd, error)) + _bytes_of("result.detail", detail, 0, 244 - 3)


def encode_batch_end(frame_seq, count, more, mac):
    """The frame that closes a FETCH batch: its record count, whether more records are stored,
    and batch_mac(key, device_id, the batch's framed records concatenated)."""
    return struct.pack(
        "<BHHB",
        FRAME_BATCH_END,
        _int_in("batch_end.frame_seq", frame_seq, 0, _U16),
        _int_in("batch_end.count", count, 0, _U16),
        _int_in("batch_end.more", more, 0, 1),
    ) + _bytes_of("batch_end.mac", mac, MAC_SIZE, MAC_SIZE)


def decode_notification(data):
    """(frame_type, values) of a `data` notification; ProtocolError if it is not one:

    RESULT (cmd, error, detail) | RECORDS, PART, PART_END (frame_seq, body) |
    BATCH_END (frame_seq, count, more, mac)"""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("a notification is bytes")
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise ProtocolError("empty notification")
    ftype = data[0]
    if ftype == FRAME_RESULT:
        if n < 3:
            raise ProtocolError("result is %d bytes, too short" % n)
        return ftype, (data[1], data[2], data[3:])
    if ftype == FRAME_RECORDS or ftype == FRAME_PART or ftype == FRAME_PART_END:
        if n < _FRAME_HEAD + 1:
            raise ProtocolError("data frame is %d bytes, too short" % n)
        return ftype, (struct.unpack("<H", data[1:3])[0], data[3:])
    if ftype == FRAME_BATCH_END:
        if n != 6 + MAC_SIZE:
            raise ProtocolError("batch_end is %d bytes, expected %d" % (n, 6 + MAC_SIZE))
        frame_seq, count, more = struct.unpack("<HHB", data[1:6])
        if more > 1:
            raise ProtocolError("batch_end.more must be 0 or 1")
        return ftype, (frame_seq, count, more, data[6:])
    raise ProtocolError("unknown frame type %d" % ftype)


def pack_data_frames(records, mtu, first_frame_seq=0):
    """Notifications (each at most mtu - 3 bytes) carrying framed records, in order.

    Records are packed whole into FRAME_RECORDS frames; a record that does not fit one frame on
    its own (only with a small MTU) goes alone in PART ... PART_END frames.  frame_seq counts up
    from first_frame_seq and wraps at 65536."""
    mtu = _int_in("mtu", mtu, MIN_MTU, 517)
    room = mtu - 3 - _FRAME_HEAD
    seq = _int_in("first_frame_seq", first_frame_seq, 0, _U16)
    frames = []
    body = b""
    for rec in records:
        rec = _bytes_of("record", rec, _OVERHEAD, _OVERHEAD + _MAX_PAYLOAD)
        if len(rec) != _OVERHEAD + rec[5]:
            raise ProtocolError("record length %d disagrees with its len byte" % len(rec))
        if len(body) + len(rec) <= room:
            body += rec
            continue
        if body:
            frames.append(struct.pack("<BH", FRAME_RECORDS, seq) + body)
            seq = (seq + 1) & _U16
            body = b""
        if len(rec) <= room:
            body = rec
            continue
        for pos in range(0, len(rec), room):
            piece = rec[pos : pos + room]
            ftype = FRAME_PART_END if pos + room >= len(rec) else FRAME_PART
            frames.append(struct.pack("<BH", ftype, seq) + piece)
            seq = (seq + 1) & _U16
    if body:
        frames.append(struct.pack("<BH", FRAME_RECORDS, seq) + body)
    return frames


def unpack_data_frames(frames, first_frame_seq=None):
    """The framed records (bytes each) carried by consecutive data frames; ProtocolError when a
    frame is missing, out of order, or a record is cut.  CRCs are checked by decode_record."""
    records = []
    expect = first_frame_seq
    part = None
    for frame in frames:
        if not isinstance(frame, (bytes, bytearray, memoryview)) or len(frame) < _FRAME_HEAD + 1:
            raise ProtocolError("a data frame is at least %d bytes" % (_FRAME_HEAD + 1))
        frame = bytes(frame)
        ftype = frame[0]
        if ftype != FRAME_RECORDS and ftype != FRAME_PART and ftype != FRAME_PART_END:
            raise ProtocolError("not a data frame: type %d" % ftype)
        fseq = frame[1] | frame[2] << 8
        body = frame[_FRAME_HEAD:]
        if expect is not None and fseq != expect:
            raise ProtocolError("frame %d where %d was expected" % (fseq, expect))
        expect = (fseq + 1) & _U16
        if ftype == FRAME_RECORDS:
            if part is not None:
                raise ProtocolError("record cut: whole records while a part was open")
            pos = 0
            while pos < len(body):
                if len(body) - pos < _HEAD:
                    raise ProtocolError("record header cut at frame end")
                end = pos + _OVERHEAD + body[pos + 5]
                if end > len(body):
                    raise ProtocolError("record cut at frame end")
                records.append(body[pos:end])
                pos = end
        else:
            part = body if part is None else part + body
            if ftype == FRAME_PART_END:
                if len(part) < _HEAD or len(part) != _OVERHEAD + part[5]:
                    raise ProtocolError("reassembled record has the wrong length")
                records.append(part)
                part = None
    if part is not None:
        raise ProtocolError("frames end inside a record")
    return records
