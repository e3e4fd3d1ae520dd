"""`bench/bench_fanout.py --smoke` keeps working: every server kind it knows starts, takes
20 load clients and delivers to them. Only that something arrived is checked, never how
fast. Without python-socketio (the `bench` extra; CI installs only `test`) the script skips
that one server and says so, and the rest still runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_COLUMN = 26  # the width of the smoke table's first column


def socketio_importable() -> bool:
    try:
        import socketio  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.timeout(300)  # six servers started in turn, each a fresh Python process
def test_smoke_run_delivers_from_every_server_kind() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_fanout.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"expected exit 0 from the smoke run, got {done.returncode}:\n{output}"
    )
    table = done.stdout.split("smoke:", 1)[-1]
    expected = ["hub serve", "hub serve (100 ms writes)", "hub web+ingest", "broadcast"]
    expected += ["write floor"]
    if not socketio_importable():
        assert "socketio: skipped, python-socketio is not installed" in done.stdout, output
    else:
        expected.append("socketio")
    for server in expected:
        rows = [line for line in table.splitlines() if line[:SERVER_COLUMN].rstrip() == server]
        assert len(rows) == 1, f"expected one row for {server!r} in the smoke table:\n{output}"
        delivered = int(rows[0][SERVER_COLUMN:].split()[1].replace(",", ""))
        assert delivered > 0, f"expected {server} to deliver something:\n{output}"
