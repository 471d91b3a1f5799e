"""The firmware's tilt filter (device/lib/fusion.py): accuracy, behaviour, integer safety, heap.

The filter runs in two ways: as viper native code in the real ``micropython`` (what the board
runs) and, under CPython, as the same function on plain Python integers. Both must give the same
integers; both are checked against a float reference of the algorithm (tests/reference_fusion.py)
and against the truth of synthetic motions and of the real BROAD recordings.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from reference_fusion import run_reference

from emulator import DEVICE_DIR, REPO_ROOT, cpython
from emulator.micropython_cmd import run_micropython

cpython.install()
import fusion  # noqa: E402  (device/lib, importable after install())

ACCEL_UG_PER_LSB = 488  # +-16 g
GYRO_UDPS_PER_LSB = 70_000  # +-2000 deg/s
BROAD_DIR = Path(os.environ.get("POSTURE_BROAD_DIR", REPO_ROOT.parent / "shared" / "data" / "broad"))
MPY_SEARCH_PATH = [str(DEVICE_DIR / "lib"), ".frozen"]


# ---- inputs ------------------------------------------------------------------------------------


def to_raw(accel_g: np.ndarray, gyro_dps: np.ndarray) -> np.ndarray:
    """int16 samples (N, 6) as the IMU FIFO delivers them: ax ay az gx gy gz in LSBs."""
    acc = np.round(accel_g * 1e6 / ACCEL_UG_PER_LSB)
    gyr = np.round(gyro_dps * 1e6 / GYRO_UDPS_PER_LSB)
    return np.clip(np.hstack([acc, gyr]), -32768, 32767).astype("<i2")


def from_raw(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same samples in g and deg/s (what the float reference gets)."""
    raw = raw.astype(float)
    return raw[:, :3] * ACCEL_UG_PER_LSB * 1e-6, raw[:, 3:] * GYRO_UDPS_PER_LSB * 1e-6


@dataclass
class Motion:
    rate_hz: float
    raw: np.ndarray  # (N, 6) int16
    truth_up: np.ndarray  # (N, 3)
    valid: np.ndarray  # (N,) bool


def _quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    w0, x0, y0, z0 = p
    w1, x1, y1, z1 = q
    return np.array(
        [
            w0 * w1 - x0 * x1 - y0 * y1 - z0 * z1,
            w0 * x1 + x0 * w1 + y0 * z1 - z0 * y1,
            w0 * y1 - x0 * z1 + y0 * w1 + z0 * x1,
            w0 * z1 + x0 * y1 - y0 * x1 + z0 * w1,
        ]
    )


def _matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


UPRIGHT = np.array([np.cos(np.pi / 4), 0.0, -np.sin(np.pi / 4), 0.0])  # sensor x axis up


def simulate(
    segments: Sequence[tuple[float, Sequence[float], Sequence[float]]],
    rate_hz: float = 52.0,
    start: np.ndarray = UPRIGHT,
    gyro_offset_dps: tuple[float, float, float] = (0.0, 0.0, 0.0),
    seed: int = 0,
) -> Motion:
    """A rigid motion from segments (duration_s, rate_dps in the sensor frame, linear acceleration
    in g in the world frame); the rate is constant over each sample period, so it integrates
    exactly. Sensor noise: 1 mg and 0.05 deg/s white; plus a constant gyro offset."""
    rng = np.random.default_rng(seed)
    ts = 1.0 / rate_hz
    q = start / np.linalg.norm(start)
    acc, gyr, up = [], [], []
    for duration_s, rate_dps, lin_g in segments:
        w = np.radians(np.array(rate_dps, float))
        angle = np.linalg.norm(w) * ts
        axis = w / np.linalg.norm(w) if angle > 0 else np.zeros(3)
        step = np.r_[np.cos(angle / 2), np.sin(angle / 2) * axis]
        for _ in range(round(duration_s * rate_hz)):
            q = _quat_mul(q, step)
            r = _matrix(q)
            up.append(r[2])  # R^T (0, 0, 1)
            acc.append(r.T @ (np.array([0.0, 0.0, 1.0]) + np.array(lin_g, float)))
            gyr.append(np.array(rate_dps, float) + gyro_offset_dps)
    acc_g = np.array(acc) + rng.normal(0, 0.001, (len(acc), 3))
    gyro_dps = np.array(gyr) + rng.normal(0, 0.05, (len(gyr), 3))
    return Motion(rate_hz, to_raw(acc_g, gyro_dps), np.array(up), np.ones(len(up), bool))


def broad_trial(prefix: str) -> Motion:
    path = next(BROAD_DIR.glob(f"{prefix}*.csv.gz"), None)
    if path is None:
        pytest.fail(f"BROAD trial {prefix} missing in {BROAD_DIR} (set POSTURE_BROAD_DIR)")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    rate_hz = 1.0 / float(np.median(np.diff(table[:, 0])))
    return Motion(rate_hz, to_raw(table[:, 1:4], table[:, 4:7]), table[:, 7:10], table[:, 10] > 0.5)


# ---- running the firmware --------------------------------------------------------------------


def run_in_cpython(motion: Motion, batch: int = 26, settings=None) -> tuple[np.ndarray, list[int]]:
    """Up vector per sample (N, 3) in Q14 and the final state words, from the CPython integer path."""
    filt = fusion.FusionFilter(motion.rate_hz, ACCEL_UG_PER_LSB, GYRO_UDPS_PER_LSB, settings)
    data = bytearray(motion.raw.tobytes())
    n = len(motion.raw)
    up = array("h", [0] * (3 * n))
    for start in range(0, n, batch):
        m = min(batch, n - start)
        filt.update_batch(memoryview(data)[12 * start : 12 * (start + m)], m, memoryview(up)[3 * start :])
    return np.array(up, dtype=np.int64).reshape(n, 3), list(filt._state)


_MPY_RUNNER = """
from array import array
import fusion
f = fusion.FusionFilter(%(rate)r, %(accel)d, %(gyro)d)
buf = bytearray(12 * %(batch)d)
up = array("h", [0] * (3 * %(batch)d))
with open("raw.i16", "rb") as src, open("up.i16", "wb") as dst:
    while True:
        got = src.readinto(buf)
        if not got:
            break
        n = got // 12
        f.update_batch(buf, n, up)
        dst.write(memoryview(up)[: 3 * n])
print(list(f._state))
"""


def run_in_micropython(motion: Motion, tmp_path: Path, batch: int = 26) -> tuple[np.ndarray, list[int]]:
    """The same in the real micropython (viper native code)."""
    (tmp_path / "raw.i16").write_bytes(motion.raw.tobytes())
    code = _MPY_RUNNER % {
        "rate": motion.rate_hz,
        "accel": ACCEL_UG_PER_LSB,
        "gyro": GYRO_UDPS_PER_LSB,
        "batch": batch,
    }
    out = run_micropython(code, search_path=MPY_SEARCH_PATH, cwd=tmp_path)
    state = json.loads(out.strip().splitlines()[-1])
    up = np.frombuffer((tmp_path / "up.i16").read_bytes(), dtype="<i2").astype(np.int64).reshape(-1, 3)
    return up, state


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=1), -1.0, 1.0)))


def inclination_rmse_deg(up: np.ndarray, motion: Motion) -> float:
    return float(np.sqrt(np.mean(angle_deg(up, motion.truth_up)[motion.valid] ** 2)))


def reference_up(motion: Motion, **settings: float) -> np.ndarray:
    accel_g, gyro_dps = from_raw(motion.raw)
    return run_reference(accel_g, gyro_dps, motion.rate_hz, **settings)


# A workout for the filter: still, turns about every axis (with rate changes that exercise the
# coning term), shaking, a 2 g push, and still again.
WORKOUT = [
    (5.0, (0, 0, 0), (0, 0, 0)),
    (2.0, (0, 45, 0), (0, 0, 0)),
    (2.0, (60, 0, 20), (0, 0, 0)),
    (1.0, (0, 0, 0), (0, 0, 0)),
    (3.0, (-30, 90, 150), (0.2, 0, 0)),
    (1.0, (200, -100, 0), (0, 0.5, 0)),
    (1.0, (-200, 100, 0), (0, -0.5, 0)),
    (0.5, (0, 0, 0), (2.0, 0, 0)),
    (0.5, (0, 0, 0), (-2.0, 0, 0)),
    (4.0, (10, -20, 5), (0, 0, 0)),
    (5.0, (0, 0, 0), (0, 0, 0)),
]


# ---- fixed point vs float reference ----------------------------------------------------------


def test_fixed_point_filter_follows_the_float_reference_on_synthetic_motion():
    motion = simulate(WORKOUT)
    fixed, _ = run_in_cpython(motion)
    diff = angle_deg(fixed.astype(float), reference_up(motion))
    assert diff.max() < 0.05, f"max {diff.max():.4f} deg"
    assert np.sqrt(np.mean(diff**2)) < 0.02


@pytest.mark.parametrize("trial", ["07_", "18_"])
def test_fixed_point_filter_follows_the_float_reference_on_broad(trial):
    motion = broad_trial(trial)
    fixed, _ = run_in_cpython(motion)
    ref = reference_up(motion)
    diff = angle_deg(fixed.astype(float), ref)
    assert np.sqrt(np.mean(diff**2)) < 0.02, f"rms {np.sqrt(np.mean(diff**2)):.4f} deg"
    assert diff.max() < 0.05, f"max {diff.max():.4f} deg"
    assert abs(inclination_rmse_deg(fixed.astype(float), motion) - inclination_rmse_deg(ref, motion)) < 0.01


# ---- the two integer paths -------------------------------------------------------------------


def test_viper_in_micropython_and_the_cpython_integer_path_give_identical_integers(tmp_path):
    motion = broad_trial("18_")  # fast translations up to 10 g
    rng = np.random.default_rng(3)
    extreme = rng.choice([-32768, 32767], size=(300, 6)).astype("<i2")  # full scale, every axis
    motion = Motion(
        motion.rate_hz,
        np.vstack([motion.raw, extreme, motion.raw[:2000]]),
        np.vstack([motion.truth_up, np.zeros((300, 3)), motion.truth_up[:2000]]),
        np.r_[motion.valid, np.zeros(300, bool), motion.valid[:2000]],
    )
    up_cpython, state_cpython = run_in_cpython(motion)
    up_micropython, state_micropython = run_in_micropython(motion, tmp_path)
    assert np.array_equal(up_cpython, up_micropython)
    assert state_cpython == state_micropython


# ---- behaviour ---------------------------------------------------------------------------------


def test_filter_converges_from_a_wrong_state():
    # 10 s upright, then the sensor is found lying on its back (z up) without the gyro having seen
    # the turn (as after a FIFO overflow): the filter's gravity estimate is wrong by 90 deg.
    upright = simulate([(10.0, (0, 0, 0), (0, 0, 0))])
    lying = simulate([(25.0, (0, 0, 0), (0, 0, 0))], start=np.array([1.0, 0, 0, 0]), seed=1)
    motion = Motion(
        52.0,
        np.vstack([upright.raw, lying.raw]),
        np.vstack([upright.truth_up, lying.truth_up]),
        np.ones(len(upright.raw) + len(lying.raw), bool),
    )
    up, _ = run_in_cpython(motion)
    err = angle_deg(up.astype(float), motion.truth_up)
    switch = len(upright.raw)
    assert err[switch - 1] < 0.5
    assert err[switch + 26] > 45  # half a second later: still far off (the low-pass is slow)
    assert err[switch + 15 * 52 :].max() < 0.5  # settled within 15 s (5 time constants)


def test_gyro_bias_is_learned_at_rest_so_a_constant_offset_stops_causing_drift():
    # Upright and still, the gyro reads a constant offset about the two horizontal axes.
    offset_dps = (0.0, 0.8, -1.0)
    motion = simulate([(60.0, (0, 0, 0), (0, 0, 0))], gyro_offset_dps=offset_dps)
    filt = fusion.FusionFilter(motion.rate_hz, ACCEL_UG_PER_LSB, GYRO_UDPS_PER_LSB)
    filt.update_batch(bytearray(motion.raw[: 30 * 52].tobytes()), 30 * 52)
    assert filt.at_rest
    assert np.allclose(filt.gyro_bias_dps(), offset_dps, atol=0.03)

    learned, _ = run_in_cpython(motion)
    without = fusion.FusionSettings(bias_clip_dps=0.001)  # bias estimation clipped to nothing
    drifting, _ = run_in_cpython(motion, settings=without)
    last_10_s = slice(-10 * 52, None)
    assert angle_deg(learned.astype(float), motion.truth_up)[last_10_s].max() < 0.1
    assert angle_deg(drifting.astype(float), motion.truth_up)[last_10_s].min() > 2.0


def test_a_bias_at_the_lsm6dso_zero_rate_level_is_learned_while_the_wearer_sways():
    # A seated wearer is never perfectly still, and the LSM6DSO's zero-rate level reaches
    # 2 deg/s: with VQF's 2 deg/s bias clip rest was rarely detected, the bias stayed off and
    # the inertial low-pass lagged by bias x tau -- half a degree of wandering error, seconds of
    # alert latency on a slow slouch drift (docs/fusion.md).
    sway = [(2.0, (0.0, 0.5 if k % 2 else -0.5, 0.0), (0, 0, 0)) for k in range(120)]
    motion = simulate(sway, gyro_offset_dps=(1.8, -1.7, 0.9))
    last_4_min = slice(-240 * 52, None)
    ours, _ = run_in_cpython(motion)
    vqf_like, _ = run_in_cpython(motion, settings=fusion.FusionSettings(bias_clip_dps=2.0, tau_acc_rest_s=3.0))
    assert angle_deg(ours.astype(float), motion.truth_up)[last_4_min].mean() < 0.1
    assert angle_deg(vqf_like.astype(float), motion.truth_up)[last_4_min].mean() > 0.5


def test_a_slow_slouch_drift_while_seated_is_followed_without_lag():
    # A seated wearer sways and slowly creeps forward (0.05 deg/s: 15 deg in 5 minutes), as
    # before most sustained slouches. The sway passes rest detection, so the bias update takes
    # the drift's rate for bias and the estimate lags by rate x tau_acc_rest_s; it must still
    # follow the drift closely, or a slouch crosses the alert threshold late (docs/fusion.md).
    still = [(30.0, (0.0, 0.0, 0.0), (0, 0, 0))]
    drift = [(2.0, (0.0, 0.05 + (0.4 if k % 2 else -0.4), 0.0), (0, 0, 0)) for k in range(150)]
    motion = simulate(still + drift, gyro_offset_dps=(0.4, -0.6, 0.3))
    last_2_min = slice(-120 * 52, None)
    ours, _ = run_in_cpython(motion)
    before = fusion.FusionSettings(tau_acc_rest_s=1.0)  # the previous rest time constant
    old, _ = run_in_cpython(motion, settings=before)
    assert angle_deg(ours.astype(float), motion.truth_up)[last_2_min].mean() < 0.035
    assert angle_deg(old.astype(float), motion.truth_up)[last_2_min].mean() > 0.045


def test_linear_acceleration_bursts_barely_tilt_the_estimate():
    # Still and upright; then a push (0.5 g forward for 0.5 s, braking for 0.5 s), later 2 s of
    # shaking at +-2 g sideways (6.5 Hz; half-length first and last half-waves, so that the
    # sensor ends where it started), then still again.
    half_wave_s = 4 / 52
    shaking = [(half_wave_s / 2, (0, 0, 0), (0, 2.0, 0))]
    shaking += [(half_wave_s, (0, 0, 0), (0, 2.0 * (-1) ** k, 0)) for k in range(1, 26)]
    shaking += [(half_wave_s / 2, (0, 0, 0), (0, 2.0, 0))]
    motion = simulate(
        [(10.0, (0, 0, 0), (0, 0, 0)), (0.5, (0, 0, 0), (0.5, 0, 0)), (0.5, (0, 0, 0), (-0.5, 0, 0))]
        + [(5.0, (0, 0, 0), (0, 0, 0))]
        + shaking
        + [(8.0, (0, 0, 0), (0, 0, 0))]
    )
    up, _ = run_in_cpython(motion)
    err = angle_deg(up.astype(float), motion.truth_up)
    accel_only = angle_deg(from_raw(motion.raw)[0], motion.truth_up)  # tilt from the accelerometer alone
    push, shake = slice(10 * 52, 16 * 52), slice(16 * 52, None)
    assert accel_only[push].max() > 25 and accel_only[shake].max() > 60
    assert err[push].max() < 2.0, f"push: max {err[push].max():.2f} deg"
    assert err[shake].max() < 0.5, f"shaking: max {err[shake].max():.2f} deg"


def test_per_sample_output_and_latest_up_agree():
    motion = simulate(WORKOUT[:4])
    per_sample, _ = run_in_cpython(motion)
    filt = fusion.FusionFilter(motion.rate_hz, ACCEL_UG_PER_LSB, GYRO_UDPS_PER_LSB)
    data = bytearray(motion.raw.tobytes())
    for start in range(0, len(motion.raw), 26):  # the same batches, without per-sample output
        m = min(26, len(motion.raw) - start)
        filt.update_batch(memoryview(data)[12 * start : 12 * (start + m)], m)
    assert list(filt.up_q14) == per_sample[-1].tolist()
    assert np.allclose(filt.up(), per_sample[-1] / fusion.ONE_Q14)
    assert abs(np.linalg.norm(filt.up()) - 1.0) < 1e-3


def test_sensor_settings_the_fixed_point_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="16 g"):
        fusion.FusionFilter(52, 976, GYRO_UDPS_PER_LSB)  # +-32 g
    with pytest.raises(ValueError, match="per sample"):
        fusion.FusionFilter(12.5, ACCEL_UG_PER_LSB, 140_000)  # +-4000 deg/s at 12.5 Hz


# ---- integer safety and heap -------------------------------------------------------------------

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class Int32(int):
    """An int whose arithmetic fails as soon as a result leaves the signed 32-bit range: what
    viper's machine words hold on the ESP32."""

    __slots__ = ()


def _checked(op):
    def apply(self, other):
        result = op(self, other)
        if not INT32_MIN <= result <= INT32_MAX:
            raise OverflowError(f"{op.__name__}({int(self)}, {int(other)}) = {result} leaves int32")
        return Int32(result)

    return apply


for _name in ("add", "sub", "mul", "floordiv", "lshift", "rshift", "and", "or", "xor"):
    for _dunder in (f"__{_name}__", f"__r{_name}__"):
        setattr(Int32, _dunder, _checked(getattr(int, _dunder)))


class _CheckedPointer:
    """ptr16/ptr32 stand-in whose loads are Int32, so every value derived from them is checked."""

    def __init__(self, buf, load_format: str, store_format: str) -> None:
        raw = memoryview(buf).cast("B")
        self._load = raw.cast(load_format)  # type: ignore[call-overload]
        self._store = raw.cast(store_format)  # type: ignore[call-overload]

    def __getitem__(self, i: int) -> Int32:
        return Int32(self._load[i])

    def __setitem__(self, i: int, value: int) -> None:
        self._store[i] = value


def _run_checked(motion: Motion) -> float:
    plain = fusion.ptr16, fusion.ptr32
    fusion.ptr16 = lambda buf: _CheckedPointer(buf, "H", "h")
    fusion.ptr32 = lambda buf: _CheckedPointer(buf, "I", "i")
    try:
        up, _ = run_in_cpython(motion)
    finally:
        fusion.ptr16, fusion.ptr32 = plain
    return inclination_rmse_deg(up.astype(float), motion)


def _checked_broad_trial(path: Path) -> tuple[str, float]:
    return path.name, _run_checked(broad_trial(path.name[:3]))


def test_integer_arithmetic_stays_within_int32_on_all_broad_trials_and_full_scale_input():
    # Every intermediate of the CPython run is checked; viper on the ESP32 computes the same
    # integers (32-bit words), so no result there can have wrapped.
    rng = np.random.default_rng(7)
    for rate_hz in (26.0, 208.0):  # largest and smallest angle per sample
        hostile = rng.choice([-32768, 32767], size=(500, 6)).astype("<i2")
        noise = rng.integers(-32768, 32768, size=(500, 6)).astype("<i2")
        raw = np.vstack([hostile, noise])
        _run_checked(Motion(rate_hz, raw, np.tile([0.0, 0.0, 1.0], (len(raw), 1)), np.ones(len(raw), bool)))
    paths = sorted(BROAD_DIR.glob("*.csv.gz"))
    assert len(paths) == 16
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(pool.map(_checked_broad_trial, paths))
    assert all(rmse < 3.0 for rmse in results.values()), results


def test_update_batch_allocates_nothing_per_sample_in_micropython():
    code = """
import gc
from array import array
import fusion
f = fusion.FusionFilter(52, 488, 70000)
batches = []
for b in range(20):
    buf = bytearray(12 * 26)
    for i in range(26):  # tilted, turning a little
        s = 12 * i
        buf[s], buf[s + 1] = 0x00, 0x06
        buf[s + 4], buf[s + 5] = 0x00, 0x05
        buf[s + 6] = (b * 7 + i) & 0xFF
        buf[s + 10] = (b * 3) & 0xFF
    batches.append(buf)
up = array("h", [0] * (3 * 26))
f.update_batch(batches[0], 26, up)
f.update_batch(batches[1], 26)
for with_output in (False, True):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    for k in range(500):
        if with_output:
            f.update_batch(batches[k % 20], 26, up)
        else:
            f.update_batch(batches[k % 20], 26)
    after = gc.mem_alloc()
    gc.enable()
    print(after - before)
"""
    out = run_micropython(code, search_path=MPY_SEARCH_PATH)
    assert [int(x) for x in out.split()] == [0, 0]


# ---- accuracy bar --------------------------------------------------------------------------------


def test_broad_accuracy_in_micropython_beats_vqf_on_the_hardest_undisturbed_trials(tmp_path):
    # The full 16-trial comparison is `python -m bench fusion_broad`; here two trials: fast
    # rotations, and fast translations up to 10 g. Ours runs as on the board; VQF on the floats.
    vqf = pytest.importorskip("vqf")
    ours, theirs = [], []
    for i, prefix in enumerate(["07_", "18_"]):
        motion = broad_trial(prefix)
        (tmp_path / str(i)).mkdir()
        up, _ = run_in_micropython(motion, tmp_path / str(i))
        ours.append(inclination_rmse_deg(up.astype(float), motion))
        accel_g, gyro_dps = from_raw(motion.raw)
        out = vqf.VQF(1.0 / motion.rate_hz).updateBatch(
            np.ascontiguousarray(np.radians(gyro_dps)), np.ascontiguousarray(accel_g * 9.80665)
        )
        w, x, y, z = out["quat6D"].T
        vqf_up = np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)
        theirs.append(inclination_rmse_deg(vqf_up, motion))
    assert np.mean(ours) <= np.mean(theirs), (ours, theirs)
    assert all(o <= 2 * t for o, t in zip(ours, theirs, strict=True)), (ours, theirs)
