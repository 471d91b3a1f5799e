"""The companion's JSON API (companion.api): login, resources, exports, settings, ingest.

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (fixtures from
tests/test_store.py).  The world fixture here is shared with tests/test_api_matrix.py."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import test_store
from databases import database_url
from fastapi.testclient import TestClient
from test_ingest import JAN1, KEY, frames, minute_payload, minutes_batch

import protocol
from companion import auth
from companion.api import devicesettings
from companion.api.app import create_app
from companion.ingest import batch_mac
from companion.settings import Settings
from companion.store import (
    Device,
    MinuteSummary,
    Organisation,
    Record,
    Team,
    Worker,
    session_factory,
    session_scope,
)

db_url = test_store.db_url

PASSWORD = "correct horse battery"
DAY = dt.date(2026, 1, 1)  # JAN1 in UTC: the world's worker wa has data on it


@dataclass
class World:
    """An organisation with teams A and B, a worker in each (wa wears W017, wb wears W018),
    an ergonomist per team, an admin, worker logins for wa and wb, and a sync agent."""

    client: TestClient
    engine: sa.Engine
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def fresh_token(self, who: str) -> str:
        with session_scope(self.engine) as session:
            user = session.scalar(sa.select(auth.User).where(auth.User.email == self.emails[who]))
            assert user is not None
            return auth.issue_token(session, user)


def build_world(url: str, tmp: Path) -> World:
    app = create_app(Settings(database_url=url, data_dir=tmp))
    engine = app.state.store
    w = World(client=TestClient(app), engine=engine)
    with session_scope(engine) as s:
        org = Organisation(name="Acme")
        ta, tb = Team(organisation=org, name="packing"), Team(organisation=org, name="loading")
        wa = Worker(team=ta, name="Ana", timezone="UTC")
        wb = Worker(team=tb, name="Ben", timezone="UTC")
        s.add_all([org, ta, tb, wa, wb])
        s.flush()
        s.add_all(
            [Device(device_id="W017", key=KEY, worker=wa), Device(device_id="W018", key=KEY, worker=wb)]
        )
        w.ids.update(org=org.id, ta=ta.id, tb=tb.id, wa=wa.id, wb=wb.id)
        users = {
            "admin": ("admin@acme.test", "admin", None, ()),
            "erg_own": ("erin@acme.test", "ergonomist", None, (ta.id,)),
            "erg_other": ("otto@acme.test", "ergonomist", None, (tb.id,)),
            "worker_self": ("ana@acme.test", "worker", wa.id, ()),
            "worker_other": ("ben@acme.test", "worker", wb.id, ()),
        }
        for role, (email, kind, worker_id, teams) in users.items():
            user = auth.create_user(s, email, PASSWORD, kind, worker_id, teams)
            w.tokens[role] = auth.issue_token(s, user)
            w.emails[role] = email
        w.tokens["agent"] = auth.issue_agent_token(s, "laptop by the door")
    # A working hour of Ana's at 25° (flexion above 20° all along), through the real ingest.
    upload = w.client.post(
        "/api/ingest",
        json=upload_body("W017", minutes_batch(1, JAN1 + 8 * 3600, 60)),
        headers=w.headers("agent"),
    )
    assert upload.status_code == 200, upload.text
    return w


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload_body(device_id: str, data: bytes, key: bytes = KEY) -> dict[str, str]:
    """POST /api/ingest's body for framed records, signed with the device's key as the sync
    agent signs them (the companion refuses unsigned batches by default)."""
    return {
        "device_id": device_id,
        "frames_b64": b64(data),
        "batch_mac_b64": b64(batch_mac(key, device_id, data)),
    }


def reads_only(test: Callable[..., None]) -> Callable[..., None]:
    """A test that changes nothing another such test reads (it reads, or writes what only it
    looks at, or is refused): it gets the module's one world of its database, not one of its own
    (building a world takes seconds)."""
    test.reads_only = True  # type: ignore[attr-defined]
    return test


@dataclass
class SharedWorlds:
    """The worlds of a module's @reads_only tests, one per database, made when first asked for."""

    tmp: Path
    stack: ExitStack
    worlds: dict[str, World] = field(default_factory=dict)

    def of(self, backend: str) -> World:
        if backend not in self.worlds:
            tmp = self.tmp / backend
            tmp.mkdir()
            url = self.stack.enter_context(database_url(backend, tmp))
            w = build_world(url, tmp)
            self.stack.callback(w.engine.dispose)
            self.stack.callback(w.client.close)
            self.worlds[backend] = w
        world = self.worlds[backend]
        world.client.cookies.clear()
        return world


@pytest.fixture(scope="module")
def shared_worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedWorlds]:
    with ExitStack() as stack:
        yield SharedWorlds(tmp_path_factory.mktemp("shared"), stack)


@pytest.fixture
def world(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[World]:
    """A world of the test's own on its database, or for a @reads_only test the module's one."""
    if getattr(request.function, "reads_only", False):
        shared: SharedWorlds = request.getfixturevalue("shared_worlds")
        yield shared.of(request.node.callspec.params["db_url"])
        return
    w = build_world(db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


def page_form_token(page: str) -> str:
    """The hidden csrf_token of a page's form (the sign-in form, or a signed-in page's sign-out)."""
    found = re.search(r'name="csrf_token" value="([0-9a-f]*)"', page)
    assert found, page
    return found[1]


def form_login(client: TestClient, email: str, password: str) -> httpx.Response:
    """Sign in as a browser does: open the sign-in page (its cookie and form token), post the form."""
    token = page_form_token(client.get("/login").text)
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}, follow_redirects=False
    )


def count(engine: sa.Engine, table: type) -> int:
    with session_factory(engine)() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# ---- health, login, tokens ---------------------------------------------------------------------


@reads_only
def test_health_answers_ok_and_the_openapi_docs_are_served(world: World):
    assert world.client.get("/health").json() == {"status": "ok"}
    assert world.client.get("/docs").status_code == 200
    paths = world.client.get("/openapi.json").json()["paths"]
    assert "/api/ingest" in paths and "/api/workers/{worker_id}/days/{day}" in paths


@reads_only
def test_login_gives_a_token_that_shows_who_i_am(world: World):
    r = world.client.post("/api/auth/login", json={"email": "Erin@acme.test", "password": PASSWORD})
    assert r.status_code == 200
    token = r.json()["token"]
    me = world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["email"] == "erin@acme.test" and me["role"] == "ergonomist"
    assert me["team_ids"] == [world.ids["ta"]]


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(world: World):
    wrong_pw = world.client.post("/api/auth/login", json={"email": "erin@acme.test", "password": "nope nope"})
    no_user = world.client.post("/api/auth/login", json={"email": "nobody@acme.test", "password": PASSWORD})
    assert wrong_pw.status_code == no_user.status_code == 401
    assert wrong_pw.json() == no_user.json() == {"detail": "wrong e-mail or password"}


@reads_only
def test_tokens_are_stored_only_as_hashes(world: World):
    with session_factory(world.engine)() as session:
        stored = set(session.scalars(sa.select(auth.ApiToken.token_hash)))
    assert world.tokens["admin"] not in stored
    assert auth.token_hash(world.tokens["admin"]) in stored


@reads_only
def test_an_expired_token_is_refused(world: World):
    with session_scope(world.engine) as session:
        user = session.scalar(sa.select(auth.User).where(auth.User.email == "erin@acme.test"))
        assert user is not None
        token = auth.issue_token(session, user, lifetime=dt.timedelta(seconds=-1))
    r = world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


@reads_only
def test_logout_ends_the_token(world: World):
    token = world.fresh_token("erg_own")
    h = {"Authorization": f"Bearer {token}"}
    assert world.client.post("/api/auth/logout", headers=h).status_code == 204
    assert world.client.get("/api/me", headers=h).status_code == 401


@reads_only
def test_the_login_form_sets_an_httponly_cookie_that_authenticates(world: World):
    client = world.client
    r = form_login(client, "ana@acme.test", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("posture_session="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    token = r.cookies["posture_session"]
    client.cookies.set("posture_session", token)  # as the browser keeps it
    assert client.get("/api/me").json()["email"] == "ana@acme.test"
    sign_out = page_form_token(client.get("/me").text)
    out = client.post("/logout", data={"csrf_token": sign_out}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("posture_session", token)  # even a client that ignores the clearing...
    assert client.get("/api/me").status_code == 401  # ...has a dead session
    client.cookies.clear()


def test_a_failed_form_login_goes_back_to_the_form(world: World):
    r = form_login(world.client, "ana@acme.test", "wrong!!!")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert "posture_session" not in r.cookies


def test_passwords_are_scrypt_hashed_with_a_salt_each():
    a, b = auth.hash_password(PASSWORD), auth.hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$")
    assert auth.verify_password(PASSWORD, a) and not auth.verify_password(PASSWORD + "x", a)


# ---- resources ----------------------------------------------------------------------------------


@reads_only
def test_an_ergonomist_lists_only_the_workers_of_their_teams(world: World):
    names = [w["name"] for w in world.client.get("/api/workers", headers=world.headers("erg_own")).json()]
    assert names == ["Ana"]
    mine = world.client.get("/api/workers", headers=world.headers("worker_other")).json()
    assert [w["name"] for w in mine] == ["Ben"]


def test_admin_builds_an_organisation_a_team_a_worker_and_a_device(world: World):
    h = world.headers("admin")
    org = world.client.post("/api/organisations", json={"name": "Beta Ltd"}, headers=h).json()
    team = world.client.post(
        "/api/teams", json={"organisation_id": org["id"], "name": "night"}, headers=h
    ).json()
    worker = world.client.post(
        "/api/workers", json={"name": "Cleo", "team_id": team["id"], "timezone": "Europe/Paris"}, headers=h
    ).json()
    assert worker["timezone"] == "Europe/Paris"
    r = world.client.post(
        "/api/devices", json={"device_id": "W100", "key_hex": "ab" * 32, "worker_id": worker["id"]}, headers=h
    )
    assert r.status_code == 201
    device = r.json()
    assert device["has_key"] is True and "key" not in device and "key_hex" not in device
    again = world.client.post("/api/devices", json={"device_id": "W100", "key_hex": "ab" * 32}, headers=h)
    assert again.status_code == 409


@reads_only
def test_a_device_key_of_the_wrong_size_is_refused(world: World):
    r = world.client.post(
        "/api/devices", json={"device_id": "W101", "key_hex": "abcd"}, headers=world.headers("admin")
    )
    assert r.status_code == 422 and "16..64 bytes" in r.json()["detail"]


def test_an_ergonomist_sees_last_sync_and_battery_of_their_teams_devices(world: World):
    devices = world.client.get("/api/devices", headers=world.headers("erg_own")).json()
    battery = protocol.encode_payload(
        protocol.BATTERY, {"time_s": JAN1 + 9 * 3600, "battery_mv": 3900, "percent": 77, "charging": 0}
    )
    body = upload_body("W017", frames([(61, protocol.BATTERY, battery)]))
    assert world.client.post("/api/ingest", json=body, headers=world.headers("agent")).status_code == 200
    devices = world.client.get("/api/devices", headers=world.headers("erg_own")).json()
    assert [d["device_id"] for d in devices] == ["W017"]
    assert devices[0]["last_sync"] is not None
    assert (devices[0]["battery_percent"], devices[0]["battery_mv"], devices[0]["contiguous_seq"]) == (
        77,
        3900,
        61,
    )


def test_a_revoked_device_cannot_upload_until_it_gets_a_new_key(world: World):
    h = world.headers("admin")
    assert world.client.post("/api/devices/W017/revoke", headers=h).json()["revoked"] is True
    data = minutes_batch(61, JAN1 + 10 * 3600, 1)
    body = upload_body("W017", data)
    r = world.client.post("/api/ingest", json=body, headers=world.headers("agent"))
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    new_key = bytes(range(100, 132))
    assert (
        world.client.put("/api/devices/W017/key", json={"key_hex": new_key.hex()}, headers=h).status_code
        == 200
    )
    body["batch_mac_b64"] = b64(batch_mac(new_key, "W017", data))
    assert world.client.post("/api/ingest", json=body, headers=world.headers("agent")).json()["stored"] == 1


# ---- exposure, exports, timeline ----------------------------------------------------------------


@reads_only
def test_a_worker_day_shows_the_exposure_metrics(world: World):
    r = world.client.get(f"/api/workers/{world.ids['wa']}/days/{DAY}", headers=world.headers("worker_self"))
    assert r.status_code == 200
    metrics = r.json()["metrics"]
    assert metrics["minutes"] == 60
    assert metrics["flexion"]["time_above_s"]["20"] == 3600


@reads_only
def test_a_day_without_data_is_404(world: World):
    r = world.client.get(f"/api/workers/{world.ids['wa']}/days/2026-01-02", headers=world.headers("admin"))
    assert r.status_code == 404


def test_late_data_updates_the_day_it_belongs_to(world: World):
    url = f"/api/workers/{world.ids['wa']}/days/{DAY}"
    before = world.client.get(url, headers=world.headers("admin")).json()["metrics"]["minutes"]
    late = minutes_batch(61, JAN1 + 14 * 3600, 30, angle_deg=5)
    body = upload_body("W017", late)
    assert world.client.post("/api/ingest", json=body, headers=world.headers("agent")).json()["stored"] == 30
    after = world.client.get(url, headers=world.headers("admin")).json()["metrics"]
    assert (before, after["minutes"], after["flexion"]["time_above_s"]["20"]) == (60, 90, 3600)


@reads_only
def test_the_days_csv_has_a_row_per_day_with_every_metric(world: World):
    r = world.client.get(
        f"/api/workers/{world.ids['wa']}/days.csv",
        params={"from": "2025-12-30", "to": "2026-01-03"},
        headers=world.headers("erg_own"),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["date"] for row in rows] == ["2026-01-01"]
    assert rows[0]["flexion.time_above_s.20"] == "3600"
    assert rows[0]["worker"] == "Ana"


@reads_only
def test_the_team_summary_totals_its_workers(world: World):
    r = world.client.get(
        f"/api/teams/{world.ids['ta']}/summary",
        params={"from": "2026-01-01", "to": "2026-01-07"},
        headers=world.headers("erg_own"),
    )
    body = r.json()
    ana = body["workers"][0]
    assert (ana["name"], ana["days"], ana["flexion_above_20_pct"]) == ("Ana", 1, 100.0)
    assert body["team"]["worn_h"] == pytest.approx(1.0)
    csv_r = world.client.get(
        f"/api/teams/{world.ids['ta']}/summary.csv",
        params={"from": "2026-01-01", "to": "2026-01-07"},
        headers=world.headers("erg_own"),
    )
    assert len(list(csv.DictReader(io.StringIO(csv_r.text)))) == 1


@reads_only
def test_a_range_ending_before_it_starts_is_refused(world: World):
    r = world.client.get(
        f"/api/workers/{world.ids['wa']}/days",
        params={"from": "2026-02-01", "to": "2026-01-01"},
        headers=world.headers("admin"),
    )
    assert r.status_code == 422 and "after" in r.json()["detail"]


def test_the_timeline_has_a_minute_each_with_flexion_and_alerts(world: World):
    alert = protocol.encode_payload(
        protocol.ALERT,
        {
            "start_s": JAN1 + 8 * 3600 + 600,
            "duration_s": 30,
            "peak_flexion_ddeg": 300,
            "time_to_correct_s": 12,
            "escalation_level": 1,
            "outcome": 0,
        },
    )
    data = frames([(61, protocol.ALERT, alert)])
    world.client.post("/api/ingest", json=upload_body("W017", data), headers=world.headers("agent"))
    r = world.client.get(
        f"/api/workers/{world.ids['wa']}/days/{DAY}/timeline", headers=world.headers("worker_self")
    )
    body = r.json()
    assert len(body["minutes"]) == 60
    assert body["minutes"][0]["flexion_above_20_s"] == 60
    assert 20 <= body["minutes"][0]["flexion_p50_deg"] <= 30
    assert [a["time_s"] for a in body["alerts"]] == [JAN1 + 8 * 3600 + 600]
    with_bins = world.client.get(
        f"/api/workers/{world.ids['wa']}/days/{DAY}/timeline",
        params={"bins": "true"},
        headers=world.headers("admin"),
    ).json()
    assert with_bins["minutes"][0]["flexion_bins_s"][protocol.angle_bin(250)] == 60


# ---- worker settings ----------------------------------------------------------------------------


def test_a_worker_changes_their_threshold_within_limits_and_it_waits_for_the_next_sync(world: World):
    wa = world.ids["wa"]
    limits = {"alert_threshold_deg": {"lo": 15, "hi": 30}}
    r = world.client.put(f"/api/workers/{wa}/settings/limits", json=limits, headers=world.headers("erg_own"))
    assert r.status_code == 200
    too_far = world.client.put(
        f"/api/workers/{wa}/settings", json={"alert_threshold_deg": 40}, headers=world.headers("worker_self")
    )
    assert too_far.status_code == 422 and "15..30" in too_far.json()["detail"]
    ok = world.client.put(
        f"/api/workers/{wa}/settings", json={"alert_threshold_deg": 25}, headers=world.headers("worker_self")
    )
    assert ok.json()["values"]["alert_threshold_deg"] == 25
    assert ok.json()["pending_devices"] == ["W017"]
    with session_scope(world.engine) as session:
        assert devicesettings.pending_for(session, "W017") == {"alert_threshold_deg": 25}
        devicesettings.mark_applied(session, "W017", 0xDEADBEEF, applied={"alert_threshold_deg": 25})
    with session_scope(world.engine) as session:
        assert devicesettings.pending_for(session, "W017") is None
    device = world.client.get("/api/devices/W017", headers=world.headers("admin")).json()
    assert device["confirmed_config_crc"] == 0xDEADBEEF and device["settings_pending"] is False


def test_settings_changed_during_a_sync_stay_pending(world: World):
    with session_scope(world.engine) as session:
        device = session.scalar(sa.select(Device).where(Device.device_id == "W017"))
        assert device is not None
        devicesettings.queue_for_device(session, device, {"alert_hold_s": 60})
        delivered = devicesettings.pending_for(session, "W017")
        devicesettings.queue_for_device(session, device, {"alert_snooze_s": 600})  # edited meanwhile
        devicesettings.mark_applied(session, "W017", 1, applied=delivered)
        assert devicesettings.pending_for(session, "W017") == {"alert_hold_s": 60, "alert_snooze_s": 600}


def test_an_ergonomist_may_set_anything_within_the_device_range_only(world: World):
    wa = world.ids["wa"]
    h = world.headers("erg_own")
    assert (
        world.client.put(f"/api/workers/{wa}/settings", json={"alert_hold_s": 600}, headers=h).status_code
        == 200
    )
    r = world.client.put(f"/api/workers/{wa}/settings", json={"alert_hold_s": 601}, headers=h)
    assert r.status_code == 422 and "5..600" in r.json()["detail"]


def test_a_device_assigned_later_receives_the_workers_settings(world: World):
    wa, h = world.ids["wa"], world.headers("admin")
    world.client.put(f"/api/workers/{wa}/settings", json={"quiet_start_min": 720}, headers=h)
    world.client.post("/api/devices", json={"device_id": "W200", "key_hex": "11" * 16}, headers=h)
    world.client.put("/api/devices/W200/worker", json={"worker_id": wa}, headers=h)
    with session_scope(world.engine) as session:
        assert devicesettings.pending_for(session, "W200") == {"quiet_start_min": 720}


# ---- rotation (tasks, policies, segments) -------------------------------------------------------


def test_an_ergonomist_defines_tasks_and_a_policy_for_their_team(world: World):
    ta, h = world.ids["ta"], world.headers("erg_own")
    task = world.client.post(
        "/api/tasks", json={"name": "lifting", "load_class": "high", "team_id": ta}, headers=h
    )
    assert task.status_code == 201
    shared = world.client.post("/api/tasks", json={"name": "admin work", "load_class": "low"}, headers=h)
    assert shared.status_code == 403
    policy = {"max_task_min": 90, "max_high_load_min": 60, "min_profile_change_deg": 5.0}
    assert (
        world.client.put(f"/api/teams/{ta}/rotation/policy", json=policy, headers=h).json()["max_task_min"]
        == 90
    )
    bad = world.client.post(
        "/api/tasks", json={"name": "x", "load_class": "extreme", "team_id": ta}, headers=h
    )
    assert bad.status_code == 422 and "load_class" in bad.json()["detail"]


def test_a_worker_logs_task_segments_without_overlaps(world: World):
    wa, ta = world.ids["wa"], world.ids["ta"]
    task = world.client.post(
        "/api/tasks",
        json={"name": "packing", "load_class": "medium", "team_id": ta},
        headers=world.headers("admin"),
    ).json()
    h = world.headers("worker_self")
    seg = {"task_id": task["id"], "start_s": JAN1 + 8 * 3600, "end_s": JAN1 + 9 * 3600}
    assert world.client.post(f"/api/workers/{wa}/segments", json=seg, headers=h).status_code == 201
    overlap = {**seg, "start_s": JAN1 + 8 * 3600 + 1800, "end_s": JAN1 + 10 * 3600}
    assert world.client.post(f"/api/workers/{wa}/segments", json=overlap, headers=h).status_code == 409
    listed = world.client.get(f"/api/workers/{wa}/segments", params={"date": str(DAY)}, headers=h).json()
    assert [(s["start_s"], s["source"]) for s in listed] == [(JAN1 + 8 * 3600, "api")]
    timeline = world.client.get(f"/api/workers/{wa}/days/{DAY}/timeline", headers=h).json()
    assert len(timeline["segments"]) == 1


# ---- malformed and oversized bodies -------------------------------------------------------------


@reads_only
def test_malformed_json_is_a_422_with_a_readable_message(world: World):
    r = world.client.post(
        "/api/workers",
        content=b"{not json",
        headers={**world.headers("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request")


@reads_only
def test_an_oversized_body_is_refused_with_413(world: World):
    r = world.client.post(
        "/api/organisations",
        content=b"x" * (300 * 1024),
        headers={**world.headers("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413


@reads_only
def test_an_oversized_body_without_a_length_is_refused_while_it_streams(world: World):
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 10_000  # ~1 MB in chunks, no Content-Length

    r = world.client.post(
        "/api/organisations",
        content=chunks(),
        headers={**world.headers("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "over" in r.json()["detail"]


@reads_only
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{", 422, "invalid upload"),
        (b'{"device_id": "W017"}', 422, "frames_b64"),
        (b'{"device_id": "W017", "frames_b64": "***"}', 422, "base64"),
        (b'{"device_id": "NOPE", "frames_b64": ""}', 404, "not registered"),
        (json.dumps(upload_body("W017", b"\x00\x00\x00")).encode(), 422, "does not decode"),
        (b'{"device_id": "W017", "frames_b64": "", "batch_mac_b64": "AAAA"}', 403, "HMAC"),
    ],
)
def test_bad_uploads_are_4xx_and_store_nothing(world: World, body: bytes, status: int, words: str):
    before = count(world.engine, Record), count(world.engine, MinuteSummary)
    r = world.client.post(
        "/api/ingest", content=body, headers={**world.headers("agent"), "Content-Type": "application/json"}
    )
    assert r.status_code == status and words in r.json()["detail"]
    assert (count(world.engine, Record), count(world.engine, MinuteSummary)) == before


@reads_only
def test_an_upload_over_the_size_limit_is_413_and_stores_nothing(world: World):
    from companion.api.routes.ingest import MAX_INGEST_BODY_BYTES

    before = count(world.engine, Record)
    huge = b'{"device_id": "W017", "frames_b64": "' + b"A" * MAX_INGEST_BODY_BYTES + b'"}'
    r = world.client.post(
        "/api/ingest", content=huge, headers={**world.headers("agent"), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and count(world.engine, Record) == before


@reads_only
def test_a_conflicting_replay_is_409(world: World):
    altered = frames([(1, protocol.MINUTE, minute_payload(JAN1 + 8 * 3600, 70.0))])
    r = world.client.post("/api/ingest", json=upload_body("W017", altered), headers=world.headers("agent"))
    assert r.status_code == 409


@reads_only
def test_replaying_an_upload_reports_duplicates(world: World):
    body = upload_body("W017", minutes_batch(1, JAN1 + 8 * 3600, 60))
    r = world.client.post("/api/ingest", json=body, headers=world.headers("agent")).json()
    assert r == {"stored": 0, "duplicates": 60, "contiguous_seq": 60}


def test_rotation_compliance_counts_the_minutes_past_the_policy_limit(world: World):
    pytest.importorskip("companion.rotation", reason="companion.rotation is developed separately")
    ta, wa, h = world.ids["ta"], world.ids["wa"], world.headers("erg_own")
    task = world.client.post(
        "/api/tasks", json={"name": "packing", "load_class": "medium", "team_id": ta}, headers=h
    ).json()
    world.client.put(f"/api/teams/{ta}/rotation/policy", json={"max_task_min": 30}, headers=h)
    # Ana packs for the whole hour she wore the device (08:00-09:00): 30 min past the limit.
    seg = {"task_id": task["id"], "start_s": JAN1 + 8 * 3600, "end_s": JAN1 + 9 * 3600}
    world.client.post(f"/api/workers/{wa}/segments", json=seg, headers=h)
    day = world.client.get(f"/api/workers/{wa}/rotation/{DAY}", headers=world.headers("worker_self"))
    assert day.status_code == 200, day.text
    assert day.json()["overdue_min"] == pytest.approx(30)
    assert day.json()["compliant"] is False
    week = world.client.get(f"/api/teams/{ta}/rotation", params={"week": "2026-W01"}, headers=h).json()
    assert week["week"] == "2026-W01"
    assert [d["date"] for d in week["workers"][0]["days"]] == ["2026-01-01"]


@reads_only
def test_a_malformed_week_is_refused(world: World):
    r = world.client.get(
        f"/api/teams/{world.ids['ta']}/rotation", params={"week": "2026-48"}, headers=world.headers("admin")
    )
    assert r.status_code == 422 and "2026-W48" in r.json()["detail"]
