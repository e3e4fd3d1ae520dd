"""Throughput, memory and an incremental-vs-naive comparison for `LiquidationProcessor`.

Run from the repository root: ``python bench/bench_processor.py [--baseline REV]`` (about a
minute on 2 cores; two more with a baseline).

(a) Throughput: 200,000 synthetic events over 5 symbols (realistic prices, lognormal
    notionals) through `apply`, with a `flush` every 2,500 events, in two time profiles:
    "burst", where simulated time runs at 50,000 events/s (so a flush every 2,500 events is
    HEATMAP_FLUSH_MS = 50 ms), and "spread", the same events over 24 h, so the short windows
    age events out. The store keeps every event, as it does at real rates (the default
    HEATMAP_MAX_EVENTS is a safety cap; before issue 22 the bound was 10,000 per symbol and
    the burst profile evicted on every event).
    CPU time (`time.process_time`) is one core's; the share spent in `flush` is reported.
    ``--baseline REV`` runs the same events through git revision REV's processor too
    (`bench/processor_throughput.py`, each run in its own process, this tree and REV
    alternating ``--rounds`` times): the machine's speed drifts, so a figure means most
    next to its baseline from the same minutes.
(b) Memory: 5 symbols x 10,000 events held, every window populated, measured with
    tracemalloc (current traced memory once loaded). Target <= 25 MB.
(c) Incremental vs naive for one window (BTCUSDT 1h, up to 10,000 events): the hub's
    processor (apply + flush, its 1h window read) against a baseline that rebuilds
    `scipy.stats.gaussian_kde` over the held events at every update, on the same events
    and the same update points (20 of them). Also reports how far apart the two densities are.
(d) The bundled demo's liquidation frames (all eight exchanges) through each exchange's
    decoder into the processor: decode, apply + flush, and the two together
    (parse -> store -> windows) per event; each exchange's share of the demo's notional.
(e) Parse -> store -> windows at the rates of (a): the burst and spread events, each as its
    exchange's live frame (one liquidation a frame, the costliest case for the exchanges
    that batch), decoded by the feeds' decoders, applied, and flushed as in (a); then the
    burst events as each of the eight exchanges' frames alone (events/s per exchange).
Events of (a)-(c) and of (e)'s two mixed rows come from Binance, Bybit and OKX in the
proportions the demo had before the other five joined it (46 % Binance, 34 % Bybit, 20 %
OKX), so the store's per-exchange duplicate check sees all three and the figures stay
comparable with earlier runs.
Figures are printed; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from scipy.stats import gaussian_kde

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import processor_throughput as runner
from bench.trees import extract_hub
from hub.analytics.grid import PriceGrid
from hub.analytics.processor import LiquidationProcessor, ProcessorConfig
from hub.config import EXCHANGES
from hub.feeds.replay import DECODERS, read_replays
from hub.models import LiquidationEvent, Side
from hub.service.sources import DATA
from tests.fakes.binance_server import force_order
from tests.fakes.bitget_server import push_frame as bitget_push
from tests.fakes.bitget_server import row as bitget_row
from tests.fakes.bitmex_server import INSTRUMENTS as BITMEX_INSTRUMENTS
from tests.fakes.bitmex_server import order as bitmex_order
from tests.fakes.bitmex_server import table_frame
from tests.fakes.bybit_server import liquidation as bybit_liquidation
from tests.fakes.deribit_server import trade as deribit_trade
from tests.fakes.deribit_server import trades_frame
from tests.fakes.gate_server import MULTIPLIERS as GATE_MULTIPLIERS
from tests.fakes.gate_server import FakeGate, wire_row
from tests.fakes.gate_server import push_frame as gate_push
from tests.fakes.htx_server import notify_frame
from tests.fakes.htx_server import row as htx_row
from tests.fakes.okx_server import CONTRACT_VALUES as OKX_CONTRACT_VALUES
from tests.fakes.okx_server import FakeOkx, detail, push_frame

N_EVENTS = 200_000
FLUSH_EVERY = runner.FLUSH_EVERY
BURST_RATE = 50_000  # simulated events per second in the burst profile
START = 1_795_176_000_000
DAY = 86_400_000
MEMORY_EVENTS = 10_000  # per symbol, held in (b) and (c)
HELD = ProcessorConfig().max_events  # the store's cap in (a), (d), (e): it never binds
MEMORY_TARGET_MB = 25.0
EXCHANGE_SHARES = {"binance": 0.46, "bybit": 0.34, "okx": 0.20}
BASELINE_UPDATES = 20

# symbol: (start price, tick decimals, quantity decimals, per-event log volatility)
SYMBOLS = {
    "BTCUSDT": (60_000.0, 1, 3, 3e-4),
    "ETHUSDT": (3_000.0, 2, 3, 4e-4),
    "SOLUSDT": (150.0, 3, 0, 5.5e-4),
    "ADAUSDT": (0.45, 4, 0, 5.5e-4),
    "BNBUSDT": (580.0, 2, 2, 3.5e-4),
}


def synthetic_events(n: int, span_ms: int, seed: int = 7) -> list[LiquidationEvent]:
    """`n` events over `span_ms`, round-robin-ish over the symbols, each on its own random
    walk; notionals lognormal (median ~4,000, a few over 1,000,000, as on Binance)."""
    rng = np.random.default_rng(seed)
    names = list(SYMBOLS)
    which = rng.integers(0, len(names), n)
    notionals = rng.lognormal(math.log(4_000.0), 1.6, n).tolist()  # floats, as decoded
    sides = rng.random(n) < 0.55
    exchange_names = list(EXCHANGE_SHARES)  # the feeds' own constant strings, as live
    exchanges = rng.choice(len(exchange_names), n, p=list(EXCHANGE_SHARES.values()))
    times = (START + (np.arange(n) * span_ms) // n).tolist()
    walks = {}
    for index, name in enumerate(names):
        price, _, _, vol = SYMBOLS[name]
        count = int(np.sum(which == index))
        walks[name] = iter((price * np.exp(np.cumsum(rng.normal(0.0, vol, count)))).tolist())
    events = []
    for i in range(n):
        name = names[which[i]]
        _, price_decimals, qty_decimals, _ = SYMBOLS[name]
        price = round(next(walks[name]), price_decimals)
        quantity = max(round(notionals[i] / price, qty_decimals), 10.0**-qty_decimals)
        events.append(
            LiquidationEvent(
                exchange_names[exchanges[i]],
                name,
                "long" if sides[i] else "short",
                price,
                quantity,
                price * quantity,
                int(times[i]),
            )
        )
    return events


def new_processor(max_events: int = MEMORY_EVENTS) -> LiquidationProcessor:
    return runner.new_processor(list(SYMBOLS), max_events)


def throughput(events: list[LiquidationEvent]) -> dict[str, float]:
    return runner.throughput(events, list(SYMBOLS), HELD)


def throughput_beside(
    profiles: dict[str, list[LiquidationEvent]], baseline: str, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """events/s of (a) for this tree and for git revision `baseline`, each in its own
    process, alternating `rounds` times so that both meet the same machine."""
    root = Path(__file__).resolve().parent.parent
    results: dict[str, dict[str, list[float]]] = {"this tree": {}, baseline: {}}
    with tempfile.TemporaryDirectory() as scratch:
        old = extract_hub(baseline, Path(scratch) / "baseline")
        for name, events in profiles.items():
            path = Path(scratch) / f"{name}.msgpack"
            runner.write_events(path, events)
            for _ in range(rounds):
                for label, tree in (("this tree", root), (baseline, old)):
                    out = subprocess.run(
                        [sys.executable, runner.__file__, str(tree), str(path), str(HELD)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    rate = json.loads(out.stdout)["events_per_s"]
                    results[label].setdefault(name, []).append(rate)
    return results


# -- (b) memory --------------------------------------------------------------------------


def memory(span_ms: int) -> tuple[float, int]:
    """MB traced for 5 x 10,000 held events and every window, events spread over `span_ms`."""
    # Drawn with room to spare, then the first MEMORY_EVENTS of each symbol: every symbol
    # holds exactly the bound. Plain tuples, so that the events themselves are created (and
    # counted) while tracing.
    template = synthetic_events(len(SYMBOLS) * MEMORY_EVENTS * 6 // 5, span_ms, seed=11)
    taken = dict.fromkeys(SYMBOLS, 0)
    fields: list[tuple[str, Side, float, float, float, int]] = []
    for e in template:
        if taken[e.symbol] < MEMORY_EVENTS:
            taken[e.symbol] += 1
            fields.append((e.symbol, e.side, e.price, e.quantity, e.notional, e.time))
    del template
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    processor = new_processor(max_events=MEMORY_EVENTS)
    now = 0
    for symbol, side, price, quantity, notional, t in fields:
        now = t + 200
        event = LiquidationEvent("binance", symbol, side, price, quantity, notional, t)
        processor.apply(event, now)
    processor.flush(now)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    held = sum(len(book.store) for book in processor.books.values())
    return used / 1e6, held


# -- (c) incremental vs a naive gaussian_kde rebuild -------------------------------------


class NaiveWindow:
    """What the hub avoids: keep the events, rebuild a weighted gaussian_kde per update."""

    def __init__(self, grid: PriceGrid, bandwidth: float, span_ms: int, max_events: int) -> None:
        self.grid = grid
        self.bandwidth = bandwidth
        self.span_ms = span_ms
        self.max_events = max_events
        self.events: deque[LiquidationEvent] = deque()
        self.xs = grid.density_start + grid.bin_width * np.arange(grid.density_size)

    def add(self, event: LiquidationEvent) -> None:
        self.events.append(event)
        if len(self.events) > self.max_events:
            self.events.popleft()

    def flush(self, now: int) -> np.ndarray:
        while self.events and self.events[0].time < now - self.span_ms:
            self.events.popleft()
        prices = np.fromiter((e.price for e in self.events), float, len(self.events))
        weights = np.fromiter((e.notional for e in self.events), float, len(self.events))
        total = weights.sum()
        # bw_method is a factor of the data's std, which gaussian_kde takes as np.cov with
        # these weights: pick the factor that makes the kernel exactly h wide.
        spread = math.sqrt(float(np.cov(prices, aweights=weights)))
        kde = gaussian_kde(prices, bw_method=self.bandwidth / spread, weights=weights)
        assert math.isclose(math.sqrt(float(kde.covariance[0, 0])), self.bandwidth, rel_tol=1e-9)
        return kde(self.xs) * total * self.grid.bin_width  # notional per step, as the hub's


def incremental_vs_naive(events: list[LiquidationEvent]) -> dict[str, float]:
    btc = [e for e in events if e.symbol == "BTCUSDT"]
    span = 3_600_000
    grid = PriceGrid.around(btc[0].price, 15.0, "bench")
    bandwidth_pct = 0.3
    processor = LiquidationProcessor(ProcessorConfig(max_events=MEMORY_EVENTS), epoch="bench")
    book = processor.track("BTCUSDT", 0)
    naive = NaiveWindow(grid, grid.reference_price * bandwidth_pct / 100, span, MEMORY_EVENTS)
    per_update = len(btc) // (BASELINE_UPDATES * 3)  # the last 20 of 60 updates are timed
    incremental_s = naive_s = 0.0
    worst_gap = 0.0
    updates = 0
    batches = _batches(btc, per_update)
    for index, batch in enumerate(batches):
        timed = index >= len(batches) - BASELINE_UPDATES
        now = batch[-1].time + 200
        began = time.process_time()
        for event in batch:
            processor.apply(event, now)
        processor.flush(now)
        spent = time.process_time() - began
        if not timed:
            for event in batch:
                naive.add(event)
            continue
        began = time.process_time()
        for event in batch:
            naive.add(event)
        baseline = naive.flush(now)
        naive_s += time.process_time() - began
        incremental_s += spent
        updates += 1
        window = book.windows["1h"]
        values = np.asarray(window.density_message().values)
        if len(values) == len(baseline):  # the same axis (the hub's may have moved)
            gap = float(np.max(np.abs(values - baseline)) / np.max(baseline))
            worst_gap = max(worst_gap, gap)
    window = book.windows["1h"]
    return {
        "updates": updates,
        "events_per_update": per_update,
        "held": len(window.events()),
        "incremental_ms": 1_000 * incremental_s / updates,
        "naive_ms": 1_000 * naive_s / updates,
        "ratio": naive_s / incremental_s,
        "max_rel_gap": worst_gap,
    }


def _batches(events: list[LiquidationEvent], size: int) -> list[list[LiquidationEvent]]:
    def chunks() -> Iterator[list[LiquidationEvent]]:
        for start in range(0, len(events) - size + 1, size):
            yield events[start : start + size]

    return list(chunks())


# The demo's liquidation recordings; its mark prices and OKX books go to other readers.
DEMO_LIQUIDATIONS = (
    "demo_session.jsonl",
    *(f"demo_{exchange}.jsonl" for exchange in EXCHANGES[1:]),
)


def demo_throughput() -> dict[str, object]:
    """The demo's liquidation frames through each exchange's own decoder, then its events
    through `apply` with a flush every FLUSH_EVERY events, as in (a); CPU time of one core."""
    lines = read_replays(DATA / name for name in DEMO_LIQUIDATIONS)
    decoders = {source: factory() for source, factory in DECODERS.items()}
    events: list[LiquidationEvent] = []
    gc.collect()
    began = time.process_time()
    for line in lines:
        decoder = decoders[line.source]
        if line.rest is not None:
            decoder.take_rest(line.rest, bytes(line.raw))
        else:
            events.extend(decoder.decode(bytes(line.raw)).events)
    decode_s = time.process_time() - began
    events.sort(key=lambda event: event.time)
    applied = throughput(events)
    notional = dict.fromkeys(DECODERS, 0.0)
    count = dict.fromkeys(DECODERS, 0)
    for event in events:
        notional[event.exchange] += event.notional
        count[event.exchange] += 1
    apply_s = applied["cpu_s"]
    return {
        "frames": len(lines),
        "events": len(events),
        "decode_us": 1e6 * decode_s / len(events),
        "events_per_s": applied["events_per_s"],
        "pipeline_per_s": len(events) / (decode_s + apply_s),
        "count": count,
        "share": {x: notional[x] / sum(notional.values()) for x in notional},
        "notional": notional,
    }


# -- (e) parse -> store -> windows ------------------------------------------------------

OKX_INSTRUMENTS = "/api/v5/public/instruments?instType=SWAP"
GATE_CONTRACTS = "/api/v4/futures/usdt/contracts"
BITMEX_ACTIVE = "/api/v1/instrument/active"
# The linear perpetuals of every bench symbol, in the BitMEX look-alike's instrument shape.
BITMEX_LINEAR = [
    {**BITMEX_INSTRUMENTS[1], "symbol": f"{base}USDT", "rootSymbol": base,
     "underlyingToPositionMultiplier": 1_000_000}
    for base in ("XBT", "ETH", "SOL", "ADA", "BNB")
]  # fmt: skip


def okx_instruments() -> bytes:
    """The OKX look-alike's instruments answer: the contract values `wire_frame` uses."""
    return msgspec.json.encode(FakeOkx().rest(*OKX_INSTRUMENTS.split("?"))[1])


def rest_answers() -> dict[str, tuple[str, bytes]]:
    """Per exchange, the instruments answer its decoder needs (the look-alikes')."""
    return {
        "okx": (OKX_INSTRUMENTS, okx_instruments()),
        "gate": (GATE_CONTRACTS, msgspec.json.encode(FakeGate().rest(GATE_CONTRACTS, "")[1])),
        "bitmex": (BITMEX_ACTIVE, msgspec.json.encode(BITMEX_LINEAR)),
    }


def wire_frame(event: LiquidationEvent, index: int) -> bytes:
    """`event` as its exchange pushes it, built by the test look-alikes' frame builders
    (docs/exchanges.md gives each exchange's side convention and units); `index` makes
    the ids some exchanges key liquidations by unique."""
    long, symbol, t = event.side == "long", event.symbol, event.time
    price, quantity = repr(event.price), repr(event.quantity)
    base = symbol[:-4]
    frame: dict[str, Any]
    if event.exchange == "binance":
        order = force_order(symbol, "SELL" if long else "BUY", price, quantity, trade_time=t)
        frame = {"stream": f"{symbol.lower()}@forceOrder", "data": order}
    elif event.exchange == "bybit":
        item = bybit_liquidation(symbol, "Buy" if long else "Sell", quantity, price, t)
        frame = {"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": t + 5,
                 "data": [item]}  # fmt: skip
    elif event.exchange == "okx":
        inst_id = f"{base}-USDT-SWAP"
        contracts = max(round(event.quantity / float(OKX_CONTRACT_VALUES[inst_id])), 1)
        frame = push_frame(inst_id, [detail("sell" if long else "buy", str(contracts), price, t)])
    elif event.exchange == "bitget":
        amount = repr(event.price * event.quantity)
        frame = bitget_push([bitget_row(symbol, "buy" if long else "sell", price, amount, t)])
    elif event.exchange == "gate":
        contracts = event.quantity / float(GATE_MULTIPLIERS[f"{base}_USDT"])
        row = {"contract": f"{base}_USDT", "size": -contracts if long else contracts,
               "price": event.price, "time": t}  # fmt: skip
        frame = gate_push([wire_row(row)])
    elif event.exchange == "htx":
        row = htx_row(f"{base}-USDT", "sell" if long else "buy", event.quantity, event.price, t)
        frame = notify_frame([row])
    elif event.exchange == "deribit":  # inverse: the amount in USD
        usd = event.price * event.quantity
        trade = deribit_trade(f"{base}-PERPETUAL", "sell" if long else "buy", usd, event.price,
                              "T", str(index), t)  # fmt: skip
        frame = trades_frame(f"{base}-PERPETUAL", [trade])
    else:
        name = "XBTUSDT" if base == "BTC" else f"{base}USDT"
        contracts = round(event.quantity * 1_000_000)
        row = bitmex_order(str(index), name, "Sell" if long else "Buy", event.price, contracts)
        frame = table_frame("insert", [row])
    return msgspec.json.encode(frame)


def pipeline_throughput(events: list[LiquidationEvent]) -> dict[str, float]:
    """Every event's frame decoded, applied and flushed as in (a); CPU time of one core."""
    frames = [(e.exchange, wire_frame(e, i), e.time + runner.LAG_MS) for i, e in enumerate(events)]
    decoders = {source: factory() for source, factory in DECODERS.items()}
    for source, (path, body) in rest_answers().items():
        decoders[source].take_rest(path, body)
    bitmex = decoders["bitmex"]
    processor = new_processor()
    apply, flush, lag = processor.apply, processor.flush, runner.LAG_MS
    count = 0
    gc.collect()
    began = time.process_time()
    for source, frame, received in frames:
        if source == "bitmex":  # its rows carry no time: the receive time is given
            decoded = bitmex.decode(frame, received)  # type: ignore[call-arg]
        else:
            decoded = decoders[source].decode(frame)
        for event in decoded.events:
            apply(event, event.time + lag)
            count += 1
            if count % FLUSH_EVERY == 0:
                flush(event.time + lag)
    return {"events_per_s": count / (time.process_time() - began), "events": count}


def as_exchange(events: list[LiquidationEvent], exchange: str) -> list[LiquidationEvent]:
    return [msgspec.structs.replace(e, exchange=exchange) for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run (a) on git revision REV's processor, alternating with this tree's",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations with --baseline")
    args = parser.parse_args()
    wall = time.perf_counter()
    print(
        f"heatmap-hub processor benchmark: {N_EVENTS:,} events over {len(SYMBOLS)} symbols, "
        f"flush every {FLUSH_EVERY:,} events, CPU time of one core\n"
    )

    burst = synthetic_events(N_EVENTS, N_EVENTS * 1_000 // BURST_RATE)
    spread = synthetic_events(N_EVENTS, DAY)
    rows = [
        ("burst", f"{N_EVENTS * 1_000 // BURST_RATE // 1000} s", throughput(burst)),
        ("spread", "24 h", throughput(spread)),
    ]
    print("(a) throughput: apply + flush")
    print(
        f"  {'profile':<8} {'sim. span':>9} {'events/s':>10} {'CPU s':>7} {'in flush':>9} "
        f"{'ms/flush':>9} {'messages':>9} {'held':>7}"
    )
    for name, span, r in rows:
        print(
            f"  {name:<8} {span:>9} {r['events_per_s']:>10,.0f} {r['cpu_s']:>7.2f} "
            f"{r['flush_share']:>8.1%} {r['flush_ms']:>9.2f} {r['messages']:>9,} "
            f"{r['held']:>7,}"
        )

    if args.baseline:
        beside = throughput_beside({"burst": burst, "spread": spread}, args.baseline, args.rounds)
        print(
            f"\n(a) beside {args.baseline}: events/s, each run in its own process, the two "
            f"alternating {args.rounds} times (best / median)"
        )
        print(f"  {'profile':<8} {'this tree':>17} {args.baseline:>17} {'best/best':>10}")
        for name in ("burst", "spread"):
            ours, theirs = beside["this tree"][name], beside[args.baseline][name]
            print(
                f"  {name:<8} {max(ours):>8,.0f} / {statistics.median(ours):>6,.0f} "
                f"{max(theirs):>8,.0f} / {statistics.median(theirs):>6,.0f} "
                f"{max(ours) / max(theirs):>9.2f}x"
            )

    # The worst case: every event inside even the 5m window, so all 9 windows hold all of
    # them (one run only: tracemalloc makes it slow).
    mb, held = memory(240_000)
    print(
        f"\n(b) memory: {len(SYMBOLS)} symbols x {MEMORY_EVENTS:,} events, all 9 windows "
        f"holding every event (tracemalloc, current)"
    )
    verdict = "within" if mb <= MEMORY_TARGET_MB else "OVER"
    print(
        f"  {mb:.2f} MB for {held:,} events: {verdict} the {MEMORY_TARGET_MB:.0f} MB target "
        f"({1e6 * mb / held:,.0f} bytes per held event)"
    )

    r = incremental_vs_naive(burst)
    print(
        f"\n(c) one window (BTCUSDT 1h, {r['held']:,} events held), {r['updates']} updates of "
        f"{r['events_per_update']:,} events each"
    )
    print(f"  {'':<38} {'ms/update':>10}")
    print(f"  {'incremental (processor apply+flush)':<38} {r['incremental_ms']:>10.3f}")
    print(f"  {'naive (scipy gaussian_kde rebuild)':<38} {r['naive_ms']:>10.3f}")
    print(f"  {'naive / incremental':<38} {r['ratio']:>10.1f}x")
    print(f"  largest density difference: {r['max_rel_gap']:.2e} of the peak")
    d = demo_throughput()
    print(
        f"\n(d) the demo: {d['frames']:,} frames of {len(EXCHANGES)} exchanges, "
        f"{d['events']:,} events; "
        f"decode {d['decode_us']:.1f} us/event, apply + flush {d['events_per_s']:,.0f} events/s; "
        f"parse -> store -> windows {d['pipeline_per_s']:,.0f} events/s"
    )
    print(f"  {'exchange':<8} {'events':>7} {'notional $':>14} {'share':>7}")
    for exchange, share in d["share"].items():  # type: ignore[attr-defined]
        print(
            f"  {exchange:<8} {d['count'][exchange]:>7,} "  # type: ignore[index]
            f"{d['notional'][exchange]:>14,.0f} {share:>7.1%}"  # type: ignore[index]
        )
    print(
        f"\n(e) parse -> store -> windows: (a)'s events as wire frames, one a frame, through "
        f"each exchange's decoder, apply, flush every {FLUSH_EVERY:,} (target 50,000 events/s)"
    )
    print(f"  {'profile':<8} {'events/s':>10} {'events':>9}")
    for name, events in (("burst", burst), ("spread", spread)):
        e = pipeline_throughput(events)
        print(f"  {name:<8} {e['events_per_s']:>10,.0f} {e['events']:>9,.0f}")
    print("  burst, each exchange's frames alone:")
    print(f"  {'exchange':<8} {'events/s':>10} {'events':>9}")
    for exchange in EXCHANGES:
        e = pipeline_throughput(as_exchange(burst, exchange))
        print(f"  {exchange:<8} {e['events_per_s']:>10,.0f} {e['events']:>9,.0f}")
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
