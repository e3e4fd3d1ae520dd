"""A bounded memory of recently seen keys, to drop liquidations an upstream sends again.

OKX may replay recent liquidations on a fresh connection; the store would refuse the
copies too, but dropping them at the feed keeps the feed's counts honest and spares the
processor. Bounded by count (oldest forgotten first): a replay only reaches back a little.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class RecentKeys:
    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._order: deque[Hashable] = deque()
        self._keys: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, key: Hashable) -> bool:
        """Whether `key` was seen recently; remembers it if not."""
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())
        return False
