"""The login rate limit: failed logins per account and per client address.

    limits = LoginLimits.from_settings(settings)
    limits.check(session, email, address)          # raises TooManyFailures (429 + Retry-After)
    user = auth.authenticate(session, email, password)
    if user is None:
        limits.record_failure(session, email, address)
    else:
        limits.forget(session, email, address)

A sliding window: at most `per_account` failures for one e-mail (from any address) and at most
`per_address` failures from one address (for any e-mail) within `window`.  Past either, logins
are refused without checking the password until enough failures have aged out of the window;
``Retry-After`` says when.  The e-mail is counted as typed, whether an account has it or not,
so the answer says nothing about which accounts exist.  A successful login forgets the
account's failures from that address.

The failures are rows of the store (``login_failures``), so every worker process of
``posture serve --workers N`` and every server on one PostgreSQL database shares the count.
Between a check and its failure being written, concurrent attempts are not serialised: each
request already past the check when the limit is reached still gets its one try, so the
overshoot is bounded by the number of requests in flight, not by time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from companion.settings import Settings
from companion.store.models import LoginFailure, utc_now

UNKNOWN_ADDRESS = "unknown"


def account_key(email: str) -> str:
    """What a failure is counted under: the SHA-256 of the e-mail as a login compares it."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class TooManyFailures(Exception):
    """Logins refused for now: `retry_after_s` until the next attempt can be counted."""

    def __init__(self, retry_after_s: int, per: str) -> None:
        self.retry_after_s = retry_after_s
        self.per = per  # "account" or "address"
        wait = f"{math.ceil(retry_after_s / 60)} min" if retry_after_s >= 60 else f"{retry_after_s} s"
        where = "for this account" if per == "account" else "from your address"
        super().__init__(f"too many failed logins {where}: try again in {wait}")


@dataclass(frozen=True)
class LoginLimits:
    per_account: int = 5
    per_address: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
            window=dt.timedelta(seconds=settings.login_failure_window_s),
        )

    def check(
        self, session: Session, email: str, address: str | None, now: dt.datetime | None = None
    ) -> None:
        """TooManyFailures when the account or the address is over its limit (also purges
        failures older than the window)."""
        now = now or utc_now()
        since = now - self.window
        session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
        for per, column, value, limit in (
            ("account", LoginFailure.account, account_key(email), self.per_account),
            ("address", LoginFailure.address, address or UNKNOWN_ADDRESS, self.per_address),
        ):
            count = session.scalar(
                select(func.count()).select_from(LoginFailure).where(column == value, LoginFailure.at > since)
            )
            if count is None or count < limit:
                continue
            # The attempt that would be under the limit again: once the (count - limit + 1)th
            # oldest failure in the window has aged out.
            oldest_to_expire = session.scalar(
                select(LoginFailure.at)
                .where(column == value, LoginFailure.at > since)
                .order_by(LoginFailure.at)
                .offset(count - limit)
                .limit(1)
            )
            assert oldest_to_expire is not None
            wait = (_aware(oldest_to_expire) + self.window - now).total_seconds()
            raise TooManyFailures(max(1, math.ceil(wait)), per)

    def record_failure(
        self, session: Session, email: str, address: str | None, now: dt.datetime | None = None
    ) -> None:
        session.add(
            LoginFailure(account=account_key(email), address=address or UNKNOWN_ADDRESS, at=now or utc_now())
        )
        session.flush()

    def forget(self, session: Session, email: str, address: str | None) -> None:
        """After a successful login: this account's failures from this address no longer count."""
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.account == account_key(email),
                LoginFailure.address == (address or UNKNOWN_ADDRESS),
            )
        )


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite gives back naive datetimes for timezone=True columns; they were stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
