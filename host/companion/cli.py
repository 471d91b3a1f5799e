"""The ``posture`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="posture", description="Open wearable posture sensor: firmware tools and companion."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from companion import demo, flash_cmd, replay
    from companion.sync import cli as sync_cli

    demo.add_parser(sub)
    replay.add_parser(sub)
    flash_cmd.add_parser(sub)
    sync_cli.add_parser(sub)
    add_server_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


# ---- serve, users, devices ------------------------------------------------------------------------


def _database_url(db: str | None) -> str:
    """--db as a SQLAlchemy URL: a URL as given, a path as a SQLite file; default: settings."""
    from companion.settings import get_settings

    if db is None:
        return get_settings().resolved_database_url()
    if "://" in db:
        return db
    from pathlib import Path

    return f"sqlite:///{Path(db).expanduser().resolve()}"


def _add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQLite file or database URL (default: POSTURE_DATABASE_URL or the data dir)")


def add_server_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the companion web app (JSON API and dashboard)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes (use PostgreSQL for more than one)"
    )
    _add_db_option(p)
    p.set_defaults(func=cmd_serve)

    users = sub.add_parser("users", help="manage logins (add, list, passwd, token)")
    _add_db_option(users)
    u = users.add_subparsers(dest="users_command", required=True)
    add = u.add_parser("add", help="add a login")
    add.add_argument("email")
    add.add_argument("--role", choices=("worker", "ergonomist", "admin"), required=True)
    add.add_argument("--password", help="default: a random one, printed once")
    add.add_argument("--worker-id", type=int, help="the worker a worker login belongs to")
    add.add_argument(
        "--team", type=int, action="append", default=[], help="team an ergonomist looks after (repeat)"
    )
    add.set_defaults(func=cmd_users_add)
    u.add_parser("list", help="list logins").set_defaults(func=cmd_users_list)
    pw = u.add_parser("passwd", help="set a new password (ends the user's sessions)")
    pw.add_argument("email")
    pw.add_argument("--password", help="default: a random one, printed once")
    pw.set_defaults(func=cmd_users_passwd)
    tok = u.add_parser("token", help="print a bearer token: for a user, or (--agent NAME) for a sync agent")
    tok.add_argument("email", nargs="?")
    tok.add_argument("--agent", metavar="NAME", help="issue an upload token for the sync agent NAME instead")
    tok.add_argument("--days", type=float, default=7.0, help="validity of a user token (default 7 days)")
    tok.set_defaults(func=cmd_users_token)
    end = u.add_parser("end-sessions", help="end every session of a user at once (their tokens stop working)")
    end.add_argument("email")
    end.set_defaults(func=cmd_users_end_sessions)

    agents = sub.add_parser("agents", help="sync agents' upload tokens (list, add, rotate, revoke)")
    _add_db_option(agents)
    a = agents.add_subparsers(dest="agents_command", required=True)
    a.add_parser("list", help="list agent tokens (never the tokens)").set_defaults(func=cmd_agents_list)
    aadd = a.add_parser("add", help="issue a token for a sync agent (printed once)")
    aadd.add_argument("name")
    aadd.set_defaults(func=cmd_agents_add)
    arot = a.add_parser("rotate", help="a new token for the agent (printed once); the old one stops working")
    arot.add_argument("agent_id", type=int)
    arot.set_defaults(func=cmd_agents_rotate)
    arev = a.add_parser("revoke", help="refuse the agent's uploads from now on")
    arev.add_argument("agent_id", type=int)
    arev.set_defaults(func=cmd_agents_revoke)

    devices = sub.add_parser("devices", help="register devices and manage their keys")
    _add_db_option(devices)
    d = devices.add_subparsers(dest="devices_command", required=True)
    dadd = d.add_parser("add", help="register a device (prints a new random key unless --key-hex)")
    dadd.add_argument("device_id")
    dadd.add_argument("--key-hex", help="the key provisioned on the device (16..64 bytes, hex)")
    dadd.add_argument("--worker", type=int, help="worker id wearing it")
    dadd.set_defaults(func=cmd_devices_add)
    d.add_parser("list", help="list devices (never their keys)").set_defaults(func=cmd_devices_list)
    assign = d.add_parser("assign", help="give a device to a worker ('none' to unassign)")
    assign.add_argument("device_id")
    assign.add_argument("worker")
    assign.set_defaults(func=cmd_devices_assign)
    setkey = d.add_parser("set-key", help="register the device's new key")
    setkey.add_argument("device_id")
    setkey.add_argument("key_hex")
    setkey.set_defaults(func=cmd_devices_set_key)
    rot = d.add_parser("rotate-key", help="make and register a new random key (printed once: provision it)")
    rot.add_argument("device_id")
    rot.set_defaults(func=cmd_devices_rotate_key)
    rev = d.add_parser("revoke", help="refuse the device's uploads until it gets a new key")
    rev.add_argument("device_id")
    rev.set_defaults(func=cmd_devices_revoke)


def _store(args: argparse.Namespace) -> Any:
    from companion.store import open_store

    return open_store(_database_url(args.db))


def _random_password() -> str:
    import secrets

    return secrets.token_urlsafe(12)


def ensure_admin(engine: Any) -> tuple[str, str] | None:
    """Create an admin with a random password when there is none: (email, password) or None."""
    from sqlalchemy import select

    from companion import auth
    from companion.store import User, session_scope

    with session_scope(engine) as session:
        if session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
            return None
        email, password = "admin@localhost", _random_password()
        auth.create_user(session, email, password, "admin")
        return email, password


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn
    from rich.console import Console

    from companion.api.app import database_label
    from companion.store import open_store

    console = Console(stderr=True, soft_wrap=True)  # keep paths and passwords on one line
    url = _database_url(args.db)
    # Worker processes build the app from the environment: hand them the same database.
    os.environ["POSTURE_DATABASE_URL"] = url
    engine = open_store(url)
    console.print(f"posture companion: database [bold]{database_label(url)}[/bold]")
    created = ensure_admin(engine)
    engine.dispose()
    if created is not None:
        console.print(
            f"created the first admin [bold]{created[0]}[/bold] with password [bold]{created[1]}[/bold] "
            "(shown once: change it with `posture users passwd`)"
        )
    if args.workers > 1 and url.startswith("sqlite"):
        console.print(
            "[yellow]several workers on SQLite serialise their writes; PostgreSQL scales better[/yellow]"
        )
    console.print(f"listening on http://{args.host}:{args.port}  (API docs at /docs)")
    uvicorn.run(
        "companion.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers
    )
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    password = args.password or _random_password()
    try:
        with session_scope(_store(args)) as session:
            auth.create_user(session, args.email, password, args.role, args.worker_id, args.team)
    except auth.AuthError as exc:
        print(f"posture users add: {exc}", file=sys.stderr)
        return 2
    print(f"added {args.role} {args.email.lower()}")
    if not args.password:
        print(f"password: {password}   (shown once)")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from companion.store import TeamMember, User, session_factory

    table = Table("id", "email", "role", "worker", "teams", "active")
    with session_factory(_store(args))() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            teams = session.scalars(
                select(TeamMember.team_id).where(TeamMember.user_id == user.id).order_by(TeamMember.team_id)
            ).all()
            table.add_row(
                str(user.id),
                user.email,
                user.role,
                str(user.worker_id or ""),
                ",".join(map(str, teams)),
                str(user.active),
            )
    Console().print(table)
    return 0


def _user(session: Any, email: str) -> Any:
    from sqlalchemy import select

    from companion.store import User

    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise SystemExit(f"posture users: no user {email}")
    return user


def cmd_users_passwd(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    password = args.password or _random_password()
    try:
        with session_scope(_store(args)) as session:
            auth.set_password(session, _user(session, args.email), password)
    except auth.AuthError as exc:
        print(f"posture users passwd: {exc}", file=sys.stderr)
        return 2
    print(f"password of {args.email} changed; their sessions are ended")
    if not args.password:
        print(f"password: {password}   (shown once)")
    return 0


def cmd_users_token(args: argparse.Namespace) -> int:
    import datetime as dt

    from companion import auth
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        if args.agent:
            token = auth.issue_agent_token(session, args.agent)
        elif args.email:
            token = auth.issue_token(session, _user(session, args.email), dt.timedelta(days=args.days))
        else:
            print("posture users token: give an e-mail or --agent NAME", file=sys.stderr)
            return 2
    print(token)
    return 0


def cmd_users_end_sessions(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        ended = auth.end_sessions(session, _user(session, args.email).id)
    print(f"ended {ended} session{'s' if ended != 1 else ''} of {args.email}")
    return 0


def _agent(session: Any, agent_id: int) -> Any:
    from companion.store import AgentToken

    agent = session.get(AgentToken, agent_id)
    if agent is None:
        raise SystemExit(f"posture agents: no agent token {agent_id}")
    return agent


def cmd_agents_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from companion.store import AgentToken, session_factory

    table = Table("id", "name", "created", "expires", "revoked")
    with session_factory(_store(args))() as session:
        for agent in session.scalars(select(AgentToken).order_by(AgentToken.id)):
            table.add_row(
                str(agent.id),
                agent.name,
                str(agent.created_at),
                str(agent.expires_at or ""),
                str(agent.revoked),
            )
    Console().print(table)
    return 0


def cmd_agents_add(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        token = auth.issue_agent_token(session, args.name)
        agent_id = auth.agent_for_token(session, token).id  # type: ignore[union-attr]
    print(f"agent token {agent_id} for {args.name}: {token}   (shown once)")
    return 0


def cmd_agents_rotate(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        agent = _agent(session, args.agent_id)
        if agent.revoked:
            print(
                f"posture agents rotate: agent token {args.agent_id} is revoked: add a new one",
                file=sys.stderr,
            )
            return 2
        token = auth.rotate_agent_token(session, agent)
    print(f"agent token {args.agent_id}: {token}   (shown once; the old token no longer works)")
    return 0


def cmd_agents_revoke(args: argparse.Namespace) -> int:
    from companion import auth
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        auth.revoke_agent_token(session, _agent(session, args.agent_id))
    print(f"agent token {args.agent_id} revoked: its uploads are refused from now on")
    return 0


def _device(session: Any, device_id: str) -> Any:
    from sqlalchemy import select

    from companion.store import Device

    device = session.scalar(select(Device).where(Device.device_id == device_id))
    if device is None:
        raise SystemExit(f"posture devices: no device {device_id!r}")
    return device


def _parse_key(key_hex: str) -> bytes:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise SystemExit("posture devices: the key is not hexadecimal") from None
    if not 16 <= len(key) <= 64:
        raise SystemExit(f"posture devices: a key is 16..64 bytes, got {len(key)}")
    return key


def cmd_devices_add(args: argparse.Namespace) -> int:
    import secrets

    from sqlalchemy import select

    from companion.api import devicesettings
    from companion.store import Device, session_scope

    key = _parse_key(args.key_hex) if args.key_hex else secrets.token_bytes(32)
    with session_scope(_store(args)) as session:
        if session.scalar(select(Device.id).where(Device.device_id == args.device_id)) is not None:
            print(f"posture devices add: {args.device_id!r} is registered already", file=sys.stderr)
            return 2
        session.add(Device(device_id=args.device_id, key=key, worker_id=args.worker))
        session.flush()
        if args.worker is not None:
            devicesettings.push_worker_settings(session, args.worker)
    print(f"registered {args.device_id}")
    if not args.key_hex:
        print(f"key: {key.hex()}   (shown once: provision it on the device)")
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from companion.store import Device, session_factory

    table = Table("device", "worker", "key", "last sync", "battery", "acked seq")
    with session_factory(_store(args))() as session:
        for d in session.scalars(select(Device).order_by(Device.device_id)):
            key = "revoked" if d.revoked_at is not None else ("set" if d.key else "none")
            battery = f"{d.battery_percent}%" if d.battery_percent is not None else ""
            table.add_row(
                d.device_id,
                str(d.worker_id or ""),
                key,
                str(d.last_sync or ""),
                battery,
                str(d.contiguous_seq or ""),
            )
    Console().print(table)
    return 0


def cmd_devices_assign(args: argparse.Namespace) -> int:
    from companion.api import devicesettings
    from companion.store import Worker, session_scope

    worker_id = None if args.worker.lower() == "none" else int(args.worker)
    with session_scope(_store(args)) as session:
        if worker_id is not None and session.get(Worker, worker_id) is None:
            print(f"posture devices assign: no worker {worker_id}", file=sys.stderr)
            return 2
        _device(session, args.device_id).worker_id = worker_id
        session.flush()
        if worker_id is not None:
            devicesettings.push_worker_settings(session, worker_id)
    print(f"{args.device_id} -> worker {worker_id}")
    return 0


def _set_key(args: argparse.Namespace, key: bytes) -> None:
    from companion.store import session_scope

    with session_scope(_store(args)) as session:
        device = _device(session, args.device_id)
        device.key = key
        device.revoked_at = None


def cmd_devices_set_key(args: argparse.Namespace) -> int:
    _set_key(args, _parse_key(args.key_hex))
    print(f"new key registered for {args.device_id}")
    return 0


def cmd_devices_rotate_key(args: argparse.Namespace) -> int:
    import secrets

    key = secrets.token_bytes(32)
    _set_key(args, key)
    print(f"key: {key.hex()}   (shown once: provision it on {args.device_id}; the old key no longer works)")
    return 0


def cmd_devices_revoke(args: argparse.Namespace) -> int:
    from companion.store import session_scope
    from companion.store.models import utc_now

    with session_scope(_store(args)) as session:
        device = _device(session, args.device_id)
        device.key = None
        device.revoked_at = utc_now()
    print(f"{args.device_id} revoked: its uploads are refused until `posture devices set-key`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
