"""The coverage-guided harnesses of fuzz/ run, briefly, as CI runs them: each one from its seed
corpus for a few seconds (`python -m fuzz NAME --seconds N`), finding nothing.  Longer runs and
their results: docs/security.md "Fuzzing"."""

from __future__ import annotations

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


def test_inputs_can_be_replayed_one_by_one(tmp_path: Path):
    seed = tmp_path / "seed"
    seed.write_bytes(b"\x00")  # RECORDS of nothing: zero records
    run = run_fuzz("protocol", "--reproduce", str(seed), "--work-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Executed" in run.stderr


def test_the_harnesses_are_listed():
    run = run_fuzz()
    assert run.returncode == 0
    assert [line.split()[0] for line in run.stdout.splitlines()] == ["ingest", "protocol"]
