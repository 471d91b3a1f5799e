"""Ingest throughput: records/s through companion.ingest.ingest_batch (decode, HMAC, replay
check, store, and the daily exposure marked dirty, as POST /api/ingest runs it before answering;
or recomputed in the same transaction, as a local ``posture sync --db`` does) against raw
``sqlite3.executemany`` of the same rows in the same run, both on SQLite files, one transaction
per batch.

The same rows (the headline ratio, "floor"): every row ingest_batch writes -- records, minute
summaries, events -- decoded beforehand and put into the store's own migrated schema (its
indexes, foreign keys on) by straight executemany: the database work alone, so 1× is the most
any ingest into this schema can reach.  A secondary ratio is against raw executemany of the
records rows only into a one-table equivalent ("raw", the baseline until 2026-11): half the rows,
so the database does about a third of the work.

The data are what the firmware writes: MINUTE2 minute summaries (protocol.encode_minute2; MINUTE
until 2026-11, so figures from before are not comparable), a bout every ten minutes, an alert
every 97.

    python -m bench ingest
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import protocol
from bench import BenchResult
from companion.batch_decode import decode_batch
from companion.ingest import batch_mac, ingest_batch
from companion.store import Device, Organisation, Team, Worker, open_store, session_factory, session_scope

DEVICES = 4
DAYS = 5
WORN_MINUTES = 8 * 60
BATCH_RECORDS = 240  # about four hours of a desk worker's records: one sync's worth per batch
DAY0_S = 1_767_225_600 + 7 * 3600  # 2026-01-01 07:00 UTC
KEY = bytes(range(32))
REPEATS = 3


def device_day_records(rng: np.random.Generator, first_seq: int, start_s: int) -> list[bytes]:
    """A worn day's framed records: MINUTE2 minute summaries plus bouts and alerts (~10 % events)."""
    out: list[bytes] = []
    seq = first_seq
    for m in range(WORN_MINUTES):
        t = start_s + 60 * m
        flex = [0] * protocol.ANGLE_BINS
        centre = int(rng.integers(1, 12))
        for b, s in zip(range(centre, centre + 3), (20, 30, 10), strict=True):
            flex[b] = s
        payload = protocol.encode_minute2(
            t, 60, [0, 50, 10, 0, 0], [0, 5, 50, 5, 0], flex, flex, int(m % 97 == 0), int(rng.integers(0, 30))
        )
        out.append(protocol.encode_record(seq, protocol.MINUTE2, payload))
        seq += 1
        if m % 10 == 3:
            bout = protocol.encode_event(protocol.BOUT, t + 5, int(rng.integers(5, 200)), 280, 350)
            out.append(protocol.encode_record(seq, protocol.BOUT, bout))
            seq += 1
        if m % 97 == 0:
            alert = protocol.encode_event(protocol.ALERT, t + 20, 4, 310, 6, 0, protocol.OUTCOME_CORRECTED)
            out.append(protocol.encode_record(seq, protocol.ALERT, alert))
            seq += 1
    return out


def build_batches() -> dict[str, list[bytes]]:
    rng = np.random.default_rng(7)
    batches: dict[str, list[bytes]] = {}
    for d in range(DEVICES):
        records: list[bytes] = []
        for day in range(DAYS):
            records += device_day_records(rng, len(records), DAY0_S + 86_400 * day)
        batches[f"D{d:03d}"] = [
            b"".join(records[i : i + BATCH_RECORDS]) for i in range(0, len(records), BATCH_RECORDS)
        ]
    return batches


def run_companion(batches: dict[str, list[bytes]], url: str, recompute: bool) -> tuple[float, int]:
    engine = open_store(url)
    with session_scope(engine) as session:
        org = Organisation(name="bench")
        team = Team(organisation=org, name="bench")
        for device_id in batches:
            session.add(Device(device_id=device_id, key=KEY, worker=Worker(team=team, name=device_id)))
    macs = {d: [batch_mac(KEY, d, b) for b in bs] for d, bs in batches.items()}
    factory = session_factory(engine)
    stored = 0
    t0 = time.perf_counter()
    for device_id, device_batches in batches.items():
        for data, mac in zip(device_batches, macs[device_id], strict=True):
            with factory() as session:
                stored += ingest_batch(session, device_id, data, mac, recompute=recompute).new
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed, stored


def run_raw_sqlite(batches: dict[str, list[bytes]], path: Path) -> tuple[float, int]:
    """The one-table baseline: ingest's records rows only, no decoding, straight executemany."""
    rows_per_batch: list[list[tuple[Any, ...]]] = []
    for pk, device_batches in enumerate(batches.values(), start=1):
        for data in device_batches:
            b = decode_batch(data)
            rows_per_batch.append(
                [
                    (pk, seq, rtype, payload, crc, "2026-01-01 00:00:00.000000")
                    for seq, rtype, payload, crc in zip(b.seq, b.rtype, b.payload, b.crc, strict=True)
                ]
            )
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE records (id INTEGER PRIMARY KEY, device_pk INTEGER NOT NULL, seq BIGINT NOT NULL, "
        "rtype SMALLINT NOT NULL, payload BLOB NOT NULL, crc BIGINT NOT NULL, received_at DATETIME NOT NULL, "
        "UNIQUE (device_pk, seq))"
    )
    conn.commit()
    stored = 0
    t0 = time.perf_counter()
    for rows in rows_per_batch:
        with conn:
            conn.executemany(
                "INSERT INTO records (device_pk, seq, rtype, payload, crc, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        stored += len(rows)
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, stored


_FLOOR_INSERTS = (
    "INSERT INTO records (device_pk, seq, rtype, payload, crc, received_at) VALUES (?, ?, ?, ?, ?, ?)",
    "INSERT INTO minute_summaries (device_pk, worker_id, seq, start_s, worn_s, flexion_bins, inclination_bins, "
    "lateral_bins, activity_s, alert_count, longest_bout_s, mean_velocity_ddps, curvature_mean_ddeg) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT INTO events (device_pk, worker_id, seq, rtype, time_s, fields) VALUES (?, ?, ?, ?, ?, ?)",
)


def run_floor(batches: dict[str, list[bytes]], path: Path) -> tuple[float, int]:
    """The floor: every row ingest_batch writes, decoded beforehand, into the store's schema by
    straight executemany (no checks, no replay query, no ACK, no daily-exposure marks)."""
    engine = open_store(f"sqlite:///{path}")
    with session_scope(engine) as session:
        org = Organisation(name="bench")
        team = Team(organisation=org, name="bench")
        for device_id in batches:
            session.add(Device(device_id=device_id, key=KEY, worker=Worker(team=team, name=device_id)))
    engine.dispose()
    received_at = "2026-01-01 00:00:00.000000"
    tables_per_batch: list[tuple[list[tuple[Any, ...]], ...]] = []
    for pk, device_batches in enumerate(batches.values(), start=1):  # device pk = worker id = pk
        for data in device_batches:
            b = decode_batch(data)
            m, e = b.minutes, b.events
            records = [(pk, *row, received_at) for row in zip(b.seq, b.rtype, b.payload, b.crc, strict=True)]
            minutes = [
                (pk, pk, *row)
                for row in zip(
                    m.seq, m.start_s, m.worn_s, m.flexion_bins, m.inclination_bins, m.lateral_bins,
                    m.activity_s, m.alert_count, m.longest_bout_s, m.mean_velocity_ddps, m.curvature_mean_ddeg,
                    strict=True,
                )
            ]  # fmt: skip
            events = [
                (pk, pk, seq, protocol.RECORD_NAMES[rtype], time_s, json.dumps(fields))
                for seq, rtype, time_s, fields in zip(e.seq, e.rtype, e.time_s, e.fields, strict=True)
            ]
            tables_per_batch.append((records, minutes, events))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys=ON")  # as the store's connections have it
    stored = 0
    t0 = time.perf_counter()
    for tables in tables_per_batch:
        with conn:
            for sql, rows in zip(_FLOOR_INSERTS, tables, strict=True):
                conn.executemany(sql, rows)
        stored += len(tables[0])
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, stored


def measure(batches: dict[str, list[bytes]], folder: str | None) -> dict[str, tuple[float, int]]:
    """Best of REPEATS interleaved runs of each path, on fresh files in `folder`."""
    best: dict[str, tuple[float, int]] = {}

    def keep(name: str, result: tuple[float, int]) -> None:
        if name not in best or result[0] < best[name][0]:
            best[name] = result

    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory(prefix="posture-bench-ingest-", dir=folder) as tmp:
            keep("raw", run_raw_sqlite(batches, Path(tmp) / "raw.db"))
            keep("floor", run_floor(batches, Path(tmp) / "floor.db"))
            keep("full", run_companion(batches, f"sqlite:///{Path(tmp) / 'full.db'}", recompute=True))
            keep("store", run_companion(batches, f"sqlite:///{Path(tmp) / 'store.db'}", recompute=False))
    return best


PATHS = (
    ("floor", "raw executemany of the same rows (all ingest writes)"),
    ("raw", "raw executemany of the records rows only, one table"),
    ("store", "ingest_batch as POST /api/ingest runs it (exposure after the answer)"),
    ("full", "ingest_batch + daily exposure in one transaction (local sync: store_uploader)"),
)


def run(progress: Any = None) -> BenchResult:
    # In memory-backed files (/dev/shm) fsync is free: the ratio measures the work itself.
    # On disk, commit (fsync) time dominates both and varies from run to run.
    places = [("tmpfs", "/dev/shm"), ("disk", None)] if Path("/dev/shm").is_dir() else [("disk", None)]
    task = progress.add_task("ingest", total=len(places) + 1) if progress is not None else None

    def step() -> None:
        if progress is not None:
            progress.update(task, advance=1)

    batches = build_batches()
    n_batches = sum(len(b) for b in batches.values())
    step()
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {"batches": n_batches}
    for place, folder in places:
        best = measure(batches, folder)
        step()
        counts = {n for _, n in best.values()}
        assert len(counts) == 1, best
        figures["records"] = counts.pop()
        floor_rate = best["floor"][1] / best["floor"][0]
        raw_rate = best["raw"][1] / best["raw"][0]
        for key, label in PATHS:
            seconds, n = best[key]
            rate = n / seconds
            rows.append([place, label, n, seconds, rate, rate / floor_rate, rate / raw_rate])
            figures[f"{place}_{key}_records_per_s"] = round(rate)
            if key != "floor":
                figures[f"{place}_{key}_ratio_vs_same_rows"] = round(rate / floor_rate, 3)
            if key != "raw":
                figures[f"{place}_{key}_ratio_vs_raw"] = round(rate / raw_rate, 3)
    # The headline: what an upload costs before its answer, on files on disk as the companion
    # keeps them.
    headline = "disk" if any(place == "disk" for place, _ in places) else places[0][0]
    figures["ingest_ratio_vs_same_rows"] = figures[f"{headline}_store_ratio_vs_same_rows"]
    return BenchResult(
        title=f"Ingest: {DEVICES} devices × {DAYS} days, {n_batches} batches of ≤{BATCH_RECORDS} records",
        columns=["files on", "path", "records", "seconds", "records/s", "ratio vs same rows", "vs one table"],
        rows=rows,
        figures=figures,
        notes=[
            "Headline (ingest_ratio_vs_same_rows, target >= 0.5): an upload as POST /api/ingest runs it, "
            "files on disk. The API answers once the rows are stored and marks the days they touch dirty; "
            "their exposure is recomputed after the answer (the 'full' row prices both together).",
            "Same rows (the baseline): every row ingest_batch writes (records, minute "
            "summaries, events) into the store's schema and indexes by sqlite3.executemany, decoded "
            f"beforehand, one transaction per batch -- the database work alone. Best of {REPEATS} "
            "interleaved runs each.",
            "One table (secondary): the records rows only, into a table of the records table's shape: half "
            "the rows, a third of the database work.",
            "ingest_batch decodes and CRC-checks every record (companion.batch_decode), verifies the batch "
            "HMAC, checks replays, writes records + minute summaries + events, advances the ACK seq and "
            "recomputes (or marks dirty) the touched worker-days. Data: MINUTE2 minutes (MINUTE before "
            "2026-11: earlier figures are not comparable).",
        ],
    )
