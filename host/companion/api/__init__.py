"""The companion's JSON API (FastAPI): see docs/api.md.  Build the app with
:func:`companion.api.app.create_app`."""
