"""Schemathesis against the companion's own OpenAPI schema: every operation, in-process (ASGI,
no network), with a valid admin token and with a worker's token (uploads with an agent token).

For each generated request (schema-valid ones and, in the negative mode, schema-invalid ones):

- no 5xx (``not_a_server_error``) and no exception out of the app;
- the answer conforms to the schema: its status code is documented, its body matches the
  documented model, its content type too (``response_schema_conformance`` and the rest of
  schemathesis' default checks);
- a request the app refuses (4xx) changes nothing: every table holds the same rows before and
  after (docs/api.md: "A rejected request changes nothing").

Left out: ``unsupported_method`` and ``allow_header_conformance`` on /login (GET /login is the
dashboard's page, not in the schema), and ``positive_data_acceptance`` (a schema-valid request
must succeed).  What the schema cannot say is checked by the app: the ids must exist, the time
zone must be an IANA one, the key must be hex, the frames must be records of docs/protocol.md;
those are 404/409/422 answers with a sentence, not findings.  The world is
tests/test_api_resources.py's, on SQLite and, when
POSTURE_TEST_POSTGRES_URL is set, on PostgreSQL (tests/databases.py; there as the admin only,
without schemathesis' coverage phase).  What the runs found: tests/test_api_fuzz_findings.py.

``POSTURE_SCHEMATHESIS_EXAMPLES`` raises the number of requests per operation and caller for a
longer run (docs/security.md "Fuzzing")."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from databases import BACKENDS, database_url
from db_rows import database_rows
from hypothesis import HealthCheck, settings
from schemathesis.checks import allow_header_conformance, positive_data_acceptance, unsupported_method
from test_api_resources import World, build_world

from companion import auth
from companion.api.app import create_app
from companion.settings import Settings
from companion.store import Worker, session_scope

EXAMPLES = int(os.environ.get("POSTURE_SCHEMATHESIS_EXAMPLES", "10"))
# Ending a session needs a token of its own, or every later request of the run would be a 401.
LOGOUT = ("/api/auth/logout", "/api/auth/rotate", "/api/auth/sessions")
# GET /login is the dashboard's login page, outside the JSON API's schema: the methods schemathesis
# expects a 405 (and an Allow header without GET) for are right to be answered there.
DASHBOARD_PAGES = ("/login",)


@pytest.fixture(scope="module", params=BACKENDS)
def api_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    with database_url(request.param, tmp) as url:
        world = build_world(url, tmp)
        yield world
        world.client.close()
        world.engine.dispose()


# The schema is read at collection, from an app on an empty in-memory store (the schema does not
# depend on the data); each request goes to the world's app (`app=` in call_and_validate).
_schema_app = create_app(Settings(database_url="sqlite://", data_dir=Path(tempfile.gettempdir())))
schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app)


def token_for(world: World, caller: str, path: str) -> str:
    if path == "/api/ingest":
        return world.tokens["agent"]
    if path in LOGOUT:
        return world.fresh_token(caller)
    return world.tokens[caller]


def revive_tokens(world: World) -> None:
    """An operation may have ended a caller's sessions or revoked the agent's token (DELETE
    /api/users/{id}/sessions or POST /api/agents/{id}/revoke on an id of the world's): the next
    requests get working tokens again."""
    with session_scope(world.engine) as session:
        dead = [who for who in world.emails if auth.user_for_token(session, world.tokens[who]) is None]
        if auth.agent_for_token(session, world.tokens["agent"]) is None:
            world.tokens["agent"] = auth.issue_agent_token(session, "laptop by the door, again")
    for who in dead:
        world.tokens[who] = world.fresh_token(who)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def spare_the_world(case: schemathesis.Case, world: World) -> None:
    """Erasing a worker (DELETE /api/workers/{id}) with an id of the world's would take its
    workers, their logins and data away from every later request: erase a throwaway instead."""
    if case.method == "DELETE" and case.operation.path == "/api/workers/{worker_id}":
        if str((case.path_parameters or {}).get("worker_id")) in (str(world.ids["wa"]), str(world.ids["wb"])):
            with session_scope(world.engine) as session:
                throwaway = Worker(name="throwaway", team_id=world.ids["ta"])
                session.add(throwaway)
                session.flush()
                case.path_parameters = {**(case.path_parameters or {}), "worker_id": throwaway.id}


def call_and_check(case: schemathesis.Case, world: World, caller: str) -> None:
    revive_tokens(world)
    spare_the_world(case, world)
    headers = {"Authorization": f"Bearer {token_for(world, caller, case.operation.path)}"}
    before = database_rows(world.engine)
    excluded = [positive_data_acceptance]
    if case.operation.path in DASHBOARD_PAGES:
        excluded += [unsupported_method, allow_header_conformance]
    response = case.call_and_validate(headers=headers, excluded_checks=excluded, app=world.client.app)
    if response.status_code >= 400:
        assert database_rows(world.engine) == before, (
            f"{case.method} {case.formatted_path} answered {response.status_code} but changed the database"
        )


@schema.parametrize()
@FUZZ
@pytest.mark.parametrize("api_world", ["sqlite"], indirect=True)
def test_as_admin_no_server_error_every_answer_documented_and_refusals_change_nothing(
    case: schemathesis.Case, api_world: World
) -> None:
    call_and_check(case, api_world, "admin")


@schema.parametrize()
@FUZZ
@pytest.mark.parametrize("api_world", ["sqlite"], indirect=True)
def test_as_worker_no_server_error_every_answer_documented_and_refusals_change_nothing(
    case: schemathesis.Case, api_world: World
) -> None:
    call_and_check(case, api_world, "worker_self")


# On PostgreSQL (when POSTURE_TEST_POSTGRES_URL is set): as the admin, who reaches every
# operation's database work, with as many generated requests but without schemathesis' coverage
# phase (its boundary and invalid values of every parameter: minutes more than CI can spare there,
# each request being checked by reading every table before and after; the values it found are
# tests/test_api_fuzz_findings.py's regression tests, which run on PostgreSQL too).
schema_on_postgres = schemathesis.openapi.from_asgi("/openapi.json", _schema_app)
schema_on_postgres.config.phases.coverage.enabled = False


@schema_on_postgres.parametrize()
@FUZZ
@pytest.mark.parametrize("api_world", ["postgres"], indirect=True)
def test_on_postgresql_as_admin_no_server_error_every_answer_documented_and_refusals_change_nothing(
    case: schemathesis.Case, api_world: World
) -> None:
    call_and_check(case, api_world, "admin")
