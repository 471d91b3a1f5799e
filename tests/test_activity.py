"""Activity per second: lying, static, moving, walking, not worn.

Scenario tests run the whole per-sample pipeline in real MicroPython on motion scenarios
(raw samples with the LSM6DSO's noise and bias); the unit tests feed synthetic raw samples to
the CPython path of the same code.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import protocol
from emulator import REPO_ROOT, cpython
from emulator.motion import Scenario

cpython.install()
sys.path.insert(0, str(REPO_ROOT))

import activity  # noqa: E402
from bench import posture_eval  # noqa: E402

LYING, STATIC, MOVING, WALKING, NOT_WORN = range(5)


def per_second_truth(rec, out) -> tuple[np.ndarray, np.ndarray]:
    n = len(out.seconds)
    mid = np.arange(n) * 52 + 26
    keep = mid < rec.n_samples
    return rec.truth["truth_activity"][mid[keep]], out.seconds["activity"][: keep.sum()]


@pytest.fixture(scope="module")
def scenario_seconds(tmp_path_factory):
    truth, found = [], []
    for name, seed, hours in (("walking", 4, 0.1), ("stairs", 4, 0.08), ("lying", 4, 0.12), ("off-body", 4, 0.15)):
        rec = posture_eval.ScenarioRun(name, seed, hours=hours).generate()
        out = posture_eval.simulate(rec, tmp_path_factory.mktemp(name))
        t, f = per_second_truth(rec, out)
        truth.append(t)
        found.append(f)
    return np.concatenate(truth), np.concatenate(found)


@pytest.mark.parametrize(
    "cls, recall", [(LYING, 0.95), (STATIC, 0.97), (WALKING, 0.95), (NOT_WORN, 0.85)], ids=protocol.ACTIVITIES[:2] + ("walking", "not_worn")
)
def test_per_second_recall_on_scenarios(scenario_seconds, cls, recall):
    truth, found = scenario_seconds
    mine = truth == cls
    assert mine.sum() > 60
    assert (found[mine] == cls).mean() >= recall


def test_per_second_accuracy_on_scenarios(scenario_seconds):
    truth, found = scenario_seconds
    assert (truth == found).mean() >= 0.95


def test_off_body_is_not_worn_after_not_worn_s_of_stillness(tmp_path):
    sc = Scenario(seed=21).sit(60, flexion_deg=2)
    off = sc.duration_s
    sc.off_body(120, desk_up=(0.0, 0.0, 1.0)).sit(60)
    rec = sc.render()
    out = posture_eval.simulate(rec, tmp_path)
    act = out.seconds["activity"]
    first = int(np.flatnonzero(act == NOT_WORN)[0])
    # handed off (5 s of handling), then 20 s perfectly still
    assert off + 20 <= first <= off + 30
    back = int(off + 120)
    assert (act[back + 10 :] != NOT_WORN).all()  # worn again as soon as it moves with the wearer


def test_upside_down_is_not_worn_within_seconds(tmp_path):
    sc = Scenario(seed=22).sit(30)
    off = sc.duration_s
    sc.off_body(60, desk_up=(-1.0, 0.0, 0.0)).sit(20)
    out = posture_eval.simulate(sc.render(), tmp_path)
    first = int(np.flatnonzero(out.seconds["activity"] == NOT_WORN)[0])
    assert first <= off + 15


def test_a_still_wearer_is_never_taken_for_off_body(tmp_path):
    # sitting and lying as still as people do: breathing and sway are always there
    rec = Scenario(seed=23).sit(600, flexion_deg=0).lie(600, "supine").render()
    out = posture_eval.simulate(rec, tmp_path)
    assert (out.seconds["activity"] != NOT_WORN).all()


# ---- unit tests on synthetic raw samples ----------------------------------------------------

ACCEL_LSB_PER_G = 1_000_000 / 244
GYRO_LSB_PER_DPS = 1_000_000 / 35000


def raw_samples(
    n: int, accel_g=(1.0, 0.0, 0.0), gyro_dps=(0.0, 0.0, 0.0), vibration_g=0.0, seed=0, breathing=False
) -> bytearray:
    """One second of raw samples (+-8 g, +-1000 dps) with the sensor's noise; `breathing` adds
    the 0.25 Hz trunk rotation of breathing (second `seed` of it)."""
    rng = np.random.default_rng(seed)
    a = np.tile(np.asarray(accel_g, float), (n, 1)) + rng.normal(0, 0.0004, (n, 3))
    a += vibration_g * np.where(np.arange(n) % 2, 1.0, -1.0)[:, None]  # the motor, aliased at 52 Hz
    g = np.tile(np.asarray(gyro_dps, float), (n, 1)) + rng.normal(0, 0.02, (n, 3))
    if breathing:
        t = seed + np.arange(n) / n
        g[:, 1] += 0.8 * np.sin(2 * np.pi * 0.25 * t)
    raw = np.column_stack((np.round(a * ACCEL_LSB_PER_G), np.round(g * GYRO_LSB_PER_DPS))).astype("<i2")
    return bytearray(raw.tobytes())


def second(a: activity.Activity, raw: bytearray, motor_on: bool = False) -> int:
    a.update(raw, 0, 52)
    return a.end_second(motor_on)


def test_motor_vibration_keeps_the_previous_class():
    a = activity.Activity(52, 244, 35000)
    for k in range(5):
        assert second(a, raw_samples(52, seed=k, breathing=True)) == STATIC
    buzzing = raw_samples(52, vibration_g=0.15, seed=5, breathing=True)
    assert second(a, buzzing, motor_on=True) == STATIC
    assert second(a, buzzing, motor_on=False) != STATIC  # read as the wearer moving


def test_gyro_bias_is_learned_at_rest():
    a = activity.Activity(52, 244, 35000)
    biased = [raw_samples(52, gyro_dps=(1.5, -1.0, 0.5), seed=k) for k in range(8)]
    second(a, biased[0])
    assert a.velocity_ddps >= 15  # 1.9 deg/s of bias reads as rotation at first
    for k in range(400):
        second(a, biased[k % 8])
    assert a.velocity_ddps <= 2
    assert a.still  # noise only


def test_sideways_and_backwards_tilt_is_lying_forwards_needs_time():
    a = activity.Activity(52, 244, 35000)
    assert second(a, raw_samples(52, accel_g=(0.0, 0.0, -1.0), breathing=True)) == LYING  # supine
    assert second(a, raw_samples(52, accel_g=(0.1, 1.0, 0.0), breathing=True)) == LYING  # on a side
    a = activity.Activity(52, 244, 35000)
    prone = [second(a, raw_samples(52, accel_g=(0.0, 0.0, 1.0), seed=k, breathing=True)) for k in range(6)]
    assert prone == [STATIC] * 4 + [LYING] * 2  # a deep bend does not last 5 s
    a = activity.Activity(52, 244, 35000)
    bent = (np.cos(np.radians(70)), 0.0, np.sin(np.radians(70)))  # a long hip hinge
    assert {second(a, raw_samples(52, accel_g=bent, seed=k, breathing=True)) for k in range(60)} == {STATIC}


def test_settings_from_config():
    s = activity.ActivitySettings.from_config({"not_worn_s": 45, "lying_deg": 55, "moving_gyro_dps": 20})
    assert (s.not_worn_s, s.lying_deg, s.moving_gyro_dps, s.walk_accel_mg) == (45, 55, 20, 40)
