"""tools/flash.py against the virtual board, through real mpremote (docs/flashing.md)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import serial

import protocol
from emulator import REPO_ROOT
from emulator.runner import firmware_files, read_log
from emulator.virtual_board import VirtualBoard


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flash_tool_under_test", REPO_ROOT / "tools" / "flash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flash_tool_under_test"] = module
    spec.loader.exec_module(module)
    return module


flash = _load_tool()


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """``python tools/flash.py ARGS`` as a developer runs it."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "flash.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def companion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """provision registers with the local companion by default: keep it in the test's folder."""
    home = tmp_path / "companion-data"
    monkeypatch.setenv("POSTURE_DATA_DIR", str(home))
    monkeypatch.delenv("POSTURE_DATABASE_URL", raising=False)
    return home


def registered_key(db: Path, device_id: str) -> bytes | None:
    """The key the companion's database holds for ``device_id``."""
    from sqlalchemy import select

    from companion.store import Device, open_store, session_scope

    engine = open_store(f"sqlite:///{db}")
    try:
        with session_scope(engine) as session:
            return session.scalar(select(Device.key).where(Device.device_id == device_id))
    finally:
        engine.dispose()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "board") as vb:
        yield vb


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_sources(tmp_path: Path, names: tuple[str, ...]) -> list[tuple[Path, str]]:
    """The firmware's files with the modules ``names`` edited (a constant added)."""
    out = []
    for src, dest in firmware_files():
        if src.stem in names:
            edited = tmp_path / "src" / src.name
            edited.parent.mkdir(exist_ok=True)
            edited.write_text(src.read_text() + "\n_EDITED_FOR_TEST = 1\n")
            src = edited
        out.append((src, dest))
    return out


def test_build_deploy_provision_verify_round_trip(board: VirtualBoard, tmp_path: Path) -> None:
    build_dir = str(tmp_path / "build")
    keys = tmp_path / "keys.json"

    built = run_tool("build", "--port", board.port, "--build-dir", build_dir)
    assert built.returncode == 0, built.stderr
    assert "for mpy6.3-x64" in built.stdout
    manifest = json.loads((tmp_path / "build" / "mpy6.3-x64" / "manifest.json").read_text())
    assert "lib/lsm6ds.mpy" in manifest["files"] and "main.py" in manifest["files"]

    dry = run_tool("deploy", "--port", board.port, "--build-dir", build_dir, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy   /main.py (new" in dry.stdout
    assert not (board.flash_dir / "main.py").exists()

    first = run_tool("deploy", "--port", board.port, "--build-dir", build_dir)
    assert first.returncode == 0, first.stderr
    n_files = len(firmware_files())
    assert f"{n_files} to copy, 0 to remove, 0 unchanged" in first.stdout
    # The layout of a board: main.py as source, the modules as .mpy in /lib, no leftovers.
    assert (board.flash_dir / "main.py").read_bytes() == (REPO_ROOT / "device" / "main.py").read_bytes()
    for name, entry in manifest["files"].items():
        assert sha256(board.flash_dir / name) == entry["sha256"]
    assert not list(board.flash_dir.rglob("*.new"))

    again = run_tool("deploy", "--port", board.port, "--build-dir", build_dir)
    assert again.returncode == 0, again.stderr
    assert f"0 to copy, 0 to remove, {n_files} unchanged" in again.stdout

    companion_db = tmp_path / "companion.db"
    prov = run_tool(
        "provision", "--port", board.port, "--device-id", "W017", "--set", "motor_pin=26", "--keys", str(keys),
        "--db", str(companion_db),
    )
    assert prov.returncode == 0, prov.stderr
    key = (board.flash_dir / "key.bin").read_bytes()
    assert len(key) == 32
    assert key.hex() not in prov.stdout  # never printed unless asked
    assert "companion database: device W017 registered" in prov.stdout
    assert registered_key(companion_db, "W017") == key
    assert json.loads(keys.read_text())["devices"]["W017"]["key"] == key.hex()
    assert json.loads((board.flash_dir / "config.json").read_text()) == {"device_id": "W017", "motor_pin": 26}

    ver = run_tool("verify", "--port", board.port, "--build-dir", build_dir)
    assert ver.returncode == 0, ver.stdout + ver.stderr
    for check in ("hashes", "config", "key", "imu 0x6a", "motor", "log", "ble"):
        assert check in ver.stdout
    assert "LSM6DSO" in ver.stdout and "radio on" in ver.stdout and "PASS" in ver.stdout


def test_provision_registers_the_key_with_the_local_companion_by_default(
    board: VirtualBoard, tmp_path: Path, companion_home: Path
) -> None:
    keys = str(tmp_path / "keys.json")
    first = run_tool("provision", "--port", board.port, "--device-id", "W5", "--keys", keys)
    assert first.returncode == 0, first.stderr
    key = (board.flash_dir / "key.bin").read_bytes()
    assert registered_key(companion_home / "posture.db", "W5") == key
    # A new key replaces the registered one: the old key stops working everywhere at once.
    again = run_tool("provision", "--port", board.port, "--device-id", "W5", "--keys", keys, "--new-key")
    assert again.returncode == 0, again.stderr
    assert "key updated" in again.stdout
    new_key = (board.flash_dir / "key.bin").read_bytes()
    assert new_key != key and registered_key(companion_home / "posture.db", "W5") == new_key


def test_provision_to_an_unreachable_server_says_so_and_keeps_the_board_consistent(
    board: VirtualBoard, tmp_path: Path
) -> None:
    bad = run_tool(
        "provision", "--port", board.port, "--device-id", "W6", "--keys", str(tmp_path / "k.json"),
        "--server", "http://127.0.0.1:9", "--token", "t",
    )
    assert bad.returncode == 2
    assert "cannot reach the companion at http://127.0.0.1:9" in bad.stdout + bad.stderr
    # The key is on the board; provisioning again (server up) registers that same key.
    assert len((board.flash_dir / "key.bin").read_bytes()) == 32


def test_a_changed_file_is_the_only_file_copied(board: VirtualBoard, tmp_path: Path) -> None:
    target = flash.Target("6.3", "x64")
    with flash.Board(board.port) as b:
        flash.deploy(b, flash.build(target, tmp_path / "old", show_progress=False), show_progress=False)
        new = flash.build(
            target, tmp_path / "new", show_progress=False, sources=changed_sources(tmp_path, ("alert",))
        )
        plan = flash.deploy(b, new, show_progress=False)
    assert [(f.board_path, why) for f, why in plan.copy] == [("lib/alert.mpy", "changed")]
    assert plan.unchanged == len(firmware_files()) - 1


def test_after_deploy_the_board_boots_the_firmware_and_samples_the_imu(
    board: VirtualBoard, tmp_path: Path
) -> None:
    with flash.Board(board.port) as b:
        flash.deploy(b, flash.build(flash.Target("6.3", "x64"), tmp_path / "build", show_progress=False))
        flash.provision(b, "W042", {"trace": True}, [flash.LocalKeyring(tmp_path / "keys.json")])
        console = b.exec("import rawrepl_board\nprint(rawrepl_board.run_main(3))", timeout_s=60).decode()
    lines = console.splitlines()
    assert int(lines[-1]) >= 3000  # virtual ms the firmware ran
    samples = [line.split(",") for line in lines if line.startswith("T,")]
    assert len(samples) > 52  # the per-sample trace: more than a second at 52 Hz
    assert all(abs(float(s[2]) - 1.0) < 0.05 for s in samples)  # upright: +1 g on x
    records = read_log(board.flash_dir)
    types = [protocol.RECORD_NAMES[r.rtype] for r in records]
    assert types and types[0] == "boot"
    # The firmware read the emulated IMU: no sensor fault was logged.
    assert "sensor_fault" not in types


def test_wrong_port_says_so(tmp_path: Path) -> None:
    r = run_tool("deploy", "--port", "/dev/ttyUSB-no-such-port", "--build-dir", str(tmp_path))
    assert r.returncode == flash.EXIT_PORT
    assert "no such port /dev/ttyUSB-no-such-port" in r.stderr


def test_busy_port_says_which_program_to_close(board: VirtualBoard, tmp_path: Path) -> None:
    holder = serial.Serial(board.port, exclusive=True)
    try:
        r = run_tool("verify", "--port", board.port, "--build-dir", str(tmp_path))
    finally:
        holder.close()
    assert r.returncode == flash.EXIT_PORT
    assert "is busy" in r.stderr and "close it" in r.stderr


def test_a_board_running_something_else_is_reported(tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "foreign", raw_repl=False) as foreign:
        r = run_tool("deploy", "--port", foreign.port, "--timeout", "1.5", "--build-dir", str(tmp_path))
    assert r.returncode == flash.EXIT_NOT_MICROPYTHON
    assert "does not answer MicroPython's raw REPL" in " ".join(r.stderr.split())


def test_full_flash_mid_copy_keeps_the_good_files_and_the_next_deploy_resumes(tmp_path: Path) -> None:
    target = flash.Target("6.3", "x64")
    old = flash.build(target, tmp_path / "old", show_progress=False)
    new = flash.build(
        target, tmp_path / "new", show_progress=False, sources=changed_sources(tmp_path, ("alert", "fusion"))
    )
    size = {f.board_path: f.size for f in new.files}
    with VirtualBoard(tmp_path / "board", flash_bytes=200_000) as vb:
        with flash.Board(vb.port) as b:
            flash.deploy(b, old, show_progress=False)
        good_fusion = sha256(vb.flash_dir / "lib" / "fusion.mpy")
        used = sum(p.stat().st_size for p in vb.flash_dir.rglob("*") if p.is_file())
        # Leave room for the new alert.mpy but not for the new fusion.mpy.
        filler = vb.flash_dir / "filler.bin"
        filler.write_bytes(bytes(200_000 - used - size["lib/alert.mpy"] - 4000))
        assert size["lib/fusion.mpy"] > 4000 + size["lib/alert.mpy"]

        with pytest.raises(flash.FlashFullError, match="flash is full while writing /lib/fusion.mpy"):
            with flash.Board(vb.port) as b:
                flash.deploy(b, new, show_progress=False)
        assert sha256(vb.flash_dir / "lib" / "fusion.mpy") == good_fusion  # the old file, whole
        assert not list(vb.flash_dir.rglob("*.new"))

        # The same through the command line, with the flash now quite full: exit code 6.
        filler.write_bytes(bytes(filler.stat().st_size + size["lib/alert.mpy"] + 4000))
        r = run_tool("deploy", "--port", vb.port, "--build-dir", str(tmp_path / "cli"))
        assert r.returncode == flash.EXIT_FLASH_FULL
        assert "Free space" in r.stderr

        filler.unlink()
        with flash.Board(vb.port) as b:
            plan = flash.deploy(b, new, show_progress=False)
        assert [f.board_path for f, _ in plan.copy] == ["lib/fusion.mpy"]
        assert (
            sha256(vb.flash_dir / "lib" / "fusion.mpy") == new.manifest()["files"]["lib/fusion.mpy"]["sha256"]
        )


def test_an_interrupted_deploy_is_resumed(board: VirtualBoard, tmp_path: Path) -> None:
    built = flash.build(flash.Target("6.3", "x64"), tmp_path / "build", show_progress=False)
    copied: list[str] = []

    def interrupt_after_three(path: str) -> None:
        copied.append(path)
        if len(copied) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with flash.Board(board.port) as b:
            flash.deploy(b, built, show_progress=False, on_file_done=interrupt_after_three)
    # What a power cut or a pulled cable mid-file leaves behind.
    (board.flash_dir / "lib" / "fusion.mpy.new").write_bytes(b"half a file")

    with flash.Board(board.port) as b:
        plan = flash.deploy(b, built, show_progress=False)
    assert plan.leftovers == ["lib/fusion.mpy.new"]
    assert len(plan.copy) == len(built.files) - 3
    assert not {f.board_path for f, _ in plan.copy} & set(copied)
    assert not list(board.flash_dir.rglob("*.new"))
    with flash.Board(board.port) as b:
        assert flash.plan_deploy(b, built).empty


def test_deploy_removes_stale_modules_that_would_shadow_the_new_ones(
    board: VirtualBoard, tmp_path: Path
) -> None:
    (board.flash_dir / "lib").mkdir()
    (board.flash_dir / "lib" / "lsm6ds.py").write_text("raise ImportError('old copy')\n")
    r = run_tool("deploy", "--port", board.port, "--build-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "remove /lib/lsm6ds.py" in r.stdout
    assert not (board.flash_dir / "lib" / "lsm6ds.py").exists()


def test_provision_merges_the_config_keeps_the_key_and_shows_it_only_when_asked(
    board: VirtualBoard, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    (board.flash_dir / "config.json").write_text(json.dumps({"odr_hz": 104, "device_id": "old"}))
    first = run_tool("provision", "--port", board.port, "--device-id", "W1", "--keys", str(keys))
    assert first.returncode == 0, first.stderr
    assert json.loads((board.flash_dir / "config.json").read_text()) == {"odr_hz": 104, "device_id": "W1"}
    key = (board.flash_dir / "key.bin").read_bytes()
    second = run_tool(
        "provision", "--port", board.port, "--device-id", "W1", "--keys", str(keys), "--show-key"
    )
    assert second.returncode == 0, second.stderr
    assert (board.flash_dir / "key.bin").read_bytes() == key
    assert f"key {key.hex()}" in second.stdout

    bad = run_tool(
        "provision", "--port", board.port, "--device-id", "W1", "--keys", str(keys), "--set", "odr_hz=50"
    )
    assert bad.returncode == flash.EXIT_USAGE
    assert "invalid value 50 for odr_hz" in bad.stderr
    unknown = run_tool("provision", "--port", board.port, "--device-id", "W1", "--set", "colour=red")
    assert unknown.returncode == flash.EXIT_USAGE and "unknown setting 'colour'" in unknown.stderr


def test_verify_fails_when_the_imu_is_not_where_the_config_says(tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "board", imu_addr=0x6B) as vb:
        with flash.Board(vb.port) as b:
            flash.deploy(b, flash.build(flash.Target("6.3", "x64"), tmp_path / "build", show_progress=False))
            flash.provision(b, "W9", {}, [flash.LocalKeyring(tmp_path / "keys.json")])
        r = run_tool("verify", "--port", vb.port, "--build-dir", str(tmp_path / "build"))
    assert r.returncode == flash.EXIT_VERIFY_FAILED
    assert "no LSM6DS IMU answers at I2C address 0x6a" in " ".join(r.stdout.split())
    assert "FAIL" in r.stdout


def test_version_mismatch_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    with pytest.raises(
        flash.VersionMismatchError, match="mpy-cross emits .mpy v6.3 but the board loads v6.1"
    ):
        flash.build(flash.Target("6.1", "xtensawin"), tmp_path)


def test_a_build_for_another_board_is_not_deployed(board: VirtualBoard, tmp_path: Path) -> None:
    esp32_build = flash.build(flash.Target("6.3", "xtensawin"), tmp_path, show_progress=False)
    with flash.Board(board.port) as b:
        with pytest.raises(flash.VersionMismatchError, match="the build is for mpy6.3-xtensawin"):
            flash.deploy(b, esp32_build, show_progress=False)
    assert not (board.flash_dir / "main.py").exists()


def test_build_for_an_esp32_without_a_board(tmp_path: Path) -> None:
    r = run_tool("build", "--arch", "xtensawin", "--build-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    mpy = (tmp_path / "mpy6.3-xtensawin" / "lib" / "lsm6ds.mpy").read_bytes()
    assert mpy[0] == ord("M") and mpy[1] == 6 and mpy[2] >> 2 == 10  # .mpy v6, native arch xtensawin


def test_firmware_without_esptool_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "esptool", None)  # as if not installed
    image = tmp_path / "ESP32_GENERIC.bin"
    image.write_bytes(b"\xe9")
    code = flash.main(["firmware", "--port", "/dev/ttyUSB0", "--bin", str(image)])
    assert code == flash.EXIT_MISSING_TOOL


def test_posture_flash_runs_the_same_tool(tmp_path: Path) -> None:
    import argparse

    from companion import flash_cmd

    parser = argparse.ArgumentParser(prog="posture")
    flash_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["flash", "build", "--arch", "xtensawin", "--build-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert (tmp_path / "mpy6.3-xtensawin" / "main.py").exists()
    shutil.rmtree(tmp_path / "mpy6.3-xtensawin")


def test_a_provisioned_key_syncs_and_an_unprovisioned_device_is_refused(
    board: VirtualBoard, tmp_path: Path, db_url: str
) -> None:
    """The key tools/flash.py writes to the board and registers with the companion is the key
    `posture sync` authenticates with; a device the companion never registered is refused.
    On SQLite, and on PostgreSQL when POSTURE_TEST_POSTGRES_URL is set (--db takes a URL)."""
    from companion.store import open_store
    from companion.sync.agent import UnknownDevice
    from companion.sync.emulated import sync_into_store
    from emulator.scenarios import generate
    from emulator.workday import Wearer, run_day

    keys = str(tmp_path / "keys.json")
    prov = run_tool("provision", "--port", board.port, "--device-id", "W077", "--keys", keys, "--db", db_url)
    assert prov.returncode == 0, prov.stderr
    key = (board.flash_dir / "key.bin").read_bytes()
    device_id = json.loads((board.flash_dir / "config.json").read_text())["device_id"]
    engine = open_store(db_url)
    recording = generate("office-hour", seed=5, hours=0.25)
    day = run_day(Wearer(device_id, key, recording, 1_767_600_000, charge_s=60), tmp_path / "w077", sync_into_store(engine, device_id))
    assert day.host.records > 5 and day.host.duplicates == 0

    # A second board provisioned without telling the companion.
    other = run_tool(
        "provision", "--port", board.port, "--device-id", "W078", "--keys", keys, "--no-companion", "--new-key"
    )
    assert other.returncode == 0, other.stderr
    new_key = (board.flash_dir / "key.bin").read_bytes()
    with pytest.raises(UnknownDevice, match="no key for device W078"):
        run_day(Wearer("W078", new_key, recording, 1_767_600_000, charge_s=20), tmp_path / "w078", sync_into_store(engine, "W078"))
    engine.dispose()
