"""Tests for fisherbook.stats.inference: bounds, simulation, MLE, sandwich, generic intervals, coverage."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from torch.distributions import (
    Binomial,
    Cauchy,
    Exponential,
    Gamma,
    NegativeBinomial,
    Normal,
    Poisson,
    Uniform,
    constraints,
)

from fisherbook.stats import inference as inf
from fisherbook.stats import intervals as ivl

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


HAS_CORE = importlib.util.find_spec("fisherbook.stats.estimators") is not None
needs_core = pytest.mark.skipif(not HAS_CORE, reason="fisherbook.fisher_information not available yet")


# ----------------------------------------------------------------------------- crlb


def test_crlb_scalar_and_matrix_forms_agree():
    assert torch.allclose(inf.crlb(t(0.25), n=100), t(0.04))
    assert inf.crlb(t(0.25), n=100).shape == ()
    out = inf.crlb(t([[0.25]]), n=100)
    assert out.shape == (1, 1) and out.dtype == D and torch.allclose(out, t([[0.04]]))


def test_crlb_normal_variance_via_gradient_of_g():
    # theta = (mu, sigma), I = diag(1/s^2, 2/s^2); g = sigma^2 has J = (0, 2 sigma)
    s, n = 1.7, 30
    I = torch.diag(t([1 / s**2, 2 / s**2]))
    bound = inf.crlb(I, n=n, grad_g=t([0.0, 2 * s]))
    assert torch.allclose(bound, t([[2 * s**4 / n]]))
    # the same bound from the (mu, sigma^2) parameterisation directly: I_vv = 1/(2 s^4)
    direct = inf.crlb(torch.diag(t([1 / s**2, 1 / (2 * s**4)])), n=n)[1, 1]
    assert torch.allclose(bound[0, 0], direct)


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(1e-3, 1e3), n=st.integers(1, 1000))
def test_crlb_is_invariant_under_reparameterisation(rate, n):
    # exponential rate lambda, g = mean = 1/lambda: bound J^2/(n I) equals the bound of the mean parameterisation
    via_rate = inf.crlb(t(1 / rate**2), n=n, grad_g=t(-1 / rate**2))
    mean = 1 / rate
    via_mean = inf.crlb(t(1 / mean**2), n=n)
    assert torch.allclose(via_rate, via_mean, rtol=1e-10)


def test_crlb_biased_bound_is_attained_by_shrunken_mean():
    # T = c * xbar for N(mu, sigma^2): bias (c-1) mu, b' = c-1, MSE = c^2 s^2/n + (c-1)^2 mu^2 exactly
    mu, s, n, c = 1.3, 2.0, 12, 0.7
    bound = inf.crlb(t(1 / s**2), n=n, bias=(c - 1) * mu, bias_grad=c - 1)
    assert torch.allclose(bound, t(c**2 * s**2 / n + (c - 1) ** 2 * mu**2))
    # MSE bound without bias term is the covariance bound
    assert torch.allclose(inf.crlb(t(1 / s**2), n=n, bias_grad=c - 1), t(c**2 * s**2 / n))


def test_crlb_batched_and_multivariate():
    I = torch.stack([torch.eye(2, dtype=D) * k for k in (1.0, 2.0, 4.0)])
    out = inf.crlb(I, n=2)
    assert out.shape == (3, 2, 2)
    assert torch.allclose(out[:, 0, 0], t([0.5, 0.25, 0.125]))
    # a non-diagonal information: bound is the inverse
    A = t([[2.0, 0.5], [0.5, 1.0]])
    assert torch.allclose(inf.crlb(A) @ A, torch.eye(2, dtype=D))


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(fisher=t([[1.0, 1.0], [1.0, 1.0]])), ValueError),  # singular
        (dict(fisher=t(1.0), n=0), ValueError),
        (dict(fisher=t(1.0), n=2.5), TypeError),
        (dict(fisher=t([1.0, 2.0])), ValueError),
        (dict(fisher=t(-1.0)), ValueError),
        (dict(fisher=torch.eye(2, dtype=D), grad_g=t([1.0, 2.0, 3.0])), ValueError),
        (dict(fisher=t(float("nan"))), ValueError),
        (dict(fisher="a"), TypeError),
    ],
)
def test_crlb_bad_input(kwargs, exc):
    with pytest.raises(exc):
        inf.crlb(**kwargs)


def test_crlb_singular_error_names_fisher():
    with pytest.raises(ValueError, match="fisher"):
        inf.crlb(t([[1.0, 1.0], [1.0, 1.0]]))


# ----------------------------------------------------------------------------- van Trees


def test_van_trees_gaussian_prior_by_quadrature_matches_closed_form():
    tau, sigma, n = 0.5, 2.0, 7
    prior = Normal(t(0.3), t(tau))
    closed = 1 / (n / sigma**2 + 1 / tau**2)
    assert torch.allclose(inf.van_trees(t(1 / sigma**2), prior, n=n), t(closed), rtol=1e-8)
    assert torch.allclose(inf.van_trees(lambda th: 1 / sigma**2 + 0 * th, prior, n=n), t(closed), rtol=1e-8)
    assert torch.allclose(inf.van_trees(1 / sigma**2, 1 / tau**2, n=n), t(closed))


def test_van_trees_beta_prior_information_and_averaged_fisher():
    # Bernoulli data with a Beta(3, 3) prior. I(pi) for Beta(a, b) with a, b > 2:
    # (a+b-1)(a+b-2)[(a-1)/(a-2) - 2 + (b-1)/(b-2)] = 40 for a = b = 3.
    # E_pi[1/(p(1-p))] = B(a-1, b-1)/B(a, b) = (a+b-1)(a+b-2)/((a-1)(b-1)) = 5.
    prior = torch.distributions.Beta(t(3.0), t(3.0))
    bound = inf.van_trees(lambda p: 1 / (p * (1 - p)), prior, n=10)
    assert torch.allclose(bound, t(1 / (10 * 5 + 40)), rtol=1e-7)


def test_van_trees_matrix_and_errors():
    out = inf.van_trees(torch.eye(2, dtype=D), torch.eye(2, dtype=D) * 3, n=5)
    assert torch.allclose(out, torch.eye(2, dtype=D) / 8)
    with pytest.raises(ValueError):
        inf.van_trees(1.0, 1.0, n=0)
    with pytest.raises(TypeError):
        inf.van_trees(lambda th: th, 1.0)
    with pytest.raises(ValueError):
        inf.van_trees(-1.0, 0.5)


def test_van_trees_attained_by_posterior_mean_in_simulation():
    tau, sigma, n, reps = 1.0, 2.0, 5, 200_000
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(reps, generator=g, dtype=D) * tau
    x = theta[:, None] + sigma * torch.randn(reps, n, generator=g, dtype=D)
    post_mean = x.sum(1) / sigma**2 / (n / sigma**2 + 1 / tau**2)
    sq = (post_mean - theta) ** 2
    bound = inf.van_trees(1 / sigma**2, 1 / tau**2, n=n)
    assert abs(sq.mean() - bound) < 4 * sq.std() / math.sqrt(reps)
    # and the MLE (sample mean) does worse on average
    assert ((x.mean(1) - theta) ** 2).mean() > bound * 1.2


# ----------------------------------------------------------------------------- simulate_estimator


def test_simulate_normal_mean_attains_bound_and_is_unbiased():
    g = torch.Generator().manual_seed(0)
    d = Normal(t(1.0), t(2.0))
    s = inf.simulate_estimator(lambda x: x.mean(-1), d, n=25, reps=40_000, generator=g, target="loc")
    assert abs(s.bias) < 4 * s.bias_se
    assert abs(s.variance - 4 / 25) < 4 * s.variance_se
    assert abs(s.mse - 4 / 25) < 4 * s.mse_se
    # variance_se of a Normal sample variance is sigma_T^2 sqrt(2/R)
    assert abs(s.variance_se / (0.16 * math.sqrt(2 / 40_000)) - 1) < 0.05


def test_simulate_exponential_unbiased_estimator_has_variance_above_bound():
    lam, n = 2.0, 10
    g = torch.Generator().manual_seed(1)
    s = inf.simulate_estimator(lambda x: (n - 1) / x.sum(-1), Exponential(t(lam)), n=n, reps=100_000, generator=g)
    assert abs(s.bias) < 4 * s.bias_se
    exact = lam**2 / (n - 2)
    assert abs(s.variance - exact) < 4 * s.variance_se
    assert s.variance - 4 * s.variance_se > inf.crlb(t(1 / lam**2), n=n)


def test_simulate_vector_estimator_and_reproducibility():
    d = Normal(t(0.0), t(1.0))
    est = lambda x: torch.stack([x.mean(-1), x.var(-1)], -1)  # noqa: E731
    state = torch.get_rng_state()
    a = inf.simulate_estimator(est, d, 8, 500, torch.Generator().manual_seed(5), target=t([0.0, 1.0]))
    b = inf.simulate_estimator(est, d, 8, 500, torch.Generator().manual_seed(5), target=t([0.0, 1.0]))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert torch.equal(a.estimates, b.estimates)
    assert a.bias.shape == (2,) and a.variance.shape == (2,)
    assert a.n == 8 and a.reps == 500


@pytest.mark.parametrize(
    "estimator, n, reps, exc",
    [
        (lambda x: x.mean(), 5, 10, ValueError),  # 0-dim output
        (lambda x: x.unsqueeze(-1), 5, 10, ValueError),  # 3-d output
        (lambda x: x.mean(-1)[:-1], 5, 10, ValueError),  # one estimate missing
        (lambda x: x.mean(-1), 0, 10, ValueError),
        (lambda x: x.mean(-1), 5, 1, ValueError),
        (lambda x: x.mean(-1) / 0.0, 5, 10, ValueError),  # non-finite
        (lambda x: x.mean(-1).numpy(), 5, 10, TypeError),
    ],
)
def test_simulate_bad_input(estimator, n, reps, exc):
    with pytest.raises(exc):
        inf.simulate_estimator(estimator, Exponential(t(1.0)), n, reps)


def test_simulate_vector_target_must_match():
    with pytest.raises(ValueError, match="target"):
        inf.simulate_estimator(lambda x: x, Exponential(t(1.0)), 5, 10, target=t([1.0, 2.0]))


def test_simulate_target_required_for_multiparameter_family():
    with pytest.raises(ValueError, match="target"):
        inf.simulate_estimator(lambda x: x.mean(-1), Normal(t(0.0), t(1.0)), 5, 10)
    with pytest.raises(ValueError, match="target"):
        inf.simulate_estimator(lambda x: x.mean(-1), Normal(t(0.0), t(1.0)), 5, 10, target="rate")
    with pytest.raises(ValueError, match="batch"):
        inf.simulate_estimator(lambda x: x.mean(-1), Exponential(t([1.0, 2.0])), 5, 10)


# ----------------------------------------------------------------------------- mle


def test_mle_closed_forms_normal_and_observed_information():
    g = torch.Generator().manual_seed(0)
    x = 3 + 2 * torch.randn(50, generator=g, dtype=D)
    fit = inf.mle(Normal, x, init={"loc": 0.0, "scale": 1.0})
    s_hat = x.std(unbiased=False)
    assert torch.allclose(fit.params["loc"], x.mean(), atol=1e-10)
    assert torch.allclose(fit.params["scale"], s_hat, atol=1e-10)
    assert bool(fit.converged)
    expected = torch.diag(torch.stack([50 / s_hat**2, 100 / s_hat**2]))
    assert torch.allclose(fit.observed_information, expected, rtol=1e-8)
    assert torch.allclose(fit.covariance("observed"), torch.linalg.inv(expected), rtol=1e-8)
    assert fit.theta.shape == (2,) and fit.names == ("loc", "scale")


def test_mle_gamma_matches_scipy_and_batched_equals_loop():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        x = Gamma(t(2.5), t(1.5)).sample((4, 80))
    fit = inf.mle(Gamma, x, init={"concentration": 1.0, "rate": 1.0})
    assert fit.theta.shape == (4, 2) and bool(fit.converged.all())
    for i in range(4):
        a, _, scale = stats.gamma.fit(x[i].numpy(), floc=0)
        assert abs(fit.params["concentration"][i].item() / a - 1) < 1e-5
        assert abs(fit.params["rate"][i].item() * scale - 1) < 1e-5
        single = inf.mle(Gamma, x[i], init={"concentration": 1.0, "rate": 1.0})
        assert torch.allclose(single.theta, fit.theta[i], rtol=1e-9)


def test_mle_cauchy_location_is_global_maximum():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        x = Cauchy(t(0.0), t(1.0)).sample((20, 15))
    fit = inf.mle(Cauchy, x, init={"loc": x.median(-1).values}, fixed={"scale": 1.0})
    for i in range(20):
        xi = x[i].numpy()
        nll = lambda m: np.log1p((xi - m) ** 2).sum()  # noqa: E731  (Cauchy, up to a constant)
        grid = np.linspace(xi.min(), xi.max(), 4001)
        best = grid[np.argmin(np.log1p((xi[None, :] - grid[:, None]) ** 2).sum(1))]
        h = grid[1] - grid[0]
        ref = optimize.minimize_scalar(nll, bounds=(best - h, best + h), method="bounded", options={"xatol": 1e-10}).x
        assert abs(fit.params["loc"][i].item() - ref) < 1e-5


def test_mle_poisson_regression_matches_statsmodels_and_sandwich_is_hc0():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(4)
    n = 300
    z = rng.normal(size=n)
    mu = np.exp(0.5 + 0.4 * z)
    y = rng.negative_binomial(2, 2 / (2 + mu))  # overdispersed counts with mean mu
    zt, yt = torch.tensor(z), torch.tensor(y, dtype=D)
    fit = inf.mle(lambda b0, b1: Poisson(torch.exp(b0 + b1 * zt)), yt, init={"b0": 0.0, "b1": 0.0})
    X = sm.add_constant(z)
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit(cov_type="HC0")
    assert np.allclose(fit.theta.numpy(), ref.params, atol=1e-8)
    assert np.allclose(fit.covariance("sandwich").numpy(), ref.cov_params(), rtol=1e-6)
    nonrobust = sm.GLM(y, X, family=sm.families.Poisson()).fit()
    assert np.allclose(fit.covariance("observed").numpy(), nonrobust.cov_params(), rtol=1e-6)
    # overdispersion: robust standard errors are larger than model-based ones
    assert bool((fit.standard_errors("sandwich") > 1.2 * fit.standard_errors("observed")).all())


def test_sandwich_reduces_to_inverse_information_under_correct_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        x = Poisson(t(4.0)).sample((20_000,))
    fit = inf.mle(Poisson, x, init={"rate": 1.0})
    ratio = fit.covariance("sandwich") / fit.covariance("observed")
    assert abs(ratio.item() - 1) < 0.05  # B/A = s^2 / xbar, sd about sqrt(2/n)*... << 5 %
    # scores sum to zero at the maximum
    assert abs(fit.scores().sum().item()) < 1e-6


def test_sandwich_bad_input():
    with pytest.raises(ValueError):
        inf.sandwich_covariance(torch.ones(5, 2, dtype=D), torch.eye(3, dtype=D))
    with pytest.raises(ValueError, match="information"):
        inf.sandwich_covariance(torch.ones(5, 2, dtype=D), torch.zeros(2, 2, dtype=D))


def test_mle_errors():
    x = t([0.0, 0.0, 0.0])
    with pytest.raises(inf.ConvergenceError, match="boundary"):
        inf.mle(Binomial, x, init={"probs": 0.5}, fixed={"total_count": 5}, max_iter=30)
    fit = inf.mle(Binomial, t([[0.0, 0.0], [2.0, 3.0]]), init={"probs": 0.3}, fixed={"total_count": 5}, max_iter=30, strict=False)
    assert fit.converged.tolist() == [False, True]
    assert abs(fit.params["probs"][1].item() - 0.5) < 1e-10
    with pytest.raises(ValueError, match="support"):
        inf.mle(Exponential, t([1.0, -2.0]), init={"rate": 1.0})
    with pytest.raises(ValueError, match="constraint"):
        inf.mle(Exponential, t([1.0, 2.0]), init={"rate": -1.0})
    with pytest.raises(ValueError, match="init"):
        inf.mle(Exponential, t([1.0, 2.0]), init={})
    with pytest.raises(ValueError, match="not a parameter"):
        inf.mle(Exponential, t([1.0, 2.0]), init={"scale": 1.0})
    with pytest.raises(TypeError):
        inf.mle(3, t([1.0]), init={"a": 1.0})
    with pytest.raises(ValueError, match="max_iter"):
        inf.mle(Exponential, t([1.0]), init={"rate": 1.0}, max_iter=0)


def test_mle_uniform_dependent_constraint_is_refused():
    with pytest.raises(ValueError, match="constraint"):
        inf.mle(Uniform, t([0.5, 0.7]), init={"high": 2.0}, fixed={"low": 0.0})


# ----------------------------------------------------------------------------- generic intervals


def test_wald_interval_poisson_and_errors():
    x = t([2.0, 4.0, 3.0, 3.0])
    fit = inf.mle(Poisson, x, init={"rate": 1.0})
    lo, hi = inf.wald_interval(fit, level=0.9)
    ref_lo, ref_hi = ivl.poisson_interval(12, 4, level=0.9, method="wald")
    assert torch.allclose(lo, ref_lo) and torch.allclose(hi, ref_hi)
    two = inf.mle(Normal, x, init={"loc": 0.0, "scale": 1.0})
    with pytest.raises(ValueError, match="param"):
        inf.wald_interval(two)
    with pytest.raises(ValueError, match="level"):
        inf.wald_interval(fit, level=1.5)
    with pytest.raises(ValueError, match="kind"):
        inf.wald_interval(fit, information="fisher")


@needs_core
def test_wald_expected_equals_observed_for_poisson_but_not_cauchy():
    fit = inf.mle(Poisson, t([[2.0, 4.0, 3.0, 3.0], [0.0, 1.0, 5.0, 1.0]]), init={"rate": 1.0})
    assert torch.allclose(fit.expected_information(), fit.observed_information, rtol=1e-10)
    cfit = inf.mle(Cauchy, t([-1.0, 0.2, 0.3, 5.0]), init={"loc": 0.3}, fixed={"scale": 1.0})
    assert torch.allclose(cfit.expected_information(), t([[2.0]]), rtol=1e-8)  # n / 2
    assert not torch.allclose(cfit.observed_information, t([[2.0]]), rtol=1e-2)


def test_score_and_lr_intervals_match_closed_forms():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        x = Poisson(t(3.0)).sample((6, 12))
    tot = x.sum(-1)
    lo, hi = inf.score_interval(Poisson, x, "rate", init=1.0, fisher=lambda r: 1 / r)
    rlo, rhi = ivl.poisson_interval(tot, 12, method="score")
    assert torch.allclose(lo, rlo, atol=1e-9) and torch.allclose(hi, rhi, atol=1e-9)
    lo, hi = inf.lr_interval(Poisson, x, "rate", init=1.0)
    rlo, rhi = ivl.poisson_interval(tot, 12, method="lr")
    assert torch.allclose(lo, rlo, atol=1e-9) and torch.allclose(hi, rhi, atol=1e-9)
    # binomial: score interval is Wilson, LR matches the closed-form bisection
    k = t([[3.0], [7.0], [12.0]])
    lo, hi = inf.score_interval(Binomial, k, "probs", init=0.5, fixed={"total_count": 20}, fisher=lambda p: 20 / (p * (1 - p)))
    wlo, whi = ivl.binomial_interval(k.squeeze(-1), 20, method="wilson")
    assert torch.allclose(lo, wlo, atol=1e-9) and torch.allclose(hi, whi, atol=1e-9)
    lo, hi = inf.lr_interval(Binomial, k, "probs", init=0.5, fixed={"total_count": 20})
    llo, lhi = ivl.binomial_interval(k.squeeze(-1), 20, method="lr")
    assert torch.allclose(lo, llo, atol=1e-9) and torch.allclose(hi, lhi, atol=1e-9)


@needs_core
def test_score_interval_default_fisher_uses_core_api():
    x = t([[2.0, 4.0, 3.0, 3.0]])
    lo, hi = inf.score_interval(Poisson, x, "rate", init=1.0)
    rlo, rhi = ivl.poisson_interval(12, 4, method="score")
    assert torch.allclose(lo, rlo.reshape(1), atol=1e-9) and torch.allclose(hi, rhi.reshape(1), atol=1e-9)


def test_lr_interval_is_invariant_under_reparameterisation():
    x = t([0.5, 1.0, 1.5, 3.0, 0.2])
    lo, hi = inf.lr_interval(Exponential, x, "rate", init=1.0)
    mean_family = lambda mean: Exponential(1 / mean)  # noqa: E731
    positive = {"mean": constraints.positive}
    mlo, mhi = inf.lr_interval(mean_family, x, "mean", init=1.0, constraints=positive)
    # the LR set maps through rate -> 1/rate
    assert torch.allclose(mlo, 1 / hi, rtol=1e-9) and torch.allclose(mhi, 1 / lo, rtol=1e-9)
    fit = inf.mle(mean_family, x, init={"mean": 1.0}, constraints=positive)
    assert abs(fit.params["mean"].item() - x.mean().item()) < 1e-9
    crit = stats.chi2.ppf(0.95, 1)
    for end in (mlo, mhi):
        assert abs(2 * (fit.log_likelihood - Exponential(1 / end).log_prob(x).sum()) - crit) < 1e-7
    # the Wald intervals are not invariant: the image of the rate interval is not the mean interval
    wlo, whi = inf.wald_interval(inf.mle(Exponential, x, init={"rate": 1.0}))
    mwlo, mwhi = inf.wald_interval(fit)
    assert abs(1 / whi - mwlo) > 0.05


def test_coverage_normal_z_interval_and_errors():
    d = Normal(t(0.0), t(1.0))
    g = torch.Generator().manual_seed(1)
    ci = lambda x: (x.mean(-1) - 1.96 / x.shape[-1] ** 0.5, x.mean(-1) + 1.96 / x.shape[-1] ** 0.5)  # noqa: E731
    c = inf.coverage(ci, d, n=10, reps=40_000, generator=g, target="loc")
    assert abs(c.coverage - 0.95) < 4 * c.stderr
    assert abs(c.below - 0.025) < 0.005 and abs(c.above - 0.025) < 0.005
    assert abs(c.mean_length - 2 * 1.96 / 10**0.5) < 1e-9
    with pytest.raises(ValueError, match="shape"):
        inf.coverage(lambda x: (x.mean(), x.mean()), d, n=10, reps=50, target="loc")
    with pytest.raises(ValueError, match="lower"):
        inf.coverage(lambda x: (x.mean(-1) + 1, x.mean(-1)), d, n=10, reps=50, target="loc")


@pytest.mark.slow
def test_coverage_of_model_based_vs_sandwich_under_overdispersion():
    # Poisson model fitted to negative-binomial counts: model-based Wald under-covers, sandwich recovers
    mean, r = 4.0, 2.0
    d = NegativeBinomial(total_count=t(r), probs=t(mean / (mean + r)))
    g = torch.Generator().manual_seed(2)

    def interval(kind):
        def ci(x):
            fit = inf.mle(Poisson, x, init={"rate": x.mean(-1).clamp_min(0.1)})
            return inf.wald_interval(fit, information=kind)

        return ci

    model = inf.coverage(interval("observed"), d, n=100, reps=2000, generator=g, target=mean)
    g = torch.Generator().manual_seed(2)
    robust = inf.coverage(interval("sandwich"), d, n=100, reps=2000, generator=g, target=mean)
    # true var inflation 1 + mean/r = 3, so Wald coverage ~ P(|Z| < 1.96/sqrt 3) = 0.74
    assert abs(model.coverage - 0.74) < 0.04
    assert abs(robust.coverage - 0.95) < 0.02


def test_sample_is_reproducible_and_leaves_global_rng_alone():
    d = Normal(t(0.0), t(1.0))
    state = torch.get_rng_state()
    a = inf.sample(d, (4, 3), torch.Generator().manual_seed(1))
    b = inf.sample(d, (4, 3), torch.Generator().manual_seed(1))
    c = inf.sample(d, (4, 3), torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (4, 3)


@settings(max_examples=20, deadline=None)
@given(
    loc=st.floats(-1e4, 1e4),
    log_scale=st.floats(-8, 8),
    log_rate=st.floats(-6, 6),
    seed=st.integers(0, 2**16),
)
def test_mle_matches_closed_forms_over_wide_scales(loc, log_scale, log_rate, seed):
    g = torch.Generator().manual_seed(seed)
    scale, rate = math.exp(log_scale), math.exp(log_rate)
    x = loc + scale * torch.randn(3, 30, generator=g, dtype=D)
    fit = inf.mle(Normal, x, init={"loc": 0.0, "scale": 1.0})
    assert torch.allclose(fit.params["loc"], x.mean(-1), rtol=1e-9, atol=1e-9 * scale)
    assert torch.allclose(fit.params["scale"], x.std(-1, unbiased=False), rtol=1e-7)
    e = inf.sample(Exponential(t(rate)), (3, 30), g)
    fit = inf.mle(Exponential, e, init={"rate": 1.0})
    assert torch.allclose(fit.params["rate"], 30 / e.sum(-1), rtol=1e-9)
    # observed information of the exponential rate is n / rate^2 at the MLE
    assert torch.allclose(fit.observed_information[..., 0, 0], 30 / fit.params["rate"] ** 2, rtol=1e-8)


# ----------------------------------------------------------------------------- shared numerics (fisherbook._numerics)


def test_newton_minimises_a_batch_and_flags_what_did_not_converge():
    from fisherbook._numerics import newton

    # f(x) = sum(exp(x) - a x): minimiser log(a), Hessian diag(exp(x)); one element has no minimiser (a = 0)
    a = t([[2.0, 5.0], [1e-3, 1e3], [0.0, 1.0]])

    def fun(x):
        e = torch.exp(x)
        return (e - a * x).sum(-1), e - a, torch.diag_embed(e)

    res = newton(fun, lambda x: (torch.exp(x) - a * x).sum(-1), torch.zeros(3, 2, dtype=D), tol=1e-14, max_iter=100)
    assert res.converged.tolist() == [True, True, False]
    assert torch.allclose(res.x[:2], torch.log(a[:2]), rtol=1e-12, atol=1e-12)
    # a non-convex start (negative curvature) is damped, not followed uphill
    def well(x):
        return ((x**2 - 1) ** 2).sum(-1), 4 * x * (x**2 - 1), torch.diag_embed(12 * x**2 - 4)

    res2 = newton(well, lambda x: well(x)[0], t([[0.1]]), tol=1e-13, max_iter=200, criterion="gradient")
    assert bool(res2.converged.all()) and abs(abs(res2.x.item()) - 1) < 1e-12


def test_bisect_numpy_and_torch_agree_with_brentq():
    from scipy import optimize

    from fisherbook._numerics import bisect, bisect_bracket

    c = np.array([0.5, 2.0, 10.0])
    r_np = bisect(lambda x: x**3 < c, np.zeros(3), np.full(3, 5.0), n_iter=80)
    r_t = bisect(lambda x: x**3 < torch.as_tensor(c), torch.zeros(3, dtype=D), torch.full((3,), 5.0, dtype=D), n_iter=80)
    ref = [optimize.brentq(lambda x, ci=ci: x**3 - ci, 0, 5, xtol=1e-15) for ci in c]
    assert np.allclose(r_np, ref, rtol=1e-14) and np.allclose(r_t.numpy(), ref, rtol=1e-14)
    lo, hi = bisect_bracket(lambda x: x < 1.0, np.array([0.0]), np.array([4.0]), n_iter=10)
    assert lo[0] < 1.0 <= hi[0] and hi[0] - lo[0] == 4.0 / 2**10


def test_two_sided_z_and_spd_inverse():
    from fisherbook._numerics import spd_inverse, two_sided_z
    from fisherbook.errors import NotPositiveDefiniteError

    assert abs(two_sided_z(0.95) - stats.norm.ppf(0.975)) < 1e-15
    assert math.isfinite(two_sided_z(1 - 1e-15)) and two_sided_z(1 - 1e-15) > two_sided_z(1 - 1e-14)
    A = t([[4.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(spd_inverse(A, "A") @ A, torch.eye(2, dtype=D))
    with pytest.raises(NotPositiveDefiniteError, match="symmetric"):
        spd_inverse(t([[4.0, 1.0], [0.0, 3.0]]), "A")
    with pytest.raises(NotPositiveDefiniteError, match="singular"):
        spd_inverse(t([[1.0, 1.0], [1.0, 1.0]]), "A")
