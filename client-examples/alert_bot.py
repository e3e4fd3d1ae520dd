#!/usr/bin/env python3
"""Print heatmap-hub alerts, one line each, and never miss one across reconnects.

    python client-examples/alert_bot.py --url ws://127.0.0.1:5000/ws \\
        --symbols BTCUSDT,ETHUSDT --min-notional 250000 --kinds large_liquidation,cascade

It subscribes to `alerts:*` (or `alerts:SYMBOL` per symbol) with a server-side `filter`,
remembers the last {epoch, seq} of every channel and sends it as `since` when it
reconnects, so the hub replays what was missed (docs/protocol.md, "Resuming with
`since`"). Alerts are de-duplicated by `id`. Alerts go to stdout; connection notices go to
stderr. Needs `websockets`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidURI, WebSocketException

KINDS = ("cluster_new", "cluster_growth", "large_liquidation", "cascade")
SEEN_MAX = 10_000  # alert ids remembered for de-duplication


class SubscribeRefused(Exception):
    """The hub answered our subscribe with an error (e.g. a symbol it does not track yet)."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class AlertBot:
    def __init__(self, url: str, channels: list[str], alert_filter: dict[str, Any]) -> None:
        self.url = url
        self.channels = channels
        self.filter = alert_filter
        self.positions: dict[str, dict[str, Any]] = {}  # channel -> {"epoch", "seq"}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.request_id = 0

    def subscribe_request(self) -> dict[str, Any]:
        self.request_id += 1
        request: dict[str, Any] = {
            "op": "subscribe",
            "id": self.request_id,
            "channels": self.channels,
        }
        if self.filter:
            request["filter"] = self.filter
        if self.positions:
            request["since"] = dict(self.positions)
        return request

    def admits(self, alert: dict[str, Any]) -> bool:
        """The filter again on our side, so a replayed backlog obeys it too."""
        f = self.filter
        return (
            alert.get("notional", 0) >= f.get("min_notional", float("-inf"))
            and alert.get("z_score", 0) >= f.get("min_z", float("-inf"))
            and ("kinds" not in f or alert.get("kind") in f["kinds"])
        )

    def handle(self, message: dict[str, Any]) -> None:
        if "op" in message:
            if message["op"] == "error":
                text = f"{message.get('code')}: {message.get('message')}"
                if message.get("id") == self.request_id:
                    raise SubscribeRefused(text)
                log(f"error from hub: {text}")
            elif message["op"] == "subscribed":
                log(f"subscribed {','.join(message.get('channels', []))}")
            return
        if message.get("type") != "alert":
            return
        channel = message["ch"]
        previous = self.positions.get(channel)
        if previous is not None and previous["epoch"] != message["epoch"]:
            log(f"{channel}: new epoch {message['epoch']} (hub restarted); alerts may be missing")
        self.positions[channel] = {"epoch": message["epoch"], "seq": message["seq"]}
        alert = message["data"]
        if alert["id"] in self.seen or not self.admits(alert):
            return
        self.seen[alert["id"]] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        print(format_alert(alert), flush=True)

    async def run(self, max_backoff: float) -> None:
        delay = 0.5
        while True:
            connected_at = 0.0
            try:
                async with connect(self.url, open_timeout=10) as ws:
                    connected_at = asyncio.get_running_loop().time()
                    log(f"connected to {self.url}")
                    await ws.send(json.dumps(self.subscribe_request()))
                    async for raw in ws:
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            self.handle(json.loads(raw))
                    reason = f"closed {ws.close_code} {ws.close_reason or ''}".strip()
            except InvalidURI:
                raise
            except (OSError, TimeoutError, WebSocketException, SubscribeRefused) as error:
                reason = f"{type(error).__name__}: {error}"
            loop_time = asyncio.get_running_loop().time()
            if connected_at and loop_time - connected_at > 30:
                delay = 0.5  # the connection was healthy: start the backoff again
            wait = delay * random.uniform(0.5, 1.5)
            log(f"disconnected ({reason}); reconnecting in {wait:.1f}s")
            await asyncio.sleep(wait)
            delay = min(delay * 2, max_backoff)


def format_alert(alert: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(alert["time"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    side = f" side={alert['side']}" if alert.get("side") else ""
    detail = f"  {alert['detail']}" if alert.get("detail") else ""
    return (
        f"{when} {alert['symbol']:<10} {alert['kind']:<17} {alert['risk']:<8} "
        f"price={alert['price']:g} notional={alert['notional']:,.0f} "
        f"z={alert['z_score']:.2f} window={alert['window']}{side} id={alert['id']}{detail}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:5000/ws")
    parser.add_argument("--symbols", default="*", help="'*' or a comma-separated list")
    parser.add_argument("--min-notional", type=float, default=None)
    parser.add_argument("--min-z", type=float, default=None)
    parser.add_argument("--kinds", default=None, help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="seconds")
    args = parser.parse_args(argv)
    if args.kinds:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            parser.error(f"unknown kind(s) {', '.join(unknown)}; use {', '.join(KINDS)}")
        args.kinds = kinds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    channels = ["alerts:*"] if not symbols or "*" in symbols else [f"alerts:{s}" for s in symbols]
    alert_filter: dict[str, Any] = {}
    if args.min_notional is not None:
        alert_filter["min_notional"] = args.min_notional
    if args.min_z is not None:
        alert_filter["min_z"] = args.min_z
    if args.kinds:
        alert_filter["kinds"] = args.kinds
    bot = AlertBot(args.url, channels, alert_filter)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(bot.run(args.max_backoff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
