"""Settings: read once from the environment at start, overridden by CLI flags.

Every variable of docs/configuration.md lives here with its default. A bad value
raises `ConfigError` naming the variable, which the CLI turns into exit code 2; nothing
else in the hub reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from hub.alerting.config import NO_ALERTS_CONFIG, AlertsConfig, load_alerts_config
from hub.analytics.predicted import PredictedConfig
from hub.errors import ConfigError, echo
from hub.fanout.channel_state import HISTORY_BYTES
from hub.fanout.protocol import Limits
from hub.fanout.redis_connect import CLUSTER_SCHEMES, parse_host_port, sentinel_url
from hub.service.heartbeat import HEARTBEAT_MS, INGEST_SILENT_MS
from hub.service.leadership import LEASE_MS

_LIMITS = Limits()
_PREDICTED = PredictedConfig()
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "BNBUSDT")
ALL_SYMBOLS = "*"
# A USD-margined perpetual as Binance and Bybit name it: a base of letters and digits
# (1000PEPE), then the quote. Anything else (`foo`, `BTC`, `BTC-USD`) is a typo that would
# otherwise track nothing, silently.
SYMBOL_SHAPE = re.compile(r"[A-Z0-9]{2,20}(USDT|USDC)")
# Liquidation sources, in the order status lists them. The five after the first three are
# read only when HEATMAP_EXCHANGES names them (docs/exchanges.md says why).
DEFAULT_EXCHANGES = ("binance", "bybit", "okx")
EXCHANGES = (*DEFAULT_EXCHANGES, "bitget", "gate", "htx", "deribit", "bitmex")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    binance_ws_url: str = "wss://fstream.binance.com/market"
    binance_rest_url: str = "https://fapi.binance.com"
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS  # ("*",) tracks every symbol seen
    # A safety cap per symbol, never the bound at real rates: retention is (docs/analytics.md).
    max_events: int = 5_000_000
    retention_days: float = 30.0
    # Where `serve` without Redis keeps its history; None keeps none (`load_settings` fills
    # in the default location, so only a process started from the CLI writes to disk).
    data_dir: str | None = None
    alert_max_age_ms: int = 60_000  # no alert for a liquidation this old when it arrives
    alerts_config: str | None = None  # the TOML file of sinks and thresholds (docs/alerts.md)
    alerts: AlertsConfig = NO_ALERTS_CONFIG  # read from `alerts_config` by `load_settings`
    public_url: str | None = None  # where people open the page: alert messages link to it
    cleanup_interval_ms: int = 3_600_000
    kde_bandwidth_pct: float = 0.3
    price_range_pct: float = 15.0
    flush_ms: int = 50
    heartbeat_ms: int = HEARTBEAT_MS  # how often ingest tells web processes it is alive
    ingest_silent_ms: int = INGEST_SILENT_MS  # a web process's bound on that silence
    ingest_lease_ms: int = LEASE_MS  # how long a dead ingest holds the lease (a standby waits)
    redis_url: str | None = None  # with REDIS_SENTINELS: a redis+sentinel:// URL of the master
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master_name: str = "mymaster"
    exchanges: tuple[str, ...] = DEFAULT_EXCHANGES
    bybit_ws_url: str = "wss://stream.bybit.com/v5/public/linear"
    bybit_rest_url: str = "https://api.bybit.com"
    okx_ws_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    okx_rest_url: str = "https://openapi.okx.com"  # OKX's documented host since 2026
    bitget_ws_url: str = "wss://ws.bitget.com/v3/ws/public"
    gate_ws_url: str = "wss://fx-ws.gateio.ws/v4/ws/usdt"
    gate_rest_url: str = "https://api.gateio.ws"
    htx_ws_url: str = "wss://api.hbdm.com/linear-swap-notification"
    htx_rest_url: str = "https://api.hbdm.com"
    deribit_ws_url: str = "wss://www.deribit.com/ws/api/v2"
    bitmex_ws_url: str = "wss://ws.bitmex.com/realtime"
    bitmex_rest_url: str = "https://www.bitmex.com"
    liquidity: str = "okx"  # order-book source; "off" disables liquidity
    # predicted levels: (leverage, share of new positions) and the maintenance margin rate
    predicted_leverage: tuple[tuple[float, float], ...] = _PREDICTED.leverage_shares
    predicted_mmr: float = _PREDICTED.maintenance_margin
    coinglass_api_key: str | None = None
    coinglass_url: str = "https://open-api-v4.coinglass.com"
    host: str = "127.0.0.1"
    port: int = 5000
    allowed_origins: tuple[str, ...] = ("*",)
    admin_token: str | None = None
    api_keys_file: str | None = None  # None: no key needed (docs/deploy.md#keys)
    rest_rate_limit: float = 0.0  # REST requests a second per key (per address without keys)
    max_connections_per_key: int = 100  # WebSocket connections per key, across processes
    cors_origins: tuple[str, ...] | None = None  # None: no CORS headers
    tls_certfile: str | None = None  # both set: the server speaks https:// and wss:// itself
    tls_keyfile: str | None = None
    # WebSocket limits (docs/configuration.md); defaults are the protocol's
    max_subscriptions: int = _LIMITS.max_subscriptions
    max_frame_bytes: int = _LIMITS.max_frame_bytes
    max_requests_per_second: int = _LIMITS.max_requests_per_second
    abuse_close_ms: int = _LIMITS.abuse_close_ms
    max_queue: int = _LIMITS.max_queue
    slow_close_ms: int = _LIMITS.slow_close_ms
    max_connections: int = 10_000
    max_connections_per_ip: int = 200
    ws_ping_interval: float = 20.0
    ws_write_delay_ms: int = 0  # hold a client's frames this long to write them together
    history_bytes: int = HISTORY_BYTES  # what channel histories (for `since`) hold together

    @property
    def track_all_symbols(self) -> bool:
        return self.symbols == (ALL_SYMBOLS,)

    @property
    def named_symbols(self) -> tuple[str, ...]:
        """The symbols HEATMAP_SYMBOLS names; none with `*` (they follow what is seen)."""
        return () if self.track_all_symbols else self.symbols

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)

    @property
    def predicted(self) -> PredictedConfig:
        return PredictedConfig(
            leverage_shares=self.predicted_leverage,
            maintenance_margin=self.predicted_mmr,
            range_pct=self.price_range_pct,
        )


def _ws_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(name, f"must be a ws:// or wss:// URL, got {echo(raw)}")
    return raw.rstrip("/")


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"must be an http:// or https:// URL, got {echo(raw)}")
    return raw.rstrip("/")


def _optional_http_url(name: str, raw: str) -> str | None:
    return _http_url(name, raw) if raw.strip() else None


def _redis_url(name: str, raw: str) -> str | None:
    if raw == "":
        return None
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
        raise ConfigError(
            name,
            "must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// "
            f"URL, got {echo(raw)}",
        )
    return raw


def _sentinels(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    try:
        return tuple(parse_host_port(item) for item in raw.split(",") if item.strip())
    except ValueError as error:
        raise ConfigError(
            name, f"must be host:port,host:port,... (sentinels), got {echo(str(error))}"
        ) from None


def _symbols(name: str, raw: str) -> tuple[str, ...]:
    if raw.strip() == ALL_SYMBOLS:
        return (ALL_SYMBOLS,)
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        raise ConfigError(name, "must list at least one symbol, or be '*'")
    for symbol in symbols:
        if not SYMBOL_SHAPE.fullmatch(symbol):
            raise ConfigError(
                name,
                f"{echo(symbol)} is not a symbol: letters and digits ending in USDT or USDC, "
                "like BTCUSDT (or '*' for every symbol)",
            )
    return symbols


def _exchanges(name: str, raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(e.strip().lower() for e in raw.split(",") if e.strip()))
    if not names:
        raise ConfigError(name, f"must list at least one of {', '.join(EXCHANGES)}")
    for exchange in names:
        if exchange not in EXCHANGES:
            raise ConfigError(name, f"{exchange!r} is not one of {', '.join(EXCHANGES)}")
    return names


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    if not origins:
        raise ConfigError(name, "must be '*' or a comma-separated list of origins")
    return origins


def _number(kind: type, low: float, high: float) -> Callable[[str, str], Any]:
    def parse(name: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(name, f"must be {what}, got {echo(raw)}") from None
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low:g} and {high:g}, got {echo(raw)}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _leverage_shares(name: str, raw: str) -> tuple[tuple[float, float], ...]:
    """`10:0.3,25:0.3,50:0.25,100:0.15`: leverage and share of new positions at it."""
    tiers = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        leverage, colon, share = item.partition(":")
        try:
            tiers.append((float(leverage), float(share)))
        except ValueError:
            raise ConfigError(name, f"{item!r} is not LEVERAGE:SHARE, e.g. 25:0.3") from None
        if not colon or not 1 <= tiers[-1][0] <= 1000:
            raise ConfigError(name, f"{item!r} is not LEVERAGE:SHARE with leverage 1..1000")
    try:
        PredictedConfig(leverage_shares=tuple(tiers)).check()
    except ValueError as error:
        raise ConfigError(name, str(error)) from None
    return tuple(tiers)


def _text(name: str, raw: str) -> str | None:
    return raw or None


def _cors_origins(name: str, raw: str) -> tuple[str, ...] | None:
    return _origins(name, raw) if raw.strip() else None


def _path(name: str, raw: str) -> str | None:
    value = raw.strip()
    if "\0" in value:
        raise ConfigError(name, f"must be a file path, got {echo(raw)}")
    return value or None


def default_data_dir(environ: Mapping[str, str]) -> str:
    """`$XDG_DATA_HOME/heatmap-hub`, else `~/.local/share/heatmap-hub`."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "heatmap-hub")


def _data_dir(name: str, raw: str) -> str | None:
    value = raw.strip()
    if value.lower() == "off":
        return None
    if not value or "\0" in value:
        raise ConfigError(name, f"must be a directory path or 'off', got {echo(raw)}")
    return value


def _master_name(name: str, raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ConfigError(name, f"must be the name the sentinels monitor, got {echo(raw)}")
    return raw


def _host(name: str, raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ConfigError(name, f"must be a host name or address, got {echo(raw)}")
    return raw


# variable -> (settings field, parser)
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "BINANCE_WS_URL": ("binance_ws_url", _ws_url),
    "BINANCE_REST_URL": ("binance_rest_url", _http_url),
    "HEATMAP_SYMBOLS": ("symbols", _symbols),
    "HEATMAP_MAX_EVENTS": ("max_events", _number(int, 1, 100_000_000)),
    "HEATMAP_RETENTION_DAYS": ("retention_days", _number(float, 0.001, 3650)),
    "HEATMAP_DATA_DIR": ("data_dir", _data_dir),
    "HEATMAP_ALERT_MAX_AGE_MS": ("alert_max_age_ms", _number(int, 0, 86_400_000)),
    "HEATMAP_ALERTS_CONFIG": ("alerts_config", _path),
    "HEATMAP_PUBLIC_URL": ("public_url", _optional_http_url),
    "HEATMAP_CLEANUP_INTERVAL": ("cleanup_interval_ms", _number(int, 100, 86_400_000)),
    "HEATMAP_KDE_BANDWIDTH": ("kde_bandwidth_pct", _number(float, 0.01, 10)),
    "HEATMAP_PRICE_RANGE": ("price_range_pct", _number(float, 0.5, 90)),
    "HEATMAP_FLUSH_MS": ("flush_ms", _number(int, 0, 10_000)),
    "HEATMAP_HEARTBEAT_MS": ("heartbeat_ms", _number(int, 50, 60_000)),
    "HEATMAP_INGEST_SILENT_MS": ("ingest_silent_ms", _number(int, 100, 600_000)),
    "HEATMAP_INGEST_LEASE_MS": ("ingest_lease_ms", _number(int, 300, 600_000)),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_SENTINELS": ("redis_sentinels", _sentinels),
    "REDIS_MASTER_NAME": ("redis_master_name", _master_name),
    "HEATMAP_EXCHANGES": ("exchanges", _exchanges),
    "BYBIT_WS_URL": ("bybit_ws_url", _ws_url),
    "BYBIT_REST_URL": ("bybit_rest_url", _http_url),
    "OKX_WS_URL": ("okx_ws_url", _ws_url),
    "OKX_REST_URL": ("okx_rest_url", _http_url),
    "BITGET_WS_URL": ("bitget_ws_url", _ws_url),
    "GATE_WS_URL": ("gate_ws_url", _ws_url),
    "GATE_REST_URL": ("gate_rest_url", _http_url),
    "HTX_WS_URL": ("htx_ws_url", _ws_url),
    "HTX_REST_URL": ("htx_rest_url", _http_url),
    "DERIBIT_WS_URL": ("deribit_ws_url", _ws_url),
    "BITMEX_WS_URL": ("bitmex_ws_url", _ws_url),
    "BITMEX_REST_URL": ("bitmex_rest_url", _http_url),
    "HEATMAP_LIQUIDITY": ("liquidity", _choice("okx", "off")),
    "HEATMAP_PREDICTED_LEVERAGE": ("predicted_leverage", _leverage_shares),
    "HEATMAP_PREDICTED_MMR": ("predicted_mmr", _number(float, 0.0, 0.05)),
    "COINGLASS_API_KEY": ("coinglass_api_key", _text),
    "COINGLASS_URL": ("coinglass_url", _http_url),
    "HOST": ("host", _host),
    "PORT": ("port", _number(int, 0, 65_535)),
    "HUB_ALLOWED_ORIGINS": ("allowed_origins", _origins),
    "HUB_ADMIN_TOKEN": ("admin_token", _text),
    "HUB_API_KEYS_FILE": ("api_keys_file", _path),
    "HUB_REST_RATE_LIMIT": ("rest_rate_limit", _number(float, 0, 1_000_000)),
    "HUB_MAX_CONNECTIONS_PER_KEY": ("max_connections_per_key", _number(int, 1, 10_000_000)),
    "HUB_CORS_ORIGINS": ("cors_origins", _cors_origins),
    "HUB_TLS_CERTFILE": ("tls_certfile", _path),
    "HUB_TLS_KEYFILE": ("tls_keyfile", _path),
    "HUB_MAX_SUBSCRIPTIONS": ("max_subscriptions", _number(int, 1, 100_000)),
    "HUB_MAX_FRAME_BYTES": ("max_frame_bytes", _number(int, 256, 16 * 1024 * 1024)),
    "HUB_MAX_REQUESTS_PER_SECOND": ("max_requests_per_second", _number(int, 1, 100_000)),
    "HUB_ABUSE_CLOSE_MS": ("abuse_close_ms", _number(int, 0, 3_600_000)),
    "HUB_MAX_QUEUE": ("max_queue", _number(int, 8, 10_000_000)),
    "HUB_SLOW_CLOSE_MS": ("slow_close_ms", _number(int, 100, 3_600_000)),
    "HUB_MAX_CONNECTIONS": ("max_connections", _number(int, 1, 10_000_000)),
    "HUB_MAX_CONNECTIONS_PER_IP": ("max_connections_per_ip", _number(int, 1, 10_000_000)),
    "HUB_WS_PING_INTERVAL": ("ws_ping_interval", _number(float, 0.1, 3600)),
    "HUB_WS_WRITE_DELAY_MS": ("ws_write_delay_ms", _number(int, 0, 1_000)),
    "HUB_HISTORY_BYTES": ("history_bytes", _number(int, 1 << 20, 1 << 40)),
}

FIELD_TO_VARIABLE = {field: variable for variable, (field, _) in _VARIABLES.items()}


def load_settings(
    environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Settings from `environ`, then `overrides` (field name -> raw text, as a CLI flag gives it).

    Raises `ConfigError` for the first bad value (`ConfigErrors`, every mistake of the
    alerts file).
    """
    values: dict[str, Any] = {"data_dir": default_data_dir(environ)}
    for variable, (field, parse) in _VARIABLES.items():
        if variable in environ:
            values[field] = parse(variable, environ[variable])
    for field, raw in (overrides or {}).items():
        if raw is None:
            continue
        variable = FIELD_TO_VARIABLE[field]
        _, parse = _VARIABLES[variable]
        values[field] = parse(f"{variable} (--{field.replace('_', '-')})", raw)
    if values.get("alerts_config"):
        values["alerts"] = load_alerts_config(values["alerts_config"], environ)
    settings = Settings(**values)
    if settings.redis_sentinels:
        if settings.redis_url and urlsplit(settings.redis_url).scheme == "unix":
            raise ConfigError("REDIS_URL", "with REDIS_SENTINELS it must be redis:// or rediss://")
        url = sentinel_url(settings.redis_sentinels, settings.redis_master_name, settings.redis_url)
        settings = dataclasses.replace(settings, redis_url=url)
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        missing = "HUB_TLS_KEYFILE" if settings.tls_keyfile is None else "HUB_TLS_CERTFILE"
        raise ConfigError(missing, "TLS needs both HUB_TLS_CERTFILE and HUB_TLS_KEYFILE")
    try:
        settings.predicted.check()
    except ValueError as error:
        raise ConfigError("HEATMAP_PREDICTED_MMR", str(error)) from None
    return settings
