"""``posture demo``, as a user runs it: simulated workers on the real firmware, synced over the
emulated radio into a fresh database, then the server answering with the dashboard URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy import func, select

from companion.store import Device, MinuteSummary, Record, User, open_store, session_scope


def test_demo_syncs_every_worker_and_serves_the_dashboard(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = dict(os.environ, POSTURE_DATA_DIR=str(tmp_path / "data"), COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "companion.cli", "demo", "--workers", "2", "--hours", "0.5", "--port", "0",
         "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Dashboard: "):
                url = line.split()[1].rstrip("/")
                break
        assert url, "no Dashboard line:\n" + "".join(lines)
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        # The printed logins work: the ergonomist signs in and sees the team's workers.
        text = "".join(lines)
        ergo_line = next(line for line in lines if "ergonomist@demo.posture" in line)
        password = ergo_line.split("│")[3].strip() if "│" in ergo_line else ergo_line.split()[-1]
        body = json.dumps({"email": "ergonomist@demo.posture", "password": password}).encode()
        req = urllib.request.Request(url + "/api/auth/login", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            token = json.loads(r.read())["token"]
        req = urllib.request.Request(url + "/api/workers", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert len(json.loads(r.read())) == 2
        assert "synced" in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    engine = open_store(f"sqlite:///{db}")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 2
        assert session.scalar(select(func.count()).select_from(User)) == 4  # admin, ergonomist, 2 workers
        assert (session.scalar(select(func.count()).select_from(MinuteSummary)) or 0) >= 30
        per_device = session.execute(select(Record.device_pk, func.count(), func.max(Record.seq)).group_by(Record.device_pk)).all()
    # Every device's log arrived whole: seqs 1..n, none twice.
    assert len(per_device) == 2 and all(count == top for _pk, count, top in per_device)
