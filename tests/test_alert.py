"""The posture alert: when it buzzes, when it must not, and what it logs.

The state machine is driven second by second with the activity class and flexion the
posture and activity stages produce (the real Haptic on the emulated PWM, the real protocol);
the scenario tests run the whole per-sample pipeline in real MicroPython on motion scenarios.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import protocol
from emulator import REPO_ROOT, cpython
from emulator.motion import Scenario

cpython.install()
sys.path.insert(0, str(REPO_ROOT))

import alert  # noqa: E402  (firmware modules: importable once the emulator is installed)
import haptic  # noqa: E402
from bench import posture_eval  # noqa: E402

STATIC = protocol.ACTIVITY_STATIC
WALKING = protocol.ACTIVITY_WALKING
MOVING = protocol.ACTIVITY_MOVING
LYING = protocol.ACTIVITY_LYING
NOT_WORN = protocol.ACTIVITY_NOT_WORN
T0 = 1_767_600_000  # a Monday 08:00 UTC, minute-aligned


class LogSink:
    """The log store's append(rtype, payload); keeps decoded events."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def append(self, rtype: int, payload: bytes) -> int:
        self.events.append({"type": protocol.RECORD_NAMES[rtype], **protocol.decode_payload(rtype, payload)})
        return len(self.events)

    def alerts(self) -> list[dict]:
        return [e for e in self.events if e["type"] == "alert"]


def make(**settings) -> tuple[alert.Alert, haptic.Haptic, LogSink]:
    motor = haptic.Haptic(25)
    sink = LogSink()
    return alert.Alert(alert.AlertSettings(**settings), motor, sink), motor, sink


def drive(a: alert.Alert, seconds, start_s: int = T0) -> list[int]:
    """Feed (activity, flexion_deg) per second; returns the seconds (from start_s) that buzzed."""
    buzzed = []
    for k, (activity, flexion_deg) in enumerate(seconds):
        ddeg = int(flexion_deg * 10)
        if a.update(start_s + k + 1, activity, ddeg, ddeg, ddeg):
            buzzed.append(k + 1)
    return buzzed


def hold(activity: int, flexion_deg: float, seconds: int):
    return [(activity, flexion_deg)] * seconds


# ---- the rules ------------------------------------------------------------------------------


def test_alert_fires_after_hold_time_not_before():
    a, motor, sink = make()
    buzzed = drive(a, hold(STATIC, 5, 10) + hold(STATIC, 28, 29) + hold(STATIC, 5, 20) + hold(STATIC, 28, 30))
    # 29 s above the threshold: nothing; the next spell fires on its 30th second
    assert buzzed == [10 + 29 + 20 + 30]
    assert motor.played == 1


def test_a_dip_below_the_threshold_restarts_the_hold():
    a, _motor, _sink = make()
    assert drive(a, hold(STATIC, 25, 20) + hold(STATIC, 19.5, 1) + hold(STATIC, 25, 29)) == []


@pytest.mark.parametrize("activity", [WALKING, MOVING, LYING, NOT_WORN], ids=["walking", "moving", "lying", "off_body"])
def test_no_alert_unless_static(activity):
    a, motor, sink = make()
    assert drive(a, hold(activity, 35, 120)) == []
    assert motor.played == 0 and sink.alerts() == []


def test_no_alert_while_walking():
    a, _motor, sink = make()
    # bent forward, but walking every few seconds: the spell never lasts
    assert drive(a, (hold(STATIC, 30, 20) + hold(WALKING, 30, 5)) * 6) == []
    assert sink.alerts() == []


def test_release_needs_the_hysteresis():
    a, _motor, sink = make(release_deg=5)
    buzzed = drive(a, hold(STATIC, 30, 30) + hold(STATIC, 17, 10) + hold(STATIC, 14, 1))
    assert buzzed == [30]
    (event,) = sink.alerts()
    # 17 deg is below the threshold but not below 20 - 5: still open; 14 deg corrects
    assert event["outcome"] == protocol.OUTCOME_CORRECTED
    assert event["time_to_correct_s"] == 11 and event["duration_s"] == 11
    assert event["start_s"] == T0 + 30
    assert event["peak_flexion_ddeg"] == 300


def test_escalation_when_ignored_then_timed_out():
    a, motor, sink = make(escalate_s=15, max_level=2, timeout_s=120)
    buzzed = drive(a, hold(STATIC, 30, 160))
    assert buzzed == [30]
    assert motor.played == 3  # level 0 at 30 s, level 1 at 45 s, level 2 at 60 s
    (event,) = sink.alerts()
    assert event["escalation_level"] == 2
    assert event["outcome"] == protocol.OUTCOME_TIMED_OUT
    assert event["time_to_correct_s"] is None
    assert event["duration_s"] == 120


def test_one_alert_per_spell():
    a, _motor, sink = make(timeout_s=60)
    drive(a, hold(STATIC, 30, 400))
    assert len(sink.alerts()) == 1


def test_cooldown_suppresses_the_next_buzz_but_logs_it():
    a, motor, sink = make(cooldown_s=300)
    seconds = hold(STATIC, 30, 32) + hold(STATIC, 5, 60) + hold(STATIC, 30, 32)
    buzzed = drive(a, seconds)
    assert buzzed == [30]
    assert motor.played == 1
    drive(a, hold(STATIC, 5, 2), start_s=T0 + len(seconds))  # closes the second (suppressed) alert
    first, second = sink.alerts()
    assert first["outcome"] == protocol.OUTCOME_CORRECTED
    assert second["outcome"] == protocol.OUTCOME_SUPPRESSED
    assert second["start_s"] == T0 + 32 + 60 + 30


def test_after_the_cooldown_it_buzzes_again():
    a, motor, _sink = make(cooldown_s=60)
    drive(a, hold(STATIC, 30, 32) + hold(STATIC, 5, 61) + hold(STATIC, 30, 31))
    assert motor.played == 2


def test_snooze_closes_the_alert_and_silences_the_next():
    a, motor, sink = make(snooze_s=600, cooldown_s=0)
    drive(a, hold(STATIC, 30, 35))
    a.snooze(T0 + 35)
    assert not motor.playing()
    drive(a, hold(STATIC, 5, 5) + hold(STATIC, 30, 40), start_s=T0 + 35)
    assert motor.played == 1
    snoozed = sink.alerts()[0]
    assert snoozed["outcome"] == protocol.OUTCOME_SNOOZED
    assert a.open and a.suppressed(T0 + 100) == "snoozed"


def test_daily_cap():
    a, motor, sink = make(daily_cap=2, cooldown_s=0)
    drive(a, (hold(STATIC, 30, 31) + hold(STATIC, 5, 5)) * 4)
    assert motor.played == 2
    assert [e["outcome"] for e in sink.alerts()].count(protocol.OUTCOME_SUPPRESSED) == 2
    # the next local day starts afresh
    drive(a, hold(STATIC, 30, 31), start_s=T0 + 86400)
    assert motor.played == 3


def test_quiet_hours_wrap_midnight_in_local_time():
    # 22:00-07:00 local, local = UTC+2: T0 is 10:00 local (no quiet), T0 + 13 h is 23:00 local
    a, motor, sink = make(quiet_start_min=22 * 60, quiet_end_min=7 * 60, tz_offset_min=120, cooldown_s=0)
    drive(a, hold(STATIC, 30, 31) + hold(STATIC, 5, 2))
    assert motor.played == 1
    drive(a, hold(STATIC, 30, 31) + hold(STATIC, 5, 2), start_s=T0 + 13 * 3600)
    assert motor.played == 1
    assert sink.alerts()[-1]["outcome"] == protocol.OUTCOME_SUPPRESSED
    assert a.suppressed(T0 + 21 * 3600) is None  # 07:00 local next day: quiet hours are over


def test_disabled_alerts_still_log_every_sustained_slouch():
    a, motor, sink = make(enabled=False)
    drive(a, hold(STATIC, 30, 31) + hold(STATIC, 5, 2))
    assert motor.played == 0
    assert [e["outcome"] for e in sink.alerts()] == [protocol.OUTCOME_SUPPRESSED]


def test_lying_down_ends_an_open_alert_as_corrected():
    a, _motor, sink = make()
    drive(a, hold(STATIC, 30, 31) + hold(LYING, 80, 2))
    assert sink.alerts()[0]["outcome"] == protocol.OUTCOME_CORRECTED


def test_every_parameter_comes_from_config():
    cfg = {
        "alert_enabled": False, "alert_threshold_deg": 25, "alert_hold_s": 45, "alert_release_deg": 3,
        "alert_cooldown_s": 100, "alert_snooze_s": 900, "alert_escalate_s": 20, "alert_max_level": 1,
        "alert_timeout_s": 90, "alert_daily_cap": 5, "quiet_start_min": 60, "quiet_end_min": 120,
        "tz_offset_min": -300,
    }  # fmt: skip
    s = alert.AlertSettings.from_config(cfg)
    got = {
        "alert_enabled": s.enabled, "alert_threshold_deg": s.threshold_deg, "alert_hold_s": s.hold_s,
        "alert_release_deg": s.release_deg, "alert_cooldown_s": s.cooldown_s, "alert_snooze_s": s.snooze_s,
        "alert_escalate_s": s.escalate_s, "alert_max_level": s.max_level, "alert_timeout_s": s.timeout_s,
        "alert_daily_cap": s.daily_cap, "quiet_start_min": s.quiet_start_min, "quiet_end_min": s.quiet_end_min,
        "tz_offset_min": s.tz_offset_min,
    }  # fmt: skip
    assert got == cfg


# ---- the motor ------------------------------------------------------------------------------


def test_haptic_patterns_play_without_blocking_and_mark_the_motor_window():
    import vboard  # type: ignore[import-not-found]
    import vclock  # type: ignore[import-not-found]

    vboard.state["spec"] = {"pins": {"motor": 25}}
    vboard.stats["motor_on_us"] = 0
    motor = haptic.Haptic(25, duty_pct=100)
    t0 = vclock.now_us()
    motor.play(haptic.PATTERNS[1])  # 3 x (250 ms on, 150 ms off)
    assert vclock.now_us() == t0  # play() returns at once
    assert motor.active()
    start_ms = vclock.now_us() // 1000
    steps = 0
    while True:
        wait = motor.tick()
        if wait < 0:
            break
        steps += 1
        vclock.advance_us(wait * 1000)
    elapsed_ms = vclock.now_us() // 1000 - start_ms
    assert elapsed_ms == 3 * 250 + 2 * 150
    assert not motor.playing()
    assert vboard.stats["motor_on_us"] == 3 * 250 * 1000 * 80 // 100  # duty 80 % of the maximum
    # the sensing code ignores the accelerometer until the rotor has spun down
    assert motor.active() and motor.on_since(start_ms)
    vclock.advance_us(200_000)
    assert not motor.active()
    assert motor.on_since(start_ms)
    vboard.state["spec"] = {}


# ---- on motion scenarios, through the whole pipeline in MicroPython ---------------------------


def run_scenario(sc: Scenario, tmp_path: Path, **settings) -> posture_eval.RunOutput:
    rec = sc.render()
    return posture_eval.simulate(rec, tmp_path, posture_eval.RunSettings(calibrate="ideal", **settings))


def alert_times(out: posture_eval.RunOutput) -> list[int]:
    return [r.fields()["start_s"] - posture_eval.START_UNIX_S for r in out.records if r.rtype == protocol.ALERT]


def test_scenario_alert_fires_after_hold_time_not_before(tmp_path):
    sc = Scenario(seed=5).sit(40, flexion_deg=0).slouch(25, flexion_deg=32).sit(40, flexion_deg=0)
    start = sc.duration_s
    sc.slouch(60, flexion_deg=32).sit(30, flexion_deg=0)
    out = run_scenario(sc, tmp_path)
    (t,) = alert_times(out)
    assert start + 30 <= t <= start + 33  # 3 s onset: the hold starts once above 20 deg


def test_no_alert_while_reaching(tmp_path):
    rec = posture_eval.ScenarioRun("reaching", 3, hours=0.1).generate()
    out = posture_eval.simulate(rec, tmp_path, posture_eval.RunSettings(calibrate="ideal"))
    assert alert_times(out) == []


def test_no_alert_while_lying(tmp_path):
    sc = Scenario(seed=6).sit(30, flexion_deg=0).lie(120, "prone").lie(120, "supine").sit(20)
    assert alert_times(run_scenario(sc, tmp_path)) == []


def test_no_alert_off_body_even_resting_tilted_on_the_desk(tmp_path):
    # on the desk the sensor reads like a 35 deg slouch, perfectly still
    sc = Scenario(seed=7).sit(30, flexion_deg=0).off_body(240, desk_up=(0.82, 0.0, 0.57)).sit(30, flexion_deg=0)
    out = run_scenario(sc, tmp_path)
    assert alert_times(out) == []
    assert (out.seconds["activity"] == NOT_WORN).sum() > 200
