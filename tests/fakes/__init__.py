"""Look-alikes of the hub's upstreams, answering on loopback as the real services do."""

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"  # the wire examples they speak from
