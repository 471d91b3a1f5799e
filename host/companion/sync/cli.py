"""``posture sync``: find posture devices in a sync window and pull their logs into the companion."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4

console = Console(stderr=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="pull the logs of posture devices in range into the companion (BLE)",
        description=__doc__,
    )
    p.add_argument("--device", action="append", default=[], metavar="ID", help="only this device (repeatable)")
    p.add_argument("--scan-s", type=float, default=5.0, help="how long to look for devices (s)")
    p.add_argument("--db", help="companion database: SQLite file or URL (default: the local companion's)")
    p.add_argument("--server", help="upload to this companion server instead (with --token)")
    p.add_argument("--token", help="the agent token for --server (posture users token --agent NAME)")
    p.add_argument(
        "--keys",
        type=Path,
        help="device keys for --server mode: the keyring tools/flash.py provision writes "
        "(default ~/.config/posture/keys.json)",
    )
    p.set_defaults(func=run)


def _keyring(path: Path | None) -> Any:
    """The keyring tools/flash.py provision writes (its LocalKeyring), at ``path`` or its default."""
    from companion.flash_cmd import flash_tool

    tool = flash_tool()
    return tool.LocalKeyring(path or tool.default_keyring_path())


def _applied(engine: Any, device_id: str) -> Callable[[int, dict[str, Any]], None] | None:
    if engine is None:
        return None  # settings travel with the server's own agent
    from companion.sync import agent

    return lambda crc, applied: agent.settings_applied(engine, device_id, crc, applied)


def _bar(progress: Progress, bar: TaskID) -> Callable[[int, int], None]:
    return lambda done, total: progress.update(bar, completed=done, total=total)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from companion.cli import _database_url
    from companion.store import open_store
    from companion.sync import agent
    from companion.sync.session import AuthFailed, DeviceUnreachable, SyncError

    if args.server and not args.token:
        console.print("posture sync: --server needs --token (an agent token)")
        return EXIT_USAGE
    engine = None
    if args.server:
        uploader = agent.http_uploader(args.server, args.token)
        keyring = _keyring(args.keys)

        def key_for(device_id: str) -> bytes:
            key: bytes | None = keyring.key(device_id)
            if key is None:
                raise agent.UnknownDevice(f"no key for {device_id} in the keyring: provision it on this PC first")
            return key

    else:
        engine = open_store(_database_url(args.db))
        uploader = agent.store_uploader(engine)

        def key_for(device_id: str) -> bytes:
            assert engine is not None
            return agent.device_key(engine, device_id)

    console.print(f"looking for posture devices for {args.scan_s:g} s …")
    try:
        found = await agent.discover(args.scan_s)
    except Exception as e:  # noqa: BLE001 - no adapter, BlueZ down…: say so plainly
        console.print(f"posture sync: cannot scan for BLE devices: {e}")
        return EXIT_UNREACHABLE
    wanted = [(d, name) for d, name in found if not args.device or name in args.device]
    if not wanted:
        missing = ", ".join(args.device) if args.device else "no posture device"
        console.print(f"{missing} in range: is it on its charger or in a sync window (double press)?")
        return EXIT_UNREACHABLE
    code = EXIT_OK
    for device, device_id in wanted:
        with Progress(TextColumn(f"{device_id}"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
            bar = progress.add_task(device_id, total=None)
            try:
                key = key_for(device_id)
                pending = agent.pending_settings(engine, device_id) if engine is not None else None
                result = await agent.sync_device(
                    device,
                    key,
                    uploader,
                    pending_config=pending,
                    on_config_applied=_applied(engine, device_id),
                    progress=_bar(progress, bar),
                    device_id=device_id,
                )
            except AuthFailed as e:
                console.print(f"[red]{device_id}: {e}[/red]")
                code = max(code, EXIT_AUTH)
                continue
            except agent.UnknownDevice as e:
                console.print(f"[red]{device_id}: {e}[/red]")
                code = max(code, EXIT_AUTH)
                continue
            except DeviceUnreachable as e:
                console.print(f"[yellow]{device_id}: {e}[/yellow]")
                code = max(code, EXIT_UNREACHABLE)
                continue
            except SyncError as e:
                console.print(f"[yellow]{device_id}: {e}[/yellow]")
                code = max(code, EXIT_UNREACHABLE)
                continue
        console.print(
            f"{device_id}: {result.records} records ({result.stored} new, {result.duplicates} already stored), "
            f"acknowledged up to seq {result.acked_seq}, {result.drops} reconnects"
        )
    return code
