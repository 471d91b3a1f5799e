"""The ``posture`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="posture", description="Open wearable posture sensor: firmware tools and companion."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from companion import flash_cmd, replay

    replay.add_parser(sub)
    flash_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
