"""Request and response bodies of the JSON API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["worker", "ergonomist", "admin"]
LoadClass = Literal["low", "medium", "high"]


class Orm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- auth ----------------------------------------------------------------------------------------


class LoginIn(BaseModel):
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
    expires_at: dt.datetime
    user: UserOut


class UserIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    worker_id: int | None = None
    team_ids: list[int] = []


# ---- organisations, teams, workers ----------------------------------------------------------------


class OrganisationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrganisationOut(Orm):
    id: int
    name: str


class TeamIn(BaseModel):
    organisation_id: int
    name: str = Field(min_length=1, max_length=200)


class TeamOut(Orm):
    id: int
    organisation_id: int
    name: str


class WorkerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    team_id: int | None = None
    timezone: str | None = Field(default=None, description="IANA time zone; default: the server's setting")


class WorkerOut(Orm):
    id: int
    name: str
    team_id: int | None
    timezone: str


# ---- devices ---------------------------------------------------------------------------------------


class DeviceIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    key_hex: str = Field(description="The device's HMAC key, 16..64 bytes as hex (write-only)")
    worker_id: int | None = None


class DeviceKeyIn(BaseModel):
    key_hex: str = Field(description="The new key, 16..64 bytes as hex (write-only)")


class DeviceAssignIn(BaseModel):
    worker_id: int | None


class DeviceOut(Orm):
    """A device as the API shows it: never its key, only whether it has one."""

    device_id: str
    worker_id: int | None
    has_key: bool
    revoked: bool
    last_sync: dt.datetime | None
    battery_mv: int | None
    battery_percent: int | None
    contiguous_seq: int | None
    settings_pending: bool
    confirmed_config_crc: int | None


# ---- exposure --------------------------------------------------------------------------------------


class DayOut(BaseModel):
    worker_id: int
    date: dt.date
    computed_at: dt.datetime | None
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


class WorkerSettingsBody(BaseModel):
    """A worker's alert settings (each None/absent = leave as it is / device default)."""

    model_config = ConfigDict(extra="forbid")

    alert_threshold_deg: int | None = None
    alert_hold_s: int | None = None
    quiet_start_min: int | None = None
    quiet_end_min: int | None = None
    alert_snooze_s: int | None = None


class Range(BaseModel):
    lo: int
    hi: int


class WorkerLimitsBody(BaseModel):
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


class TaskIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    load_class: LoadClass
    team_id: int | None = Field(default=None, description="None: shared by every team (admin only)")


class TaskOut(Orm):
    id: int
    name: str
    load_class: LoadClass
    team_id: int | None


class PolicyIn(BaseModel):
    max_task_min: int | None = Field(default=None, ge=1, le=24 * 60)
    max_high_load_min: int | None = Field(default=None, ge=1, le=24 * 60)
    min_profile_change_deg: float = Field(default=5.0, ge=0, le=90)


class PolicyOut(Orm):
    team_id: int
    max_task_min: int | None
    max_high_load_min: int | None
    min_profile_change_deg: float


class SegmentIn(BaseModel):
    task_id: int
    start_s: int = Field(ge=0)
    end_s: int = Field(ge=0)


# ---- ingest ------------------------------------------------------------------------------------------


class IngestIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    frames_b64: str
    batch_mac_b64: str | None = None


class IngestOut(BaseModel):
    stored: int
    duplicates: int
    contiguous_seq: int | None
