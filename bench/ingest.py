"""Ingest throughput: records/s through companion.ingest.ingest_batch (decode, HMAC, replay
check, store, daily-exposure recompute) against raw ``sqlite3.executemany`` of the same record
rows into an equivalent table, both on SQLite files in the same run, one transaction per batch.

A second reference, the floor, is raw ``sqlite3.executemany`` of every row ingest_batch writes
(records, minute summaries, events) into the store's own migrated schema: the database work
alone, so the ratio no ingest into this schema can beat.

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
from companion.ingest import batch_mac, decode_batch, ingest_batch
from companion.store import Device, Organisation, Team, Worker, open_store, session_factory, session_scope

DEVICES = 4
DAYS = 5
WORN_MINUTES = 8 * 60
BATCH_RECORDS = 240  # about four hours of a desk worker's records: one sync's worth per batch
DAY0_S = 1_767_225_600 + 7 * 3600  # 2026-01-01 07:00 UTC
KEY = bytes(range(32))
REPEATS = 3


def device_day_records(rng: np.random.Generator, first_seq: int, start_s: int) -> list[bytes]:
    """A worn day's framed records: minute summaries plus bouts and alerts (~10 % events)."""
    out: list[bytes] = []
    seq = first_seq
    for m in range(WORN_MINUTES):
        t = start_s + 60 * m
        flex = [0] * protocol.ANGLE_BINS
        centre = int(rng.integers(1, 12))
        for b, s in zip(range(centre, centre + 3), (20, 30, 10), strict=True):
            flex[b] = s
        payload = protocol.encode_minute(
            t, 60, [0, 50, 10, 0, 0], [0, 5, 50, 5, 0], flex, flex, int(m % 97 == 0), int(rng.integers(0, 30))
        )
        out.append(protocol.encode_record(seq, protocol.MINUTE, payload))
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
    """The baseline: the same record rows, no decoding, straight executemany."""
    rows_per_batch: list[list[tuple[Any, ...]]] = []
    for pk, device_batches in enumerate(batches.values(), start=1):
        for data in device_batches:
            rows_per_batch.append(
                [
                    (pk, r.seq, r.rtype, r.payload, r.crc, "2026-01-01 00:00:00.000000")
                    for r in decode_batch(data)
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
            records: list[tuple[Any, ...]] = []
            minutes: list[tuple[Any, ...]] = []
            events: list[tuple[Any, ...]] = []
            for r in decode_batch(data):
                records.append((pk, r.seq, r.rtype, r.payload, r.crc, received_at))
                f = r.fields
                if r.rtype in protocol.MINUTE_TYPES:
                    minutes.append(
                        (pk, pk, r.seq, f["start_s"], f["worn_s"], bytes(f["flexion_bins_s"]),
                         bytes(f["inclination_bins_s"]), bytes(f["lateral_bins_s"]), bytes(f["activity_s"]),
                         f["alert_count"], f["longest_bout_s"], f["mean_velocity_ddps"], f["curvature_mean_ddeg"])
                    )  # fmt: skip
                else:
                    time_s = f.get("start_s", f.get("time_s"))
                    events.append((pk, pk, r.seq, protocol.RECORD_NAMES[r.rtype], time_s, json.dumps(f)))
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
    ("raw", "raw sqlite3.executemany (baseline)"),
    ("floor", "raw executemany of all ingest's rows (floor)"),
    ("full", "ingest_batch + daily exposure"),
    ("store", "ingest_batch, recompute deferred"),
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
        raw_rate = best["raw"][1] / best["raw"][0]
        for key, label in PATHS:
            seconds, n = best[key]
            rate = n / seconds
            rows.append([place, label, n, seconds, rate, rate / raw_rate])
            figures[f"{place}_{key}_records_per_s"] = round(rate)
            if key != "raw":
                figures[f"{place}_{key}_ratio_vs_raw"] = round(rate / raw_rate, 3)
    return BenchResult(
        title=f"Ingest: {DEVICES} devices × {DAYS} days, {n_batches} batches of ≤{BATCH_RECORDS} records",
        columns=["files on", "path", "records", "seconds", "records/s", "ratio vs raw"],
        rows=rows,
        figures=figures,
        notes=[
            "Baseline: the same (device, seq, rtype, payload, crc, received_at) rows by sqlite3.executemany, "
            f"one transaction per batch, no decoding or checks. Target ratio >= 0.5. Best of {REPEATS} "
            "interleaved runs each.",
            "Floor: every row ingest_batch writes (records, minute summaries, events: ~2x the baseline's rows, "
            "into the store's schema and indexes) by sqlite3.executemany, decoded beforehand -- the ratio no "
            "ingest into this schema can exceed.",
            "ingest_batch decodes and CRC-checks every record once (protocol.decode_record_fields), verifies "
            "the batch HMAC, checks replays, writes records + minute summaries + events, advances the ACK seq "
            "and recomputes (or marks dirty) the touched worker-days.",
        ],
    )
