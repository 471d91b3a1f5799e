"""Recordings: IMU samples of one or two back sensors with optional ground truth.

A :class:`Recording` is what the motion scenarios produce, what the real BROAD trials are
converted to, and what the emulated LSM6DS is fed from (through a stimulus file). The CSV and
stimulus formats are documented in ``docs/recordings.md`` and ``docs/emulator.md``.

Sensor frame (docs/emulator.md): x up the spine, y to the wearer's left, z out of the back.
Upright, the accelerometer reads (+1, 0, 0) g; forward flexion is positive.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import struct
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# Column names

TIME_COLUMN = "t_s"
ACCEL_COLUMNS = ("ax_g", "ay_g", "az_g")
GYRO_COLUMNS = ("gx_dps", "gy_dps", "gz_dps")
SENSOR_COLUMNS = ACCEL_COLUMNS + GYRO_COLUMNS
TRUTH_PREFIX = "truth_"
MAX_SENSORS = 2

# Truth columns holding integer codes / flags (written as integers, read back as int64).
INTEGER_TRUTH_COLUMNS = frozenset(
    {"truth_activity", "truth_slouch", "truth_worn", "truth_valid", "truth_activity_2", "truth_worn_2"}
)

# A timestamp step more than this fraction away from the median step is "irregular".
TIMESTAMP_TOLERANCE = 0.05


def sensor_suffix(sensor: int) -> str:
    """Column-name suffix of sensor index `sensor` (0 -> "", 1 -> "_2")."""
    if not 0 <= sensor < MAX_SENSORS:
        raise ValueError(f"sensor index {sensor} out of range: a recording has 1 or {MAX_SENSORS} sensors")
    return "" if sensor == 0 else f"_{sensor + 1}"


def sensor_columns(sensor: int) -> tuple[str, ...]:
    """The six sample columns of sensor index `sensor`: ax_g … gz_dps with its suffix."""
    suffix = sensor_suffix(sensor)
    return tuple(name + suffix for name in SENSOR_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Ground-truth vocabulary (shared by the scenarios and the evaluation code)


class Activity(IntEnum):
    """Codes of the `truth_activity` column (DESIGN.md activity classes)."""

    LYING = 0
    STATIC = 1  # upright, sitting or standing (not separable from the back)
    MOVING = 2  # reaching, bending, transitions, fidgeting between postures
    WALKING = 3  # walking and stairs
    NOT_WORN = 4


ACTIVITY_NAMES: tuple[str, ...] = tuple(a.name.lower() for a in Activity)

SLOUCH_THRESHOLD_DEG = 20.0
SLOUCH_HOLD_S = 30.0


def flexion_deg_from_up(up: FloatArray) -> FloatArray:
    """Sagittal flexion (deg, forward positive) of an earth-up vector given in the body frame.

    The angle of the up vector's projection on the sagittal (x-z) plane from the spine axis:
    ``atan2(up_z, up_x)``. A pure forward flexion by θ gives up = (cos θ, 0, sin θ) -> θ.
    """
    return np.degrees(np.arctan2(up[..., 2], up[..., 0]))


def lateral_deg_from_up(up: FloatArray) -> FloatArray:
    """Lateral bend (deg) of an earth-up vector given in the body frame: ``asin(up_y)``.

    Positive when the trunk bends to the wearer's right (the left side, +y, rises).
    """
    norm = np.linalg.norm(up, axis=-1)
    return np.degrees(np.arcsin(np.clip(up[..., 1] / norm, -1.0, 1.0)))


def inclination_error_deg(estimate_up: FloatArray, truth_up: FloatArray) -> FloatArray:
    """Angle (deg) between estimated and true up vectors, row by row (BROAD's inclination error)."""
    est = estimate_up / np.linalg.norm(estimate_up, axis=-1, keepdims=True)
    tru = truth_up / np.linalg.norm(truth_up, axis=-1, keepdims=True)
    # atan2(|a x b|, a.b) is accurate for small angles, unlike acos(a.b).
    cross = np.linalg.norm(np.cross(est, tru), axis=-1)
    dot = np.sum(est * tru, axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def label_slouch_episodes(
    flexion_deg: FloatArray,
    activity: NDArray[Any],
    worn: NDArray[Any],
    rate_hz: float,
    threshold_deg: float = SLOUCH_THRESHOLD_DEG,
    hold_s: float = SLOUCH_HOLD_S,
) -> NDArray[np.int64]:
    """The `truth_slouch` column: episode ids 1, 2, … of sustained slouches, 0 elsewhere.

    An episode is a maximal run of consecutive samples that are all worn, `static` and have
    flexion strictly above `threshold_deg`, lasting at least `hold_s` (a run of k samples lasts
    k / rate_hz seconds). The whole run carries the id, from its first sample. Episodes are
    numbered in time order.
    """
    flexion = np.asarray(flexion_deg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        above = (
            (flexion > threshold_deg) & (np.asarray(activity) == Activity.STATIC) & (np.asarray(worn) == 1)
        )
    labels = np.zeros(flexion.shape[0], dtype=np.int64)
    if not above.any():
        return labels
    edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    min_samples = hold_s * rate_hz - 1e-9
    long_runs = (stops - starts) >= min_samples
    for episode, (start, stop) in enumerate(zip(starts[long_runs], stops[long_runs], strict=True), start=1):
        labels[start:stop] = episode
    return labels


# ---------------------------------------------------------------------------------------------
# The recording


class RecordingError(ValueError):
    """A recording (file or arrays) that does not follow the format; the message says where."""


def _timestamp_problem(t_s: FloatArray) -> tuple[int, str] | None:
    """(row index, description) of the first bad timestamp, or None when they are regular."""
    if not np.all(np.isfinite(t_s)):
        row = int(np.flatnonzero(~np.isfinite(t_s))[0])
        return row, f"t_s is {t_s[row]}"
    steps = np.diff(t_s)
    not_after = np.flatnonzero(steps <= 0)
    if not_after.size:
        row = int(not_after[0]) + 1
        kind = "duplicates" if steps[row - 1] == 0 else "goes back from"
        return row, f"t_s={t_s[row]:.6f} {kind} the previous row's t_s={t_s[row - 1]:.6f}"
    nominal = float(np.median(steps))
    irregular = np.flatnonzero(np.abs(steps - nominal) > TIMESTAMP_TOLERANCE * nominal)
    if irregular.size:
        row = int(irregular[0]) + 1
        return row, (
            f"t_s={t_s[row]:.6f} is {steps[row - 1]:.6f} s after the previous row, the recording's "
            f"step is {nominal:.6f} s ({1.0 / nominal:.3f} Hz): samples must be evenly spaced "
            "(no gaps or jitter)"
        )
    return None


@dataclass
class Recording:
    """IMU samples of one or two sensors on a regular time grid, with optional ground truth.

    `accel_g[i]` and `gyro_dps[i]` are (n, 3) arrays of sensor i (0 = upper, 1 = lower) in the
    sensor frame: specific force in g and angular rate in deg/s. `truth` maps `truth_*` column
    names to length-n arrays. `meta` holds free-form provenance (scenario, seed, …), kept in
    CSV files as leading ``# key: value`` comment lines. `rate_hz` is derived from `t_s`.
    """

    t_s: FloatArray
    accel_g: list[FloatArray]
    gyro_dps: list[FloatArray]
    truth: dict[str, NDArray[Any]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    rate_hz: float = field(init=False)

    def __post_init__(self) -> None:
        self.t_s = np.ascontiguousarray(self.t_s, dtype=np.float64)
        if self.t_s.ndim != 1 or self.t_s.shape[0] < 2:
            raise RecordingError(f"t_s must be a 1-D array of at least 2 samples, got shape {self.t_s.shape}")
        n = self.t_s.shape[0]
        if not 1 <= len(self.accel_g) <= MAX_SENSORS or len(self.gyro_dps) != len(self.accel_g):
            raise RecordingError(
                f"a recording has 1 or {MAX_SENSORS} sensors with accel and gyro each, got "
                f"{len(self.accel_g)} accel and {len(self.gyro_dps)} gyro arrays"
            )
        self.accel_g = [self._sensor_array(a, n, "accel_g", i) for i, a in enumerate(self.accel_g)]
        self.gyro_dps = [self._sensor_array(g, n, "gyro_dps", i) for i, g in enumerate(self.gyro_dps)]
        truth: dict[str, NDArray[Any]] = {}
        for name, values in self.truth.items():
            if not name.startswith(TRUTH_PREFIX):
                raise RecordingError(f"truth column {name!r} must be named {TRUTH_PREFIX}<something>")
            column = np.asarray(values)
            if column.shape != (n,):
                raise RecordingError(f"truth column {name!r} has shape {column.shape}, expected ({n},)")
            truth[name] = column
        self.truth = truth
        problem = _timestamp_problem(self.t_s)
        if problem is not None:
            row, what = problem
            raise RecordingError(f"irregular timestamps at sample {row}: {what}")
        self.rate_hz = (n - 1) / float(self.t_s[-1] - self.t_s[0])

    @staticmethod
    def _sensor_array(values: FloatArray, n: int, what: str, sensor: int) -> FloatArray:
        array = np.ascontiguousarray(values, dtype=np.float64)
        if array.shape != (n, 3):
            raise RecordingError(f"{what}[{sensor}] has shape {array.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(array)):
            row = int(np.flatnonzero(~np.all(np.isfinite(array), axis=1))[0])
            raise RecordingError(f"{what}[{sensor}] is not finite at sample {row}: {array[row]}")
        return array

    @property
    def n_samples(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def n_sensors(self) -> int:
        return len(self.accel_g)

    @property
    def duration_s(self) -> float:
        """Time covered by the samples: n / rate_hz (each sample stands for one step)."""
        return self.n_samples / self.rate_hz

    def samples(self, sensor: int = 0) -> FloatArray:
        """(n, 6) array ax_g, ay_g, az_g, gx_dps, gy_dps, gz_dps of one sensor."""
        self._check_sensor(sensor)
        return np.hstack((self.accel_g[sensor], self.gyro_dps[sensor]))

    def truth_up(self, sensor: int = 0) -> FloatArray:
        """(n, 3) true earth-up unit vector in the frame of `sensor` (truth_up_x/y/z[_2])."""
        self._check_sensor(sensor)
        suffix = sensor_suffix(sensor)
        names = [f"truth_up_{axis}{suffix}" for axis in "xyz"]
        missing = [name for name in names if name not in self.truth]
        if missing:
            raise KeyError(f"recording has no {', '.join(missing)} truth column(s)")
        return np.column_stack([self.truth[name] for name in names]).astype(np.float64)

    def slice(self, start_s: float, stop_s: float) -> Recording:
        """The samples with start_s <= t_s < stop_s (same meta)."""
        keep = (self.t_s >= start_s) & (self.t_s < stop_s)
        return Recording(
            t_s=self.t_s[keep],
            accel_g=[a[keep] for a in self.accel_g],
            gyro_dps=[g[keep] for g in self.gyro_dps],
            truth={name: column[keep] for name, column in self.truth.items()},
            meta=dict(self.meta),
        )

    def _check_sensor(self, sensor: int) -> None:
        if not 0 <= sensor < self.n_sensors:
            raise IndexError(f"sensor {sensor} does not exist: this recording has {self.n_sensors} sensor(s)")


# ---------------------------------------------------------------------------------------------
# CSV


def _open_text(path: Path, mode: str) -> IO[str]:
    """Text stream over a plain or gzipped file. Reading accepts a UTF-8 BOM and any line ends."""
    encoding = "utf-8-sig" if mode == "r" else "utf-8"
    newline = None if mode == "r" else ""
    if path.suffix == ".gz":
        # Level 3: within 10 % of level 9's size at a fraction of the time for hour-long files.
        binary = gzip.GzipFile(path, mode + "b", compresslevel=3)
        return io.TextIOWrapper(binary, encoding=encoding, newline=newline)
    return open(path, mode, encoding=encoding, newline=newline)


def _read_header(stream: IO[str], path: Path) -> tuple[list[str], dict[str, str], int]:
    """Skip `# key: value` comment lines; return (column names, meta, header line number)."""
    meta: dict[str, str] = {}
    line_number = 0
    for line in stream:
        line_number += 1
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            key, sep, value = text[1:].partition(":")
            if sep:
                meta[key.strip()] = value.strip()
            continue
        return [name.strip() for name in text.split(",")], meta, line_number
    raise RecordingError(f"{path}: empty file, expected a header line starting with {TIME_COLUMN}")


def _column_layout(names: list[str], path: Path) -> tuple[int, list[str]]:
    """Validate the header; return (number of sensors, truth column names in file order)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise RecordingError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    known = {TIME_COLUMN, *sensor_columns(0), *sensor_columns(1)}
    for name in names:
        if name not in known and not name.startswith(TRUTH_PREFIX):
            raise RecordingError(
                f"{path}: unknown column {name!r}; expected {TIME_COLUMN}, {', '.join(SENSOR_COLUMNS)}, "
                f"the same with suffix _2 for a second sensor, or {TRUTH_PREFIX}* columns"
            )
    required = [TIME_COLUMN, *sensor_columns(0)]
    missing = [name for name in required if name not in seen]
    if missing:
        raise RecordingError(f"{path}: missing required column(s) {', '.join(missing)}")
    second = sensor_columns(1)
    present_second = [name for name in second if name in seen]
    if present_second and len(present_second) != len(second):
        missing_second = [name for name in second if name not in seen]
        raise RecordingError(
            f"{path}: second-sensor columns are incomplete, missing {', '.join(missing_second)}"
        )
    truth_names = [name for name in names if name.startswith(TRUTH_PREFIX)]
    return (2 if present_second else 1), truth_names


def _locate_bad_value(path: Path, names: list[str]) -> RecordingError:
    """Slow path after a failed fast parse: find the first bad row and say where it is."""
    with _open_text(path, "r") as stream:
        header_seen = False
        for line_number, row in enumerate(csv.reader(stream), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if not header_seen:
                header_seen = True
                continue
            if len(row) != len(names):
                return RecordingError(
                    f"{path}, line {line_number}: {len(row)} fields, the header has {len(names)} columns"
                )
            for name, text in zip(names, row, strict=True):
                try:
                    float(text)
                except ValueError:
                    return RecordingError(
                        f"{path}, line {line_number}, column {name}: {text.strip()!r} is not a number"
                    )
    return RecordingError(f"{path}: could not parse the samples")


def _data_line_numbers(path: Path) -> list[int]:
    """File line number of every data row (only used to report errors)."""
    numbers: list[int] = []
    with _open_text(path, "r") as stream:
        header_seen = False
        for line_number, line in enumerate(stream, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if header_seen:
                numbers.append(line_number)
            header_seen = True
    return numbers


def read_recording(path: str | Path) -> Recording:
    """Read a recording CSV (``.csv`` or gzipped ``.csv.gz``); see docs/recordings.md.

    Raises :class:`RecordingError` naming the column or file line for a missing or unknown
    column, a value that is not a number, or timestamps that are not evenly spaced.
    """
    path = Path(path)
    with _open_text(path, "r") as stream:
        names, meta, header_line = _read_header(stream, path)
        n_sensors, truth_names = _column_layout(names, path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": handled below
                table = np.loadtxt(stream, delimiter=",", comments="#", ndmin=2, dtype=np.float64)
        except ValueError:
            raise _locate_bad_value(path, names) from None
    if table.shape[0] == 0:
        raise RecordingError(f"{path}: no samples after the header (line {header_line})")
    if table.shape[1] != len(names):
        raise _locate_bad_value(path, names)
    index = {name: i for i, name in enumerate(names)}
    t_s = table[:, index[TIME_COLUMN]]
    problem = _timestamp_problem(t_s)
    if problem is not None:
        row, what = problem
        line = _data_line_numbers(path)[row]
        raise RecordingError(f"{path}, line {line}: {what}")
    accel: list[FloatArray] = []
    gyro: list[FloatArray] = []
    for sensor in range(n_sensors):
        columns = [index[name] for name in sensor_columns(sensor)]
        block = table[:, columns]
        bad = ~np.all(np.isfinite(block), axis=1)
        if bad.any():
            line = _data_line_numbers(path)[int(np.flatnonzero(bad)[0])]
            raise RecordingError(f"{path}, line {line}: sensor values must be finite numbers")
        accel.append(np.ascontiguousarray(block[:, :3]))
        gyro.append(np.ascontiguousarray(block[:, 3:]))
    truth: dict[str, NDArray[Any]] = {}
    for name in truth_names:
        column = table[:, index[name]]
        if (
            name in INTEGER_TRUTH_COLUMNS
            and np.all(np.isfinite(column))
            and np.all(column == np.round(column))
        ):
            truth[name] = column.astype(np.int64)
        else:
            truth[name] = np.ascontiguousarray(column)
    return Recording(t_s=t_s, accel_g=accel, gyro_dps=gyro, truth=truth, meta=meta)


def _csv_columns(rec: Recording) -> Iterator[tuple[str, NDArray[Any], str]]:
    """(name, values, printf format) of every column in file order."""
    yield TIME_COLUMN, rec.t_s, "%.6f"
    for sensor in range(rec.n_sensors):
        names = sensor_columns(sensor)
        for axis in range(3):
            yield names[axis], rec.accel_g[sensor][:, axis], "%.6f"
        for axis in range(3):
            yield names[3 + axis], rec.gyro_dps[sensor][:, axis], "%.5f"
    for name, values in rec.truth.items():
        is_integer = np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_)
        yield name, values, "%d" if is_integer else "%.6f"


def write_recording(rec: Recording, path: str | Path) -> Path:
    """Write `rec` as CSV (gzipped when the name ends in ``.gz``); returns the path.

    `meta` entries become leading ``# key: value`` lines (read them back with read_recording,
    or pandas ``read_csv(..., comment="#")``).
    """
    path = Path(path)
    columns = list(_csv_columns(rec))
    names = [name for name, _, _ in columns]
    fmt = ",".join(f for _, _, f in columns)
    table = np.empty((rec.n_samples, len(columns)), dtype=np.float64)
    for i, (_, values, _) in enumerate(columns):
        table[:, i] = values
    with _open_text(path, "w") as stream:
        for key, value in rec.meta.items():
            text = str(value).replace("\n", " ")
            stream.write(f"# {key}: {text}\n")
        stream.write(",".join(names) + "\n")
        buffer = io.StringIO()
        chunk = 20000
        for start in range(0, rec.n_samples, chunk):
            np.savetxt(buffer, table[start : start + chunk], fmt=fmt, delimiter=",")
            stream.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    return path


# ---------------------------------------------------------------------------------------------
# Stimulus files (binary, read by host/emulator/mpy/stimulus.py on the emulated board)

STIMULUS_MAGIC = b"PSTM"
STIMULUS_VERSION = 1
STIMULUS_CHANNELS = 6
STIMULUS_HEADER = struct.Struct("<4sHHfI")  # magic, version, channels, rate_hz, rows: 16 bytes
STIMULUS_ROW_DTYPE = np.dtype("<f4")


class Stimulus(NamedTuple):
    rate_hz: float
    samples: NDArray[np.float32]  # (rows, 6): ax_g, ay_g, az_g, gx_dps, gy_dps, gz_dps


def write_stimulus(rec: Recording, path: str | Path, sensor: int = 0) -> Path:
    """Write one sensor of `rec` as a stimulus file (docs/emulator.md); returns the path.

    Row k is played at k / rate_hz after power-on, whatever rec.t_s[0] is.
    """
    path = Path(path)
    rows = rec.samples(sensor).astype(STIMULUS_ROW_DTYPE)
    header = STIMULUS_HEADER.pack(
        STIMULUS_MAGIC, STIMULUS_VERSION, STIMULUS_CHANNELS, rec.rate_hz, rows.shape[0]
    )
    with open(path, "wb") as stream:
        stream.write(header)
        stream.write(np.ascontiguousarray(rows).tobytes())
    return path


def read_stimulus(path: str | Path) -> Stimulus:
    """Read a stimulus file back (host side; the board reads it in chunks instead)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < STIMULUS_HEADER.size:
        raise RecordingError(f"{path}: {len(data)} bytes, too short for the 16-byte stimulus header")
    magic, version, channels, rate_hz, rows = STIMULUS_HEADER.unpack_from(data)
    if magic != STIMULUS_MAGIC or version != STIMULUS_VERSION or channels != STIMULUS_CHANNELS:
        raise RecordingError(
            f"{path}: not a version-{STIMULUS_VERSION} stimulus file (magic {magic!r}, version {version}, "
            f"channels {channels})"
        )
    expected = STIMULUS_HEADER.size + rows * channels * STIMULUS_ROW_DTYPE.itemsize
    if len(data) != expected:
        raise RecordingError(
            f"{path}: {len(data)} bytes, the header announces {rows} rows ({expected} bytes)"
        )
    samples = np.frombuffer(data, dtype=STIMULUS_ROW_DTYPE, offset=STIMULUS_HEADER.size).reshape(
        rows, channels
    )
    return Stimulus(rate_hz=float(rate_hz), samples=samples.astype(np.float32))


def meta_from(values: Mapping[str, object]) -> dict[str, str]:
    """Recording meta from arbitrary values (numbers, tuples) as strings."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, float):
            out[key] = repr(value) if math.isfinite(value) else str(value)
        elif isinstance(value, tuple | list):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out
