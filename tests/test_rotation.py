"""Task rotation compliance on constructed worker-days (hand-computed expectations)."""

from __future__ import annotations

import dataclasses

import numpy as np

import protocol
from companion.rotation import (
    DayCompliance,
    MinuteSeries,
    Policy,
    Segment,
    Task,
    day_compliance,
    infer_segments,
    segments_from_button_events,
    week_compliance,
)

T0 = 1_767_600_000
TASKS = {1: Task(1, "desk", "low"), 2: Task(2, "sorting", "high"), 3: Task(3, "lifting", "high")}


def day(
    profile_deg: list[float], worn: list[bool] | None = None, activity: list[int] | None = None
) -> MinuteSeries:
    """Minutes whose whole 60 s sit in the 5° bin of the given flexion."""
    n = len(profile_deg)
    flex = np.zeros((n, protocol.ANGLE_BINS), np.uint16)
    for i, deg in enumerate(profile_deg):
        flex[i, protocol.angle_bin(int(deg * 10))] = 60
    act = np.zeros((n, len(protocol.ACTIVITIES)), np.uint16)
    for i in range(n):
        act[i, (activity or [protocol.ACTIVITY_STATIC] * n)[i]] = 60
    worn_s = np.array([60 if (worn is None or worn[i]) else 0 for i in range(n)], np.uint16)
    return MinuteSeries(T0 + 60 * np.arange(n, dtype=np.int64), flex, act, worn_s)


def seg(task: int, start_min: int, end_min: int) -> Segment:
    return Segment(task, T0 + 60 * start_min, T0 + 60 * end_min, "api")


def test_a_day_that_rotates_in_time_to_a_different_posture_is_compliant() -> None:
    minutes = day([5.0] * 60 + [35.0] * 60 + [5.0] * 60)
    result = day_compliance(
        [seg(1, 0, 60), seg(2, 60, 120), seg(1, 120, 180)], minutes, Policy(60, 60), TASKS
    )
    assert result.compliant and result.overdue_min == 0
    assert (result.rotations_required, result.rotations_met) == (2, 2)
    assert [s["changed"] for s in result.switches] == [True, True]
    assert result.switches[0]["profile_change_deg"] >= 25


def test_a_task_held_thirty_minutes_past_the_limit_is_overdue() -> None:
    minutes = day([30.0] * 90 + [5.0] * 30)
    result = day_compliance([seg(2, 0, 90), seg(1, 90, 120)], minutes, Policy(60, None), TASKS)
    assert result.overdue_min == 30 and not result.compliant
    assert result.rotations_required == 1 and result.rotations_met == 0  # due at 60 min, made at 90: late
    assert result.longest_task_min == 90


def test_rotating_between_tasks_with_the_same_posture_does_not_count_as_relief() -> None:
    minutes = day([25.0] * 120)
    result = day_compliance([seg(1, 0, 60), seg(3, 60, 120)], minutes, Policy(60, None, 5.0), TASKS)
    assert result.rotated_but_same_posture == 1 and not result.compliant
    assert result.overdue_min == 0 and result.rotations_met == 1


def test_high_load_tasks_in_a_row_chain_into_one_spell() -> None:
    minutes = day([40.0] * 50 + [45.0] * 50)
    result = day_compliance([seg(2, 0, 50), seg(3, 50, 100)], minutes, Policy(60, 60), TASKS)
    assert result.longest_high_load_min == 100
    assert result.overdue_min == 40  # the task limit holds, the high-load one is 40 min over


def test_unworn_minutes_break_continuity() -> None:
    worn = [True] * 50 + [False] * 20 + [True] * 50
    result = day_compliance([seg(1, 0, 120)], day([5.0] * 120, worn), Policy(60, None), TASKS)
    assert result.longest_task_min == 50 and result.overdue_min == 0 and result.tracked_min == 100


def test_a_week_counts_only_tracked_days() -> None:
    good = day_compliance([seg(1, 0, 30)], day([5.0] * 30), Policy(60, None), TASKS)
    bad = day_compliance([seg(2, 0, 90)], day([30.0] * 90), Policy(60, None), TASKS)
    empty = day_compliance([], day([5.0] * 10), Policy(60, None), TASKS)
    week = week_compliance([good, bad, empty])
    assert (week.days, week.compliant_days, week.compliant_share, week.overdue_min) == (2, 1, 0.5, 30)


def test_segments_are_inferred_from_lasting_activity_changes() -> None:
    act = [protocol.ACTIVITY_STATIC] * 30 + [protocol.ACTIVITY_WALKING] * 5 + [protocol.ACTIVITY_MOVING] * 20
    segments = infer_segments(day([5.0] * 55, activity=act), {"static": 1, "moving": 2})
    assert [(s.task_id, (s.end_s - s.start_s) // 60, s.source) for s in segments] == [
        (1, 30, "inferred"),
        (2, 20, "inferred"),
    ]


def test_task_button_presses_become_segments_until_the_next_press() -> None:
    events = [
        {"time_s": T0 + 600, "action": protocol.BUTTON_TASK_SWITCH, "task_id": 2},
        {"time_s": T0 + 60, "action": protocol.BUTTON_TASK_SWITCH, "task_id": 0},  # an index: task 1
        {"time_s": T0 + 300, "action": protocol.BUTTON_SHORT, "task_id": 0},  # a snooze, not a switch
    ]
    segments = segments_from_button_events(events, T0, T0 + 3600, [1, 2, 3])
    assert [(s.task_id, s.start_s - T0, s.end_s - T0) for s in segments] == [(1, 60, 600), (2, 600, 3600)]


def test_the_firmwares_double_presses_step_through_the_teams_tasks() -> None:
    # The one-button device cannot name a task: each double press (task_id 0) is "the next one".
    events = [
        {"time_s": T0 + m * 60, "action": protocol.BUTTON_TASK_SWITCH, "task_id": 0}
        for m in (0, 50, 100, 150)
    ]
    segments = segments_from_button_events(events, T0, T0 + 4 * 3600, [1, 2, 3])
    assert [(s.task_id, (s.end_s - s.start_s) // 60) for s in segments] == [
        (1, 50),
        (2, 50),
        (3, 50),
        (1, 90),
    ]
    assert all(a.task_id != b.task_id for a, b in zip(segments, segments[1:], strict=False))


def test_as_dict_by_hand_matches_dataclasses_asdict():
    # as_dict is written out by hand for speed (the team page calls it for eight weeks of
    # worker-days): it must keep every field a new version of the dataclass adds.
    day = DayCompliance(rotations_required=2, rotations_met=1, overdue_min=3, compliant=False)
    day.switches.append({"time_s": 60, "from_task": 1, "to_task": 2, "changed": True})
    assert day.as_dict() == dataclasses.asdict(day)
    assert day.as_dict()["switches"][0] is not day.switches[0]
    week = week_compliance([day, DayCompliance(tracked_min=5)])
    assert week.as_dict() == dataclasses.asdict(week)


def test_a_day_without_segments_is_judged_the_same_without_its_minutes():
    # The team page reads no minutes of a worked day without task segments (and no inference).
    minutes = day([25.0] * 30 + [50.0] * 30)
    policy = Policy(max_task_min=20, max_high_load_min=20)
    without = day_compliance([], MinuteSeries.empty(), policy, TASKS)
    assert day_compliance([], minutes, policy, TASKS).as_dict() == without.as_dict()
    assert without.tracked_min == 0 and without.compliant
