"""Wald, score and likelihood-ratio tests, Bartlett factors and chi-bar-squared tails (chapter 3),
checked against closed forms, scipy, quadrature and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special
from scipy import stats as sps
from torch.distributions import Exponential, Normal, Poisson, constraints

import fisherbook as fb
from fisherbook.stats.likelihood_tests import (
    bartlett_factor,
    bartlett_factor_mc,
    chibar2_sf,
    likelihood_tests,
    lr_statistic,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def test_normal_mean_known_variance_all_three_are_the_z_test():
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1), dtype=D) * 2 + 0.4
    res = likelihood_tests(Normal, x, {"loc": 0.0}, {"loc": 1.0}, fixed={"scale": 2.0})
    z2 = 12 * x.mean(-1) ** 2 / 4
    for stat in (res.wald, res.score, res.lr):
        assert torch.allclose(stat, z2, rtol=1e-9)
    z = x.mean(-1).numpy() * math.sqrt(12) / 2
    assert np.allclose(res.pvalue("score").numpy(), 2 * sps.norm.sf(np.abs(z)), rtol=1e-9)
    assert res.df == 1


def test_normal_mean_unknown_variance_matches_the_t_statistic():
    # W = n t^2/(n-1), LR = n log(1 + t^2/(n-1)), S = n t^2/(n-1+t^2), t from scipy; hence W >= LR >= S
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20, 9, generator=g, dtype=D) + 0.5
    n = 9
    res = likelihood_tests(Normal, x, {"loc": 0.0}, {"loc": 0.0, "scale": 1.0})
    tt = t(sps.ttest_1samp(x.numpy(), 0.0, axis=-1).statistic)
    assert torch.allclose(res.wald, n * tt**2 / (n - 1), rtol=1e-8)
    assert torch.allclose(res.lr, n * torch.log1p(tt**2 / (n - 1)), rtol=1e-8)
    assert torch.allclose(res.score, n * tt**2 / (n - 1 + tt**2), rtol=1e-8)
    assert bool((res.wald >= res.lr).all() and (res.lr >= res.score).all())
    # the restricted fit: sigma_0^2 = mean(x^2)
    assert torch.allclose(res.restricted[..., 1] ** 2, (x**2).mean(-1), rtol=1e-9)


def test_exponential_rate_closed_forms_and_observed_information():
    g = torch.Generator().manual_seed(3)
    x = fb.stats.sample(Exponential(t(1.5)), (30, 15), g).to(D)
    lam0, n = 2.0, 15
    xbar = x.mean(-1)
    res = likelihood_tests(Exponential, x, {"rate": lam0}, {"rate": 1.0})
    assert torch.allclose(res.lr, 2 * n * (lam0 * xbar - 1 - torch.log(lam0 * xbar)), rtol=1e-9)
    lam_hat = 1 / xbar
    assert torch.allclose(res.wald, n * (lam_hat - lam0) ** 2 / lam_hat**2, rtol=1e-9)
    assert torch.allclose(res.score, n * (1 - lam0 * xbar) ** 2, rtol=1e-9)
    obs = likelihood_tests(Exponential, x, {"rate": lam0}, {"rate": 1.0}, information="observed")
    # observed information at lam0 is n / lam0^2 (no data): the score statistic is unchanged
    assert torch.allclose(obs.score, res.score, rtol=1e-9)


def test_poisson_score_statistic_is_pearson():
    x = t([[0.0, 3.0, 1.0, 2.0, 4.0, 1.0], [1.0, 1.0, 1.0, 2.0, 0.0, 0.0]])
    res = likelihood_tests(Poisson, x, {"rate": 1.2}, {"rate": 1.0})
    pearson = (x.sum(-1) - 6 * 1.2) ** 2 / (6 * 1.2)
    assert torch.allclose(res.score, pearson, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.05, 20.0), min_size=2, max_size=12), st.floats(0.05, 10.0))
def test_lr_is_invariant_under_reparameterisation(xs, lam0):
    # the LR statistic is a function of likelihood values only: rate lam0 or mean 1/lam0 give the same
    x = t(xs)
    by_rate = likelihood_tests(Exponential, x, {"rate": lam0}, {"rate": 1.0}).lr
    by_mean = lr_statistic(
        lambda mean: Exponential(1 / mean), x, {"mean": 1 / lam0}, {"mean": 1.0},
        constraints={"mean": constraints.positive},
    )
    assert torch.allclose(by_rate, by_mean, rtol=1e-7, atol=1e-9)
    assert float(by_rate) >= 0


def test_two_parameter_null_has_two_degrees_of_freedom():
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(4), dtype=D)
    res = likelihood_tests(Normal, x, {"loc": 0.0, "scale": 1.0}, {"loc": 0.0, "scale": 1.0})
    assert res.df == 2
    # closed form: LR = n (xbar^2 + s - 1 - log s), s = mean((x - xbar)^2)
    s = x.var(-1, correction=0)
    assert torch.allclose(res.lr, 50 * (x.mean(-1) ** 2 + s - 1 - torch.log(s)), rtol=1e-9)
    assert torch.allclose(res.pvalue(), t(sps.chi2.sf(res.lr.numpy(), 2)))


@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_exponential_bartlett_factor_matches_quadrature(n):
    # E[LR]/1 with S = lam0 sum(x) ~ Gamma(n, 1): LR = 2 (S - n - n log(S/n))
    val, _ = integrate.quad(lambda s: 2 * (s - n - n * math.log(s / n)) * sps.gamma.pdf(s, n), 0, np.inf, limit=200)
    assert math.isclose(bartlett_factor("exponential-rate", n), val, rel_tol=1e-8)


@pytest.mark.parametrize("n", [1, 3, 10, 40])
def test_normal_variance_bartlett_factor_matches_quadrature(n):
    val, _ = integrate.quad(lambda q: n * (q / n - 1 - math.log(q / n)) * sps.chi2.pdf(q, n), 0, np.inf, limit=200)
    assert math.isclose(bartlett_factor("normal-variance", n), val, rel_tol=1e-8)


def test_bartlett_factors_have_the_lawley_expansion():
    # 1 + b/n + O(1/n^2) with b = 1/6 (exponential) and 1/3 (normal variance)
    for model, b in (("exponential-rate", 1 / 6), ("normal-variance", 1 / 3)):
        for n in (50, 200, 1000):
            assert abs(bartlett_factor(model, n) - 1 - b / n) < 1 / n**2


def test_mc_bartlett_factor_agrees_with_the_closed_form():
    g = torch.Generator().manual_seed(5)
    f, se = bartlett_factor_mc(Normal, {"scale": 0.7}, 8, reps=3000, generator=g, fixed={"loc": 0.0})
    assert abs(f - bartlett_factor("normal-variance", 8)) < 4 * se
    assert 0 < se < 0.04


def test_bartlett_corrected_pvalue_is_uniform_for_the_exponential():
    # the corrected statistic's chi2_1 tail is closer to uniform than the raw one at n = 3 (exact CDFs by quadrature)
    n = 3
    b = bartlett_factor("exponential-rate", n)
    s = sps.gamma.ppf((np.arange(20000) + 0.5) / 20000, n)  # exact quantiles of S
    lr = 2 * (s - n - n * np.log(s / n))
    raw = np.mean(sps.chi2.sf(lr, 1) < 0.05)
    corr = np.mean(sps.chi2.sf(lr / b, 1) < 0.05)
    assert abs(corr - 0.05) < abs(raw - 0.05)
    assert abs(corr - 0.05) < 0.002


def test_chibar2_tail_against_simulation_and_chi2():
    rng = np.random.default_rng(6)
    z = rng.standard_normal(200_000)
    lr = np.maximum(z, 0.0) ** 2  # LR of a mean constrained >= 0 at the boundary
    for c in (0.5, 1.0, 2.7055, 5.0):
        p = float(chibar2_sf(c, (0.5, 0.5)))
        se = math.sqrt(p * (1 - p) / z.size)
        assert abs(p - np.mean(lr > c)) < 4 * se
    assert math.isclose(float(chibar2_sf(3.0, (0.0, 1.0))), sps.chi2.sf(3.0, 1), rel_tol=1e-12)
    assert math.isclose(float(chibar2_sf(3.0, (0.25, 0.5, 0.25))), 0.5 * sps.chi2.sf(3, 1) + 0.25 * sps.chi2.sf(3, 2))
    assert float(chibar2_sf(0.0, (0.5, 0.5))) == 0.5


def test_pvalue_with_bartlett_factor_divides_the_statistic():
    x = t([0.2, 0.9, 0.4, 1.7])
    res = likelihood_tests(Exponential, x, {"rate": 1.0}, {"rate": 1.0})
    b = bartlett_factor("exponential-rate", 4)
    assert math.isclose(float(res.pvalue(bartlett=b)), sps.chi2.sf(float(res.lr) / b, 1), rel_tol=1e-10)
    assert special.digamma(4) < math.log(4)  # the factor exceeds 1
    assert b > 1
