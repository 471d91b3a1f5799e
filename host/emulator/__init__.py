"""A virtual posture device: MicroPython-compatible hardware modules, an LSM6DS model,
motion scenarios with ground truth, and a runner for the firmware in real MicroPython."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MPY_DIR = PACKAGE_DIR / "mpy"
REPO_ROOT = PACKAGE_DIR.parent.parent
DEVICE_DIR = REPO_ROOT / "device"
SHARED_DIR = REPO_ROOT / "shared"
