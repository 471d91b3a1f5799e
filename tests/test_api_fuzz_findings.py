"""What fuzzing the API found (tests/test_api_schemathesis.py, docs/security.md "Fuzzing"), one
regression test each.  The world is tests/test_api_resources.py's; runs on SQLite, and on
PostgreSQL when POSTURE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import test_api_resources
from databases import BACKENDS, database_url
from test_api_resources import World

from companion.api.schemas import ErrorOut, ValidationErrorOut
from companion.store import Base


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One world per database for the module: these tests change nothing another one reads
    # (the refusals store nothing; the one accepted PUT sets a policy no other test looks at).
    tmp = tmp_path_factory.mktemp("findings")
    with database_url(request.param, tmp) as url:
        w = test_api_resources.build_world(url, tmp)
        yield w
        w.client.close()
        w.engine.dispose()


PAST_SQLITE = 2**64  # past SQLite's 64-bit integers: the driver raised OverflowError (a 500)
PAST_POSTGRES = 2**31  # past PostgreSQL's INTEGER ids: the driver raised an out-of-range error


def table_rows(world: World) -> dict[str, int]:
    with world.engine.connect() as connection:
        return {
            table.name: int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


ID_PATHS = [
    ("GET", "/api/workers/{huge}"),
    ("GET", "/api/workers/{huge}/days"),
    ("GET", "/api/workers/{huge}/days/2026-01-01/timeline"),
    ("GET", "/api/workers/{huge}/settings"),
    ("PUT", "/api/workers/{huge}/settings"),
    ("GET", "/api/teams/{huge}/summary"),
    ("GET", "/api/teams/{huge}/rotation/policy"),
    ("DELETE", "/api/tasks/{huge}"),
    ("DELETE", "/api/workers/{wa}/segments/{huge}"),
]


def test_an_id_outside_the_databases_integers_is_a_422_not_a_server_error(world: World):
    for method, path in ID_PATHS:
        for huge in (PAST_SQLITE, PAST_POSTGRES, 0):
            url = path.format(huge=huge, wa=world.ids["wa"])
            body: dict[str, int] | None = {} if method == "PUT" else None
            answer = world.client.request(method, url, json=body, headers=world.headers("admin"))
            assert answer.status_code == 422, (method, url, answer.text)
            assert huge == 0 or "less than or equal to 2147483647" in answer.json()["detail"]


ID_BODIES = [
    ("/api/teams", {"organisation_id": PAST_SQLITE, "name": "night shift"}),
    ("/api/workers", {"name": "Eve", "team_id": PAST_POSTGRES}),
    (
        "/api/users",
        {"email": "x@acme.test", "password": "long enough", "role": "ergonomist", "team_ids": [PAST_SQLITE]},
    ),
    ("/api/tasks", {"name": "lifting", "load_class": "high", "team_id": PAST_SQLITE}),
    ("/api/workers/{wa}/segments", {"task_id": 1, "start_s": PAST_SQLITE, "end_s": PAST_SQLITE + 60}),
]


def test_an_id_or_time_too_large_for_its_column_in_a_body_is_a_422_and_stores_nothing(world: World):
    before = table_rows(world)
    for path, body in ID_BODIES:
        answer = world.client.post(path.format(wa=world.ids["wa"]), json=body, headers=world.headers("admin"))
        assert answer.status_code == 422, (path, answer.text)
    assert table_rows(world) == before


def test_times_in_answers_carry_their_utc_offset(world: World):
    """SQLite hands stored times back without their offset; the schema's date-time needs one."""
    device = world.client.get("/api/devices/W017", headers=world.headers("admin")).json()
    day = world.client.get(f"/api/workers/{world.ids['wa']}/days/2026-01-01", headers=world.headers("admin"))
    login = world.client.post(
        "/api/auth/login", json={"email": world.emails["admin"], "password": test_api_resources.PASSWORD}
    )
    for moment in (device["last_sync"], day.json()["computed_at"], login.json()["expires_at"]):
        assert dt.datetime.fromisoformat(moment).utcoffset() == dt.timedelta(0), moment


def test_error_answers_have_the_documented_shapes(world: World):
    admin = world.headers("admin")
    invalid = world.client.post("/api/organisations", json={}, headers=admin)
    assert invalid.status_code == 422
    ValidationErrorOut.model_validate(invalid.json(), strict=True)
    refused = world.client.post("/api/devices", json={"device_id": "X1", "key_hex": "zz"}, headers=admin)
    assert refused.status_code == 422
    ValidationErrorOut.model_validate(refused.json(), strict=True)
    missing = world.client.get("/api/workers/4242", headers=admin)
    assert missing.status_code == 404
    ErrorOut.model_validate(missing.json(), strict=True)


def test_every_api_operation_documents_its_error_answers(world: World):
    schema = world.client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            answers = operation["responses"]
            for code in ("401", "403", "404", "409", "413"):
                assert answers[code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"
                }, (method, path, code)
            assert answers["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ValidationErrorOut"
            }, (method, path)


def test_the_login_form_documents_its_redirect(world: World):
    answers = world.client.get("/openapi.json").json()["paths"]["/login"]["post"]["responses"]
    assert "303" in answers and "200" not in answers


def test_a_405_lists_every_method_the_path_takes(world: World):
    for method, path, allow in [
        ("OPTIONS", "/api/organisations", "GET, POST"),
        ("PATCH", "/api/tasks/1", "PUT, DELETE"),
        ("DELETE", "/api/workers/1/settings", "GET, PUT"),
        ("GET", "/api/ingest", "POST"),
    ]:
        answer = world.client.request(method, path, headers=world.headers("admin"))
        assert answer.status_code == 405
        assert answer.headers["allow"] == allow, (method, path)


def test_a_body_value_of_another_json_type_is_refused_not_converted(world: World):
    before = table_rows(world)
    for path, body in [
        ("/api/workers/{wa}/settings", {"quiet_end_min": False}),
        ("/api/workers/{wa}/settings", {"alert_threshold_deg": "25"}),
        ("/api/workers/{wa}/settings/limits", {"quiet_end_min": {"lo": 0, "hi": False}}),
        ("/api/teams/{ta}/rotation/policy", {"min_profile_change_deg": False}),
    ]:
        url = path.format(wa=world.ids["wa"], ta=world.ids["ta"])
        answer = world.client.put(url, json=body, headers=world.headers("admin"))
        assert answer.status_code == 422, (url, body, answer.text)
    assert table_rows(world) == before


def test_a_whole_number_is_still_taken_for_a_decimal_field(world: World):
    url = f"/api/teams/{world.ids['ta']}/rotation/policy"
    answer = world.client.put(url, json={"min_profile_change_deg": 5}, headers=world.headers("admin"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["min_profile_change_deg"] == 5.0


def test_a_day_is_written_yyyy_mm_dd_not_as_unix_seconds(world: World):
    for path in [
        "/api/workers/{wa}/days?to=0",
        "/api/workers/{wa}/days?from=1767225600",
        "/api/workers/{wa}/days/0",
        "/api/workers/{wa}/days/0/timeline",
        "/api/workers/{wa}/segments?date=0",
        "/api/workers/{wa}/rotation/0",
        "/api/teams/{ta}/summary?to=20260101",
    ]:
        url = path.format(wa=world.ids["wa"], ta=world.ids["ta"])
        answer = world.client.get(url, headers=world.headers("admin"))
        assert answer.status_code == 422, (url, answer.text)
        assert "YYYY-MM-DD" in answer.json()["detail"]


def test_a_day_written_yyyy_mm_dd_still_answers(world: World):
    wa = world.ids["wa"]
    for path in (
        f"/api/workers/{wa}/days?from=2026-01-01&to=2026-01-02",
        f"/api/workers/{wa}/segments?date=2026-01-01",
    ):
        assert world.client.get(path, headers=world.headers("admin")).status_code == 200
