"""Profile likelihood, its interval, the Cox-Reid adjustment and REML (chapter 3), checked against
closed forms, a grid search and simulation."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats as sps
from torch.distributions import Gamma, Normal

import fisherbook as fb
from fisherbook.stats.profile import profile_interval, profile_loglik, reml_variance

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def test_profile_of_a_normal_scale_is_the_closed_form():
    x = t([0.1, 1.9, 1.2, 0.8, -0.4, 2.2])
    n = 6
    grid = t([0.5, 0.8, 1.0, 1.7])
    lp = profile_loglik(Normal, x, "scale", grid, {"loc": 0.0, "scale": 1.0})
    ss = float(((x - x.mean()) ** 2).sum())
    closed = -n * torch.log(grid) - ss / (2 * grid**2) - n / 2 * math.log(2 * math.pi)
    assert torch.allclose(lp, closed, rtol=1e-10)


def test_profile_interval_for_a_normal_mean_is_the_closed_form():
    # 2[l_hat - l_p(mu)] = n log(1 + (xbar - mu)^2 / s^2): ends xbar +- s sqrt(e^{z^2/n} - 1)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=D)
    lo, hi = profile_interval(Normal, x, "loc", {"loc": 0.0, "scale": 1.0})
    half = x.std(-1, correction=0) * math.sqrt(math.exp(sps.norm.ppf(0.975) ** 2 / 8) - 1)
    assert torch.allclose(hi - x.mean(-1), half, rtol=1e-8)
    assert torch.allclose(x.mean(-1) - lo, half, rtol=1e-8)


def test_profile_interval_for_a_gamma_shape_ends_where_the_profile_crosses():
    # independent of the bisection: at each end the profile deviance equals the chi2_1 quantile,
    # just inside it is below, just outside above; and the full-fit maximum is the profile's maximum
    x = fb.stats.sample(Gamma(t(2.0), t(1.0)), (25,), torch.Generator().manual_seed(2)).to(D)
    init = {"concentration": 1.0, "rate": 1.0}
    lo, hi = profile_interval(Gamma, x, "concentration", init, level=0.9)
    fit = fb.mle(Gamma, x, init=init)
    crit = sps.chi2.ppf(0.9, 1)
    pts = torch.stack([lo, hi, lo * 1.01, hi * 0.99, lo * 0.99, hi * 1.01, fit.theta[0]])
    dev = 2 * (fit.log_likelihood - profile_loglik(Gamma, x, "concentration", pts, init))
    assert torch.allclose(dev[:2], t([crit, crit]), atol=1e-7)
    assert bool((dev[2:4] < crit).all() and (dev[4:6] > crit).all())
    assert abs(float(dev[6])) < 1e-10


def test_cox_reid_adjusted_profile_is_maximised_at_reml():
    # Neyman-Scott with 4 pairs: the adjusted profile of the scale peaks at sigma^2 = SS / (m (k - 1)),
    # the plain profile at the MLE SS / (m k)
    xs = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=D) + t([[-3.0], [0.0], [1.0], [5.0]])
    pair = torch.arange(4).repeat_interleave(2)

    def pairs(m0, m1, m2, m3, scale):
        loc = torch.stack(torch.broadcast_tensors(m0, m1, m2, m3), -1)[..., pair].squeeze(-2)
        return Normal(loc, scale)

    init = {f"m{i}": 0.0 for i in range(4)} | {"scale": 1.0}
    ss = float(((xs - xs.mean(-1, keepdim=True)) ** 2).sum())
    assert math.isclose(float(reml_variance(xs)), ss / 4, rel_tol=1e-12)
    for adjusted, target in ((True, math.sqrt(ss / 4)), (False, math.sqrt(ss / 8))):
        pts = t([target * 0.98, target, target * 1.02])
        lp = profile_loglik(pairs, xs.reshape(-1), "scale", pts, init, adjusted=adjusted)
        assert float(lp[1]) > float(lp[0]) and float(lp[1]) > float(lp[2])


def test_reml_is_unbiased_where_the_mle_is_not():
    reps, m, k = 4000, 30, 3
    x = torch.randn(reps, m, k, generator=torch.Generator().manual_seed(4), dtype=D) * 1.5
    r = reml_variance(x)
    se = float(r.std()) / math.sqrt(reps)
    assert abs(float(r.mean()) - 2.25) < 4 * se
    mle = r * (k - 1) / k
    assert abs(float(mle.mean()) - 2.25 * (k - 1) / k) < 4 * se
