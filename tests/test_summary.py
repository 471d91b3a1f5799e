"""The minute summary and the posture bouts: what reaches the log, and how big it is.

Unit tests feed the real Posture with up vectors of known angles (CPython path); the
scenario tests run the whole per-sample pipeline in real MicroPython.
"""

from __future__ import annotations

import math
import sys
from array import array

import protocol
from emulator import REPO_ROOT, cpython

cpython.install()
sys.path.insert(0, str(REPO_ROOT))

import posture  # noqa: E402
import summary  # noqa: E402
from bench import posture_eval  # noqa: E402

LYING, STATIC, MOVING, WALKING, NOT_WORN = range(5)
T0 = 1_767_600_000  # minute-aligned


class LogSink:
    def __init__(self) -> None:
        self.records: list[tuple[int, dict]] = []
        self.bytes = 0

    def append(self, rtype: int, payload: bytes) -> int:
        self.records.append((rtype, protocol.decode_payload(rtype, payload)))
        self.bytes += len(protocol.encode_record(len(self.records), rtype, payload))
        return len(self.records)

    def minutes(self) -> list[dict]:
        return [f for t, f in self.records if t in protocol.MINUTE_TYPES]

    def bouts(self) -> list[dict]:
        return [f for t, f in self.records if t == protocol.BOUT]


class Wearer:
    """Upper (and optionally lower) posture and the summary, one second at a time."""

    def __init__(self, two_sensors: bool = False) -> None:
        self.sink = LogSink()
        self.upper = posture.Posture(52)
        self.lower = posture.Posture(52, protocol.SENSOR_LOWER) if two_sensors else None
        self.summary = summary.Summary(52, self.sink)
        self.t = T0

    @staticmethod
    def up(flexion_deg: float, lateral_deg: float = 0.0) -> array:
        f, lat = math.radians(flexion_deg), math.radians(lateral_deg)
        v = (math.cos(f) * math.cos(lat), math.sin(lat), math.sin(f) * math.cos(lat))
        return array("h", [round(16384 * c) for c in v] * 52)

    def second(self, flexion_deg: float, activity: int = STATIC, lateral_deg: float = 0.0, lower_deg=None,
               velocity_ddps: int = 30, alerts: int = 0, samples: int = 52) -> None:  # fmt: skip
        self.upper.update(self.up(flexion_deg, lateral_deg), 0, samples)
        self.summary.add_samples(self.upper.angles, 0, samples)
        self.t += 1
        self.upper.end_second(self.t, activity)
        curvature = None
        if self.lower is not None:
            self.lower.update(self.up(lower_deg if lower_deg is not None else flexion_deg), 0, samples)
            self.lower.end_second(self.t, activity)
            curvature = self.upper.flexion_ddeg - self.lower.flexion_ddeg
        self.summary.add_second(self.t, activity, self.upper, velocity_ddps, alerts, curvature)

    def seconds(self, n: int, flexion_deg: float, **kw) -> None:
        for _ in range(n):
            self.second(flexion_deg, **kw)


def test_minute_histograms_count_the_seconds_in_each_bin():
    w = Wearer()
    w.seconds(20, 2.5)
    w.seconds(30, 33, lateral_deg=-12)
    w.seconds(10, 95, activity=MOVING)
    w.second(1)  # the next minute starts: this one is written
    (m,) = w.sink.minutes()
    assert m["start_s"] == T0 and m["worn_s"] == 60
    assert m["activity_s"] == [0, 50, 10, 0, 0]
    flexion = [0] * 20
    flexion[1], flexion[7], flexion[19] = 20, 30, 10
    assert m["flexion_bins_s"] == flexion
    assert m["inclination_bins_s"] == flexion  # calibrated = walking reference here
    assert m["lateral_bins_s"] == [0, 30, 30, 0, 0]
    assert m["mean_velocity_ddps"] == 30
    assert m["curvature_mean_ddeg"] is None


def test_lying_seconds_are_left_out_of_the_posture_histograms():
    w = Wearer()
    w.seconds(40, 90, activity=LYING)
    w.seconds(20, 5)
    w.second(5)
    (m,) = w.sink.minutes()
    assert m["worn_s"] == 60 and m["activity_s"][LYING] == 40
    assert sum(m["flexion_bins_s"]) == 20 and m["flexion_bins_s"][2] == 20
    assert w.sink.bouts() == []  # 40 s at 90 deg lying down is no posture bout


def test_a_minute_without_worn_seconds_is_not_written():
    w = Wearer()
    w.seconds(60, 30, activity=NOT_WORN)
    w.seconds(60, 30, activity=NOT_WORN)
    w.seconds(30, 5, activity=NOT_WORN)
    w.seconds(30, 5)
    w.second(5)
    (m,) = w.sink.minutes()  # two empty minutes cost nothing
    assert m["start_s"] == T0 + 120
    assert m["worn_s"] == 30 and m["activity_s"] == [0, 30, 0, 0, 30]
    assert sum(m["flexion_bins_s"]) == 30


def test_bout_events_only_for_spells_longer_than_4_s():
    w = Wearer()
    w.seconds(5, 0)
    w.seconds(4, 30)  # 4 s: not a bout
    w.seconds(5, 0)
    w.seconds(5, 25)
    w.second(45)  # its peak
    w.seconds(2, 0)
    bout_start = w.t
    w.seconds(12, 35, activity=MOVING)  # bending while moving is a bout too
    w.seconds(3, 10)
    first, second = w.sink.bouts()
    assert first["duration_s"] == 6 and first["peak_flexion_ddeg"] == 450
    assert first["mean_flexion_ddeg"] == round((5 * 250 + 450) / 6)
    assert second["start_s"] == bout_start and second["duration_s"] == 12


def test_longest_bout_is_counted_within_each_minute():
    w = Wearer()
    w.seconds(40, 5)
    w.seconds(35, 30)  # 20 s in the first minute, 15 s in the second
    w.seconds(5, 5)
    w.seconds(18, 30)
    w.seconds(30, 5)
    first, second = w.sink.minutes()
    assert first["longest_bout_s"] == 20
    assert second["longest_bout_s"] == 18
    (bout,) = [b for b in w.sink.bouts() if b["duration_s"] == 35]
    assert bout["start_s"] == T0 + 40


def test_a_minute_that_counted_61_seconds_still_encodes():
    # The IMU's clock and the RTC disagree a little: 61 one-second steps in an RTC minute.
    w = Wearer()
    for k in range(61):
        w.upper.update(w.up(12), 0, 52)
        w.summary.add_samples(w.upper.angles, 0, 52)
        w.upper.end_second(T0 + 1 + k * 59 // 60, STATIC)
        w.summary.add_second(T0 + 1 + k * 59 // 60, STATIC, w.upper, 20)
    w.summary.flush()
    (m,) = w.sink.minutes()
    assert m["worn_s"] == 60 and sum(m["activity_s"]) == 60 and sum(m["flexion_bins_s"]) == 60


def test_partial_seconds_and_alert_count():
    w = Wearer()
    w.seconds(30, 22, samples=40)  # a sensor that delivered fewer samples: still whole seconds
    w.second(22, alerts=1)
    w.seconds(29, 2)
    w.summary.flush()
    (m,) = w.sink.minutes()
    assert m["alert_count"] == 1
    assert sum(m["flexion_bins_s"]) == 60
    assert m["flexion_bins_s"][5] == 31 and m["flexion_bins_s"][1] == 29


def test_curvature_mean_with_two_sensors():
    w = Wearer(two_sensors=True)
    w.seconds(30, 30, lower_deg=10)  # slouch: 20 deg of spinal flexion
    w.seconds(30, 40, lower_deg=40)  # hip hinge: none
    w.summary.flush()
    (m,) = w.sink.minutes()
    assert m["curvature_mean_ddeg"] == 100


def test_log_stays_near_2_kb_per_worn_hour_on_an_office_hour(tmp_path):
    rec = posture_eval.ScenarioRun("office-hour", 30).generate()
    out = posture_eval.simulate(rec, tmp_path)
    worn_h = rec.truth["truth_worn"].sum() / rec.rate_hz / 3600
    per_hour = posture_eval.log_bytes(out) / worn_h
    minutes = [r for r in out.records if r.rtype in protocol.MINUTE_TYPES]
    assert len(minutes) == 60
    # a quiet sitting minute is 29 bytes framed; reaches and slouches spread the histograms
    assert per_hour <= 2300
    for r in minutes:
        f = r.fields()
        assert sum(f["flexion_bins_s"]) == f["worn_s"] - f["activity_s"][LYING]
