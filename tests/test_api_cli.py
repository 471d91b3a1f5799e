"""`posture serve`, `posture users`, `posture devices`: the companion's admin commands.

Each runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (`--db` takes a
database URL as well as a SQLite file; tests/databases.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from companion import auth
from companion.api.app import database_label
from companion.cli import main
from companion.store import Device, User, open_store, session_factory

REPO = Path(__file__).resolve().parent.parent
_engines: list[sa.Engine] = []


def store(url: str) -> sa.Engine:
    """The store at `url`, its connections closed when the test ends (a PostgreSQL schema is
    dropped then)."""
    engine = open_store(url)
    _engines.append(engine)
    return engine


@pytest.fixture(autouse=True)
def _dispose_engines(db_url: str) -> Iterator[None]:  # every test here takes db_url
    yield
    while _engines:
        _engines.pop().dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_users_add_with_a_random_password_prints_it_once_and_it_logs_in(db_url, capsys):
    db = db_url
    code, out = run(capsys, "users", "--db", db, "add", "Root@Example.org", "--role", "admin")
    assert code == 0
    password = re.search(r"password: (\S+)", out)
    assert password is not None
    with session_factory(store(db))() as session:
        assert auth.authenticate(session, "root@example.org", password.group(1)) is not None
    code, out = run(capsys, "users", "--db", db, "list")
    assert "root@example.org" in out and password.group(1) not in out


def test_users_passwd_and_token(db_url, capsys):
    db = db_url
    run(
        capsys,
        "users",
        "--db",
        db,
        "add",
        "erin@example.org",
        "--role",
        "ergonomist",
        "--password",
        "long enough pw",
    )
    code, out = run(
        capsys, "users", "--db", db, "passwd", "erin@example.org", "--password", "another long one"
    )
    assert code == 0
    _, token = run(capsys, "users", "--db", db, "token", "erin@example.org")
    _, agent = run(capsys, "users", "--db", db, "token", "--agent", "door laptop")
    with session_factory(store(db))() as session:
        user = auth.user_for_token(session, token.strip())
        assert user is not None and user.email == "erin@example.org"
        assert auth.agent_for_token(session, agent.strip()) is not None
        assert auth.authenticate(session, "erin@example.org", "another long one") is not None


def test_a_short_password_is_refused(db_url, capsys):
    code = main(["users", "--db", db_url, "add", "a@b.c", "--role", "admin", "--password", "short"])
    assert code == 2
    assert "at least 8" in capsys.readouterr().err


def test_devices_add_rotate_revoke(db_url, capsys):
    db = db_url
    code, out = run(capsys, "devices", "--db", db, "add", "W017")
    first = re.search(r"key: ([0-9a-f]{64})", out)
    assert code == 0 and first is not None
    _, out = run(capsys, "devices", "--db", db, "rotate-key", "W017")
    second = re.search(r"key: ([0-9a-f]{64})", out)
    assert second is not None and second.group(1) != first.group(1)
    engine = store(db)
    with session_factory(engine)() as session:
        assert session.scalar(sa.select(Device.key)) == bytes.fromhex(second.group(1))
    run(capsys, "devices", "--db", db, "revoke", "W017")
    _, out = run(capsys, "devices", "--db", db, "list")
    assert "revoked" in out and second.group(1) not in out
    with session_factory(engine)() as session:
        assert session.scalar(sa.select(Device.key)) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_creates_the_first_admin_logs_the_database_and_answers_health(db_url):
    db = db_url
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "host"), str(REPO / "shared")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "companion.cli", "serve", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    # The database it serves, without its password (the console may wrap a long URL).
    assert "".join(database_label(db).split()) in "".join(err.split())
    password = make_url(db).password
    assert not password or str(password) not in err
    match = re.search(r"first admin admin@localhost with password (\S+)", err)
    assert match is not None
    with session_factory(store(db))() as session:
        assert session.scalar(sa.select(User.role)) == "admin"
        assert auth.authenticate(session, "admin@localhost", match.group(1)) is not None
