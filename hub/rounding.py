"""The one rounding policy of every number a client reads: REST bodies, WebSocket messages
(JSON, and MessagePack made from them), exports (CSV, JSON, Parquet) and status.

A float is written with at most ten significant digits, or to a millionth where that keeps
more (a notional of 123456.123456 stays whole), never past fifteen significant digits:
what docs/protocol.md promises. It is
applied where output is encoded, not where numbers are made, so no producer can forget it
(a contract size times a count gives 0.5700000000000001, a mean of two prices
60035.899999999994); the core keeps its running sums exact.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from hub.models import NOTIONAL_DECIMALS, SIGNIFICANT_DIGITS

EXACT_DIGITS = 15  # a double holds 15 significant decimal digits: beyond them, noise
# Where the rule comes down to a millionth, without a logarithm
SIX_DECIMALS_FROM = 10.0 ** (SIGNIFICANT_DIGITS - 1 - NOTIONAL_DECIMALS)
SIX_DECIMALS_TO = 10.0 ** (EXACT_DIGITS - NOTIONAL_DECIMALS)


def rounded_float(value: float) -> float:
    if SIX_DECIMALS_FROM <= abs(value) < SIX_DECIMALS_TO:  # most prices and notionals
        return round(value, NOTIONAL_DECIMALS)
    if value == 0.0 or not math.isfinite(value):
        return value
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(NOTIONAL_DECIMALS, SIGNIFICANT_DIGITS - 1 - magnitude)
    return round(value, min(decimals, EXACT_DIGITS - 1 - magnitude))


def rounded(value: Any) -> Any:
    """`value` (builtins: dicts, lists, tuples, scalars) with every float rounded."""
    kind = type(value)
    if kind is float:
        return rounded_float(value)
    if kind is dict:
        return {key: rounded(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [rounded(item) for item in value]
    return value


def output(value: Any) -> Any:
    """Anything msgspec encodes (Structs included) as rounded builtins, ready to encode."""
    return rounded(msgspec.to_builtins(value, enc_hook=_decoded))


def _decoded(value: Any) -> Any:
    """JSON passed on encoded (`msgspec.Raw`, a channel message's body), as builtins."""
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def rounded_column(values: np.ndarray) -> np.ndarray:
    """A float column (an export's) under the same policy, value by value: the very
    numbers the JSON of the same rows shows."""
    return np.array([rounded_float(value) for value in values.tolist()], dtype=values.dtype)
