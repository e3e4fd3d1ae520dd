"""The synthetic market of `bench_history.py`: USDT perpetuals with a realistic skew of
liquidations, as plain numpy columns.

It imports nothing from `hub`, so the baseline of part 3 (`history_baseline.py`, run
beside an older `hub`) draws exactly the same events from the same seed.

The skew: BTCUSDT about 30,000 liquidations a day, ETHUSDT 15,000, 48 mid caps from
5,000 down to 600 a day (geometric), and a long tail around 100 a day; at 300 symbols
that is about 170,000 a day, 5.1 million in 30 days. Prices walk randomly (3 % a day),
notionals are lognormal (median 4,000 USD, a few over a million, as on Binance), 55 % of
liquidations are of longs, and the exchanges are Binance, Bybit and OKX in the bundled
demo's proportions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

DAY_MS = 86_400_000
EXCHANGES = ["binance", "bybit", "okx"]
EXCHANGE_SHARES = (0.46, 0.34, 0.20)
DAILY_VOLATILITY = 0.03
LONG_SHARE = 0.55
PROBE = "PROBEUSDT"  # the tail symbol part 2 sends only its latency probes on
# fmt: off
MID_CAPS = [
    "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX", "LTC", "BCH", "NEAR",
    "APT", "ARB", "OP", "SUI", "1000PEPE", "WIF", "FIL", "ATOM", "ETC", "INJ", "TIA", "SEI",
    "RENDER", "AAVE", "UNI", "MKR", "LDO", "STX", "IMX", "RUNE", "FET", "WLD", "JUP", "ORDI",
    "ENA", "1000BONK", "HBAR", "ICP", "GALA", "SAND", "AXS", "CRV", "DYDX", "GMX", "PENDLE", "TON",
]
# fmt: on
MID_TOP, MID_BOTTOM = 5_000.0, 600.0  # liquidations a day of the first and last mid cap
TAIL_PER_DAY = 100.0


class Symbol(NamedTuple):
    name: str
    per_day: float  # liquidations a day
    price: float  # at the start of the history
    decimals: int  # of its prices: six significant digits


class Liquidations(NamedTuple):
    """One symbol's liquidations, oldest first."""

    time: np.ndarray  # int64 ms
    price: np.ndarray
    quantity: np.ndarray
    notional: np.ndarray  # price * quantity
    short: np.ndarray  # bool: the liquidated position was short
    exchange: np.ndarray  # uint8, into EXCHANGES

    def __len__(self) -> int:
        return len(self.time)


def symbols(count: int, seed: int = 22) -> list[Symbol]:
    """BTC, ETH, then mid caps, then the tail; the last one is the probe symbol."""
    rng = np.random.default_rng(seed)
    mids = len(MID_CAPS)
    ratio = (MID_BOTTOM / MID_TOP) ** (1 / (mids - 1))
    market = [Symbol("BTCUSDT", 30_000.0, 60_000.0, 1), Symbol("ETHUSDT", 15_000.0, 3_000.0, 2)]
    for index in range(count - 2):
        if index == count - 3:
            name, per_day = PROBE, TAIL_PER_DAY
        elif index < mids:
            name, per_day = f"{MID_CAPS[index]}USDT", MID_TOP * ratio**index
        else:
            name = f"ALT{index - mids:03d}USDT"
            per_day = TAIL_PER_DAY * float(np.exp(rng.normal(0.0, 0.3)))
        price = float(np.exp(rng.normal(math.log(5.0), 2.0)))
        decimals = max(0, 5 - math.floor(math.log10(price)))
        market.append(Symbol(name, per_day, round(price, decimals), decimals))
    return market[:count]


def liquidations(
    symbol: Symbol, start: int, end: int, rng: np.random.Generator, count: int | None = None
) -> Liquidations:
    """`count` (default: the symbol's rate over the span, drawn) liquidations at uniform
    random times in [start, end)."""
    if count is None:
        count = int(rng.poisson(symbol.per_day * (end - start) / DAY_MS))
    time = np.sort(rng.integers(start, end, count))
    return _priced(symbol, time, symbol.price, rng)


def continued(
    symbol: Symbol, time: np.ndarray, last_price: float, rng: np.random.Generator
) -> Liquidations:
    """Liquidations at the given times (sorted), the price walk carrying on from
    `last_price`."""
    return _priced(symbol, time, last_price, rng)


def _priced(
    symbol: Symbol, time: np.ndarray, start_price: float, rng: np.random.Generator
) -> Liquidations:
    count = len(time)
    step = DAILY_VOLATILITY / math.sqrt(symbol.per_day)  # per liquidation
    walk = start_price * np.exp(np.cumsum(rng.normal(0.0, step, count)))
    price = np.round(walk, symbol.decimals)
    wanted = np.minimum(rng.lognormal(math.log(4_000.0), 1.6, count), 5e7)
    lot = 0.001 if start_price >= 1.0 else 1.0
    quantity = np.maximum(np.round(wanted / price / lot) * lot, lot).round(3)
    short = rng.random(count) >= LONG_SHARE
    exchange = rng.choice(len(EXCHANGES), count, p=EXCHANGE_SHARES).astype(np.uint8)
    return Liquidations(time.astype(np.int64), price, quantity, price * quantity, short, exchange)


def row_columns(liquidations: Liquidations, first_arrival: int) -> tuple[np.ndarray, ...]:
    """The columns of `hub.analytics.rows.Rows`, in its order (time, price, quantity,
    notional, leverage unknown, short, exchange, arrival numbered from `first_arrival`)."""
    count = len(liquidations)
    return (
        liquidations.time,
        liquidations.price,
        liquidations.quantity,
        liquidations.notional,
        np.full(count, np.nan),
        liquidations.short,
        liquidations.exchange,
        first_arrival + np.arange(count, dtype=np.int64),
    )


def live_order(
    market: list[Symbol], rate: float, seconds: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A cascade's stream: (offset in ms from its start, symbol index) of `rate` a second
    for `seconds`, the symbols drawn in the market's skew (the probe symbol never)."""
    weights = np.array([0.0 if s.name == PROBE else s.per_day for s in market])
    count = int(rate * seconds)
    offsets = (np.arange(count) * 1_000 / rate).astype(np.int64)
    return offsets, rng.choice(len(market), count, p=weights / weights.sum())


def walks(
    market: list[Symbol],
    times: np.ndarray,
    which: np.ndarray,
    start_price: Mapping[str, float],
    rng: np.random.Generator,
) -> Iterator[tuple[Symbol, np.ndarray, Liquidations]]:
    """Each symbol's share of a `live_order` stream at `times`: the symbol, its positions
    in the stream, and its liquidations there, the price walk going on from `start_price`."""
    for index in np.unique(which).tolist():
        symbol = market[index]
        at = np.flatnonzero(which == index)
        yield symbol, at, continued(symbol, times[at], start_price[symbol.name], rng)


FLUSH_STEP_MS = 45_000  # part 3: `now` moves on by the 30d window's pace each step
HANDFUL = 5  # part 3: new events per step
FLUSH_END = 1_795_176_000_000  # part 3's clock: the 30 days end here


def month_of_btc(count: int, steps: int, seed: int = 24) -> tuple[Liquidations, Liquidations]:
    """Part 3's events: `count` BTCUSDT liquidations over the 30 days before FLUSH_END,
    and HANDFUL new ones in each of `steps` FLUSH_STEP_MS steps after it."""
    rng = np.random.default_rng(seed)
    btc = Symbol("BTCUSDT", count / 30, 60_000.0, 1)
    held = liquidations(btc, FLUSH_END - 30 * DAY_MS, FLUSH_END, rng, count)
    offsets = rng.integers(0, FLUSH_STEP_MS, (steps, HANDFUL))
    times = np.sort(offsets, axis=1) + FLUSH_END + np.arange(steps)[:, None] * FLUSH_STEP_MS
    return held, continued(btc, times.ravel(), float(held.price[-1]), rng)
