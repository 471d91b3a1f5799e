"""Posture, activity, alert and summary firmware over a suite of scenario worker-hours.

Each scenario recording is turned into what the firmware sees once the fusion filter is wired:
per sample the up vector (here the scenario's *truth* up vector, Q14) and the raw IMU sample
(the scenario's accelerometer and gyroscope with the LSM6DSO's bias and white noise, quantised
at +-8 g / +-1000 dps: 244 ug/LSB, 35000 udps/LSB). Those go to a binary file, and
``DRIVER`` -- the per-batch/per-second/per-minute glue that ``device/main.py`` runs -- feeds
them through ``posture``, ``activity``, ``alert`` and ``summary`` in the real ``micropython``
(one process per scenario run), measuring heap allocation on the per-sample path with
``gc.mem_alloc()``. The log records it writes, the per-sample angles and the per-second
classes are then scored against the scenario's ground truth:

- sustained-slouch alerts (``alert_episodes``, ``score_alert_times``): the truth flexion is
  taken from the neutral the firmware was given (true upright, then the posture the wearer
  calibrated in); an ALERT event (buzzed or suppressed: every detection) is a true positive
  when it falls inside an episode of static flexion above 20 deg - ANGLE_TOLERANCE_DEG, at
  least the hold time (30 s) after its start (1 s of slack for whole-second timestamps); an
  episode that stays above 20 deg + ANGLE_TOLERANCE_DEG for the hold time must be detected,
  and its latency counts from the end of that stretch; ``strict`` repeats the scoring with no
  tolerance (docs/benchmarks.md, `firmware`);
- flexion RMS error against ``truth_flexion_deg`` (worn, not lying), both as is and after
  removing the truth flexion of the posture the wearer calibrated in;
- per-second activity accuracy and confusion matrix against ``truth_activity`` (the label at
  the middle of each second);
- log bytes per worn hour (framed records), heap bytes allocated per sample.

Development runs (scenario seeds used while writing the firmware) and the held-out runs of
``emulator.scenarios.held_out_set()`` are reported separately.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import protocol
from emulator import cpython
from emulator.micropython_cmd import default_search_path, micropython_path
from emulator.recording import SLOUCH_THRESHOLD_DEG, Recording, label_slouch_episodes
from emulator.scenarios import ScenarioRun, held_out_set

ODR_HZ = 52
BATCH = 26  # samples per FIFO drain (500 ms at 52 Hz)
ACCEL_UG_PER_LSB = 244  # +-8 g
GYRO_UDPS_PER_LSB = 35000  # +-1000 dps
START_UNIX_S = 1_767_600_000  # a Monday, minute-aligned
HOLD_S = 30
ALERT_SLACK_S = 1.0
# The alert scoring's angle tolerance: alerts are judged against the flexion relative to the
# calibrated neutral, and neither required nor wrong while it is within this of the threshold
# (docs/benchmarks.md, `firmware`, says why). 0 gives the strict figures, reported alongside.
ANGLE_TOLERANCE_DEG = 0.5

# LSM6DSO noise densities (datasheet, high-performance mode) at 52 Hz: sqrt(ODR/2) bandwidth.
ACCEL_NOISE_G = 70e-6 * np.sqrt(ODR_HZ / 2)
GYRO_NOISE_DPS = 3.8e-3 * np.sqrt(ODR_HZ / 2)

INPUT_MAGIC = b"PEV1"
INPUT_HEADER = struct.Struct("<4sHHHHIIII")  # magic, odr, sensors, batch, 0, samples, ug, udps, start
SECOND_DTYPE = [
    ("activity", "u1"), ("alerts", "u1"), ("flexion", "<i2"), ("inclination", "<i2"), ("curvature", "<i2"),
    ("velocity", "<u2"), ("accel_sd", "<u2"), ("periodicity", "<i2"), ("tilt", "<u2"), ("still", "u1"),
]  # per-second row of DRIVER's seconds.bin (angles 0.1 deg, sd 0.1 mg, periodicity Q10)

DEVELOPMENT_SET: tuple[ScenarioRun, ...] = (
    ScenarioRun("office-hour", 1),
    ScenarioRun("office-hour", 2, two_sensors=True),
    ScenarioRun("office-hour", 10),
    ScenarioRun("office-hour", 11),
    ScenarioRun("office-hour", 12),
    ScenarioRun("office-hour", 13, two_sensors=True),
    ScenarioRun("office-hour", 14, mounting_offset_deg=(3.0, -5.0, 6.0)),
    ScenarioRun("office-hour", 15),
    ScenarioRun("office-day", 10, hours=8.0),
    ScenarioRun("slouch-episodes", 1),
    ScenarioRun("slouch-episodes", 10),
    ScenarioRun("slouch-episodes", 11, two_sensors=True),
    ScenarioRun("hip-hinge", 1, two_sensors=True),
    ScenarioRun("walking", 1),
    ScenarioRun("stairs", 1),
    ScenarioRun("lying", 1),
    ScenarioRun("lying", 10),
    ScenarioRun("off-body", 1),
    ScenarioRun("off-body", 10),
    ScenarioRun("rotated-mount", 1),
    ScenarioRun("rotated-mount", 10, two_sensors=True),
    ScenarioRun("reaching", 1),
    ScenarioRun("reaching", 10),
)

# ---------------------------------------------------------------------------------------------
# The firmware side: runs in micropython (and, for the bit-identical check, in CPython).

DRIVER = r'''
import gc
import json
import os
import struct
from array import array

import activity
import alert
import posture
import protocol
import summary

try:
    mem_alloc = gc.mem_alloc
except AttributeError:  # CPython
    def mem_alloc():
        return 0


class FileSink:
    """The log store's append(rtype, payload), framing records into a file."""

    def __init__(self, f):
        self.f = f
        self.seq = 0

    def append(self, rtype, payload):
        self.seq += 1
        self.f.write(protocol.encode_record(self.seq, rtype, payload))
        return self.seq


def _apply(settings, values):
    for key in values:
        setattr(settings, key, values[key])
    return settings


def main(folder):
    with open(folder + "/run.json") as f:
        run = json.loads(f.read())
    src = open(folder + "/input.bin", "rb")
    head = src.read(32)
    _m, odr, sensors, batch, _z, total, acc_ug, gyr_udps, start_s = struct.unpack("<4sHHHHIIII", head[:28])
    records = open(folder + "/records.bin", "wb")
    angles_out = open(folder + "/angles.bin", "wb")
    seconds_out = open(folder + "/seconds.bin", "wb")
    sink = FileSink(records)

    # ---- the parts, as main.py builds them
    up0 = array("h", bytes(6 * batch))
    raw0 = bytearray(12 * batch)
    up1 = array("h", bytes(6 * batch))
    raw1 = bytearray(12 * batch)
    upper = posture.Posture(batch, protocol.SENSOR_UPPER, _apply(posture.PostureSettings(), run["posture"]), sink)
    lower = None
    if sensors == 2:
        lower = posture.Posture(batch, protocol.SENSOR_LOWER, _apply(posture.PostureSettings(), run["posture"]), sink)
    act = activity.Activity(odr, acc_ug, gyr_udps, _apply(activity.ActivitySettings(), run["activity"]))
    alarm = alert.Alert(_apply(alert.AlertSettings(), run["alert"]), None, sink)
    summ = summary.Summary(odr, sink)

    calibrate_at = run["calibrate_at_s"]
    ideal = run["ideal_neutral"]
    snoozes = run["snooze_at_s"]
    left = odr  # samples until the end of the current second
    second = 0
    alloc_sample = 0
    alloc_second = 0
    seconds_measured = 0
    done = 0
    gc.collect()
    while done < total:
        n = total - done
        if n > batch:
            n = batch
        src.readinto(up0)
        src.readinto(raw0)
        if lower is not None:
            src.readinto(up1)
            src.readinto(raw1)
        i = 0
        while i < n:
            k = i + left
            if k > n:
                k = n
            # ---- per sample: allocation-free
            gc.disable()
            m0 = mem_alloc()
            upper.update(up0, i, k)
            act.update(raw0, i, k)
            summ.add_samples(upper.angles, i, k)
            if lower is not None:
                lower.update(up1, i, k)
            alloc_sample += mem_alloc() - m0
            gc.enable()
            left -= k - i
            i = k
            if left:
                continue
            # ---- per second
            left = odr
            second += 1
            now_s = start_s + second
            gc.disable()
            m0 = mem_alloc()
            code = act.end_second(False)
            upper.end_second(now_s, code)
            curvature = None
            if lower is not None:
                lower.end_second(now_s, code)
                curvature = upper.flexion_ddeg - lower.flexion_ddeg
            act.reference = upper.neutral
            buzzed = alarm.update(now_s, code, upper.flexion_ddeg, upper.flexion_min_ddeg, upper.flexion_peak_ddeg)
            summ.add_second(now_s, code, upper, act.velocity_ddps, buzzed, curvature)
            if second == 5 and ideal is not None:
                upper.set_neutral(ideal[0], protocol.CAL_COMMAND, now_s)
                if lower is not None:
                    lower.set_neutral(ideal[1], protocol.CAL_COMMAND, now_s)
            if second == calibrate_at:
                upper.calibrate(protocol.CAL_COMMAND)
                if lower is not None:
                    lower.calibrate(protocol.CAL_COMMAND)
            if second in snoozes:
                alarm.snooze(now_s)
            m1 = mem_alloc()
            gc.enable()
            if m1 >= m0:  # a collection inside would make the difference meaningless
                alloc_second += m1 - m0
                seconds_measured += 1
            seconds_out.write(
                struct.pack(
                    "<BBhhhHHhHB", code, buzzed, upper.flexion_ddeg, upper.inclination_ddeg,
                    0 if curvature is None else curvature, act.velocity_ddps,
                    min(int(act.accel_sd_mg * 10), 65535), act.periodicity_q10,
                    int(act.tilt_deg * 10), 1 if act.still else 0,
                )
            )
            if second % 60 == 0:
                gc.collect()
        angles_out.write(memoryview(upper.angles)[: 3 * n])
        done += n
    summ.flush()
    alarm.close(start_s + second)
    for f in (records, angles_out, seconds_out, src):
        f.close()
    with open(folder + "/stats.json", "w") as f:
        f.write(json.dumps({
            "samples": total, "seconds": second,
            "alloc_sample_bytes": alloc_sample, "alloc_second_bytes": alloc_second,
            "seconds_measured": seconds_measured,
            "neutral": list(upper.neutral), "neutral_source": upper.neutral_source,
            "reference": None if upper.reference is None else list(upper.reference),
        }))


main(FOLDER)
'''


# ---------------------------------------------------------------------------------------------
# Host side: inputs, running, scoring


@dataclass
class RunSettings:
    """What the simulated wearer does and how the firmware is set (settings objects' fields)."""

    # "command": the wearer sends the calibrate command at the first moment they sit or stand
    # upright and still (calibration_second); "ideal": the neutral is set to the true upright
    # up vector of each sensor at 5 s (a perfect calibration, to judge the alert logic alone);
    # "none": never calibrated (default neutral, then the automatic walking reference).
    calibrate: str = "command"
    snooze_at_s: Sequence[int] = ()
    posture: dict[str, Any] = field(default_factory=dict)
    activity: dict[str, Any] = field(default_factory=dict)
    alert: dict[str, Any] = field(default_factory=dict)
    noise: bool = True
    seed: int = 0


def quantised_inputs(rec: Recording, sensor: int, rng: np.random.Generator, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(up Q14 int16 (n, 3), raw int16 (n, 6)) of one sensor."""
    up = rec.truth_up(sensor)
    up = up / np.linalg.norm(up, axis=1, keepdims=True)
    up_q14 = np.clip(np.round(up * 16384), -32768, 32767).astype("<i2")
    accel = rec.accel_g[sensor].copy()
    gyro = rec.gyro_dps[sensor].copy()
    if noise:
        accel += rng.uniform(-0.01, 0.01, 3) + rng.normal(0.0, ACCEL_NOISE_G, accel.shape)
        gyro += rng.uniform(0.5, 2.0, 3) * rng.choice([-1.0, 1.0], 3) + rng.normal(0.0, GYRO_NOISE_DPS, gyro.shape)
    raw = np.column_stack(
        (np.round(accel * 1e6 / ACCEL_UG_PER_LSB), np.round(gyro * 1e6 / GYRO_UDPS_PER_LSB))
    )
    return up_q14, np.clip(raw, -32768, 32767).astype("<i2")


def write_input(rec: Recording, path: Path, noise: bool = True, seed: int = 0, batch: int = BATCH) -> None:
    """The binary input of DRIVER: header, then per batch each sensor's up block and raw block."""
    rng = np.random.default_rng([seed, 7])
    sensors = [quantised_inputs(rec, s, rng, noise) for s in range(rec.n_sensors)]
    n = rec.n_samples
    pad = (-n) % batch
    with open(path, "wb") as f:
        head = INPUT_HEADER.pack(
            INPUT_MAGIC, ODR_HZ, rec.n_sensors, batch, 0, n, ACCEL_UG_PER_LSB, GYRO_UDPS_PER_LSB, START_UNIX_S
        )
        f.write(head + bytes(32 - len(head)))
        blocks = []
        for up, raw in sensors:
            up_p = np.concatenate((up, np.zeros((pad, 3), "<i2"))).reshape(-1, batch * 3)
            raw_p = np.concatenate((raw, np.zeros((pad, 6), "<i2"))).reshape(-1, batch * 6)
            blocks += [up_p, raw_p]
        f.write(np.ascontiguousarray(np.concatenate(blocks, axis=1)).tobytes())


CAL_HOLD_S = 3  # posture.PostureSettings.calibration_s
CAL_SKIP_S = 1  # the second posture.calibrate() skips


def calibration_second(rec: Recording, good_deg: float = 0.1, max_offset_deg: float = 0.3) -> int | None:
    """When the wearer, asked to sit or stand up straight, sends the calibrate command: the
    first second after which the calibration hold is static, within 2 deg of truly upright
    throughout and within good_deg on average (a careful calibration); failing that, the
    closest one within max_offset_deg. None if the wearer is never upright and still.

    Why so careful: an offset of the neutral shifts every alert of a slowly drifting slouch
    by offset / drift rate (drifts are 0.05-0.2 deg/s), so 0.3 deg can mean 5 s."""
    per_s = int(round(rec.rate_hz))
    flex = np.nan_to_num(rec.truth["truth_flexion_deg"], nan=99.0)
    act = rec.truth["truth_activity"]
    seconds = rec.n_samples // per_s - CAL_HOLD_S - CAL_SKIP_S - 1
    if seconds <= 5:
        return None
    rows = slice(0, (seconds + CAL_HOLD_S + CAL_SKIP_S + 1) * per_s)
    by_s = flex[rows].reshape(-1, per_s)
    ok_s = (np.abs(by_s) < 2.0).all(axis=1) & (act[rows].reshape(-1, per_s) == protocol.ACTIVITY_STATIC).all(axis=1)
    mean_s = by_s.mean(axis=1)
    best, best_offset = None, max_offset_deg
    for c in range(5, seconds):
        window = slice(c + CAL_SKIP_S, c + CAL_SKIP_S + CAL_HOLD_S)
        if ok_s[window].all():
            offset = abs(float(mean_s[window].mean()))
            if offset <= good_deg:
                return c
            if offset < best_offset:
                best, best_offset = c, offset
    return best


def true_neutral(rec: Recording, sensor: int = 0) -> np.ndarray:
    """The sensor-frame up vector of the wearer standing or sitting exactly upright."""
    from emulator.motion import quat

    key = "mounting_offset_deg" if sensor == 0 else "mounting_offset_deg_2"
    text = rec.meta.get(key, "0,0,0")
    angles = tuple(float(v) for v in text.split(","))
    q = quat.from_euler_xyz_deg((angles[0], angles[1], angles[2]))
    return np.asarray(quat.rotate_into(q, np.array([1.0, 0.0, 0.0])), dtype=float)


def run_driver(folder: Path, interpreter: str = "micropython", timeout_s: float = 1800) -> None:
    code = f"FOLDER = {str(folder)!r}\n" + DRIVER
    if interpreter == "micropython":
        env = {"MICROPYPATH": os.pathsep.join(default_search_path())}
        proc = subprocess.run(
            [micropython_path(), "-X", "heapsize=4M", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, **env},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"micropython driver failed:\n{proc.stderr}\n{proc.stdout}")
    else:
        cpython.install()
        exec(compile(code, "<posture driver>", "exec"), {"__name__": "__driver__"})


@dataclass
class RunOutput:
    run_label: str
    held_out: bool
    records: list[protocol.Record]
    angles_ddeg: np.ndarray  # (n, 3) flexion, lateral, inclination
    seconds: np.ndarray  # structured per-second rows
    stats: dict[str, Any]
    calibrate_at_s: int | None


def simulate(
    rec: Recording,
    folder: Path,
    settings: RunSettings | None = None,
    interpreter: str = "micropython",
    label: str = "",
) -> RunOutput:
    """Write the inputs of `rec`, run the firmware stages on them, read what they produced."""
    settings = settings or RunSettings()
    folder.mkdir(parents=True, exist_ok=True)
    write_input(rec, folder / "input.bin", noise=settings.noise, seed=settings.seed)
    cal = calibration_second(rec) if settings.calibrate == "command" else None
    ideal = [true_neutral(rec, i).tolist() for i in range(rec.n_sensors)] if settings.calibrate == "ideal" else None
    (folder / "run.json").write_text(
        json.dumps(
            {
                "calibrate_at_s": -1 if cal is None else cal,
                "ideal_neutral": ideal,
                "snooze_at_s": list(settings.snooze_at_s),
                "posture": settings.posture,
                "activity": settings.activity,
                "alert": settings.alert,
            }
        )
    )
    run_driver(folder, interpreter)
    return read_output(folder, rec, label, cal)


def read_output(folder: Path, rec: Recording, label: str, cal: int | None) -> RunOutput:
    records = protocol.decode_records((folder / "records.bin").read_bytes())
    angles = np.frombuffer((folder / "angles.bin").read_bytes(), "<i2").reshape(-1, 3)[: rec.n_samples]
    dtype = np.dtype(SECOND_DTYPE)
    seconds = np.frombuffer((folder / "seconds.bin").read_bytes(), dtype)
    stats = json.loads((folder / "stats.json").read_text())
    return RunOutput(label, rec.meta.get("held_out") == "true", records, angles, seconds, stats, cal)


# ---- scoring ----------------------------------------------------------------------------------


def slouch_episodes(rec: Recording) -> list[tuple[float, float]]:
    """(start_s, end_s) of each labelled sustained slouch (`truth_slouch`: against true upright,
    no angle tolerance)."""
    return _runs(rec.truth["truth_slouch"], rec.rate_hz)


def _runs(labels: np.ndarray, rate_hz: float) -> list[tuple[float, float]]:
    out = []
    for ep in range(1, int(labels.max()) + 1 if labels.size else 1):
        idx = np.flatnonzero(labels == ep)
        if idx.size:
            out.append((idx[0] / rate_hz, (idx[-1] + 1) / rate_hz))
    return out


def calibration_offset_deg(rec: Recording, calibrate_at_s: int | None) -> float:
    """Truth flexion of the posture the wearer calibrated in (the mean over the calibration
    hold): the firmware's flexion zero, in truth terms. 0 without a calibration."""
    if calibrate_at_s is None:
        return 0.0
    per_s = int(round(rec.rate_hz))
    a = (calibrate_at_s + CAL_SKIP_S) * per_s
    return float(np.nanmean(rec.truth["truth_flexion_deg"][a : a + CAL_HOLD_S * per_s]))


def reference_flexion_deg(rec: Recording, calibrate_at_s: int | None) -> np.ndarray:
    """Truth flexion relative to the neutral the firmware is asked to use: true upright until
    the wearer's calibration takes effect (the end of its hold), then the calibrated posture
    (DESIGN 3: flexion is the angle from the stored neutral g0)."""
    flexion = np.array(rec.truth["truth_flexion_deg"], dtype=np.float64)
    if calibrate_at_s is not None:
        per_s = int(round(rec.rate_hz))
        flexion[(calibrate_at_s + CAL_SKIP_S + CAL_HOLD_S) * per_s :] -= calibration_offset_deg(rec, calibrate_at_s)
    return flexion


@dataclass(frozen=True)
class AlertEpisode:
    """A sustained slouch as the alert scoring sees it (docs/benchmarks.md, `firmware`).

    start_s, end_s  the run of static, worn samples with reference flexion above the threshold
                    minus the angle tolerance, lasting at least the hold time: an alert inside
                    it, from start_s + hold on, is a true alert;
    due_s           the end of the first hold-time stretch inside it above the threshold plus
                    the tolerance: by then an alert is required (latency = alert - due_s);
                    None when the flexion never clearly passed the threshold for that long (an
                    alert is allowed, none is required)."""

    start_s: float
    end_s: float
    due_s: float | None


def alert_episodes(
    rec: Recording, calibrate_at_s: int | None, tolerance_deg: float = ANGLE_TOLERANCE_DEG
) -> list[AlertEpisode]:
    flexion = reference_flexion_deg(rec, calibrate_at_s)
    act, worn = rec.truth["truth_activity"], rec.truth["truth_worn"]

    def label(threshold_deg: float) -> list[tuple[float, float]]:
        return _runs(label_slouch_episodes(flexion, act, worn, rec.rate_hz, threshold_deg, HOLD_S), rec.rate_hz)

    clear = label(SLOUCH_THRESHOLD_DEG + tolerance_deg)
    out = []
    for a, b in label(SLOUCH_THRESHOLD_DEG - tolerance_deg):
        inside = [c for c, _ in clear if a <= c < b]
        out.append(AlertEpisode(a, b, inside[0] + HOLD_S if inside else None))
    return out


def score_alert_times(episodes: Sequence[AlertEpisode], alert_times_s: Sequence[float]) -> dict[str, Any]:
    """Precision, recall and latency counts of alert start times (s from the recording's start).

    An alert is true when it starts inside an episode, from the hold time after its start
    (ALERT_SLACK_S of slack either side: whole-second timestamps). An episode with a due time
    counts for recall; it is detected by its first true alert, at latency alert - due (negative:
    before the flexion was clearly past the threshold for the hold time)."""
    alerts = sorted(alert_times_s)
    true_alerts = 0
    first: dict[int, float] = {}
    for t in alerts:
        for k, ep in enumerate(episodes):
            if ep.start_s + HOLD_S - ALERT_SLACK_S <= t <= ep.end_s + ALERT_SLACK_S:
                true_alerts += 1
                first.setdefault(k, t)
                break
    required = [k for k, ep in enumerate(episodes) if ep.due_s is not None]
    latencies = [first[k] - episodes[k].due_s for k in required if k in first]  # type: ignore[operator]
    return {
        "alerts": len(alerts),
        "true_alerts": true_alerts,
        "episodes": len(required),
        "detected": len(latencies),
        "latencies": latencies,
    }


def score_alerts(rec: Recording, out: RunOutput) -> dict[str, Any]:
    alerts = [r.fields()["start_s"] - START_UNIX_S for r in out.records if r.rtype == protocol.ALERT]
    scored = score_alert_times(alert_episodes(rec, out.calibrate_at_s), alerts)
    scored["strict"] = score_alert_times(alert_episodes(rec, out.calibrate_at_s, 0.0), alerts)
    return scored


def score_flexion(rec: Recording, out: RunOutput) -> dict[str, Any]:
    truth = rec.truth["truth_flexion_deg"]
    act = rec.truth["truth_activity"]
    lateral = np.nan_to_num(rec.truth["truth_lateral_deg"], nan=90.0)
    # lying, and the moments of lying down (flexion has no meaning on one's side), are left out
    keep = np.isfinite(truth) & (act != protocol.ACTIVITY_LYING) & (np.abs(lateral) < 45.0)
    measured = out.angles_ddeg[:, 0] / 10.0
    offset = calibration_offset_deg(rec, out.calibrate_at_s)
    err = measured[keep] - truth[keep]
    return {
        "sq_abs": float(np.sum(err**2)),
        "sq_ref": float(np.sum((err + offset) ** 2)),
        "n": int(keep.sum()),
    }


def score_activity(rec: Recording, out: RunOutput) -> np.ndarray:
    """5x5 confusion matrix (truth rows, firmware columns) of whole seconds."""
    per_s = int(round(rec.rate_hz))
    n = len(out.seconds)
    mid = np.arange(n) * per_s + per_s // 2
    mid = mid[mid < rec.n_samples]
    truth = rec.truth["truth_activity"][mid]
    pred = out.seconds["activity"][: len(mid)]
    m = np.zeros((5, 5), dtype=np.int64)
    np.add.at(m, (truth.astype(int), pred.astype(int)), 1)
    return m


def log_bytes(out: RunOutput) -> int:
    return sum(10 + len(r.payload) for r in out.records)


def curvature_error(rec: Recording, out: RunOutput) -> float | None:
    if "truth_curvature_deg" not in rec.truth:
        return None
    per_s = int(round(rec.rate_hz))
    n = len(out.seconds)
    truth = rec.truth["truth_curvature_deg"][: n * per_s].reshape(n, per_s).mean(axis=1)
    act = out.seconds["activity"]
    keep = np.isfinite(truth) & (act != protocol.ACTIVITY_LYING) & (act != protocol.ACTIVITY_NOT_WORN)
    return float(np.sqrt(np.mean((out.seconds["curvature"][keep] / 10.0 - truth[keep]) ** 2)))


# ---- the benchmark ------------------------------------------------------------------------------


def auto_walk_errors_deg(rec: Recording, out: RunOutput) -> list[float]:
    """Signed sagittal angle (deg, forward positive) of every automatic (walking) neutral of the
    upper sensor from the true upright up vector."""
    true_up = true_neutral(rec, 0)
    e1 = true_up / np.linalg.norm(true_up)
    e2 = np.array([0.0, 1.0, 0.0]) - e1[1] * e1
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    out_deg = []
    for r in out.records:
        if r.rtype == protocol.CALIBRATION:
            f = r.fields()
            if f["method"] == protocol.CAL_AUTO_WALK and f["sensor"] == protocol.SENSOR_UPPER:
                v = np.array([f["neutral_x_mg"], f["neutral_y_mg"], f["neutral_z_mg"]], dtype=float)
                out_deg.append(float(np.degrees(np.arctan2(v @ e3, v @ e1))))
    return out_deg


def evaluate_run(run: ScenarioRun, settings: RunSettings | None = None, group: str = "") -> dict[str, Any]:
    settings = settings or RunSettings()
    rec = run.generate(rate_hz=ODR_HZ)
    with tempfile.TemporaryDirectory(prefix="posture_eval_") as tmp:
        t0 = time.perf_counter()
        out = simulate(rec, Path(tmp), settings, label=run.label)
        elapsed = time.perf_counter() - t0
    worn_h = float(rec.truth["truth_worn"].sum()) / rec.rate_hz / 3600
    source = out.stats["neutral_source"]
    return {
        "label": run.label,
        "group": group or ("held_out" if run.held_out else "dev"),
        "held_out": run.held_out,
        "hours": rec.duration_s / 3600,
        "worn_h": worn_h,
        "alerts": score_alerts(rec, out),
        "flexion": score_flexion(rec, out),
        "confusion": score_activity(rec, out),
        "log_bytes": log_bytes(out),
        "alloc_sample_bytes": out.stats["alloc_sample_bytes"],
        "alloc_second_bytes": out.stats["alloc_second_bytes"],
        "seconds_measured": out.stats["seconds_measured"],
        "samples": out.stats["samples"],
        "curvature_rms_deg": curvature_error(rec, out),
        "auto_walk_errors_deg": auto_walk_errors_deg(rec, out),
        "calibration": settings.calibrate if settings.calibrate != "none" else (
            "auto_walk" if source == protocol.CAL_AUTO_WALK else "none"
        ),
        "wall_s": elapsed,
    }


def alert_aggregate(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Suite figures from score_alert_times results."""
    alerts = sum(r["alerts"] for r in scores)
    tp = sum(r["true_alerts"] for r in scores)
    episodes = sum(r["episodes"] for r in scores)
    detected = sum(r["detected"] for r in scores)
    lat = np.array([x for r in scores for x in r["latencies"]], dtype=float)
    return {
        "alert_precision": tp / alerts if alerts else 1.0,
        "alert_recall": detected / episodes if episodes else 1.0,
        "alerts": alerts,
        "slouch_episodes": episodes,
        "alert_latency_median_s": float(np.median(lat)) if lat.size else 0.0,
        "alert_latency_p95_s": float(np.percentile(lat, 95)) if lat.size else 0.0,
        "alert_latency_max_s": float(lat.max()) if lat.size else 0.0,
        "alert_latency_within_2s": float(np.mean(lat <= 2.0)) if lat.size else 1.0,
    }


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    alert_figures = alert_aggregate([r["alerts"] for r in results])
    strict_figures = alert_aggregate([r["alerts"]["strict"] for r in results])
    conf = sum((r["confusion"] for r in results), np.zeros((5, 5), dtype=np.int64))
    sq_abs = sum(r["flexion"]["sq_abs"] for r in results)
    sq_ref = sum(r["flexion"]["sq_ref"] for r in results)
    nflex = sum(r["flexion"]["n"] for r in results)
    worn_h = sum(r["worn_h"] for r in results)
    samples = sum(r["samples"] for r in results)
    seconds = sum(r["seconds_measured"] for r in results)
    curv = [r["curvature_rms_deg"] for r in results if r["curvature_rms_deg"] is not None]
    auto = np.array([x for r in results for x in r["auto_walk_errors_deg"]], dtype=float)
    out: dict[str, Any] = {
        "runs": len(results),
        "hours": sum(r["hours"] for r in results),
        "worn_hours": worn_h,
        **alert_figures,
        **{f"strict_{k}": v for k, v in strict_figures.items()},
        "flexion_rms_deg": float(np.sqrt(sq_ref / nflex)) if nflex else 0.0,
        "flexion_rms_abs_deg": float(np.sqrt(sq_abs / nflex)) if nflex else 0.0,
        "activity_accuracy": float(np.trace(conf) / conf.sum()) if conf.sum() else 0.0,
        "activity_confusion": conf.tolist(),
        "log_bytes_per_worn_hour": sum(r["log_bytes"] for r in results) / worn_h if worn_h else 0.0,
        "heap_bytes_per_sample": sum(r["alloc_sample_bytes"] for r in results) / samples if samples else 0.0,
        "heap_bytes_per_second": sum(r["alloc_second_bytes"] for r in results) / seconds if seconds else 0.0,
    }
    if curv:
        out["curvature_rms_deg"] = float(np.sqrt(np.mean(np.square(curv))))
    if auto.size:
        out["auto_walk_neutral_error_mean_deg"] = float(auto.mean())
        out["auto_walk_neutral_error_max_deg"] = float(np.abs(auto).max())
    return out


COLUMNS = [
    "run", "group", "hours", "cal", "true/alerts", "episodes", "detected", "lat_max_s", "flex_rms",
    "act_acc", "B/worn_h", "heap B/sample", "curv_rms",
]


def _row(r: dict[str, Any]) -> list[Any]:
    conf = r["confusion"]
    lat = r["alerts"]["latencies"]
    flex = r["flexion"]
    return [
        r["label"],
        r["group"],
        round(r["hours"], 2),
        r["calibration"],
        f"{r['alerts']['true_alerts']}/{r['alerts']['alerts']}",
        r["alerts"]["episodes"],
        r["alerts"]["detected"],
        round(float(max(lat)), 1) if lat else 0.0,
        float(np.sqrt(flex["sq_ref"] / flex["n"])) if flex["n"] else 0.0,
        float(np.trace(conf) / conf.sum()) if conf.sum() else 0.0,
        round(r["log_bytes"] / r["worn_h"]) if r["worn_h"] else 0,
        r["alloc_sample_bytes"] / r["samples"],
        round(r["curvature_rms_deg"], 2) if r["curvature_rms_deg"] is not None else "",
    ]


# (group, run, settings).  dev: scenario seeds used while writing the firmware, with the wearer's
# own calibration; ideal: the same kind of runs with a perfect calibration (the alert logic on
# exact angles); auto_walk: never calibrated (ActiPASS walking reference).
def default_suite() -> list[tuple[str, ScenarioRun, RunSettings]]:
    suite = [("dev", r, RunSettings()) for r in DEVELOPMENT_SET]
    suite += [
        ("ideal", ScenarioRun("slouch-episodes", 20), RunSettings(calibrate="ideal")),
        ("ideal", ScenarioRun("slouch-episodes", 21, two_sensors=True), RunSettings(calibrate="ideal")),
        ("ideal", ScenarioRun("office-hour", 20), RunSettings(calibrate="ideal")),
        ("ideal", ScenarioRun("rotated-mount", 20, hours=1.0), RunSettings(calibrate="ideal")),
        ("auto_walk", ScenarioRun("walking", 20), RunSettings(calibrate="none")),
        ("auto_walk", ScenarioRun("walking", 21, mounting_offset_deg=(4.0, -6.0, 5.0)), RunSettings(calibrate="none")),
        ("auto_walk", ScenarioRun("office-hour", 21), RunSettings(calibrate="none")),
    ]
    suite += [("held_out", r, RunSettings()) for r in held_out_set()]
    return suite


def run(
    progress: Any = None,
    suite: Sequence[tuple[str, ScenarioRun, RunSettings]] | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Evaluate the suite (default: development, ideal-calibration and automatic-calibration
    runs, then the held-out runs); a dict of title, columns, rows, figures and notes (the fields
    of bench.BenchResult). Figures are per group: dev_*, ideal_*, auto_walk_*, held_out_*."""
    items = list(suite) if suite is not None else default_suite()
    task = progress.add_task("posture evaluation", total=len(items)) if progress is not None else None

    def one(item: tuple[str, ScenarioRun, RunSettings]) -> dict[str, Any]:
        group, scenario_run, settings = item
        result = evaluate_run(scenario_run, settings, group)
        if progress is not None:
            progress.update(task, advance=1)
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, items))
    figures: dict[str, Any] = {}
    for group in ("dev", "ideal", "auto_walk", "held_out"):
        members = [r for r in results if r["group"] == group]
        if members:
            for key, value in aggregate(members).items():
                figures[f"{group}_{key}"] = value
    notes = [
        "inputs: truth up vectors (until the fusion filter is wired) + raw samples with LSM6DSO noise and bias",
        "activity_confusion rows = truth, columns = firmware, order " + ", ".join(protocol.ACTIVITIES),
        f"an alert counts when it falls inside an episode of flexion (from the calibrated neutral) above "
        f"20 - {ANGLE_TOLERANCE_DEG:g} deg, after the 30 s hold (1 s slack); episodes that stay above "
        f"20 + {ANGLE_TOLERANCE_DEG:g} deg for 30 s must be detected, latency = alert - that moment; "
        "strict_*: tolerance 0",
        "flexion_rms_deg: against the truth flexion minus the truth flexion of the calibration posture",
    ]
    return {
        "title": "posture / activity / alert / summary over scenario worker-hours (micropython)",
        "columns": COLUMNS,
        "rows": [_row(r) for r in results],
        "figures": figures,
        "notes": notes,
    }
