"""Alerts per hour per symbol that a bot on `alerts:*` receives from a running hub.

    HEATMAP_DATA_DIR=off heatmap-hub serve --demo --port 5077 --speed 10 &
    python bench/bench_alert_rate.py --url ws://127.0.0.1:5077/ws --seconds 180 --speed 10

Subscribes to `alerts:*` with no filter, counts the alerts of each symbol and kind for
`--seconds`, and prints the count and the rate per hour of market time (per symbol, and
their mean): at `--speed 10`, 180 s is the demo's whole 30-minute session. Alerts carried
by the subscription's first seconds count like any other.

    python bench/bench_alert_rate.py --offline [--hub-root ../other-checkout]

is the same count without a server, and the same every time: the bundled Binance session
(30 minutes, 5 symbols) through the processor at its own times, flushed every second, as
tests/test_processor.py replays it, with the default thresholds of the `hub` package
under `--hub-root` (default: this checkout; another checkout measures its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect


async def count(url: str, seconds: float) -> tuple[Counter[str], Counter[str], float]:
    by_symbol: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    async with connect(url, open_timeout=30) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": ["alerts:*"]}))
        started = time.monotonic()
        deadline = started + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            message = json.loads(raw)
            if message.get("type") == "alert":
                by_symbol[message["data"]["symbol"]] += 1
                by_kind[message["data"]["kind"]] += 1
        return by_symbol, by_kind, time.monotonic() - started


def offline(hub_root: str) -> tuple[Counter[str], Counter[str], float]:
    sys.path.insert(0, str(Path(hub_root).resolve()))
    from hub.analytics.processor import ProcessorConfig
    from tests.test_processor import replay

    _, alerts, _ = replay(ProcessorConfig(), flush_ms=1_000)
    return Counter(a.symbol for a in alerts), Counter(a.kind for a in alerts), 1_800.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:5000/ws")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument(
        "--speed", type=float, default=1.0, help="the hub's --speed: rates are per market hour"
    )
    parser.add_argument("--offline", action="store_true", help="the bundled session, no server")
    parser.add_argument("--hub-root", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    if args.offline:
        by_symbol, by_kind, took = offline(args.hub_root)
    else:
        by_symbol, by_kind, took = asyncio.run(count(args.url, args.seconds))
    hours = took * args.speed / 3600
    print(f"{sum(by_symbol.values())} alerts in {took:.0f} s ({took * args.speed:.0f} s of market)")
    for symbol, n in sorted(by_symbol.items()):
        print(f"  {symbol:<10} {n:5d}  {n / hours:8.0f}/h")
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    symbols = max(len(by_symbol), 1)
    print(f"mean alerts per hour per symbol: {sum(by_symbol.values()) / hours / symbols:.0f}")


if __name__ == "__main__":
    main()
