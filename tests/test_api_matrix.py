"""Authorisation matrix of the JSON API: every endpoint × every kind of caller → status.

Callers: worker_self (the worker the request is about), worker_other (another team's worker),
erg_own (ergonomist of the target's team), erg_other (ergonomist of another team), admin,
anonymous (no credentials), agent (a sync agent's upload token).  The target is always worker
wa / team A / device W017 of the world in tests/test_api_resources.py.

test_every_api_route_is_in_the_matrix fails when a route is added without a row here.

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (tests/databases.py)."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import BACKENDS, database_url
from fastapi.routing import APIRoute
from test_api_resources import DAY, PASSWORD, World, build_world, page_form_token, upload_body
from test_ingest import JAN1

from companion import auth
from companion.store import AgentToken, ApiToken, Device, Task, TaskSegment, User, Worker, session_scope

CALLERS = ("worker_self", "worker_other", "erg_own", "erg_other", "admin", "anonymous", "agent")
ROTATION_PRESENT = importlib.util.find_spec("companion.rotation") is not None
_unique = itertools.count(1)


def expect(
    worker_self: int,
    worker_other: int,
    erg_own: int,
    erg_other: int,
    admin: int,
    anonymous: int = 401,
    agent: int = 401,
) -> dict[str, int]:
    return dict(
        zip(CALLERS, (worker_self, worker_other, erg_own, erg_other, admin, anonymous, agent), strict=True)
    )


# Common shapes of the matrix.
ADMIN_ONLY = expect(403, 403, 403, 403, 200)
ADMIN_CREATES = expect(403, 403, 403, 403, 201)
MANAGERS = expect(403, 403, 200, 200, 200)
ANY_USER = expect(200, 200, 200, 200, 200)
WORKER_READ = expect(200, 403, 200, 403, 200)
WORKER_MANAGE = expect(403, 403, 200, 403, 200)
TEAM_READ = expect(403, 403, 200, 403, 200)
TEAM_MANAGE = expect(403, 403, 200, 403, 200)
ROTATION = 200 if ROTATION_PRESENT else 503  # compliance needs companion.rotation


def rotation_read(base: dict[str, int]) -> dict[str, int]:
    return {k: (ROTATION if v == 200 else v) for k, v in base.items()}


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # formatted with the world's ids and the setup's values
    expected: dict[str, int]
    body: Callable[[World], Any] | None = None
    form: bool = False
    setup: Callable[[World], dict[str, Any]] | None = None  # fresh resources per case
    fresh_token: bool = False  # the call ends the caller's session: use a throwaway token


def n() -> int:
    return next(_unique)


def new_task(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        task = Task(name=f"task {n()}", load_class="low", team_id=w.ids["ta"])
        s.add(task)
        s.flush()
        return {"task": task.id}


def new_segment(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        task = Task(name=f"task {n()}", load_class="low", team_id=w.ids["ta"])
        s.add(task)
        s.flush()
        start = JAN1 + 20 * 3600 + 60 * n()
        seg = TaskSegment(
            worker_id=w.ids["wa"], task_id=task.id, start_s=start, end_s=start + 30, source="api"
        )
        s.add(seg)
        s.flush()
        return {"segment": seg.id}


def new_device(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        device = Device(device_id=f"X{n()}", key=b"k" * 32, worker_id=w.ids["wa"])
        s.add(device)
        return {"device": device.device_id}


SIGN_IN_FORM: dict[str, str] = {}


def open_the_sign_in_page(w: World) -> dict[str, Any]:
    """As a browser does before it signs in: the page's cookie (kept by the client) and token."""
    SIGN_IN_FORM["token"] = page_form_token(w.client.get("/login").text)
    return {}


def new_session_of_ana(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        ana = s.scalar(sa.select(User).where(User.email == w.emails["worker_self"]))
        assert ana is not None
        token = auth.issue_token(s, ana)
        return {
            "session": s.scalar(sa.select(ApiToken.id).where(ApiToken.token_hash == auth.token_hash(token)))
        }


def new_user(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        user = auth.create_user(s, f"u{n()}@acme.test", PASSWORD, "ergonomist")
        auth.issue_token(s, user)
        return {"user": user.id}


def new_worker(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        worker = Worker(name=f"W{n()}", team_id=w.ids["ta"])
        s.add(worker)
        s.flush()
        return {"worker": worker.id}


def new_agent(w: World) -> dict[str, Any]:
    with session_scope(w.engine) as s:
        token = auth.issue_agent_token(s, f"agent {n()}")
        return {
            "agent": s.scalar(sa.select(AgentToken.id).where(AgentToken.token_hash == auth.token_hash(token)))
        }


def segment_body(w: World) -> dict[str, Any]:
    start = JAN1 + 30 * 3600 + 60 * n()  # a free minute every time
    return {"task_id": w.ids["_task"], "start_s": start, "end_s": start + 30}


def task_of_team_a(w: World) -> dict[str, Any]:
    return new_task(w)


MATRIX: list[Row] = [
    # auth
    Row(
        "POST",
        "/api/auth/login",
        expect(200, 200, 200, 200, 200, 200, 200),
        body=lambda w: {"email": "ana@acme.test", "password": PASSWORD},
    ),
    Row("POST", "/api/auth/logout", expect(204, 204, 204, 204, 204), fresh_token=True),
    Row("GET", "/api/me", ANY_USER),
    Row("POST", "/api/auth/rotate", ANY_USER, fresh_token=True),
    Row("GET", "/api/auth/sessions", ANY_USER),
    Row("DELETE", "/api/auth/sessions/{session}", expect(204, 404, 404, 404, 404), setup=new_session_of_ana),
    Row("DELETE", "/api/auth/sessions", expect(204, 204, 204, 204, 204), fresh_token=True),
    Row(
        "POST",
        "/login",
        expect(303, 303, 303, 303, 303, 303, 303),
        form=True,
        setup=open_the_sign_in_page,
        body=lambda w: {"email": "ana@acme.test", "password": PASSWORD, "csrf_token": SIGN_IN_FORM["token"]},
    ),
    Row("POST", "/logout", expect(303, 303, 303, 303, 303, 303, 303)),
    Row("GET", "/health", expect(200, 200, 200, 200, 200, 200, 200)),
    # organisations, teams, users
    Row("GET", "/api/organisations", ADMIN_ONLY),
    Row("POST", "/api/organisations", ADMIN_CREATES, body=lambda w: {"name": f"Org {n()}"}),
    Row("GET", "/api/teams", MANAGERS),
    Row(
        "POST",
        "/api/teams",
        ADMIN_CREATES,
        body=lambda w: {"organisation_id": w.ids["org"], "name": f"T{n()}"},
    ),
    Row("GET", "/api/users", ADMIN_ONLY),
    Row(
        "POST",
        "/api/users",
        ADMIN_CREATES,
        body=lambda w: {"email": f"u{n()}@acme.test", "password": PASSWORD, "role": "ergonomist"},
    ),
    Row("DELETE", "/api/users/{user}/sessions", expect(403, 403, 403, 403, 204), setup=new_user),
    # sync agents' tokens
    Row("GET", "/api/agents", ADMIN_ONLY),
    Row("POST", "/api/agents", ADMIN_CREATES, body=lambda w: {"name": f"agent {n()}"}),
    Row("POST", "/api/agents/{agent}/rotate", ADMIN_ONLY, setup=new_agent),
    Row("POST", "/api/agents/{agent}/revoke", ADMIN_ONLY, setup=new_agent),
    # workers
    Row("GET", "/api/workers", ANY_USER),
    Row("POST", "/api/workers", ADMIN_CREATES, body=lambda w: {"name": f"W{n()}", "team_id": w.ids["ta"]}),
    Row("GET", "/api/workers/{wa}", WORKER_READ),
    # data rights: the worker themself and admins (tests/test_data_rights.py erases a worker as
    # themself; here the erased one is a throwaway, so worker_self is not the worker it is about)
    Row("GET", "/api/workers/{wa}/export", expect(200, 403, 403, 403, 200)),
    Row("DELETE", "/api/workers/{worker}", expect(403, 403, 403, 403, 200), setup=new_worker),
    # devices
    Row("GET", "/api/devices", MANAGERS),
    Row("GET", "/api/devices/W017", TEAM_READ),
    Row("POST", "/api/devices", ADMIN_CREATES, body=lambda w: {"device_id": f"D{n()}", "key_hex": "aa" * 16}),
    Row(
        "PUT",
        "/api/devices/{device}/worker",
        ADMIN_ONLY,
        setup=new_device,
        body=lambda w: {"worker_id": w.ids["wa"]},
    ),
    Row(
        "PUT",
        "/api/devices/{device}/key",
        ADMIN_ONLY,
        setup=new_device,
        body=lambda w: {"key_hex": "bb" * 32},
    ),
    Row("POST", "/api/devices/{device}/revoke", ADMIN_ONLY, setup=new_device),
    # exposure
    Row("GET", "/api/workers/{wa}/days?from=2026-01-01&to=2026-01-02", WORKER_READ),
    Row("GET", "/api/workers/{wa}/days.csv?from=2026-01-01&to=2026-01-02", WORKER_READ),
    Row("GET", "/api/workers/{wa}/days/" + str(DAY), WORKER_READ),
    Row("GET", "/api/workers/{wa}/days/" + str(DAY) + "/timeline", WORKER_READ),
    Row("GET", "/api/teams/{ta}/summary?from=2026-01-01&to=2026-01-02", TEAM_READ),
    Row("GET", "/api/teams/{ta}/summary.csv?from=2026-01-01&to=2026-01-02", TEAM_READ),
    # worker settings
    Row("GET", "/api/workers/{wa}/settings", WORKER_READ),
    Row("PUT", "/api/workers/{wa}/settings", WORKER_READ, body=lambda w: {"alert_threshold_deg": 25}),
    Row(
        "PUT",
        "/api/workers/{wa}/settings/limits",
        WORKER_MANAGE,
        body=lambda w: {"alert_threshold_deg": {"lo": 10, "hi": 40}},
    ),
    # rotation
    Row("GET", "/api/tasks", ANY_USER),
    Row(
        "POST",
        "/api/tasks",
        expect(403, 403, 201, 403, 201),
        body=lambda w: {"name": f"task {n()}", "load_class": "medium", "team_id": w.ids["ta"]},
    ),
    Row(
        "PUT",
        "/api/tasks/{task}",
        TEAM_MANAGE,
        setup=task_of_team_a,
        body=lambda w: {"name": f"task {n()}", "load_class": "high", "team_id": w.ids["ta"]},
    ),
    Row("DELETE", "/api/tasks/{task}", expect(403, 403, 204, 403, 204), setup=new_task),
    Row("GET", "/api/teams/{ta}/rotation/policy", TEAM_READ),
    Row("PUT", "/api/teams/{ta}/rotation/policy", TEAM_MANAGE, body=lambda w: {"max_task_min": 90}),
    Row("GET", "/api/workers/{wa}/segments?date=" + str(DAY), WORKER_READ),
    Row(
        "POST",
        "/api/workers/{wa}/segments",
        expect(201, 403, 201, 403, 201),
        setup=new_task,
        body=segment_body,
    ),
    Row("DELETE", "/api/workers/{wa}/segments/{segment}", expect(204, 403, 204, 403, 204), setup=new_segment),
    Row("GET", "/api/workers/{wa}/rotation/" + str(DAY), rotation_read(WORKER_READ)),
    Row("GET", "/api/teams/{ta}/rotation?week=2026-W01", rotation_read(TEAM_READ)),
    # uploads
    Row(
        "POST",
        "/api/ingest",
        expect(403, 403, 403, 403, 403, 401, 200),
        body=lambda w: upload_body("W017", b""),
    ),
]

# The API's own routes (a dashboard mounted beside it tests its pages itself).
_OWN_NON_API = {("POST", "/login"), ("POST", "/logout"), ("GET", "/health")}


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One world per database for the whole matrix (building one takes a few seconds): rows that
    # change things create what they change (setup) or use unique names, so cases stay independent.
    tmp: Path = tmp_path_factory.mktemp("matrix")
    with database_url(request.param, tmp) as url:
        w = build_world(url, tmp)
        yield w
        w.client.close()
        w.engine.dispose()


def _cases() -> list[Any]:
    return [
        pytest.param(row, caller, id=f"{row.method} {row.path.split('?')[0]} as {caller}")
        for row in MATRIX
        for caller in CALLERS
    ]


@pytest.mark.parametrize(("row", "caller"), _cases())
def test_authorisation(world: World, row: Row, caller: str):
    values: dict[str, Any] = dict(world.ids)
    if row.setup is not None:
        made = row.setup(world)
        values.update(made)
        world.ids["_task"] = made.get("task", 0)
    path = row.path.format(**values)
    headers: dict[str, str] = {}
    if caller != "anonymous":
        token = world.fresh_token(caller) if row.fresh_token and caller != "agent" else world.tokens[caller]
        headers["Authorization"] = f"Bearer {token}"
    body = row.body(world) if row.body is not None else None
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if body is not None:
        kwargs["data" if row.form else "json"] = body
    response = world.client.request(row.method, path, **kwargs)
    world.client.cookies.clear()  # the form login sets a cookie: keep callers apart
    revive_tokens(world)
    assert response.status_code == row.expected[caller], response.text


def revive_tokens(world: World) -> None:
    """A row may end every session of its caller (DELETE /api/auth/sessions): the next rows
    get a working token again."""
    for who in world.emails:
        with session_scope(world.engine) as s:
            alive = auth.user_for_token(s, world.tokens[who]) is not None
        if not alive:
            world.tokens[who] = world.fresh_token(who)


def test_every_api_route_is_in_the_matrix(world: World):
    app = world.client.app
    routes = {
        (method, route.path)
        for route in app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in route.methods or ()
        if route.path.startswith("/api/") or (method, route.path) in _OWN_NON_API
    }
    covered = set()
    for row in MATRIX:
        template = row.path.split("?")[0]
        for route_method, route_path in routes:
            if route_method == row.method and _matches(route_path, template):
                covered.add((route_method, route_path))
    missing = sorted(routes - covered)
    assert not missing, f"routes without a row in the authorisation matrix: {missing}"


def _matches(route_path: str, row_path: str) -> bool:
    """Whether a route ("/api/workers/{worker_id}") is what a row's path ("/api/workers/{wa}",
    "/api/devices/W017") calls: same segments, a route parameter matching anything."""
    a, b = route_path.strip("/").split("/"), row_path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def test_agent_tokens_cannot_read_anything(world: World):
    # The agent column above says 401 for every read; spelled out once for the record.
    r = world.client.get("/api/workers", headers={"Authorization": f"Bearer {world.tokens['agent']}"})
    assert r.status_code == 401


def test_the_matrix_world_has_what_the_rows_assume(world: World):
    with session_scope(world.engine) as s:
        assert s.scalar(sa.select(Device.worker_id).where(Device.device_id == "W017")) == world.ids["wa"]
