"""The ergonomist's dashboard pages (companion.web.pages): the team overview and the worker-day
page, against a real store with data through the real ingest endpoint, people signed in with
the dashboard's login form.  Every number a page shows is checked against the JSON API's answer
for the same worker-day or team-week.  The world (team A with Ana wearing W017 and an hour of
hers at 25° on 2026-01-01, team B with Ben, an ergonomist per team, an admin) is
tests/test_api_resources.py's."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_store
from fastapi.testclient import TestClient
from test_api_resources import DAY, PASSWORD, World, build_world

db_url = test_store.db_url


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


def signed_in(world: World, who: str) -> TestClient:
    """A browser of its own, signed in through the login form (session cookie)."""
    client = TestClient(world.client.app)
    r = client.post("/login", data={"email": world.emails[who], "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client


def link(page: str, text: str) -> str:
    """The address of the link whose text is exactly ``text``."""
    found = re.search(rf'<a href="([^"]+)"[^>]*>{re.escape(text)}</a>', page)
    assert found, f"no link {text!r} in the page"
    return html.unescape(found[1])


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
