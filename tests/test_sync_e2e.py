"""End to end: the firmware in the real micropython wears a day, goes on the charger, and the
production sync agent (bleak over a bumble virtual link, MTU 247) pulls its log into a real
companion database, through faults: wrong keys, dropped links, host crashes, device reboots.

The companion's database is SQLite, and PostgreSQL too when POSTURE_TEST_POSTGRES_URL is set
(tests/databases.py): what the host stores and acknowledges must not depend on it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import protocol
from companion.store import Device, Organisation, Record, Team, Worker, open_store, session_scope
from companion.sync import agent
from companion.sync.agent import UnknownDevice
from companion.sync.emulated import sync_into_store
from companion.sync.session import AuthFailed, UploadResult
from emulator.runner import Board
from emulator.scenarios import generate
from emulator.workday import DayResult, Wearer, run_day

DAY_START_S = 1_767_600_000


@pytest.fixture(scope="module")
def recording():  # type: ignore[no-untyped-def]
    return generate("office-hour", seed=3, hours=0.75)


@pytest.fixture
def companion(db_url: str) -> Iterator[Callable[[bytes | None], Engine]]:
    """A companion store on the test's database (W001 provisioned with the key given, if any)."""
    engines: list[Engine] = []

    def make(device_key: bytes | None) -> Engine:
        engine = open_store(db_url)
        engines.append(engine)
        if device_key is not None:
            with session_scope(engine) as session:
                team = Team(organisation=Organisation(name="org"), name="team")
                session.add(Device(device_id="W001", key=device_key, worker=Worker(team=team, name="Ada")))
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def stored_seqs(engine) -> list[int]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return list(session.scalars(select(Record.seq).order_by(Record.seq)))


def day(tmp_path: Path, recording, key: bytes, host, **kwargs: Any) -> DayResult:  # type: ignore[no-untyped-def]
    board = kwargs.pop("board", Board())
    wearer = Wearer("W001", key, recording, DAY_START_S, board=board, charge_s=kwargs.pop("charge_s", 120))
    return run_day(wearer, tmp_path / "board", host, **kwargs)


def assert_exactly_once(engine, result: DayResult) -> list[int]:  # type: ignore[no-untyped-def]
    """Every record the device wrote is in the store or still on the device, none twice, and
    everything the device deleted had been stored."""
    stored = stored_seqs(engine)
    assert len(stored) == len(set(stored))
    on_device = [r.seq for r in result.run.records]
    everything = set(stored) | set(on_device)
    assert everything == set(range(1, max(everything) + 1)), "a record was lost"
    acked = result.host.acked_seq
    assert set(range(1, acked + 1)) <= set(stored), "the device deleted what the store does not hold"
    assert all(seq in stored for seq in on_device if seq <= acked)
    return stored


def test_a_day_syncs_exactly_once_at_mtu_247_and_the_device_frees_only_acked_records(companion, tmp_path, recording) -> None:  # type: ignore[no-untyped-def]
    key = secrets.token_bytes(32)
    engine = companion(key)
    mtus: list[int] = []

    def host(radio, central):  # type: ignore[no-untyped-def]
        def seen(conn: int, _data: bytes) -> bool:
            mtus.append(radio._connections[conn].att_mtu)
            return False

        radio.drop_link_before = seen
        return sync_into_store(engine, "W001")(radio, central)

    result = day(tmp_path, recording, key, host)
    stored = assert_exactly_once(engine, result)
    assert result.host.records == len(stored) > 30 and result.host.duplicates == 0
    assert stored == list(range(1, len(stored) + 1))
    assert set(mtus) == {247}
    # What the device still holds: nothing it was not allowed to keep, and its ack file agrees.
    assert (tmp_path / "board" / "flash" / "log" / "ack").read_text() == str(result.host.acked_seq)
    assert result.host.acked_seq == stored[-1]
    kinds = {protocol.RECORD_NAMES[r.rtype] for r in result.run.records}
    assert kinds  # the log goes on after the sync (minutes written since)


def test_a_wrong_key_gets_no_data_deletes_nothing_and_says_why(companion, tmp_path, recording) -> None:  # type: ignore[no-untyped-def]
    engine = companion(secrets.token_bytes(32))  # not the board's key
    result = None
    with pytest.raises(AuthFailed, match="refused the key"):
        day(tmp_path, recording, secrets.token_bytes(32), sync_into_store(engine, "W001"))
    assert result is None
    assert stored_seqs(engine) == []
    flash_log = tmp_path / "board" / "flash" / "log"
    assert not (flash_log / "ack").exists()  # nothing acknowledged, nothing deleted


def test_an_unprovisioned_device_is_refused_before_connecting(companion, tmp_path, recording) -> None:  # type: ignore[no-untyped-def]
    engine = companion(None)
    with pytest.raises(UnknownDevice, match="provision it"):
        day(tmp_path, recording, secrets.token_bytes(32), sync_into_store(engine, "W001"), charge_s=20)
    assert stored_seqs(engine) == []


def drop_every(radio, n: int) -> None:  # type: ignore[no-untyped-def]
    """The link drops before the (n+1)-th data frame of every connection."""
    counts: dict[int, int] = {}

    def drop(conn: int, data: bytes) -> bool:
        if data[0] not in (protocol.FRAME_RECORDS, protocol.FRAME_PART, protocol.FRAME_PART_END):
            return False
        link = id(radio._connections[conn])  # handles are reused; connections are not
        counts[link] = counts.get(link, 0) + 1
        return counts[link] > n

    radio.drop_link_before = drop


# Every n on SQLite; a few on PostgreSQL, where the store's side (a batch re-sent after a drop is
# recognised, none stored twice) is the same for every n and each day costs CI seconds.
DROP_EVERY = [1, 2, 3, 5, 8, 13, 21, 34, 50]
DROP_EVERY_ON_POSTGRES = (1, 3, 8, 50)


@pytest.mark.parametrize(
    ("db_url", "n"),
    [pytest.param("sqlite", n, id=f"sqlite-{n}") for n in DROP_EVERY]
    + [pytest.param("postgres", n, id=f"postgres-{n}") for n in DROP_EVERY_ON_POSTGRES],
    indirect=["db_url"],
)
def test_a_link_dropped_every_n_frames_loses_and_duplicates_nothing(companion, tmp_path, recording, n) -> None:  # type: ignore[no-untyped-def]
    key = secrets.token_bytes(32)
    engine = companion(key)
    result = day(
        tmp_path,
        recording,
        key,
        sync_into_store(engine, "W001", window=4, attempts=12),
        configure_link=lambda radio: drop_every(radio, n),
    )
    stored = assert_exactly_once(engine, result)
    assert stored and stored == list(range(1, len(stored) + 1))
    frames_needed = result.host.records  # at least one frame per few records
    if n < 4:
        assert result.radio["links_dropped"] >= 1 and result.host.drops >= 1
    assert frames_needed > 0


class CrashOnce:
    """An uploader whose host process 'crashes' once: before or after the commit, never ACKing."""

    def __init__(self, engine, after_commit: bool) -> None:  # type: ignore[no-untyped-def]
        self.inner = agent.store_uploader(engine)
        self.after_commit = after_commit
        self.crashed = False

    async def __call__(self, device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        if not self.crashed and not self.after_commit:
            self.crashed = True
            raise ConnectionResetError("host crashed before storing")
        result = await self.inner(device_id, frames, mac)
        if not self.crashed:
            self.crashed = True
            raise ConnectionResetError("host crashed after storing, before the ACK")
        return result


@pytest.mark.parametrize("after_commit", [False, True])
def test_a_host_crash_before_the_ack_refetches_and_stores_once(companion, tmp_path, recording, after_commit) -> None:  # type: ignore[no-untyped-def]
    key = secrets.token_bytes(32)
    engine = companion(key)
    crash = CrashOnce(engine, after_commit)

    def host(radio, central):  # type: ignore[no-untyped-def]
        async def run() -> Any:
            first = sync_into_store(engine, "W001", uploader=crash, window=4)
            try:
                return await first(radio, central)
            except ConnectionResetError:
                pass  # the agent process died; a new one starts
            await asyncio.sleep(0.2)
            return await sync_into_store(engine, "W001", window=4)(radio, central)

        return run()

    result = day(tmp_path, recording, key, host)
    stored = assert_exactly_once(engine, result)
    assert crash.crashed
    if after_commit:
        assert result.host.duplicates > 0  # re-fetched, recognised, not stored twice
    assert stored == list(range(1, len(stored) + 1))


def test_a_device_reboot_mid_sync_resumes_without_loss(companion, tmp_path, recording) -> None:  # type: ignore[no-untyped-def]
    key = secrets.token_bytes(32)
    engine = companion(key)
    inner = agent.store_uploader(engine)

    async def slow(device_id: str, frames: bytes, mac: bytes) -> UploadResult:
        await asyncio.sleep(0.4)  # a slow server: the session spans seconds
        return await inner(device_id, frames, mac)

    # The CPU hangs 1.5 s into the charger window; the watchdog resets the board mid-session.
    at_s = recording.duration_s + 1.5
    board = Board(cpu_stalls=[{"at_s": at_s, "for_s": 15.0}])
    result = day(
        tmp_path,
        recording,
        key,
        sync_into_store(engine, "W001", uploader=slow, window=1, attempts=12),
        board=board,
        charge_s=90,
    )
    assert result.run.board["resets"] >= 1  # the watchdog rebooted the board mid-session
    stored = assert_exactly_once(engine, result)
    assert stored == list(range(1, len(stored) + 1))
    assert result.host.drops >= 1
