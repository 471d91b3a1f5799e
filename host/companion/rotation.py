"""Task rotation compliance of a worker-day and a team-week (docs/metrics.md, "Task rotation").

A worker-day is a minute timeline: which task each worn minute belonged to (task segments from
the device's task button, the API, or inferred from activity), and each minute's flexion
histogram.  A team's policy limits the continuous minutes in one task and in high-load tasks,
and may ask that a rotation change the posture profile (job rotation only relieves the back if
the next task loads it differently: Mathiassen 2006, "Diversity and variation in biomechanical
exposure: what is it, and why would we like to know?", Appl Ergon 37:419-427).

Definitions (minutes are 60 s; a minute counts when the device was worn in it):
- a *run* is consecutive worn minutes in one task; an unworn or untracked minute ends it;
- a *high-load spell* is consecutive worn minutes in high-load tasks (several tasks chained);
- for a run of L minutes under a limit M: overdue = max(0, L − M) minutes, and ⌈L/M⌉ − 1
  rotations were due within it and not made; a switch to another task after a run of at most M
  minutes is a rotation made on time;
- the same for high-load spells against max_high_load_min;
- profile change at a switch: the larger of |Δ median| and |Δ 90th percentile| of flexion
  (APDF, as in companion.exposure) between the 30 worn minutes before and after it; a switch
  below min_profile_change_deg is "rotated but same posture";
- a day is compliant when nothing is overdue and no rotation kept the same posture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

import protocol

LoadClass = Literal["low", "medium", "high"]
Source = Literal["button", "api", "inferred"]
PROFILE_WINDOW_MIN = 30
_BIN_MID_DEG = np.array([-2.5] + [e + 2.5 for e in protocol.ANGLE_EDGES_DEG], dtype=np.float64)


@dataclass(frozen=True)
class Task:
    id: int
    name: str
    load_class: LoadClass


@dataclass(frozen=True)
class Policy:
    max_task_min: int | None
    max_high_load_min: int | None
    min_profile_change_deg: float = 5.0


@dataclass(frozen=True)
class Segment:
    task_id: int
    start_s: int
    end_s: int  # exclusive
    source: Source


@dataclass
class MinuteSeries:
    start_s: np.ndarray  # int64[n]
    flexion_s: np.ndarray  # uint16[n, 20]
    activity_s: np.ndarray  # uint16[n, 5]
    worn_s: np.ndarray  # uint16[n]

    @classmethod
    def empty(cls) -> MinuteSeries:
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, protocol.ANGLE_BINS), np.uint16),
            np.zeros((0, len(protocol.ACTIVITIES)), np.uint16),
            np.zeros(0, np.uint16),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Any]) -> MinuteSeries:
        """From store MinuteSummary rows (start_s, worn_s, flexion_bins, activity_s bytes)."""
        if not rows:
            return cls.empty()
        n = len(rows)
        flex = np.frombuffer(b"".join(bytes(r.flexion_bins) for r in rows), np.uint8).reshape(n, -1)
        act = np.frombuffer(b"".join(bytes(r.activity_s) for r in rows), np.uint8).reshape(n, -1)
        return cls(
            np.array([r.start_s for r in rows], np.int64),
            flex.astype(np.uint16),
            act.astype(np.uint16),
            np.array([r.worn_s for r in rows], np.uint16),
        )


@dataclass
class DayCompliance:
    rotations_required: int = 0
    rotations_met: int = 0
    overdue_min: int = 0
    longest_task_min: int = 0
    longest_high_load_min: int = 0
    rotated_but_same_posture: int = 0
    tracked_min: int = 0
    compliant: bool = True
    switches: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: its deep copy was a tenth of the team page's time
        # (eight weeks of worker-days).  The switches are flat dicts of numbers: copied one deep.
        return {
            "rotations_required": self.rotations_required,
            "rotations_met": self.rotations_met,
            "overdue_min": self.overdue_min,
            "longest_task_min": self.longest_task_min,
            "longest_high_load_min": self.longest_high_load_min,
            "rotated_but_same_posture": self.rotated_but_same_posture,
            "tracked_min": self.tracked_min,
            "compliant": self.compliant,
            "switches": [dict(s) for s in self.switches],
        }


@dataclass
class WeekCompliance:
    days: int
    compliant_days: int
    compliant_share: float | None
    rotations_required: int
    rotations_met: int
    overdue_min: int
    rotated_but_same_posture: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # flat fields: no deep copy needed (see DayCompliance.as_dict)


def _percentile(hist: np.ndarray, q: float) -> float | None:
    """APDF percentile (degrees) of a summed 5° histogram, linear within the bin."""
    total = float(hist.sum())
    if total <= 0:
        return None
    cum = np.cumsum(hist)
    i = int(np.searchsorted(cum, q / 100.0 * total))
    lo = -5.0 if i == 0 else float(protocol.ANGLE_EDGES_DEG[i - 1])
    before = float(cum[i - 1]) if i else 0.0
    inside = float(hist[i]) or 1.0
    return lo + 5.0 * (q / 100.0 * total - before) / inside


def _task_per_minute(segments: Iterable[Segment], minutes: MinuteSeries) -> np.ndarray:
    """Task id per minute (−1: none), worn minutes only."""
    task = np.full(minutes.start_s.shape, -1, np.int64)
    mid = minutes.start_s + 30
    for s in segments:
        task[(mid >= s.start_s) & (mid < s.end_s)] = s.task_id
    task[minutes.worn_s == 0] = -1
    return task


def _runs(keys: np.ndarray, start_s: np.ndarray) -> list[tuple[int, int, int]]:
    """(key, first index, length) of runs of equal keys >= 0 over consecutive minutes."""
    out: list[tuple[int, int, int]] = []
    i = 0
    n = len(keys)
    while i < n:
        if keys[i] < 0:
            i += 1
            continue
        j = i + 1
        while j < n and keys[j] == keys[i] and start_s[j] - start_s[j - 1] == 60:
            j += 1
        out.append((int(keys[i]), i, j - i))
        i = j
    return out


def _limit(runs: list[tuple[int, int, int]], limit: int | None, result: DayCompliance) -> None:
    if not limit:
        return
    for _key, _first, length in runs:
        result.overdue_min += max(0, length - limit)
        missed = max(0, math.ceil(length / limit) - 1)
        result.rotations_required += missed


def day_compliance(
    segments: list[Segment], minutes: MinuteSeries, policy: Policy, tasks: dict[int, Task]
) -> DayCompliance:
    result = DayCompliance()
    task = _task_per_minute(segments, minutes)
    result.tracked_min = int((task >= 0).sum())
    runs = _runs(task, minutes.start_s)
    high = (
        np.where(
            task >= 0,
            np.array([1 if tasks.get(int(t)) and tasks[int(t)].load_class == "high" else -1 for t in task]),
            -1,
        )
        if len(task)
        else task
    )
    spells = _runs(high, minutes.start_s)
    result.longest_task_min = max((length for _k, _f, length in runs), default=0)
    result.longest_high_load_min = max((length for _k, _f, length in spells), default=0)
    _limit(runs, policy.max_task_min, result)
    _limit(spells, policy.max_high_load_min, result)
    # Switches: a run followed directly (next worn minute) by a run of another task.
    for (k0, f0, n0), (k1, f1, _n1) in zip(runs, runs[1:], strict=False):
        if k0 == k1 or minutes.start_s[f1] - minutes.start_s[f0 + n0 - 1] > 15 * 60:
            continue  # the same task again, or a long break in between: not a rotation
        on_time = policy.max_task_min is None or n0 <= policy.max_task_min
        if on_time:
            result.rotations_met += 1
            result.rotations_required += 1
        before = minutes.flexion_s[max(f0 + n0 - PROFILE_WINDOW_MIN, f0) : f0 + n0].sum(axis=0)
        after = minutes.flexion_s[f1 : f1 + PROFILE_WINDOW_MIN].sum(axis=0)
        changes = []
        for q in (50, 90):
            a, b = _percentile(before, q), _percentile(after, q)
            if a is not None and b is not None:
                changes.append(abs(b - a))
        change = max(changes) if changes else None
        changed = change is None or change >= policy.min_profile_change_deg
        if not changed:
            result.rotated_but_same_posture += 1
        result.switches.append(
            {
                "time_s": int(minutes.start_s[f1]),
                "from_task": k0,
                "to_task": k1,
                "after_min": n0,
                "on_time": on_time,
                "profile_change_deg": None if change is None else round(change, 1),
                "changed": changed,
            }
        )
    result.compliant = result.overdue_min == 0 and (
        policy.min_profile_change_deg <= 0 or result.rotated_but_same_posture == 0
    )
    return result


def week_compliance(days: list[DayCompliance]) -> WeekCompliance:
    tracked = [d for d in days if d.tracked_min > 0]
    compliant = sum(1 for d in tracked if d.compliant)
    return WeekCompliance(
        days=len(tracked),
        compliant_days=compliant,
        compliant_share=round(compliant / len(tracked), 3) if tracked else None,
        rotations_required=sum(d.rotations_required for d in tracked),
        rotations_met=sum(d.rotations_met for d in tracked),
        overdue_min=sum(d.overdue_min for d in tracked),
        rotated_but_same_posture=sum(d.rotated_but_same_posture for d in tracked),
    )


def infer_segments(
    minutes: MinuteSeries, tasks_by_activity: dict[str, int] | None = None, min_segment_min: int = 10
) -> list[Segment]:
    """Heuristic segments from activity: a new segment where the dominant activity class changes
    and stays for at least min_segment_min minutes.  Task ids: tasks_by_activity[class], or the
    index of the activity class (0 lying … 4 not worn) when no mapping is given."""
    if not len(minutes.start_s):
        return []
    dominant = minutes.activity_s.argmax(axis=1)
    dominant[minutes.worn_s == 0] = -1
    out: list[Segment] = []
    for key, first, length in _runs(dominant.astype(np.int64), minutes.start_s):
        if length < min_segment_min:
            continue
        name = protocol.ACTIVITIES[key]
        task_id = (tasks_by_activity or {}).get(name, key)
        start = int(minutes.start_s[first])
        out.append(Segment(task_id, start, start + 60 * length, "inferred"))
    return out


def segments_from_button_events(
    events: list[dict[str, Any]], day_start_s: int, day_end_s: int, task_ids: list[int]
) -> list[Segment]:
    """Segments from the device's task-switch presses (BUTTON events, action task_switch): each
    lasts until the next press or the end of the day.  The event's task_id is a task id when it
    is one, else an index into task_ids; 0, what the one-button firmware sends for its double
    press, means "the next task": the first of task_ids at the day's first press, then each
    press the one after the previous segment's (cycling), so every press is a real change."""
    presses = sorted(
        (int(e["time_s"]), int(e.get("task_id", 0)))
        for e in events
        if e.get("action") in (protocol.BUTTON_TASK_SWITCH, "task_switch")
    )
    out: list[Segment] = []
    current = -1  # index in task_ids of the task the wearer is on
    for i, (t, tid) in enumerate(presses):
        if tid == 0 and task_ids and 0 not in task_ids:
            current = (current + 1) % len(task_ids)
            tid = task_ids[current]
        elif tid in task_ids:
            current = task_ids.index(tid)
        elif 0 <= tid < len(task_ids):
            current = tid
            tid = task_ids[tid]
        else:
            continue
        end = presses[i + 1][0] if i + 1 < len(presses) else day_end_s
        start = max(t, day_start_s)
        if end > start:
            out.append(Segment(tid, start, min(end, day_end_s), "button"))
    return out
