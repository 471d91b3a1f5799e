"""Posture angles: flexion, lateral bend, inclination; calibration; two-sensor curvature.

Geometry is checked on known up vectors (CPython, the plain-Python path of the viper kernel);
accuracy on motion scenarios with ground truth, through the whole per-sample pipeline in real
MicroPython; allocation and bit-identical results in both interpreters.
"""

from __future__ import annotations

import math
import shutil
import sys
from array import array

import numpy as np
import pytest

import protocol
from emulator import REPO_ROOT, cpython
from emulator.motion import Scenario

cpython.install()
sys.path.insert(0, str(REPO_ROOT))

import posture  # noqa: E402
from bench import posture_eval  # noqa: E402


class LogSink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def append(self, rtype: int, payload: bytes) -> int:
        self.events.append({"type": protocol.RECORD_NAMES[rtype], **protocol.decode_payload(rtype, payload)})
        return len(self.events)


def up_q14(vectors) -> array:
    out = array("h")
    for x, y, z in vectors:
        n = math.sqrt(x * x + y * y + z * z)
        out.extend(round(16384 * c / n) for c in (x, y, z))
    return out


def body_up(flexion_deg: float, lateral_deg: float = 0.0):
    """Up vector of a trunk flexed forward and bent to the right (docs/emulator.md frame)."""
    f, lat = math.radians(flexion_deg), math.radians(lateral_deg)
    return (math.cos(f) * math.cos(lat), math.sin(lat), math.sin(f) * math.cos(lat))


def angles_of(p: posture.Posture, vectors) -> list[tuple[int, int, int]]:
    buf = up_q14(vectors)
    p.update(buf, 0, len(vectors))
    a = p.angles
    return [(a[3 * i], a[3 * i + 1], a[3 * i + 2]) for i in range(len(vectors))]


def test_angles_of_known_up_vectors():
    p = posture.Posture(8)
    got = angles_of(
        p,
        [body_up(0), body_up(30), body_up(-10), body_up(0, 15), body_up(0, -25), body_up(90), (0, 0, -1), body_up(45, 10)],
    )
    assert got[0] == (0, 0, 0)
    assert got[1] == (300, 0, 300)  # forward flexion is positive
    assert got[2] == (-100, 0, -100)  # leaning back: negative flexion and inclination
    assert got[3] == (0, 150, 150)  # bending to the right: positive lateral
    assert got[4] == (0, -250, 250)
    assert got[5] == (900, 0, 900)
    assert got[6] == (-900, 0, -900)  # supine
    assert got[7][0] == 450 and got[7][1] == 100


def test_kernel_matches_float_reference_within_a_tenth_of_a_degree():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(400, 3))
    vectors[:, 0] += 1.5  # mostly upright, but every direction occurs
    p = posture.Posture(len(vectors))
    got = np.array(angles_of(p, vectors.tolist())) / 10
    q = np.array(up_q14(vectors.tolist())).reshape(-1, 3) / 16384  # what the kernel saw
    flexion = np.degrees(np.arctan2(q[:, 2], q[:, 0]))
    lateral = np.degrees(np.arctan2(q[:, 1], np.hypot(q[:, 0], q[:, 2])))
    inclination = np.degrees(np.arctan2(np.hypot(q[:, 1], q[:, 2]), q[:, 0])) * np.where(q[:, 2] < 0, -1, 1)
    assert np.abs(got[:, 0] - flexion).max() <= 0.1
    assert np.abs(got[:, 1] - lateral).max() <= 0.1
    assert np.abs(got[:, 2] - inclination).max() <= 0.1


def test_calibrate_makes_the_held_posture_neutral_and_logs_it():
    sink = LogSink()
    p = posture.Posture(52, protocol.SENSOR_UPPER, sink=sink)
    p.calibrate(protocol.CAL_BUTTON)
    tilted = [body_up(10)] * 52
    for second in range(5):
        angles_of(p, tilted)
        p.end_second(1000 + second, protocol.ACTIVITY_STATIC)
    (event,) = sink.events
    assert event["type"] == "calibration" and event["method"] == protocol.CAL_BUTTON
    assert (event["neutral_x_mg"], event["neutral_y_mg"], event["neutral_z_mg"]) == (985, 0, 174)
    assert event["spread_ddeg"] == 0
    assert event["time_s"] == 1000 + 3  # the first second skipped, the next three averaged
    assert angles_of(p, [body_up(10), body_up(30)]) == [(0, 0, 0), (200, 0, 200)]


def test_per_second_flexion_mean_low_and_peak():
    p = posture.Posture(52)
    angles_of(p, [body_up(20 + k / 10) for k in range(52)])
    p.end_second(1, protocol.ACTIVITY_STATIC)
    assert (p.flexion_min_ddeg, p.flexion_peak_ddeg) == (200, 251)
    assert p.flexion_ddeg in (225, 226)
    assert p.samples == 52


def test_flexion_error_against_truth_on_posture_scenarios(tmp_path):
    errors = []
    for name, seed in (("slouch-episodes", 3), ("reaching", 3)):
        rec = posture_eval.ScenarioRun(name, seed, hours=0.08).generate()
        out = posture_eval.simulate(rec, tmp_path / name, posture_eval.RunSettings(calibrate="ideal"))
        score = posture_eval.score_flexion(rec, out)
        errors.append(math.sqrt(score["sq_abs"] / score["n"]))
    # up vectors exact, angles from the Q14 vector and the atan table: a few hundredths
    assert max(errors) < 0.1


@pytest.mark.parametrize(
    "mount, limit_deg",
    [((0.0, 8.0, -8.0), 0.15), ((6.0, -6.0, 6.0), 0.5)],
    ids=["tilted-and-turned-in-the-back-plane", "also-twisted-about-the-spine"],
)
def test_rotated_mount_after_calibration(tmp_path, mount, limit_deg):
    sc = Scenario(seed=11, mounting_offset_deg=mount).sit(30, flexion_deg=0.0)
    sc.slouch(60, flexion_deg=35).reach(depth_deg=50).sit(40, flexion_deg=5).stand(30).walk(40)
    rec = sc.render()
    out = posture_eval.simulate(rec, tmp_path, posture_eval.RunSettings(calibrate="command"))
    assert out.calibrate_at_s is not None and out.calibrate_at_s < 30
    # from the calibration on, against the truth re-referenced to the calibration posture
    start = (out.calibrate_at_s + 5) * 52
    truth = rec.truth["truth_flexion_deg"]
    per_s = 52
    c = out.calibrate_at_s + posture_eval.CAL_SKIP_S
    offset = truth[c * per_s : (c + posture_eval.CAL_HOLD_S) * per_s].mean()
    err = out.angles_ddeg[start:, 0] / 10 - (truth[start:] - offset)
    assert np.sqrt(np.mean(err**2)) < limit_deg
    # uncalibrated, the mounting shows up in full
    raw_err = out.angles_ddeg[: 20 * 52, 0] / 10 - truth[: 20 * 52]
    assert np.abs(raw_err).mean() > 3


def test_hip_hinge_keeps_curvature_near_zero_while_flexion_increases(tmp_path):
    sc = Scenario(seed=12, two_sensors=True, start="stand").stand(20, flexion_deg=0)
    hinge_start = sc.duration_s
    sc.hip_hinge(depth_deg=50, hold_s=15)
    hinge_end = sc.duration_s
    sc.stand(30, flexion_deg=30)  # a standing slouch: the spine bends
    slouch_end = sc.duration_s
    out = posture_eval.simulate(sc.render(), tmp_path, posture_eval.RunSettings(calibrate="ideal"))
    sec = out.seconds
    hinge = sec[int(hinge_start) : int(hinge_end)]
    deep = hinge[hinge["flexion"] > 400]
    assert len(deep) >= 12  # the hold, bent over 40 deg at the upper sensor
    assert np.abs(deep["curvature"]).max() < 20  # < 2 deg: the spine stays straight
    slouch = sec[int(hinge_end) + 5 : int(slouch_end)]
    assert (slouch["flexion"] > 250).all()
    assert (slouch["curvature"] > 150).all()  # most of a slouch is spinal flexion
    curvature_minutes = [r.fields()["curvature_mean_ddeg"] for r in out.records if r.rtype in protocol.MINUTE_TYPES]
    assert all(c is not None for c in curvature_minutes)


def test_automatic_calibration_from_walking_when_never_calibrated(tmp_path):
    rec = Scenario(seed=13, mounting_offset_deg=(0.0, 7.0, 0.0), start="stand").stand(20).walk(150).sit(60).render()
    out = posture_eval.simulate(rec, tmp_path, posture_eval.RunSettings(calibrate="none"))
    events = [r.fields() for r in out.records if r.rtype == protocol.CALIBRATION]
    assert [e["method"] for e in events] == [protocol.CAL_AUTO_WALK]
    # the median walking posture turned back by ActiPASS's 6 deg walking lean is upright
    (error_deg,) = posture_eval.auto_walk_errors_deg(rec, out)
    act = rec.truth["truth_activity"]
    walking_lean = np.median(rec.truth["truth_flexion_deg"][act == protocol.ACTIVITY_WALKING])
    assert abs(error_deg - (walking_lean - 6.0)) < 1.0
    # without it, the 7 deg mounting tilt would read as 7 deg of flexion
    assert abs(error_deg) < 6.0


def test_the_wearers_calibration_is_kept_over_the_walking_reference(tmp_path):
    rec = Scenario(seed=14, start="stand").stand(20).walk(150).sit(30).render()
    out = posture_eval.simulate(rec, tmp_path, posture_eval.RunSettings(calibrate="ideal"))
    methods = [r.fields()["method"] for r in out.records if r.rtype == protocol.CALIBRATION]
    assert methods == [protocol.CAL_COMMAND]
    assert out.stats["neutral_source"] == protocol.CAL_COMMAND
    assert out.stats["reference"] is not None  # inclination is still zero-referenced to walking


ALLOCATION = """
import gc
from array import array
import activity, posture, protocol, summary

B = 26
up = array("h", bytes(6 * B))
raw = bytearray(12 * B)
upper = posture.Posture(B)
lower = posture.Posture(B, protocol.SENSOR_LOWER)
act = activity.Activity(52, 244, 35000)
summ = summary.Summary(52, None)
seed = 12345

def fill(seed):
    # a wobbling trunk and noisy raw samples, different in every batch
    for i in range(B):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        wob = (seed >> 16) & 0x3FF
        up[3 * i] = 15000 + (wob >> 2)
        up[3 * i + 1] = wob - 512
        up[3 * i + 2] = 3000 + wob * 4
        for k in range(6):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            v = ((seed >> 8) & 0x3FFF) - 0x2000
            raw[12 * i + 2 * k] = v & 0xFF
            raw[12 * i + 2 * k + 1] = (v >> 8) & 0xFF
    return seed

total = 0
for batch in range(400):
    seed = fill(seed)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    upper.update(up, 0, 13)
    act.update(raw, 0, 13)
    summ.add_samples(upper.angles, 0, 13)
    lower.update(up, 13, B)
    upper.update(up, 13, B)
    act.update(raw, 13, B)
    summ.add_samples(upper.angles, 13, B)
    total += gc.mem_alloc() - before
    gc.enable()
    if batch % 2:
        code = act.end_second(False)
        upper.end_second(1000 + batch, code)
        lower.end_second(1000 + batch, code)
print("samples", 400 * B, "allocated", total)
"""


def test_per_sample_path_allocates_nothing_in_micropython(micropython):
    out = micropython(ALLOCATION)
    assert out.split() == ["samples", str(400 * 26), "allocated", "0"]


def test_pipeline_is_bit_identical_in_micropython_and_cpython(tmp_path):
    # every stage, two sensors, every activity; the CPython run uses the plain-Python kernels
    sc = Scenario(seed=15, two_sensors=True, mounting_offset_deg=(2.0, 3.0, -4.0)).sit(20, flexion_deg=0)
    sc.slouch(40, flexion_deg=33).reach(depth_deg=55).stand(10).walk(25).lie(20, "left").off_body(30).sit(15)
    rec = sc.render()
    mpy = posture_eval.simulate(rec, tmp_path / "mpy", posture_eval.RunSettings(calibrate="command"))
    shutil.copytree(tmp_path / "mpy", tmp_path / "cpy")
    posture_eval.run_driver(tmp_path / "cpy", interpreter="cpython")
    for name in ("records.bin", "angles.bin", "seconds.bin"):
        assert (tmp_path / "mpy" / name).read_bytes() == (tmp_path / "cpy" / name).read_bytes(), name
    assert len(mpy.records) > 5


def test_a_button_calibration_holds_from_a_sample_not_from_the_seconds_phase():
    # The wearer sways: the hold must be the samples from skip on, not whole seconds, or the
    # neutral moves with where the press fell within a second (a degree of alert threshold).
    sink = LogSink()
    p = posture.Posture(52, protocol.SENSOR_UPPER, sink=sink)
    angles_of(p, [body_up(0)] * 20)  # the press lands 20 samples into a second
    p.calibrate(protocol.CAL_BUTTON, skip_samples=40, samples_per_s=52)
    ups = [body_up(5)] * 40 + [body_up(10)] * (3 * 52) + [body_up(5)] * 60
    angles_of(p, ups[:32])
    p.end_second(1001, protocol.ACTIVITY_STATIC)
    for k in range(32, len(ups), 52):
        angles_of(p, ups[k : k + 52])
        p.end_second(1002 + k // 52, protocol.ACTIVITY_STATIC)
    (event,) = sink.events
    assert (event["neutral_x_mg"], event["neutral_y_mg"], event["neutral_z_mg"]) == (985, 0, 174)
    assert event["spread_ddeg"] == 0
    assert angles_of(p, [body_up(10), body_up(30)]) == [(0, 0, 0), (200, 0, 200)]
