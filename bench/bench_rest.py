"""REST throughput and latency of `heatmap-hub serve --replay`, before and after, in one run.

Run from the repository root: ``python bench/bench_rest.py [--baseline-rev REV]``
(about a minute; needs `wrk` on the PATH: ``apt-get install -y wrk``).

A synthetic replay holds 10,000 liquidations for each of the 5 default symbols within 55
minutes (a random-walk price spreading over about ±8 %, lognormal notionals), so the 1h
window holds every event, HEATMAP_MAX_EVENTS (10,000) of them per symbol, on hundreds of
bins. For each tree (the baseline: REV exported with `git archive` to a temporary
directory; then this checkout) the script
starts `python -m hub serve --replay FILE --speed 0` on a free port, waits until status
shows every event held, and runs `wrk -t2 -c10 -d10s --latency` against each URL in turn:

- heatmap: `GET /api/heatmap/liquidations/BTCUSDT/heatmap?timeWindow=1h` (issue 12's
  target: >= 3,000 requests/s, p99 <= 10 ms, 10 concurrent clients, one process);
- events: `GET /api/heatmap/liquidations/BTCUSDT?timeWindow=1h&limit=100`.

wrk and the server share the machine's cores; requests/s and percentiles are wrk's.
Figures are printed; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0, "ADAUSDT": 0.45,
           "BNBUSDT": 580.0}  # fmt: skip
EVENTS_PER_SYMBOL = 10_000
SPAN_MS = 55 * 60_000
START_MS = 1_795_176_000_000
URLS = {
    "heatmap": "/api/heatmap/liquidations/BTCUSDT/heatmap?timeWindow=1h",
    "events": "/api/heatmap/liquidations/BTCUSDT?timeWindow=1h&limit=100",
}


def write_replay(path: Path, seed: int = 7) -> None:
    """One frame per event, as Binance's combined stream sends them, in time order."""
    rng = random.Random(seed)
    lines = []
    for symbol, price in SYMBOLS.items():
        decimals = max(0, 6 - len(str(int(price))))
        for i in range(EVENTS_PER_SYMBOL):
            price *= 1 + rng.gauss(0, 0.0008)
            time_ms = START_MS + i * SPAN_MS // EVENTS_PER_SYMBOL + rng.randrange(50)
            quantity = rng.lognormvariate(9, 1.3) / price
            order = {
                "s": symbol, "S": rng.choice(("BUY", "SELL")), "o": "LIMIT", "f": "IOC",
                "q": f"{quantity:.3f}", "p": f"{price:.{decimals}f}",
                "ap": f"{price:.{decimals}f}", "X": "FILLED", "l": f"{quantity:.3f}",
                "z": f"{quantity:.3f}", "T": time_ms,
            }  # fmt: skip
            data = {"e": "forceOrder", "E": time_ms + 5, "o": order}
            raw = {"stream": f"{symbol.lower()}@forceOrder", "data": data}
            lines.append((time_ms + 20, {"t": time_ms + 20, "source": "binance", "raw": raw}))
    lines.sort(key=lambda line: line[0])
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for _, line in lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def serve(tree: Path, replay: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "--log-level", "warning", "serve", "--replay",
         str(replay), "--speed", "0", "--port", str(port)],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            status = get_json(f"{base}/api/heatmap/status")["data"]
            held = [status["symbols"][s]["events"] for s in SYMBOLS]
            snapshot = get_json(base + URLS["heatmap"])["data"]
            if held == [EVENTS_PER_SYMBOL] * len(SYMBOLS) and (
                snapshot["statistics"]["event_count"] == EVENTS_PER_SYMBOL
            ):
                return process, base
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the hub in {tree} did not hold every event within 180 s")


def wrk(url: str, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk's own report."""
    out = subprocess.run(
        ["wrk", "-t2", "-c10", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def percentile(name: str) -> float:
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} failed responses\n{out}")
    return rate, percentile("50"), percentile("99")


def measure(tree: Path, replay: Path, seconds: int) -> dict[str, tuple[float, float, float]]:
    process, base = serve(tree, replay)
    try:
        body = urllib.request.urlopen(base + URLS["heatmap"], timeout=5).read()
        print(f"  {tree}: heatmap body {len(body):,} bytes", flush=True)
        wrk(base + URLS["heatmap"], 2)  # warm-up
        return {name: wrk(base + path, seconds) for name, path in URLS.items()}
    finally:
        process.terminate()
        process.wait(15)


def export_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-rev", default="main", help="git revision to compare with")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on the PATH (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        replay = Path(tmp) / "replay.jsonl"
        write_replay(replay)
        baseline_tree = export_tree(args.baseline_rev, Path(tmp) / "baseline")
        print(f"replay: {len(SYMBOLS)} symbols x {EVENTS_PER_SYMBOL:,} events; "
              f"wrk -t2 -c10 -d{args.seconds}s", flush=True)  # fmt: skip
        results = {
            f"baseline ({args.baseline_rev})": measure(baseline_tree, replay, args.seconds),
            "this checkout": measure(ROOT, replay, args.seconds),
        }
    print("\n| endpoint | tree | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for name in URLS:
        for tree, figures in results.items():
            rate, p50, p99 = figures[name]
            print(f"| {name} | {tree} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
