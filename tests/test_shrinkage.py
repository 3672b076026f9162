"""Hodges' and James–Stein estimators: exact risks against quadrature, a peer library (scipy's
noncentral chi-square) and Monte Carlo; limits and dominance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import fisherbook as fb
from fisherbook.stats.shrinkage import _inverse_ncx2_mean

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


# ----------------------------------------------------------------------------- Hodges


@pytest.mark.parametrize("theta", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("n", [10, 400])
def test_hodges_risk_against_quadrature(theta, n):
    a, s = n**-0.25, 1.0 / math.sqrt(n)  # Xbar ~ N(theta, 1/n)

    def f(x):
        est = x if abs(x) > a else 0.0
        return (est - theta) ** 2 * stats.norm.pdf(x, theta, s)

    ref = sum(integrate.quad(f, lo, hi, epsabs=1e-15, epsrel=1e-11, limit=200)[0]
              for lo, hi in ((-np.inf, -a), (-a, a), (a, np.inf)))
    assert math.isclose(float(fb.hodges_risk(theta, n)), ref, rel_tol=1e-8, abs_tol=1e-15)


def test_hodges_risk_against_monte_carlo():
    g = torch.Generator().manual_seed(3)
    n, sigma = 100, 2.0
    for theta in (0.0, 0.5, 1.2):
        risk, se = fb.simulate_risk(lambda x: fb.hodges_estimator(x, n, threshold=sigma * n**-0.25), t(theta),
                                    sigma / math.sqrt(n), 100_000, g)
        exact = float(fb.hodges_risk(theta, n, sigma, threshold=sigma * n**-0.25))
        assert abs(risk - exact) < 5 * se + 1e-12  # 5 Monte-Carlo standard errors


def test_hodges_superefficiency_and_its_price():
    ns = [10, 100, 1000, 10_000, 100_000]
    at_zero = [n * float(fb.hodges_risk(0.0, n)) for n in ns]
    assert all(a > b for a, b in zip(at_zero[:4], at_zero[1:4])) and at_zero[-1] < 1e-10  # -> 0 at theta = 0
    worst = []
    for n in ns:
        th = torch.linspace(0, 3 * n**-0.25, 3001, dtype=D)
        worst.append(float((n * fb.hodges_risk(th, n)).max()))
    assert all(a < b for a, b in zip(worst, worst[1:]))  # the supremum of the normalised risk grows with n
    # near theta = a_n the estimate is 0 about half the time: risk ~ a_n^2 / 2, normalised ~ sqrt(n) / 2
    for n, w in zip(ns, worst):
        assert 0.25 * math.sqrt(n) < w < math.sqrt(n)


def test_hodges_threshold_zero_is_the_sample_mean():
    th = torch.linspace(-2, 2, 9, dtype=D)
    assert torch.allclose(fb.hodges_risk(th, 25, 1.5, threshold=0.0), torch.full_like(th, 1.5**2 / 25), rtol=1e-12)
    far = fb.hodges_risk(t(40.0), 100)
    assert math.isclose(float(far), 1 / 100, rel_tol=1e-12)


# ----------------------------------------------------------------------------- James–Stein


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 60), st.floats(0.0, 1e4))
def test_inverse_ncx2_mean_against_scipy(d, lam):
    # scipy's noncentral chi-square density, integrated piecewise around its mean (12 sd either side)
    mean, sd = d + lam, math.sqrt(2 * (d + 2 * lam))
    edges = sorted({0.0, max(mean - 12 * sd, 0.0), mean, mean + 12 * sd})
    pdf = (lambda y: stats.ncx2.pdf(y, d, lam) / y) if lam > 0 else (lambda y: stats.chi2.pdf(y, d) / y)
    ref = sum(integrate.quad(pdf, a, b, epsabs=0, epsrel=1e-10, limit=200)[0] for a, b in zip(edges, edges[1:]))
    ref += integrate.quad(pdf, edges[-1], np.inf, epsabs=0, epsrel=1e-10, limit=200)[0]
    assert math.isclose(_inverse_ncx2_mean(d, lam), ref, rel_tol=1e-6)


def test_inverse_ncx2_series_and_integral_agree_at_the_switch():
    for d in (3, 7):
        below = _inverse_ncx2_mean(d, 2e6 * (1 - 1e-12))
        above = _inverse_ncx2_mean(d, 2e6 * (1 + 1e-12))
        assert math.isclose(below, above, rel_tol=1e-9)
        assert math.isclose(below, 1 / (d - 2 + 2e6), rel_tol=1e-5)  # ~ 1/(d - 2 + lam) for large lam


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 100), st.floats(0.0, 1e5), st.floats(1e-3, 1e3))
def test_james_stein_dominates_the_mle(d, norm, sigma):
    r = float(fb.james_stein_risk(norm * sigma, d, sigma))
    assert 2 * sigma**2 * (1 - 1e-9) <= r < d * sigma**2  # 2 sigma^2 at the origin, below d sigma^2 everywhere


def test_james_stein_risk_at_origin_and_far():
    for d in (3, 5, 20):
        assert math.isclose(float(fb.james_stein_risk(0.0, d)), 2.0, rel_tol=1e-12)
        assert math.isclose(float(fb.james_stein_risk(1e5, d)), d, rel_tol=1e-6)
    rs = fb.james_stein_risk(torch.linspace(0, 10, 21, dtype=D), 6)
    assert (rs[1:] > rs[:-1]).all()  # increasing in ||theta||


@pytest.mark.parametrize("d", [3, 5, 10])
@pytest.mark.parametrize("norm", [0.0, 1.0, 3.0])
def test_james_stein_risk_against_monte_carlo(d, norm):
    g = torch.Generator().manual_seed(17 + d)
    sigma = 1.3
    theta = torch.zeros(d, dtype=D)
    theta[0] = norm
    risk, se = fb.simulate_risk(lambda x: fb.james_stein(x, sigma), theta, sigma, 100_000, g)
    assert abs(risk - float(fb.james_stein_risk(norm, d, sigma))) < 5 * se
    mle, se_mle = fb.simulate_risk(lambda x: x, theta, sigma, 100_000, g)
    assert abs(mle - d * sigma**2) < 5 * se_mle


def test_positive_part_has_lower_risk():
    g = torch.Generator().manual_seed(5)
    d, reps = 4, 200_000
    theta = torch.full((d,), 0.5, dtype=D)
    x = theta + torch.randn(reps, d, generator=g, dtype=D)
    js = ((fb.james_stein(x) - theta) ** 2).sum(-1)
    pp = ((fb.james_stein(x, positive_part=True) - theta) ** 2).sum(-1)
    diff = js - pp  # paired on the same draws; not of one sign pathwise, positive on average (Baranchik)
    assert float(diff.mean()) > 5 * float(diff.std() / math.sqrt(reps))


def test_james_stein_shape_and_invariance():
    x = torch.randn(7, 5, dtype=D)
    out = fb.james_stein(x, 2.0)
    assert out.shape == x.shape
    Q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=D))
    assert torch.allclose(fb.james_stein(x @ Q.T, 2.0), out @ Q.T, atol=1e-12)  # rotation equivariant
