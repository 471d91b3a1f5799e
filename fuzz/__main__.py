"""``python -m fuzz NAME --seconds N``: run a coverage-guided harness (``python -m fuzz`` lists
them; see fuzz/__init__.py)."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import subprocess
import sys
from pathlib import Path

HARNESSES = {
    "protocol": "every decoder of shared/protocol.py, and the MINUTE/MINUTE2 encoders on decoded minutes",
    "ingest": "POST /api/ingest with an agent token: framed records, HMAC modes, raw bodies",
}
WORK_DIR = Path(__file__).resolve().parent.parent / "build" / "fuzz"


def write_seeds(name: str, corpus: Path) -> int:
    """The harness's seed inputs as files of `corpus` (named by content, so rewriting is idempotent)."""
    module = importlib.import_module(f"fuzz.fuzz_{name}")
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = module.seeds()
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return len(seeds)


def run(name: str, seconds: int, work_dir: Path, reproduce: list[Path], extra: list[str]) -> None:
    """Fuzz `name` for `seconds` (or run the `reproduce` inputs once); libFuzzer ends the process:
    exit status 0 when nothing was found."""
    import atheris  # only here: the harness module must import what it instruments first

    module = importlib.import_module(f"fuzz.fuzz_{name}")
    corpus, crashes = work_dir / name / "corpus", work_dir / name / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    flags = [f"-artifact_prefix={crashes}/", "-timeout=20", "-rss_limit_mb=4096", *extra]
    if reproduce:
        inputs = [str(path) for path in reproduce]
    else:
        print(f"fuzz {name}: {write_seeds(name, corpus)} seeds in {corpus}", flush=True)
        flags += [f"-max_total_time={seconds}", "-print_final_stats=1"]
        inputs = [str(corpus)]
    atheris.Setup([sys.argv[0], *flags, *inputs], module.test_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("name", nargs="?", choices=[*sorted(HARNESSES), "all"])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (each, for all)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="corpus and crashes (build/fuzz)")
    parser.add_argument("--reproduce", type=Path, nargs="+", default=[], help="run these inputs once")
    parser.add_argument("libfuzzer", nargs="*", help="more libFuzzer flags, after --")
    args = parser.parse_args(argv)
    if args.name is None:
        for name, what in sorted(HARNESSES.items()):
            print(f"{name:10s} {what}")
        return 0
    if args.name == "all":
        # One process each: libFuzzer exits when its time is up, and instrumentation needs the
        # harness's modules imported fresh.
        worst = 0
        for name in sorted(HARNESSES):
            command = [sys.executable, "-m", "fuzz", name, "--seconds", str(args.seconds)]
            command += ["--work-dir", str(args.work_dir), "--", *args.libfuzzer]
            worst = max(worst, subprocess.run(command, check=False).returncode)
        return worst
    run(args.name, args.seconds, args.work_dir, args.reproduce, args.libfuzzer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
