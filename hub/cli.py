"""`heatmap-hub` / `python -m hub`: the process entry points of SPEC.

Configuration comes from the environment, flags override; a `ConfigError` anywhere
before the server starts is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from hub.config import Settings, load_settings
from hub.errors import ConfigError
from hub.service.hubs import HubView
from hub.service.sources import Source
from hub.tasks import cancel_and_wait

EXIT_CONFIG = 2
OVERRIDES = ("host", "port", "symbols", "binance_ws_url", "flush_ms", "redis_url")


def _add_common(parser: argparse.ArgumentParser, listens: bool, sources: bool) -> None:
    if listens:
        parser.add_argument("--host")
        parser.add_argument("--port")
    if sources:
        parser.add_argument("--symbols", help="comma-separated, or '*' (HEATMAP_SYMBOLS)")
        parser.add_argument("--binance-ws-url")
        parser.add_argument("--flush-ms")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--replay", type=Path, metavar="FILE", help="replay a recorded file")
        group.add_argument(
            "--demo", action="store_true", help="loop the bundled replay, shifted to now"
        )
        parser.add_argument("--speed", default="1", help="replay speed; 0 = as fast as possible")
    parser.add_argument("--redis-url")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmap-hub", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="feeds, processors, REST and WebSocket in one")
    _add_common(serve, listens=True, sources=True)
    ingest = commands.add_parser("ingest", help="feeds and processors, publishing to Redis")
    _add_common(ingest, listens=False, sources=True)
    web = commands.add_parser("web", help="REST and WebSocket fan-out, fed from Redis")
    _add_common(web, listens=True, sources=False)

    record = commands.add_parser("record", help="write live upstream frames to a replay file")
    record.add_argument("--out", type=Path, required=True)
    record.add_argument("--symbols")
    record.add_argument("--binance-ws-url")
    record.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {field: getattr(args, field, None) for field in OVERRIDES}
    return load_settings(os.environ, overrides)


def _source(args: argparse.Namespace) -> Source:
    try:
        speed = float(args.speed)
    except ValueError:
        raise ConfigError("--speed", f"must be a number, got {args.speed!r}") from None
    if not 0 <= speed <= 1_000_000:
        raise ConfigError("--speed", f"must be between 0 and 1000000, got {args.speed}")
    if args.replay is not None and not args.replay.is_file():
        raise ConfigError("--replay", f"{args.replay} is not a readable file")
    return Source(replay=args.replay, speed=speed, demo=args.demo)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        return _record(settings, args)
    except ConfigError as error:
        print(f"heatmap-hub: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG


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
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.hubs import ServeHub

    return _run_app(ServeHub(settings, _source(args)), settings, args)


def _web(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.hubs import WebHub

    return _run_app(WebHub(settings), settings, args)


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

    _until_signalled(IngestOnly(settings, _source(args)).run)
    return 0


def _record(settings: Settings, args: argparse.Namespace) -> int:
    from hub.feeds.binance import BinanceFeed
    from hub.feeds.open_interest import BinanceOpenInterest
    from hub.feeds.replay import Recorder

    tracked = None if settings.track_all_symbols else set(settings.symbols)
    try:
        out = args.out.open("ab")
    except OSError as error:
        raise ConfigError("--out", f"cannot write {args.out}: {error.strerror}") from None
    with out:
        recorder = Recorder(out, "binance")
        feed = BinanceFeed(settings.binance_ws_url, tracked, lambda event: None)
        # open interest answers and mark price frames too, so a replay has predicted levels
        market = BinanceOpenInterest(
            settings.binance_rest_url,
            settings.binance_ws_url,
            tracked or set(),
            lambda update: None,
            all_market=tracked is None,
        )

        async def record(stop: asyncio.Event) -> None:
            def listen(received_ms: int, frame: bytes) -> None:
                recorder(received_ms, frame)
                if args.frames and recorder.written >= args.frames:
                    stop.set()

            def listen_rest(received_ms: int, path: str, body: bytes) -> None:
                recorder.rest(received_ms, path, body)
                if args.frames and recorder.written >= args.frames:
                    stop.set()

            feed.add_frame_listener(listen)
            market.add_frame_listener(listen)
            market.add_rest_listener(listen_rest)
            tasks = [asyncio.create_task(feed.run()), asyncio.create_task(market.run())]
            await stop.wait()
            await cancel_and_wait(tasks)

        _until_signalled(record)
        logging.getLogger("hub").info("recorded %d frames to %s", recorder.written, args.out)
    return 0
