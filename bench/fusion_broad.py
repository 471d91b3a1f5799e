"""Tilt accuracy on BROAD, speed and heap use of the firmware's fusion filter.

The filter (``device/lib/fusion.py``) runs in the real ``micropython`` on the BROAD recordings
converted to raw int16 samples as the LSM6DS would deliver them at +-16 g (488 ug/LSB: BROAD
reaches ~10 g) and +-2000 deg/s (70 mdeg/s/LSB), streamed through ``update_batch`` in batches of
26 samples (half a second at 52 Hz). Same run, same metric, the reference filters on the original
float data with their default settings: VQF (6D), ahrs' Madgwick (default gain at the data rate)
and x-io Fusion (``imufusion``).

Metric (BROAD's): per trial, the RMS over valid samples of the angle between the estimated and
the true "up" vector; then the mean over trials.

Also measured in MicroPython: time per sample of ``update_batch`` against a textbook float
Madgwick IMU update running in the same batch loop over the same bytes, and heap bytes allocated
per sample in steady state (``gc.mem_alloc()`` with the collector disabled).

    python -m bench.fusion_broad      # table, then one JSON line of figures
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import BenchResult
from emulator import DEVICE_DIR, REPO_ROOT
from emulator.micropython_cmd import run_micropython

BROAD_DIR = Path(os.environ.get("POSTURE_BROAD_DIR", REPO_ROOT.parent / "shared" / "data" / "broad"))
ACCEL_FULL_SCALE_G = 16
ACCEL_UG_PER_LSB = 488  # LSM6DS accelerometer at +-16 g
GYRO_FULL_SCALE_DPS = 2000
GYRO_UDPS_PER_LSB = 70_000  # LSM6DS gyro at +-2000 deg/s
BATCH_SAMPLES = 26
MADGWICK_BETA = 0.033  # ahrs' default IMU gain, for the float baseline in MicroPython
STANDARD_GRAVITY = 9.80665


@dataclass
class Trial:
    name: str
    rate_hz: float
    accel_g: np.ndarray  # (N, 3)
    gyro_dps: np.ndarray  # (N, 3)
    truth_up: np.ndarray  # (N, 3), unit vectors in the sensor frame
    valid: np.ndarray  # (N,) bool

    @property
    def undisturbed(self) -> bool:
        return "undisturbed" in self.name


def load_trials(directory: Path = BROAD_DIR, names: list[str] | None = None) -> list[Trial]:
    """BROAD trials (``NN_*.csv.gz``), optionally only those whose name starts with one of ``names``."""
    paths = sorted(directory.glob("*.csv.gz"))
    if not paths:
        raise FileNotFoundError(f"no BROAD trials in {directory}: set POSTURE_BROAD_DIR")
    trials = []
    for path in paths:
        name = path.name.removesuffix(".csv.gz")
        if names and not any(name.startswith(n) for n in names):
            continue
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        rate_hz = 1.0 / float(np.median(np.diff(table[:, 0])))
        trials.append(
            Trial(
                name=name,
                rate_hz=rate_hz,
                accel_g=table[:, 1:4],
                gyro_dps=table[:, 4:7],
                truth_up=table[:, 7:10],
                valid=table[:, 10] > 0.5,
            )
        )
    return trials


def to_raw(trial: Trial) -> np.ndarray:
    """int16 samples (N, 6): ax ay az gx gy gz in LSBs, saturating like the sensor."""
    acc = np.round(trial.accel_g * 1e6 / ACCEL_UG_PER_LSB)
    gyr = np.round(trial.gyro_dps * 1e6 / GYRO_UDPS_PER_LSB)
    return np.clip(np.hstack([acc, gyr]), -32768, 32767).astype("<i2")


def inclination_rmse_deg(up: np.ndarray, trial: Trial) -> float:
    """RMS over valid samples of the angle between estimated and true up, degrees."""
    est = up / np.linalg.norm(up, axis=1, keepdims=True)
    cos = np.clip(np.sum(est * trial.truth_up, axis=1), -1.0, 1.0)
    angle = np.degrees(np.arccos(cos))[trial.valid]
    return float(np.sqrt(np.mean(angle**2)))


def up_from_quaternion(q_wxyz: np.ndarray) -> np.ndarray:
    """Earth z ("up") in the sensor frame for sensor-to-earth quaternions (N, 4)."""
    w, x, y, z = q_wxyz.T
    return np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)


# ---- reference filters (CPython, float data) -------------------------------------------------


def vqf_up(trial: Trial) -> np.ndarray:
    import vqf

    gyr = np.ascontiguousarray(np.radians(trial.gyro_dps))
    acc = np.ascontiguousarray(trial.accel_g * STANDARD_GRAVITY)
    out = vqf.VQF(1.0 / trial.rate_hz).updateBatch(gyr, acc)
    return up_from_quaternion(out["quat6D"])


def madgwick_up(trial: Trial) -> np.ndarray:
    from ahrs.filters import Madgwick

    m = Madgwick(
        gyr=np.radians(trial.gyro_dps), acc=trial.accel_g * STANDARD_GRAVITY, frequency=trial.rate_hz
    )
    return up_from_quaternion(np.asarray(m.Q))


def imufusion_up(trial: Trial) -> np.ndarray:
    import imufusion

    ahrs = imufusion.Ahrs()
    ahrs.set_settings(imufusion.AhrsSettings(sample_rate=trial.rate_hz))
    ahrs.set_sample_period(1.0 / trial.rate_hz)
    q = np.empty((len(trial.accel_g), 4))
    for k, (g, a) in enumerate(zip(trial.gyro_dps, trial.accel_g, strict=True)):
        ahrs.update_no_magnetometer(g, a)
        q[k] = ahrs.get_quaternion()
    return up_from_quaternion(q)


# ---- MicroPython side ------------------------------------------------------------------------

# Runs in micropython with device/lib on the path. argv-free: reads manifest.json in the cwd.
FLOAT_MADGWICK_MPY = r"""
class FloatMadgwick:
    # Textbook Madgwick IMU update (gradient-descent step on the gravity error), in floats:
    # the usual way to write a filter in MicroPython, as the speed/heap baseline.
    def __init__(self, rate_hz, accel_ug_per_lsb, gyro_udps_per_lsb, beta):
        self.dt = 1.0 / rate_hz
        self.gyro_rad_per_lsb = gyro_udps_per_lsb * 1e-6 * math.pi / 180.0
        self.beta = beta
        self.q = [1.0, 0.0, 0.0, 0.0]

    def update_batch(self, buf, n, up_out=None):
        for i in range(n):
            ax, ay, az, gx, gy, gz = struct.unpack_from("<6h", buf, 12 * i)
            k = self.gyro_rad_per_lsb
            self.update(gx * k, gy * k, gz * k, ax, ay, az)

    def update(self, gx, gy, gz, ax, ay, az):
        q0, q1, q2, q3 = self.q
        d0 = 0.5 * (-q1 * gx - q2 * gy - q3 * gz)
        d1 = 0.5 * (q0 * gx + q2 * gz - q3 * gy)
        d2 = 0.5 * (q0 * gy - q1 * gz + q3 * gx)
        d3 = 0.5 * (q0 * gz + q1 * gy - q2 * gx)
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        if norm > 0.0:
            ax /= norm
            ay /= norm
            az /= norm
            f1 = 2.0 * (q1 * q3 - q0 * q2) - ax
            f2 = 2.0 * (q0 * q1 + q2 * q3) - ay
            f3 = 1.0 - 2.0 * (q1 * q1 + q2 * q2) - az
            s0 = -2.0 * q2 * f1 + 2.0 * q1 * f2
            s1 = 2.0 * q3 * f1 + 2.0 * q0 * f2 - 4.0 * q1 * f3
            s2 = -2.0 * q0 * f1 + 2.0 * q3 * f2 - 4.0 * q2 * f3
            s3 = 2.0 * q1 * f1 + 2.0 * q2 * f2
            norm = math.sqrt(s0 * s0 + s1 * s1 + s2 * s2 + s3 * s3)
            if norm > 0.0:
                b = self.beta / norm
                d0 -= b * s0
                d1 -= b * s1
                d2 -= b * s2
                d3 -= b * s3
        q0 += d0 * self.dt
        q1 += d1 * self.dt
        q2 += d2 * self.dt
        q3 += d3 * self.dt
        norm = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
        self.q = [q0 / norm, q1 / norm, q2 / norm, q3 / norm]
"""


_MPY_SCRIPT = r"""
import gc
import json
import math
import struct
import time
from array import array

import fusion

BATCH = %(batch)d


""" + FLOAT_MADGWICK_MPY + r"""

def stream(filt, path, out_path):
    # The firmware's loop: refill one preallocated buffer, process it in one call.
    buf = bytearray(12 * BATCH)
    up = array("h", [0] * (3 * BATCH))
    busy_us = 0
    samples = 0
    with open(path, "rb") as src, open(out_path, "wb") as dst:
        while True:
            got = src.readinto(buf)
            if not got:
                break
            n = got // 12
            t0 = time.ticks_us()
            filt.update_batch(buf, n, up)
            busy_us += time.ticks_diff(time.ticks_us(), t0)
            samples += n
            dst.write(memoryview(up)[: 3 * n])
    return busy_us, samples


def steady_state(filt, chunks, batches):
    # Time and heap of many update_batch calls over sample buffers already in RAM, collector off.
    gc.collect()
    gc.disable()
    heap0 = gc.mem_alloc()
    t0 = time.ticks_us()
    for b in range(batches):
        filt.update_batch(chunks[b %% len(chunks)], BATCH)
    busy_us = time.ticks_diff(time.ticks_us(), t0)
    heap1 = gc.mem_alloc()
    gc.enable()
    return busy_us / (batches * BATCH), (heap1 - heap0) / (batches * BATCH)


with open("manifest.json") as f:
    manifest = json.load(f)
report = {"trials": []}
for item in manifest["trials"]:
    filt = fusion.FusionFilter(item["rate_hz"], manifest["accel_ug_per_lsb"], manifest["gyro_udps_per_lsb"])
    busy_us, samples = stream(filt, item["raw"], item["up"])
    report["trials"].append({"name": item["name"], "busy_us": busy_us, "samples": samples})

first = manifest["trials"][0]
chunks = []
with open(first["raw"], "rb") as f:
    for _ in range(150):
        chunks.append(bytearray(12 * BATCH))
        f.readinto(chunks[-1])
ours = fusion.FusionFilter(first["rate_hz"], manifest["accel_ug_per_lsb"], manifest["gyro_udps_per_lsb"])
ours.update_batch(chunks[0], BATCH)
report["ours_us"], report["ours_heap_bytes"] = steady_state(ours, chunks, 600)
madgwick = FloatMadgwick(first["rate_hz"], manifest["accel_ug_per_lsb"], manifest["gyro_udps_per_lsb"], %(beta)r)
madgwick.update_batch(chunks[0], BATCH)
report["madgwick_us"], report["madgwick_heap_bytes"] = steady_state(madgwick, chunks, 10)
print(json.dumps(report))
"""


def run_ours_in_micropython(trials: list[Trial], workdir: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Stream every trial through fusion.update_batch in micropython; up vectors (floats) per trial."""
    items: list[dict[str, Any]] = []
    for i, trial in enumerate(trials):
        raw_path = workdir / f"trial{i:02d}.i16"
        raw_path.write_bytes(to_raw(trial).tobytes())
        items.append(
            {"name": trial.name, "rate_hz": trial.rate_hz, "raw": raw_path.name, "up": f"trial{i:02d}.up"}
        )
    manifest = {"accel_ug_per_lsb": ACCEL_UG_PER_LSB, "gyro_udps_per_lsb": GYRO_UDPS_PER_LSB, "trials": items}
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    script = _MPY_SCRIPT % {"batch": BATCH_SAMPLES, "beta": MADGWICK_BETA}
    # Only the firmware's lib: the emulator's virtual-clock time.py would stop time.ticks_us().
    search_path = [str(DEVICE_DIR / "lib"), ".frozen"]
    stdout = run_micropython(script, search_path=search_path, cwd=workdir, timeout_s=900)
    report = json.loads(stdout.strip().splitlines()[-1])
    ups = [
        np.frombuffer((workdir / item["up"]).read_bytes(), dtype="<i2").reshape(-1, 3).astype(float) / 16384.0
        for item in items
    ]
    return ups, report


def run(progress: Any = None) -> BenchResult:
    trials = load_trials()
    task = progress.add_task("BROAD: reference filters", total=len(trials) + 1) if progress else None
    baselines: dict[str, list[float]] = {"vqf": [], "madgwick": [], "imufusion": []}
    for trial in trials:
        baselines["vqf"].append(inclination_rmse_deg(vqf_up(trial), trial))
        baselines["madgwick"].append(inclination_rmse_deg(madgwick_up(trial), trial))
        baselines["imufusion"].append(inclination_rmse_deg(imufusion_up(trial), trial))
        if progress:
            progress.advance(task)
    if progress:
        progress.update(task, description="BROAD: ours in micropython")
    with tempfile.TemporaryDirectory() as tmp:
        ups, report = run_ours_in_micropython(trials, Path(tmp))
    if progress:
        progress.advance(task)
    ours = [inclination_rmse_deg(up, trial) for up, trial in zip(ups, trials, strict=True)]

    rows: list[list[Any]] = []
    for i, trial in enumerate(trials):
        rows.append(
            [
                trial.name,
                ours[i],
                baselines["vqf"][i],
                baselines["madgwick"][i],
                baselines["imufusion"][i],
                ours[i] / baselines["vqf"][i],
            ]
        )
    und = [t.undisturbed for t in trials]

    def mean(values: list[float], which: list[bool] | None = None) -> float:
        picked = [v for v, keep in zip(values, which or [True] * len(values), strict=True) if keep]
        return float(np.mean(picked))

    rows.append(
        [
            "mean",
            mean(ours),
            mean(baselines["vqf"]),
            mean(baselines["madgwick"]),
            mean(baselines["imufusion"]),
            0.0,
        ]
    )
    rows[-1][-1] = rows[-1][1] / rows[-1][2]
    busy_us = sum(t["busy_us"] for t in report["trials"])
    samples = sum(t["samples"] for t in report["trials"])
    figures = {
        "ours_mean_deg": mean(ours),
        "vqf_mean_deg": mean(baselines["vqf"]),
        "madgwick_mean_deg": mean(baselines["madgwick"]),
        "imufusion_mean_deg": mean(baselines["imufusion"]),
        "ours_undisturbed_mean_deg": mean(ours, und),
        "vqf_undisturbed_mean_deg": mean(baselines["vqf"], und),
        "ours_over_vqf_mean": mean(ours) / mean(baselines["vqf"]),
        "ours_over_vqf_worst_trial": max(o / v for o, v in zip(ours, baselines["vqf"], strict=True)),
        "ours_us_per_sample_streaming": busy_us / samples,
        "ours_us_per_sample": report["ours_us"],
        "madgwick_float_us_per_sample": report["madgwick_us"],
        "speedup_vs_float_madgwick": report["madgwick_us"] / report["ours_us"],
        "ours_heap_bytes_per_sample": report["ours_heap_bytes"],
        "madgwick_float_heap_bytes_per_sample": report["madgwick_heap_bytes"],
        "trials": len(trials),
        "accel_full_scale_g": ACCEL_FULL_SCALE_G,
        "gyro_full_scale_dps": GYRO_FULL_SCALE_DPS,
    }
    notes = [
        "ours: device/lib/fusion.py in the micropython unix port, raw int16 at +-16 g / +-2000 dps, "
        f"batches of {BATCH_SAMPLES}; references: float data, default settings",
        f"MicroPython per sample: ours {report['ours_us']:.2f} us, float Madgwick {report['madgwick_us']:.2f} us "
        f"({figures['speedup_vs_float_madgwick']:.0f}x); heap per sample: ours {report['ours_heap_bytes']:.2f} B, "
        f"Madgwick {report['madgwick_heap_bytes']:.0f} B",
    ]
    return BenchResult(
        title="Tilt on BROAD: inclination RMSE (deg), ours in MicroPython vs references",
        columns=["trial", "ours", "VQF", "Madgwick", "imufusion", "ours/VQF"],
        rows=rows,
        figures=figures,
        notes=notes,
    )


def main() -> int:
    result = run()
    widths = [max(len(str(c)), 10) for c in result.columns]
    widths[0] = max(len(str(r[0])) for r in result.rows)
    print(result.title)
    print("  ".join(str(c).ljust(w) for c, w in zip(result.columns, widths, strict=True)))
    for row in result.rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    for note in result.notes:
        print(note)
    sys.stdout.flush()
    print(
        json.dumps(
            {
                k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in result.figures.items()
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
