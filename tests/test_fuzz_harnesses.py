"""The coverage-guided harnesses of fuzz/ run, briefly, as CI runs them: each one from its seed
corpus for a few seconds (`python -m fuzz NAME --seconds N`), finding nothing.  Longer runs and
their results: docs/security.md "Fuzzing"."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

REPO = Path(__file__).resolve().parent.parent
SECONDS = {"protocol": 5, "ingest": 8}


def run_fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "fuzz", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", sorted(SECONDS))
def test_a_short_fuzzing_run_finds_nothing(name: str, tmp_path: Path):
    run = run_fuzz(name, "--seconds", str(SECONDS[name]), "--work-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Done" in run.stderr and "stat::number_of_executed_units" in run.stderr
    assert not list((tmp_path / name / "crashes").iterdir())
    assert list((tmp_path / name / "corpus").glob("seed-*")), "the seed corpus was not written"


# What the harnesses found, replayed (libFuzzer's "Base64:" line of each crash).
FINDINGS = {
    # MINUTE_FIELDS: a minute with posture seconds and an empty lateral histogram, which
    # encode_minute2 wrote and the decoder refused (tests/test_fuzz_protocol.py has its test).
    "protocol": ["CnmCeHppKnx8MjwEfjE="],
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_what_the_harnesses_found_stays_fixed(name: str, tmp_path: Path):
    inputs = []
    for i, finding in enumerate(FINDINGS[name]):
        inputs.append(tmp_path / f"finding-{i}")
        inputs[-1].write_bytes(base64.b64decode(finding))
    run = run_fuzz(name, "--reproduce", *map(str, inputs), "--work-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Executed" in run.stderr


def test_the_harnesses_are_listed():
    run = run_fuzz()
    assert run.returncode == 0
    assert [line.split()[0] for line in run.stdout.splitlines()] == ["ingest", "protocol"]
