"""The wearer's own pages in plain words: a day's and a week's summary sentences.

Every number comes from the exposure metrics (companion.exposure, docs/metrics.md) or the
day's ALERT events; this module only picks and words them::

    tally = alert_tally(timeline.alerts)
    busiest = busiest_hour(minute_start_s, minute_above_20_s, day_start_s)
    day_summary(metrics, busiest, tally, format_clock)
    # "You wore the sensor 6 h 30 min and spent 42 min of it bent forward more than 20° (11 %),
    #  mostly between 10:00 and 11:00. Your sensor buzzed 9 times; you corrected 8 of them
    #  within a minute."
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import protocol

CORRECTED_WITHIN_S = 60  # "within a minute"
HOUR_S = 3600
# Below this change in share of worn time above 20° (percentage points), two weeks are "about
# the same".
SAME_WEEK_PP = 1.0


def duration_text(seconds: float) -> str:
    """'0 min', '42 min', '1 h 05 min', '31 h' (rounded to the minute)."""
    minutes = round(seconds / 60)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


@dataclass(frozen=True)
class AlertTally:
    """A day's alerts from the wearer's side.

    `buzzed`: alerts the sensor buzzed for (every outcome but ``suppressed``); `silent`: the
    suppressed ones (quiet hours, snooze, cooldown, daily cap); `corrected_within_minute`:
    buzzed alerts with outcome ``corrected`` whose time_to_correct_s is at most 60 s."""

    buzzed: int
    silent: int
    corrected_within_minute: int


def alert_tally(alerts: Iterable[Mapping[str, Any]]) -> AlertTally:
    """Count a day's ALERT events (decoded fields: ``outcome`` code, ``time_to_correct_s``)."""
    suppressed = protocol.OUTCOMES.index("suppressed")
    corrected = protocol.OUTCOME_CORRECTED
    buzzed = silent = quick = 0
    for alert in alerts:
        if alert.get("outcome") == suppressed:
            silent += 1
            continue
        buzzed += 1
        ttc = alert.get("time_to_correct_s")
        if alert.get("outcome") == corrected and ttc is not None and ttc <= CORRECTED_WITHIN_S:
            quick += 1
    return AlertTally(buzzed, silent, quick)


@dataclass(frozen=True)
class BusiestHour:
    """The hour of the day with the most time bent forward more than 20°: [start_s, start_s +
    1 h), its seconds above 20° and their share of the day's."""

    start_s: int
    above_20_s: int
    share: float


def busiest_hour(
    minute_start_s: Sequence[int], minute_above_20_s: Sequence[int], day_start_s: int
) -> BusiestHour | None:
    """The hour (counted from the local midnight `day_start_s`) holding most of the day's time
    above 20°; None when there was none.  Ties go to the earlier hour."""
    start = np.asarray(minute_start_s, dtype=np.int64)
    above = np.asarray(minute_above_20_s, dtype=np.int64)
    total = int(above.sum()) if len(above) else 0
    if total <= 0:
        return None
    hour = (start - day_start_s) // HOUR_S
    per_hour = np.bincount(hour, weights=above)
    top = int(per_hour.argmax())
    return BusiestHour(day_start_s + top * HOUR_S, int(per_hour[top]), float(per_hour[top]) / total)


def _above_20_s(metrics: Mapping[str, Any]) -> int:
    return int(((metrics.get("flexion") or {}).get("time_above_s") or {}).get("20") or 0)


def day_summary(
    metrics: Mapping[str, Any] | None,
    busiest: BusiestHour | None,
    tally: AlertTally,
    clock: Callable[[int], str],
) -> str:
    """Two sentences on a day: worn time, time bent forward more than 20° (and when most of
    it was), and how the wearer answered the buzzes.  `clock` formats a unix time as the
    wearer's local "HH:MM"."""
    if not metrics or not metrics.get("worn_s"):
        return "No data for this day yet: your sensor sends it when it is on its charger."
    worn_s = int(metrics["worn_s"])
    above_s = _above_20_s(metrics)
    text = f"You wore the sensor {duration_text(worn_s)}"
    if round(above_s / 60) == 0:
        text += " and were hardly ever bent forward more than 20°."
    else:
        text += (
            f" and spent {duration_text(above_s)} of it bent forward more than 20°"
            f" ({100 * above_s / worn_s:.0f} %)"
        )
        if busiest is not None:
            span = f"between {clock(busiest.start_s)} and {clock(busiest.start_s + HOUR_S)}"
            if busiest.share >= 0.5:
                text += f", mostly {span}"
            else:
                text += f", the most of it ({duration_text(busiest.above_20_s)}) {span}"
        text += "."
    if tally.buzzed:
        text += (
            f" Your sensor buzzed {_times(tally.buzzed)}; you corrected "
            f"{tally.corrected_within_minute} of {'it' if tally.buzzed == 1 else 'them'} within a minute."
        )
    else:
        text += " Your sensor did not need to buzz."
    if tally.silent:
        more = "1 more alert" if tally.silent == 1 else f"{tally.silent} more alerts"
        text += f" {more} stayed silent (quiet hours, snooze or its daily limit)."
    return text


@dataclass(frozen=True)
class WeekTotals:
    """A week's sums of the daily exposure metrics (days with data only)."""

    days: int
    worn_s: int
    above_20_s: int
    above_45_s: int
    above_60_s: int
    alerts: int
    alerts_corrected: int  # alerts with outcome "corrected" (from each day's corrected_pct)

    @property
    def above_20_pct(self) -> float | None:
        return 100 * self.above_20_s / self.worn_s if self.worn_s else None


def week_totals(days: Iterable[Mapping[str, Any] | None]) -> WeekTotals:
    """Sum the metrics of a week's days (None: a day without data)."""
    metrics = [m for m in days if m and m.get("worn_s")]

    def above(m: Mapping[str, Any], deg: int) -> int:
        return int(m["flexion"]["time_above_s"][str(deg)])

    corrected = 0
    for m in metrics:
        pct = m["alerts"]["corrected_pct"]
        corrected += round(m["alerts"]["count"] * pct / 100) if pct is not None else 0
    return WeekTotals(
        days=len(metrics),
        worn_s=sum(int(m["worn_s"]) for m in metrics),
        above_20_s=sum(above(m, 20) for m in metrics),
        above_45_s=sum(above(m, 45) for m in metrics),
        above_60_s=sum(above(m, 60) for m in metrics),
        alerts=sum(int(m["alerts"]["count"]) for m in metrics),
        alerts_corrected=corrected,
    )


def week_summary(this: WeekTotals, previous: WeekTotals) -> str:
    """Two sentences on a week against the one before: worn time, time bent forward more than
    20° (and its share of worn time, compared), alerts and how many were corrected."""
    if not this.days:
        return "No data for this week yet: your sensor sends it when it is on its charger."
    pct = this.above_20_pct or 0.0
    text = (
        f"This week you wore the sensor {duration_text(this.worn_s)} on {this.days} "
        f"day{'' if this.days == 1 else 's'} and spent {duration_text(this.above_20_s)} of it "
        f"bent forward more than 20° ({pct:.0f} %"
    )
    before = previous.above_20_pct
    if before is None:
        text += "); last week has no data to compare with."
    elif abs(pct - before) < SAME_WEEK_PP:
        text += f"), about the same as last week ({before:.0f} %)."
    else:
        text += f"), {'down' if pct < before else 'up'} from {before:.0f} % last week."
    if this.alerts:
        text += f" There {'was 1 alert' if this.alerts == 1 else f'were {this.alerts} alerts'}"
        if previous.days:
            text += f" (last week {previous.alerts})"
        text += f"; you corrected {this.alerts_corrected} of {'it' if this.alerts == 1 else 'them'}."
    else:
        text += " There were no alerts" + (f" (last week {previous.alerts})." if previous.days else ".")
    return text
