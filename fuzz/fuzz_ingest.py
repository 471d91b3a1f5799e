"""Harness: the ingest path, POST /api/ingest with a valid agent token, in-process (ASGI).

An input is ``mode | rest``.  Mode bits:

- 0-1, the batch MAC: 0 none, 1 signed with the device's key over `rest` (so decoding is
  reached), 2 the first 32 bytes of `rest` taken as the MAC, 3 signed then `rest` changed;
- 2: the device is unknown (W999) instead of W017;
- 3: `rest` is the whole HTTP body, not framed records.

The app must answer: no 5xx and no exception; a refusal (4xx) has a sentence in `detail` and
leaves the store as it was (row counts of every table, the device's row); an accepted batch is
stored whole.  The store is a SQLite file under the work directory, made fresh for each run,
with the world of tests/test_api_resources.py (W017 has seqs 1..60 stored).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["protocol", "companion.ingest", "companion.api.routes.ingest"]):
    import protocol as p
    from companion import ingest
    from companion.api.routes import ingest as ingest_route  # noqa: F401  (instrumented here)

import sqlalchemy as sa  # noqa: E402

DEVICE, UNKNOWN = "W017", "W999"
MAC_NONE, MAC_SIGNED, MAC_GIVEN, MAC_STALE = range(4)
UNKNOWN_DEVICE, RAW_BODY = 0x04, 0x08

_world: Any = None


def world() -> Any:
    """The app and its store, built on first use (tests/test_api_resources.py's world)."""
    global _world
    if _world is None:
        tests = Path(__file__).resolve().parent.parent / "tests"
        sys.path.insert(0, str(tests))
        from test_api_resources import build_world

        tmp = Path(tempfile.mkdtemp(prefix="fuzz-ingest-"))
        _world = build_world(f"sqlite:///{tmp / 'posture.db'}", tmp)
    return _world


def store_state(engine: sa.Engine) -> tuple[Any, ...]:
    """Row counts of every table and the device rows: what a refused upload must not change
    (one query each, as this runs twice per input)."""
    from companion.store import Base, Device

    counts = sa.select(
        *(sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in Base.metadata.sorted_tables)
    )
    with engine.connect() as connection:
        devices = connection.execute(sa.select(Device.__table__).order_by(Device.id)).all()
        return tuple(connection.execute(counts).one()), tuple(tuple(row) for row in devices)


def key() -> bytes:
    from test_ingest import KEY

    return bytes(KEY)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    w = world()
    mode, rest = data[0], data[1:]
    device = UNKNOWN if mode & UNKNOWN_DEVICE else DEVICE
    if mode & RAW_BODY:
        body = rest
    else:
        mac: bytes | None = None
        frames = rest
        if mode & 3 == MAC_SIGNED:
            mac = ingest.batch_mac(key(), device, frames)
        elif mode & 3 == MAC_GIVEN:
            mac, frames = rest[:32], rest[32:]
        elif mode & 3 == MAC_STALE:
            mac = ingest.batch_mac(key(), device, frames)
            frames = frames[:-1] + bytes([frames[-1] ^ 1]) if frames else b"\x00"
        body = json.dumps(
            {"device_id": device, "frames_b64": b64(frames), "batch_mac_b64": b64(mac) if mac else None}
        ).encode()
    before = store_state(w.engine)
    answer = w.client.post(
        "/api/ingest",
        content=body,
        headers={**w.headers("agent"), "Content-Type": "application/json"},
    )
    if answer.status_code >= 500:
        raise AssertionError(f"{answer.status_code}: {answer.text}")
    if answer.status_code >= 400:
        detail = answer.json().get("detail")
        if not isinstance(detail, str) or not detail:
            raise AssertionError(f"a {answer.status_code} without a sentence: {answer.text}")
        if store_state(w.engine) != before:
            raise AssertionError(f"a {answer.status_code} changed the store: {detail}")
        return
    if mode & RAW_BODY:
        return
    records = p.decode_records(frames)  # accepted, so it decodes
    result = answer.json()
    if result["stored"] + result["duplicates"] != len(records):
        raise AssertionError(f"{len(records)} records, answer {result}")


def seeds() -> list[bytes]:
    """Batches of valid records of every type, as the device frames them, in each MAC mode."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_ingest import JAN1, minutes_batch

    from fuzz.fuzz_protocol import seeds as protocol_seeds

    stored = minutes_batch(1, JAN1 + 8 * 3600, 60)
    fresh = minutes_batch(61, JAN1 + 9 * 3600, 5)
    events = b"".join(s[1:] for s in protocol_seeds() if s[0] == 0)  # the RECORDS seeds' streams
    renumbered = b"".join(
        p.encode_record(100 + i, r.rtype, r.payload) for i, r in enumerate(p.decode_records(events))
    )
    out = []
    for frames in (stored[:290], fresh, renumbered, stored[:29] + fresh[:29]):
        out += [bytes([MAC_NONE]) + frames, bytes([MAC_SIGNED]) + frames, bytes([MAC_STALE]) + frames]
    out.append(bytes([MAC_GIVEN]) + bytes(32) + fresh)
    out.append(bytes([UNKNOWN_DEVICE | MAC_SIGNED]) + fresh)
    out.append(
        bytes([RAW_BODY])
        + json.dumps({"device_id": DEVICE, "frames_b64": b64(fresh), "batch_mac_b64": None}).encode()
    )
    return out
