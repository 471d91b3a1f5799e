"""Daily load exposure metrics (companion.exposure) against hand-computed values and against the
ground truth of a synthetic office hour."""

from __future__ import annotations

import math

import numpy as np
import pytest

import protocol
from companion import exposure
from companion.exposure import AlertArrays, BoutArrays, MinuteArrays
from emulator.scenarios import generate

DAY_START_S = 1_767_225_600  # 2026-01-01T00:00:00Z


def bin_of_deg(angle_deg: float) -> int:
    return protocol.angle_bin(int(math.floor(angle_deg * 10)))


def minutes_from_bins(per_minute: list[list[int]], *, worn_s: int = 60, day_index: int = 0) -> MinuteArrays:
    """Minute arrays where minute i has per_minute[i] as both flexion and inclination histogram."""
    n = len(per_minute)
    hist = np.array(per_minute, dtype=np.int64)
    activity = np.zeros((n, 5), np.int64)
    activity[:, protocol.ACTIVITY_STATIC] = worn_s
    return MinuteArrays(
        day_index=np.full(n, day_index, np.int64),
        start_s=DAY_START_S + 60 * np.arange(n, dtype=np.int64),
        worn_s=np.full(n, worn_s, np.int64),
        flexion_s=hist,
        inclination_s=hist.copy(),
        activity_s=activity,
        longest_bout_s=np.zeros(n, np.int64),
    )


def one_bin(angle_deg: float, seconds: int = 60) -> list[int]:
    bins = [0] * protocol.ANGLE_BINS
    bins[bin_of_deg(angle_deg)] = seconds
    return bins


def day_hist(minutes: MinuteArrays, n_days: int = 1) -> np.ndarray:
    return exposure.per_day_sum(minutes.day_index, minutes.inclination_s, n_days)


# ---- a day of 60 minutes all in the 25-30 degree bin -------------------------------------------


def test_an_hour_in_the_25_to_30_bin_is_all_conditional_iso_zone():
    minutes = minutes_from_bins([one_bin(27)] * 60)
    zones = exposure.iso11226_zone_seconds(day_hist(minutes))
    assert zones.tolist() == [[0, 0, 3600, 0]]
    pct = exposure.share_percent(zones, zones.sum(axis=1))
    assert pct.tolist() == [[0.0, 0.0, 100.0, 0.0]]


def test_an_hour_in_the_25_to_30_bin_has_time_above_20_but_not_30():
    h = day_hist(minutes_from_bins([one_bin(27)] * 60))
    assert [int(exposure.time_above_s(h, t)[0]) for t in (20, 30, 45, 60, 90)] == [3600, 0, 0, 0, 0]


def test_an_hour_in_the_25_to_30_bin_percentiles_interpolate_within_the_bin():
    h = day_hist(minutes_from_bins([one_bin(27)] * 60))
    p = exposure.apdf_percentiles_deg(h, (10, 50, 90, 95, 99))[0]
    np.testing.assert_allclose(p, [25.5, 27.5, 29.5, 29.75, 29.95])


def test_an_hour_in_the_25_to_30_bin_is_450_degree_minutes_above_20():
    h = day_hist(minutes_from_bins([one_bin(27)] * 60))
    # (27.5 - 20) deg x 60 min
    assert exposure.degree_minutes_above(h, 20)[0] == pytest.approx(450.0)


# ---- a mixed day ----------------------------------------------------------------------------------


def mixed_day() -> MinuteArrays:
    """30 min upright at 2 deg, 20 min at 42 deg, 5 min at 65 deg, 5 min extended at -3 deg."""
    return minutes_from_bins([one_bin(2)] * 30 + [one_bin(42)] * 20 + [one_bin(65)] * 5 + [one_bin(-3)] * 5)


def test_mixed_day_iso_zones_and_times_above():
    h = day_hist(mixed_day())
    assert exposure.iso11226_zone_seconds(h).tolist() == [[300, 1800, 1200, 300]]
    above = [int(exposure.time_above_s(h, t)[0]) for t in (20, 30, 45, 60, 90)]
    assert above == [1500, 1500, 300, 300, 0]


def test_mixed_day_degree_minutes_count_only_bins_above_threshold():
    h = day_hist(mixed_day())
    # 20 min x (42.5 - 20) + 5 min x (67.5 - 20)
    assert exposure.degree_minutes_above(h, 20)[0] == pytest.approx(20 * 22.5 + 5 * 47.5)


def test_mixed_day_percentiles():
    h = day_hist(mixed_day())
    p10, p50, p90, p95 = exposure.apdf_percentiles_deg(h, (10, 50, 90, 95))[0]
    # 3600 s: 300 s in [-5, 0), 1800 s in [0, 5), 1200 s in [40, 45), 300 s in [65, 70)
    assert p10 == pytest.approx(0 + 5 * (360 - 300) / 1800)  # 0.1667
    assert p50 == pytest.approx(0 + 5 * (1800 - 300) / 1800)  # 4.1667
    assert p90 == pytest.approx(40 + 5 * (3240 - 2100) / 1200)  # 44.75
    assert p95 == pytest.approx(65 + 5 * (3420 - 3300) / 300)  # 67.0


def test_percentiles_of_a_day_without_data_are_undefined():
    h = np.zeros((1, protocol.ANGLE_BINS), np.int64)
    assert np.isnan(exposure.apdf_percentiles_deg(h)).all()


def test_percentile_exactly_on_a_bin_edge_is_the_edge():
    bins = [0] * protocol.ANGLE_BINS
    bins[bin_of_deg(2)] = 30
    bins[bin_of_deg(12)] = 30
    p50 = exposure.apdf_percentiles_deg(np.array([bins]), (50,))[0, 0]
    assert p50 == pytest.approx(5.0)


def test_days_are_kept_apart():
    a = minutes_from_bins([one_bin(27)] * 10, day_index=0)
    b = minutes_from_bins([one_bin(2)] * 20, day_index=2)
    both = MinuteArrays(
        *(np.concatenate([x, y]) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))
    )
    days = exposure.daily_exposure(both, BoutArrays.empty(), AlertArrays.empty(), 3)
    assert [d["minutes"] for d in days] == [10, 0, 20]
    assert [d["inclination"]["time_above_s"]["20"] for d in days] == [600, 0, 0]
    assert days[1]["inclination"]["percentiles_deg"]["p50"] is None
    assert days[2]["worn_s"] == 1200


# ---- holding time (ISO 11226 / Miedema) -----------------------------------------------------


def bouts(*spec: tuple[int, float], day: int = 0) -> BoutArrays:
    return BoutArrays(
        day_index=np.full(len(spec), day, np.int64),
        duration_s=np.array([d for d, _ in spec], np.int64),
        mean_flexion_deg=np.array([a for _, a in spec], np.float64),
    )


def test_max_holding_time_is_linear_from_4_min_at_20_to_1_min_at_60():
    limits = exposure.max_holding_time_s(np.array([20.0, 40.0, 60.0, 19.9, 60.1]))
    assert limits[:3].tolist() == [240.0, 150.0, 60.0]
    assert np.isnan(limits[3:]).all()


def test_a_150_s_bout_at_40_deg_is_within_its_limit_but_151_s_is_not():
    checked, violations, excess = exposure.holding_time_violations(bouts((150, 40.0)), 1)
    assert (checked[0], violations[0], excess[0]) == (1, 0, 0.0)
    checked, violations, excess = exposure.holding_time_violations(bouts((151, 40.0)), 1)
    assert (checked[0], violations[0], excess[0]) == (1, 1, 1.0)


def test_bouts_above_60_deg_are_not_holding_time_checked():
    checked, violations, _ = exposure.holding_time_violations(bouts((600, 70.0), (30, 25.0)), 1)
    assert (checked[0], violations[0]) == (1, 0)


def test_holding_time_from_real_bout_payload():
    payload = protocol.encode_event(protocol.BOUT, DAY_START_S, 151, 400, 455)
    fields = protocol.decode_payload(protocol.BOUT, payload)
    b = bouts((fields["duration_s"], fields["mean_flexion_ddeg"] / 10))
    assert exposure.holding_time_violations(b, 1)[1][0] == 1


# ---- spells, alerts, activity --------------------------------------------------------------


def test_longest_spell_above_20_is_the_longest_bout_or_within_minute_spell():
    minutes = minutes_from_bins([one_bin(27)] * 3)
    minutes.longest_bout_s[:] = [12, 45, 0]
    assert exposure.longest_spell_above_20_s(minutes, bouts((30, 30.0), (40, 25.0)), 1)[0] == 45
    assert exposure.longest_spell_above_20_s(minutes, bouts((300, 30.0)), 1)[0] == 300


def test_longest_spell_above_60_counts_consecutive_whole_minutes():
    # 2 whole minutes > 60, a break, 3 whole minutes > 60, a partial one, then a clock jump
    spec = [one_bin(65)] * 2 + [one_bin(10)] + [one_bin(70)] * 3 + [one_bin(65, 50)] + [one_bin(65)]
    minutes = minutes_from_bins(spec)
    assert exposure.longest_spell_above_60_s(minutes, 1)[0] == 180
    minutes.start_s[4] += 3600  # minute 4 is not adjacent to minute 3 any more
    assert exposure.longest_spell_above_60_s(minutes, 1)[0] == 120


def test_alert_response_counts_share_and_median():
    c, s = protocol.OUTCOME_CORRECTED, protocol.OUTCOME_SNOOZED
    alerts = AlertArrays(
        day_index=np.array([0, 0, 0, 0, 1], np.int64),
        time_to_correct_s=np.array([4.0, 10.0, np.nan, 6.0, np.nan]),
        outcome=np.array([c, c, s, c, s], np.int64),
    )
    count, share, median = exposure.alert_response(alerts, 3)
    assert count.tolist() == [4, 1, 0]
    assert share[0] == pytest.approx(75.0) and share[1] == 0.0 and np.isnan(share[2])
    assert median[0] == 6.0 and np.isnan(median[1]) and np.isnan(median[2])


def test_activity_breakdown_sums_seconds_per_class():
    minutes = minutes_from_bins([one_bin(5)] * 4)
    minutes.activity_s[2] = [0, 20, 10, 30, 0]
    act = exposure.activity_seconds(minutes, 1)[0]
    assert dict(zip(protocol.ACTIVITIES, act.tolist(), strict=True)) == {
        "lying": 0,
        "static": 200,
        "moving": 10,
        "walking": 30,
        "not_worn": 0,
    }


def test_daily_exposure_reports_every_metric_as_json_values():
    day = exposure.daily_exposure(mixed_day(), bouts((151, 40.0)), AlertArrays.empty(), 1)[0]
    assert set(day) == {
        "minutes",
        "worn_s",
        "measured_s",
        "iso11226_s",
        "iso11226_pct",
        "inclination",
        "flexion",
        "holding_time",
        "longest_spell_s",
        "alerts",
        "activity_s",
    }
    assert day["holding_time"] == {"bouts_checked": 1, "violations": 1, "excess_s": 1.0}
    assert day["iso11226_pct"]["acceptable"] == 50.0
    assert day["alerts"] == {"count": 0, "corrected_pct": None, "median_time_to_correct_s": None}


# ---- against the ground truth of a scenario ---------------------------------------------------


def per_second_mean(values: np.ndarray, rate_hz: float) -> np.ndarray:
    per_s = int(round(rate_hz))
    n = len(values) // per_s
    return values[: n * per_s].reshape(n, per_s).mean(axis=1)


def minute_payloads_from_truth(recording, start_s: int = DAY_START_S) -> list[bytes]:
    """MINUTE payloads binning the scenario's true flexion and inclination, second by second."""
    flexion = per_second_mean(recording.truth["truth_flexion_deg"], recording.rate_hz)
    inclination = per_second_mean(recording.truth["truth_inclination_deg"], recording.rate_hz)
    activity = recording.truth["truth_activity"][:: int(round(recording.rate_hz))][: len(flexion)]
    payloads = []
    for m in range(len(flexion) // 60):
        sl = slice(60 * m, 60 * m + 60)
        worn = ~np.isnan(flexion[sl])
        flex = [0] * protocol.ANGLE_BINS
        incl = [0] * protocol.ANGLE_BINS
        for f, i in zip(flexion[sl][worn], inclination[sl][worn], strict=True):
            flex[protocol.angle_bin(int(math.floor(f * 10)))] += 1
            incl[protocol.angle_bin(int(math.floor(i * 10)))] += 1
        act = np.bincount(activity[sl].astype(np.int64), minlength=5).tolist()
        payloads.append(
            protocol.encode_minute(
                start_s + 60 * m, int(worn.sum()), act, [0, 0, int(worn.sum()), 0, 0], flex, incl
            )
        )
    return payloads


def test_time_above_20_matches_the_office_hour_truth_within_1_percent():
    recording = generate("office-hour", seed=1)
    truth_flexion = recording.truth["truth_flexion_deg"]
    true_above_20_s = float(np.sum(truth_flexion > 20.0)) / recording.rate_hz

    decoded = [protocol.decode_payload(protocol.MINUTE, p) for p in minute_payloads_from_truth(recording)]
    n = len(decoded)
    minutes = MinuteArrays(
        day_index=np.zeros(n, np.int64),
        start_s=np.array([d["start_s"] for d in decoded], np.int64),
        worn_s=np.array([d["worn_s"] for d in decoded], np.int64),
        flexion_s=np.array([d["flexion_bins_s"] for d in decoded], np.int64),
        inclination_s=np.array([d["inclination_bins_s"] for d in decoded], np.int64),
        activity_s=np.array([d["activity_s"] for d in decoded], np.int64),
        longest_bout_s=np.zeros(n, np.int64),
    )
    day = exposure.daily_exposure(minutes, BoutArrays.empty(), AlertArrays.empty(), 1)[0]
    assert true_above_20_s > 300  # the scenario has real slouching in it
    assert day["flexion"]["time_above_s"]["20"] == pytest.approx(true_above_20_s, rel=0.01)


@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Chatham"])
def test_the_days_a_batch_touches_are_the_local_dates_of_its_times(tz_name: str):
    """exposure.local_days (which worker-days an upload makes stale) agrees with each time's
    local date: within one day, across midnight, over DST changes, with times far apart."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    rng = np.random.default_rng(11)
    march_29_2026 = 1_774_742_400  # Europe's DST change that night
    starts = [1_767_225_600 + 9 * 3600, march_29_2026 - 3 * 3600, 1_792_000_000, 1_761_436_800]
    for start in starts:
        for span_s in (600, 4 * 3600, 30 * 3600, 40 * 86_400):
            times = [int(t) for t in start + rng.integers(0, span_s, size=50)]
            expected = sorted({exposure.local_day(t, tz) for t in times})
            assert exposure.local_days(times, tz) == expected, (tz_name, start, span_s)
