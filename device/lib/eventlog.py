# Events, encoded by shared/protocol.py and stored in the log.
#
# One method per event the firmware core raises, so callers pass meaning (a sensor address
# and a fault kind) and never bytes.  Every event carries the wall-clock time the device
# believes (unix seconds; see clock.py).
import protocol

# A BATTERY event is written when the reading means something new: the first after boot, the
# charger plugged in or out, the charge moved by BATTERY_STEP_PCT since the last event, or
# BATTERY_HEARTBEAT_S passed.  Read every 10 minutes, a cell that loses a few percent a day
# would otherwise cost six records an hour (~110 bytes per worn hour) saying nothing new.
BATTERY_STEP_PCT = 2
BATTERY_HEARTBEAT_S = 6 * 3600


class EventLog:
    def __init__(self, log, now_s):
        self.log = log
        self.now_s = now_s  # () -> unix seconds
        self._battery_pct = -1  # last logged: percent, charging, time
        self._battery_charging = -1
        self._battery_s = 0

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
        """A battery reading; logged only when it says something new (see BATTERY_STEP_PCT).
        Returns True when it was logged."""
        now = self.now_s()
        pct = battery_percent(battery_mv)
        charging = 1 if charging else 0
        last = self._battery_pct
        if (
            last >= 0
            and charging == self._battery_charging
            and -BATTERY_STEP_PCT < pct - last < BATTERY_STEP_PCT
            and 0 <= now - self._battery_s < BATTERY_HEARTBEAT_S
        ):
            return False
        self._battery_pct = pct
        self._battery_charging = charging
        self._battery_s = now
        self.write(protocol.BATTERY, now, battery_mv, pct, charging)
        return True


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
