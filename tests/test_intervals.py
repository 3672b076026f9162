"""Tests for fisherbook.stats.intervals: closed-form Binomial/Poisson intervals and exact coverage."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fisherbook.stats import intervals as ivl

Z = stats.norm.ppf(0.975)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1))
def test_wilson_ends_solve_the_score_equation(n, frac):
    x = round(frac * n)
    lo, hi = ivl.binomial_interval(x, n, method="wilson")
    for p in (float(lo), float(hi)):
        if 0 < p < 1:  # (x/n - p)^2 = z^2 p (1-p) / n
            assert abs((x / n - p) ** 2 - Z**2 * p * (1 - p) / n) < 1e-10


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1))
def test_binomial_lr_ends_lie_on_the_chi2_contour(n, frac):
    x = round(frac * n)
    lo, hi = ivl.binomial_interval(x, n, method="lr")
    ll = lambda p: stats.binom.logpmf(x, n, p)  # noqa: E731
    for p in (float(lo), float(hi)):
        if 0 < p < 1:
            assert abs(2 * (ll(x / n) - ll(p)) - Z**2) < 1e-6
    assert float(lo) <= x / n <= float(hi)


def test_binomial_methods_order_and_known_values():
    # x = 0: Wald collapses, the others do not; Jeffreys/Clopper-Pearson lower end is 0
    lo, hi = ivl.binomial_interval(0, 20, method="wald")
    assert float(lo) == float(hi) == 0.0
    for m in ("wilson", "agresti-coull", "jeffreys", "clopper-pearson", "lr"):
        lo, hi = ivl.binomial_interval(0, 20, method=m)
        assert float(lo) == 0.0 and float(hi) > 0.05
    # Clopper-Pearson at x = 0 is 1 - (alpha/2)^(1/n)
    _, hi = ivl.binomial_interval(0, 20, method="clopper-pearson")
    assert abs(float(hi) - (1 - 0.025 ** (1 / 20))) < 1e-12
    # Clopper-Pearson contains Jeffreys (it is the conservative one)
    x = np.arange(0, 31)
    clo, chi = ivl.binomial_interval(x, 30, method="clopper-pearson")
    jlo, jhi = ivl.binomial_interval(x, 30, method="jeffreys")
    assert bool((clo <= jlo + 1e-12).all() and (chi >= jhi - 1e-12).all())
    # symmetry: interval for n - x is the mirror image
    for m in ivl.BINOMIAL_METHODS:
        lo, hi = ivl.binomial_interval(x, 30, method=m)
        rlo, rhi = ivl.binomial_interval(30 - x, 30, method=m)
        assert torch.allclose(lo, 1 - rhi, atol=1e-9) and torch.allclose(hi, 1 - rlo, atol=1e-9)


def test_poisson_intervals_known_values():
    lo, hi = ivl.poisson_interval(12, 4, method="score")
    for lam in (float(lo), float(hi)):
        assert abs((12 - 4 * lam) ** 2 - Z**2 * 4 * lam) < 1e-9
    lo, hi = ivl.poisson_interval(0, 1, method="garwood")
    assert float(lo) == 0 and abs(float(hi) - (-np.log(0.025))) < 1e-10  # P(T=0) = e^-lam = alpha/2
    lo, hi = ivl.poisson_interval(7, 3, method="lr")
    ll = lambda lam: stats.poisson.logpmf(7, 3 * lam)  # noqa: E731
    for lam in (float(lo), float(hi)):
        assert abs(2 * (ll(7 / 3) - ll(lam)) - Z**2) < 1e-7
    lo, hi = ivl.poisson_interval(0, 5, method="lr")  # t = 0: [0, z^2 / (2n)]
    assert float(lo) == 0 and abs(float(hi) - Z**2 / 10) < 1e-9


def _coverage_loop(family, ns, thetas, method, level=0.95):
    out = np.zeros((len(ns), len(thetas)))
    for i, n in enumerate(ns):
        if family == "binomial":
            support = np.arange(n + 1)
            lo, hi = ivl.binomial_interval(support, n, level, method)
        else:
            support = np.arange(0, 2000)
            lo, hi = ivl.poisson_interval(support, n, level, method)
        lo, hi = lo.numpy(), hi.numpy()
        for j, th in enumerate(thetas):
            pmf = stats.binom.pmf(support, n, th) if family == "binomial" else stats.poisson.pmf(support, n * th)
            out[i, j] = pmf[(lo <= th) & (th <= hi)].sum()
    return out


@pytest.mark.parametrize("method", ["wald", "wilson", "lr", "jeffreys"])
def test_exact_binomial_coverage_matches_a_loop(method):
    ns, ps = [1, 7, 25, 60], [0.01, 0.2, 0.5, 0.93]
    got = ivl.exact_coverage("binomial", ns, ps, method).numpy()
    assert np.allclose(got, _coverage_loop("binomial", ns, ps, method), atol=1e-12)


@pytest.mark.parametrize("method", ["wald", "score", "lr", "garwood"])
def test_exact_poisson_coverage_matches_a_loop(method):
    ns, lams = [1, 5, 20], [0.05, 1.0, 7.5]
    got = ivl.exact_coverage(torch.distributions.Poisson, ns, lams, method).numpy()
    assert np.allclose(got, _coverage_loop("poisson", ns, lams, method), atol=1e-10)


def test_exact_coverage_reproduces_brown_cai_dasgupta():
    # BCD (2001): Wald is far below nominal near p = 0; Wilson close to nominal on average;
    # Clopper-Pearson never below nominal; Wald coverage oscillates in n even at p = 0.5.
    ns = np.arange(10, 101)
    ps = np.linspace(0.01, 0.99, 99)
    cov = ivl.exact_coverage("binomial", ns, ps, ("wald", "wilson", "clopper-pearson")).numpy()
    wald, wilson, cp = cov
    assert wald[:, 0].max() < 0.65  # p = 0.01: Wald misses whenever x = 0
    assert abs(wilson.mean() - 0.95) < 0.01
    assert wald.mean() < wilson.mean() - 0.03
    assert cp.min() >= 0.95 - 1e-12
    # "lucky and unlucky n": at p = 0.5 Wald coverage is not monotone in n, it jumps both ways
    steps = np.diff(wald[:, 49])
    assert (steps > 0.01).any() and (steps < -0.01).any()


def test_exact_coverage_50x50_three_methods_is_fast():
    ns, ps = np.arange(1, 51) * 2, np.linspace(0.01, 0.99, 50)
    ivl.exact_coverage("binomial", ns[:3], ps[:3], ("wald", "wilson", "lr"))  # warm-up
    start = time.perf_counter()
    out = ivl.exact_coverage("binomial", ns, ps, ("wald", "wilson", "lr"))
    elapsed = time.perf_counter() - start
    assert out.shape == (3, 50, 50)
    assert elapsed < 6.0  # the target is < 2 s on a quiet machine (benchmarks/inference.py); 3x for a busy CI


@pytest.mark.parametrize(
    "call",
    [
        lambda: ivl.binomial_interval(3, 2),
        lambda: ivl.binomial_interval(1, 0),
        lambda: ivl.binomial_interval(1.5, 4),
        lambda: ivl.binomial_interval(-1, 4),
        lambda: ivl.binomial_interval(1, 4, method="exact"),
        lambda: ivl.binomial_interval(1, 4, level=95),
        lambda: ivl.poisson_interval(-1, 4),
        lambda: ivl.poisson_interval(1, 0),
        lambda: ivl.poisson_interval(1, 2, method="wilson"),
        lambda: ivl.exact_coverage("normal", [5], [0.5], "wald"),
        lambda: ivl.exact_coverage("binomial", [5], [0.0], "wald"),
        lambda: ivl.exact_coverage("binomial", [0], [0.5], "wald"),
        lambda: ivl.exact_coverage("binomial", [5], [0.5], "score"),
        lambda: ivl.exact_coverage("poisson", [5], [-1.0], "score"),
        lambda: ivl.exact_coverage("poisson", [5], [1.0], "score", tail=0.5),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
