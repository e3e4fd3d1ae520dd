"""The user docs against the code they describe: every REST path the app serves has its
place in docs/rest.md, the CLI's help names no single exchange where any is meant, and
docs/predicted.md's limits agree with its own inputs table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Route

from hub.api.app import create_app
from hub.config import Settings
from hub.service.hubs import ServeHub
from tests.test_cli import run_cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_rest_path_is_in_rest_md() -> None:
    app = create_app(ServeHub(Settings(liquidity="off")))
    paths = {route.path for route in app.routes if isinstance(route, Route) and route.path != "/"}
    text = (DOCS / "rest.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(?:GET|POST|DELETE) (/[^`?\s]*)", text))
    missing = sorted(paths - documented)
    assert not missing, f"expected every path in docs/rest.md as `GET /path`, missing {missing}"


@pytest.mark.timeout(60)
def test_the_help_names_no_single_exchange_for_a_replay() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "instead of Binance" not in text, text
    assert "instead of the exchanges" in text, text


def test_predicted_limits_agree_with_the_inputs_table() -> None:
    text = (DOCS / "predicted.md").read_text(encoding="utf-8")
    inputs = text.split("## Inputs", 1)[1].split("\n## ", 1)[0]
    table = {line.split("|")[1].split()[0] for line in inputs.splitlines() if line.startswith("| ")}
    assert {"Binance", "Bybit", "OKX", "HTX"} <= table, table
    limits = text.split("## Limits", 1)[1].split("\n## ", 1)[0] if "## Limits" in text else text
    assert "Binance open interest only" not in limits, "the inputs table lists eight exchanges"
