"""Users, passwords and tokens of the companion.

    user = create_user(session, "ana@example.org", "correct horse", "ergonomist", team_ids=[3])
    token = issue_token(session, user)          # give to the client once; only its hash is kept
    user = user_for_token(session, token)       # None when unknown or expired
    new = rotate_token(session, token)          # a fresh token; the old one fails at once
    revoke_token(session, new); end_sessions(session, user.id)

Passwords: ``hashlib.scrypt`` (stdlib, memory-hard) with a random 16-byte salt per user, stored
as ``scrypt$n$r$p$salt_hex$hash_hex`` so the cost can be raised later without breaking old
hashes.  Tokens: 32 random bytes (URL-safe base64); the database keeps only their SHA-256,
which is safe for high-entropy secrets (no KDF needed) and lets lookups use an index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from companion.store.models import ROLES, AgentToken, ApiToken, TeamMember, User, utc_now

# scrypt cost: n=2**14, r=8 needs 16 MiB and ~50 ms per check on a laptop (RFC 7914's
# interactive-login recommendation).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
TOKEN_BYTES = 32
TOKEN_LIFETIME = dt.timedelta(days=7)
MIN_PASSWORD_CHARS = 8


class AuthError(ValueError):
    """A user cannot be created or changed as asked (bad role, short password, taken e-mail)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of `password` (scrypt with a fresh salt unless one is given)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")


def create_user(
    session: Session,
    email: str,
    password: str,
    role: str,
    worker_id: int | None = None,
    team_ids: Iterable[int] = (),
) -> User:
    """Add a user (flushes, does not commit).  `team_ids`: the teams an ergonomist looks after."""
    email = email.strip().lower()
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if "@" not in email:
        raise AuthError(f"{email!r} is not an e-mail address")
    check_password_strength(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AuthError(f"a user with e-mail {email} exists already")
    if role == "worker" and worker_id is None:
        raise AuthError("a worker login needs the worker it belongs to (worker_id)")
    user = User(email=email, password_hash=hash_password(password), role=role, worker_id=worker_id)
    session.add(user)
    session.flush()
    for team_id in sorted(set(team_ids)):
        session.add(TeamMember(user_id=user.id, team_id=team_id))
    session.flush()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Change a password and end every session of the user (their tokens stop working)."""
    check_password_strength(password)
    user.password_hash = hash_password(password)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.flush()


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        # Spend the same time as a real check so response times do not reveal which e-mails exist.
        verify_password(password, _DUMMY_HASH)
        return None
    if not verify_password(password, user.password_hash) or not user.active:
        return None
    return user


def issue_token(session: Session, user: User, lifetime: dt.timedelta = TOKEN_LIFETIME) -> str:
    """A new bearer/session token for `user`; only its hash is stored (flushes)."""
    token = new_token()
    now = utc_now()
    # Expired tokens of the user are of no use to anyone: drop them as a new one is made.
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at <= now))
    session.add(
        ApiToken(user_id=user.id, token_hash=token_hash(token), created_at=now, expires_at=now + lifetime)
    )
    session.flush()
    return token


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; they were stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a token belongs to, or None when it is unknown or expired."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    if row is None or _aware(row.expires_at) <= utc_now():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None


def revoke_token(session: Session, token: str) -> None:
    """End one session: the token fails from the next request on."""
    session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(token)))


def rotate_token(session: Session, token: str, lifetime: dt.timedelta = TOKEN_LIFETIME) -> str | None:
    """A new token for the user of `token`, with a fresh lifetime; `token` ends at once.
    None when `token` is unknown or expired (flushes)."""
    user = user_for_token(session, token)
    if user is None:
        return None
    revoke_token(session, token)
    return issue_token(session, user, lifetime)


def user_sessions(session: Session, user_id: int) -> list[ApiToken]:
    """The user's tokens that still work, oldest first."""
    return [
        row
        for row in session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
        if _aware(row.expires_at) > utc_now()
    ]


def end_sessions(session: Session, user_id: int) -> int:
    """End every session of a user (a stolen laptop, a leaked token): how many there were."""
    count = len(user_sessions(session, user_id))
    session.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
    return count


def issue_agent_token(session: Session, name: str, lifetime: dt.timedelta | None = None) -> str:
    """A token for a sync agent (may only POST /api/ingest); None lifetime = until revoked."""
    token = new_token()
    now = utc_now()
    session.add(
        AgentToken(
            name=name,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        )
    )
    session.flush()
    return token


def rotate_agent_token(session: Session, agent: AgentToken) -> str:
    """A new token for the same agent; its old token fails at once (flushes)."""
    token = new_token()
    agent.token_hash = token_hash(token)
    session.flush()
    return token


def revoke_agent_token(session: Session, agent: AgentToken) -> None:
    """The agent's uploads are refused from now on (its row stays, to show in the list)."""
    agent.revoked = True
    session.flush()


def agent_for_token(session: Session, token: str) -> AgentToken | None:
    row = session.scalar(select(AgentToken).where(AgentToken.token_hash == token_hash(token)))
    if row is None or row.revoked:
        return None
    if row.expires_at is not None and _aware(row.expires_at) <= utc_now():
        return None
    return row


_DUMMY_HASH = hash_password("timing-equaliser", salt=b"\0" * SALT_BYTES)
