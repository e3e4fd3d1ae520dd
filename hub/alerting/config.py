"""The alerts configuration file (HEATMAP_ALERTS_CONFIG, TOML): sinks and thresholds.

Owns `AlertsConfig` and `load_alerts_config`, which reads the file once at start and
checks all of it, so one run names every mistake (one line each) instead of the first.

Decisions:
- Secrets may stay out of the file: `HEATMAP_SINK_{NAME}_{FIELD}` (FIELD one of URL, SECRET,
  TOKEN, CHAT_ID; NAME the sink's name upper-cased, other characters as `_`) overrides the
  file's value, so the file can be committed and the secret come from the environment.
- A sink is named (`name`, else its kind, then `kind-2`, ...): the name labels its counters
  on status and /metrics, and keys its record of delivered ids, so it must stay the same
  across restarts for "never twice" to hold.
- Thresholds: `[thresholds]` holds the defaults of every symbol, and a table inside it
  named for a symbol (`[thresholds.SOLUSDT]`) overrides some of them for that symbol.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from hub.analytics.alerts import DEFAULT_THRESHOLDS, RISK_LEVELS, AlertThresholds
from hub.errors import ConfigErrors, echo
from hub.models import Alert, RiskLevel

VARIABLE = "HEATMAP_ALERTS_CONFIG"
SinkKind = Literal["webhook", "telegram", "discord", "slack"]
SINK_KINDS: tuple[SinkKind, ...] = ("webhook", "telegram", "discord", "slack")
ALERT_KINDS = ("cluster_new", "cluster_growth", "large_liquidation", "cascade")
SIDES = ("long", "short")
TELEGRAM_API = "https://api.telegram.org"
SECRET_FIELDS = ("url", "secret", "token", "chat_id")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}(USDT|USDC)")
_RISK_RANK = {level: rank for rank, level in enumerate(RISK_LEVELS)}
# What each kind needs besides `kind`; the rest of a sink's keys are optional.
_NEEDS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "secret"),
    "telegram": ("token", "chat_id"),
    "discord": ("url",),
    "slack": ("url",),
}
_SINK_KEYS = {"kind", "name", "url", "secret", "token", "chat_id", "api_url", "filter"}
_SINK_KEYS |= {"max_attempts", "timeout_seconds"}
_FILTER_KEYS = {"symbols", "kinds", "sides", "exchanges", "min_notional", "min_risk"}


class SinkFilter(msgspec.Struct, frozen=True):
    """Which alerts a sink gets; every condition given must pass (AND)."""

    symbols: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    sides: tuple[str, ...] | None = None
    exchanges: tuple[str, ...] | None = None
    min_notional: float = 0.0
    min_risk: RiskLevel = "low"

    def admits(self, alert: Alert) -> bool:
        # An alert with no side (a cluster's) or no exchange never passes a filter on them,
        # as the WebSocket `side` filter does: what is not known is not a match.
        return (
            (self.symbols is None or alert.symbol in self.symbols)
            and (self.kinds is None or alert.kind in self.kinds)
            and (self.sides is None or alert.side in self.sides)
            and (self.exchanges is None or any(x in self.exchanges for x in alert.exchanges))
            and alert.notional >= self.min_notional
            and _RISK_RANK[alert.risk] >= _RISK_RANK[self.min_risk]
        )


class SinkConfig(msgspec.Struct, frozen=True):
    kind: SinkKind
    name: str
    url: str = ""
    secret: str = ""
    token: str = ""
    chat_id: str = ""
    api_url: str = TELEGRAM_API
    filter: SinkFilter = SinkFilter()
    max_attempts: int = 6  # then the alert is given up for this sink and counted as failed
    timeout_seconds: float = 10.0  # one attempt's bound

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"SinkConfig(kind={self.kind!r}, name={self.name!r})"


class AlertsConfig(msgspec.Struct, frozen=True):
    sinks: tuple[SinkConfig, ...] = ()
    thresholds: AlertThresholds = DEFAULT_THRESHOLDS
    by_symbol: tuple[tuple[str, AlertThresholds], ...] = ()

    def thresholds_of(self, symbol: str) -> AlertThresholds:
        for name, thresholds in self.by_symbol:
            if name == symbol:
                return thresholds
        return self.thresholds


NO_ALERTS_CONFIG = AlertsConfig()


def env_name(sink: str, field: str) -> str:
    return f"HEATMAP_SINK_{re.sub(r'[^A-Z0-9]', '_', sink.upper())}_{field.upper()}"


def load_alerts_config(path: str, environ: Mapping[str, str]) -> AlertsConfig:
    """The file at `path`, checked whole; raises `ConfigErrors` listing every mistake."""
    problems: list[str] = []
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigErrors(VARIABLE, [f"cannot read {echo(path)}: {error.strerror}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigErrors(VARIABLE, [f"{path}: not TOML: {error}"]) from None
    for key in sorted(set(document) - {"sink", "thresholds"}):
        problems.append(f"{path}: unknown table or key {key!r} (expected [[sink]], [thresholds])")
    raw_sinks = document.get("sink", [])
    if not isinstance(raw_sinks, list):
        problems.append(f"{path}: 'sink' must be an array of tables: write [[sink]]")
        raw_sinks = []
    sinks: list[SinkConfig] = []
    for number, raw in enumerate(raw_sinks, 1):
        sink = _sink(f"{path}: sink {number}", raw, sinks, environ, problems)
        if sink is not None:
            sinks.append(sink)
    defaults, by_symbol = _thresholds(path, document.get("thresholds", {}), problems)
    if problems:
        raise ConfigErrors(VARIABLE, problems)
    return AlertsConfig(tuple(sinks), defaults, by_symbol)


def _sink(
    where: str,
    raw: Any,
    earlier: list[SinkConfig],
    environ: Mapping[str, str],
    problems: list[str],
) -> SinkConfig | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    kind = raw.get("kind")
    if kind not in SINK_KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(SINK_KINDS)}, got {kind!r}")
        return None
    where = f"{where} ({kind})"
    for key in sorted(set(raw) - _SINK_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
    taken = {sink.name for sink in earlier}
    name = raw.get("name")
    if name is None:
        name = kind
        count = 1
        while name in taken:
            count += 1
            name = f"{kind}-{count}"
    elif not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{where}: name must be 1-40 letters, digits, '-' or '_', got {name!r}")
        return None
    elif name in taken:
        problems.append(f"{where}: name {name!r} is used by an earlier sink")
    values: dict[str, Any] = {"kind": kind, "name": name}
    for field in (*SECRET_FIELDS, "api_url"):
        value = environ.get(env_name(name, field)) if field in SECRET_FIELDS else None
        if value is None:
            value = raw.get(field)
        if isinstance(value, int) and field == "chat_id":
            value = str(value)  # a Telegram chat id is a number, often written as one
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: {field} must be a string")
            continue
        values[field] = value
    for field in _NEEDS[kind]:
        if not values.get(field):
            variable = env_name(name, field)
            problems.append(f"{where}: {field} is missing (in the file, or in {variable})")
    for field in ("url", "api_url"):
        value = values.get(field)
        if value and not _http_url(value):
            shown = "the URL" if field == "url" else echo(value)  # a sink URL may hold a secret
            problems.append(f"{where}: {field} must be an http:// or https:// URL, not {shown}")
    for field, kind_of, low, high in (
        ("max_attempts", int, 1, 100),
        ("timeout_seconds", float, 0.1, 300),
    ):
        value = raw.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: {field} must be a number")
        elif not low <= value <= high or (kind_of is int and not isinstance(value, int)):
            problems.append(f"{where}: {field} must be {kind_of.__name__} {low}..{high}")
        else:
            values[field] = kind_of(value)
    sink_filter = _filter(f"{where} filter", raw.get("filter", {}), problems)
    if sink_filter is not None:
        values["filter"] = sink_filter
    return SinkConfig(**values)


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _filter(where: str, raw: Any, problems: list[str]) -> SinkFilter | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table ([sink.filter])")
        return None
    for key in sorted(set(raw) - _FILTER_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
    values: dict[str, Any] = {}
    choices: dict[str, tuple[str, ...] | None] = {
        "symbols": None,
        "kinds": ALERT_KINDS,
        "sides": SIDES,
        "exchanges": None,
    }
    for field, allowed in choices.items():
        items = raw.get(field)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            problems.append(f"{where}: {field} must be a list of strings")
            continue
        items = [i.upper() if field == "symbols" else i.lower() for i in items]
        bad = [i for i in items if (allowed is not None and i not in allowed)]
        if field == "symbols":
            bad = [i for i in items if not _SYMBOL.fullmatch(i)]
        if bad:
            expected = ", ".join(allowed) if allowed else "symbols like BTCUSDT"
            problems.append(f"{where}: {field} has {', '.join(map(repr, bad))}; use {expected}")
            continue
        values[field] = tuple(items)
    min_notional = raw.get("min_notional")
    if min_notional is not None:
        if isinstance(min_notional, bool) or not isinstance(min_notional, (int, float)):
            problems.append(f"{where}: min_notional must be a number (USD)")
        elif min_notional < 0:
            problems.append(f"{where}: min_notional must not be negative")
        else:
            values["min_notional"] = float(min_notional)
    min_risk = raw.get("min_risk")
    if min_risk is not None:
        if min_risk not in RISK_LEVELS:
            problems.append(f"{where}: min_risk must be one of {', '.join(RISK_LEVELS)}")
        else:
            values["min_risk"] = min_risk
    return SinkFilter(**values)


def _thresholds(
    path: str, raw: Any, problems: list[str]
) -> tuple[AlertThresholds, tuple[tuple[str, AlertThresholds], ...]]:
    if not isinstance(raw, dict):
        problems.append(f"{path}: thresholds must be a table ([thresholds])")
        return DEFAULT_THRESHOLDS, ()
    own = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    defaults = _threshold_values(f"{path}: [thresholds]", own, DEFAULT_THRESHOLDS, problems)
    by_symbol = []
    for symbol, table in raw.items():
        if not isinstance(table, dict):
            continue
        where = f"{path}: [thresholds.{symbol}]"
        if not _SYMBOL.fullmatch(symbol):
            problems.append(f"{where}: {symbol!r} is not a symbol like BTCUSDT")
            continue
        by_symbol.append((symbol, _threshold_values(where, table, defaults, problems)))
    return defaults, tuple(by_symbol)


def _threshold_values(
    where: str, raw: dict[str, Any], base: AlertThresholds, problems: list[str]
) -> AlertThresholds:
    fields = msgspec.structs.asdict(base)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{where}: unknown threshold {key!r} (known: {', '.join(fields)})")
            continue
        default = fields[key]
        if isinstance(default, str):
            if value not in RISK_LEVELS:
                problems.append(f"{where}: {key} must be one of {', '.join(RISK_LEVELS)}")
                continue
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: {key} must be a number")
            continue
        elif isinstance(default, int) and not isinstance(value, int):
            problems.append(f"{where}: {key} must be a whole number")
            continue
        elif value < 0:
            problems.append(f"{where}: {key} must not be negative")
            continue
        values[key] = value
    try:
        return AlertThresholds(**{**fields, **values})
    except ValueError as error:
        problems.append(f"{where}: {error}")
        return base
