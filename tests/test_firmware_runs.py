"""The firmware on the emulated board, in the real micropython: boots, samples, survives faults."""

from __future__ import annotations

import numpy as np
import pytest

import protocol
from emulator.recording import Recording
from emulator.runner import Board, FirmwareRunError, SensorSpec, run_recording

VARIANTS = ("LSM6DS3", "LSM6DS3TR-C", "LSM6DSO", "LSM6DSOX", "ISM330DHCX")


def upright(seconds: float, rate_hz: float = 52.0, tilt_deg: float = 0.0) -> Recording:
    """A wearer sitting still; ``tilt_deg`` of forward flexion."""
    n = int(seconds * rate_hz) + 1
    t = np.arange(n) / rate_hz
    a = np.radians(tilt_deg)
    accel = np.tile([np.cos(a), 0.0, np.sin(a)], (n, 1))
    return Recording(t_s=t, accel_g=[accel], gyro_dps=[np.zeros((n, 3))])


def faults(result, kind: str) -> list[dict]:
    return [e for e in result.events() if e["type"] == "sensor_fault" and protocol.FAULT_KINDS[e["kind"]] == kind]


def boots(result) -> list[dict]:
    return [e for e in result.events() if e["type"] == "boot"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_firmware_samples_every_variant_at_the_configured_rate(variant, tmp_path):
    board = Board(sensors=[SensorSpec(variant=variant, noise=False)], config={"trace": True})
    result = run_recording(upright(10, tilt_deg=30), tmp_path, board)
    assert [protocol.RESET_CAUSES[b["reset_cause"]] for b in boots(result)] == ["power_on"]
    assert not faults(result, "missing") and not faults(result, "whoami_mismatch")
    trace = np.array(result.trace)
    assert result.trace_columns[0] == "t_s"
    # 52 Hz for ~10 s, less the start-up before the first drain.
    assert 480 <= len(trace) <= 530
    assert np.all(np.diff(trace[:, 0]) > 0)
    ax, az = trace[:, 1], trace[:, 3]
    assert np.allclose(ax, np.cos(np.radians(30)), atol=0.002)
    assert np.allclose(az, np.sin(np.radians(30)), atol=0.002)


def test_boot_event_carries_the_wall_clock_the_board_was_given(tmp_path):
    board = Board(start_unix_s=1_767_600_000)
    result = run_recording(upright(3), tmp_path, board)
    (boot,) = boots(result)
    assert 1_767_600_000 <= boot["time_s"] <= 1_767_600_001
    assert (boot["fw_major"], boot["fw_minor"]) == (0, 1)


def test_missing_sensor_is_retried_with_back_off_not_a_crash_loop(tmp_path):
    board = Board(attached=(False,))
    result = run_recording(upright(70), tmp_path, board)
    missing = faults(result, "missing")
    # Retries after 1, 2, 4, 8, 16, 32 s: 7 attempts in 70 s, not one per drain.
    assert [f["retry_in_s"] for f in missing] == [1, 2, 4, 8, 16, 32, 64]
    assert len(boots(result)) == 1  # never reset


def test_wrong_chip_at_the_imu_address_is_reported_with_its_id(tmp_path):
    board = Board(attached=(False,), other_devices=[{"addr": 0x6A, "registers": {"15": 0x33}}])
    result = run_recording(upright(5), tmp_path, board)
    mismatch = faults(result, "whoami_mismatch")
    assert mismatch and all(f["detail"] == 0x33 for f in mismatch)
    assert mismatch[0]["i2c_addr"] == 0x6A


def test_bus_errors_are_recorded_and_the_sensor_recovers(tmp_path):
    board = Board(config={"trace": True}, i2c_faults=[{"addr": 0x6A, "start_s": 5.0, "end_s": 8.0, "errno": 116}])
    result = run_recording(upright(20), tmp_path, board)
    errors = faults(result, "i2c_error")
    assert errors and errors[0]["detail"] == 116
    assert len(faults(result, "recovered")) == 1
    t = np.array(result.trace)[:, 0]
    assert t.max() > 18  # sampling again after the fault


def test_fifo_overflow_after_a_stall_is_recorded_and_sampling_resumes(tmp_path):
    # The CPU hangs 8 s (less than the watchdog's 10 s): more than the FIFO holds at 52 Hz.
    board = Board(config={"trace": True}, cpu_stalls=[{"at_s": 10.0, "for_s": 8.0}])
    result = run_recording(upright(30), tmp_path, board)
    assert faults(result, "fifo_overflow")
    assert len(boots(result)) == 1
    assert np.array(result.trace)[:, 0].max() > 28


def test_a_hung_sample_loop_is_reset_by_the_watchdog(tmp_path):
    board = Board(cpu_stalls=[{"at_s": 10.0, "for_s": 15.0}])
    result = run_recording(upright(40), tmp_path, board)
    causes = [protocol.RESET_CAUSES[b["reset_cause"]] for b in boots(result)]
    assert causes == ["power_on", "wdt"]


def test_corrupt_config_falls_back_to_defaults_and_logs_it(tmp_path):
    board = Board(config_text='{"odr_hz": 104, "drain', config={"trace": True})
    result = run_recording(upright(5), tmp_path, board)
    (cfg,) = [e for e in result.events() if e["type"] == "config"]
    assert protocol.CONFIG_RESULTS[cfg["result"]] == "bad_json"
    assert protocol.CONFIG_SOURCES[cfg["source"]] == "defaults_fallback"
    assert len(boots(result)) == 1


def test_a_firmware_crash_is_reported_not_hidden(tmp_path):
    board = Board(config={"imu_addrs": [0x6A]})
    recording = upright(2)
    from emulator.runner import BoardRunner

    runner = BoardRunner(tmp_path, board)
    runner.prepare(recording)
    (runner.flash_dir / "main.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(FirmwareRunError, match="boom"):
        runner.run()


def test_a_recording_at_its_own_rate_is_resampled_to_the_firmware_odr_and_said(tmp_path):
    rec = upright(5, rate_hz=57.14)
    result = run_recording(rec, tmp_path, Board(config={"trace": True, "odr_hz": 104}))
    assert any("57.14 Hz" in n and "104 Hz" in n for n in result.notes)
    assert 440 <= len(result.trace) <= 530  # 104 Hz for ~5 s, less start-up and the last drain


def test_the_vibration_motor_does_not_disturb_sensing(tmp_path):
    # Calibrated upright, then a 30 deg slouch held for 3 minutes: the alert buzzes and
    # escalates while the IMU model shakes the samples as a running motor does.
    from emulator.scenarios import Scenario

    rec = Scenario(seed=3).sit(30.0, flexion_deg=0.0).slouch(180.0, flexion_deg=30.0).render()
    board = Board(config={"trace": True}, button_presses=[(3.0, 2.3)])
    result = run_recording(rec, tmp_path, board)
    assert result.board["motor_ms"] > 300  # it really buzzed
    trace = np.array(result.trace)
    cols = result.trace_columns
    t = trace[:, cols.index("t_s")]
    flexion = trace[:, cols.index("flexion_deg")]
    activity = trace[:, cols.index("activity")]
    alerting = trace[:, cols.index("alerting")] > 0
    truth = np.interp(t, rec.t_s, rec.truth["truth_flexion_deg"])
    # While the alert is open (the motor buzzing and pausing), flexion follows the posture and
    # the wearer stays "static": the vibration is neither posture nor movement.
    assert alerting.sum() > 52 * 30
    assert np.sqrt(np.mean((flexion[alerting] - truth[alerting]) ** 2)) < 1.0
    assert np.mean(activity[alerting] == protocol.ACTIVITY_STATIC) > 0.98
    assert len(result.alerts()) <= 1  # the motor never ends the spell to start another


def test_the_board_light_sleeps_between_drains_and_still_sees_the_button(tmp_path):
    rec = upright(120)
    asleep = run_recording(rec, tmp_path / "on", Board(button_presses=[(30.0, 3.0)]))
    awake = run_recording(rec, tmp_path / "off", Board(config={"light_sleep": False}))
    assert asleep.board["sleep_ms"] > 0.9 * asleep.board["t_ms"]
    assert awake.board["sleep_ms"] == 0
    # The long press that began in a sleep woke the board and calibrated.
    assert [e for e in asleep.events() if e["type"] == "calibration"]
    assert [e for e in asleep.events() if e["type"] == "button" and protocol.BUTTON_ACTIONS[e["action"]] == "long"]
    # Sampling kept up: no FIFO overflow in either run.
    assert not faults(asleep, "fifo_overflow") and not faults(awake, "fifo_overflow")
