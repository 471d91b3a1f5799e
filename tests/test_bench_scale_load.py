"""`python -m bench scale` and `python -m bench load` at a tiny size: they run, find nothing lost
or duplicated, and end with one line holding a JSON object of the figures."""

from __future__ import annotations

import json
import sys

import pytest

from emulator import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from bench import __main__ as bench_main  # noqa: E402
from bench import load  # noqa: E402


def last_json_line(out: str) -> dict:
    figures = json.loads(out.strip().splitlines()[-1])
    assert isinstance(figures, dict)
    return figures


def test_the_scale_bench_times_every_query_against_its_baseline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("POSTURE_BENCH_POSTGRES_URL", raising=False)
    monkeypatch.setenv("POSTURE_BENCH_WEARERS", "2")
    monkeypatch.setenv("POSTURE_BENCH_DAYS", "3")
    assert bench_main.main(["scale"]) == 0
    figures = last_json_line(capsys.readouterr().out)
    assert figures["sqlite_minute_summaries"] == 2 * 3 * 480
    for query in ("team_dashboard", "worker_day", "replay_check", "worker_year_export"):
        assert figures[f"sqlite_{query}_p50_ms"] > 0
        assert figures[f"sqlite_{query}_ratio_vs_baseline"] > 0


def test_the_load_bench_loses_and_duplicates_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("POSTURE_BENCH_POSTGRES_URL", raising=False)
    monkeypatch.setenv("POSTURE_BENCH_AGENTS", "3")
    monkeypatch.setenv("POSTURE_BENCH_ERGONOMISTS", "1")
    monkeypatch.setenv("POSTURE_BENCH_SERVE_WORKERS", "1")
    monkeypatch.setattr(load, "QUIET_S", 0.5)
    assert bench_main.main(["load"]) == 0
    figures = last_json_line(capsys.readouterr().out)
    assert figures["sqlite_records_expected"] > 0
    assert (
        figures["sqlite_records_lost"],
        figures["sqlite_records_duplicated"],
        figures["sqlite_errors"],
    ) == (0, 0, 0)
    assert figures["sqlite_answers_stored"] == figures["sqlite_records_expected"]
    assert figures["sqlite_ingest_under_load_p50_ms"] > 0
