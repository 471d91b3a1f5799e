"""``posture replay``: run a recording through the real firmware on the emulated board.

The recording (a CSV/CSV.gz in the format of docs/recordings.md, or a named motion
scenario) drives the emulated IMUs; the firmware runs in the real ``micropython`` command;
what it logged is read back from its flash and shown as a table, optionally written as JSON
(``events``, ``minutes``, ``alerts``) and as a per-sample trace CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import protocol
from emulator.recording import Recording, read_recording
from emulator.runner import Board, RunResult, SensorSpec, run_recording

VARIANTS = ("LSM6DS3", "LSM6DS3TR-C", "LSM6DSO", "LSM6DSOX", "ISM330DHCX")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="run a recording or scenario through the firmware on the emulated board",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="recording .csv/.csv.gz, or scenario:NAME (e.g. scenario:office-hour)")
    p.add_argument("--config", type=Path, help="JSON file of device settings (config.json overrides)")
    p.add_argument("--json", dest="json_out", type=Path, help="write events, minutes and alerts as JSON")
    p.add_argument("--trace", dest="trace_out", type=Path, help="write the per-sample trace as CSV")
    p.add_argument("--variant", choices=VARIANTS, default="LSM6DSO", help="IMU part on the board")
    p.add_argument("--seed", type=int, default=1, help="scenario and sensor-noise seed")
    p.add_argument("--hours", type=float, help="scenario length in hours (scenarios only)")
    p.add_argument("--no-noise", action="store_true", help="ideal IMU: no noise, bias or drift")
    p.add_argument("--workdir", type=Path, help="keep the board's flash folder here")
    p.add_argument(
        "--calibrate-at",
        type=float,
        metavar="SECONDS",
        help="long-press the button at this time to calibrate the neutral posture "
        "(default: the firmware's automatic calibration from upright walking)",
    )
    p.set_defaults(func=run)


def load_source(source: str, seed: int, hours: float | None) -> Recording:
    if source.startswith("scenario:"):
        from emulator.scenarios import generate

        kwargs: dict[str, Any] = {"seed": seed}
        if hours is not None:
            kwargs["hours"] = hours
        return generate(source.split(":", 1)[1], **kwargs)
    path = Path(source)
    if not path.exists():
        raise SystemExit(f"posture replay: no such recording: {path} (or use scenario:NAME)")
    return read_recording(path)


def _when(unix_s: int | None) -> str:
    if not unix_s:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _event_time(event: dict[str, Any]) -> int | None:
    for key in ("time_s", "start_s", "new_s"):
        if key in event:
            return int(event[key])
    return None


def show(result: RunResult, console: Console, source: str, recording: Recording) -> None:
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    events = result.events()
    summary = Table(title=f"posture replay: {source}", show_header=False)
    summary.add_row("recording", f"{recording.duration_s:.1f} s at {recording.rate_hz:.2f} Hz, "
                    f"{recording.n_sensors} sensor(s)")
    b = result.board
    summary.add_row("board ran", f"{b.get('t_ms', 0) / 1000:.1f} s virtual; awake {b.get('awake_ms', 0) / 1000:.1f} s, "
                    f"light sleep {b.get('sleep_ms', 0) / 1000:.1f} s, resets {b.get('resets', 0)}")
    summary.add_row("records logged", str(len(result.records)))
    summary.add_row("minute summaries", str(len(result.minutes())))
    summary.add_row("events", str(len(events)))
    summary.add_row("alerts", str(len(result.alerts())))
    if result.trace:
        summary.add_row("trace samples", str(len(result.trace)))
    console.print(summary)
    minutes = result.minutes()
    if minutes:
        console.print(minutes_table(minutes))
    if events:
        table = Table(title="events")
        table.add_column("seq", justify="right")
        table.add_column("time (UTC)")
        table.add_column("type")
        table.add_column("details")
        for e in events[:200]:
            details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("seq", "type"))
            table.add_row(str(e["seq"]), _when(_event_time(e)), e["type"], details)
        if len(events) > 200:
            table.caption = f"{len(events) - 200} more in --json"
        console.print(table)


def _seconds_from(bins: list[int], edge_deg: int) -> int:
    """Seconds at or above ``edge_deg`` from protocol.ANGLE_EDGES_DEG histogram seconds."""
    first = 1 + protocol.ANGLE_EDGES_DEG.index(edge_deg)
    return sum(bins[first:])


def _median_bin(bins: list[int]) -> str:
    total = sum(bins)
    if not total:
        return "-"
    running = 0
    for i, sec in enumerate(bins):
        running += sec
        if 2 * running >= total:
            edges = protocol.ANGLE_EDGES_DEG
            if i == 0:
                return f"<{edges[0]}"
            if i == len(edges):
                return f">={edges[-1]}"
            return f"{edges[i - 1]}-{edges[i]}"
    return "-"


def minutes_table(minutes: list[dict[str, Any]], limit: int = 120) -> Table:
    """One row per minute summary, in the terms an ergonomist reads them."""
    day = _when(minutes[0]["start_s"])[:10]
    table = Table(title=f"minute summaries {day} (flexion relative to the neutral posture)")
    for col in ("minute (UTC)", "worn s", "activity", "median flexion", "s >= 20 deg", "s >= 45 deg",
                "longest bout s", "alerts"):
        table.add_column(col, justify="right")
    for m in minutes[:limit]:
        activity = max(range(len(m["activity_s"])), key=lambda i: m["activity_s"][i])
        table.add_row(
            _when(m["start_s"])[11:16],
            str(m["worn_s"]),
            protocol.ACTIVITIES[activity] if m["worn_s"] else "-",
            _median_bin(m["flexion_bins_s"]),
            str(_seconds_from(m["flexion_bins_s"], 20)),
            str(_seconds_from(m["flexion_bins_s"], 45)),
            str(m["longest_bout_s"]),
            str(m["alert_count"]),
        )
    if len(minutes) > limit:
        table.caption = f"{len(minutes) - limit} more in --json"
    return table


def write_json(result: RunResult, path: Path) -> None:
    doc = {
        "events": result.events(),
        "minutes": result.minutes(),
        "alerts": result.alerts(),
        "board": result.board,
        "notes": result.notes,
    }
    path.write_text(json.dumps(doc, indent=1))


def write_trace(result: RunResult, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(result.trace_columns)
        w.writerows(result.trace)


def run(args: argparse.Namespace) -> int:
    console = Console()
    recording = load_source(args.source, args.seed, args.hours)
    config: dict[str, Any] = {}
    if args.config:
        config = json.loads(args.config.read_text())
    if args.trace_out:
        config["trace"] = True
    presses: list[tuple[float, float]] = []
    if args.calibrate_at is not None:
        # A long press: held past the firmware's long-press time (long_press_ms, 2 s).
        hold_s = config.get("long_press_ms", 2000) / 1000 + 0.3
        presses.append((args.calibrate_at, hold_s))
    board = Board(
        sensors=[SensorSpec(variant=args.variant, seed=args.seed, noise=not args.no_noise)],
        config=config,
        button_presses=presses,
    )
    with tempfile.TemporaryDirectory(prefix="posture-replay-") as tmp:
        workdir = args.workdir or Path(tmp)
        with Progress(
            TextColumn("[bold]replaying[/bold]"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("replay", total=recording.duration_s)
            result = run_recording(
                recording, workdir, board, progress=lambda t: progress.update(task, completed=t)
            )
    show(result, console, args.source, recording)
    if args.json_out:
        write_json(result, args.json_out)
        console.print(f"wrote {args.json_out}")
    if args.trace_out:
        write_trace(result, args.trace_out)
        console.print(f"wrote {args.trace_out} ({len(result.trace)} samples)")
    return 0
