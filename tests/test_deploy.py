"""The files in deploy/ and the Dockerfile, checked as far as this machine can: every
metric the Grafana dashboard and the alert rules name is one a running hub exports; the
systemd units pass `systemd-analyze verify` (where it exists); the container's
entrypoint runs the hub; compose sets only variables the hub reads, with values it
accepts. (No image is built here: base images cannot be pulled on these machines.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.config import _VARIABLES, Settings, load_settings
from tests.conftest import BINANCE, HubFactory
from tests.fakes.binance_server import FakeBinance

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "heatmap-hub.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"

PROMETHEUS_OWN = {"up"}  # the scrape's own series: whether the target answered

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions,
    keywords, label names (in braces or in by/without lists), durations or variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in _PROMQL_WORDS:
            continue
        if text[: match.start()].rstrip().endswith(tuple("0123456789.")):
            continue  # a unit of a number (1e3) is no metric
        names.add(match.group())
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names('sum by (sink, kind) (rate(hub_alerts_sent_total{a="b"}[5m]))') == {
        "hub_alerts_sent_total"
    }
    assert metric_names("a / on (instance) b > 2 * 1024") == {"a", "b"}
    assert metric_names('up{job="heatmap-hub"} == 0') == {"up"}


async def test_every_dashboard_and_rule_expression_names_an_exported_metric(
    start_hub: HubFactory, fake_binance: FakeBinance
) -> None:
    running = await start_hub(Settings(binance_ws_url=fake_binance.base_url, exchanges=BINANCE))
    text = (await running.get("/metrics")).text
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    known = exported | PROMETHEUS_OWN
    expressions = dashboard_expressions() + rule_expressions()
    assert len(expressions) > 30
    for expr in expressions:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= known, f"{expr!r} names {sorted(names - known)}, not exported"
    dashboard = " ".join(dashboard_expressions())
    for needed in (
        "hub_clients", "hub_fanout_deliveries_total", "hub_fanout_dropped_total",
        "hub_source_connected", "hub_source_last_message_age_seconds",
        "hub_broker_lag_seconds", "hub_alerts_sent_total", "hub_alerts_failed_total",
        "process_resident_memory_bytes",
    ):  # fmt: skip
        assert needed in dashboard, f"the dashboard has no panel of {needed}"


def test_dashboard_panels_have_unique_ids_and_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule
        assert rule["annotations"]["summary"], rule
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run(
            [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


# -- systemd --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """The units as installed by docs/deploy.md, with the hub where this test runs."""
    installed = "/opt/heatmap-hub/.venv/bin/heatmap-hub"
    here = str(Path(sys.executable).parent / "heatmap-hub")
    assert os.access(here, os.X_OK), here
    paths = []
    for unit in UNITS:
        text = unit.read_text()
        assert installed in text, f"{unit.name} does not run {installed}"
        copy = tmp_path / unit.name
        copy.write_text(text.replace(installed, here))
        paths.append(str(copy).replace("@.service", "@5001.service"))
    assert [Path(p).name for p in paths] == [
        "heatmap-hub-ingest.service",
        "heatmap-hub-web@5001.service",
        "heatmap-hub.service",
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", *paths], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_units_run_the_documented_commands() -> None:
    commands = {
        unit.name: next(
            line.split("=", 1)[1].split()[1:]
            for line in unit.read_text().splitlines()
            if line.startswith("ExecStart=")
        )
        for unit in UNITS
    }
    assert commands == {
        "heatmap-hub.service": ["serve"],
        "heatmap-hub-ingest.service": ["ingest"],
        "heatmap-hub-web@.service": ["web", "--port", "%i"],
    }


# -- the container ----------------------------------------------------------------------------


def run_entrypoint(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, **env},
        timeout=60,
    )


def test_the_entrypoint_runs_the_hub_or_a_command(tmp_path: Path) -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    version = run_entrypoint("--version")
    assert version.returncode == 0 and version.stdout.startswith("heatmap-hub "), version
    keys = tmp_path / "keys.json"
    added = run_entrypoint("keys", "add", "desk", HUB_API_KEYS_FILE=str(keys))
    assert added.returncode == 0 and added.stdout.startswith("hub_"), added.stderr
    listed = run_entrypoint("keys", "list", HUB_API_KEYS_FILE=str(keys))
    assert "desk" in listed.stdout and added.stdout.strip() not in listed.stdout
    refused = run_entrypoint("web", REDIS_URL="")
    assert refused.returncode == 2 and "REDIS_URL" in refused.stderr
    other = run_entrypoint("echo", "a shell command")
    assert other.returncode == 0 and other.stdout == "a shell command\n"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_dockerfile_copies_what_exists_and_sets_only_hub_variables() -> None:
    instructions = dockerfile_instructions()
    for kind, rest in instructions:
        if kind == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    entry = next(rest for kind, rest in instructions if kind == "ENTRYPOINT")
    assert json.loads(entry) == ["heatmap-hub-entrypoint"]
    env = next(rest for kind, rest in instructions if kind == "ENV")
    names = {pair.split("=", 1)[0] for pair in env.split()}
    assert names - {"PATH", "PYTHONUNBUFFERED"} <= set(_VARIABLES), names


def compose_environment() -> dict[str, dict[str, str]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    hub_services = {n: s for n, s in compose["services"].items() if n != "redis"}
    assert set(hub_services) == {"ingest", "web1", "web2", "serve"}
    return {name: service["environment"] for name, service in hub_services.items()}


def _defaults(value: str) -> str:
    """A compose value with every `${VAR:-default}` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_sets_only_variables_the_hub_reads_with_values_it_accepts() -> None:
    for service, environment in compose_environment().items():
        unknown = set(environment) - set(_VARIABLES)
        assert not unknown, f"{service} sets {sorted(unknown)}, which the hub does not read"
        settings = load_settings({name: _defaults(str(v)) for name, v in environment.items()})
        assert settings.api_keys_file is None, "keys are off until the operator adds one"
    environments = compose_environment()
    assert environments["web1"]["REDIS_URL"] == "redis://redis:6379/0"
    assert environments["serve"]["HEATMAP_DATA_DIR"] == "/var/lib/heatmap-hub"
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "hub-data:/var/lib/heatmap-hub" in compose["services"]["serve"]["volumes"]
    assert compose["services"]["ingest"]["command"] == ["ingest"]
