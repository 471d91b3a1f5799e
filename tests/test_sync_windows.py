"""The radio's sync windows and the button's gestures, on the firmware in the real micropython:
the radio is off unless USB power, a very long press or the schedule opened a window, and a
window with no host closes on time (DESIGN §3 Power)."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

import protocol
from companion.store import Device, Organisation, Team, Worker, open_store, session_scope
from companion.sync.emulated import sync_into_store
from emulator.recording import Recording
from emulator.runner import Board, run_recording
from emulator.scenarios import generate
from emulator.workday import Wearer, run_day

SYNC_PRESS_S = 7.0  # held past the firmware's 6 s sync press


def sitting(seconds: float, rate_hz: float = 52.0) -> Recording:
    n = int(seconds * rate_hz) + 1
    accel = np.tile([1.0, 0.0, 0.0], (n, 1))
    return Recording(t_s=np.arange(n) / rate_hz, accel_g=[accel], gyro_dps=[np.zeros((n, 3))])


def buttons(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [protocol.BUTTON_ACTIONS[e["action"]] for e in result.events() if e["type"] == "button"]


def radio_on_battery_s(board: dict) -> float:  # type: ignore[type-arg]
    return (board["radio_ms"] - board["usb_radio_ms"]) / 1000


def test_the_radio_stays_off_on_battery_without_a_window(tmp_path: Path) -> None:
    result = run_recording(sitting(300), tmp_path, Board())
    assert result.board["radio_ms"] == 0


def test_the_charger_window_is_booked_to_usb_power(tmp_path: Path) -> None:
    # On the charger from 100 s to 200 s with no host: the window stays open (awake, radio on)
    # for those 100 s, all of it paid by USB; the rest of the run light-sleeps on battery.
    result = run_recording(sitting(300), tmp_path, Board(usb_power=[(100.0, 200.0)]))
    b = result.board
    assert b["usb_ms"] == 100_000
    assert 98_000 <= b["usb_radio_ms"] <= 100_000
    assert b["radio_ms"] - b["usb_radio_ms"] <= 1_500  # the radio task sees USB go within its 1 s poll
    assert b["usb_awake_ms"] >= 98_000 and b["usb_sleep_ms"] <= 2_000
    assert b["sleep_ms"] - b["usb_sleep_ms"] > 0.9 * 200_000


def test_a_button_window_with_no_host_closes_after_its_time(tmp_path: Path) -> None:
    board = Board(config={"sync_window_s": 60}, button_presses=[(30.0, SYNC_PRESS_S)])
    result = run_recording(sitting(300), tmp_path, board)
    assert buttons(result) == ["sync"]
    # Open from the release (within the radio task's 1 s poll and a 0.5 s drain) for 60 s.
    assert 59.0 <= radio_on_battery_s(result.board) <= 62.0
    assert result.board["usb_ms"] == 0


def test_scheduled_windows_open_every_sync_every_min(tmp_path: Path) -> None:
    board = Board(config={"sync_every_min": 5, "sync_window_s": 30})
    result = run_recording(sitting(16 * 60), tmp_path, board)
    # At 5, 10 and 15 minutes, 30 s each (the last one cut by the power-off at 16 min).
    assert 88.0 <= result.board["radio_ms"] / 1000 <= 93.0


def test_the_radio_light_sleeps_again_once_the_window_closes(tmp_path: Path) -> None:
    board = Board(config={"sync_window_s": 60}, button_presses=[(30.0, SYNC_PRESS_S)])
    result = run_recording(sitting(600), tmp_path, board)
    # Awake while the radio is on (MicroPython's light sleep would drop BLE), asleep otherwise.
    awake_s = result.board["awake_ms"] / 1000
    assert 60.0 <= awake_s <= 60.0 + 0.05 * 600
    assert result.board["sleep_ms"] > 0.85 * result.board["t_ms"]


def test_a_double_press_is_a_task_switch_and_a_single_press_snoozes(tmp_path: Path) -> None:
    presses = [(60.0, 0.15), (60.35, 0.15), (120.0, 0.15), (180.0, 3.0)]
    result = run_recording(sitting(240), tmp_path, Board(button_presses=presses))
    # Two quick presses are one gesture: a task switch, never a snooze as well.
    assert buttons(result) == ["task_switch", "short", "long"]
    switch = next(e for e in result.events() if e["type"] == "button")
    assert protocol.BUTTON_ACTIONS[switch["action"]] == "task_switch"


def test_a_very_long_press_syncs_away_from_the_charger(tmp_path: Path, db_url: str) -> None:
    # The companion on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set.
    recording = generate("office-hour", seed=3, hours=0.25)
    key = secrets.token_bytes(32)
    engine = open_store(db_url)
    with session_scope(engine) as session:
        team = Team(organisation=Organisation(name="org"), name="team")
        session.add(Device(device_id="W001", key=key, worker=Worker(team=team, name="Ada")))
    board = Board(button_presses=[(300.0, SYNC_PRESS_S)])
    wearer = Wearer("W001", key, recording, 1_767_600_000, board=board, charge_s=60)
    day = run_day(wearer, tmp_path / "board", sync_into_store(engine, "W001"))
    assert "sync" in buttons(day.run)
    # The session ran on battery, mid-day, and the window closed when it was done (not at its
    # 120 s timeout): the host holds what was written up to the press, the device the rest.
    assert day.host.records > 0
    assert 0 < radio_on_battery_s(day.run.board) < 60
    assert day.host.sessions[0].seqs == list(range(1, day.host.acked_seq + 1))
    assert max(r.seq for r in day.run.records) > day.host.acked_seq  # the rest of the day
    engine.dispose()


WINDOW_RULES = """
import power
w = power.RadioWindow(60, 0, 0)
seen = []
def at(t_s, usb=False, connected=False):
    seen.append((t_s, w.wanted(t_s * 1000, usb, connected)))
w.open_for(power.REASON_BUTTON, 0)  # times in ms
at(59); at(60)                      # open for its 60 s, then closed
w.open_for(power.REASON_BUTTON, 100000)
at(170, connected=True)             # past its time with a host connected: kept open
at(339, connected=True); at(340, connected=True)  # but never past 4 windows (240 s)
w.open_for(power.REASON_BUTTON, 400000)
w.session_done()
at(401)                             # the host took the whole log: closed at once
at(500, usb=True)                   # on the charger: open ...
w.session_done()
at(501, usb=True)                   # ... until the session is done ...
at(502, usb=False); at(503, usb=True)  # ... and again after the board left USB
print(seen, w.opened)
"""


def test_window_rules_timeout_host_extension_cap_and_charger(tmp_path: Path) -> None:
    from both import run_both

    out = run_both(WINDOW_RULES, tmp_path)
    assert out.strip() == (
        "[(59, True), (60, False), (170, True), (339, True), (340, False), (401, False),"
        " (500, True), (501, False), (502, False), (503, True)] 3"
    )
