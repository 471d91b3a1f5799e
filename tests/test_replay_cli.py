"""`posture replay`: a recording through the firmware, reported as a table, JSON and a trace."""

import csv
import json

import numpy as np

from companion.cli import main
from emulator.recording import Recording, write_recording


def test_replay_writes_json_and_a_trace_with_t_s_first(tmp_path, capsys):
    n = 52 * 8
    t = np.arange(n) / 52.0
    rec = Recording(t_s=t, accel_g=[np.tile([1.0, 0.0, 0.0], (n, 1))], gyro_dps=[np.zeros((n, 3))])
    path = write_recording(rec, tmp_path / "sitting.csv.gz")
    code = main(["replay", str(path), "--json", str(tmp_path / "out.json"), "--trace", str(tmp_path / "t.csv")])
    assert code == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    assert {"events", "minutes", "alerts"} <= set(doc)
    assert [e["type"] for e in doc["events"]][:1] == ["boot"]
    with (tmp_path / "t.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "t_s"
    assert len(rows) > 300
    shown = capsys.readouterr().out
    assert "posture replay" in shown and "boot" in shown


def test_replay_of_a_missing_file_says_what_to_do(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit, match="no such recording"):
        main(["replay", str(tmp_path / "nope.csv")])


def test_calibrate_at_presses_the_button_and_the_firmware_calibrates(tmp_path):
    n = 52 * 20
    t = np.arange(n) / 52.0
    # Sitting 10 degrees forward the whole time: after calibration that is the neutral.
    a = np.radians(10)
    rec = Recording(t_s=t, accel_g=[np.tile([np.cos(a), 0.0, np.sin(a)], (n, 1))], gyro_dps=[np.zeros((n, 3))])
    path = write_recording(rec, tmp_path / "sitting.csv")
    out = tmp_path / "out.json"
    assert main(["replay", str(path), "--calibrate-at", "3", "--json", str(out), "--trace", str(tmp_path / "t.csv")]) == 0
    events = json.loads(out.read_text())["events"]
    kinds = [e["type"] for e in events]
    assert "button" in kinds and "calibration" in kinds
    with (tmp_path / "t.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert abs(float(rows[60]["flexion_deg"]) - 10) < 1.0  # before: against the default neutral
    assert abs(float(rows[-1]["flexion_deg"])) < 0.5  # after: the calibrated neutral
