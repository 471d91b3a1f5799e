"""``posture flash``: build, deploy, provision and verify boards (tools/flash.py).

The same subcommands, options and exit codes as ``python tools/flash.py``; see
docs/flashing.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from types import ModuleType
from typing import Any

from emulator import REPO_ROOT


def flash_tool() -> ModuleType:
    """tools/flash.py of this checkout, loaded as a module."""
    name = "posture_flash_tool"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO_ROOT / "tools" / "flash.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"posture flash: {path} is missing (it ships with the source checkout)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def add_parser(sub: Any) -> None:
    tool = flash_tool()
    p = sub.add_parser(
        "flash",
        help="build, deploy, provision and verify boards (tools/flash.py)",
        description=tool.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tool.add_subcommands(p.add_subparsers(dest="flash_command", required=True))
    p.set_defaults(func=tool.run)
