"""``posture demo``, as a user runs it: simulated workers on the real firmware, synced over the
emulated radio into a fresh database, then the server answering with the dashboard URL."""

from __future__ import annotations

import html as html_lib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sqlalchemy import func, select

from companion.store import Device, MinuteSummary, Record, User, open_store, session_scope


def test_demo_syncs_every_worker_and_serves_the_dashboard(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = dict(os.environ, POSTURE_DATA_DIR=str(tmp_path / "data"), COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "companion.cli", "demo", "--workers", "2", "--hours", "0.5", "--port", "0",
         "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Dashboard: "):
                url = line.split()[1].rstrip("/")
                break
        assert url, "no Dashboard line:\n" + "".join(lines)
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        # The printed logins work: the ergonomist signs in and sees the team's workers.
        text = "".join(lines)
        ergo_line = next(line for line in lines if "ergonomist@demo.posture" in line)
        password = ergo_line.split("│")[3].strip() if "│" in ergo_line else ergo_line.split()[-1]
        body = json.dumps({"email": "ergonomist@demo.posture", "password": password}).encode()
        req = urllib.request.Request(url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            token = json.loads(r.read())["token"]
        req = urllib.request.Request(url + "/api/workers", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert len(json.loads(r.read())) == 2
        assert "synced" in text
        check_dashboard(url, lines, password)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    engine = open_store(f"sqlite:///{db}")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 2
        assert session.scalar(select(func.count()).select_from(User)) == 4  # admin, ergonomist, 2 workers
        assert (session.scalar(select(func.count()).select_from(MinuteSummary)) or 0) >= 30
        per_device = session.execute(select(Record.device_pk, func.count(), func.max(Record.seq)).group_by(Record.device_pk)).all()
    # Every device's log arrived whole: seqs 1..n, none twice.
    assert len(per_device) == 2 and all(count == top for _pk, count, top in per_device)


def password_of(lines: list[str], email: str) -> str:
    row = next(line for line in lines if email in line)
    return row.split("│")[3].strip() if "│" in row else row.split()[-1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def sign_in(url: str, email: str, password: str) -> str:
    """The dashboard's form login (the sign-in page first: its cookie and form token); returns
    the session cookie."""
    with urllib.request.urlopen(url + "/login", timeout=5) as r:
        signin_cookie = r.headers["Set-Cookie"].split(";")[0]
        form_token = r.read().decode().split('name="csrf_token" value="')[1].split('"')[0]
    opener = urllib.request.build_opener(_NoRedirect)
    body = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": form_token}).encode()
    try:
        opener.open(
            urllib.request.Request(url + "/login", data=body, headers={"Cookie": signin_cookie}), timeout=5
        )
    except urllib.error.HTTPError as e:
        assert e.code == 303 and e.headers["Location"] == "/"
        session = next(c for c in e.headers.get_all("Set-Cookie") or [] if c.startswith("posture_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        return session.split(";")[0]
    raise AssertionError("the login form did not redirect")


def page(url: str, cookie: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_dashboard(url: str, lines: list[str], ergo_password: str) -> None:
    """The pages an ergonomist and a worker open, and what each may not."""
    ergo = sign_in(url, "ergonomist@demo.posture", ergo_password)
    status, html = page(url + "/teams", ergo)
    assert status == 200 and "/teams/1" in html
    status, html = page(url + "/teams/1", ergo)
    assert status == 200 and "Exposure by worker" in html and 'id="trend"' in html
    assert "Alex" in html and "Sam" in html and "summary.csv" in html
    worker_link = html.split('href="/workers/')[1].split('"')[0]
    status, html = page(url + "/workers/" + worker_link, ergo)
    assert status == 200 and 'id="timeline"' in html and "ISO 11226" in html
    series = json.loads(html_lib.unescape(html.split("data-series='")[1].split("'")[0]))
    assert len(series["t"]) >= 10 and any(v is not None for v in series["p50"])
    status, html = page(url + "/static/uplot/uPlot.iife.min.js", ergo)
    assert status == 200 and "uPlot" in html  # the chart library is served locally
    status, html = page(url + "/devices", ergo)
    assert status == 200 and "W001" in html and "W002" in html
    # A worker sees their own day and nothing of the team's.
    sam_email = next(line for line in lines if "sam@demo.posture" in line)
    sam = sign_in(url, "sam@demo.posture", password_of(lines, "sam@demo.posture"))
    assert sam_email
    status, html = page(url + "/teams/1", sam)
    assert status == 403
    status, html = page(url + "/workers/1/days/" + worker_link.split("/days/")[1], sam)
    assert status == 403  # Alex's day
    status, html = page(url + "/", "")
    assert "Sign in" in html  # signed out: the login page
