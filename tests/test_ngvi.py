"""Natural-gradient VI (the Bayesian learning rule): exactness on conjugate models, the fixed point on
logistic regression checked by autodiff, quadrature against scipy, and the baseline's agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

import fisherbook as fb
from fisherbook.bayes import ngvi as nv

D = torch.float64


def _linear(seed: int = 0, n: int = 30, d: int = 3, sigma: float = 0.7):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=D)
    y = X @ torch.randn(d, generator=g, dtype=D) + sigma * torch.randn(n, generator=g, dtype=D)
    return X, y, sigma


def _logistic(seed: int = 0, n: int = 80, d: int = 3):
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([torch.ones(n, 1, dtype=D), torch.randn(n, d - 1, generator=g, dtype=D)], 1)
    y = (torch.rand(n, generator=g, dtype=D) < torch.sigmoid(X @ torch.randn(d, generator=g, dtype=D))).to(D)
    return X, y


def _spd(d: int, seed: int) -> torch.Tensor:
    A = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=D)
    return A @ A.T + 0.5 * torch.eye(d, dtype=D)


def test_conjugate_posterior_against_the_log_evidence_and_a_direct_solve():
    X, y, sigma = _linear()
    m, P = nv.gaussian_linear_posterior(X, y, noise_scale=sigma, prior_precision=2.0)
    # an independent solve in numpy
    Xn, yn = X.numpy(), y.numpy()
    Pn = 2.0 * np.eye(3) + Xn.T @ Xn / sigma**2
    assert np.allclose(P.numpy(), Pn, rtol=1e-13)
    assert np.allclose(m.numpy(), np.linalg.solve(Pn, Xn.T @ yn / sigma**2), rtol=1e-11)
    # the ELBO at the exact posterior is the log evidence (package's evidence, computed in another way)
    elbo = nv.gaussian_elbo(X, y, m, torch.linalg.inv(P), prior_precision=2.0, likelihood="gaussian", noise_scale=sigma)
    evidence = fb.bayes.gaussian_linear_log_evidence(X, y, prior_precision=2.0, noise_scale=sigma)
    assert math.isclose(float(elbo), float(evidence), rel_tol=1e-11)


@pytest.mark.parametrize("start", ["prior", "random"])
def test_one_natural_step_with_rho_one_is_the_conjugate_posterior(start):
    X, y, sigma = _linear(1)
    P0 = _spd(3, 5)
    m0 = torch.tensor([0.3, -1.0, 2.0], dtype=D)
    init = {} if start == "prior" else dict(init_mean=torch.tensor([5.0, 5.0, -5.0], dtype=D), init_precision=_spd(3, 7))
    res = nv.natural_gradient_vi(X, y, prior_precision=P0, prior_mean=m0, likelihood="gaussian", noise_scale=sigma, rho=1.0,
                  n_steps=1, **init)
    m, P = nv.gaussian_linear_posterior(X, y, noise_scale=sigma, prior_precision=P0, prior_mean=m0)
    assert torch.allclose(res.precision, P, rtol=1e-13, atol=1e-12)
    assert torch.allclose(res.mean, m, rtol=1e-11, atol=1e-12)


def test_rho_below_one_interpolates_the_natural_parameters():
    # the BLR is linear in (P m, P): lambda' = (1 - rho) lambda + rho lambda*
    X, y, sigma = _linear(2)
    m_star, P_star = nv.gaussian_linear_posterior(X, y, noise_scale=sigma, prior_precision=1.0)
    m1 = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    P1 = _spd(3, 1)
    res = nv.natural_gradient_vi(X, y, prior_precision=1.0, likelihood="gaussian", noise_scale=sigma, rho=0.3, n_steps=2,
                  init_mean=m1, init_precision=P1)
    P2 = 0.49 * P1 + (1 - 0.49) * P_star
    b2 = 0.49 * P1 @ m1 + (1 - 0.49) * P_star @ m_star
    assert torch.allclose(res.precision, P2, atol=1e-11)
    assert torch.allclose(res.precision @ res.mean, b2, atol=1e-10)


def test_ordinary_gradient_vi_needs_many_steps_on_the_conjugate_model():
    X, y, sigma = _linear(3)
    kw = dict(prior_precision=1.0, likelihood="gaussian", noise_scale=sigma)
    m, P = nv.gaussian_linear_posterior(X, y, noise_scale=sigma, prior_precision=1.0)
    best = float(nv.gaussian_elbo(X, y, m, torch.linalg.inv(P), **kw))
    nat = nv.natural_gradient_vi(X, y, n_steps=1, **kw)
    assert abs(float(nat.elbo[1]) - best) < 1e-9
    adam = nv.gradient_vi(X, y, lr=0.05, n_steps=600, **kw)
    gaps = best - adam.elbo.numpy()
    assert gaps[1] > 1.0 and gaps[10] > 0.1  # one step (or ten) is nowhere near
    assert gaps[-1] < 1e-5 and torch.allclose(adam.mean, m, atol=1e-3)  # but it gets there
    assert np.all(gaps > -1e-9)  # never above the optimum: the ELBO is maximal at the posterior


def test_logistic_fixed_point_has_zero_elbo_gradient_by_autodiff():
    X, y = _logistic()
    res = nv.natural_gradient_vi(X, y, prior_precision=1.0, rho=1.0, n_steps=40, n_quad=60)
    assert abs(float(res.elbo[-1] - res.elbo[-2])) < 1e-12
    assert np.all(np.diff(res.elbo.numpy()[:8]) > -1e-10)  # the ELBO rises from the prior
    mean = res.mean.clone().requires_grad_(True)
    cov = res.covariance.clone().requires_grad_(True)
    elbo = nv.gaussian_elbo(X, y, mean, cov, prior_precision=1.0, n_quad=60)
    gm, gc = torch.autograd.grad(elbo, (mean, cov))
    # the BLR's fixed point uses Price's theorem on the quadrature; its error with 60 nodes is far below 1e-8
    assert float(gm.norm()) < 1e-8 and float(gc.norm()) < 1e-8
    # the ELBO beats the Laplace approximation at the MAP (Newton on the log joint)
    theta = torch.zeros(3, dtype=D)
    for _ in range(30):
        p = torch.sigmoid(X @ theta)
        H = (X * (p * (1 - p))[:, None]).T @ X + torch.eye(3, dtype=D)
        theta = theta - torch.linalg.solve(H, X.T @ (p - y) + theta)
    H = (X * (torch.sigmoid(X @ theta) * (1 - torch.sigmoid(X @ theta)))[:, None]).T @ X + torch.eye(3, dtype=D)
    lap = nv.gaussian_elbo(X, y, theta, torch.linalg.inv(H), prior_precision=1.0, n_quad=60)
    assert float(lap) < float(elbo.detach()) and float(elbo.detach() - lap) < 1.0  # close, but below the optimum


def test_adam_on_the_elbo_reaches_the_same_logistic_optimum():
    X, y = _logistic(1, n=40, d=2)
    nat = nv.natural_gradient_vi(X, y, prior_precision=1.0, n_steps=30)
    adam = nv.gradient_vi(X, y, prior_precision=1.0, lr=0.03, n_steps=1500)
    assert abs(float(adam.elbo[-1] - nat.elbo[-1])) < 1e-7
    assert torch.allclose(adam.mean, nat.mean, atol=1e-3) and torch.allclose(adam.precision, nat.precision, rtol=1e-2)


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(-8, 8), sd=st.floats(0.01, 2.0), label=st.sampled_from([0.0, 1.0]))
def test_quadrature_expectations_against_scipy(mu, sd, label):
    # Gauss-Hermite converges geometrically for the logistic function at a rate set by its poles at
    # +-i pi relative to the predictor's sd: 64 nodes give 1e-9 or better up to sd = 2 (the docstring's range)
    X, y = torch.ones(1, 1, dtype=D), torch.tensor([label], dtype=D)
    val, g, H = nv.glm_expectations(X, y, torch.tensor([mu], dtype=D), torch.tensor([[1 / sd**2]], dtype=D), n_quad=64)

    def expect(f):
        return integrate.quad(lambda a: f(a) * math.exp(-0.5 * ((a - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                              mu - 12 * sd, mu + 12 * sd, epsabs=1e-12, limit=200)[0]
    assert math.isclose(float(g[0]), expect(lambda a: special.expit(a) - label), abs_tol=1e-8)
    assert math.isclose(float(H[0, 0]), expect(lambda a: special.expit(a) * special.expit(-a)), abs_tol=1e-8)
    assert math.isclose(float(val), expect(lambda a: np.logaddexp(0, a) - label * a), rel_tol=1e-8, abs_tol=1e-8)


def test_blr_step_refuses_an_indefinite_precision():
    with pytest.raises(fb.errors.NotPositiveDefiniteError, match="rho"):
        # P' = (1 - 2) * 3 + 2 * (1 + 0) = -1
        nv.blr_step(torch.zeros(1, dtype=D), 3 * torch.eye(1, dtype=D), torch.zeros(1, dtype=D),
                    torch.zeros(1, 1, dtype=D), prior_precision=1.0, rho=2.0)
    with pytest.raises(fb.errors.ConvergenceError, match="rho"):
        X, y = _logistic()
        nv.natural_gradient_vi(X, y, prior_precision=1.0, rho=3.0, n_steps=20)
