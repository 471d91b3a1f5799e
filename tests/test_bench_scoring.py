"""The whole-firmware benchmark's alert scoring (bench/firmware.py)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np

import protocol
from emulator import REPO_ROOT
from emulator.recording import Recording

sys.path.insert(0, str(REPO_ROOT))
from bench import firmware  # noqa: E402


def _recording(seconds: int = 120, rate: int = 10) -> Recording:
    n = seconds * rate
    t = np.arange(n) / rate
    slouch = np.zeros(n, dtype=int)
    slouch[40 * rate : 100 * rate] = 1  # an episode from 40 s to 100 s: the alert is due at 70 s
    zero = np.zeros((n, 3))
    truth = {
        "truth_flexion_deg": np.where(slouch > 0, 25.0, 0.0),
        "truth_activity": np.full(n, protocol.ACTIVITY_STATIC),
        "truth_lateral_deg": np.zeros(n),
        "truth_worn": np.ones(n),
        "truth_slouch": slouch,
    }
    return Recording(t_s=t, accel_g=[zero], gyro_dps=[zero], truth=truth)


def _result(alert_starts: list[int], alerting_from: float | None, seconds: int = 120) -> SimpleNamespace:
    t = np.arange(0, seconds, 0.5)
    alerting = np.zeros_like(t) if alerting_from is None else (t >= alerting_from).astype(float)
    trace = np.column_stack([t, np.zeros_like(t), np.zeros_like(t), alerting]).tolist()
    alerts = [{"start_s": firmware.START_UNIX_S + s} for s in alert_starts]
    return SimpleNamespace(
        alerts=lambda: alerts,
        trace=trace,
        trace_columns=["t_s", "flexion_deg", "activity", "alerting"],
        records=[],
        board={},
    )


def test_an_alert_still_open_when_the_recording_ends_counts():
    # ALERT events are written when the alert closes; a run that ends first has logged nothing,
    # but the firmware did alert: the trace shows it.
    scored = firmware._score_run(_recording(), _result([], alerting_from=70.5), None)
    assert (scored["alerts"], scored["true_alerts"], scored["detected"]) == (1, 1, 1)
    assert scored["latencies"] == [0.0]


def test_logged_alerts_are_not_counted_twice_and_no_alert_is_no_alert():
    scored = firmware._score_run(_recording(), _result([71], alerting_from=None), None)
    assert (scored["alerts"], scored["true_alerts"], scored["detected"]) == (1, 1, 1)
    scored = firmware._score_run(_recording(), _result([], alerting_from=None), None)
    assert (scored["alerts"], scored["detected"]) == (0, 0)
