"""The likelihood ratio for a zero variance component (chapter 3's boundary null), checked against
numerical maximisation of the full multivariate-normal (and REML) likelihood, the exact probability
of a zero statistic (an F distribution) and the chi-bar-squared limit by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps

from fisherbook.stats.likelihood_tests import chibar2_sf, variance_component_lr

pytestmark = pytest.mark.usefixtures("one_thread")


def _neg2_loglik(params: np.ndarray, y: np.ndarray, reml: bool) -> float:
    """-2 log-likelihood of the one-way model from the dense covariance (mu profiled by GLS)."""
    log_s2, sa2 = params
    m, k = y.shape
    v = math.exp(log_s2) * np.eye(k) + sa2 * np.ones((k, k))
    vinv = np.linalg.inv(v)
    _, logdet = np.linalg.slogdet(v)
    one = np.ones(k)
    xtvx = m * one @ vinv @ one
    mu = (one @ vinv @ y.T).sum() / xtvx
    r = y - mu
    out = m * logdet + float(np.einsum("ij,jk,ik->", r, vinv, r))
    if reml:
        out += math.log(xtvx)
    return out


def _lr_by_optimisation(y: np.ndarray, reml: bool) -> float:
    """2 [max over sigma_a^2 >= 0 - max at sigma_a^2 = 0], both by L-BFGS-B from several starts."""
    s2 = y.var()
    full = min(
        optimize.minimize(_neg2_loglik, [math.log(s2 * f), s2 * g], args=(y, reml), method="L-BFGS-B",
                          bounds=[(-30, 30), (0.0, None)], options={"ftol": 1e-14, "gtol": 1e-10}).fun
        for f in (0.3, 1.0) for g in (0.0, 1.0, 5.0)
    )
    null = optimize.minimize_scalar(lambda a: _neg2_loglik(np.array([a, 0.0]), y, reml),
                                    bounds=(math.log(s2) - 10, math.log(s2) + 10), method="bounded",
                                    options={"xatol": 1e-12}).fun
    return max(null - full, 0.0)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 8), st.integers(2, 6), st.sampled_from([0.0, 0.05, 0.5, 4.0]), st.sampled_from(["ml", "reml"]),
       st.integers(0, 10_000))
def test_closed_form_equals_numerical_maximisation(m, k, sa2, method, seed):
    rng = np.random.default_rng(seed)
    y = 1.5 + math.sqrt(sa2) * rng.standard_normal((m, 1)) + 0.7 * rng.standard_normal((m, k))
    got = float(variance_component_lr(torch.as_tensor(y), method))
    want = _lr_by_optimisation(y, method == "reml")
    assert got >= 0.0
    assert abs(got - want) < 1e-6 * max(1.0, want)  # both maxima to the optimiser's tolerance


def test_location_and_scale_invariance_and_batching():
    y = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y[:, :, :] += torch.randn(3, 10, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for method in ("ml", "reml"):
        base = variance_component_lr(y, method)
        assert base.shape == (3,)
        torch.testing.assert_close(variance_component_lr(-3.0 * y + 7.0, method), base, rtol=1e-10, atol=1e-12)
        for i in range(3):
            torch.testing.assert_close(variance_component_lr(y[i], method), base[i])
        # permuting groups, and observations within a group, changes nothing
        perm = y[:, torch.randperm(10, generator=torch.Generator().manual_seed(4))].flip(-1)
        torch.testing.assert_close(variance_component_lr(perm, method), base, rtol=1e-10, atol=1e-12)


def test_null_distribution_zero_mass_and_chibar2_limit():
    """Under H0 the zero mass equals P(F <= d/(m-1)) exactly; the chi-bar-squared test is conservative at
    finite m, REML much less so than ML (whose between-group variance estimate is biased down)."""
    m, k, reps = 40, 4, 40_000
    y = torch.randn(reps, m, k, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    sizes = {}
    for method, d in (("ml", m), ("reml", m - 1)):
        lr = variance_component_lr(y, method)
        p0 = sps.f.cdf(d / (m - 1), m - 1, m * (k - 1))
        assert abs(float((lr == 0).double().mean()) - p0) < 4 * math.sqrt(p0 * (1 - p0) / reps)
        assert 0.5 < p0 < 0.6  # above a half at finite m, tending to it
        sizes[method] = float((chibar2_sf(lr, (0.5, 0.5)) < 0.05).double().mean())
        naive = float((lr > sps.chi2.ppf(0.95, 1)).double().mean())
        assert naive < 0.03  # the chi2_1 critical value roughly halves the size
    se = math.sqrt(0.05 * 0.95 / reps)
    assert sizes["ml"] + 4 * se < sizes["reml"] < 0.05 + 4 * se
    assert abs(sizes["reml"] - 0.05) < 0.01  # within 1 point of the limit at m = 40 (measured 0.044)


def test_large_group_effect_grows_the_statistic_like_m():
    rng = np.random.default_rng(5)
    stats_ = []
    for m in (20, 80):
        y = rng.standard_normal((m, 1)) + 0.5 * rng.standard_normal((200, m, 5))
        stats_.append(float(variance_component_lr(torch.as_tensor(y)).mean()))
    assert 3.0 < stats_[1] / stats_[0] < 5.0  # non-central: the mean LR is of order m
