import pytest
from databases import backend, db_url  # noqa: F401  (fixtures: every test taking one runs on each database)

from emulator.micropython_cmd import run_micropython


@pytest.fixture
def micropython():
    """Run a snippet in the real micropython interpreter; returns its stdout."""
    return run_micropython
