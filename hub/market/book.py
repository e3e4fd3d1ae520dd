"""An order-book update as the book keeper takes it: the type the feeds decode into and
the analytics apply, so that neither layer imports the other.

Levels stay the strings an exchange sent (`[price, size, ...]`): a checksum hashes them
verbatim, and `"60000.10"` and `"60000.1"` hash differently. Sequencing is optional, since
some frames (OKX's before 2023) carry none; a checksum of 0 means "not provided".
"""

from __future__ import annotations

import msgspec

Level = list[str]  # [price, size, ...]; sizes in contracts; a size of "0" deletes the level


class BookData(msgspec.Struct):
    asks: list[Level] = []
    bids: list[Level] = []
    ts: str = "0"  # exchange time, ms
    checksum: int = 0
    prevSeqId: int | None = None
    seqId: int | None = None
