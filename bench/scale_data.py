"""A year of wearers' data in the companion's own migrated schema, inserted in bulk (what the
scale bench queries).

Per wearer and workday: WORN_MINUTES minute summaries from 07:00 UTC, a posture bout every ten
minutes and an alert every 97 (as bench/ingest.py's device day), one raw record per row (the
store keeps every record the device framed), and the worker-day's daily exposure, computed once
by companion.exposure and copied to every worker-day (the dashboard reads it, it never looks at
the numbers).  Histograms are drawn from a pool of random ones: the queries never look inside.

SQLite takes the rows by ``executemany``, PostgreSQL by ``COPY``: both in one transaction per
wearer, so a wearer's year costs a few seconds, not the hours row-by-row ORM inserts would."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import protocol
from companion import exposure
from companion.store import Device, Organisation, Team, Worker, session_scope
from companion.store.models import DailyExposure, utc_now

WORN_MINUTES = 480
FIRST_DAY = dt.date(2026, 1, 5)  # a Monday
DAY_START_S = 7 * 3600
TEAM_SIZE = 25  # wearers per team: an ergonomist's dashboard shows one team
BOUT_EVERY_MIN = 10
ALERT_EVERY_MIN = 97
KEY = bytes(range(32))

MINUTE_COLUMNS = (
    "device_pk", "worker_id", "seq", "start_s", "worn_s", "flexion_bins", "inclination_bins",
    "lateral_bins", "activity_s", "alert_count", "longest_bout_s", "mean_velocity_ddps", "curvature_mean_ddeg",
)  # fmt: skip
RECORD_COLUMNS = ("device_pk", "seq", "rtype", "payload", "crc", "received_at")
EVENT_COLUMNS = ("device_pk", "worker_id", "seq", "rtype", "time_s", "fields")
EXPOSURE_COLUMNS = ("worker_id", "day", "metrics", "schema_version", "dirty", "computed_at")


def workdays(n: int) -> list[dt.date]:
    """The first `n` Monday-to-Friday days from FIRST_DAY."""
    days: list[dt.date] = []
    day = FIRST_DAY
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def day_start_s(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) + DAY_START_S


@dataclass
class Wearers:
    team_ids: list[int]
    worker_ids: list[int]
    device_pks: list[int]  # device_pks[i] is worn by worker_ids[i]


def teams_of_wearers(session: Session, n: int, org_name: str, prefix: str) -> tuple[list[Team], list[Device]]:
    """`n` wearers (a worker each, wearing device `<prefix>00042` with KEY) in teams of TEAM_SIZE
    of one organisation, flushed: their ids are set."""
    org = Organisation(name=org_name)
    teams = [Team(organisation=org, name=f"team {t:04d}") for t in range(-(-n // TEAM_SIZE))]
    devices = [
        Device(
            device_id=f"{prefix}{i:05d}", key=KEY, worker=Worker(team=teams[i // TEAM_SIZE], name=f"W{i:05d}")
        )
        for i in range(n)
    ]
    session.add_all(devices)
    session.flush()
    return teams, devices


def add_wearers(engine: Engine, n: int) -> Wearers:
    with session_scope(engine) as session:
        teams, devices = teams_of_wearers(session, n, "scale", "S")
        return Wearers([t.id for t in teams], [d.worker_id or 0 for d in devices], [d.id for d in devices])


class RowPool:
    """Templates the rows are drawn from: real encodings, computed once."""

    def __init__(self, rng: np.random.Generator) -> None:
        hist = np.zeros((256, protocol.ANGLE_BINS), np.uint8)
        for row in hist:
            centre = int(rng.integers(1, protocol.ANGLE_BINS - 3))
            row[centre : centre + 3] = (20, 30, 10)
        self.bins = [bytes(r) for r in hist]
        self.lateral = bytes([0, 5, 50, 5, 0])
        self.activity = bytes([0, 50, 10, 0, 0])
        flex = [int(v) for v in hist[0]]
        self.minute_payload = protocol.encode_minute2(
            0, 60, [0, 50, 10, 0, 0], [0, 5, 50, 5, 0], flex, flex, 0, 12
        )
        self.bout_payload = protocol.encode_event(protocol.BOUT, 0, 40, 280, 350)
        self.alert_payload = protocol.encode_event(
            protocol.ALERT, 0, 4, 310, 6, 0, protocol.OUTCOME_CORRECTED
        )
        self.bout_fields = json.dumps(protocol.decode_payload(protocol.BOUT, self.bout_payload))
        self.alert_fields = json.dumps(protocol.decode_payload(protocol.ALERT, self.alert_payload))


def wearer_rows(
    pool: RowPool,
    rng: np.random.Generator,
    device_pk: int,
    worker_id: int,
    days: list[dt.date],
    received: Any,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(minute summaries, events, records) of one wearer's `days`; seqs run on across days."""
    minutes: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    records: list[tuple[Any, ...]] = []
    bouts = range(3, WORN_MINUTES, BOUT_EVERY_MIN)
    alerts = range(0, WORN_MINUTES, ALERT_EVERY_MIN)
    per_day = WORN_MINUTES + len(bouts) + len(alerts)
    picks = rng.integers(0, len(pool.bins), size=(len(days), WORN_MINUTES, 2)).tolist()
    for d, day in enumerate(days):
        t0 = day_start_s(day)
        seq0 = 1 + d * per_day
        pick = picks[d]
        minutes += [
            (device_pk, worker_id, seq0 + m, t0 + 60 * m, 60, pool.bins[pick[m][0]], pool.bins[pick[m][1]],
             pool.lateral, pool.activity, int(m % ALERT_EVERY_MIN == 0), 12, 150, None)
            for m in range(WORN_MINUTES)
        ]  # fmt: skip
        records += [
            (device_pk, seq0 + m, protocol.MINUTE2, pool.minute_payload, 0, received)
            for m in range(WORN_MINUTES)
        ]
        seq = seq0 + WORN_MINUTES
        for kind, rtype, payload, fields, at in (
            ("bout", protocol.BOUT, pool.bout_payload, pool.bout_fields, bouts),
            ("alert", protocol.ALERT, pool.alert_payload, pool.alert_fields, alerts),
        ):
            for m in at:
                events.append((device_pk, worker_id, seq, kind, t0 + 60 * m + 5, fields))
                records.append((device_pk, seq, rtype, payload, 0, received))
                seq += 1
    return minutes, events, records


Writer = Callable[[str, tuple[str, ...], list[tuple[Any, ...]]], None]


@contextmanager
def _bulk_writer(engine: Engine) -> Iterator[tuple[Any, Writer]]:
    """(DB-API connection, write(table, columns, rows)) for the engine's backend."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        if engine.dialect.name == "postgresql":

            def write(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
                with (
                    driver.cursor() as cur,
                    cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)

        else:

            def write(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
                marks = ", ".join("?" * len(columns))
                driver.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # type: ignore[union-attr]

        yield driver, write
    finally:
        raw.close()


def fill(engine: Engine, wearers: Wearers, n_days: int, advance: Callable[[], None]) -> dict[str, int]:
    """Every wearer's `n_days` of rows, one transaction per wearer; the row counts."""
    rng = np.random.default_rng(11)
    pool = RowPool(rng)
    days = workdays(n_days)
    # sqlite3 would store a datetime with a "+00:00" that SQLAlchemy's SQLite dialect does not write.
    now: Any = utc_now()
    if engine.dialect.name == "sqlite":
        now = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    counts = {"minute_summaries": 0, "events": 0, "records": 0, "daily_exposure": 0}
    with _bulk_writer(engine) as (driver, write):
        for device_pk, worker_id in zip(wearers.device_pks, wearers.worker_ids, strict=True):
            minutes, events, records = wearer_rows(pool, rng, device_pk, worker_id, days, now)
            write("records", RECORD_COLUMNS, records)
            write("minute_summaries", MINUTE_COLUMNS, minutes)
            write("events", EVENT_COLUMNS, events)
            driver.commit()
            counts["minute_summaries"] += len(minutes)
            counts["events"] += len(events)
            counts["records"] += len(records)
            advance()
        # One real worker-day's exposure, copied to every other worker-day.
        first = wearers.worker_ids[0]
        with session_scope(engine) as session:
            exposure.recompute_daily_exposure(session, first, [days[0]])
        with session_scope(engine) as session:
            metrics = session.scalars(select(DailyExposure.metrics)).one()
        text = json.dumps(metrics)
        rows = [
            (w, day, text, exposure.SCHEMA_VERSION, False, now)
            for w in wearers.worker_ids
            for day in days
            if (w, day) != (first, days[0])
        ]
        write("daily_exposure", EXPOSURE_COLUMNS, rows)
        driver.commit()
        counts["daily_exposure"] = len(rows) + 1
    return counts
