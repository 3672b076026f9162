"""Information of statistics (binned and censored observations), efficient information under nuisance
parameters, Louis's missing information and the Bartlett identities: each against a closed form, an
independent computation (autograd of the observed likelihood, the categorical closed form, quadrature)
or Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Cauchy, Exponential, Gamma, Laplace, Normal, StudentT

import fisherbook as fb

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def min_eig(m):
    return float(torch.linalg.eigvalsh(0.5 * (m + m.mT))[0])


# ----------------------------------------------------------------------------- binned observations


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_sign_of_a_normal_keeps_two_over_pi(sigma):
    # P(X <= mu) = Phi(0): I = phi(0)^2 / (Phi(0)(1 - Phi(0))) / sigma^2 = (2/pi) / sigma^2
    got = fb.binned_information(Normal(t(1.5), t(sigma)), [1.5], params="loc")
    assert abs(got.item() - 2 / (math.pi * sigma**2)) < 1e-13 / sigma**2


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 20.0), st.floats(0.01, 3.0))
def test_binned_exponential_is_a_geometric_count(rate, width):
    # floor(X / w) ~ Geometric(1 - q), q = exp(-rate w): I = w^2 q / (1 - q)^2
    q = math.exp(-rate * width)
    n_edges = int(math.ceil(60 / (rate * width))) + 1  # the last open bin has probability < e^-60
    edges = width * torch.arange(1, n_edges + 1, dtype=D)
    got = fb.binned_information(Exponential(t(rate)), edges).item()
    want = width**2 * q / (1 - q) ** 2
    # bin probabilities are differences of cdf values near 1 in the upper tail, accurate to ~1e-16
    # absolutely: the informative bin of probability ~q then has relative error ~1e-16 / q
    assert abs(got - want) <= want * (1e-8 + 1e-15 / q)


def test_binned_agrees_with_the_categorical_closed_form():
    # the bin index is Categorical(P(theta)); its information pulled back by dP/dtheta
    d = Normal(t(0.4), t(1.7))
    edges = t([-2.0, -0.3, 0.1, 1.2, 3.5])

    def probs(th):
        f = Normal(th[0], th[1]).cdf(edges)
        return torch.diff(torch.cat([t([0.0]), f, t([1.0])]))

    th = t([0.4, 1.7])
    p = probs(th)
    jac = torch.autograd.functional.jacobian(lambda v: probs(v)[:-1], th)
    i_p = fb.fisher_information(Categorical(probs=p), params="probs")
    want = fb.reparameterize(i_p, jac)
    got = fb.binned_information(d, edges)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-13)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=8, unique=True), st.floats(-4.0, 4.0))
def test_binning_loses_information_and_refining_recovers_some(cuts, extra):
    d = Normal(t(0.3), t(1.2))
    coarse = torch.sort(t(cuts)).values
    fine = torch.unique(torch.cat([coarse, t([extra])]))
    i_x = fb.fisher_information(d)
    i_coarse, i_fine = fb.binned_information(d, coarse), fb.binned_information(d, fine)
    scale = float(i_x.abs().max())
    assert min_eig(i_x - i_fine) >= -1e-12 * scale  # data processing: I_B <= I_X
    assert min_eig(i_fine - i_coarse) >= -1e-12 * scale  # a finer binning is a richer statistic


def test_fine_bins_recover_the_full_information():
    d = Normal(t(0.0), t(1.0))
    i_fine = fb.binned_information(d, torch.arange(-9.0, 9.0 + 1e-9, 0.01, dtype=D))
    # the loss is O(h^2) (about h^2/12 relative for the location): 1e-4 at h = 0.01 is generous
    assert torch.allclose(i_fine, fb.fisher_information(d), rtol=1e-4, atol=1e-4)


def test_edges_outside_the_support_are_empty_bins():
    a = fb.binned_information(Exponential(t(2.0)), [-3.0, -1.0, 0.5])
    b = fb.binned_information(Exponential(t(2.0)), [0.5])
    assert torch.equal(a, b)
    assert torch.equal(fb.binned_information(Exponential(t(2.0)), [-1.0]), torch.zeros(1, 1, dtype=D))


# ----------------------------------------------------------------------------- censored observations


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 20.0), st.floats(0.02, 8.0))
def test_censored_exponential_closed_form(rate, scaled_limit):
    c = scaled_limit / rate
    got = fb.censored_information(Exponential(t(rate)), c).item()
    want = -math.expm1(-rate * c) / rate**2
    assert abs(got - want) <= 1e-8 * want


def test_censored_normal_against_monte_carlo():
    g = torch.Generator().manual_seed(7)
    n, c = 200_000, 0.7
    x = 1.0 + 2.0 * torch.randn(n, generator=g, dtype=D)
    th = t([1.0, 2.0]).expand(n, 2).clone().requires_grad_(True)
    d = Normal(th[:, 0], th[:, 1])
    lp = torch.where(x <= c, d.log_prob(x), torch.log1p(-d.cdf(t(c))))
    (s,) = torch.autograd.grad(lp.sum(), th)
    outer = s.unsqueeze(-1) * s.unsqueeze(-2)
    mc, se = outer.mean(0), outer.std(0) / math.sqrt(n)
    got = fb.censored_information(Normal(t(1.0), t(2.0)), c)
    assert ((got - mc).abs() < 5 * se).all()
    assert min_eig(fb.fisher_information(Normal(t(1.0), t(2.0))) - got) > 0  # information lost


@pytest.mark.parametrize("dist", [Normal(t(0.0), t(1.0)), Laplace(t(0.0), t(1.0)), Cauchy(t(0.0), t(1.0))])
def test_censoring_far_out_keeps_everything_and_never_gains(dist):
    i_x = fb.fisher_information(dist, method="quadrature")
    far = fb.censored_information(dist, 7.0 if isinstance(dist, Normal) else 30.0)
    # the survival term and the truncated tail are O(tail mass): 2e-12 (Normal), 1e-11 (Laplace), 1e-3 (Cauchy)
    tol = 5e-3 if isinstance(dist, Cauchy) else 1e-9
    assert torch.allclose(far, i_x, rtol=tol, atol=tol)
    for c in (-1.0, 0.0, 1.5):
        assert min_eig(i_x - fb.censored_information(dist, c)) >= -1e-10


def test_censoring_keeps_more_than_binning_at_the_same_point():
    # (min(X, c), 1{X <= c}) refines the indicator 1{X <= c}
    d = Normal(t(0.0), t(1.0))
    assert min_eig(fb.censored_information(d, 0.5) - fb.binned_information(d, [0.5])) > 0


# ----------------------------------------------------------------------------- efficient information


def _spd(seed, k):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, k, generator=g, dtype=D)
    return a @ a.mT + 0.1 * torch.eye(k, dtype=D)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.data())
def test_efficient_information_is_the_inverse_of_the_inverse_block(seed, k, data):
    info = _spd(seed, k)
    m = data.draw(st.integers(1, k - 1))
    interest = data.draw(st.permutations(range(k)))[:m]
    eff = fb.efficient_information(info, interest)
    idx = torch.tensor(interest)
    cov = torch.linalg.inv(info)[idx[:, None], idx[None, :]]
    assert torch.allclose(eff, torch.linalg.inv(cov), rtol=1e-7, atol=1e-9 * float(info.abs().max()))
    block = info[idx[:, None], idx[None, :]]
    assert min_eig(block - eff) >= -1e-9 * float(info.abs().max())  # not knowing theta_2 never helps
    # scalar case: [I^-1]_11 >= 1 / I_11
    j = interest[0]
    assert torch.linalg.inv(info)[j, j] >= 1 / info[j, j] * (1 - 1e-12)


def test_orthogonal_blocks_cost_nothing_and_batches_work():
    info = torch.block_diag(_spd(1, 2), _spd(2, 3))
    assert torch.allclose(fb.efficient_information(info, [0, 1]), info[:2, :2], rtol=1e-12)
    batch = torch.stack([_spd(s, 3) for s in range(4)])
    got = fb.efficient_information(batch, 2)
    want = torch.stack([fb.efficient_information(b, [2]) for b in batch])
    assert got.shape == (4, 1, 1) and torch.allclose(got, want, rtol=1e-12)
    assert torch.allclose(fb.efficient_information(batch[0], [2, 0, 1]), batch[0][[2, 0, 1]][:, [2, 0, 1]])


@pytest.mark.parametrize("alpha, mean", [(0.5, 0.2), (2.0, 3.0), (30.0, 1.0)])
def test_gamma_shape_and_mean_are_orthogonal(alpha, mean):
    # Gamma(shape alpha, rate alpha / mu): I(alpha, mu) = diag(psi'(alpha) - 1/alpha, alpha / mu^2)
    info = fb.fisher_information(Gamma(t(alpha), t(alpha / mean)))
    jac = t([[1.0, 0.0], [1 / mean, -alpha / mean**2]])  # d(shape, rate) / d(shape, mean)
    i_am = fb.reparameterize(info, jac)
    trig = float(torch.polygamma(1, t(alpha)))
    assert abs(float(i_am[0, 1])) < 1e-12 * float(i_am.abs().max())
    assert abs(float(i_am[0, 0]) - (trig - 1 / alpha)) < 1e-10 * trig
    assert abs(float(i_am[1, 1]) - alpha / mean**2) < 1e-10 * alpha / mean**2
    # the rate is not orthogonal to the shape, but the efficient information about the shape is the same
    eff = fb.efficient_information(info, 0).item()
    assert abs(eff - (trig - 1 / alpha)) < 1e-9 * trig and eff < float(info[0, 0])


# ----------------------------------------------------------------------------- Louis's formula


def _mixture(seed, n=400):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) < 0.3
    y = torch.where(z, torch.randn(n, generator=g, dtype=D) - 1.0, 0.7 * torch.randn(n, generator=g, dtype=D) + 1.5)

    def complete(th):  # theta = (logit pi, mu1, mu2, log sigma2); z enumerated
        lp1 = torch.nn.functional.logsigmoid(th[0]) + Normal(th[1], 1.0).log_prob(y)
        lp2 = torch.nn.functional.logsigmoid(-th[0]) + Normal(th[2], th[3].exp()).log_prob(y)
        return torch.stack([lp1, lp2], -1)

    return complete


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_louis_is_exact_for_an_enumerated_mixture_label(seed):
    complete = _mixture(seed)
    th = t([-0.7, -0.9, 1.4, -0.3])
    with torch.no_grad():
        w = torch.softmax(complete(th), -1)  # p(z | y, theta)
    out = fb.louis_information(complete, th, w)

    def observed(v):
        return torch.logsumexp(complete(v), -1).sum()

    hess = torch.autograd.functional.hessian(observed, th)
    grad = torch.autograd.functional.jacobian(observed, th)
    assert torch.allclose(out.observed, -hess, rtol=1e-10, atol=1e-9)
    assert torch.allclose(out.score, grad, rtol=1e-10, atol=1e-9)  # Fisher's identity
    assert torch.allclose(out.complete - out.missing, out.observed)
    # the missing information is PSD and of rank 3: the complete-score difference between the two labels,
    # (1, y - mu1, -(y - mu2)/s^2, 1 - (y - mu2)^2/s^2), spans only the functions 1, y, y^2 of the data
    eig = torch.linalg.eigvalsh(out.missing)
    assert eig[0] > -1e-10 * eig[-1] and abs(eig[0]) < 1e-10 * eig[-1] and eig[1] > 1e-3 * eig[-1]


def test_louis_censored_exponential_by_quadrature_nodes_and_by_draws():
    rate, c, n = 1.5, 0.8, 300
    g = torch.Generator().manual_seed(3)
    x = torch.empty(n, dtype=D).exponential_(rate, generator=g)
    cens = x > c
    d = int((~cens).sum())
    # exact: X - c | X > c ~ Exp(rate), completed at Gauss-Laguerre nodes
    nodes, wts = np.polynomial.laguerre.laggauss(6)
    comp = torch.where(cens[:, None], c + t(nodes)[None, :] / rate, x[:, None].expand(n, 6))
    w = torch.where(cens[:, None], t(wts)[None, :], torch.full((n, 6), 1 / 6, dtype=D))
    out = fb.louis_information(lambda th: torch.log(th[0]) - th[0] * comp, t([rate]), w)
    assert abs(out.observed.item() - d / rate**2) < 1e-9 * n
    assert abs(out.missing.item() - (n - d) / rate**2) < 1e-9 * n
    assert abs(out.complete.item() - n / rate**2) < 1e-9 * n
    # Monte Carlo: m draws per censored value; Var(X | X > c) = 1/rate^2 is estimated with divisor m
    m = 400
    draws = c + torch.empty(n, m, dtype=D).exponential_(rate, generator=g)
    comp_mc = torch.where(cens[:, None], draws, x[:, None].expand(n, m))
    mc = fb.louis_information(lambda th: torch.log(th[0]) - th[0] * comp_mc, t([rate]))
    want = (n - d) / rate**2 * (m - 1) / m
    # each censored row's sample variance has relative s.e. sqrt((kurtosis - 1)/m) = sqrt(8/m); 5 s.e. over n - d rows
    assert abs(mc.missing.item() - want) < 5 * want * math.sqrt(8 / m / (n - d))


# ----------------------------------------------------------------------------- Bartlett identities


def test_bartlett_normal_scale_closed_forms():
    s = 1.7
    m = fb.bartlett_moments(Normal(t(0.4), t(s)), "scale")
    for got, want in [(m.d1, 0.0), (m.d2, -2 / s**2), (m.d3, 10 / s**3), (m.d1_squared, 2 / s**2),
                      (m.d1_cubed, 8 / s**3), (m.d2_d1, -6 / s**3)]:
        assert abs(got - want) < 1e-9 / s**3


@pytest.mark.parametrize("alpha", [0.7, 2.5, 40.0])
def test_bartlett_gamma_shape_polygamma(alpha):
    # l' = log x + log b - psi(a), l'' = -psi'(a), l''' = -psi''(a): E l'^3 is the third cumulant psi''(a) of log X
    m = fb.bartlett_moments(Gamma(t(alpha), t(2.0)), "concentration")
    p1, p2 = float(torch.polygamma(1, t(alpha))), float(torch.polygamma(2, t(alpha)))
    assert abs(m.d2 + p1) < 1e-12 * p1 and abs(m.d3 + p2) < 1e-12 * abs(p2)
    assert abs(m.d1_squared - p1) < 1e-8 * p1
    assert abs(m.d1_cubed - p2) < 1e-7 * abs(p2) and abs(m.d2_d1) < 1e-9 * p1


@pytest.mark.parametrize(
    "dist, param",
    [(Normal(t(1.0), t(2.0)), "loc"), (Gamma(t(2.5), t(1.5)), "rate"), (Cauchy(t(0.0), t(1.0)), "scale"),
     (StudentT(t(3.0), t(0.0), t(1.0)), "df"), (Exponential(t(2.0)), None)],
)
def test_bartlett_identities_hold_for_regular_families(dist, param):
    m = fb.bartlett_moments(dist, param)
    scale = abs(m.d1_squared) + abs(m.d1_cubed) + abs(m.d3)
    assert abs(m.first) < 1e-9 * scale and abs(m.second) < 1e-8 * scale and abs(m.third) < 1e-8 * scale


def test_bartlett_third_moment_against_monte_carlo():
    d = Gamma(t(1.5), t(1.0))
    m = fb.bartlett_moments(d, "concentration")
    s = fb.score(d, d.sample((200_000,)), params="concentration")[:, 0]
    mc, se = (s**3).mean().item(), (s**3).std().item() / math.sqrt(len(s))
    assert abs(mc - m.d1_cubed) < 5 * se


def test_bartlett_second_identity_fails_for_the_laplace_location():
    m = fb.bartlett_moments(Laplace(t(0.0), t(2.0)), "loc")
    assert abs(m.first) < 1e-12 and abs(m.third) < 1e-12  # both vanish by symmetry
    assert abs(m.second - 0.25) < 1e-10  # E l'' = 0 almost everywhere, E l'^2 = 1/b^2
