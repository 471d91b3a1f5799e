"""The team page judges rotation compliance for every worker-day of eight weeks; asking "did the
worker work that day?" with one query per day made a 25-wearer team's page take seconds under
load (bench/load.py).  It is one query per worker-week now, with the same answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
import test_dashboard_pages
import test_store
from test_api_resources import KEY, World
from test_dashboard_pages import MON_W03, at, signed_in
from test_ingest import JAN1, minutes_batch
from test_store import add_worker_and_device
from test_worker_pages import minutes_at, upload

from companion import exposure
from companion.api.routes.rotation import worked_days
from companion.ingest import ingest_batch
from companion.store import Device, Team, Worker, open_store, session_factory, session_scope

db_url = test_store.db_url
week_world = test_dashboard_pages.week_world  # this module's own instance: the test below adds to it
rotation_week = test_dashboard_pages.rotation_week


def test_worked_days_answers_every_day_of_a_week_in_one_query(tmp_path: Path):
    engine = open_store(f"sqlite:///{tmp_path / 'team.db'}")
    worker_id, _ = add_worker_and_device(engine, timezone="Europe/Paris")
    # Thursday 2026-01-01 from 08:00 UTC, and 23:30 UTC on Saturday: already Sunday in Paris.
    with session_factory(engine)() as session:
        ingest_batch(session, "W017", minutes_batch(1, JAN1 + 8 * 3600, 30), None, require_hmac=False)
    with session_factory(engine)() as session:
        ingest_batch(
            session,
            "W017",
            minutes_batch(31, JAN1 + 2 * 86_400 + 23 * 3600 + 1800, 10),
            None,
            require_hmac=False,
        )
    monday = dt.date(2025, 12, 29)
    week = [monday + dt.timedelta(days=k) for k in range(7)]
    statements: list[str] = []
    with session_factory(engine)() as session:
        worker = session.get(Worker, worker_id)
        assert worker is not None
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        answer = worked_days(session, worker, week)
    assert answer == [False, False, False, True, False, False, True]
    assert len(statements) == 1


# ---- a whole team page view ---------------------------------------------------------------------
# It showed nine team summaries (the range and each of eight weeks) and eight weeks of rotation
# compliance with a set of queries each: ~300 statements a view for a 25-wearer team with one
# day of data.  Now one load of the daily exposure of the range and the weeks, and one set of
# rotation queries for all eight weeks: a fixed number, whatever the team's size and data.

TEAM_PAGE_STATEMENTS = 15


def _team_page_statements(world: World, params: dict[str, str]) -> int:
    erin = signed_in(world, "erg_own")
    # A first view recomputes the days the uploads made dirty; the count is of a view after it.
    assert erin.get(f"/teams/{world.ids['ta']}", params=params).status_code == 200
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(world.engine, "before_cursor_execute", count)
    try:
        page = erin.get(f"/teams/{world.ids['ta']}", params=params)
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", count)
    assert page.status_code == 200, page.text
    return len(statements)


def test_a_team_page_view_runs_a_fixed_number_of_statements_whatever_the_team_size(
    week_world: World, rotation_week: dict[str, int]
):
    world = week_world
    params = {"date_from": "2025-12-22", "date_to": "2026-01-18", "week": "2026-W03"}
    assert _team_page_statements(world, params) == TEAM_PAGE_STATEMENTS
    # Four more wearers in team A, each with worked days in three of the eight weeks.
    with session_scope(world.engine) as session:
        team = session.get(Team, world.ids["ta"])
        for k in range(4):
            worker = Worker(team=team, name=f"extra {k}", timezone="Europe/Paris")
            session.add(Device(device_id=f"X{k:03d}", key=KEY, worker=worker))
    for k in range(4):
        for day in (dt.date(2025, 12, 2), dt.date(2026, 1, 1), MON_W03 + dt.timedelta(days=k)):
            upload(world, f"X{k:03d}", minutes_at(at(day, 9), 30, 20.0 + 10 * k))
    assert _team_page_statements(world, params) == TEAM_PAGE_STATEMENTS


def test_days_of_several_workers_load_together_as_each_alone(tmp_path: Path):
    # A view that meets a team's dirty days recomputes them all (load_workers_days): the inputs
    # must be those of each worker loaded alone, whatever their time zones and days.
    engine = open_store(f"sqlite:///{tmp_path / 'team.db'}")
    paris, _ = add_worker_and_device(engine, "W017", timezone="Europe/Paris")
    utc, _ = add_worker_and_device(engine, "W018", timezone="UTC")
    with session_factory(engine)() as session:
        # From 22:30 UTC on 2026-01-01: 23:30 in Paris, so 30 minutes on the 1st and 10 on the 2nd.
        ingest_batch(session, "W017", minutes_batch(1, JAN1 + 22 * 3600 + 1800, 40), None, require_hmac=False)
        ingest_batch(session, "W018", minutes_batch(1, JAN1 + 8 * 3600, 30, 50.0), None, require_hmac=False)
    days = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    wanted = {paris: (days, ZoneInfo("Europe/Paris")), utc: (days[:1], ZoneInfo("UTC"))}
    with session_factory(engine)() as session:
        together = exposure.load_workers_days(session, wanted)
        for worker_id, (its_days, tz) in wanted.items():
            alone = exposure.load_worker_days(session, worker_id, its_days, tz)
            for a, b in zip(alone, together[worker_id], strict=True):
                for field in dataclasses.fields(cast(Any, a)):
                    assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name
        assert together[paris][0].day_index.tolist() == [0] * 30 + [1] * 10
        assert len(together[utc][0].start_s) == 30
        computed = exposure.recompute_workers_days(session, {w: d for w, (d, _) in wanted.items()})
        assert [(r.worker_id, r.day) for r in computed[paris]] == [(paris, d) for d in days]
        assert (
            computed[utc][0].metrics == exposure.recompute_daily_exposure(session, utc, days[:1])[0].metrics
        )
