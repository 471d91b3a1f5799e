"""Request and response bodies of the JSON API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

Role = Literal["worker", "ergonomist", "admin"]
LoadClass = Literal["low", "medium", "high"]

# Row ids are INTEGER columns, 32 bits on PostgreSQL: an id outside 1..MAX_ID names nothing, and
# handing it to the database driver fails (SQLite: OverflowError past 64 bits; PostgreSQL: out of
# range past 32), so path and body ids refuse it up front (422).
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# Times in bodies are unix seconds as the device counts them (u32, docs/protocol.md).
UnixSeconds = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # The store writes UTC; SQLite hands it back without its offset.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


# A moment in an answer: always with its offset, as RFC 3339 (OpenAPI's date-time) wants.
UtcDateTime = Annotated[dt.datetime, AfterValidator(_as_utc)]

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    # pydantic would also take "0" or "1700000000" (unix seconds) for a date; the API's days are
    # YYYY-MM-DD only, as the schema says.
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError(f"a day is written YYYY-MM-DD, not {value[:40]!r}")
    return value


# A day in a path or query: YYYY-MM-DD.
Day = Annotated[dt.date, BeforeValidator(_iso_day)]


class In(BaseModel):
    """A request body: JSON types as the schema gives them (no `false` for 0, no "3" for 3)."""

    model_config = ConfigDict(strict=True)


class ErrorOut(BaseModel):
    """Every error answer: one sentence saying what was wrong."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """A 422: the readable sentence, and from request validation the machine-readable list."""

    detail: str
    errors: list[ValidationIssue] | None = None


class Orm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- auth ----------------------------------------------------------------------------------------


class LoginIn(In):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class UserOut(Orm):
    id: int
    email: str
    role: Role
    worker_id: int | None
    team_ids: list[int] = []
    active: bool = True


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: UtcDateTime
    user: UserOut


class SessionOut(Orm):
    """One of a user's tokens (a login, a dashboard session or a token from the command line);
    never the token itself."""

    id: int
    created_at: UtcDateTime
    expires_at: UtcDateTime
    current: bool = Field(description="The token this request was made with")


class AgentIn(In):
    name: str = Field(min_length=1, max_length=200, description="Which sync agent: the PC, its place")


class AgentOut(Orm):
    """A sync agent's upload token as the API shows it: never the token itself."""

    id: int
    name: str
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    revoked: bool


class AgentTokenOut(AgentOut):
    """A new agent token: shown once, only its hash is kept."""

    token: str


class UserIn(In):
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    worker_id: Id | None = None
    team_ids: list[Id] = []


# ---- organisations, teams, workers ----------------------------------------------------------------


class OrganisationIn(In):
    name: str = Field(min_length=1, max_length=200)


class OrganisationOut(Orm):
    id: int
    name: str


class TeamIn(In):
    organisation_id: Id
    name: str = Field(min_length=1, max_length=200)


class TeamOut(Orm):
    id: int
    organisation_id: int
    name: str


class WorkerIn(In):
    name: str = Field(min_length=1, max_length=200)
    team_id: Id | None = None
    timezone: str | None = Field(default=None, description="IANA time zone; default: the server's setting")


class WorkerOut(Orm):
    id: int
    name: str
    team_id: int | None
    timezone: str


class WorkerExportOut(BaseModel):
    """Everything stored about a worker (companion.datarights.export_worker); times as ISO 8601
    with their offset, histograms as seconds per bin, raw records as hex."""

    format: str
    exported_at: str
    worker: dict[str, Any]
    logins: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    devices: dict[str, Any]
    settings: dict[str, Any] | None
    daily_exposure: list[dict[str, Any]]
    task_segments: list[dict[str, Any]]
    minute_summaries: list[dict[str, Any]]
    events: list[dict[str, Any]]
    records: list[dict[str, Any]]


class ErasureOut(BaseModel):
    """What erasing a worker deleted: rows per table, and the devices taken out of service."""

    worker_id: int
    deleted: dict[str, int]
    devices_revoked: list[str]


# ---- devices ---------------------------------------------------------------------------------------


class DeviceIn(In):
    device_id: str = Field(min_length=1, max_length=64)
    key_hex: str = Field(description="The device's HMAC key, 16..64 bytes as hex (write-only)")
    worker_id: Id | None = None


class DeviceKeyIn(In):
    key_hex: str = Field(description="The new key, 16..64 bytes as hex (write-only)")


class DeviceAssignIn(In):
    worker_id: Id | None


class DeviceOut(Orm):
    """A device as the API shows it: never its key, only whether it has one."""

    device_id: str
    worker_id: int | None
    has_key: bool
    revoked: bool
    last_sync: UtcDateTime | None
    battery_mv: int | None
    battery_percent: int | None
    contiguous_seq: int | None
    settings_pending: bool
    confirmed_config_crc: int | None


# ---- exposure --------------------------------------------------------------------------------------


class DayOut(BaseModel):
    worker_id: int
    date: dt.date
    computed_at: UtcDateTime | None
    metrics: dict[str, Any] | None = Field(
        description="The metrics of docs/metrics.md (exposure.daily_exposure)"
    )


class TeamWorkerSummary(BaseModel):
    worker_id: int
    name: str
    days: int
    worn_h: float
    flexion_above_20_pct: float | None
    flexion_above_60_pct: float | None
    flexion_p50_deg: float | None
    flexion_p90_deg: float | None
    holding_time_violations: int
    alerts: int
    alert_corrected_pct: float | None


class TeamSummaryOut(BaseModel):
    team_id: int
    date_from: dt.date
    date_to: dt.date
    workers: list[TeamWorkerSummary]
    team: TeamWorkerSummary = Field(description="All the team's worker-days together (worker_id 0)")


class MinuteOut(BaseModel):
    start_s: int
    worn_s: int
    flexion_p50_deg: float | None
    flexion_p90_deg: float | None
    flexion_above_20_s: int
    alerts: int
    dominant_activity: str | None
    flexion_bins_s: list[int] | None = Field(
        default=None, description="Seconds per 5° flexion bin (protocol.ANGLE_EDGES_DEG), with ?bins=true"
    )


class SegmentOut(Orm):
    id: int
    worker_id: int
    task_id: int
    start_s: int
    end_s: int
    source: Literal["button", "api", "inferred"]


class TimelineOut(BaseModel):
    worker_id: int
    date: dt.date
    timezone: str
    day_start_s: int
    day_end_s: int
    minutes: list[MinuteOut]
    alerts: list[dict[str, Any]]
    segments: list[SegmentOut]


# ---- worker settings -------------------------------------------------------------------------------


class WorkerSettingsBody(In):
    """A worker's alert settings (each None/absent = leave as it is / device default)."""

    model_config = ConfigDict(extra="forbid")

    alert_threshold_deg: int | None = None
    alert_hold_s: int | None = None
    quiet_start_min: int | None = None
    quiet_end_min: int | None = None
    alert_snooze_s: int | None = None


class Range(In):
    lo: int
    hi: int


class WorkerLimitsBody(In):
    """Inclusive ranges within which the worker may change each setting themselves."""

    model_config = ConfigDict(extra="forbid")

    alert_threshold_deg: Range | None = None
    alert_hold_s: Range | None = None
    quiet_start_min: Range | None = None
    quiet_end_min: Range | None = None
    alert_snooze_s: Range | None = None


class WorkerSettingsOut(BaseModel):
    worker_id: int
    values: dict[str, int]
    limits: dict[str, Range]
    pending_devices: list[str] = Field(description="Devices that receive these settings at their next sync")


# ---- rotation ----------------------------------------------------------------------------------------


class TaskIn(In):
    name: str = Field(min_length=1, max_length=200)
    load_class: LoadClass
    team_id: Id | None = Field(default=None, description="None: shared by every team (admin only)")


class TaskOut(Orm):
    id: int
    name: str
    load_class: LoadClass
    team_id: int | None


class PolicyIn(In):
    max_task_min: int | None = Field(default=None, ge=1, le=24 * 60)
    max_high_load_min: int | None = Field(default=None, ge=1, le=24 * 60)
    min_profile_change_deg: float = Field(default=5.0, ge=0, le=90)


class PolicyOut(Orm):
    team_id: int
    max_task_min: int | None
    max_high_load_min: int | None
    min_profile_change_deg: float


class SegmentIn(In):
    task_id: Id
    start_s: UnixSeconds
    end_s: UnixSeconds


# ---- ingest ------------------------------------------------------------------------------------------


class IngestIn(In):
    device_id: str = Field(min_length=1, max_length=64)
    frames_b64: str
    batch_mac_b64: str | None = None


class IngestOut(BaseModel):
    stored: int
    duplicates: int
    contiguous_seq: int | None
