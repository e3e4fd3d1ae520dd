"""`heatmap-hub` / `python -m hub`: the process entry points of SPEC.

Configuration comes from the environment, flags override; a `ConfigError` anywhere
before the server starts is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from hub.config import Settings, load_settings
from hub.errors import ConfigError

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatmap-hub", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="feeds, processors, REST and WebSocket in one")
    serve.add_argument("--host")
    serve.add_argument("--port")
    serve.add_argument("--symbols", help="comma-separated, or '*' (HEATMAP_SYMBOLS)")
    serve.add_argument("--binance-ws-url")
    serve.add_argument("--flush-ms")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--replay", type=Path, metavar="FILE", help="replay a recorded file")
    source.add_argument(
        "--demo", action="store_true", help="loop the bundled replay, shifted to now"
    )
    serve.add_argument("--speed", default="1", help="replay speed factor; 0 = as fast as possible")

    record = commands.add_parser("record", help="write live upstream frames to a replay file")
    record.add_argument("--out", type=Path, required=True)
    record.add_argument("--symbols")
    record.add_argument("--binance-ws-url")
    record.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        field: getattr(args, field, None)
        for field in ("host", "port", "symbols", "binance_ws_url", "flush_ms")
    }
    return load_settings(os.environ, overrides)


def _speed(raw: str) -> float:
    try:
        speed = float(raw)
    except ValueError:
        raise ConfigError("--speed", f"must be a number, got {raw!r}") from None
    if not 0 <= speed <= 1_000_000:
        raise ConfigError("--speed", f"must be between 0 and 1000000, got {raw}")
    return speed


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(settings, args)
        return _record(settings, args)
    except ConfigError as error:
        print(f"heatmap-hub: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.api.app import create_app, say_goodbye
    from hub.api.server import run
    from hub.runtime import Hub

    speed = _speed(args.speed)
    if args.replay is not None and not args.replay.is_file():
        raise ConfigError("--replay", f"{args.replay} is not a readable file")
    hub = Hub(settings, replay=args.replay, speed=speed, demo=args.demo)
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


def _record(settings: Settings, args: argparse.Namespace) -> int:
    from hub.feeds.binance import BinanceFeed
    from hub.feeds.replay import Recorder

    tracked = None if settings.track_all_symbols else set(settings.symbols)
    try:
        out = args.out.open("ab")
    except OSError as error:
        raise ConfigError("--out", f"cannot write {args.out}: {error.strerror}") from None
    with out:
        recorder = Recorder(out, "binance")
        feed = BinanceFeed(settings.binance_ws_url, tracked, lambda event: None)

        async def record() -> None:
            done = asyncio.Event()

            def listen(received_ms: int, frame: bytes) -> None:
                recorder(received_ms, frame)
                if args.frames and recorder.written >= args.frames:
                    done.set()

            feed.add_frame_listener(listen)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, done.set)
            task = asyncio.create_task(feed.run())
            await done.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(record())
        logging.getLogger("hub").info("recorded %d frames to %s", recorder.written, args.out)
    return 0
