"""Events the firmware core raises (device/lib/eventlog.py)."""

from __future__ import annotations

import sys

import protocol
from emulator import DEVICE_DIR

sys.path.insert(0, str(DEVICE_DIR / "lib"))
import eventlog  # noqa: E402


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[int, dict]] = []

    def append(self, rtype: int, payload: bytes) -> int:
        self.records.append((rtype, protocol.decode_payload(rtype, payload)))
        return len(self.records)


def test_battery_is_logged_only_when_the_reading_says_something_new():
    log = Log()
    now = [1_767_600_000]
    events = eventlog.EventLog(log, lambda: now[0])
    logged = []
    # A cell losing ~3.3 mV an hour, read every 10 minutes for 12 hours, then put on the charger.
    for k in range(72):
        now[0] += 600
        logged.append(events.battery(4150 - k * 55 // 100, False))
    now[0] += 600
    assert events.battery(4180, True)  # the charger: always news
    battery = [f for rtype, f in log.records if rtype == protocol.BATTERY]
    assert logged[0]  # the first reading after boot
    assert 3 <= len(battery) <= 6  # not 73
    steady = battery[:-1]
    for before, after in zip(steady, steady[1:], strict=False):
        moved = abs(after["percent"] - before["percent"]) >= eventlog.BATTERY_STEP_PCT
        assert moved or after["time_s"] - before["time_s"] >= eventlog.BATTERY_HEARTBEAT_S
    assert battery[-1]["charging"] == 1


def test_battery_heartbeat_when_the_level_holds():
    log = Log()
    now = [1_000_000]
    events = eventlog.EventLog(log, lambda: now[0])
    for _ in range(6 * 13):  # 13 hours of readings at a steady level
        events.battery(3900, False)
        now[0] += 600
    assert len(log.records) == 3  # boot reading, then one every 6 hours
