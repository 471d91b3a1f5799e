"""Sync cost of a work-day: frames and bytes per worn hour, modelled airtime, and the wall time of
the real end-to-end sync in the emulator.

    python -m bench sync

The firmware (real micropython, emulated board) wears an office day, then goes on the charger
and the production sync agent (bleak on a bumble virtual link, MTU 247) pulls the log into a
fresh companion database.  Counted on the link: every notification the board sent.  Airtime:
bench/airtime.py's connection-interval model applied to those notifications, next to the same
records at the default MTU 23 without data-length extension (the baseline a central that skips
the MTU exchange would get).  Wall time: the emulator's session (connect to done), next to the
in-process ingest of the same records without a radio (the same run's baseline).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

import protocol
from bench import BenchResult, one_device_store
from bench.airtime import LinkModel, session_time
from companion.sync.session import DEFAULT_WINDOW

HOURS = 8.0
SEED = 21


def run(progress: Progress) -> BenchResult:
    from companion.ingest import ingest_batch
    from companion.store import MinuteSummary, session_scope
    from companion.sync.emulated import sync_into_store
    from emulator.scenarios import generate
    from emulator.workday import Wearer, run_day

    task = progress.add_task("generating the day", total=HOURS * 3600 + 300)
    recording = generate("office-day", seed=SEED, hours=HOURS)
    key = secrets.token_bytes(32)
    sent: list[bytes] = []

    def count(_conn: int, data: bytes) -> bool:
        sent.append(bytes(data))
        return False  # never drop: a clean link

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        engine = one_device_store(work / "companion.db", "B001", key)
        progress.update(task, description="wearing (firmware in micropython)")
        wearer = Wearer("B001", key, recording, 1_767_600_000)
        day = run_day(
            wearer,
            work / "board",
            sync_into_store(engine, "B001"),
            progress=lambda t: progress.update(task, completed=t),
            configure_link=lambda radio: setattr(radio, "drop_link_before", count),
        )
        stats: Any = day.host
        with session_scope(engine) as session:
            minutes = session.query(MinuteSummary).count()

        # Baseline: the same framed records ingested in-process, no radio, fresh database.
        frames = [n for n in sent if n[0] in (protocol.FRAME_RECORDS, protocol.FRAME_PART, protocol.FRAME_PART_END)]
        records = protocol.unpack_data_frames(frames) if frames else []
        engine2 = one_device_store(work / "baseline.db", "B001", key)
        t0 = time.perf_counter()
        with session_scope(engine2) as session:
            blob = b"".join(records)
            ingest_batch(session, "B001", blob, protocol.batch_mac(key, "B001", blob))
        ingest_s = time.perf_counter() - t0

    worn_h = minutes / 60.0 if minutes else HOURS
    data_sizes = [len(n) for n in frames]
    batches = sum(1 for n in sent if n[0] == protocol.FRAME_BATCH_END)
    ours = session_time(data_sizes, batches)
    small = protocol.pack_data_frames(records, 23)
    small_batches = max(1, -(-len(small) // DEFAULT_WINDOW))
    baseline = session_time([len(f) for f in small], small_batches, LinkModel())
    record_bytes = sum(len(r) for r in records)
    figures = {
        "records": len(records),
        "worn_hours": round(worn_h, 2),
        "frames_per_worn_hour": round(len(frames) / worn_h, 1),
        "bytes_per_worn_hour": round(sum(data_sizes) / worn_h, 1),
        "record_bytes_per_worn_hour": round(record_bytes / worn_h, 1),
        "notifications": len(sent),
        "batches": batches,
        "airtime_workday_s": round(ours.total_s, 3),
        "airtime_workday_mtu23_s": round(baseline.total_s, 3),
        "airtime_ratio_vs_mtu23": round(ours.total_s / baseline.total_s, 3),
        "radio_on_air_s": round(ours.on_air_s, 4),
        "e2e_sync_wall_s": round(stats.session_s, 3),
        "ingest_only_wall_s": round(ingest_s, 4),
        "e2e_over_ingest": round(stats.session_s / ingest_s, 1) if ingest_s else None,
        "records_lost": len(records) - stats.records,
    }
    rows = [
        ["records in the day's log", len(records), "", ""],
        ["data frames / worn hour", figures["frames_per_worn_hour"], "", ""],
        ["notification bytes / worn hour", figures["bytes_per_worn_hour"], "", ""],
        ["airtime to sync the day, model (s)", figures["airtime_workday_s"], figures["airtime_workday_mtu23_s"], "< 5"],
        ["end-to-end sync wall time, emulator (s)", figures["e2e_sync_wall_s"], figures["ingest_only_wall_s"], ""],
    ]
    return BenchResult(
        title=f"sync of a {HOURS:g} h office day (MTU 247, {batches} batches)",
        columns=["figure", "ours", "same-run baseline", "target"],
        rows=rows,
        figures=figures,
        notes=[
            "airtime baseline: the same records at MTU 23 without data-length extension",
            "wall-time baseline: ingesting the same records in-process, without a radio",
            "model: 30 ms connection interval, 4 PDUs per event, 2 intervals per round trip (bench/airtime.py)",
        ],
    )
