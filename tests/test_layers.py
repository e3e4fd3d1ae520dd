"""The layers of `hub/` import downwards only: the processors (`hub/analytics`, and the
exchange-neutral types of `hub/market`) know no exchange, feed, service or API, and the
feeds only decode (no analytics, services or API). Checked on the source's imports,
including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

HUB = Path(__file__).resolve().parent.parent / "hub"
FORBIDDEN = {
    "analytics": ("hub.feeds", "hub.service", "hub.api", "hub.fanout", "hub.storage"),
    "market": ("hub.feeds", "hub.service", "hub.api", "hub.fanout", "hub.analytics"),
    "feeds": ("hub.analytics", "hub.service", "hub.api", "hub.fanout"),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_each_layer_imports_only_what_lies_below_it() -> None:
    crossing = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((HUB / layer).glob("*.py")):
            for name in sorted(imported(path)):
                if name.startswith(forbidden):
                    crossing.append(f"{path.relative_to(HUB.parent)} imports {name}")
    assert not crossing, f"expected no upward import, seen {crossing}"
