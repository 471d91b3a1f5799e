"""Idempotent, all-or-nothing ingest of record batches (companion.ingest).

Runs on SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (fixtures from
tests/test_store.py)."""

from __future__ import annotations

import datetime as dt
import gc
import threading

import numpy as np
import pytest
import sqlalchemy as sa
import test_store
from sqlalchemy import Engine
from test_exposure import minute_payloads_from_truth

import protocol
from companion.exposure import recompute_dirty, refresh_stale
from companion.ingest import (
    BatchAuthError,
    ConflictingReplay,
    MalformedBatch,
    UnknownDevice,
    batch_mac,
    ingest_batch,
)
from companion.store import DailyExposure, Device, Event, MinuteSummary, Record, session_factory
from emulator.scenarios import generate

# The store fixtures: these tests run on every backend test_store runs on.
db_url = test_store.db_url
engine = test_store.engine
add_worker_and_device = test_store.add_worker_and_device

KEY = bytes(range(32))
JAN1 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY_S = 86_400


def minute_payload(start_s: int, angle_deg: float, seconds: int = 60) -> bytes:
    bins = [0] * protocol.ANGLE_BINS
    bins[protocol.angle_bin(int(angle_deg * 10))] = seconds
    return protocol.encode_minute(start_s, seconds, [0, seconds, 0, 0, 0], [0, 0, seconds, 0, 0], bins, bins)


def frames(records: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(protocol.encode_record(seq, rtype, payload) for seq, rtype, payload in records)


def minutes_batch(first_seq: int, start_s: int, count: int, angle_deg: float = 25.0) -> bytes:
    return frames(
        [(first_seq + i, protocol.MINUTE, minute_payload(start_s + 60 * i, angle_deg)) for i in range(count)]
    )


def counts(engine: Engine) -> tuple[int, int, int]:
    with session_factory(engine)() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (Record, MinuteSummary, Event)
        )


SIGNED = b"sign with the device's key"


def ingest(engine: Engine, data: bytes, device_id: str = "W017", mac: bytes | None = SIGNED, **kw):
    """ingest_batch in a session of its own; the batch signed with the device's registered key
    (as the sync agent does) unless `mac` says otherwise."""
    if mac is SIGNED:
        with session_factory(engine)() as session:
            key = session.scalar(sa.select(Device.key).where(Device.device_id == device_id))
        mac = batch_mac(bytes(key), device_id, data) if key is not None else None
    with session_factory(engine)() as session:
        return ingest_batch(session, device_id, data, mac, **kw)


def exposure_of(engine: Engine, day: dt.date) -> DailyExposure | None:
    with session_factory(engine)() as session:
        return session.scalars(sa.select(DailyExposure).where(DailyExposure.day == day)).one_or_none()


# ---- storing and idempotency --------------------------------------------------------------------


def test_a_batch_is_stored_and_its_last_seq_acked(engine: Engine):
    add_worker_and_device(engine)
    bout = protocol.encode_event(protocol.BOUT, JAN1 + 60, 30, 300, 350)
    alert = protocol.encode_event(protocol.ALERT, JAN1 + 90, 5, 320, 4, 0, protocol.OUTCOME_CORRECTED)
    data = minutes_batch(0, JAN1, 5) + frames([(5, protocol.BOUT, bout), (6, protocol.ALERT, alert)])
    result = ingest(engine, data)
    assert (result.new, result.duplicate, result.contiguous_seq) == (7, 0, 6)
    assert counts(engine) == (7, 5, 2)
    with session_factory(engine)() as session:
        event = session.scalars(sa.select(Event).where(Event.rtype == "alert")).one()
        assert event.time_s == JAN1 + 90 and event.fields["time_to_correct_s"] == 4
        record = session.scalars(sa.select(Record).where(Record.seq == 5)).one()
        assert protocol.encode_record(5, record.rtype, record.payload)[-4:] == record.crc.to_bytes(
            4, "little"
        )


def test_replaying_a_batch_is_skipped_silently(engine: Engine):
    add_worker_and_device(engine)
    data = minutes_batch(0, JAN1, 10)
    ingest(engine, data)
    again = ingest(engine, data)
    assert (again.new, again.duplicate, again.contiguous_seq) == (0, 10, 9)
    assert counts(engine) == (10, 10, 0)


def test_an_overlapping_batch_stores_only_the_new_records(engine: Engine):
    add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1, 10))
    result = ingest(engine, minutes_batch(5, JAN1 + 300, 10))
    assert (result.new, result.duplicate, result.contiguous_seq) == (5, 5, 14)


def test_the_ack_stops_at_the_first_missing_seq_until_it_arrives(engine: Engine):
    add_worker_and_device(engine)
    assert ingest(engine, minutes_batch(0, JAN1, 5)).contiguous_seq == 4
    assert ingest(engine, minutes_batch(7, JAN1 + 420, 2)).contiguous_seq == 4
    assert ingest(engine, minutes_batch(5, JAN1 + 300, 2)).contiguous_seq == 8


def test_seqs_a_gap_record_declares_lost_count_as_acknowledged(engine: Engine):
    add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1, 5))
    gap = protocol.encode_event(protocol.GAP, JAN1 + 900, 5, 5)  # seqs 5..9 lost on the device
    assert ingest(engine, frames([(10, protocol.GAP, gap)])).contiguous_seq == 10


# ---- rejected batches store nothing -------------------------------------------------------------


def test_one_bad_crc_rejects_the_whole_batch(engine: Engine):
    add_worker_and_device(engine)
    good = [protocol.encode_record(i, protocol.MINUTE, minute_payload(JAN1 + 60 * i, 25)) for i in range(6)]
    bad = bytearray(good[3])
    bad[-1] ^= 0x40  # corrupt the CRC of record #3
    good[3] = bytes(bad)
    with pytest.raises(MalformedBatch, match=r"record #3 \(seq 3.*CRC mismatch"):
        ingest(engine, b"".join(good))
    assert counts(engine) == (0, 0, 0)
    with session_factory(engine)() as session:
        device = session.scalars(sa.select(Device)).one()
        assert device.contiguous_seq is None and device.last_sync is None
        assert session.scalar(sa.select(sa.func.count()).select_from(DailyExposure)) == 0


def test_a_truncated_batch_is_rejected(engine: Engine):
    add_worker_and_device(engine)
    data = minutes_batch(0, JAN1, 3)
    with pytest.raises(MalformedBatch, match="record #2"):
        ingest(engine, data[:-3])
    assert counts(engine) == (0, 0, 0)


def test_an_altered_replay_rejects_the_whole_batch(engine: Engine):
    add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1, 5, angle_deg=25))
    altered = minutes_batch(3, JAN1 + 180, 3, angle_deg=45)  # seqs 3, 4 differ; 5 is new
    with pytest.raises(ConflictingReplay, match="seq 3"):
        ingest(engine, altered)
    assert counts(engine) == (5, 5, 0)
    with session_factory(engine)() as session:
        assert session.scalar(sa.select(sa.func.max(Record.seq))) == 4


def test_a_batch_with_a_wrong_hmac_is_rejected(engine: Engine):
    add_worker_and_device(engine, key=KEY)
    data = minutes_batch(0, JAN1, 3)
    with pytest.raises(BatchAuthError, match="does not match"):
        ingest(engine, data, mac=batch_mac(b"another key", "W017", data))
    with pytest.raises(BatchAuthError, match="does not match"):
        ingest(engine, data, mac=batch_mac(KEY, "W018", data))  # signed for another device
    assert counts(engine) == (0, 0, 0)
    assert ingest(engine, data, mac=batch_mac(KEY, "W017", data)).new == 3


def test_an_unsigned_batch_is_rejected_by_default(engine: Engine):
    add_worker_and_device(engine, key=KEY)
    with pytest.raises(BatchAuthError, match="no HMAC"):
        ingest(engine, minutes_batch(0, JAN1, 3), mac=None)
    assert counts(engine) == (0, 0, 0)


def test_an_unsigned_batch_is_stored_only_where_hmacs_were_turned_off(engine: Engine):
    add_worker_and_device(engine, key=KEY)
    assert ingest(engine, minutes_batch(0, JAN1, 3), mac=None, require_hmac=False).new == 3


def test_batch_mac_is_hmac_sha256_over_context_id_and_frames():
    import hashlib
    import hmac

    expected = hmac.new(KEY, b"posture/batch/v1\x00\x04W017" + b"frames", hashlib.sha256).digest()
    assert batch_mac(KEY, "W017", b"frames") == expected


def test_a_batch_from_an_unknown_device_is_rejected(engine: Engine):
    add_worker_and_device(engine)
    with pytest.raises(UnknownDevice, match="'X999' is not registered"):
        ingest(engine, minutes_batch(0, JAN1, 3), device_id="X999")
    assert counts(engine) == (0, 0, 0)


# ---- device status and exposure -------------------------------------------------------------------


def test_a_battery_record_updates_the_device(engine: Engine):
    add_worker_and_device(engine)
    ingest(
        engine, frames([(0, protocol.BATTERY, protocol.encode_event(protocol.BATTERY, JAN1, 3900, 76, 0))])
    )
    with session_factory(engine)() as session:
        device = session.scalars(sa.select(Device)).one()
        assert (device.battery_mv, device.battery_percent) == (3900, 76)
        assert device.last_sync is not None


def test_a_device_the_session_holds_sees_what_the_batch_changed(engine: Engine):
    add_worker_and_device(engine)
    battery = protocol.encode_event(protocol.BATTERY, JAN1 + 300, 3800, 64, 1)
    with session_factory(engine)() as session, session.begin():
        device = session.scalars(sa.select(Device)).one()
        assert device.contiguous_seq is None
        data = minutes_batch(0, JAN1, 5) + frames([(5, protocol.BATTERY, battery)])
        ingest_batch(session, "W017", data, batch_mac(b"k" * 32, "W017", data))
        assert (device.contiguous_seq, device.battery_mv, device.battery_percent) == (5, 3800, 64)
        assert device.last_sync is not None and device not in session.dirty


def test_a_days_row_the_session_holds_reads_dirty_after_a_deferred_batch(engine: Engine):
    add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1, 10))
    with session_factory(engine)() as session, session.begin():
        row = session.scalars(sa.select(DailyExposure)).one()
        assert not row.dirty
        data = minutes_batch(10, JAN1 + 600, 10)
        ingest_batch(session, "W017", data, batch_mac(b"k" * 32, "W017", data), recompute=False)
        assert row.dirty


@pytest.mark.parametrize("enabled", [True, False], ids=["collector on", "collector off"])
def test_the_garbage_collector_is_left_as_it_was(engine: Engine, enabled: bool):
    add_worker_and_device(engine)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        ingest(engine, minutes_batch(0, JAN1, 10))
        assert gc.isenabled() is enabled
        with pytest.raises(MalformedBatch):
            ingest(engine, minutes_batch(10, JAN1 + 600, 10)[:-1])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_ingest_computes_the_daily_exposure_of_the_days_it_touches(engine: Engine):
    add_worker_and_device(engine)
    result = ingest(engine, minutes_batch(0, JAN1 + 8 * 3600, 30, angle_deg=25))
    day = dt.date(2026, 1, 1)
    assert [d for _, d in result.recomputed_days] == [day]
    row = exposure_of(engine, day)
    assert row is not None and not row.dirty and row.metrics is not None
    assert row.metrics["flexion"]["time_above_s"]["20"] == 1800


def test_late_data_for_a_past_day_recomputes_it(engine: Engine):
    add_worker_and_device(engine)
    jan1, jan2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    ingest(engine, minutes_batch(0, JAN1 + 8 * 3600, 10, angle_deg=25))
    ingest(engine, minutes_batch(10, JAN1 + DAY_S + 8 * 3600, 10, angle_deg=25))
    before = exposure_of(engine, jan1)
    assert before is not None and before.metrics is not None
    assert before.metrics["worn_s"] == 600
    # minutes of the afternoon of 1 January arrive a day late (the device was not synced)
    result = ingest(engine, minutes_batch(20, JAN1 + 14 * 3600, 5, angle_deg=50))
    assert [d for _, d in result.recomputed_days] == [jan1]
    after = exposure_of(engine, jan1)
    assert after is not None and after.metrics is not None
    assert after.metrics["worn_s"] == 900
    assert after.metrics["flexion"]["time_above_s"]["45"] == 300
    jan2_row = exposure_of(engine, jan2)
    assert jan2_row is not None and jan2_row.metrics is not None and jan2_row.metrics["worn_s"] == 600


def test_days_follow_the_workers_time_zone(engine: Engine):
    add_worker_and_device(engine, timezone="Europe/Berlin")
    # 23:30 UTC on 1 January is 00:30 on 2 January in Berlin
    result = ingest(engine, minutes_batch(0, JAN1 + 23 * 3600 + 1800, 10))
    assert [d for _, d in result.recomputed_days] == [dt.date(2026, 1, 2)]


def test_deferred_recompute_marks_days_dirty_until_caught_up(engine: Engine):
    add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1, 10), recompute=False)
    row = exposure_of(engine, dt.date(2026, 1, 1))
    assert row is not None and row.dirty and row.metrics is None
    with session_factory(engine)() as session, session.begin():
        assert recompute_dirty(session) == 1
    row = exposure_of(engine, dt.date(2026, 1, 1))
    assert row is not None and not row.dirty and row.metrics is not None and row.metrics["worn_s"] == 600


def test_minutes_stored_while_their_day_is_recomputed_leave_it_dirty_not_stale(engine: Engine):
    """An upload stores minutes of a day just after a recompute of that day has read its minutes:
    the day must not end up clean without them (the dashboard would never show them)."""
    worker_id, _ = add_worker_and_device(engine)
    ingest(engine, minutes_batch(0, JAN1 + 8 * 3600, 10), recompute=False)
    day = dt.date(2026, 1, 1)
    uploaded = threading.Event()

    def late_upload() -> None:
        ingest(engine, minutes_batch(10, JAN1 + 9 * 3600, 5), recompute=False)
        uploaded.set()

    upload = threading.Thread(target=late_upload)

    with session_factory(engine)() as recomputing:
        recomputing_connection = recomputing.connection()

        def upload_after_the_minutes_are_read(conn, _cursor, statement, *_args) -> None:
            if (
                conn is recomputing_connection
                and "FROM minute_summaries" in statement
                and not upload.is_alive()
            ):
                upload.start()
                # The upload waits for the recompute's lock rather than slipping in under it.
                uploaded.wait(0.5)

        sa.event.listen(engine, "after_cursor_execute", upload_after_the_minutes_are_read)
        try:
            assert refresh_stale(recomputing, [(worker_id, day)]) == 1
            recomputing.commit()
        finally:
            sa.event.remove(engine, "after_cursor_execute", upload_after_the_minutes_are_read)
    upload.join(30)
    assert uploaded.is_set()
    row = exposure_of(engine, day)
    assert row is not None and row.dirty  # the late minutes are still to be counted
    with session_factory(engine)() as session:
        assert refresh_stale(session, [(worker_id, day)]) == 1
        session.commit()
    row = exposure_of(engine, day)
    assert row is not None and not row.dirty and row.metrics is not None and row.metrics["worn_s"] == 900


def test_office_hour_through_ingest_matches_truth_time_above_20(engine: Engine):
    add_worker_and_device(engine)
    recording = generate("office-hour", seed=2)
    true_above_20_s = float(np.sum(recording.truth["truth_flexion_deg"] > 20.0)) / recording.rate_hz
    payloads = minute_payloads_from_truth(recording, start_s=JAN1 + 9 * 3600)
    ingest(engine, frames([(i, protocol.MINUTE, p) for i, p in enumerate(payloads)]))
    row = exposure_of(engine, dt.date(2026, 1, 1))
    assert row is not None and row.metrics is not None
    assert row.metrics["flexion"]["time_above_s"]["20"] == pytest.approx(true_above_20_s, rel=0.01)


def test_records_logged_by_the_real_firmware_ingest_and_replay(engine: Engine, tmp_path):
    from emulator.runner import run_recording

    add_worker_and_device(engine)
    result = run_recording(generate("office-hour", seed=1, hours=0.1), tmp_path / "board")
    assert result.records, "the firmware logged nothing"
    data = b"".join(protocol.encode_record(r.seq, r.rtype, r.payload) for r in result.records)
    first = ingest(engine, data)
    assert (first.new, first.duplicate) == (len(result.records), 0)
    assert first.contiguous_seq == max(r.seq for r in result.records)
    minutes = sum(r.rtype in protocol.MINUTE_TYPES for r in result.records)
    assert counts(engine) == (len(result.records), minutes, len(result.records) - minutes)
    again = ingest(engine, data)
    assert (again.new, again.duplicate) == (0, len(result.records))
