"""`bench/bench_delivery.py --smoke` keeps working: it drives the real fast-path writer
through internals (`Flusher._flush`, `RawSocket` over a stand-in protocol) that a change
could move. The script itself checks that every session got every write; only that it
ran and printed a figure per size is checked here, never how fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_smoke_run_writes_to_every_session() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_delivery.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    output = done.stdout + done.stderr
    code = done.returncode
    assert code == 0, f"expected exit 0 from the smoke run, got {code}:\n{output}"
    rows = {
        cells[0]: cells[1:]
        for cells in map(str.split, done.stdout.splitlines())
        if cells and cells[0].isdigit()
    }
    assert set(rows) == {"10", "100"}, f"expected a row for 10 and 100 sessions:\n{output}"
    for size, figures in rows.items():
        assert float(figures[0]) > 0, f"expected a positive figure for {size} sessions:\n{output}"
