# Events, encoded by shared/protocol.py and stored in the log.
#
# One method per event the firmware core raises, so callers pass meaning (a sensor address
# and a fault kind) and never bytes.  Every event carries the wall-clock time the device
# believes (unix seconds; see clock.py).
import protocol


class EventLog:
    def __init__(self, log, now_s):
        self.log = log
        self.now_s = now_s  # () -> unix seconds

    def write(self, rtype, *values):
        return self.log.append(rtype, protocol.encode_event(rtype, *values))

    def boot(self, reset_cause, fw_version, config_crc):
        # machine.reset_cause() numbers (ESP32: 1 power-on … 5 soft) are the protocol's.
        cause = reset_cause if 0 < reset_cause < len(protocol.RESET_CAUSES) else protocol.RESET_UNKNOWN
        self.write(protocol.BOOT, self.now_s(), cause, fw_version[0], fw_version[1], fw_version[2], config_crc)

    def config_problem(self, result, key_index, config_crc, source=protocol.CONFIG_FROM_FILE):
        if result != protocol.CONFIG_OK:
            source = protocol.CONFIG_FROM_DEFAULTS if key_index == 0 else source
        self.write(protocol.CONFIG, self.now_s(), source, result, config_crc, key_index)

    def sensor_fault(self, addr, kind, detail, retry_in_s):
        self.write(protocol.SENSOR_FAULT, self.now_s(), addr, kind, detail, min(retry_in_s, 0xFFFF))

    def button(self, action, task_id=0):
        self.write(protocol.BUTTON, self.now_s(), action, task_id)

    def battery(self, battery_mv, charging):
        self.write(protocol.BATTERY, self.now_s(), battery_mv, battery_percent(battery_mv), 1 if charging else 0)


# Open-circuit voltage of a LiPo cell at 100, 90 … 0 % (typical 1C discharge curve).
_LIPO_MV = (4200, 4060, 3980, 3920, 3870, 3820, 3790, 3770, 3740, 3680, 3300)


def battery_percent(mv):
    if mv >= _LIPO_MV[0]:
        return 100
    for i in range(1, len(_LIPO_MV)):
        if mv >= _LIPO_MV[i]:
            hi = _LIPO_MV[i - 1]
            lo = _LIPO_MV[i]
            return 100 - 10 * i + (mv - lo) * 10 // (hi - lo)
    return 0
