"""Benchmarks: ``python -m bench NAME``.

Each benchmark module has ``run(progress) -> BenchResult``: rows for a readable table, and
the figures, each measured next to a baseline from the same run.  The command prints the
table, then, as its last line, one JSON object of the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BenchResult:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    figures: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def one_device_store(db_path: Any, device_id: str, key: bytes) -> Any:
    """A fresh SQLite companion at ``db_path`` with one team, worker and registered device."""
    from companion.store import Device, Organisation, Team, Worker, open_store, session_scope

    engine = open_store(f"sqlite:///{db_path}")
    with session_scope(engine) as session:
        team = Team(organisation=Organisation(name="bench"), name="bench")
        session.add(Device(device_id=device_id, key=key, worker=Worker(team=team, name="bench")))
    return engine
