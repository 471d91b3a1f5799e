"""The ergonomist's dashboard pages (companion.web.pages): the team overview and the worker-day
page, against a real store with data through the real ingest endpoint, people signed in with
the dashboard's login form.  Every number a page shows is checked against the JSON API's answer
for the same worker-day or team-week.  The world (team A with Ana wearing W017 and an hour of
hers at 25° on 2026-01-01, team B with Ben, an ergonomist per team, an admin) is
tests/test_api_resources.py's."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_store
from databases import BACKENDS, database_url
from fastapi.testclient import TestClient
from test_api_resources import DAY, JAN1, PASSWORD, World, build_world, form_login
from test_worker_pages import minutes_at, upload

import protocol

db_url = test_store.db_url


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def week_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world per database for the tests of `rotation_week`, which only read it."""
    tmp = tmp_path_factory.mktemp("rotation-week")
    with database_url(request.param, tmp) as url:
        w = build_world(url, tmp)
        yield w
        w.client.close()
        w.engine.dispose()


def signed_in(world: World, who: str) -> TestClient:
    """A browser of its own, signed in through the login form (session cookie)."""
    client = TestClient(world.client.app)
    r = form_login(client, world.emails[who], PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client


def link(page: str, text: str) -> str:
    """The address of the link whose text is exactly ``text``."""
    found = re.search(rf'<a href="([^"]+)"[^>]*>{re.escape(text)}</a>', page)
    assert found, f"no link {text!r} in the page"
    return html.unescape(found[1])


def table(page: str, table_id: str) -> dict[str, list[str]]:
    """The rows of a table, keyed by their data-worker / data-week attribute (else their first
    cell), each as its cells' text."""
    found = re.search(rf'<table[^>]*\bid="{table_id}".*?</table>', page, re.S)
    assert found, f"no table #{table_id} in the page"
    rows = {}
    for attrs, body in re.findall(r"<tr([^>]*)>(.*?)</tr>", found[0], re.S):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body, re.S)
        ]
        key = re.search(r'data-(?:worker|week)="([^"]+)"', attrs)
        rows[key[1] if key else cells[0]] = cells
    return rows


def chart_series(page: str, chart_id: str) -> Any:
    """The data a chart is drawn from (its element's data-series attribute)."""
    found = re.search(rf"id=\"{chart_id}\"[^>]*data-series='([^']*)'", page)
    assert found, f"no chart #{chart_id} in the page"
    return json.loads(html.unescape(found[1]))


def csv_rows(client: TestClient, url: str) -> list[dict[str, str]]:
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    return list(csv.DictReader(io.StringIO(r.text)))


# ---- the team page's CSV links ------------------------------------------------------------------


def test_the_team_pages_csv_links_download_the_date_range_the_page_shows(world: World):
    # Ana's only day (2026-01-01) lies far outside the API's default range (the last 30 days), so
    # a link that loses the page's range downloads nothing of it.
    erin = signed_in(world, "erg_own")
    page = erin.get(f"/teams/{world.ids['ta']}", params={"date_from": str(DAY), "date_to": str(DAY)})
    assert page.status_code == 200, page.text
    team_rows = csv_rows(erin, link(page.text, "team summary (CSV)"))
    assert [(r["worker"], r["date"]) for r in team_rows] == [("Ana", str(DAY))]
    ana_rows = csv_rows(erin, link(page.text, "CSV"))
    assert [(r["worker"], r["date"]) for r in ana_rows] == [("Ana", str(DAY))]
    assert float(ana_rows[0]["worn_s"]) == float(team_rows[0]["worn_s"]) == 3600


# ---- task rotation: a week of Ana's ---------------------------------------------------------------

MON_W03 = dt.date(2026, 1, 12)  # ISO week 2026-W03
HOUR = 3600


def at(day: dt.date, hour: int, minute: int = 0) -> int:
    return JAN1 + (day - DAY).days * 86_400 + hour * HOUR + minute * 60


def api(world: World, who: str, path: str, **params: Any) -> Any:
    r = world.client.get(path, params=params, headers=world.headers(who))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def rotation_week(week_world: World) -> dict[str, int]:
    """Team A's tasks and policy (at most 60 min in one task and in high-load tasks, a rotation
    must change the posture by 5°), and Ana's week 2026-W03:
    Monday: packing 90 min at 25° (30 min overdue), sorting 30 min at 50°, desk 60 min at 51°
      (rotated, but the same posture); Tuesday: desk 50 min at 10°, packing 50 min at 40°
      (compliant); Wednesday: two double presses of the device's button (desk 40 min at 10°,
      then packing 40 min at 40°: compliant);
    Thursday: minutes but no task segment (not assessed)."""
    pytest.importorskip("companion.rotation", reason="companion.rotation is developed separately")
    world = week_world
    ta, wa, h = world.ids["ta"], world.ids["wa"], world.headers("erg_own")
    tasks = {}
    for name, load in (("desk", "low"), ("packing", "medium"), ("sorting", "high")):
        r = world.client.post("/api/tasks", json={"name": name, "load_class": load, "team_id": ta}, headers=h)
        assert r.status_code == 201, r.text
        tasks[name] = r.json()["id"]
    policy = {"max_task_min": 60, "max_high_load_min": 60, "min_profile_change_deg": 5.0}
    assert world.client.put(f"/api/teams/{ta}/rotation/policy", json=policy, headers=h).status_code == 200
    monday, tuesday, wednesday, thursday = (MON_W03 + dt.timedelta(days=i) for i in range(4))
    plan = [
        (at(monday, 8), 90, 25.0, "packing"),
        (at(monday, 9, 30), 30, 50.0, "sorting"),
        (at(monday, 10), 60, 51.0, "desk"),
        (at(tuesday, 8), 50, 10.0, "desk"),
        (at(tuesday, 8, 50), 50, 40.0, "packing"),
    ]
    for start_s, minutes, angle, task in plan:
        upload(world, "W017", minutes_at(start_s, minutes, angle))
        segment = {"task_id": tasks[task], "start_s": start_s, "end_s": start_s + 60 * minutes}
        r = world.client.post(f"/api/workers/{wa}/segments", json=segment, headers=h)
        assert r.status_code == 201, r.text
    presses = [
        (protocol.BUTTON, protocol.encode_payload(protocol.BUTTON, {"time_s": t, "action": 3, "task_id": 0}))
        for t in (at(wednesday, 8), at(wednesday, 8, 40))
    ]
    upload(world, "W017", presses + minutes_at(at(wednesday, 8), 40, 10.0))
    upload(world, "W017", minutes_at(at(wednesday, 8, 40), 40, 40.0))
    upload(world, "W017", minutes_at(at(thursday, 8), 30, 30.0))
    return tasks


def test_the_team_page_shows_the_weeks_rotation_compliance_as_the_api_counts_it(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    ta, wa = world.ids["ta"], world.ids["wa"]
    week = api(world, "erg_own", f"/api/teams/{ta}/rotation", week="2026-W03")
    page = signed_in(world, "erg_own").get(
        f"/teams/{ta}", params={"date_from": "2026-01-01", "date_to": "2026-01-18", "week": "2026-W03"}
    )
    assert page.status_code == 200, page.text
    assert "Task rotation compliance, week 2026-W03" in page.text
    rows = table(page.text, "compliance")
    ana = next(w for w in week["workers"] if w["worker_id"] == wa)["week"]
    # worker, days assessed, required, met, overdue, rotations, without a posture change,
    # profile changed, compliant days, compliant, days
    assert rows[str(wa)][:10] == [
        "Ana",
        str(ana["days"]),
        str(ana["rotations_required"]),
        str(ana["rotations_met"]),
        str(ana["overdue_min"]),
        "4",  # Monday's two switches, Tuesday's and Wednesday's one
        str(ana["rotated_but_same_posture"]),
        "no",
        f"{ana['compliant_days']} / {ana['days']}",
        "no",
    ]
    assert (ana["days"], ana["compliant_days"], ana["overdue_min"], ana["rotated_but_same_posture"]) == (
        3,
        2,
        30,
        1,
    )
    assert rows[str(wa)][10] == "Mon ✗ Tue ✓ Wed ✓ Thu –"
    for day in ("2026-01-12", "2026-01-13", "2026-01-14", "2026-01-15"):
        assert f'href="/workers/{wa}/days/{day}"' in page.text
    team = week["team"]
    assert rows["team"][1:5] == [
        str(team["days"]),
        str(team["rotations_required"]),
        str(team["rotations_met"]),
        str(team["overdue_min"]),
    ]
    assert rows["team"][8:10] == [f"{team['compliant_days']} / {team['days']}", "no"]


def test_the_team_page_trends_exposure_and_compliance_week_by_week_as_the_api_counts_them(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    ta = world.ids["ta"]
    page = signed_in(world, "erg_own").get(f"/teams/{ta}", params={"date_to": "2026-01-18"})
    assert page.status_code == 200, page.text
    assert "Task rotation compliance, week 2026-W03" in page.text  # the week of the range's end
    rows = table(page.text, "weeks-table")
    weeks = [f"2025-W{w}" for w in (47, 48, 49, 50, 51, 52)] + ["2026-W01", "2026-W02", "2026-W03"]
    assert list(rows) == ["week", *weeks[1:]]  # a header row, then 8 weeks, oldest first
    for week in ("2026-W01", "2026-W03"):
        monday = dt.date.fromisocalendar(2026, int(week[-2:]), 1)
        exposure = api(
            world,
            "erg_own",
            f"/api/teams/{ta}/summary",
            **{"from": monday, "to": monday + dt.timedelta(days=6)},
        )["team"]
        compliance = api(world, "erg_own", f"/api/teams/{ta}/rotation", week=week)["team"]
        share = compliance["compliant_share"]
        assert rows[week][1:] == [
            str(exposure["days"]),
            f"{exposure['worn_h']:.1f}",
            f"{exposure['flexion_p50_deg']:.1f}",
            f"{exposure['flexion_p90_deg']:.1f}",
            f"{exposure['flexion_above_20_pct']:.1f}",
            str(compliance["days"]),
            f"{100 * share:.0f}" if share is not None else "—",
        ]
    assert rows["2026-W03"][-2:] == ["3", "67"]
    assert rows["2026-W01"][-2:] == ["0", "—"]  # Ana's hour on Jan 1 was in no task
    chart = chart_series(page.text, "weeks")
    assert chart["labels"] == weeks[1:] and chart["compliant_pct"][-1] == pytest.approx(66.7)


def test_the_worker_day_page_shows_the_days_task_segments_and_compliance_verdict_with_reasons(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    wa = world.ids["wa"]
    day = api(world, "erg_own", f"/api/workers/{wa}/rotation/{MON_W03}")
    page = signed_in(world, "erg_own").get(f"/workers/{wa}/days/{MON_W03}")
    assert page.status_code == 200, page.text
    segments = table(page.text, "segments")
    names = {v: k for k, v in rotation_week.items()}
    loads = {"desk": "low", "packing": "medium", "sorting": "high"}
    shown = [cells for key, cells in segments.items() if key != "task"]
    assert shown == [
        [
            names[s["task_id"]],
            loads[names[s["task_id"]]],
            dt.datetime.fromtimestamp(s["start_s"], dt.UTC).strftime("%H:%M"),  # Ana's zone is UTC
            dt.datetime.fromtimestamp(s["end_s"], dt.UTC).strftime("%H:%M"),
            str((s["end_s"] - s["start_s"]) // 60),
            s["source"],
        ]
        for s in day["segments"]
    ]
    assert [row[:4] for row in shown] == [
        ["packing", "medium", "08:00", "09:30"],
        ["sorting", "high", "09:30", "10:00"],
        ["desk", "low", "10:00", "11:00"],
    ]
    # The same segments lie under the flexion timeline.
    series = chart_series(page.text, "timeline")
    assert [(g["start_s"], g["end_s"], g["label"], g["load"]) for g in series["segments"]] == [
        (s["start_s"], s["end_s"], names[s["task_id"]], loads[names[s["task_id"]]]) for s in day["segments"]
    ]
    assert series["tz"] == "UTC"
    verdict = re.search(r'<p id="verdict"[^>]*>(.*?)</p>', page.text)
    assert verdict and verdict[1] == "Not compliant." and day["compliant"] is False
    reasons = [html.unescape(r) for r in re.findall(r"<li>(.*?)</li>", page.text)]
    assert "The longest run in one task was 90 min; the policy allows 60 min." in reasons
    assert "30 min overdue in all; 1 rotation was due and not made." in reasons
    assert (
        "1 of 2 rotations kept the same posture (median and 90th percentile flexion changed by less than 5°)."
        in reasons
    )
    numbers = table(page.text, "rotation")
    counted = next(cells for key, cells in numbers.items() if key != "tracked (min)")
    assert counted == [
        str(day[k])
        for k in (
            "tracked_min",
            "rotations_required",
            "rotations_met",
            "overdue_min",
            "longest_task_min",
            "longest_high_load_min",
            "rotated_but_same_posture",
        )
    ]
    assert counted[:4] == ["180", "2", "1", "30"]


def test_the_worker_day_page_shows_segments_from_the_device_button_and_the_compliant_verdict(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    wa = world.ids["wa"]
    client = signed_in(world, "worker_self")  # Ana herself
    wednesday = client.get(f"/workers/{wa}/days/{MON_W03 + dt.timedelta(days=2)}")
    assert wednesday.status_code == 200, wednesday.text
    rows = [cells for key, cells in table(wednesday.text, "segments").items() if key != "task"]
    assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
        ("desk", "08:00", "08:40", "button"),
        ("packing", "08:40", "00:00", "button"),  # until the next press or the end of the day
    ]
    assert re.search(r'<p id="verdict"[^>]*>Compliant\.</p>', wednesday.text)
    assert "The rotation changed the posture profile by at least 5°." in wednesday.text
    thursday = client.get(f"/workers/{wa}/days/{MON_W03 + dt.timedelta(days=3)}")
    assert re.search(r'<p id="verdict"[^>]*>Not assessed\.</p>', thursday.text)
    assert "No task segment covers a worn minute of this day" in thursday.text


def test_without_recorded_segments_the_worker_day_page_offers_to_infer_them_from_activity(world: World):
    pytest.importorskip("companion.rotation", reason="companion.rotation is developed separately")
    wa = world.ids["wa"]
    client = signed_in(world, "erg_own")
    recorded = client.get(f"/workers/{wa}/days/{DAY}")
    assert 'href="?infer=true"' in recorded.text and "No task segments recorded" in recorded.text
    inferred = client.get(f"/workers/{wa}/days/{DAY}", params={"infer": "true"})
    api_day = api(world, "erg_own", f"/api/workers/{wa}/rotation/{DAY}", infer="true")
    rows = [cells for key, cells in table(inferred.text, "segments").items() if key != "task"]
    assert len(rows) == len(api_day["segments"]) == 1
    assert rows[0] == ["static (activity)", "—", "08:00", "09:00", "60", "inferred"]


def test_the_team_page_is_denied_to_an_ergonomist_of_another_team_and_to_workers(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    ta, wa = world.ids["ta"], world.ids["wa"]
    for who in ("erg_other", "worker_self", "worker_other"):
        client = signed_in(world, who)
        for params in ({}, {"week": "2026-W03"}):
            page = client.get(f"/teams/{ta}", params=params)
            assert page.status_code == 403, (who, params)
            assert (
                "Not yours to see" in page.text and "Ana" not in page.text and "compliance" not in page.text
            )
    # A worker-day of Ana's: Ana and her team's ergonomist see it, Ben and the other team's not.
    for who, status in (
        ("worker_self", 200),
        ("erg_own", 200),
        ("admin", 200),
        ("worker_other", 403),
        ("erg_other", 403),
    ):
        page = signed_in(world, who).get(f"/workers/{wa}/days/{MON_W03}")
        assert page.status_code == status, who
        assert ("packing" in page.text) == (status == 200), who
