"""The dashboard: server-rendered pages (Jinja2) over the same queries as the JSON API.

Charts are drawn by uPlot, served from /static (no CDN: the companion works offline).  Who sees
what is the API's rule (companion.api.deps): a worker only their own days, an ergonomist their
teams, an admin everything.  Signed-out visitors are sent to /login.
"""

from __future__ import annotations

from pathlib import Path

from companion.web.pages import router

STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR", "router"]
