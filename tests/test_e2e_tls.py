"""The server's own TLS (HUB_TLS_CERTFILE, HUB_TLS_KEYFILE): `serve` answers https:// and
wss:// with a certificate made here by `openssl`, and a certificate that cannot be used
stops the start with exit 2 and one line."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from tests.conftest import eventually
from tests.keys_kit import admitted
from tests.test_cli import hub_process, run_cli

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_serve_speaks_https_and_wss(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    trusted = ssl.create_default_context(cafile=str(cert))
    env = {"HUB_TLS_CERTFILE": str(cert), "HUB_TLS_KEYFILE": str(key), "HEATMAP_LIQUIDITY": "off"}
    async with hub_process("serve", "--demo", env=env) as (process, port, _):
        async with httpx.AsyncClient(verify=trusted, timeout=15) as client:

            async def up() -> bool:
                assert process.returncode is None, f"serve exited {process.returncode}"
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get(f"https://127.0.0.1:{port}/health")).is_success
                return False

            await eventually(up, within=60)
        async with connect(f"wss://127.0.0.1:{port}/ws", ssl=trusted) as ws:
            assert await admitted(ws)
        with pytest.raises((InvalidMessage, OSError)):  # nothing in plain text on that port
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)


def test_an_unusable_certificate_stops_the_start(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    for env, variable in (
        ({"HUB_TLS_CERTFILE": str(cert)}, "HUB_TLS_KEYFILE"),
        ({"HUB_TLS_CERTFILE": str(key), "HUB_TLS_KEYFILE": str(key)}, "HUB_TLS_CERTFILE"),
        ({"HUB_TLS_CERTFILE": str(cert), "HUB_TLS_KEYFILE": "/no/such.pem"}, "HUB_TLS_CERTFILE"),
    ):
        result = run_cli("serve", "--demo", "--port", "0", env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert variable in lines[0], lines[0]
