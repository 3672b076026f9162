"""Delta method, variance-stabilising intervals and Le Cam's one-step estimator (chapter 3),
checked against closed forms, finite differences, exact sums and the fully iterated MLE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from torch.distributions import Cauchy, Exponential, Gamma, Normal

import fisherbook as fb
from fisherbook.stats.asymptotics import delta_method, one_step, stabilised_interval

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64
Z = sps.norm.ppf(0.975)


def t(x):
    return torch.tensor(x, dtype=D)


def test_delta_method_matches_the_jacobian_by_finite_differences():
    theta = t([1.5, -0.4, 2.0])
    A = t([[1.0, 0.2, 0.1], [0.2, 2.0, -0.3], [0.1, -0.3, 0.5]])

    def g(v):
        return torch.stack([v[0] / v[2], torch.exp(v[1]) * v[0]])

    value, cov = delta_method(g, theta, A)
    eps = 1e-6
    G = torch.stack([(g(theta + eps * e) - g(theta - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=D)], -1)
    assert torch.allclose(value, g(theta))
    assert torch.allclose(cov, G @ A @ G.T, rtol=1e-7)


def test_delta_method_for_the_log_odds():
    # p_hat with variance p(1-p)/n: log-odds has variance 1/(n p (1-p))
    p, n = 0.3, 40
    _, cov = delta_method(lambda v: torch.log(v / (1 - v)), t([p]), t([[p * (1 - p) / n]]))
    assert math.isclose(float(cov), 1 / (n * p * (1 - p)), rel_tol=1e-12)


def test_exponential_log_interval_exact_coverage():
    # lam_hat / lam = n / G with G ~ Gamma(n, 1): covered iff n e^{-z/sqrt n} <= G <= n e^{z/sqrt n}
    n, lam, reps = 10, 2.0, 20000
    x = fb.stats.sample(Exponential(t(lam)), (reps, n), torch.Generator().manual_seed(1)).to(D)
    lo, hi = stabilised_interval("exponential", x)
    cov = float(((lo <= lam) & (lam <= hi)).double().mean())
    h = Z / math.sqrt(n)
    exact = sps.gamma.cdf(n * math.exp(h), n) - sps.gamma.cdf(n * math.exp(-h), n)
    assert abs(cov - exact) < 4 * math.sqrt(exact * (1 - exact) / reps)
    assert torch.allclose(lo * hi, 1 / x.mean(-1) ** 2)  # symmetric on the log scale


def test_poisson_square_root_stabilises_the_variance():
    # exact sums over T ~ Poisson(n lam): n Var(2 sqrt(T/n)) -> 1 for every lam (Anscombe), coverage -> 0.95
    n = 50
    for lam in (0.5, 2.0, 10.0):
        T = np.arange(0, int(n * lam + 20 * math.sqrt(n * lam) + 50))
        w = sps.poisson.pmf(T, n * lam)
        h = 2 * np.sqrt(T / n)
        var = np.sum(w * h**2) - np.sum(w * h) ** 2
        assert abs(n * var - 1) < 0.1 / lam + 0.02
        x = torch.zeros(len(T), n, dtype=D)
        x[:, 0] = t(T.astype(float))
        lo, hi = stabilised_interval("poisson", x)
        cov = float(np.sum(w * ((lo.numpy() <= lam) & (lam <= hi.numpy()))))
        assert abs(cov - 0.95) < 0.02


def test_arcsine_interval_exact_coverage_and_range():
    n = 80
    X = np.arange(n + 1)
    data = (torch.arange(n, dtype=D)[None, :] < t(X.astype(float))[:, None]).to(D)  # row x has x ones
    lo, hi = stabilised_interval("bernoulli", data)
    assert bool((lo >= 0).all() and (hi <= 1).all() and (lo <= hi).all())
    for p in (0.2, 0.5, 0.7):
        w = sps.binom.pmf(X, n, p)
        cov = float(np.sum(w * ((lo.numpy() <= p) & (p <= hi.numpy()))))
        assert abs(cov - 0.95) < 0.025
    # the transform's delta-method variance is 1/n whatever p
    for p in (0.1, 0.5, 0.9):
        _, v = delta_method(lambda q: 2 * torch.asin(q.sqrt()), t([p]), t([[p * (1 - p) / n]]))
        assert math.isclose(float(v), 1 / n, rel_tol=1e-12)


def test_one_step_closed_forms():
    x = t([[0.3, 1.4, 2.2, 0.9], [1.0, 2.0, 0.5, 0.7]])
    lam0 = t([0.5, 1.5])
    got = one_step(Exponential, x, {"rate": lam0})[..., 0]
    assert torch.allclose(got, 2 * lam0 - lam0**2 * x.mean(-1))  # Newton for the exponential rate
    # scoring for the exponential rate: lam0 + (n/lam0 - S) lam0^2 / n, the same here (J = nI at any lam)
    assert torch.allclose(one_step(Exponential, x, {"rate": lam0}, method="scoring")[..., 0], got)
    # a Normal mean has a quadratic log-likelihood: one Newton step from anywhere is the MLE
    assert torch.allclose(one_step(Normal, x, {"loc": 17.0}, fixed={"scale": 3.0})[..., 0], x.mean(-1))


def test_one_step_from_the_median_is_close_to_the_cauchy_mle():
    # sqrt(n)(one-step - MLE) -> 0: at n = 400 the difference is far below the MLE's standard error
    n = 400
    x = fb.stats.sample(Cauchy(t(0.0), t(1.0)), (300, n), torch.Generator().manual_seed(2)).to(D)
    med = x.median(-1).values
    mle = fb.mle(Cauchy, x, init={"loc": med}, fixed={"scale": 1.0}).params["loc"]
    se = math.sqrt(2 / n)
    for method in ("newton", "scoring"):
        one = one_step(Cauchy, x, {"loc": med}, fixed={"scale": 1.0}, method=method)[..., 0]
        assert float((one - mle).abs().mean()) < 0.1 * se
        assert float((med - mle).abs().mean()) > 0.3 * se  # the start is not efficient


@settings(max_examples=15, deadline=None)
@given(st.floats(0.5, 8.0), st.floats(0.2, 5.0), st.integers(0, 1000))
def test_iterated_steps_converge_to_the_mle(shape, rate, seed):
    x = fb.stats.sample(Gamma(t(shape), t(rate)), (60,), torch.Generator().manual_seed(seed)).to(D)
    fit = fb.mle(Gamma, x, init={"concentration": 1.0, "rate": 1.0})
    start = {"concentration": fit.theta[0] * 1.05, "rate": fit.theta[1] * 0.97}
    it = one_step(Gamma, x, start, steps=8)
    assert torch.allclose(it, fit.theta, rtol=1e-8)
