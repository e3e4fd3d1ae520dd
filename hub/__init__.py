"""Real-time liquidation heatmap hub."""

__version__ = "0.1.0"
