"""How long an alert takes to reach each of five sinks when one of them is down.

Run from the repository root: ``python bench/bench_alert_sinks.py`` (about a minute).

Five look-alikes on loopback (tests/fakes/sink_servers.py): a webhook receiver, the
Telegram Bot API, a Discord and a Slack incoming webhook answering as the services do,
and a fifth webhook that is down. `AlertDelivery` (what `ingest` runs) gets `--alerts`
alerts at `--rate` a second; each healthy sink's latency is the time from `offer` (the
moment the publisher hands the alert over) to the look-alike's receipt, both on this
machine's clock. The look-alikes and the delivery share one event loop, as a hub and its
sinks never do: the figures include the receivers' own work.

"Down" is `--down`: `hang` (default: accepts the connection and never answers, the
worst case, each attempt ends at the sink's 10 s timeout), `refused` (nothing listens) or
`503` (answers, always an error). The baseline is the same run with all five up. Figures
are printed; nothing is asserted about time. ``--smoke`` sends 5 alerts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.alerting.config import SinkConfig  # noqa: E402
from hub.alerting.delivered import DeliveredIds  # noqa: E402
from hub.alerting.delivery import AlertDelivery  # noqa: E402
from hub.models import Alert  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.fakes.sink_servers import (  # noqa: E402
    FakeDiscord,
    FakeSink,
    FakeSlack,
    FakeTelegram,
    FakeWebhook,
)

TOKEN, CHAT = "1:bench", "42"


def alert(number: int) -> Alert:
    return Alert(
        id=f"BTCUSDT:large_liquidation:1h:bench:{number}",
        kind="large_liquidation",
        symbol="BTCUSDT",
        price=61_234.5,
        notional=1_500_000.0,
        z_score=3.2,
        risk="extreme",
        window="1h",
        time=int(time.time() * 1000),
        side="long",
        detail="Long liquidation of $1.50M at $61,234.5 on binance (z 3.2 in 1h)",
        exchanges=("binance",),
    )


async def run(count: int, rate: float, down: str | None) -> dict[str, list[float]]:
    """Per healthy sink: the latency of every alert, in seconds."""
    webhook, telegram = FakeWebhook(), FakeTelegram(TOKEN, CHAT)
    discord, slack, dead = FakeDiscord(), FakeSlack(), FakeWebhook()
    healthy: dict[str, FakeSink] = {
        "webhook": webhook,
        "telegram": telegram,
        "discord": discord,
        "slack": slack,
    }
    async with contextlib.AsyncExitStack() as stack:
        for fake in (*healthy.values(), dead):
            await stack.enter_async_context(fake)
        dead_url = dead.hook_url
        if down == "hang":
            dead.script.extend(["hang"] * (count * 10))
        elif down == "503":
            dead.script.extend(["503"] * (count * 10))
        elif down == "refused":
            dead_url = f"http://127.0.0.1:{free_port()}/hook"
        sinks = [
            SinkConfig(kind="webhook", name="webhook", url=webhook.hook_url, secret="k"),
            SinkConfig(
                kind="telegram", name="telegram", token=TOKEN, chat_id=CHAT, api_url=telegram.url
            ),
            SinkConfig(kind="discord", name="discord", url=discord.hook_url),
            SinkConfig(kind="slack", name="slack", url=slack.hook_url),
            SinkConfig(kind="webhook", name="down", url=dead_url, secret="k"),
        ]
        delivery = AlertDelivery(sinks, DeliveredIds(), None)
        delivery.start()
        offered: list[float] = []
        try:
            for number in range(count):
                offered.append(time.time())
                delivery.offer(alert(number))
                await asyncio.sleep(1 / rate)
            for fake in healthy.values():
                await fake.wait_until(lambda f=fake: len(f.received) >= count, "alerts", 60)
        finally:
            dead.before_stop()  # let hung requests go, so the servers can stop
            await delivery.close()
        # A lane sends in order and a healthy sink takes each at the first attempt: the
        # i-th request a look-alike received is the i-th alert offered.
        return {
            name: [got.at - at for got, at in zip(fake.received, offered, strict=False)]
            for name, fake in healthy.items()
        }


def summary(latencies: dict[str, list[float]], count: int) -> list[str]:
    rows = []
    every = []
    for name, values in latencies.items():
        every += values
        ms = np.array(values) * 1000
        rows.append(
            f"  {name:<9} {len(values):>4}/{count}  p50 {np.percentile(ms, 50):7.1f} ms  "
            f"p99 {np.percentile(ms, 99):7.1f} ms  max {ms.max():7.1f} ms"
        )
    all_ms = np.array(every) * 1000
    rows.append(f"  all       p99 {np.percentile(all_ms, 99):.1f} ms")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="alerts a second")
    parser.add_argument("--down", choices=("hang", "refused", "503"), default="hang")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    count = 5 if args.smoke else args.alerts
    for label, down in ((f"one sink down ({args.down})", args.down), ("baseline: all up", None)):
        latencies = asyncio.run(run(count, args.rate, down))
        print(f"{label}: {count} alerts at {args.rate:g}/s, latency from offer to receipt")
        print("\n".join(summary(latencies, count)))


if __name__ == "__main__":
    main()
