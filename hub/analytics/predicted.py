"""Predicted liquidation levels of one symbol, from open interest and price. Pure: every
time is an argument, nothing here reads a clock or a socket.

The method (docs/predicted.md gives it to users, with every parameter and its limits):
1. New positions. Each exchange's open interest is followed on its own. A rise between two
   updates is new positions worth rise x price. A fall is positions closed: which ones is
   unknowable, so every open level loses the fraction of the symbol's open interest (all
   exchanges) that closed.
2. Long or short. The taker buy share of the interval when the source has one; otherwise the
   price direction over the interval: long share = 0.5 + 0.5 tanh(r / direction_scale).
3. Entry: the mean of the prices seen over the interval (mark prices and the update's own).
4. Leverage: the new notional is spread over the configured tiers; a long at leverage L is
   liquidated at entry x (1 - 1/L + mmr), a short at entry x (1 + 1/L - mmr).
5. Aggregated on the heatmap's grid (`PriceGrid`): one level per (side, leverage, bin), so a
   level never moves and the channel can send it as it is.
6. Consumed once the price reaches the level's bin; a level the price has already reached
   when it would open is not opened (those positions would already be gone).
7. Decay: notional x 2^(-dt / half_life), applied in steps of `decay_step_ms` so the levels
   change at a bounded rate; a level under `min_notional` is dropped, and past `max_levels`
   the smallest go.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import msgspec

from hub.analytics.grid import PriceGrid
from hub.models import ConsumedLevel, PredictedLevel, Side

LevelKey = tuple[Side, float, int]  # side, leverage, bin index


class PredictedConfig(msgspec.Struct, frozen=True):
    # (leverage, share of new notional); shares add up to 1
    leverage_shares: tuple[tuple[float, float], ...] = (
        (10.0, 0.30),
        (25.0, 0.30),
        (50.0, 0.25),
        (100.0, 0.15),
    )
    maintenance_margin: float = 0.005  # Binance's smallest brackets are 0.4 % to 0.5 %
    direction_scale: float = 0.002  # a 0.2 % move puts 88 % of new positions on its side
    half_life_ms: int = 12 * 3_600_000
    decay_step_ms: int = 60_000  # 0.1 % of decay a step at the default half-life
    min_notional: float = 1_000.0
    max_levels: int = 200
    max_consumed: int = 1_000
    range_pct: float = 15.0

    def check(self) -> None:
        """ValueError unless every tier leaves a level strictly on its side of the entry."""
        if not self.leverage_shares:
            raise ValueError("at least one leverage tier is needed")
        total = sum(share for _, share in self.leverage_shares)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"leverage shares must add up to 1, they add up to {total:g}")
        for leverage, share in self.leverage_shares:
            if share < 0:
                raise ValueError(f"share of {leverage:g}x is negative")
            # 0.2 % of room: wider than any bin (at most ~0.08 % of the price), so the whole
            # bin of a level lies on its side of the entry.
            if not 1.0 / leverage - self.maintenance_margin > 0.002:
                raise ValueError(
                    f"{leverage:g}x with maintenance margin {self.maintenance_margin:g} "
                    "puts the liquidation price within 0.2 % of the entry"
                )

    def parameters(self) -> dict[str, object]:
        """What REST shows of the model."""
        return {
            "leverage_shares": [
                {"leverage": leverage, "share": share} for leverage, share in self.leverage_shares
            ],
            "maintenance_margin": self.maintenance_margin,
            "direction_scale": self.direction_scale,
            "half_life_ms": self.half_life_ms,
            "decay_step_ms": self.decay_step_ms,
            "min_notional": self.min_notional,
            "max_levels": self.max_levels,
            "max_consumed": self.max_consumed,
        }


def liquidation_price(entry: float, side: Side, leverage: float, mmr: float) -> float:
    if side == "long":
        return entry * (1.0 - 1.0 / leverage + mmr)
    return entry * (1.0 + 1.0 / leverage - mmr)


def long_share(r: float, direction_scale: float, taker_buy_share: float | None) -> float:
    if taker_buy_share is not None and math.isfinite(taker_buy_share):
        return min(1.0, max(0.0, taker_buy_share))
    return 0.5 + 0.5 * math.tanh(r / direction_scale)


class _Open:
    __slots__ = ("notional", "opened", "price")

    def __init__(self, notional: float, opened: int, price: float) -> None:
        self.notional = notional
        self.opened = opened
        self.price = price  # the bin's low, kept: levels are listed after every change


class _Interval:
    """One exchange's open interest since its last update, and the prices seen since."""

    __slots__ = ("oi", "price", "price_count", "price_sum", "time")

    def __init__(self, time: int, oi: float, price: float) -> None:
        self.time = time
        self.oi = oi
        self.price = price
        self.price_sum = 0.0
        self.price_count = 0


def _is_positive(value: float | None) -> bool:
    return value is not None and value > 0 and math.isfinite(value)


class PredictedBook:
    """The open and consumed levels of one symbol. The `*_changed` flags tell the stream
    what to send; it clears them when it has."""

    def __init__(self, symbol: str, config: PredictedConfig, epoch_base: str) -> None:
        config.check()
        self.symbol = symbol
        self.config = config
        self.epoch_base = epoch_base
        self.grid: PriceGrid | None = None
        self.price: float | None = None
        self.levels: dict[LevelKey, _Open] = {}
        self.consumed: deque[ConsumedLevel] = deque(maxlen=config.max_consumed)
        self.intervals: dict[str, _Interval] = {}
        self.epochs = 0
        self.epoch_changed = False
        self.levels_changed = False
        self.consumed_changed = False
        self.reference_changed = False
        self.expired = 0
        self.rejected = 0
        self._last_decay: int | None = None
        # (highest long bin, lowest short bin), None when the level keys changed: a mark
        # price that reaches neither, the usual case, costs no scan of the levels.
        self._bounds: tuple[int | None, int | None] | None = None

    @property
    def epoch(self) -> str:
        return self.grid.epoch if self.grid is not None else f"{self.symbol}.p{self.epoch_base}"

    # -- inputs -------------------------------------------------------------------------

    def on_price(self, time: int, price: float) -> None:
        if not _is_positive(price):
            self.rejected += 1
            return
        self._place(price)
        self.price = price
        for interval in self.intervals.values():
            interval.price_sum += price
            interval.price_count += 1
        self._consume(price, time)

    def on_open_interest(
        self,
        exchange: str,
        time: int,
        oi: float,
        price: float | None = None,
        taker_buy_share: float | None = None,
    ) -> None:
        own_price = _is_positive(price)
        price = price if own_price else self.price
        if not (oi >= 0 and math.isfinite(oi)) or price is None:
            self.rejected += 1
            return
        interval = self.intervals.get(exchange)
        if interval is not None and time <= interval.time:
            return  # a repeated or late answer: nothing new
        self.advance(time)
        if own_price:
            self.on_price(time, price)
        if interval is None:
            self.intervals[exchange] = _Interval(time, oi, price)
            return
        delta = oi - interval.oi
        if delta > 0:
            count = interval.price_count
            entry = interval.price_sum / count if count else price
            r = price / interval.price - 1.0
            share = long_share(r, self.config.direction_scale, taker_buy_share)
            self._open(delta * entry, entry, share, time, price)
        elif delta < 0:
            total = sum(i.oi for i in self.intervals.values())
            self._scale(max(0.0, 1.0 + delta / total) if total > 0 else 0.0)
        self.intervals[exchange] = _Interval(time, oi, price)

    def advance(self, now: int) -> None:
        """Decay every open level to `now`, in steps of `decay_step_ms`."""
        if self._last_decay is None:
            self._last_decay = now
            return
        elapsed = now - self._last_decay
        if elapsed < self.config.decay_step_ms:  # also a time earlier than the last step
            return
        self._last_decay = now
        self._scale(0.5 ** (elapsed / self.config.half_life_ms))

    # -- outputs ------------------------------------------------------------------------

    def open_levels(self) -> list[PredictedLevel]:
        return [
            PredictedLevel(level.price, side, round(level.notional, 2), leverage, level.opened)
            for (side, leverage, _), level in sorted(
                self.levels.items(), key=lambda item: (item[0][2], item[0][0], item[0][1])
            )
        ]

    def consumed_levels(self) -> list[ConsumedLevel]:
        return list(self.consumed)

    # -- the model ----------------------------------------------------------------------

    def _place(self, price: float) -> None:
        grid = self.grid
        if grid is None or grid.needs_new_epoch(price):
            self.epochs += 1
            epoch = f"{self.symbol}.p{self.epoch_base}-{self.epochs}"
            self.grid = PriceGrid.around(price, self.config.range_pct, epoch)
            self.levels.clear()  # bins of another width: the levels cannot be carried over
            self._bounds = None
            self.consumed.clear()
            self.epoch_changed = True
            return
        moved = grid.recentred(price)
        if moved is not None:
            self.grid = moved
            self.reference_changed = True

    def _open(self, notional: float, entry: float, share: float, time: int, price: float) -> None:
        grid = self.grid
        assert grid is not None  # placed by on_price
        mmr = self.config.maintenance_margin
        sides: tuple[tuple[Side, float], ...] = (("long", share), ("short", 1.0 - share))
        touched: list[LevelKey] = []
        for side, side_share in sides:
            for leverage, tier_share in self.config.leverage_shares:
                amount = notional * side_share * tier_share
                if amount <= 0:
                    continue
                index = grid.bin_index(liquidation_price(entry, side, leverage, mmr))
                if self._reached(side, index, price):
                    continue
                key: LevelKey = (side, leverage, index)
                level = self.levels.get(key)
                if level is None:
                    self.levels[key] = _Open(amount, time, grid.bin_low(index))
                    self._widen_bounds(side, index)
                else:
                    level.notional += amount
                touched.append(key)
                self.levels_changed = True
        # only a touched level can be new and small; an untouched one was checked before
        self._drop([k for k in touched if self.levels[k].notional < self.config.min_notional])

    def _widen_bounds(self, side: Side, index: int) -> None:
        if self._bounds is None:
            return
        long_top, short_low = self._bounds
        if side == "long":
            long_top = index if long_top is None else max(long_top, index)
        else:
            short_low = index if short_low is None else min(short_low, index)
        self._bounds = (long_top, short_low)

    def _reached(self, side: Side, index: int, price: float) -> bool:
        """Whether the price is in or beyond the level's bin (its positions are gone)."""
        grid = self.grid
        assert grid is not None
        if side == "long":
            return price < (index + 1) * grid.bin_width
        return price >= index * grid.bin_width

    def _consume(self, price: float, time: int) -> None:
        if self._bounds is None:
            longs = [index for side, _, index in self.levels if side == "long"]
            shorts = [index for side, _, index in self.levels if side == "short"]
            self._bounds = (max(longs, default=None), min(shorts, default=None))
        long_top, short_low = self._bounds
        if (long_top is None or not self._reached("long", long_top, price)) and (
            short_low is None or not self._reached("short", short_low, price)
        ):
            return
        grid = self.grid
        assert grid is not None
        width = grid.bin_width
        crossed = [  # _reached, inlined: this runs over every level
            key
            for key in self.levels
            if (price < (key[2] + 1) * width if key[0] == "long" else price >= key[2] * width)
        ]
        self._bounds = None
        for key in crossed:
            side, leverage, _ = key
            level = self.levels.pop(key)
            self.consumed.append(
                ConsumedLevel(
                    level.price,
                    side,
                    round(level.notional, 2),
                    leverage,
                    level.opened,
                    time,
                )
            )
        self.levels_changed = self.consumed_changed = True

    def _scale(self, factor: float) -> None:
        if not self.levels or factor == 1.0:
            return
        small = []
        minimum = self.config.min_notional
        for key, level in self.levels.items():
            level.notional *= factor
            if level.notional < minimum:
                small.append(key)
        self.levels_changed = True
        self._drop(small)

    def _drop(self, small: list[LevelKey]) -> None:
        """Expire the `small` levels, then the smallest others past `max_levels`."""
        excess = len(self.levels) - len(small) - self.config.max_levels
        if excess > 0:
            dropped = set(small)
            kept = (k for k in self.levels if k not in dropped)
            small.extend(heapq.nsmallest(excess, kept, key=lambda k: self.levels[k].notional))
        for key in small:
            del self.levels[key]
        if small:
            self._bounds = None
            self.expired += len(small)
            self.levels_changed = True
