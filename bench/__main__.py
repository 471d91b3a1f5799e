"""``python -m bench NAME``: run one benchmark (``python -m bench`` lists them)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench import BenchResult

# name -> module under bench/ with run(progress) -> BenchResult
BENCHMARKS = {
    "demo": "bench.demo",
    "emulator": "bench.emulator",
    "energy": "bench.energy",
    "sync": "bench.sync",
    "firmware": "bench.firmware",
    "fusion_broad": "bench.fusion_broad",
    "ingest": "bench.ingest",
    "exposure": "bench.exposure",
    "scale": "bench.scale",
    "load": "bench.load",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS))
    args = parser.parse_args(argv)
    if args.name is None:
        for name, module_name in sorted(BENCHMARKS.items()):
            print(f"{name:12s} {module_name}")
        return 0
    module = importlib.import_module(BENCHMARKS[args.name])
    console = Console(stderr=False)
    with Progress(console=console, transient=True) as progress:
        result: BenchResult = module.run(progress)
    table = Table(title=result.title)
    for col in result.columns:
        table.add_column(col)
    for row in result.rows:
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")
    sys.stdout.flush()
    print(json.dumps(result.figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
