"""`heatmap-hub` / `python -m hub`: the command line.

Settings come from the environment and a flag overrides its variable (`hub.config`); a
bad value anywhere before the server starts is one line on stderr and exit code 2. The
help is written for users: each option names its variable and default, each command
shows examples, and none of it names the code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from hub import __version__
from hub.access import keys_cli
from hub.config import FIELD_TO_VARIABLE, Settings, load_settings
from hub.errors import ConfigError, echo
from hub.service.hubs import HubView
from hub.service.sources import Source
from hub.tasks import cancel_and_wait

EXIT_CONFIG = 2
EXIT_USAGE = 2  # as argparse exits on a bad command line
UPSTREAMS = (
    "symbols",
    "exchanges",
    "binance_ws_url",
    "bybit_ws_url",
    "bybit_rest_url",
    "okx_ws_url",
    "okx_rest_url",
    "bitget_ws_url",
    "gate_ws_url",
    "gate_rest_url",
    "htx_ws_url",
    "htx_rest_url",
    "deribit_ws_url",
    "bitmex_ws_url",
    "bitmex_rest_url",
)
OVERRIDES = ("host", "port", *UPSTREAMS, "flush_ms", "redis_url", "api_keys_file")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Option help wrapped at spaces only: a URL default (`wss://fx-ws.gateio.ws/...`)
    stays one word, to be copied as it is."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


_DEFAULTS = Settings()
_MORE = "Every setting can also come from the environment: see docs/configuration.md."

# field -> (metavar, what it is); the variable and default are added from hub.config.
_SETTING_FLAGS = {
    "host": ("ADDRESS", "address to listen on"),
    "port": ("PORT", "port to listen on"),
    "symbols": ("LIST", "symbols to track, comma-separated, or '*' for every symbol"),
    "exchanges": (
        "LIST",
        "liquidation sources, a comma-separated subset of "
        "binance,bybit,okx,bitget,gate,htx,deribit,bitmex",
    ),
    "binance_ws_url": ("URL", "Binance USD-M futures stream base"),
    "bybit_ws_url": ("URL", "Bybit V5 public linear stream"),
    "bybit_rest_url": ("URL", "Bybit REST base (instruments, for '*')"),
    "okx_ws_url": ("URL", "OKX V5 public WebSocket"),
    "okx_rest_url": ("URL", "OKX REST base (instruments: contract values)"),
    "bitget_ws_url": ("URL", "Bitget UTA (v3) public WebSocket"),
    "gate_ws_url": ("URL", "Gate USDT-settled futures WebSocket"),
    "gate_rest_url": ("URL", "Gate REST base (contracts: quanto multipliers)"),
    "htx_ws_url": ("URL", "HTX USDT-margined notification WebSocket"),
    "htx_rest_url": ("URL", "HTX REST base (open interest)"),
    "deribit_ws_url": ("URL", "Deribit JSON-RPC WebSocket"),
    "bitmex_ws_url": ("URL", "BitMEX realtime WebSocket"),
    "bitmex_rest_url": ("URL", "BitMEX REST base (instruments: contract sizes)"),
    "flush_ms": ("MS", "longest a change waits before it is pushed to clients"),
    "redis_url": ("URL", "Redis to publish to / read from"),
    "api_keys_file": ("FILE", "the keys file"),
}

_COMMANDS = {
    "serve": (
        "run everything in one process (feed, analytics, REST and WebSocket)",
        "Run the whole hub in one process: the exchange feed (or a replay), the analytics, "
        "and the REST and WebSocket API. Messages go through memory, or through Redis "
        "when --redis-url / REDIS_URL is set (then `web` processes can join it).",
        [
            ("heatmap-hub serve --demo", "no network: the bundled replay, looped"),
            ("heatmap-hub serve --symbols BTCUSDT,ETHUSDT", "live exchange data"),
            ("heatmap-hub serve --replay session.jsonl --speed 0", "a file, at full speed"),
        ],
    ),
    "ingest": (
        "run the feed and analytics, publishing to Redis",
        "Run the exchange feed (or a replay) and the analytics, and publish every message "
        "to Redis for `web` processes to serve. Serves no clients itself; needs Redis. "
        "One publishes at a time: a second waits as a warm standby and takes over.",
        [
            ("heatmap-hub ingest --redis-url redis://127.0.0.1:6379/0", "live exchange data"),
            ("REDIS_URL=redis://127.0.0.1:6379/0 heatmap-hub ingest --demo", "no network"),
            ("heatmap-hub ingest --standby", "on a second machine, with REDIS_URL set"),
        ],
    ),
    "web": (
        "serve REST and WebSocket clients from Redis (run any number)",
        "Serve REST and WebSocket clients with what an `ingest` process publishes to "
        "Redis. Run as many as you like, behind one load balancer; needs Redis.",
        [
            ("heatmap-hub web --redis-url redis://127.0.0.1:6379/0 --port 5001", ""),
            ("heatmap-hub web --host 0.0.0.0 --port 8080", "with REDIS_URL set"),
            ("heatmap-hub web --port 8080 --reuse-port", "one of several on one port"),
        ],
    ),
    "keys": (
        "add, revoke or list API keys (when the hub is to need them)",
        "Manage the API keys of the keys file (HUB_API_KEYS_FILE). `add` prints a new key "
        "once; the file keeps only its hash. Running hubs pick up a change within seconds.",
        [
            ("heatmap-hub keys add desk", "a read key; prints it once"),
            ("heatmap-hub keys add ops --scope admin", "may also track and drop symbols"),
            ("heatmap-hub keys add site --channels 'heatmap:BTCUSDT,liquidations:*'", ""),
            ("heatmap-hub keys revoke desk", "its clients are refused within seconds"),
            ("heatmap-hub keys list", "names, scopes, channels"),
        ],
    ),
    "record": (
        "write every configured exchange's live frames to one replay file",
        "Connect to the configured exchanges and append every frame received, exactly as "
        "received, to one replay file (JSON Lines) that `serve --replay` plays back.",
        [
            ("heatmap-hub record --out session.jsonl", "until Ctrl-C"),
            ("heatmap-hub record --out btc.jsonl --symbols BTCUSDT --frames 100", ""),
        ],
    ),
}


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _setting_flag(parser: argparse.ArgumentParser, field: str, default: str = "") -> None:
    metavar, what = _SETTING_FLAGS[field]
    default = default or _shown(getattr(_DEFAULTS, field))
    parser.add_argument(
        f"--{field.replace('_', '-')}",
        metavar=metavar,
        help=f"{what} (env {FIELD_TO_VARIABLE[field]}; default: {default})",
    )


def _log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning"),
        default=default,
        help="how much to log (default: info)",
    )


def _examples(rows: list[tuple[str, str]]) -> str:
    width = max(len(command) for command, _ in rows)
    lines = [f"  {command:<{width}}  # {why}" if why else f"  {command}" for command, why in rows]
    return "examples:\n" + "\n".join(lines) + "\n\n" + _MORE


def _command(commands: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    summary, description, examples = _COMMANDS[name]
    parser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 78),
        epilog=_examples(examples),
        formatter_class=_HelpFormatter,
    )
    _log_level(parser, argparse.SUPPRESS)  # also after the command; absent: the top level's
    return parser


def _add_upstreams(parser: argparse.ArgumentParser) -> None:
    for field in UPSTREAMS:
        _setting_flag(parser, field)


def _add_sources(parser: argparse.ArgumentParser) -> None:
    _add_upstreams(parser)
    _setting_flag(parser, "flush_ms")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="play a recorded file instead of the exchanges (default: none)",
    )
    group.add_argument(
        "--demo",
        action="store_true",
        help="play the bundled replay instead of the exchanges, looped, shifted to now "
        "(default: off)",
    )
    parser.add_argument(
        "--speed",
        default="1",
        metavar="X",
        help="replay speed, 0 = as fast as possible (default: 1)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heatmap-hub",
        description=textwrap.fill(
            "A real-time liquidation heatmap hub: exchange liquidations in; heatmaps, "
            "clusters and alerts out over WebSocket and REST.",
            78,
        ),
        epilog=_examples(
            [
                ("heatmap-hub serve --demo", "try it with no network"),
                ("heatmap-hub serve --help", "the options of one command"),
            ]
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"heatmap-hub {__version__}")
    _log_level(parser, "info")
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )

    serve = _command(commands, "serve")
    _setting_flag(serve, "host")
    _setting_flag(serve, "port")
    _add_sources(serve)
    _setting_flag(serve, "redis_url", "unset, messages stay in this process")

    ingest = _command(commands, "ingest")
    _add_sources(ingest)
    _setting_flag(ingest, "redis_url", "unset, and ingest needs one")
    ingest.add_argument(
        "--standby",
        action="store_true",
        help="start as the warm standby: let the primary take the lease first, and take "
        "over when it lapses (any second ingest waits the same way; default: off)",
    )

    web = _command(commands, "web")
    _setting_flag(web, "host")
    _setting_flag(web, "port")
    _setting_flag(web, "redis_url", "unset, and web needs one")
    web.add_argument(
        "--reuse-port",
        action="store_true",
        help="listen with SO_REUSEPORT, so several web processes share one port and the "
        "kernel spreads connections over them (default: off)",
    )

    keys = _command(commands, "keys")
    _setting_flag(keys, "api_keys_file")
    keys_cli.add_arguments(keys)

    record = _command(commands, "record")
    record.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="replay file to append to"
    )
    _add_upstreams(record)
    record.add_argument(
        "--frames",
        type=int,
        default=0,
        metavar="N",
        help="stop after N lines: frames and REST answers (default: 0, never)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {field: getattr(args, field, None) for field in OVERRIDES}
    return load_settings(os.environ, overrides)


def _source(args: argparse.Namespace) -> Source:
    try:
        speed = float(args.speed)
    except ValueError:
        raise ConfigError("--speed", f"must be a number, got {echo(args.speed)}") from None
    if not 0 <= speed <= 1_000_000:
        raise ConfigError("--speed", f"must be between 0 and 1000000, got {echo(args.speed)}")
    if args.replay is not None and not args.replay.is_file():
        raise ConfigError("--replay", f"{echo(args.replay)} is not a readable file")
    return Source(replay=args.replay, speed=speed, demo=args.demo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)  # a bare `heatmap-hub`: the commands, not one error line
        return EXIT_USAGE
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "web":
            return _web(settings, args)
        if args.command == "ingest":
            return _ingest(settings, args)
        if args.command == "keys":
            return keys_cli.run(settings, args)
        return _record(settings, args)
    except ConfigError as error:
        for line in error.lines():
            print(f"heatmap-hub: configuration error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def check_listen_address(host: str, port: int, reuse_port: bool = False) -> None:
    """Bind (host, port) once before anything starts, so an address in use is a
    configuration error (exit 2, one line) instead of a failure after start-up. The same
    SO_REUSEADDR as uvicorn: a port left in TIME_WAIT is free, a listening one is not
    (unless it and this one both ask for SO_REUSEPORT)."""
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--reuse-port", "this system has no SO_REUSEPORT (Linux and BSDs do)")
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError("HOST", f"cannot resolve {echo(host)}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ConfigError("PORT", f"cannot listen on {host}:{port}: {error.strerror}") from None


def check_tls(settings: Settings) -> None:
    """Load the certificate and key once before anything starts: a wrong path or a key
    that does not match is exit 2 with one line, not a failure after start-up."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            settings.tls_certfile, settings.tls_keyfile
        )
    except (OSError, ssl.SSLError) as error:
        problem = getattr(error, "strerror", None) or str(error)
        raise ConfigError(
            "HUB_TLS_CERTFILE", f"cannot use {settings.tls_certfile}: {problem}"
        ) from None


def _run_app(hub: HubView, settings: Settings, args: argparse.Namespace) -> int:
    from hub.api.app import create_app, say_goodbye
    from hub.api.server import run

    app = create_app(hub)
    run(
        app,
        settings.host,
        settings.port,
        args.log_level,
        lambda: say_goodbye(app),
        settings.ws_ping_interval,
        reuse_port=getattr(args, "reuse_port", False),
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.hubs import ServeHub

    source = _source(args)
    check_tls(settings)
    check_listen_address(settings.host, settings.port)  # last: a busy port hides nothing
    return _run_app(ServeHub(settings, source), settings, args)


def _web(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.hubs import WebHub

    hub = WebHub(settings)  # checks REDIS_URL; connects nowhere until started
    check_tls(settings)
    # last: a busy port hides nothing
    check_listen_address(settings.host, settings.port, args.reuse_port)
    return _run_app(hub, settings, args)


def _until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.hubs import IngestOnly

    _until_signalled(IngestOnly(settings, _source(args), args.standby).run)
    return 0


def _record(settings: Settings, args: argparse.Namespace) -> int:
    from hub.feeds.open_interest import BinanceOpenInterest
    from hub.feeds.replay import Recorder
    from hub.service.sources import build_feeds

    try:
        out = args.out.open("ab")
    except OSError as error:
        raise ConfigError("--out", f"cannot write {args.out}: {error.strerror}") from None
    with out:
        # Bybit's tickers and OKX's open interest too: subscribed only for a market sink
        feeds, _ = build_feeds(
            settings, Source(), lambda event: None, market_sink=lambda update: None
        )
        sources = [feed.status.name for feed in feeds]
        if "binance" in settings.exchanges:
            # open interest answers and mark prices too, so a replay has predicted levels
            tracked = None if settings.track_all_symbols else set(settings.symbols)
            feeds.append(
                BinanceOpenInterest(
                    settings.binance_rest_url,
                    settings.binance_ws_url,
                    tracked or set(),
                    lambda update: None,
                    all_market=tracked is None,
                )
            )
            sources.append("binance")
        recorders = [Recorder(out, source) for source in sources]
        lines = 0

        async def record(stop: asyncio.Event) -> None:
            def counted(write: Callable[..., None]) -> Callable[..., None]:
                """`write`, counting the lines it adds: a frame or a REST answer each (a
                recorder skips what is not a JSON object), so --frames N stops at N."""

                def listener(*received: Any) -> None:
                    nonlocal lines
                    before = out.tell()
                    write(*received)
                    lines += out.tell() != before
                    if args.frames and lines >= args.frames:
                        stop.set()

                return listener

            for feed, recorder in zip(feeds, recorders, strict=True):
                feed.add_frame_listener(counted(recorder))
                feed.add_rest_listener(counted(recorder.rest))
            tasks = [asyncio.create_task(feed.run()) for feed in feeds]
            await stop.wait()
            await cancel_and_wait(tasks)

        _until_signalled(record)
        logging.getLogger("hub").info("recorded %d lines to %s", lines, args.out)
    return 0
