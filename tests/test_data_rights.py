"""A worker's data rights (companion.datarights, docs/security.md "Data rights"): export
everything stored about them, and erase it — every row of theirs, no row of anyone else's.

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import csv
import io
import itertools
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import test_store
from fastapi.testclient import TestClient
from test_api_resources import PASSWORD, World, build_world, form_login, page_form_token, upload_body
from test_ingest import JAN1, frames, minute_payload

import protocol
from companion import datarights
from companion.login_limits import LoginLimits
from companion.store import Base, Device, LoginFailure, Task, User, Worker, session_scope

db_url = test_store.db_url
_seq = itertools.count(1000)


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """The API world, with something of every kind stored for both workers: Ana (wa, W017) and
    Ben (wb, W018) each have minutes, alerts, a task segment, settings, sessions and a failed
    login."""
    w = build_world(db_url, tmp_path)
    for who, device_id, worker in (("worker_self", "W017", "wa"), ("worker_other", "W018", "wb")):
        upload(
            w, device_id, [minute(JAN1 + 9 * 3600 + 60 * i) for i in range(5)] + [alert(JAN1 + 9 * 3600 + 90)]
        )
        h = w.headers(who)
        r = w.client.put(f"/api/workers/{w.ids[worker]}/settings", json={"alert_hold_s": 45}, headers=h)
        assert r.status_code == 200, r.text
        with session_scope(w.engine) as session:
            task = Task(name=f"sorting for {worker}", load_class="high", team_id=None)
            session.add(task)
            session.flush()
            task_id = task.id
            LoginLimits().record_failure(session, w.emails[who], "198.51.100.1")
        segment = {"task_id": task_id, "start_s": JAN1 + 9 * 3600, "end_s": JAN1 + 10 * 3600}
        assert (
            w.client.post(f"/api/workers/{w.ids[worker]}/segments", json=segment, headers=h).status_code
            == 201
        )
        w.fresh_token(who)  # a second session
    yield w
    w.client.close()
    w.engine.dispose()


def minute(start_s: int) -> tuple[int, bytes]:
    return protocol.MINUTE, minute_payload(start_s, 35.0)


def alert(start_s: int) -> tuple[int, bytes]:
    fields = {
        "start_s": start_s,
        "duration_s": 40,
        "peak_flexion_ddeg": 350,
        "time_to_correct_s": 12,
        "escalation_level": 0,
        "outcome": protocol.OUTCOMES.index("corrected"),
    }
    return protocol.ALERT, protocol.encode_payload(protocol.ALERT, fields)


def upload(world: World, device_id: str, records: list[tuple[int, bytes]]) -> None:
    data = frames([(next(_seq), rtype, payload) for rtype, payload in records])
    body = upload_body(device_id, data)
    r = world.client.post("/api/ingest", json=body, headers=world.headers("agent"))
    assert r.status_code == 200, r.text


def frozen(row: Any) -> tuple[Any, ...]:
    """A row as a set member (JSON columns as their canonical text)."""
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in row)


def every_row(world: World) -> dict[str, set[tuple[Any, ...]]]:
    """Each table's rows, every column."""
    with world.engine.connect() as connection:
        return {
            table.name: {frozen(row) for row in connection.execute(sa.select(table))}
            for table in Base.metadata.sorted_tables
        }


def rows_of(world: World, worker: str) -> dict[str, set[tuple[Any, ...]]]:
    """The rows companion.datarights counts as the worker's, table by table."""
    with session_scope(world.engine) as session:
        where = datarights.worker_rows(session, world.ids[worker])
    with world.engine.connect() as connection:
        return {
            name: {
                frozen(row)
                for row in connection.execute(sa.select(datarights._TABLES[name]).where(condition))
            }
            for name, condition in where.items()
        }


def count_by_table(rows: dict[str, set[tuple[Any, ...]]]) -> dict[str, int]:
    return {name: len(found) for name, found in rows.items()}


# ---- erasure -------------------------------------------------------------------------------------


def test_erasing_a_worker_deletes_every_row_of_theirs_and_no_other_row(world: World):
    anas = rows_of(world, "wa")
    # Ana has something in every table the erasure covers (team memberships are ergonomists').
    assert [name for name, n in count_by_table(anas).items() if not n] == ["team_members"]
    before = every_row(world)
    bens_before = count_by_table(rows_of(world, "wb"))

    r = world.client.delete(f"/api/workers/{world.ids['wa']}", headers=world.headers("worker_self"))

    assert r.status_code == 200, r.text
    after = every_row(world)
    assert r.json()["deleted"] == {**count_by_table(anas), "device_settings": 1}
    assert r.json()["devices_revoked"] == ["W017"]
    for table in before:
        gone = before[table] - after[table]
        if table == "devices":
            assert {row[1] for row in gone} == {"W017"}  # changed (below), not deleted
        elif table == "device_settings":
            assert len(gone) == 1 and not after[table] - before[table]
        else:
            assert gone == anas.get(table, set()), table  # exactly Ana's rows went...
            assert after[table] <= before[table], table  # ...and nothing new appeared
    # Ben's rows are all there, every column as it was.
    assert count_by_table(rows_of(world, "wb")) == bens_before
    assert rows_of(world, "wa") == {name: set() for name in anas}


def test_the_erased_workers_device_is_unassigned_revoked_and_refuses_their_next_upload(world: World):
    assert (
        world.client.delete(f"/api/workers/{world.ids['wa']}", headers=world.headers("admin")).status_code
        == 200
    )
    device = world.client.get("/api/devices/W017", headers=world.headers("admin")).json()
    assert device["worker_id"] is None and device["revoked"] is True and device["has_key"] is False
    assert device["settings_pending"] is False
    data = frames([(next(_seq), *minute(JAN1 + 11 * 3600))])
    body = upload_body("W017", data)
    refused = world.client.post("/api/ingest", json=body, headers=world.headers("agent"))
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
    # The organisation gives the device a new key and a new wearer.
    admin = world.headers("admin")
    assert (
        world.client.put("/api/devices/W017/key", json={"key_hex": "cd" * 32}, headers=admin).status_code
        == 200
    )
    r = world.client.put("/api/devices/W017/worker", json={"worker_id": world.ids["wb"]}, headers=admin)
    assert r.status_code == 200 and r.json()["worker_id"] == world.ids["wb"]


def test_the_erased_workers_sessions_and_password_stop_working_at_once(world: World):
    token = world.tokens["worker_self"]
    assert (
        world.client.delete(f"/api/workers/{world.ids['wa']}", headers=world.headers("admin")).status_code
        == 200
    )
    assert world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    login = world.client.post("/api/auth/login", json={"email": "ana@acme.test", "password": PASSWORD})
    assert login.status_code == 401
    assert (
        world.client.get(f"/api/workers/{world.ids['wa']}", headers=world.headers("admin")).status_code == 404
    )


def test_only_the_worker_themself_or_an_admin_may_export_or_erase(world: World):
    before = every_row(world)
    for caller, expected in (
        ("worker_other", 403),
        ("erg_own", 403),
        ("erg_other", 403),
        ("anonymous", 401),
        ("agent", 401),
    ):
        h = world.headers(caller)
        export = world.client.get(f"/api/workers/{world.ids['wa']}/export", headers=h)
        erase = world.client.delete(f"/api/workers/{world.ids['wa']}", headers=h)
        assert export.status_code == erase.status_code == expected, caller
    assert every_row(world) == before


def test_erasing_an_unknown_worker_is_a_404(world: World):
    assert world.client.delete("/api/workers/9999", headers=world.headers("admin")).status_code == 404


def test_every_table_that_refers_to_a_worker_or_a_login_is_covered():
    # A new table holding a worker's or a login's rows must be added to datarights.worker_rows.
    covered = set(datarights._TABLES) | {"devices", "device_settings"}  # devices: kept, unassigned
    referring = {
        table.name
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name in ("workers", "users")
    }
    assert referring <= covered, referring - covered


# ---- export ----------------------------------------------------------------------------------------


def test_a_worker_exports_everything_stored_about_them_and_nothing_about_anyone_else(world: World):
    r = world.client.get(f"/api/workers/{world.ids['wa']}/export", headers=world.headers("worker_self"))
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")
    doc = r.json()
    counts = count_by_table(rows_of(world, "wa"))
    assert doc["format"] == "posture-worker-export/1"
    assert doc["worker"] == {
        "id": world.ids["wa"],
        "name": "Ana",
        "team_id": world.ids["ta"],
        "team": "packing",
        "timezone": "UTC",
    }
    assert [login["email"] for login in doc["logins"]] == ["ana@acme.test"]
    assert len(doc["sessions"]) == counts["api_tokens"]
    assert doc["devices"] == {
        "assigned": [
            {
                "device_id": "W017",
                "last_sync": doc["devices"]["assigned"][0]["last_sync"],
                "battery_percent": None,
                "revoked": False,
            }
        ],
        "recorded_on": ["W017"],
    }
    assert doc["settings"]["values"] == {"alert_hold_s": 45}
    assert len(doc["minute_summaries"]) == counts["minute_summaries"] == 65  # the world's hour + 5
    assert len(doc["events"]) == counts["events"] == 1 and doc["events"][0]["type"] == "alert"
    assert len(doc["records"]) == counts["records"] == 66
    assert len(doc["daily_exposure"]) == counts["daily_exposure"] == 1
    assert [s["task"] for s in doc["task_segments"]] == ["sorting for wa"]
    text = r.text
    assert "Ben" not in text and "ben@acme.test" not in text and "W018" not in text
    assert "scrypt$" not in text and bytes(range(32)).hex() not in text  # no password hash, no key


def test_a_minute_in_the_export_reads_as_the_histograms_the_device_sent(world: World):
    doc = world.client.get(
        f"/api/workers/{world.ids['wa']}/export", headers=world.headers("worker_self")
    ).json()
    last = doc["minute_summaries"][-1]
    decoded = protocol.decode_payload(protocol.MINUTE, minute(JAN1 + 9 * 3600 + 240)[1])
    assert last["start_s"] == decoded["start_s"] and last["flexion_bins_s"] == list(decoded["flexion_bins_s"])
    record = next(r for r in doc["records"] if r["seq"] == last["seq"])
    assert (
        protocol.decode_payload(record["rtype"], bytes.fromhex(record["payload_hex"]))["start_s"]
        == last["start_s"]
    )


def test_the_zip_export_has_a_profile_and_a_csv_per_kind_of_row(world: World):
    r = world.client.get(f"/api/workers/{world.ids['wa']}/export?format=zip", headers=world.headers("admin"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(archive.namelist()) == sorted(
        [
            "profile.json",
            "daily_exposure.csv",
            "task_segments.csv",
            "minute_summaries.csv",
            "events.csv",
            "records.csv",
        ]
    )
    profile = json.loads(archive.read("profile.json"))
    assert profile["worker"]["name"] == "Ana" and profile["settings"]["values"] == {"alert_hold_s": 45}

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(archive.read(name).decode())))

    minutes = rows("minute_summaries.csv")
    assert len(minutes) == 65 and len(minutes[0]["flexion_bins_s"].split()) == protocol.ANGLE_BINS
    assert len(rows("records.csv")) == 66 and len(rows("events.csv")) == 1
    days = rows("daily_exposure.csv")
    assert len(days) == 1 and "flexion.time_above_s.20" in days[0]


def test_a_worker_without_data_exports_empty_lists(world: World):
    with session_scope(world.engine) as session:
        newcomer = Worker(name="Nia", team_id=world.ids["ta"])
        session.add(newcomer)
        session.flush()
        newcomer_id = newcomer.id
    doc = world.client.get(f"/api/workers/{newcomer_id}/export", headers=world.headers("admin")).json()
    assert doc["minute_summaries"] == doc["records"] == doc["logins"] == [] and doc["settings"] is None


# ---- on the wearer's settings page -------------------------------------------------------------------


def browser_of(world: World, who: str) -> TestClient:
    browser = TestClient(world.client.app)
    assert form_login(browser, world.emails[who], PASSWORD).status_code == 303
    return browser


def test_a_wearer_downloads_their_data_from_their_settings_page(world: World):
    browser = browser_of(world, "worker_self")
    page = browser.get("/me/settings").text
    link = page.split('id="export" href="')[1].split('"')[0]
    assert link == f"/api/workers/{world.ids['wa']}/export?format=zip"
    r = browser.get(link)  # the session cookie is enough
    assert r.status_code == 200 and "profile.json" in zipfile.ZipFile(io.BytesIO(r.content)).namelist()


def test_a_wearer_deletes_their_data_from_their_settings_page_after_confirming(world: World):
    browser = browser_of(world, "worker_self")
    page = browser.get("/me/settings").text
    form = page[page.index('action="/me/delete"') :]
    token = page_form_token(form)
    before = every_row(world)
    unconfirmed = browser.post(
        "/me/delete", data={"csrf_token": token, "confirm": "yes"}, follow_redirects=False
    )
    forged = browser.post("/me/delete", data={"confirm": "delete everything"}, follow_redirects=False)
    assert unconfirmed.status_code == forged.status_code == 403
    assert every_row(world) == before
    done = browser.post(
        "/me/delete", data={"csrf_token": token, "confirm": "Delete everything"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/login?deleted=1"
    assert rows_of(world, "wa")["minute_summaries"] == set()
    assert "Your data has been deleted" in browser.get("/login?deleted=1").text
    with session_scope(world.engine) as session:
        assert session.scalar(sa.select(User.id).where(User.email == "ana@acme.test")) is None
        assert session.scalar(sa.select(Device.revoked_at).where(Device.device_id == "W017")) is not None


def test_ergonomists_and_admins_cannot_delete_through_the_wearers_form(world: World):
    for who in ("erg_own", "admin"):
        browser = browser_of(world, who)
        token = page_form_token(browser.get("/teams").text)  # their sign-out form's token
        before = every_row(world)
        r = browser.post("/me/delete", data={"csrf_token": token, "confirm": "delete everything"})
        assert r.status_code == 403 and every_row(world) == before, who


def test_the_failed_logins_counted_for_the_erased_login_go_with_it(world: World):
    r = world.client.delete(f"/api/workers/{world.ids['wa']}", headers=world.headers("admin"))
    assert r.json()["deleted"]["login_failures"] == 1 and r.json()["deleted"]["users"] == 1
    with session_scope(world.engine) as session:  # Ben's is still counted
        assert session.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 1
