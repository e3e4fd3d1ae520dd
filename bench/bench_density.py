"""Cost of one density update at 10,000 events: incremental KernelDensity vs a scipy rebuild.

Run from the repository root: ``python -m bench.bench_density``.

(a) is what the hub pays per flush after an event arrives: one `add` and `values()`.
(b) is the naive alternative: build `scipy.stats.gaussian_kde` on all events and evaluate it
on the grid. Each is repeated and the median reported.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy.stats import gaussian_kde

from hub.analytics.density import KernelDensity

EVENTS = 10_000
UPDATES = 2_000
START, STEP, SIZE, BANDWIDTH = 51_000.0, 20.0, 901, 180.0  # BTC: +-15% of 60,000, h = 0.3%


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    rng = np.random.default_rng(0)
    prices = rng.normal(60_000.0, 2_000.0, EVENTS)
    weights = rng.lognormal(8.0, 1.5, EVENTS)
    grid = START + STEP * np.arange(SIZE)

    density = KernelDensity(START, STEP, SIZE, BANDWIDTH)
    density.add_many(prices, weights)
    density.values()
    arrivals = zip(
        rng.normal(60_000.0, 2_000.0, UPDATES).tolist(),
        rng.lognormal(8.0, 1.5, UPDATES).tolist(),
        strict=True,
    )

    def incremental() -> None:
        density.add(*next(arrivals))
        density.values()

    bw_method = BANDWIDTH / math.sqrt(np.cov(prices, aweights=weights))

    def rebuild() -> None:
        gaussian_kde(prices, weights=weights, bw_method=bw_method)(grid)

    fast = median_seconds(incremental, repeat=UPDATES)
    slow = median_seconds(rebuild, repeat=15)
    print(f"{EVENTS} events, grid {SIZE} points, bandwidth {BANDWIDTH / STEP:g} steps")
    print(f"{'(a) KernelDensity add + values()':<40}{fast * 1e6:>12.1f} us")
    print(f"{'(b) gaussian_kde build + evaluate':<40}{slow * 1e6:>12.1f} us")
    print(f"{'ratio (b) / (a)':<40}{slow / fast:>12.0f} x")


if __name__ == "__main__":
    main()
