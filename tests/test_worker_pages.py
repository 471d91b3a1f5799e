"""The wearer's own pages (companion.web.wearer): today, this week, and their alert settings.

Data goes in through the real ingest endpoint and settings through the real routes, on a
SQLite (or PostgreSQL, see tests/test_store.py) store; people sign in with the dashboard's
login form, so the pages are exercised with the session cookie exactly as a browser uses them.
The world (teams, Ana wearing W017, Ben wearing W018, their ergonomists, an admin) is
tests/test_api_resources.py's."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import test_store
from fastapi.testclient import TestClient
from test_api_resources import JAN1, PASSWORD, World, build_world, form_login, upload_body
from test_ingest import frames, minute_payload

import protocol
from companion.api import devicesettings
from companion.store import Device, Worker, WorkerSettings, session_scope
from companion.web.plain_language import WeekTotals, duration_text, week_summary

db_url = test_store.db_url

DAY_S = 86_400
MON_W02 = dt.date(2026, 1, 5)  # ISO week 2026-W02; the world's Jan 1 hour is in 2026-W01
_seq = itertools.count(10_000)  # record seqs not used by the world's own upload


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


# ---- helpers ------------------------------------------------------------------------------------


def day_start_s(day: dt.date) -> int:
    return JAN1 + (day - dt.date(2026, 1, 1)).days * DAY_S


def upload(world: World, device_id: str, records: list[tuple[int, bytes]]) -> None:
    """Records (type, payload) through POST /api/ingest, as the sync agent sends them."""
    data = frames([(next(_seq), rtype, payload) for rtype, payload in records])
    r = world.client.post(
        "/api/ingest",
        json=upload_body(device_id, data),
        headers=world.headers("agent"),
    )
    assert r.status_code == 200, r.text


def minutes_at(start_s: int, count: int, angle_deg: float) -> list[tuple[int, bytes]]:
    return [(protocol.MINUTE, minute_payload(start_s + 60 * i, angle_deg)) for i in range(count)]


def alert(start_s: int, time_to_correct_s: int | None, outcome: str) -> tuple[int, bytes]:
    fields = {
        "start_s": start_s,
        "duration_s": 40,
        "peak_flexion_ddeg": 350,
        "time_to_correct_s": time_to_correct_s,  # None: never corrected
        "escalation_level": 0,
        "outcome": protocol.OUTCOMES.index(outcome),
    }
    return protocol.ALERT, protocol.encode_payload(protocol.ALERT, fields)


def signed_in(world: World, who: str) -> TestClient:
    """A browser of its own, signed in through the login form (session cookie)."""
    client = TestClient(world.client.app)
    r = form_login(client, world.emails[who], PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client


def summary_of(page: str) -> str:
    found = re.search(r'<p class="summary" id="summary">(.*?)</p>', page, re.S)
    assert found, page
    return html.unescape(found[1])


def form_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]*)"', page)
    assert found, page
    return found[1]


def day_cells(page: str, day: dt.date) -> list[int]:
    """The seconds (data-s) of a week-table row: worn, > 20°, > 45°, > 60°."""
    row = re.search(rf'<tr data-day="{day}">(.*?)</tr>', page, re.S)
    assert row, page
    return [int(s) for s in re.findall(r'data-s="(\d+)"', row[1])]


def api_days(world: World, who: str, lo: dt.date, hi: dt.date) -> dict[str, dict[str, Any]]:
    r = world.client.get(
        f"/api/workers/{world.ids['wa']}/days",
        params={"from": str(lo), "to": str(hi)},
        headers=world.headers(who),
    )
    assert r.status_code == 200, r.text
    return {d["date"]: d["metrics"] for d in r.json()}


def stored_settings(world: World) -> dict[str, Any]:
    with session_scope(world.engine) as session:
        row = session.get(WorkerSettings, world.ids["wa"])
        return dict(row.values) if row is not None else {}


def pending(world: World, device_id: str = "W017") -> dict[str, Any] | None:
    with session_scope(world.engine) as session:
        return devicesettings.pending_for(session, device_id)


def set_limits(world: World, limits: dict[str, dict[str, int]]) -> None:
    r = world.client.put(
        f"/api/workers/{world.ids['wa']}/settings/limits", json=limits, headers=world.headers("erg_own")
    )
    assert r.status_code == 200, r.text


# ---- today --------------------------------------------------------------------------------------


def test_the_day_page_says_how_long_and_when_the_wearer_was_bent_and_how_they_answered_alerts(world: World):
    day = dt.date(2026, 1, 12)
    t0 = day_start_s(day)
    quick = [
        alert(t0 + 10 * 3600 + 60 * i, ttc, "corrected")
        for i, ttc in enumerate([3, 5, 8, 12, 20, 30, 45, 60])
    ]
    upload(
        world,
        "W017",
        minutes_at(t0 + 10 * 3600, 42, 25)  # 10:00-10:42 bent 25°
        + minutes_at(t0 + 11 * 3600, 40, 5)  # 11:00-11:40 upright
        + minutes_at(t0 + 14 * 3600, 8, 30)  # 14:00-14:08 bent 30°
        + quick
        + [alert(t0 + 14 * 3600, 90, "corrected"), alert(t0 + 14 * 3600 + 300, None, "suppressed")],
    )
    page = signed_in(world, "worker_self").get(f"/me?day={day}")
    assert page.status_code == 200
    text = summary_of(page.text)
    assert "You wore the sensor 1 h 30 min and spent 50 min of it bent forward more than 20° (56 %)" in text
    assert "mostly between 10:00 and 11:00" in text
    assert "Your sensor buzzed 9 times; you corrected 8 of them within a minute." in text
    assert "1 more alert stayed silent" in text
    # The minutes the sentence states are the day's exposure metric.
    metrics = api_days(world, "worker_self", day, day)[str(day)]
    assert metrics["flexion"]["time_above_s"]["20"] == 50 * 60
    # Time in the ISO 11226 zones: 40 min acceptable, 50 min conditional (20-60°).
    zones = re.search(r'<table class="data" id="zones">(.*?)</table>', page.text, re.S)
    assert zones and [int(s) for s in re.findall(r'data-s="(\d+)"', zones[1])] == [0, 2400, 3000, 0]
    # Every alert with how fast it was corrected.
    alerts = re.search(r'<table class="data" id="alerts">(.*?)</table>', page.text, re.S)
    assert alerts and alerts[1].count("<tr>") == 1 + 10
    assert "<td>10:07</td>" in alerts[1] and "<td>60 s</td>" in alerts[1] and "<td>90 s</td>" in alerts[1]
    assert 'id="timeline"' in page.text and "postureTimeline" in page.text


def test_the_day_and_its_clock_times_are_the_wearers_local_ones(world: World):
    with session_scope(world.engine) as session:
        ana = session.get(Worker, world.ids["wa"])
        assert ana is not None
        ana.timezone = "Europe/Berlin"  # UTC+1 in January
    day = dt.date(2026, 1, 14)
    t0 = day_start_s(day) - 3600  # Berlin's midnight
    upload(world, "W017", minutes_at(t0 + 10 * 3600, 30, 25) + [alert(t0 + 10 * 3600 + 300, 7, "corrected")])
    page = signed_in(world, "worker_self").get(f"/me?day={day}").text
    assert "mostly between 10:00 and 11:00" in summary_of(page)
    assert "<td>10:05</td>" in page and "(Europe/Berlin)" in page


def test_today_is_the_default_and_a_day_without_data_points_to_the_latest_one(world: World):
    client = signed_in(world, "worker_self")
    empty = client.get("/me")
    assert empty.status_code == 200 and "Today," in empty.text
    assert summary_of(empty.text).startswith("No data for this day yet")
    assert 'href="/me?day=2026-01-01"' in empty.text  # the world's hour on Jan 1
    today = dt.datetime.now(dt.UTC).date()  # Ana's time zone is UTC
    upload(world, "W017", minutes_at(day_start_s(today), 15, 25))
    page = client.get("/me")
    assert "spent 15 min of it bent forward more than 20°" in summary_of(page.text)


def test_a_sleepy_day_says_there_was_nothing_to_correct(world: World):
    day = dt.date(2026, 1, 13)
    upload(world, "W017", minutes_at(day_start_s(day) + 9 * 3600, 30, 5))
    text = summary_of(signed_in(world, "worker_self").get(f"/me?day={day}").text)
    assert text == (
        "You wore the sensor 30 min and were hardly ever bent forward more than 20°. "
        "Your sensor did not need to buzz."
    )


# ---- this week ----------------------------------------------------------------------------------


def _a_week_for_ana_and_ben(world: World) -> None:
    mon, tue, thu = (day_start_s(MON_W02 + dt.timedelta(days=d)) for d in (0, 1, 3))
    upload(
        world,
        "W017",
        minutes_at(mon + 8 * 3600, 30, 25)
        + minutes_at(mon + 9 * 3600, 20, 50)
        + minutes_at(mon + 10 * 3600, 10, 65)
        + minutes_at(mon + 11 * 3600, 60, 5)
        + [alert(mon + 8 * 3600 + 120, 10, "corrected"), alert(mon + 9 * 3600 + 60, None, "timed_out")]
        + minutes_at(tue + 8 * 3600, 60, 5)
        + minutes_at(thu + 8 * 3600, 45, 70)
        + minutes_at(thu + 9 * 3600, 45, 10),
    )
    # Ben, in another team, stoops far more on the same Monday.
    upload(world, "W018", minutes_at(mon + 6 * 3600, 200, 80) + [alert(mon + 7 * 3600, 5, "corrected")])


def test_the_week_page_shows_each_days_exposure_as_computed_for_it(world: World):
    _a_week_for_ana_and_ben(world)
    page = signed_in(world, "worker_self").get("/me/week?week=2026-W02")
    assert page.status_code == 200 and "Week 2026-W02" in page.text
    expected = api_days(world, "worker_self", MON_W02, MON_W02 + dt.timedelta(days=6))
    assert sorted(expected) == ["2026-01-05", "2026-01-06", "2026-01-08"]
    for i in range(7):
        day = MON_W02 + dt.timedelta(days=i)
        m = expected.get(str(day))
        want = [m["worn_s"], *(m["flexion"]["time_above_s"][k] for k in ("20", "45", "60"))] if m else []
        assert day_cells(page.text, day) == want, day
    assert day_cells(page.text, MON_W02) == [7200, 3600, 1800, 600]
    monday = re.search(rf'<tr data-day="{MON_W02}">(.*?)</tr>', page.text, re.S)
    assert monday and "<td>2</td><td>50 %</td>" in monday[1]  # two alerts, one corrected
    # 270 min worn, 105 min above 20° (39 %); the week before: Jan 1's hour, all of it above 20°.
    assert summary_of(page.text) == (
        "This week you wore the sensor 4 h 30 min on 3 days and spent 1 h 45 min of it bent forward "
        "more than 20° (39 %), down from 100 % last week. There were 2 alerts (last week 0); "
        "you corrected 1 of them."
    )
    assert 'id="week"' in page.text and "postureWeek" in page.text
    assert 'href="/me/week?week=2026-W01"' in page.text and 'href="/me/week?week=2026-W03"' in page.text


def test_the_week_defaults_to_this_one_and_a_malformed_week_is_explained(world: World):
    client = signed_in(world, "worker_self")
    today = dt.datetime.now(dt.UTC).date()
    year, week, _ = today.isocalendar()
    page = client.get("/me/week")
    assert page.status_code == 200 and f"Week {year}-W{week:02d}" in page.text
    assert 'rel="next"' not in page.text  # no browsing into the future
    bad = client.get("/me/week?week=2026-14")
    assert bad.status_code == 422 and "week must be like 2026-W48" in bad.text


def test_another_workers_data_never_appears_on_a_wearers_pages(world: World):
    _a_week_for_ana_and_ben(world)
    ana = signed_in(world, "worker_self")
    week = ana.get("/me/week?week=2026-W02").text
    day = ana.get(f"/me?day={MON_W02}").text
    # Ben's 200 minutes at 80° would show as 3 h 20 min and lift Monday's worn time.
    assert "3 h 20 min" not in week and "3 h 20 min" not in day
    assert day_cells(week, MON_W02) == [7200, 3600, 1800, 600]
    assert "Ben" not in week + day
    alerts = re.search(r'<table class="data" id="alerts">(.*?)</table>', day, re.S)
    assert alerts and alerts[1].count("<tr>") == 1 + 2  # Ana's two, not Ben's
    # The pages take the wearer from the session, never from the address.
    assert ana.get(f"/me?day={MON_W02}&worker_id={world.ids['wb']}").text.count("3 h 20 min") == 0
    ben = signed_in(world, "worker_other")
    assert "200 min" not in summary_of(ben.get(f"/me?day={MON_W02}").text)
    assert "3 h 20 min of it bent forward" in summary_of(ben.get(f"/me?day={MON_W02}").text)


def test_the_wearers_pages_link_to_each_other(world: World):
    client = signed_in(world, "worker_self")
    for path in ("/me", "/me/week", "/me/settings"):
        page = client.get(path)
        assert page.status_code == 200, path
        for other in ('href="/me"', 'href="/me/week"', 'href="/me/settings"'):
            assert other in page.text, (path, other)
        assert 'aria-current="page"' in page.text


def test_signed_out_visitors_go_to_the_login_page(world: World):
    client = TestClient(world.client.app)
    for path in ("/me", "/me/week", "/me/settings"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = client.post("/me/settings", data={"alert_hold_s": "60"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert stored_settings(world) == {}


# ---- settings -----------------------------------------------------------------------------------


def test_settings_within_the_limits_wait_for_the_next_sync_and_are_then_delivered(world: World):
    set_limits(
        world,
        {
            "alert_threshold_deg": {"lo": 15, "hi": 30},
            "alert_hold_s": {"lo": 20, "hi": 120},
            "alert_snooze_s": {"lo": 300, "hi": 3600},
        },
    )
    client = signed_in(world, "worker_self")
    form = client.get("/me/settings")
    assert form.status_code == 200
    assert "Allowed: 15° to 30°" in form.text and "Allowed: 5 min to 60 min" in form.text
    assert "Now: 20°" in form.text and "Now: 30 min" in form.text  # the device defaults
    answer = client.post(
        "/me/settings",
        data={
            "csrf_token": form_token(form.text),
            "alert_threshold_deg": "25",
            "alert_hold_s": "45",
            "alert_snooze_s": "10",
            "quiet_start_min": "12:00",
            "quiet_end_min": "13:00",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/me/settings?saved=1"
    wanted = {
        "alert_threshold_deg": 25,
        "alert_hold_s": 45,
        "alert_snooze_s": 600,
        "quiet_start_min": 720,
        "quiet_end_min": 780,
    }
    assert pending(world) == wanted
    shown = client.get(answer.headers["location"]).text
    assert "will reach your sensor at the next sync" in shown
    assert "your last change is waiting" in shown and "Now: 25°" in shown and 'value="12:00"' in shown
    # The JSON API reads the same settings.
    api = world.client.get(f"/api/workers/{world.ids['wa']}/settings", headers=world.headers("worker_self"))
    assert api.json()["values"] == wanted and api.json()["pending_devices"] == ["W017"]
    # The sync agent delivers them (CONFIG_SET) and marks them applied: nothing waits any more.
    with session_scope(world.engine) as session:
        delivered = devicesettings.pending_for(session, "W017")
        devicesettings.mark_applied(session, "W017", 0x1234, applied=delivered)
    assert pending(world) is None
    after = client.get("/me/settings").text
    assert "your last change was applied by the sensor at" in after and "is waiting" not in after


def test_only_what_the_wearer_changed_is_sent(world: World):
    client = signed_in(world, "worker_self")
    form = client.get("/me/settings").text
    defaults = {
        "alert_threshold_deg": "20",
        "alert_hold_s": "30",
        "alert_snooze_s": "30",
        "quiet_start_min": "00:00",
        "quiet_end_min": "00:00",
    }
    same = client.post(
        "/me/settings", data={"csrf_token": form_token(form), **defaults}, follow_redirects=False
    )
    assert same.headers["location"] == "/me/settings?unchanged=1" and pending(world) is None
    one = client.post(
        "/me/settings",
        data={"csrf_token": form_token(form), **defaults, "alert_hold_s": "40"},
        follow_redirects=False,
    )
    assert one.status_code == 303 and pending(world) == {"alert_hold_s": 40}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "alert_threshold_deg",
            "40",
            "Alert threshold must be between 15° and 30° (the range your ergonomist set); you asked for 40°.",
        ),
        (
            "alert_hold_s",
            "4",
            "Hold time must be between 5 s and 600 s (the range your ergonomist set); you asked for 4 s.",
        ),
        ("alert_snooze_s", "500", "Snooze length must be between 1 min and 240 min"),
        ("alert_threshold_deg", "twenty", "Alert threshold: “twenty” is not a number"),
        ("quiet_start_min", "25:00", "Quiet hours from: “25:00” is not a time of day like 07:30"),
        ("alert_hold_s", "30.5", "Hold time: 30.5 s is not a whole number of seconds"),
    ],
)
def test_values_outside_the_limits_are_refused_with_a_clear_message_and_nothing_stored(
    world: World, field: str, value: str, message: str
):
    set_limits(world, {"alert_threshold_deg": {"lo": 15, "hi": 30}})
    client = signed_in(world, "worker_self")
    form = client.get("/me/settings").text
    data = {"csrf_token": form_token(form), "alert_hold_s": "60", field: value}  # a valid change beside it
    answer = client.post("/me/settings", data=data)
    assert answer.status_code == 422
    assert "Nothing was saved" in answer.text and message in html.unescape(answer.text)
    assert f'value="{value}"' in answer.text  # what they typed stays in the form
    assert stored_settings(world) == {} and pending(world) is None


def test_a_form_post_without_this_sessions_token_changes_nothing(world: World):
    ana = signed_in(world, "worker_self")
    ben = signed_in(world, "worker_other")
    bens_token = form_token(ben.get("/me/settings").text)
    for token in (None, "", bens_token, "0" * 64):
        data = {"alert_threshold_deg": "25"} | ({"csrf_token": token} if token is not None else {})
        answer = ana.post("/me/settings", data=data)
        assert answer.status_code == 403, token
        assert "not sent from your own page" in answer.text
    assert stored_settings(world) == {} and pending(world) is None
    # A second sign-in is a new session with a token of its own; the first one's still works.
    again = signed_in(world, "worker_self")
    assert form_token(again.get("/me/settings").text) != form_token(ana.get("/me/settings").text)


def test_ergonomists_and_admins_cannot_change_a_wearers_settings_through_the_wearers_page(world: World):
    for who in ("erg_own", "admin"):
        client = signed_in(world, who)
        page = client.get("/me/settings")
        assert page.status_code == 403 and "belongs to the person wearing the sensor" in page.text
        answer = client.post("/me/settings", data={"alert_threshold_deg": "40", "csrf_token": "x"})
        assert answer.status_code == 403
        assert client.get("/me", follow_redirects=False).headers["location"] == "/teams"
    assert stored_settings(world) == {} and pending(world) is None


def test_a_setting_the_ergonomist_fixed_is_shown_but_not_editable(world: World):
    set_limits(world, {"alert_hold_s": {"lo": 45, "hi": 45}})
    with session_scope(world.engine) as session:
        devicesettings.change_worker_settings(session, world.ids["wa"], {"alert_hold_s": 45}, None)
        devicesettings.mark_applied(session, "W017", 1)
    page = signed_in(world, "worker_self").get("/me/settings").text
    field = re.search(r'<input id="alert_hold_s"[^>]*>', page, re.S)
    assert field and "disabled" in field[0] and "Set by your ergonomist: 45 s." in page


def test_a_wearer_without_a_sensor_is_told_settings_follow_when_one_is_assigned(world: World):
    with session_scope(world.engine) as session:
        device = session.scalar(sa.select(Device).where(Device.device_id == "W017"))
        assert device is not None
        device.worker_id = None
    page = signed_in(world, "worker_self").get("/me/settings").text
    assert "No sensor is assigned to you yet" in page


# ---- the words ----------------------------------------------------------------------------------


def test_durations_read_as_minutes_and_hours():
    assert [duration_text(s) for s in (0, 29, 30, 2520, 3600, 3900, 113_400)] == [
        "0 min",
        "0 min",
        "0 min",
        "42 min",
        "1 h",
        "1 h 05 min",
        "31 h 30 min",
    ]


def test_a_week_like_the_last_one_says_so():
    this = WeekTotals(
        days=5, worn_s=36_000, above_20_s=3_600, above_45_s=0, above_60_s=0, alerts=0, alerts_corrected=0
    )
    last = WeekTotals(
        days=4, worn_s=30_000, above_20_s=3_100, above_45_s=0, above_60_s=0, alerts=3, alerts_corrected=2
    )
    assert week_summary(this, last) == (
        "This week you wore the sensor 10 h on 5 days and spent 1 h of it bent forward more than 20° "
        "(10 %), about the same as last week (10 %). There were no alerts (last week 3)."
    )
