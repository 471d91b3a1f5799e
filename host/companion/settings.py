"""Companion settings, in one place.

Every setting can come from the environment with the ``POSTURE_`` prefix (or a ``.env`` file
in the working directory)::

    POSTURE_DATABASE_URL=postgresql+psycopg://posture:secret@db/posture   # default: SQLite file
    POSTURE_DATA_DIR=/var/lib/posture                                     # where the SQLite file lives
    POSTURE_REQUIRE_BATCH_HMAC=false                                      # accept unsigned batches (default: refuse)
    POSTURE_COOKIE_SECURE=true                                            # session cookie only over https
    POSTURE_CORS_ORIGINS='["https://intranet.example"]'                   # default: no cross-origin calls
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "posture"


class Settings(BaseSettings):
    """Companion settings (environment variables ``POSTURE_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="POSTURE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Folder of the default SQLite file."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; None means a SQLite file `posture.db` in data_dir.",
    )
    require_batch_hmac: bool = Field(
        default=True,
        description="Refuse record batches that carry no HMAC (see companion.ingest.batch_mac). "
        "Only a test bench should turn this off: an unsigned batch can claim any registered device.",
    )
    default_timezone: str = Field(
        default="UTC", description="IANA time zone of new workers: it decides where their days begin."
    )
    login_failures_per_account: int = Field(
        default=5, ge=1, description="Failed logins one e-mail may have within the window (then 429)."
    )
    login_failures_per_address: int = Field(
        default=20, ge=1, description="Failed logins one client address may have within the window."
    )
    login_failure_window_s: int = Field(
        default=900, ge=1, description="Seconds a failed login counts against the limits."
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure: true, false, or None = when the request came "
        "over https (behind a TLS proxy, set true or let uvicorn trust the proxy's headers).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins other sites may call the API from (JSON list, e.g. ["https://intranet.example"]); '
        "empty = no cross-origin access.",
    )

    def resolved_database_url(self) -> str:
        """The URL to connect to: database_url, or the SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'posture.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build their own Settings instead)."""
    return Settings()
