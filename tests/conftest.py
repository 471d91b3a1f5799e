import pytest

from emulator.micropython_cmd import run_micropython


@pytest.fixture
def micropython():
    """Run a snippet in the real micropython interpreter; returns its stdout."""
    return run_micropython
