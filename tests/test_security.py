"""Security controls of the companion (docs/security.md): the login rate limit, rotating and
revoking user and agent tokens, secure defaults (cookie, CORS, CSRF on the sign-in and sign-out
forms, no default password).

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from databases import BACKENDS, database_url
from fastapi.testclient import TestClient
from test_api_resources import PASSWORD, World, b64, build_world, form_login, page_form_token, upload_body
from test_ingest import JAN1, KEY, minutes_batch

from companion import auth
from companion.api.app import create_app
from companion.ingest import batch_mac
from companion.settings import Settings
from companion.store import LoginFailure, session_scope

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=BACKENDS)
def shared_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One world per database for the module (building one takes about a second); the `world`
    # fixture gives each test a clean slate of what these tests change.
    tmp = tmp_path_factory.mktemp("security")
    with database_url(request.param, tmp) as url:
        w = build_world(url, tmp)
        yield w
        w.client.close()
        w.engine.dispose()


@pytest.fixture
def world(shared_world: World) -> World:
    """The module's world with no login failures counted and every caller's token working."""
    w = shared_world
    with session_scope(w.engine) as session:
        session.execute(sa.delete(LoginFailure))
    for who in w.emails:
        with session_scope(w.engine) as session:
            alive = auth.user_for_token(session, w.tokens[who]) is not None
        if not alive:
            w.tokens[who] = w.fresh_token(who)
    w.client.cookies.clear()
    return w


def url_of(world: World) -> str:
    return world.engine.url.render_as_string(hide_password=False)


def client_from(world: World, address: str) -> TestClient:
    """Another client of the same app, connecting from `address`."""
    return TestClient(world.client.app, client=(address, 50000))


def api_login(client: TestClient, email: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login", json={"email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- the login rate limit --------------------------------------------------------------------------


def test_login_is_rate_limited_per_account_and_says_when_to_retry(world: World):
    for _ in range(5):
        assert api_login(world.client, "erin@acme.test", "wrong password").status_code == 401
    refused = api_login(world.client, "erin@acme.test", PASSWORD)  # even the right password now
    assert refused.status_code == 429
    assert refused.json()["detail"] == "too many failed logins for this account: try again in 15 min"
    assert 890 <= int(refused.headers["Retry-After"]) <= 900
    # Another account from the same address is not locked out by Erin's failures.
    assert api_login(world.client, "otto@acme.test", PASSWORD).status_code == 200


def test_the_account_limit_holds_whichever_address_the_attempts_come_from(world: World):
    for i in range(5):
        assert api_login(client_from(world, f"10.0.0.{i}"), "Erin@ACME.test", "nope nope").status_code == 401
    assert api_login(client_from(world, "10.0.9.9"), "erin@acme.test", PASSWORD).status_code == 429


def test_login_is_rate_limited_per_address_across_accounts(world: World):
    attacker = client_from(world, "203.0.113.5")
    for i in range(20):
        assert api_login(attacker, f"guess{i}@acme.test", "wrong password").status_code == 401
    refused = api_login(attacker, "otto@acme.test", PASSWORD)
    assert refused.status_code == 429 and "from your address" in refused.json()["detail"]
    # Otto himself, from his own address, still gets in.
    assert api_login(client_from(world, "198.51.100.7"), "otto@acme.test", PASSWORD).status_code == 200


def test_an_unknown_email_is_limited_like_a_known_one(world: World):
    # The answer must not tell which e-mails have accounts.
    for email in ("erin@acme.test", "nobody@acme.test"):
        answers = [api_login(world.client, email, "wrong password").status_code for _ in range(6)]
        assert answers == [401] * 5 + [429], email


def age_failures(world: World, minutes: int) -> None:
    """As if every stored failure had happened `minutes` earlier."""
    with session_scope(world.engine) as session:
        for row in session.scalars(sa.select(LoginFailure)):
            row.at = row.at - dt.timedelta(minutes=minutes)


def test_failures_age_out_of_the_window_and_a_success_forgets_its_own(world: World):
    for _ in range(4):
        api_login(world.client, "erin@acme.test", "wrong password")
    assert api_login(world.client, "erin@acme.test", PASSWORD).status_code == 200  # forgets these 4
    for _ in range(5):
        api_login(world.client, "erin@acme.test", "wrong password")
    assert api_login(world.client, "erin@acme.test", PASSWORD).status_code == 429
    age_failures(world, 16)
    assert api_login(world.client, "erin@acme.test", PASSWORD).status_code == 200
    with session_scope(world.engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 0  # purged


def test_retry_after_counts_down_to_when_the_oldest_failure_ages_out(world: World):
    for _ in range(5):
        api_login(world.client, "erin@acme.test", "wrong password")
    age_failures(world, 10)
    refused = api_login(world.client, "erin@acme.test", PASSWORD)
    assert refused.status_code == 429 and 290 <= int(refused.headers["Retry-After"]) <= 300


def test_the_failure_count_is_shared_by_every_app_on_the_database(world: World, tmp_path: Path):
    # Two apps on one database, as `posture serve --workers 2` runs two processes.
    other = TestClient(create_app(Settings(database_url=url_of(world), data_dir=tmp_path)))
    for client in (world.client, other, world.client, other, world.client):
        assert api_login(client, "erin@acme.test", "wrong password").status_code == 401
    assert api_login(other, "erin@acme.test", PASSWORD).status_code == 429
    other.close()


def test_the_stored_failures_hold_no_email_in_clear(world: World):
    api_login(world.client, "erin@acme.test", "hunter2 hunter2")
    with session_scope(world.engine) as session:
        (row,) = session.scalars(sa.select(LoginFailure)).all()
        assert "erin" not in row.account and len(row.account) == 64 and row.address == "testclient"


def test_the_limits_are_settings(world: World, tmp_path: Path):
    app = create_app(Settings(database_url=url_of(world), data_dir=tmp_path, login_failures_per_account=2))
    with TestClient(app) as client:
        answers = [api_login(client, "x@acme.test", "wrong password").status_code for _ in range(3)]
    assert answers == [401, 401, 429]
    app.state.store.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_login_limit_holds_under_posture_serve_with_several_worker_processes(db_url: str):
    db, port = db_url, _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "host"), str(REPO / "shared")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "companion.cli",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # several workers start slowly on a loaded 2-core machine
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        # A new connection per attempt: the two worker processes share the listening socket.
        answers = [
            httpx.post(
                f"{url}/api/auth/login", json={"email": "admin@localhost", "password": "guess1234"}
            ).status_code
            for _ in range(7)
        ]
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert answers == [401] * 5 + [429, 429]


# ---- user tokens: rotate, list, end ------------------------------------------------------------------


def test_rotating_a_token_gives_a_new_one_and_the_old_one_fails_at_once(world: World):
    old = world.fresh_token("worker_self")
    rotated = world.client.post("/api/auth/rotate", headers=bearer(old))
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new != old and rotated.json()["user"]["email"] == "ana@acme.test"
    assert world.client.get("/api/me", headers=bearer(old)).status_code == 401
    assert world.client.get("/api/me", headers=bearer(new)).json()["email"] == "ana@acme.test"


def test_a_user_sees_their_sessions_and_ends_one_at_once(world: World):
    phone, laptop = world.fresh_token("erg_own"), world.fresh_token("erg_own")
    listed = world.client.get("/api/auth/sessions", headers=bearer(laptop)).json()
    assert [s["current"] for s in listed].count(True) == 1 and len(listed) >= 3  # world's, phone, laptop
    assert not any(phone in str(s.values()) or laptop in str(s.values()) for s in listed)  # never a token
    phone_id = listed[-2]["id"]  # oldest first: the phone's came just before the laptop's
    assert world.client.delete(f"/api/auth/sessions/{phone_id}", headers=bearer(laptop)).status_code == 204
    assert world.client.get("/api/me", headers=bearer(phone)).status_code == 401
    assert world.client.get("/api/me", headers=bearer(laptop)).status_code == 200


def test_nobody_ends_another_users_session_by_its_id(world: World):
    victim = world.fresh_token("erg_own")
    victim_id = next(
        s["id"] for s in world.client.get("/api/auth/sessions", headers=bearer(victim)).json() if s["current"]
    )
    r = world.client.delete(f"/api/auth/sessions/{victim_id}", headers=world.headers("worker_other"))
    assert r.status_code == 404
    assert world.client.get("/api/me", headers=bearer(victim)).status_code == 200


def test_signing_out_everywhere_ends_every_session_of_the_user_only(world: World):
    a, b = world.fresh_token("erg_own"), world.fresh_token("erg_own")
    assert world.client.delete("/api/auth/sessions", headers=bearer(a)).status_code == 204
    assert world.client.get("/api/me", headers=bearer(a)).status_code == 401
    assert world.client.get("/api/me", headers=bearer(b)).status_code == 401
    assert world.client.get("/api/me", headers=world.headers("erg_other")).status_code == 200


def test_an_admin_ends_every_session_of_a_user(world: World):
    with session_scope(world.engine) as session:
        erin = session.scalar(sa.select(auth.User.id).where(auth.User.email == "erin@acme.test"))
    token = world.fresh_token("erg_own")
    r = world.client.delete(f"/api/users/{erin}/sessions", headers=world.headers("admin"))
    assert r.status_code == 204
    assert world.client.get("/api/me", headers=bearer(token)).status_code == 401
    assert world.client.get("/api/me", headers=world.headers("erg_own")).status_code == 401
    assert world.client.delete("/api/users/999/sessions", headers=world.headers("admin")).status_code == 404


def test_a_password_change_ends_every_session(world: World):
    token = world.fresh_token("erg_own")
    with session_scope(world.engine) as session:
        user = session.scalar(sa.select(auth.User).where(auth.User.email == "erin@acme.test"))
        assert user is not None
        auth.set_password(session, user, "a new long password")
    assert world.client.get("/api/me", headers=bearer(token)).status_code == 401


# ---- agent tokens: issue, rotate, revoke -------------------------------------------------------------


def upload(world: World, token: str, first_seq: int) -> httpx.Response:
    body = upload_body("W017", minutes_batch(first_seq, JAN1 + 12 * 3600, 2))
    return world.client.post("/api/ingest", json=body, headers=bearer(token))


def test_an_admin_issues_an_agent_token_that_uploads_and_is_shown_once(world: World):
    made = world.client.post("/api/agents", json={"name": "packing line PC"}, headers=world.headers("admin"))
    assert made.status_code == 201
    token = made.json()["token"]
    assert upload(world, token, 500).status_code == 200
    listed = world.client.get("/api/agents", headers=world.headers("admin")).json()
    assert [a["name"] for a in listed] == ["laptop by the door", "packing line PC"]
    assert all("token" not in a for a in listed)


def test_rotating_an_agent_token_refuses_the_old_one_at_once(world: World):
    made = world.client.post("/api/agents", json={"name": "door PC"}, headers=world.headers("admin")).json()
    rotated = world.client.post(f"/api/agents/{made['id']}/rotate", headers=world.headers("admin"))
    assert rotated.status_code == 200 and rotated.json()["token"] != made["token"]
    assert upload(world, made["token"], 600).status_code == 401
    assert upload(world, rotated.json()["token"], 600).status_code == 200


def test_a_revoked_agent_token_is_refused_and_cannot_be_rotated_back(world: World):
    made = world.client.post(
        "/api/agents", json={"name": "stolen laptop"}, headers=world.headers("admin")
    ).json()
    revoked = world.client.post(f"/api/agents/{made['id']}/revoke", headers=world.headers("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    r = upload(world, made["token"], 700)
    assert r.status_code == 401 and r.json()["detail"] == "agent token unknown, expired or revoked"
    again = world.client.post(f"/api/agents/{made['id']}/rotate", headers=world.headers("admin"))
    assert again.status_code == 409 and "issue a new one" in again.json()["detail"]


# ---- device keys: rotation and revocation --------------------------------------------------------------


def test_an_agent_token_cannot_upload_unsigned_records_by_default(world: World):
    """A relaying PC with an agent token but not the device's key cannot slip in records for
    any registered device: without POSTURE_REQUIRE_BATCH_HMAC=false, a batch needs its MAC."""
    unsigned = {"device_id": "W018", "frames_b64": b64(minutes_batch(900, JAN1 + 15 * 3600, 2))}
    r = world.client.post("/api/ingest", json=unsigned, headers=world.headers("agent"))
    assert r.status_code == 403 and "no HMAC" in r.json()["detail"]


def test_a_device_key_rotation_refuses_batches_signed_with_the_old_key(world: World):
    new_key = bytes(range(100, 132))
    r = world.client.put(
        "/api/devices/W017/key", json={"key_hex": new_key.hex()}, headers=world.headers("admin")
    )
    assert r.status_code == 200
    frames = minutes_batch(800, JAN1 + 14 * 3600, 2)
    for key, expected in ((KEY, 403), (new_key, 200)):
        body = {
            "device_id": "W017",
            "frames_b64": b64(frames),
            "batch_mac_b64": b64(batch_mac(key, "W017", frames)),
        }
        assert (
            world.client.post("/api/ingest", json=body, headers=world.headers("agent")).status_code
            == expected
        )


# ---- secure defaults ---------------------------------------------------------------------------------


def session_cookie(response: httpx.Response) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith("posture_session="))


def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(world: World):
    plain = session_cookie(form_login(world.client, "ana@acme.test", PASSWORD))
    assert "HttpOnly" in plain and "samesite=lax" in plain.lower() and "secure" not in plain.lower()
    with TestClient(world.client.app, base_url="https://posture.example") as tls:
        secure = session_cookie(form_login(tls, "ana@acme.test", PASSWORD))
    assert "; secure" in secure.lower()


def test_the_secure_flag_can_be_forced_for_a_tls_proxy(world: World, tmp_path: Path):
    app = create_app(Settings(database_url=url_of(world), data_dir=tmp_path, cookie_secure=True))
    with TestClient(app) as client:  # plain http between the proxy and the app
        page = client.get("/login")
        signin = page.headers["set-cookie"]
        assert "; secure" in signin.lower()
        # The browser talks https to the proxy, so it sends the Secure cookie back.
        r = client.post(
            "/login",
            data={"email": "ana@acme.test", "password": PASSWORD, "csrf_token": page_form_token(page.text)},
            headers={"Cookie": signin.split(";")[0]},
            follow_redirects=False,
        )
        assert "; secure" in session_cookie(r).lower()
    app.state.store.dispose()


def test_cross_origin_calls_are_off_by_default(world: World):
    preflight = world.client.options(
        "/api/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    answer = world.client.get("/api/me", headers={**world.headers("admin"), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in answer.headers


def test_cross_origin_calls_are_allowed_only_from_the_allow_list(world: World, tmp_path: Path):
    settings = Settings(
        database_url=url_of(world), data_dir=tmp_path, cors_origins=["https://intranet.example"]
    )
    app = create_app(settings)
    with TestClient(app) as client:
        asked = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        ok = client.options("/api/me", headers={"Origin": "https://intranet.example", **asked})
        evil = client.options("/api/me", headers={"Origin": "https://evil.example", **asked})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://intranet.example"
    assert "access-control-allow-credentials" not in ok.headers  # bearer tokens, never the cookie
    assert "access-control-allow-origin" not in evil.headers
    app.state.store.dispose()


def test_the_first_start_makes_an_admin_with_a_random_password_shown_once(backend: str, tmp_path: Path):
    from companion.cli import ensure_admin
    from companion.store import open_store, session_factory

    passwords = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        with database_url(backend, tmp_path / name) as url:
            engine = open_store(url)
            created = ensure_admin(engine)
            assert created is not None and created[0] == "admin@localhost" and len(created[1]) >= 16
            assert ensure_admin(engine) is None  # the next start: there is an admin, nothing printed
            with session_factory(engine)() as session:
                stored = session.scalar(sa.select(auth.User.password_hash))
                assert stored is not None and stored.startswith("scrypt$") and created[1] not in stored
            passwords.append(created[1])
            engine.dispose()
    assert passwords[0] != passwords[1]  # no default password


# ---- CSRF on the sign-in and sign-out forms -----------------------------------------------------------


def sessions_of_ana(world: World) -> int:
    with session_scope(world.engine) as session:
        ana = session.scalar(sa.select(auth.User.id).where(auth.User.email == "ana@acme.test"))
        return len(auth.user_sessions(session, ana or 0))


def test_the_sign_in_form_is_refused_without_the_token_of_its_page(world: World):
    before = sessions_of_ana(world)
    r = world.client.post(
        "/login", data={"email": "ana@acme.test", "password": PASSWORD}, follow_redirects=False
    )
    assert r.status_code == 403 and "posture_session" not in r.cookies
    assert "This sign-in form has expired or was not sent from this site" in r.text
    assert sessions_of_ana(world) == before
    # The refusal is the sign-in form again, with a token that works.
    again = world.client.post(
        "/login",
        data={"email": "ana@acme.test", "password": PASSWORD, "csrf_token": page_form_token(r.text)},
        follow_redirects=False,
    )
    assert again.status_code == 303 and again.headers["location"] == "/"


def test_a_sign_in_token_is_refused_from_a_browser_without_its_cookie(world: World):
    # Login CSRF: an attacker's own page token, posted by the victim's browser, which lacks the
    # attacker's sign-in cookie.
    attacker_token = page_form_token(client_from(world, "203.0.113.5").get("/login").text)
    victim = client_from(world, "198.51.100.7")
    victim.get("/login")  # the victim's browser has a sign-in cookie of its own
    r = victim.post(
        "/login",
        data={"email": "ben@acme.test", "password": PASSWORD, "csrf_token": attacker_token},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "posture_session" not in r.cookies


def test_the_sign_in_cookie_is_httponly_and_scoped_to_the_sign_in_form(world: World):
    cookie = world.client.get("/login").headers["set-cookie"]
    assert cookie.startswith("posture_signin=") and "HttpOnly" in cookie and "Path=/login" in cookie
    assert "samesite=lax" in cookie.lower()


def test_the_sign_in_form_is_rate_limited_with_a_429_page(world: World):
    for _ in range(5):
        assert form_login(world.client, "ana@acme.test", "wrong password").status_code == 303
    r = form_login(world.client, "ana@acme.test", PASSWORD)
    assert r.status_code == 429 and 890 <= int(r.headers["Retry-After"]) <= 900
    assert "Too many failed logins for this account: try again in 15 min." in r.text
    assert "posture_session" not in r.cookies


def signed_in_browser(world: World) -> tuple[TestClient, str]:
    browser = client_from(world, "198.51.100.7")
    r = form_login(browser, "ana@acme.test", PASSWORD)
    assert r.status_code == 303
    return browser, r.cookies["posture_session"]


def test_sign_out_is_refused_without_the_sessions_form_token(world: World):
    browser, session_token = signed_in_browser(world)
    forged = browser.post("/logout", follow_redirects=False)
    wrong = browser.post("/logout", data={"csrf_token": "0" * 64}, follow_redirects=False)
    assert forged.status_code == wrong.status_code == 403
    assert "not sent from your own page" in forged.text
    assert browser.get("/api/me").status_code == 200  # still signed in
    token = page_form_token(browser.get("/me").text)  # the sign-out form of every page
    out = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert world.client.get("/api/me", headers=bearer(session_token)).status_code == 401


def test_every_pages_sign_out_form_carries_the_sessions_token(world: World):
    from companion.web import csrf

    browser, session_token = signed_in_browser(world)
    for path in ("/me", "/me/week", "/me/settings"):
        page = browser.get(path).text
        sign_out = page[page.index('action="/logout"') :]
        assert page_form_token(sign_out) == csrf.session_form_token(session_token), path


def test_sign_out_without_a_live_session_just_goes_to_the_sign_in_page(world: World):
    r = world.client.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


# ---- the same from the command line --------------------------------------------------------------------


def test_agent_tokens_and_sessions_are_managed_from_the_command_line(
    db_url: str, capsys: pytest.CaptureFixture[str]
):
    from companion.cli import main
    from companion.store import open_store

    db = db_url  # --db takes a database URL as well as a SQLite file

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    code, out = run("agents", "--db", db, "add", "door laptop")
    first = out.split(": ")[-1].split()[0]
    assert code == 0 and out.startswith("agent token 1 for door laptop: ")
    code, out = run("agents", "--db", db, "rotate", "1")
    second = out.split(": ")[1].split()[0]
    engine = open_store(db)
    with session_scope(engine) as session:
        assert auth.agent_for_token(session, first) is None  # the old one fails at once
        assert auth.agent_for_token(session, second) is not None
    assert run("agents", "--db", db, "revoke", "1")[0] == 0
    assert (
        "True" in run("agents", "--db", db, "list")[1] and second not in run("agents", "--db", db, "list")[1]
    )
    with session_scope(engine) as session:
        assert auth.agent_for_token(session, second) is None
        user = auth.create_user(session, "ana@acme.test", PASSWORD, "ergonomist")
        token = auth.issue_token(session, user)
    code, out = run("users", "--db", db, "end-sessions", "ana@acme.test")
    assert code == 0 and out.strip() == "ended 1 session of ana@acme.test"
    with session_scope(engine) as session:
        assert auth.user_for_token(session, token) is None
    engine.dispose()
