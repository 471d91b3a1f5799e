"""The dashboard: server-rendered pages (Jinja2) over the same queries as the JSON API.

Charts are drawn by uPlot, served from /static (no CDN: the companion works offline).  Who sees
what is the API's rule (companion.api.deps): a worker only their own days, an ergonomist their
teams, an admin everything.  Signed-out visitors are sent to /login.  The wearer's own pages
(today, this week, their alert settings) are companion.web.wearer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from companion.web import csrf, mydata, pages, signin, wearer

router = APIRouter(include_in_schema=False)
router.include_router(signin.router)  # the sign-in page
router.include_router(pages.router)  # team and worker pages for ergonomists and admins
router.include_router(wearer.router)  # the wearer's own: /me, /me/week, /me/settings
router.include_router(mydata.router)  # the wearer's data: delete it (/me/delete)

# Every page's sign-out form carries the session's form token (templates/base.html).
pages.TEMPLATES.env.globals["form_token"] = csrf.form_token

STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR", "router"]
