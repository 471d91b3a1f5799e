"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright)
against ``posture demo``, as a user runs it.  The pages load, show the demo's workers, draw their
charts from the locally served uPlot, and hand out CSV files; a worker sees only their own days.

``.ci/run`` installs Chromium; elsewhere the module is skipped when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip(
    "pytest_playwright", reason="pytest-playwright is not installed (pip install -e '.[dev]')"
)

from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium: apt-get install chromium (.ci/run does) to run the browser tests",
        allow_module_level=True,
    )

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ERGONOMIST = "ergonomist@demo.posture"
ALEX = "alex@demo.posture"
SAM = "sam@demo.posture"
MEDIAN_STROKE_RGB = (0x1D, 0x35, 0x57)  # charts.js: the timeline's median flexion line
TREND_STROKE_RGB = (0x45, 0x7B, 0x9D)  # charts.js: the team trend line
HIGH_LOAD_RGB = (214, 40, 40)  # charts.js LOAD_FILL.high: a high-load task's band under the timeline


@dataclass
class Demo:
    url: str
    passwords: dict[str, str]
    worker_ids: dict[str, int]  # worker name -> id
    days: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # worker id -> /api days


def _password_rows(log: str) -> dict[str, str]:
    """The logins table the demo prints: "│ who │ email │ password │" rows (or plain columns)."""
    passwords = {}
    for line in log.splitlines():
        match = re.search(r"([a-z0-9]+@demo\.posture)\s*│?\s*(\S+)\s*│?\s*$", line)
        if match:
            passwords[match.group(1)] = match.group(2)
    return passwords


def _api_get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``posture demo`` with two workers and half an hour each, serving on a free port."""
    root = tmp_path_factory.mktemp("browser-demo")
    log_path = root / "demo.log"
    env = dict(os.environ, POSTURE_DATA_DIR=str(root / "data"), COLUMNS="120")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "companion.cli",
                "demo",
                "--workers",
                "2",
                "--hours",
                "0.5",
                "--port",
                "0",
                "--db",
                str(root / "demo.db"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"^Dashboard: (\S+)$", log_path.read_text(), re.MULTILINE)
            url = match.group(1).rstrip("/") if match else None
            time.sleep(0.1)
        log = log_path.read_text()
        assert url, f"posture demo printed no Dashboard line:\n{log}"
        passwords = _password_rows(log)
        assert {ERGONOMIST, ALEX, SAM} <= passwords.keys(), log
        body = json.dumps({"email": ERGONOMIST, "password": passwords[ERGONOMIST]}).encode()
        login = urllib.request.Request(
            url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(login, timeout=10) as response:
            token = json.loads(response.read())["token"]
        workers = {w["name"]: w["id"] for w in _api_get(url + "/api/workers", token)}
        days = {wid: _api_get(f"{url}/api/workers/{wid}/days", token) for wid in workers.values()}
        assert all(days.values()), f"a demo worker has no days: {days}"
        yield Demo(url=url, passwords=passwords, worker_ids=workers, days=days)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, never a browser downloaded by ``playwright install``."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def browser_context_args(demo: Demo) -> dict[str, Any]:
    return {"base_url": demo.url, "accept_downloads": True, "viewport": {"width": 1280, "height": 900}}


@dataclass
class PageProblems:
    """What a user would see in the browser's developer tools: errors and off-site requests."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    off_site_requests: list[str] = field(default_factory=list)
    bad_static: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def _failed(self, request: Request) -> None:
        self.failed_requests.append(f"{request.url}: {request.failure}")

    def _request(self, request: Request) -> None:
        if not request.url.startswith(self.origin + "/"):
            self.off_site_requests.append(request.url)

    def _response(self, response: Response) -> None:
        if urllib.parse.urlsplit(response.url).path.startswith("/static/") and response.status != 200:
            self.bad_static.append(f"{response.url}: {response.status}")

    def assert_none(self) -> None:
        assert self.console_errors == []
        assert self.failed_requests == []
        assert self.off_site_requests == [], "the dashboard must not load anything from another site (no CDN)"
        assert self.bad_static == []


@pytest.fixture
def problems(page: Page, demo: Demo) -> PageProblems:
    watcher = PageProblems(origin=demo.url)
    watcher.watch(page)
    return watcher


def sign_in(page: Page, demo: Demo, email: str) -> None:
    """The login form, filled and sent as a user does."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(demo.passwords[email])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_contain_text(email)


def canvas_ink(page: Page, selector: str, stroke_rgb: tuple[int, int, int]) -> dict[str, int]:
    """Pixels of the chart's canvas: its size, how many are painted, how many in the series' colour."""
    ink: dict[str, int] = page.evaluate(
        """([selector, rgb]) => {
            const canvas = document.querySelector(selector);
            if (!canvas) return {width: 0, height: 0, painted: 0, series: 0};
            const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0, series = 0;
            for (let i = 0; i < px.length; i += 4) {
                if (px[i + 3] === 0) continue;
                painted++;
                if (px[i + 3] > 160 && Math.abs(px[i] - rgb[0]) < 40 && Math.abs(px[i + 1] - rgb[1]) < 40
                    && Math.abs(px[i + 2] - rgb[2]) < 40) series++;
            }
            return {width: canvas.width, height: canvas.height, painted, series};
        }""",
        [selector, list(stroke_rgb)],
    )
    return ink


def csv_of_download(page: Page, link_name: str) -> tuple[str, list[dict[str, str]]]:
    """Clicks a download link; returns the suggested file name and the CSV's rows."""
    with page.expect_download() as download_info:
        page.get_by_role("link", name=link_name, exact=True).click()
    download = download_info.value
    text = Path(download.path()).read_text(encoding="utf-8")
    return download.suggested_filename, list(csv.DictReader(io.StringIO(text)))


def test_ergonomist_signs_in_through_the_form_and_sees_the_team_exposure_rows(
    page: Page, demo: Demo, problems: PageProblems
) -> None:
    sign_in(page, demo, ERGONOMIST)
    expect(page).to_have_url(re.compile(r"/teams$"))
    page.get_by_role("link", name="Parcel hub, day shift").click()
    expect(page.get_by_role("heading", name="Exposure by worker")).to_be_visible()
    rows = page.locator("#exposure tbody tr")
    expect(rows).to_have_count(2)
    for name, worker_id in demo.worker_ids.items():
        row = rows.filter(has=page.get_by_role("link", name=name, exact=True))
        cells = row.locator("td")
        expect(cells.nth(1)).to_have_text(str(len(demo.days[worker_id])))  # days with data
        worn_h = float(cells.nth(2).inner_text())
        expected_h = sum(d["metrics"]["worn_s"] for d in demo.days[worker_id]) / 3600
        assert worn_h == pytest.approx(expected_h, abs=0.05) and worn_h > 0
        assert re.fullmatch(r"\d+ / \d+", cells.nth(5).inner_text()), "p50 / p90 flexion shown"
    # The trend chart under the table is drawn too.
    page.wait_for_function("document.querySelector('#trend canvas') !== null")
    ink = canvas_ink(page, "#trend canvas", TREND_STROKE_RGB)
    assert ink["width"] > 100 and ink["painted"] > 0 and ink["series"] > 0, ink
    problems.assert_none()


def test_a_wrong_password_keeps_the_user_on_the_login_form_with_an_error(page: Page, demo: Demo) -> None:
    page.goto("/login")
    page.get_by_label("E-mail").fill(ERGONOMIST)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/login\?error=1$"))
    expect(page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")
    assert page.goto("/teams") is not None and page.url.endswith("/login")  # still signed out


def test_worker_day_page_draws_the_flexion_timeline_from_locally_served_uplot(
    page: Page, demo: Demo, problems: PageProblems
) -> None:
    sign_in(page, demo, ERGONOMIST)
    page.get_by_role("link", name="Parcel hub, day shift").click()
    page.get_by_role("link", name="Alex", exact=True).click()
    latest = demo.days[demo.worker_ids["Alex"]][-1]["date"]
    expect(page).to_have_url(re.compile(rf"/workers/{demo.worker_ids['Alex']}/days/{latest}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Alex · {latest}")
    expect(page.locator("p.summary")).to_contain_text("You wore the sensor")
    # uPlot builds its chart (canvas and legend) in the page: the script ran.
    chart = page.locator("#timeline .uplot")
    expect(chart).to_be_visible()
    expect(chart.locator(".u-legend")).to_contain_text("median flexion (°)")
    ink = canvas_ink(page, "#timeline canvas", MEDIAN_STROKE_RGB)
    assert ink["width"] > 300 and ink["height"] > 100, ink
    assert ink["painted"] > 1000, f"the timeline canvas is (almost) blank: {ink}"
    assert ink["series"] > 50, f"no median flexion line on the canvas: {ink}"
    expect(page.get_by_role("heading", name="Time in ISO 11226 trunk zones")).to_be_visible()
    # Every script and stylesheet came from the companion itself, and none failed.
    assert page.evaluate("typeof uPlot") == "function"
    problems.assert_none()


def test_worker_csv_link_downloads_that_workers_days(page: Page, demo: Demo) -> None:
    sign_in(page, demo, ERGONOMIST)
    page.get_by_role("link", name="Parcel hub, day shift").click()
    sam = demo.worker_ids["Sam"]
    sam_row = page.locator("#exposure tbody tr").filter(has=page.get_by_role("link", name="Sam", exact=True))
    with page.expect_download() as download_info:
        sam_row.get_by_role("link", name="CSV", exact=True).click()
    download = download_info.value
    assert download.suggested_filename == f"worker-{sam}-days.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    assert header[:3] == ["worker_id", "worker", "date"]
    assert {"worn_s", "flexion.time_above_s.20", "alerts.count"} <= set(header)
    rows = list(csv.DictReader(io.StringIO(text)))
    api_days = demo.days[sam]
    assert [r["date"] for r in rows] == [d["date"] for d in api_days]
    for row, day in zip(rows, api_days, strict=True):
        assert row["worker_id"] == str(sam) and row["worker"] == "Sam"
        assert float(row["worn_s"]) == pytest.approx(day["metrics"]["worn_s"])
        assert float(row["flexion.time_above_s.20"]) == pytest.approx(
            day["metrics"]["flexion"]["time_above_s"]["20"]
        )
        assert int(row["alerts.count"]) == day["metrics"]["alerts"]["count"]


def test_team_csv_link_downloads_one_row_per_worker_day(page: Page, demo: Demo) -> None:
    sign_in(page, demo, ERGONOMIST)
    page.get_by_role("link", name="Parcel hub, day shift").click()
    filename, rows = csv_of_download(page, "team summary (CSV)")
    assert re.fullmatch(r"team-1-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv", filename)
    expected = sorted((name, day["date"]) for name, wid in demo.worker_ids.items() for day in demo.days[wid])
    assert sorted((r["worker"], r["date"]) for r in rows) == expected
    assert all(r["team_id"] == "1" and float(r["worn_s"]) > 0 for r in rows)


def test_team_page_shows_rotation_compliance_and_the_worker_day_its_task_segments(
    page: Page, demo: Demo, problems: PageProblems
) -> None:
    # The demo's task plan: Alex starts at the desk (low load), Sam sorting (high load, at most
    # 60 min in a row); in the demo's half hour neither has to rotate yet.
    sam = demo.worker_ids["Sam"]
    day = dt.date.fromisoformat(demo.days[sam][-1]["date"])
    week = "{}-W{:02d}".format(*day.isocalendar()[:2])
    sign_in(page, demo, ERGONOMIST)
    page.goto(f"/teams/1?week={week}")
    expect(page.get_by_role("heading", name=f"Task rotation compliance, week {week}")).to_be_visible()
    compliance = page.get_by_role("table", name=f"Task rotation compliance, week {week}")
    for name, worker_id in demo.worker_ids.items():
        cells = compliance.locator(f'tbody tr[data-worker="{worker_id}"] td')
        expect(cells.nth(0)).to_have_text(name)
        expect(cells.nth(1)).to_have_text("1")  # one day assessed: the task plan covers the half hour
        expect(cells.nth(4)).to_have_text("0")  # nothing overdue
        expect(cells.nth(9)).to_have_text("yes")  # compliant
    expect(compliance.locator("tfoot td").nth(0)).to_have_text(str(len(demo.worker_ids)))
    page.wait_for_function("document.querySelector('#weeks canvas') !== null")  # the weeks' chart
    # From Sam's day in the table to the worker-day page: the tasks under the flexion timeline.
    compliance.locator(f'tr[data-worker="{sam}"] td.days a').first.click()
    expect(page).to_have_url(re.compile(rf"/workers/{sam}/days/{day}$"))
    segments = page.get_by_role("table", name="Task segments").locator("tbody tr")
    expect(segments.first.locator("td")).to_have_text(
        [
            re.compile("Sorting"),
            "high",
            re.compile(r"\d\d:\d\d"),
            re.compile(r"\d\d:\d\d"),
            re.compile(r"\d+"),
            "api",
        ]
    )
    expect(page.locator("#verdict")).to_have_text("Compliant.")
    page.wait_for_function("document.querySelector('#timeline canvas') !== null")
    band: int = page.evaluate(
        """([r, g, b]) => {
            const canvas = document.querySelector("#timeline canvas");
            const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;  // translucent pixels in the band's colour (alert lines are opaque)
            for (let i = 0; i < px.length; i += 4)
                if (px[i + 3] > 20 && px[i + 3] < 120 && Math.abs(px[i] - r) < 30 && Math.abs(px[i + 1] - g) < 30
                    && Math.abs(px[i + 2] - b) < 30) n++;
            return n;
        }""",
        list(HIGH_LOAD_RGB),
    )
    assert band > 5000, f"no high-load task band under Sam's timeline ({band} px)"
    problems.assert_none()


def test_worker_sees_only_their_own_day_and_is_denied_another_workers(
    page: Page, demo: Demo, problems: PageProblems
) -> None:
    sign_in(page, demo, SAM)
    sam, alex = demo.worker_ids["Sam"], demo.worker_ids["Alex"]
    expect(page).to_have_url(re.compile(r"/me$"))  # "/" → "/me": the wearer's own today page
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Today, "))
    expect(page.locator("#summary")).to_contain_text("You wore the sensor")  # Sam's demo half hour
    expect(page.locator("#timeline canvas")).to_be_visible()
    nav = page.locator("header nav")
    expect(nav.get_by_role("link", name="My day")).to_be_visible()
    expect(nav.get_by_role("link", name="Teams")).to_have_count(0)
    expect(nav.get_by_role("link", name="Devices")).to_have_count(0)
    own = demo.days[sam][-1]["date"]
    response = page.goto(f"/workers/{sam}/days/{own}")  # their own worker-day page stays open to them
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Sam · {own}")
    problems.assert_none()
    for path in (f"/workers/{alex}/days/{demo.days[alex][-1]['date']}", "/teams", "/teams/1", "/devices"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not yours to see")
        expect(page.locator("main")).not_to_contain_text("Alex")
    # Nor through the CSV the ergonomist downloads.
    response = page.goto(f"/api/workers/{alex}/days.csv")
    assert response is not None and response.status == 403


def test_devices_page_lists_each_demo_device_with_its_last_sync(page: Page, demo: Demo) -> None:
    sign_in(page, demo, ERGONOMIST)
    page.get_by_role("link", name="Devices").click()
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(2)
    now = dt.datetime.now(dt.UTC)
    for device_id, worker in (("W001", "Alex"), ("W002", "Sam")):
        cells = rows.filter(has_text=device_id).locator("td")
        expect(cells.nth(1)).to_have_text(worker)
        synced = dt.datetime.strptime(cells.nth(2).inner_text(), "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        assert dt.timedelta(0) <= now - synced < dt.timedelta(minutes=15), f"{device_id} last sync {synced}"
        expect(cells.nth(4)).to_have_text("yes")  # its sync key is registered


def test_signing_out_returns_to_the_login_form(page: Page, demo: Demo) -> None:
    sign_in(page, demo, ERGONOMIST)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/devices")
    expect(page).to_have_url(re.compile(r"/login$"))
