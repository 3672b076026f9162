"""AIC and TIC of maximum-likelihood fits (chapter 3): statsmodels, closed forms and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from torch.distributions import Normal, Poisson

import fisherbook as fb
from fisherbook.stats.criteria import aic, tic, tic_penalty

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64


def test_aic_matches_statsmodels_poisson_glm():
    rng = np.random.default_rng(1)
    z = rng.normal(size=60)
    y = rng.poisson(np.exp(0.3 + 0.5 * z))
    zt = torch.tensor(z)
    fit = fb.mle(lambda b0, b1: Poisson(torch.exp(b0 + b1 * zt)), torch.tensor(y, dtype=D), init={"b0": 0.0, "b1": 0.0})
    ref = sm.GLM(y, sm.add_constant(z), family=sm.families.Poisson()).fit()
    assert math.isclose(float(aic(fit)), ref.aic, rel_tol=1e-9)


def test_tic_penalty_of_a_normal_fit_is_one_plus_half_excess_kurtosis_plus_one():
    # J = diag(n, 2n)/s^2, K = diag(n, n(kurt - 1))/s^2 at the MLE: tr(J^-1 K) = 1 + (kurt - 1)/2
    rng = np.random.default_rng(2)
    for x in (rng.normal(size=300), rng.standard_t(5, size=300), rng.uniform(size=300)):
        xt = torch.tensor(x)
        fit = fb.mle(Normal, xt, init={"loc": 0.0, "scale": 1.0})
        c = x - x.mean()
        kurt = np.mean(c**4) / np.mean(c**2) ** 2
        assert math.isclose(float(tic_penalty(fit)), 1 + (kurt - 1) / 2, rel_tol=1e-8)


def test_tic_agrees_with_aic_under_the_model_and_not_under_overdispersion():
    rng = np.random.default_rng(3)
    reps, n = 200, 200
    y = torch.tensor(rng.poisson(3.0, size=(reps, n)), dtype=D)
    fit = fb.mle(Poisson, y, init={"rate": 1.0})
    pen = tic_penalty(fit)
    # under the model the penalty is the dispersion index, mean ~1 with sd ~ sqrt(2/n) = 0.1
    assert abs(float(pen.mean()) - 1.0) < 4 * float(pen.std()) / math.sqrt(reps)
    assert torch.allclose(tic(fit) - aic(fit), 2 * (pen - 1))
    nb = torch.tensor(rng.negative_binomial(2.0, 2.0 / 5.0, size=(reps, n)), dtype=D)  # mean 3, variance 7.5
    pen_nb = tic_penalty(fb.mle(Poisson, nb, init={"rate": 1.0}))
    assert abs(float(pen_nb.mean()) - 2.5) < 0.1  # variance / mean
