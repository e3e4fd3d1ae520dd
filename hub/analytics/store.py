"""Every held liquidation of one symbol, as columns: no Python object per event.

The store keeps every accepted event for the retention period (`HEATMAP_RETENTION_DAYS`);
`HEATMAP_MAX_EVENTS` is a safety cap whose default never binds at real rates (past it the
oldest goes first, and the windows say so through their coverage). A row is 42 bytes
(time, price, quantity, notional, leverage, side, exchange and arrival number), so 30 days
of a busy symbol (about a million events) fit in about 40 MB.

Decisions:
- Rows are in trade-time order, ties in arrival order, so every window is a suffix found by
  one `searchsorted`. An out-of-order arrival is inserted in place (rare; it moves the
  later rows by one). Appends collect in a flat buffer and reach the columns in one go at
  the next read: a numpy write per field per event would cost more than the event's
  whole share of a flush.
- Every accepted event gets an arrival number (`arrival`, per symbol, rising by one), which
  the durable log keeps: a checkpoint names "the first n events" by it, whatever order the
  rows hold them in. A process numbers from a base its maker chooses (`ingest`: its start
  time in microseconds), so its numbers follow those of any process before it even when
  it could not read their log at start.
- A duplicate of a held event (a reconnect overlap, a replayed log) is refused. Events of
  the last `DEDUP_HORIZON_MS` of trade time are found by a hash of what `same_key`
  compares; an older one (a late duplicate) by searching its time in the columns. Both are
  exact: the hash only finds candidates.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

import numpy as np

from hub.analytics.rows import DTYPES, EMPTY_ROWS, Named, Rows, events_of, row_of
from hub.models import LiquidationEvent

DEDUP_HORIZON_MS = 5 * 60_000
# No liquidation is anywhere near this; a larger notional is a broken feed, and would
# overflow the windows' exact integer sums (hub.analytics.sums).
MAX_NOTIONAL = 1e10
_FIELDS = len(DTYPES)  # of a pending row: one value per column, as a float64
MAX_AHEAD_MS = 10 * 60_000  # an event stamped further in the future is a broken clock
# A load leaves room for 1/LOAD_SPARE more rows than it takes: sized exactly, every store
# doubled at its first live write after a restore, copying 5 million rows within the
# first flushes (a 130 ms flush in the cascade of issue 22).
LOAD_SPARE = 8


def same_key(event: LiquidationEvent) -> tuple[int, float, float, str, str]:
    """What makes two deliveries one liquidation: trade time, price, quantity, side and
    exchange (the same numbers on two exchanges are two events)."""
    return (event.time, event.price, event.quantity, event.side, event.exchange)


def row_key(
    time: int, price: float, quantity: float, short: bool, exchange: str
) -> tuple[int, float, float, str, str]:
    """`same_key` of a row's values (`exchange`: its name)."""
    return (time, price, quantity, "short" if short else "long", exchange)


class EventStore:
    def __init__(
        self, symbol: str, max_events: int, retention_ms: int, first_arrival: int = 1
    ) -> None:
        self.symbol = symbol
        self.max_events = max_events
        self.retention_ms = retention_ms
        self.exchanges: list[str] = []  # exchange code -> name
        self._codes: dict[str, int] = {}
        self.next_arrival = first_arrival
        self._columns = [np.empty(64, dtype) for dtype in DTYPES]
        self._head = 0
        self._tail = 0
        self._pending = array("d")
        self._newest = -math.inf  # time of the last row, pending or not
        # hash(same_key) -> rows with that hash, for the rows of time >= _recent_floor
        self._recent: dict[int, int] = {}
        self._recent_floor = -math.inf

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._tail - self._head + len(self._pending) // _FIELDS

    def rows(self, first: int = 0, last: int | None = None) -> Rows:
        """Rows by position (0 the oldest), as views: valid until the store changes."""
        self._commit()
        end = self._tail if last is None else self._head + last
        return Rows(*(column[self._head + first : end] for column in self._columns))

    @property
    def times(self) -> np.ndarray:
        """The time column (a view, valid until the store changes)."""
        self._commit()
        return self._columns[0][self._head : self._tail]

    def position(self, time: int) -> int:
        """Position of the first row with time >= `time`."""
        return int(np.searchsorted(self.times, time, side="left"))

    def between(self, start: int, end: int) -> Rows:
        """Rows with start <= time < end."""
        times = self.times
        first, last = np.searchsorted(times, (start, end), side="left").tolist()
        return self.rows(first, last)

    def since(self, start: int) -> Rows:
        return self.rows(self.position(start))

    def copy_since(self, start: int, most: int) -> Named:
        """Copies of the oldest `most` rows with time >= start, and every other row of the
        last one's millisecond: the next chunk starts at the next millisecond."""
        times = self.times
        first, last = int(np.searchsorted(times, start, side="left")), len(times)
        if first + most < last:
            last = int(np.searchsorted(times, times[first + most - 1], side="right"))
        rows = self.rows(first, last)
        return Named(Rows(*(column.copy() for column in rows)), list(self.exchanges))

    @property
    def oldest_time(self) -> int | None:
        return int(self.times[0]) if len(self) else None

    @property
    def newest_time(self) -> int | None:
        return int(self._newest) if len(self) else None

    def events(self, rows: Rows) -> list[LiquidationEvent]:
        """`rows` (of this store) as events."""
        return events_of(rows, self.exchanges, self.symbol)

    def __iter__(self) -> Iterator[LiquidationEvent]:
        return iter(self.events(self.rows()))

    def newest_first(self, start: int, chunk: int = 4096) -> Iterator[LiquidationEvent]:
        """Events with time >= start, newest first, decoded a chunk at a time."""
        first = self.position(start)
        end = len(self)
        while end > first:
            begin = max(first, end - chunk)
            yield from reversed(self.events(self.rows(begin, end)))
            end = begin

    # -- writing ----------------------------------------------------------------------

    def code(self, exchange: str) -> int:
        held = self._codes.get(exchange)
        if held is None:
            held = self._codes[exchange] = len(self.exchanges)
            self.exchanges.append(exchange)
        return held

    def is_duplicate(self, event: LiquidationEvent) -> bool:
        if event.time >= self._recent_floor and hash(same_key(event)) not in self._recent:
            return False
        # A candidate, or too old for the hash: compare the rows of that millisecond.
        times = self.times
        first, last = np.searchsorted(times, (event.time, event.time + 1)).tolist()
        if first == last:
            return False
        code = self._codes.get(event.exchange)
        if code is None:
            return False
        rows = self.rows(first, last)
        return bool(
            np.any(
                (rows.price == event.price)
                & (rows.quantity == event.quantity)
                & (rows.short == (event.side == "short"))
                & (rows.exchange == code)
            )
        )

    def accepts(self, event: LiquidationEvent, now: int) -> bool:
        """Whether `add` would keep this event: a positive finite price and a notional the
        windows can sum, not a duplicate, neither past retention nor far in the future, and
        not older than everything in a full store."""
        if not (0.0 < event.price < math.inf and 0.0 <= event.notional <= MAX_NOTIONAL):
            return False
        if not now - self.retention_ms <= event.time <= now + MAX_AHEAD_MS:
            return False
        if self.is_duplicate(event):
            return False
        return not (len(self) >= self.max_events and event.time < self.times[0])

    def add(self, event: LiquidationEvent) -> tuple[int, Rows]:
        """Keep an event that `accepts` allowed; returns its arrival number and the rows the
        cap pushed out (oldest first)."""
        arrival = self.next_arrival
        self.next_arrival += 1
        row = row_of(event, self.code(event.exchange), arrival)
        return arrival, self._keep(row, same_key(event))

    def extend(self, named: Named) -> tuple[Rows, Rows]:
        """Keep rows read from a log (a standby following it), with their own arrival
        numbers; returns them with this store's exchange codes, and the rows the cap
        pushed out."""
        rows, names = named
        codes = np.array([self.code(name) for name in names], np.uint8)
        exchange = codes[rows.exchange] if len(rows) else rows.exchange
        recoded = Rows(*rows[:6], exchange, rows.arrival)
        pushed: list[Rows] = []
        for row in zip(*(column.tolist() for column in recoded), strict=True):
            time, price, quantity, _, _, short, code, _ = row
            key = row_key(time, price, quantity, short, self.exchanges[code])
            evicted = self._keep(row, key)
            if len(evicted):
                pushed.append(evicted)
        if len(rows):
            self.next_arrival = max(self.next_arrival, int(rows.arrival.max()) + 1)
        if not pushed:
            return recoded, EMPTY_ROWS
        return recoded, Rows(*(np.concatenate(c) for c in zip(*pushed, strict=True)))

    def _keep(self, row: tuple[float, ...], key: tuple[int, float, float, str, str]) -> Rows:
        """Hold one row (`key`: its `same_key`); returns the rows the cap pushed out."""
        time = row[0]
        if time < self._newest:
            self._insert(row)
        else:
            self._newest = time
            self._pending.extend(row)
        if time >= self._recent_floor:
            hashed = hash(key)
            self._recent[hashed] = self._recent.get(hashed, 0) + 1
            if self._newest - self._recent_floor > 2 * DEDUP_HORIZON_MS:
                self._raise_floor(self._newest - DEDUP_HORIZON_MS)
        if len(self) > self.max_events:
            return self._pop(len(self) - self.max_events)
        return EMPTY_ROWS

    def load(self, named: Named) -> None:
        """Take these rows (any order) as the whole content, e.g. a log read back at start.
        Arrival numbers carry on after the highest loaded."""
        rows, exchanges = named
        self.exchanges = list(exchanges)  # `rows.exchange` indexes this list
        self._codes = {name: code for code, name in enumerate(exchanges)}
        order = np.lexsort((rows.arrival, rows.time))  # time order, ties in arrival order
        loaded = rows.take(order)
        count = len(loaded)
        capacity = max(64, count + count // LOAD_SPARE)
        self._columns = [np.empty(capacity, dtype) for dtype in DTYPES]
        for column, values in zip(self._columns, loaded, strict=True):
            column[:count] = values
        self._head, self._tail = 0, count
        del self._pending[:]
        self._newest = int(loaded.time[-1]) if count else -math.inf
        if count:
            self.next_arrival = max(self.next_arrival, int(loaded.arrival.max()) + 1)
        self._recent.clear()
        self._recent_floor = -math.inf
        if count:
            self._raise_floor(self._newest - DEDUP_HORIZON_MS)
            self._remember(self.since(self._recent_floor), 1)
        if len(self) > self.max_events:
            self._pop(len(self) - self.max_events)

    def sweep(self, now: int) -> Rows:
        """Drop the rows past retention; returns them, oldest first."""
        return self._pop(self.position(now - self.retention_ms))

    # -- internals --------------------------------------------------------------------

    def _pop(self, count: int) -> Rows:
        """Drop the `count` oldest rows; returns copies of them."""
        if count <= 0:
            return EMPTY_ROWS
        popped = self.rows(0, count)
        popped = Rows(*(column.copy() for column in popped))
        self._head += count
        recent = popped.time >= self._recent_floor
        if recent.any():
            self._remember(popped.take(recent), -1)
        if not len(self):
            self._newest = -math.inf
        return popped

    def _raise_floor(self, floor: float) -> None:
        """Forget the hashes of rows older than `floor`: they are searched in the columns."""
        leaving = self.between(int(max(self._recent_floor, -(2**62))), int(floor))
        self._recent_floor = floor
        self._remember(leaving, -1)

    def _remember(self, rows: Rows, sign: int) -> None:
        recent = self._recent
        names = self.exchanges
        for time, price, quantity, short, exchange in zip(
            rows.time.tolist(),
            rows.price.tolist(),
            rows.quantity.tolist(),
            rows.short.tolist(),
            rows.exchange.tolist(),
            strict=True,
        ):
            key = hash(row_key(time, price, quantity, short, names[exchange]))
            held = recent.get(key, 0) + sign
            if held > 0:
                recent[key] = held
            else:
                recent.pop(key, None)

    def _insert(self, row: tuple[float, ...]) -> None:
        """Rare: a row older than the newest; the later rows move right by one."""
        self._commit()
        self._make_room(1)
        columns = self._columns
        position = self._head + int(
            np.searchsorted(columns[0][self._head : self._tail], row[0], side="right")
        )
        for column, value in zip(columns, row, strict=True):
            column[position + 1 : self._tail + 1] = column[position : self._tail]
            column[position] = value
        self._tail += 1

    def _commit(self) -> None:
        """Write the pending rows into the columns."""
        pending = self._pending
        if not pending:
            return
        count = len(pending) // _FIELDS
        self._make_room(count)
        values = np.frombuffer(pending, np.float64).reshape(count, _FIELDS)
        rows = slice(self._tail, self._tail + count)
        for index, column in enumerate(self._columns):
            column[rows] = values[:, index]  # every value is exact as a float64
        self._tail += count
        del values  # a view of `pending`: it must go before the array may shrink
        del pending[:]

    def _make_room(self, extra: int) -> None:
        """Room for `extra` more rows after the tail: compact, and grow when over half full
        (amortised O(1) per row)."""
        capacity = len(self._columns[0])
        if self._tail + extra <= capacity:
            return
        held = self._tail - self._head
        if held + extra > capacity:
            while held + extra > capacity:
                capacity *= 2
        elif held > capacity // 2:  # compacting would win little room: grow instead
            capacity *= 2
        for index, old in enumerate(self._columns):
            new = np.empty(capacity, old.dtype) if capacity != len(old) else old
            new[:held] = old[self._head : self._tail]  # overlapping move is safe in numpy
            self._columns[index] = new
        self._head, self._tail = 0, held
