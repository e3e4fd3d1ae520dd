"""The benchmark scripts keep working: each `--smoke` run starts what it measures and
reports a figure. Only that something ran and arrived is checked, never how fast.

- `bench/bench_fanout.py --smoke`: every server kind it knows starts, takes 20 load
  clients and delivers to them. Without python-socketio (the `bench` extra; CI installs
  only `test`) the script skips that one server and says so, and the rest still runs.
- `bench/bench_delivery.py --smoke`: it drives the fast-path writer through internals
  (`Flusher._flush`, `RawSocket` over a stand-in protocol) that a change could move; the
  script itself checks that every session got every write.
- `bench/bench_history.py --smoke`: it writes the Redis event log's format by hand, loads
  books as a restore does and runs a baseline revision's API, all of which a change could
  move; every part must print its figures, and the restored and live events must all be
  held.
- `bench/processor_cascade.py --smoke`: it restores books and drives the processor
  through the API a change could move; the run must apply and publish something.
- `bench/bench_takeover.py --smoke`: it runs a primary and a standby `ingest` over a
  history written in the log's format and kills the primary; the standby must have
  followed it, carried every book on, and published diffs in the same epoch after.
- `bench/bench_alert_sinks.py --smoke`: it runs the sinks' look-alikes and the delivery
  outside the test suite; every healthy sink must get every alert, with one down and not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_COLUMN = 26  # the width of the fan-out smoke table's first column


def socketio_importable() -> bool:
    try:
        import socketio  # noqa: F401
    except ImportError:
        return False
    return True


def smoke(script: str, timeout: float) -> tuple[str, str]:
    """(stdout, everything printed) of `bench/{script} --smoke`, which must exit 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    code = done.returncode
    assert code == 0, f"expected exit 0 from the {script} smoke run, got {code}:\n{output}"
    return done.stdout, output


@pytest.mark.timeout(300)  # six servers started in turn, each a fresh Python process
def test_smoke_run_delivers_from_every_server_kind() -> None:
    stdout, output = smoke("bench_fanout.py", 280)
    table = stdout.split("smoke:", 1)[-1]
    expected = ["hub serve", "hub serve (100 ms writes)", "hub web+ingest", "broadcast"]
    expected += ["write floor"]
    if not socketio_importable():
        assert "socketio: skipped, python-socketio is not installed" in stdout, output
    else:
        expected.append("socketio")
    for server in expected:
        rows = [line for line in table.splitlines() if line[:SERVER_COLUMN].rstrip() == server]
        assert len(rows) == 1, f"expected one row for {server!r} in the smoke table:\n{output}"
        delivered = int(rows[0][SERVER_COLUMN:].split()[1].replace(",", ""))
        assert delivered > 0, f"expected {server} to deliver something:\n{output}"


@pytest.mark.timeout(120)
def test_smoke_run_drives_the_processor_through_a_cascade() -> None:
    stdout, output = smoke("processor_cascade.py", 100)
    line = next((line for line in stdout.splitlines() if "this tree:" in line), "")
    numbers = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:events|messages)", line)]
    assert len(numbers) == 2 and min(numbers) > 0, (
        f"expected events and messages on the 'this tree' line:\n{output}"
    )


@pytest.mark.timeout(240)
def test_smoke_run_takes_over_warm() -> None:
    stdout, output = smoke("bench_takeover.py", 220)
    summary = stdout.split("summary", 1)[-1]
    assert "standby: following 20 symbols" in summary, f"expected the standby to follow:\n{output}"
    assert "20 carried on, 0 rebuilt" in summary, f"expected every book carried on:\n{output}"
    assert "same epoch: True" in summary and "diffs again nan" not in summary, (
        f"expected diffs in the same epoch after the takeover:\n{output}"
    )


@pytest.mark.timeout(120)
def test_smoke_run_writes_to_every_session() -> None:
    stdout, output = smoke("bench_delivery.py", 100)
    rows = {
        cells[0]: cells[1:]
        for cells in map(str.split, stdout.splitlines())
        if cells[0:1] and cells[0].isdigit()
    }
    assert set(rows) == {"10", "100"}, f"expected a row for 10 and 100 sessions:\n{output}"
    for size, figures in rows.items():
        assert float(figures[0]) > 0, f"expected a positive figure for {size} sessions:\n{output}"


@pytest.mark.timeout(600)  # two ingest starts, a look-alike, a baseline revision, the demo
def test_smoke_run_prints_every_part_of_the_history_bench() -> None:
    stdout, output = smoke("bench_history.py", 580)
    table = stdout.split("\nsummary", 1)[-1]
    for part in ("1 load", "2 live", "3 flush", "4 demo", "5 channels"):
        assert f"\n{part}" in table, f"expected summary rows for part {part!r}:\n{output}"
    held = re.findall(r"events held once restored +([\d,]+) of ([\d,]+)", table)
    assert len(held) == 2, f"expected two restores in the summary:\n{output}"
    for restored, written in held:
        assert restored == written != "0", f"expected every written event restored:\n{output}"
    accepted = re.search(r"accepted +([\d,]+) of ([\d,]+) sent", table)
    assert accepted is not None, f"expected the live part's accepted count:\n{output}"
    assert accepted[1] == accepted[2] != "0", f"expected every sent event accepted:\n{output}"


@pytest.mark.timeout(200)
def test_smoke_run_reaches_every_healthy_sink() -> None:
    stdout, output = smoke("bench_alert_sinks.py", 180)
    for name in ("webhook", "telegram", "discord", "slack"):
        assert len(re.findall(rf"^  {name} +5/5 ", stdout, re.M)) == 2, output
