"""The command line as a user meets it: help, version, configuration errors, record,
serve --replay, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from hub.cli import _parser, main
from hub.config import DEFAULT_SYMBOLS, FIELD_TO_VARIABLE, load_settings
from hub.errors import ConfigError
from tests.conftest import DATA, eventually, free_port
from tests.fakes.binance_open_interest import FakeOpenInterest
from tests.fakes.binance_server import FakeBinance, force_order

ROOT = Path(__file__).parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_defaults_follow_spec() -> None:
    settings = load_settings({})
    assert settings.binance_ws_url == "wss://fstream.binance.com/market"
    assert settings.symbols == DEFAULT_SYMBOLS
    assert (settings.max_events, settings.flush_ms, settings.port) == (5_000_000, 50, 5000)
    assert settings.redis_url is None


def test_flags_override_environment() -> None:
    settings = load_settings(
        {"PORT": "6000", "HEATMAP_SYMBOLS": "btcusdt, ethusdt"}, {"port": "7000"}
    )
    assert settings.port == 7000
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
    assert load_settings({"HEATMAP_SYMBOLS": "*"}).track_all_symbols


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("HEATMAP_MAX_EVENTS", "lots", "must be an integer"),
        ("HEATMAP_MAX_EVENTS", "0", "between"),
        ("PORT", "70000", "between"),
        ("BINANCE_WS_URL", "http://x", "ws://"),
        ("HEATMAP_SYMBOLS", "BTC-USDT", "not a symbol"),
        ("HEATMAP_SYMBOLS", " , ", "at least one"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("HEATMAP_KDE_BANDWIDTH", "nan", "between"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert caught.value.variable == variable
    assert words in str(caught.value)


def test_bad_configuration_exits_2_with_one_line() -> None:
    result = run_cli("serve", env={"HEATMAP_FLUSH_MS": "soon"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = "heatmap-hub: configuration error: HEATMAP_FLUSH_MS: must be an integer, got 'soon'"
    assert lines == [expected]
    flag = run_cli("serve", "--port", "-1")
    assert flag.returncode == 2 and "PORT (--port)" in flag.stderr
    speed = run_cli("serve", "--replay", "nowhere.jsonl")
    assert speed.returncode == 2 and "--replay" in speed.stderr


def test_configuration_is_checked_before_the_port() -> None:
    """A port in use (5000, the default, often is) must not hide what is wrong with the
    configuration: the port is the last thing checked before serving."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = {
            ("web",): "REDIS_URL",
            ("serve", "--replay", "nowhere.jsonl"): "--replay",
            ("serve", "--speed", "fast"): "--speed",
        }
        for command, named in cases.items():
            result = run_cli(*command, "--port", port, env={"REDIS_URL": ""})
            assert result.returncode == 2, (command, result.returncode, result.stderr[-500:])
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and named in lines[0], f"expected {named} for {command}: {lines}"


async def test_record_writes_replay_lines(fake_binance: FakeBinance, tmp_path: Path) -> None:
    out = tmp_path / "session.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "record",
        "--out",
        str(out),
        "--frames",
        "3",
        cwd=ROOT,
        env={
            **os.environ,
            "BINANCE_WS_URL": fake_binance.base_url,
            "BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",  # nothing there: no network
            "HEATMAP_SYMBOLS": "BTCUSDT",
            "HEATMAP_EXCHANGES": "binance",
        },
    )
    sent = [force_order("BTCUSDT", "SELL", f"{60000 + i}.00", "0.010") for i in range(3)]
    try:
        await fake_binance.wait_for_subscription("btcusdt@forceOrder", timeout=15)
        for payload in sent:
            await fake_binance.push(payload)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:  # a failed run leaves no recorder behind
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["raw"]["data"] for line in lines] == sent
    assert all(line["source"] == "binance" and isinstance(line["t"], int) for line in lines)


async def test_record_writes_open_interest_and_mark_prices(
    fake_binance: FakeBinance, tmp_path: Path
) -> None:
    import asyncio

    out = tmp_path / "session.jsonl"
    async with FakeOpenInterest() as rest:
        rest.open_interest = {"BTCUSDT": 1234.5}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", "record", "--out", str(out), "--frames", "2",
            cwd=ROOT,
            env={**os.environ, "BINANCE_WS_URL": fake_binance.base_url,
                 "BINANCE_REST_URL": rest.url, "HEATMAP_SYMBOLS": "BTCUSDT",
                 "HEATMAP_EXCHANGES": "binance"},
        )  # fmt: skip
        try:
            await fake_binance.wait_for_subscription("btcusdt@markPrice@1s", timeout=15)
            await eventually(lambda: rest.requests)
            mark = {"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": "60000.00"}
            await fake_binance.push_stream("btcusdt@markPrice@1s", mark)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:  # a failed run leaves no recorder behind
                process.kill()
                await process.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    rest_line = next(line for line in lines if "rest" in line)
    assert rest_line["rest"] == "/fapi/v1/openInterest" and rest_line["source"] == "binance"
    assert rest_line["raw"]["openInterest"] == "1234.500"
    assert {"stream": "btcusdt@markPrice@1s", "data": mark} in [line["raw"] for line in lines]


@pytest.mark.timeout(180)  # a hub start-up and a full replay, on a loaded machine
def test_serve_replay_matches_the_expected_totals() -> None:
    expected = json.loads((DATA / "sample_session.expected.json").read_text())["per_symbol"]
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "serve",
            "--replay",
            "hub/data/demo_session.jsonl",
            "--speed",
            "0",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/heatmap"
        deadline = time.monotonic() + 90  # generous: start-up and replay on a loaded machine
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{base}/status", timeout=15).json()["data"]
                if status["sources"]["replay"]["frames"] == 4987:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert status is not None, "serve --replay never answered /status"
        replayed = status["sources"]["replay"]["frames"]
        assert replayed == 4987, f"expected all 4987 frames replayed, saw {replayed}"
        for symbol, totals in expected.items():
            assert status["symbols"][symbol]["events"] == totals["events"]

            def statistics(symbol: str = symbol) -> dict[str, float]:
                body = httpx.get(f"{base}/liquidations/{symbol}/heatmap", timeout=15).json()
                return body["data"]["statistics"]

            deadline = time.monotonic() + 30
            while (seen := statistics()["event_count"]) != totals["events"]:
                assert time.monotonic() < deadline, f"{symbol}: {seen} of {totals['events']}"
                time.sleep(0.1)
            stats = statistics()
            for key in ("long_notional", "short_notional", "total_notional"):
                assert stats[key] == pytest.approx(totals[key], rel=1e-9)
    finally:
        process.terminate()
        assert process.wait(10) == 0


@contextlib.asynccontextmanager
async def hub_process(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, IO[bytes]]]:
    """`python -m hub ARGS --port PORT` on a free port (`env` added to the environment),
    its log (stderr, and uvicorn's access log on stdout) in a file: a pipe nobody reads
    would stall a chatty hub. Killed on the way out if it still runs."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            *args,
            "--port",
            str(port),
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=log,
        )
        try:
            yield process, port, log
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_sigterm_closes_clients_with_1001_and_exits_0() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with hub_process("serve", "--demo") as (process, port, _):
        # The demo lays its whole session into the past before it listens: generous.
        websocket = None
        deadline = time.monotonic() + 60
        while websocket is None:
            try:
                websocket = await connect(f"ws://127.0.0.1:{port}/ws")
            except OSError:
                assert time.monotonic() < deadline, "serve --demo did not listen within 60 s"
                assert process.returncode is None, f"serve --demo exited {process.returncode}"
                await asyncio.sleep(0.1)
        await websocket.send(
            json.dumps({"op": "subscribe", "id": 1, "channels": ["liquidations:*"]})
        )
        await asyncio.wait_for(websocket.recv(), 5)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(websocket.recv(), 10)
        assert websocket.close_code == 1001
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert time.monotonic() - started < 10


# -- the help a user reads ------------------------------------------------------------------

COMMANDS = ("serve", "ingest", "web", "record", "keys")
JARGON = ("SPEC", "ConfigError", "entry point", "HubView", "Traceback", "hub.")


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0, f"--help of {command} exited {exited.value.code}"
    return capsys.readouterr().out


def option_entries(text: str) -> dict[str, str]:
    """`--flag` -> its help, whitespace collapsed (argparse wraps long lines)."""
    section = text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, str] = {}
    flag = ""
    for line in section.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            flag = stripped.split()[0].rstrip(",")
            if flag == "-h":
                flag = "--help"
            entries[flag] = stripped
        else:
            entries[flag] += " " + stripped
    return entries


def example_lines(text: str) -> list[str]:
    """The commands listed under `examples:`, comments and env assignments dropped."""
    section = text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in section.splitlines():
        words = line.split("#", 1)[0].split()
        while words and "=" in words[0]:
            words.pop(0)
        commands.append(" ".join(words))
    return commands


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default_and_runnable_examples(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = help_of(capsys, command)
    entries = option_entries(text)
    defaults = load_settings({})
    for flag, entry in entries.items():
        if flag == "--help" or flag == "--out":
            continue  # --out is required: it has no default
        assert "default" in entry, f"{command} {flag}: no default in {entry!r}"
        variable = entry.split("(env ", 1)[1].split(";", 1)[0] if "(env " in entry else None
        if variable is not None:
            field = next(f for f, v in FIELD_TO_VARIABLE.items() if v == variable)
            value = getattr(defaults, field)
            if isinstance(value, tuple):
                value = ",".join(value)
            shown = "unset" if value is None else value
            assert f"default: {shown}" in entry, f"{command} {flag}: {entry!r} vs {shown!r}"
    examples = example_lines(text)
    assert examples and all(e.startswith(f"heatmap-hub {command}") for e in examples), examples
    parser = _parser()
    for example in examples:
        parsed = parser.parse_args(example.split()[1:])  # argparse exits on a bad example
        assert parsed.command == command


def test_top_level_help_lists_every_command_and_no_jargon(
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = [help_of(capsys)] + [help_of(capsys, command) for command in COMMANDS]
    for command in COMMANDS:
        assert f"    {command} " in texts[0], f"{command} missing from:\n{texts[0]}"
    for text in texts:
        found = [word for word in JARGON if word in text]
        assert not found, f"internal words {found} in help:\n{text}"


def test_bare_command_prints_the_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    for command in COMMANDS:
        assert f"    {command} " in result.stderr, result.stderr


def test_version_matches_the_package() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"heatmap-hub {declared}"


def test_log_level_is_accepted_before_and_after_the_command() -> None:
    parser = _parser()
    assert parser.parse_args(["serve"]).log_level == "info"
    assert parser.parse_args(["--log-level", "warning", "serve"]).log_level == "warning"
    assert parser.parse_args(["web", "--log-level", "debug"]).log_level == "debug"


@pytest.mark.parametrize("command", ["web", "ingest"])
def test_redis_commands_without_redis_say_so_in_one_line(command: str) -> None:
    result = run_cli(command, env={"REDIS_URL": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "REDIS_URL" in lines[0], result.stderr
    assert not [word for word in JARGON if word in result.stderr], result.stderr
