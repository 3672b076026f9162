"""Tests for fisherbook.bayes.selection: BIC, Laplace evidence, exact Gaussian-linear evidences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from fisherbook.bayes.selection import (
    bic,
    gaussian_linear_log_evidence,
    laplace_log_evidence,
    nig_linear_log_evidence,
    polynomial_design,
)

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=30, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, k, generator=g, dtype=D)
    y = X @ torch.linspace(-1, 1, k, dtype=D) + 0.5 * torch.randn(n, generator=g, dtype=D)
    return X, y


# ---------------------------------------------------------------- BIC
def test_bic_formula_and_gaussian_mle():
    # BIC of a Gaussian with unknown mean and variance, against the hand formula.
    x = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1], dtype=D)
    mu, s2 = x.mean(), x.var(unbiased=False)
    ll = torch.distributions.Normal(mu, s2.sqrt()).log_prob(x).sum()
    expected = 2 * math.log(5) + 5 * math.log(2 * math.pi * s2.item()) + 5
    assert bic(ll, 2, 5).item() == pytest.approx(expected, rel=1e-12)


def test_bic_minus_half_tracks_log_evidence_as_n_grows():
    # -BIC/2 - log p(D) stays O(1) while both grow like n (Schwarz 1978).
    gaps, evidences = [], []
    for n in (50, 400, 3200):
        X, y = _data(n=n, k=2, seed=1)
        sigma = 0.5
        w = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
        ll = torch.distributions.Normal(X @ w, sigma).log_prob(y).sum()
        ev = gaussian_linear_log_evidence(X, y, prior_precision=1.0, noise_scale=sigma)
        gaps.append(abs((-0.5 * bic(ll, 2, n) - ev).item()))
        evidences.append(abs(ev.item()))
    assert max(gaps) < 5.0  # bounded remainder ...
    assert evidences[-1] > 50 * max(gaps)  # ... while the evidence itself grows like n
    assert evidences[-1] > 30 * evidences[0]


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((float("nan"), 2, 10), ValueError, "log_likelihood"),
        ((1.0, -1, 10), ValueError, "n_params"),
        ((1.0, 2, 0), ValueError, "n_obs"),
        ((1.0, 2.5, 10), TypeError, "n_params"),  # a float is the wrong type for a count
        ((torch.ones(2), 2, 10), ValueError, "log_likelihood"),
    ],
)
def test_bic_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        bic(*args)


def test_bic_accepts_numpy_scalars():
    assert float(bic(np.float64(-10.0), np.int64(2), np.int32(100))) == pytest.approx(float(bic(-10.0, 2, 100)))


# ---------------------------------------------------------------- exact evidences
def test_gaussian_evidence_matches_marginal_normal():
    # Weight-space formula vs the data-space marginal N(0, s^2 I + X A^-1 X^T).
    X, y = _data()
    alpha = torch.tensor([0.5, 2.0, 4.0], dtype=D)
    sigma = 0.7
    C = sigma**2 * torch.eye(30, dtype=D) + X @ torch.diag(1 / alpha) @ X.T
    ref = torch.distributions.MultivariateNormal(torch.zeros(30, dtype=D), C).log_prob(y)
    ev = gaussian_linear_log_evidence(X, y, prior_precision=alpha, noise_scale=sigma)
    assert ev.dtype == D
    assert ev.item() == pytest.approx(ref.item(), abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    a0=hs.floats(0.5, 20.0),
    b0=hs.floats(0.05, 10.0),
    alpha=hs.floats(0.01, 100.0),
    seed=hs.integers(0, 1000),
)
def test_nig_evidence_matches_multivariate_t(a0, b0, alpha, seed):
    # Closed form vs scipy's multivariate Student-t with 2 a0 dof, scale (b0/a0)(I + X X^T / alpha).
    X, y = _data(n=12, k=3, seed=seed)
    ev = nig_linear_log_evidence(X, y, prior_precision=alpha, concentration=a0, rate=b0)
    S = (b0 / a0) * (np.eye(12) + X.numpy() @ X.numpy().T / alpha)
    ref = st.multivariate_t(loc=np.zeros(12), shape=S, df=2 * a0).logpdf(y.numpy())
    assert ev.item() == pytest.approx(ref, abs=1e-7)


def test_nig_evidence_concentrates_on_known_noise_limit():
    # Inv-Gamma(a0, a0 s^2) concentrates at s^2 as a0 -> inf: NIG evidence -> known-noise evidence
    # with prior precision alpha / s^2 (weights' prior covariance s^2 / alpha).
    X, y = _data()
    s2, alpha = 0.25, 2.0
    known = gaussian_linear_log_evidence(X, y, prior_precision=alpha / s2, noise_scale=s2**0.5)
    diffs = [
        abs((nig_linear_log_evidence(X, y, prior_precision=alpha, concentration=a0, rate=a0 * s2) - known).item())
        for a0 in (1e2, 1e4, 1e6)
    ]
    assert diffs[0] > diffs[1] > diffs[2]
    assert diffs[2] < 1e-3


@pytest.mark.parametrize("fn", ["gauss", "nig"])
def test_evidence_rejects_bad_input(fn):
    X, y = _data()

    def call(X=X, y=y, **kw):
        if fn == "gauss":
            args = dict(prior_precision=1.0, noise_scale=1.0)
            args.update({k: v for k, v in kw.items() if k in args})
            return gaussian_linear_log_evidence(X, y, **args)
        args = dict(prior_precision=1.0, concentration=1.0, rate=1.0)
        args.update({k: v for k, v in kw.items() if k in args})
        return nig_linear_log_evidence(X, y, **args)

    with pytest.raises(ValueError, match="prior_precision"):
        call(prior_precision=0.0)
    with pytest.raises(ValueError, match="prior_precision"):
        call(prior_precision=torch.ones(2, dtype=D))
    with pytest.raises(ValueError, match="y must be 1-D"):
        call(y=y[:5])
    with pytest.raises(ValueError, match="X must be 2-D"):
        call(X=X[:, 0])
    with pytest.raises(TypeError):
        call(X=X.numpy())
    if fn == "gauss":
        with pytest.raises(ValueError, match="noise_scale"):
            call(noise_scale=-1.0)
    else:
        with pytest.raises(ValueError, match="concentration"):
            call(concentration=0.0)
        with pytest.raises(ValueError, match="rate"):
            call(rate=-2.0)


# ---------------------------------------------------------------- Laplace
def test_laplace_exact_for_gaussian_linear_model():
    # The log joint is quadratic in w, so Laplace (autodiff Hessian) equals the exact evidence.
    X, y = _data()
    alpha, sigma = 1.5, 0.6
    prior = torch.distributions.Normal(torch.zeros(3, dtype=D), torch.full((3,), alpha**-0.5, dtype=D))

    def log_joint(w):
        return torch.distributions.Normal(X @ w, sigma).log_prob(y).sum() + prior.log_prob(w).sum()

    Lam = alpha * torch.eye(3, dtype=D) + X.T @ X / sigma**2
    mode = torch.linalg.solve(Lam, X.T @ y / sigma**2)
    exact = gaussian_linear_log_evidence(X, y, prior_precision=alpha, noise_scale=sigma)
    assert laplace_log_evidence(log_joint, mode).item() == pytest.approx(exact.item(), abs=1e-9)
    # The same with the Fisher information n I = X^T X / sigma^2 plus prior precision passed in.
    assert laplace_log_evidence(log_joint, mode, precision=Lam).item() == pytest.approx(exact.item(), abs=1e-9)


def test_laplace_error_shrinks_for_nig_model():
    # Unknown noise: Laplace over (w, log s^2) is approximate; its error shrinks with n.
    a0, b0, alpha = 2.0, 1.0, 1.0
    errs = []
    for n in (20, 200, 2000):
        X, y = _data(n=n, k=2, seed=3)
        k = 2

        def log_joint(t, X=X, y=y):
            w, s = t[:k], t[k]
            s2 = torch.exp(s)
            lik = torch.distributions.Normal(X @ w, s2.sqrt()).log_prob(y).sum()
            pw = torch.distributions.Normal(0.0, (s2 / alpha).sqrt()).log_prob(w).sum()
            # log Inv-Gamma(s2; a0, b0) + log |d s2 / d s|
            ps = a0 * math.log(b0) - math.lgamma(a0) - (a0 + 1) * s - b0 / s2 + s
            return lik + pw + ps

        Lam = alpha * torch.eye(k, dtype=D) + X.T @ X
        m = torch.linalg.solve(Lam, X.T @ y)
        r = y - X @ m
        bn = b0 + 0.5 * (r @ r + alpha * m @ m)
        an = a0 + n / 2
        mode = torch.cat([m, torch.log(bn / (an + k / 2)).reshape(1)])
        assert torch.linalg.vector_norm(torch.func.grad(log_joint)(mode)) < 1e-8  # it is the mode
        exact = nig_linear_log_evidence(X, y, prior_precision=alpha, concentration=a0, rate=b0)
        errs.append(abs((laplace_log_evidence(log_joint, mode) - exact).item()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[0] > 1e-3 and errs[2] < 1e-2  # genuinely approximate, O(1/n)


def test_laplace_standard_gaussian_integral_in_k_dims():
    for k in (1, 4):
        z = laplace_log_evidence(lambda t: -0.5 * (t**2).sum(), torch.zeros(k, dtype=D))
        assert z.item() == pytest.approx(0.5 * k * math.log(2 * math.pi), abs=1e-12)


def test_laplace_rejects_bad_input():
    f = lambda t: -0.5 * (t**2).sum()  # noqa: E731
    with pytest.raises(TypeError, match="log_joint"):
        laplace_log_evidence(3.0, torch.zeros(2))
    with pytest.raises(ValueError, match="mode"):
        laplace_log_evidence(f, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="mode"):
        laplace_log_evidence(f, torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="precision"):
        laplace_log_evidence(f, torch.zeros(2), precision=torch.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        laplace_log_evidence(f, torch.zeros(2), precision=-torch.eye(2))
    # A minimum, not a maximum: the negative Hessian is negative definite.
    with pytest.raises(ValueError, match="positive definite"):
        laplace_log_evidence(lambda t: 0.5 * (t**2).sum(), torch.zeros(2))


def test_polynomial_design():
    x = torch.tensor([0.0, 1.0, -2.0])
    P = polynomial_design(x, 2)
    assert P.dtype == D
    assert torch.equal(P, torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, -2.0, 4.0]], dtype=D))
    with pytest.raises(ValueError, match="degree"):
        polynomial_design(x, -1)
    with pytest.raises(ValueError, match="x must be 1-D"):
        polynomial_design(x.unsqueeze(1), 1)
