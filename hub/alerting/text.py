"""An alert as a short message for people: what, where, how much (in USD), how unusual,
and a link to the page at the alert's symbol and window (when HEATMAP_PUBLIC_URL is set).
"""

from __future__ import annotations

from urllib.parse import urlencode

from hub.models import Alert

_MARK = {"low": "⚪", "moderate": "🟡", "high": "🟠", "extreme": "🔴"}
_TITLE = {
    "large_liquidation": "large liquidation",
    "cascade": "cascade",
    "cluster_new": "new cluster",
    "cluster_growth": "cluster growing",
}


def page_link(alert: Alert, public_url: str | None) -> str | None:
    if not public_url:
        return None
    query = urlencode({"symbol": alert.symbol, "window": alert.window})
    return f"{public_url.rstrip('/')}/?{query}"


def message(alert: Alert, public_url: str | None) -> str:
    """Two or three lines: a title, the alert's `detail`, the link."""
    side = f" {alert.side}" if alert.side else ""
    title = f"{_MARK[alert.risk]} {alert.symbol}{side} {_TITLE[alert.kind]}, risk {alert.risk}"
    link = page_link(alert, public_url)
    return "\n".join(line for line in (title, alert.detail, link) if line)
