"""Speed of exact Binomial coverage: three interval types over a 50 x 50 (n, p) grid.

Target (issue 4): well under 2 s, vectorised. Baseline run side by side: the same sums with a
Python loop over n (intervals and pmf vectorised over x only), as a reader might first write it.
Run: ``.venv/bin/python benchmarks/inference.py``.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from fisherbook.stats.intervals import binomial_interval, exact_coverage

NS = np.arange(1, 51) * 2
PS = np.linspace(0.01, 0.99, 50)
METHODS = ("wald", "wilson", "lr")


def looped() -> np.ndarray:
    out = np.zeros((len(METHODS), len(NS), len(PS)))
    for k, m in enumerate(METHODS):
        for i, n in enumerate(NS):
            x = np.arange(n + 1)
            lo, hi = (a.numpy() for a in binomial_interval(x, n, method=m))
            for j, p in enumerate(PS):
                out[k, i, j] = stats.binom.pmf(x, n, p)[(lo <= p) & (p <= hi)].sum()
    return out


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


if __name__ == "__main__":
    fast = best_of(lambda: exact_coverage("binomial", NS, PS, METHODS))
    slow = best_of(looped, repeat=2)
    assert np.allclose(exact_coverage("binomial", NS, PS, METHODS).numpy(), looped(), atol=1e-12)
    print(f"exact_coverage, 3 methods x 50 x 50: {fast:.3f} s (target < 2 s)")
    print(f"python loop over n and p:            {slow:.3f} s  (ratio {slow / fast:.1f}x)")
