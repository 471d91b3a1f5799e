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
