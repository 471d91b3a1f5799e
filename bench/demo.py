"""``posture demo`` time to ready: from the command to a database holding every worker's synced
day (the server then starts in well under a second), next to one worker's day on the firmware
alone, without radio or companion, measured in the same run.

    python -m bench demo
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import Progress

from bench import BenchResult

WORKERS = 3
HOURS = 4.0


def run(progress: Progress) -> BenchResult:
    from emulator.runner import run_recording
    from emulator.scenarios import generate

    task = progress.add_task("posture demo --no-serve", total=2)
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        env = dict(os.environ, POSTURE_DATA_DIR=str(Path(tmp) / "data"))
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "companion.cli", "demo", "--workers", str(WORKERS), "--hours", str(HOURS),
             "--db", str(Path(tmp) / "demo.db"), "--no-serve"],
            check=True,
            capture_output=True,
            env=env,
        )
        demo_s = time.perf_counter() - t0
        progress.update(task, advance=1, description="one worker's day, firmware only")
        t0 = time.perf_counter()
        recording = generate("office-day", seed=100, hours=HOURS)
        run_recording(recording, Path(tmp) / "alone")
        alone_s = time.perf_counter() - t0
        progress.update(task, advance=1)
    cores = os.cpu_count() or 1
    figures = {
        "workers": WORKERS,
        "hours": HOURS,
        "cores": cores,
        "demo_ready_s": round(demo_s, 1),
        "one_worker_firmware_only_s": round(alone_s, 1),
        "demo_over_one_worker": round(demo_s / alone_s, 2),
    }
    return BenchResult(
        title=f"posture demo: {WORKERS} workers × {HOURS:g} h to ready, {cores} cores",
        columns=["figure", "seconds", "target"],
        rows=[
            ["demo: seed, simulate, sync, ready", figures["demo_ready_s"], "< 60"],
            ["baseline: one worker's day on the firmware alone", figures["one_worker_firmware_only_s"], ""],
        ],
        figures=figures,
        notes=["the demo runs its boards in parallel, one per core; each also syncs over the emulated radio"],
    )
