"""Channel and window names (docs/protocol.md), parsed into canonical form.

One place decides what `heatmap:btcusdt` means (`heatmap:BTCUSDT:1h`), so the processor,
the broker topics, the WebSocket protocol and REST agree on every name.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from hub.errors import ProtocolError, echo

WINDOWS: dict[str, int] = {
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "4h": 4 * 3_600_000,
    "12h": 12 * 3_600_000,
    "24h": 24 * 3_600_000,
    "3d": 3 * 86_400_000,
    "7d": 7 * 86_400_000,
    "30d": 30 * 86_400_000,
}
DEFAULT_WINDOW = "1h"
ANY_SYMBOL = "*"

Kind = Literal["heatmap", "liquidations", "alerts", "liquidity", "predicted"]
KINDS: tuple[Kind, ...] = ("heatmap", "liquidations", "alerts", "liquidity", "predicted")


class Channel(NamedTuple):
    kind: Kind
    symbol: str  # upper case, or "*"
    window: str | None = None  # heatmap only

    @property
    def name(self) -> str:
        if self.window is None:
            return f"{self.kind}:{self.symbol}"
        return f"{self.kind}:{self.symbol}:{self.window}"


def heatmap_channel(symbol: str, window: str) -> str:
    return f"heatmap:{symbol}:{window}"


def predicted_channel(symbol: str) -> str:
    return f"predicted:{symbol}"


def check_window(window: str) -> str:
    if window not in WINDOWS:
        raise ProtocolError(
            "bad_window", f"unknown window {echo(window)}; use one of {', '.join(WINDOWS)}"
        )
    return window


def is_symbol(text: str) -> bool:
    return 0 < len(text) <= 40 and text.isascii() and text.isalnum()


def parse_channel(name: object) -> Channel:
    """Canonical `Channel` for a client-supplied name; `ProtocolError` when it is not one."""
    if not isinstance(name, str) or len(name) > 100:
        raise ProtocolError("bad_channel", "a channel is a string like 'heatmap:BTCUSDT:1h'")
    parts = name.split(":")
    kind = parts[0]
    if kind not in KINDS or len(parts) < 2:
        raise ProtocolError(
            "bad_channel", f"unknown channel {echo(name)}; kinds are {', '.join(KINDS)}"
        )
    symbol = parts[1].upper()
    if symbol != ANY_SYMBOL and not is_symbol(parts[1]):  # before upper(): 'ß' is not 'SS'
        raise ProtocolError("bad_channel", f"{echo(parts[1])} in {echo(name)} is not a symbol")
    if symbol == ANY_SYMBOL and kind in ("heatmap", "liquidity", "predicted"):
        raise ProtocolError("bad_channel", f"{kind} channels name one symbol, not '*'")
    if kind == "heatmap":
        if len(parts) > 3:
            raise ProtocolError("bad_channel", f"{echo(name)} has too many parts")
        window = check_window(parts[2]) if len(parts) == 3 else DEFAULT_WINDOW
        return Channel("heatmap", symbol, window)
    if len(parts) != 2:
        raise ProtocolError("bad_channel", f"{echo(name)} has too many parts")
    return Channel(kind, symbol)  # type: ignore[arg-type]
