"""Recordings: the CSV format (plain and gzipped), the real BROAD trials, stimulus files, truth helpers."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from emulator.recording import (
    ACTIVITY_NAMES,
    Activity,
    Recording,
    RecordingError,
    flexion_deg_from_up,
    inclination_error_deg,
    label_slouch_episodes,
    lateral_deg_from_up,
    read_recording,
    read_stimulus,
    write_recording,
    write_stimulus,
)

BROAD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "broad"
HEADER = "t_s,ax_g,ay_g,az_g,gx_dps,gy_dps,gz_dps"


def make_recording(n: int = 200, rate_hz: float = 52.0, two_sensors: bool = False) -> Recording:
    rng = np.random.default_rng(7)
    sensors = 2 if two_sensors else 1
    flexion = rng.uniform(-10, 60, n)
    flexion[5] = np.nan
    return Recording(
        t_s=np.arange(n) / rate_hz,
        accel_g=[rng.normal(0, 1, (n, 3)) for _ in range(sensors)],
        gyro_dps=[rng.normal(0, 100, (n, 3)) for _ in range(sensors)],
        truth={
            "truth_up_x": rng.uniform(-1, 1, n),
            "truth_flexion_deg": flexion,
            "truth_activity": rng.integers(0, 5, n),
            "truth_worn": np.ones(n, dtype=np.int64),
        },
        meta={"scenario": "unit", "seed": "7"},
    )


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def three_rows(header: str = HEADER) -> str:
    return f"{header}\n0.00,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n0.04,0,0,1,0,0,0\n"


# ----- CSV round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("two_sensors", [False, True])
def test_csv_round_trip_keeps_samples_truth_and_meta(tmp_path: Path, suffix: str, two_sensors: bool) -> None:
    original = make_recording(two_sensors=two_sensors)
    path = write_recording(original, tmp_path / f"rec{suffix}")

    loaded = read_recording(path)

    assert loaded.n_sensors == original.n_sensors
    assert loaded.rate_hz == pytest.approx(52.0, rel=1e-6)
    np.testing.assert_allclose(loaded.t_s, original.t_s, atol=1e-6)
    for sensor in range(original.n_sensors):
        np.testing.assert_allclose(loaded.accel_g[sensor], original.accel_g[sensor], atol=1e-6)
        np.testing.assert_allclose(loaded.gyro_dps[sensor], original.gyro_dps[sensor], atol=1e-5)
    assert list(loaded.truth) == list(original.truth)
    np.testing.assert_allclose(
        loaded.truth["truth_flexion_deg"], original.truth["truth_flexion_deg"], atol=1e-6
    )
    assert np.isnan(loaded.truth["truth_flexion_deg"][5])
    assert loaded.truth["truth_activity"].dtype == np.int64
    np.testing.assert_array_equal(loaded.truth["truth_activity"], original.truth["truth_activity"])
    assert loaded.meta == original.meta


def test_gz_suffix_writes_a_gzip_file(tmp_path: Path) -> None:
    path = write_recording(make_recording(), tmp_path / "rec.csv.gz")
    with gzip.open(path, "rt") as stream:
        lines = [line for line in stream if not line.startswith("#")]
    assert lines[0].strip().startswith("t_s,ax_g")


def test_columns_may_come_in_any_order(tmp_path: Path) -> None:
    text = (
        "gz_dps,truth_valid,az_g,t_s,ay_g,gy_dps,ax_g,gx_dps\n"
        "3,1,1.0,0.00,0.5,2,0.25,1\n"
        "3,0,1.0,0.01,0.5,2,0.25,1\n"
    )
    rec = read_recording(write_text(tmp_path / "shuffled.csv", text))
    np.testing.assert_array_equal(rec.accel_g[0][0], [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(rec.gyro_dps[0][0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(rec.truth["truth_valid"], [1, 0])
    assert rec.rate_hz == pytest.approx(100.0)


# ----- the real BROAD trials ----------------------------------------------------------------------

BROAD_FILES = sorted(BROAD_DIR.glob("*.csv.gz"))


@pytest.mark.skipif(not BROAD_FILES, reason="BROAD data not present")
def test_all_sixteen_broad_trials_load_at_57_hz_with_truth() -> None:
    assert len(BROAD_FILES) == 16
    for path in BROAD_FILES:
        rec = read_recording(path)
        assert rec.n_sensors == 1
        assert rec.rate_hz == pytest.approx(57.14, abs=0.01), path.name
        assert set(rec.truth) == {"truth_up_x", "truth_up_y", "truth_up_z", "truth_valid"}
        assert rec.truth["truth_valid"].dtype == np.int64
        assert set(np.unique(rec.truth["truth_valid"])) <= {0, 1}
        np.testing.assert_allclose(np.linalg.norm(rec.truth_up(), axis=1), 1.0, atol=1e-3)
        assert rec.n_samples > 10_000


@pytest.mark.skipif(not BROAD_FILES, reason="BROAD data not present")
def test_broad_accelerometer_at_the_start_points_along_true_up() -> None:
    rec = read_recording(BROAD_FILES[0])
    first_second = slice(0, 50)
    error = inclination_error_deg(rec.accel_g[0][first_second], rec.truth_up()[first_second])
    assert np.median(error) < 3.0


# ----- malformed files: clear errors -----------------------------------------------------------------


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_text(tmp_path / "r.csv", "t_s,ax_g,ay_g,az_g,gx_dps,gy_dps\n0,0,0,1,0,0\n0.01,0,0,1,0,0\n")
    with pytest.raises(RecordingError, match="missing required column.*gz_dps"):
        read_recording(path)


def test_unknown_column_is_rejected_by_name(tmp_path: Path) -> None:
    path = write_text(tmp_path / "r.csv", three_rows(HEADER + ",temperature").replace("0\n", "0,25\n"))
    with pytest.raises(RecordingError, match="unknown column 'temperature'"):
        read_recording(path)


def test_incomplete_second_sensor_is_rejected(tmp_path: Path) -> None:
    path = write_text(tmp_path / "r.csv", three_rows(HEADER + ",ax_g_2").replace("0\n", "0,1\n"))
    with pytest.raises(RecordingError, match="second-sensor columns are incomplete, missing ay_g_2"):
        read_recording(path)


def test_non_numeric_value_reports_line_and_column(tmp_path: Path) -> None:
    text = three_rows().replace("0.02,0,0,1,0,0,0", "0.02,0,zero,1,0,0,0")
    with pytest.raises(RecordingError, match=r"line 3, column ay_g: 'zero' is not a number"):
        read_recording(write_text(tmp_path / "r.csv", text))


def test_non_numeric_value_in_gzipped_file_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wt") as stream:
        stream.write("# scenario: x\n" + three_rows().replace("0.04,0,0,1,0,0,0", "0.04,0,0,1,0,0,?"))
    with pytest.raises(RecordingError, match=r"line 5, column gz_dps: '\?' is not a number"):
        read_recording(path)


def test_row_with_missing_field_reports_line(tmp_path: Path) -> None:
    text = three_rows().replace("0.02,0,0,1,0,0,0", "0.02,0,0,1,0,0")
    with pytest.raises(RecordingError, match="line 3: 6 fields, the header has 7 columns"):
        read_recording(write_text(tmp_path / "r.csv", text))


def test_duplicate_timestamp_reports_line(tmp_path: Path) -> None:
    text = three_rows().replace("0.04,", "0.02,")
    with pytest.raises(RecordingError, match="line 4: t_s=0.020000 duplicates the previous row"):
        read_recording(write_text(tmp_path / "r.csv", text))


def test_time_going_back_reports_line(tmp_path: Path) -> None:
    text = three_rows().replace("0.04,", "0.01,")
    with pytest.raises(RecordingError, match="line 4: t_s=0.010000 goes back from the previous row"):
        read_recording(write_text(tmp_path / "r.csv", text))


def test_gap_in_time_is_rejected_as_irregular(tmp_path: Path) -> None:
    rows = [f"{k * 0.02:.2f},0,0,1,0,0,0" for k in range(10) if k != 6]  # sample 6 dropped
    path = write_text(tmp_path / "r.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(RecordingError, match="line 8: t_s=0.140000 is 0.040000 s after the previous row"):
        read_recording(path)


def test_empty_file_and_header_only_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="empty file"):
        read_recording(write_text(tmp_path / "empty.csv", ""))
    with pytest.raises(RecordingError, match="no samples"):
        read_recording(write_text(tmp_path / "header.csv", HEADER + "\n"))


def test_recording_arrays_with_irregular_time_name_the_sample() -> None:
    t_s = np.arange(10) / 50.0
    t_s[4] = t_s[3]
    with pytest.raises(RecordingError, match="sample 4"):
        Recording(t_s=t_s, accel_g=[np.zeros((10, 3))], gyro_dps=[np.zeros((10, 3))])


def test_recording_rejects_mismatched_shapes_and_untruthful_names() -> None:
    with pytest.raises(RecordingError, match=r"accel_g\[0\] has shape \(9, 3\)"):
        Recording(t_s=np.arange(10) / 50.0, accel_g=[np.zeros((9, 3))], gyro_dps=[np.zeros((10, 3))])
    with pytest.raises(RecordingError, match="truth_<something>"):
        Recording(
            t_s=np.arange(10) / 50.0,
            accel_g=[np.zeros((10, 3))],
            gyro_dps=[np.zeros((10, 3))],
            truth={"flexion": np.zeros(10)},
        )


# ----- stimulus files ---------------------------------------------------------------------------------


def test_stimulus_file_bytes_follow_the_emulator_spec(tmp_path: Path) -> None:
    rec = make_recording(n=37, two_sensors=True)
    path = write_stimulus(rec, tmp_path / "lower.pstm", sensor=1)
    data = path.read_bytes()

    magic, version, channels, rate_hz, rows = struct.unpack_from("<4sHHfI", data, 0)
    assert (magic, version, channels, rows) == (b"PSTM", 1, 6, 37)
    assert rate_hz == pytest.approx(52.0, rel=1e-6)
    assert len(data) == 16 + 37 * 24
    for k in (0, 17, 36):
        row = struct.unpack_from("<6f", data, 16 + 24 * k)
        expected = np.concatenate((rec.accel_g[1][k], rec.gyro_dps[1][k])).astype(np.float32)
        np.testing.assert_array_equal(np.array(row, dtype=np.float32), expected)


def test_stimulus_reads_back(tmp_path: Path) -> None:
    rec = make_recording(n=50)
    stimulus = read_stimulus(write_stimulus(rec, tmp_path / "s.pstm"))
    assert stimulus.rate_hz == pytest.approx(52.0, rel=1e-6)
    np.testing.assert_array_equal(stimulus.samples, rec.samples(0).astype(np.float32))


def test_stimulus_of_a_missing_sensor_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IndexError, match="1 sensor"):
        write_stimulus(make_recording(), tmp_path / "s.pstm", sensor=1)


# ----- truth helpers ----------------------------------------------------------------------------------


def test_activity_codes_are_in_documented_order() -> None:
    assert ACTIVITY_NAMES == ("lying", "static", "moving", "walking", "not_worn")
    assert [int(a) for a in Activity] == [0, 1, 2, 3, 4]


def test_flexion_and_lateral_follow_the_mounting_convention() -> None:
    theta = np.radians(30.0)
    forward = np.array([np.cos(theta), 0.0, np.sin(theta)])
    assert flexion_deg_from_up(forward) == pytest.approx(30.0)
    assert flexion_deg_from_up(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0)
    bent_right = np.array([np.cos(np.radians(10.0)), np.sin(np.radians(10.0)), 0.0])
    assert lateral_deg_from_up(bent_right) == pytest.approx(10.0)
    assert float(inclination_error_deg(forward, np.array([1.0, 0.0, 0.0]))) == pytest.approx(30.0)


def test_slouch_episode_needs_thirty_seconds_above_twenty_degrees_while_static_and_worn() -> None:
    rate = 10.0
    flexion = np.zeros(2000)
    flexion[100:400] = 25.0  # 30.0 s: an episode
    flexion[500:799] = 25.0  # 29.9 s: too short
    flexion[900:1300] = 21.0  # 40 s, but moving for a moment in the middle: two short runs
    flexion[1400:1800] = 20.0  # not strictly above
    activity = np.full(2000, int(Activity.STATIC))
    activity[1100] = int(Activity.MOVING)
    worn = np.ones(2000, dtype=np.int64)

    labels = label_slouch_episodes(flexion, activity, worn, rate)

    assert labels.max() == 1
    assert np.all(labels[100:400] == 1)
    assert labels[99] == 0 and labels[400] == 0
    assert not labels[400:].any()

    worn[200] = 0
    assert not label_slouch_episodes(flexion, activity, worn, rate).any()
