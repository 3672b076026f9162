"""Tests for fisherbook.geometry.riemannian and fisherbook.geometry.dualflat (information geometry, chapter 7).

Independent methods checked against each other: closed-form Fisher–Rao distances against
numerically solved geodesics of metrics written here from the textbook formulas; exp/log maps
against the BVP path; KL as a Bregman divergence against torch's closed-form KL; the m-projection
against the Binomial family's moment-matching solution.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    Multinomial,
    Normal,
    Poisson,
    kl_divergence,
)

import fisherbook as fb
from fisherbook.errors import GeodesicError, OffManifoldError

D = torch.float64
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def t(x):
    return torch.tensor(x, dtype=D)


# metrics written from the closed forms of REFERENCES.md (independent of fisherbook.stats.families)
def normal_metric(th):
    s2 = th[..., 1] ** 2
    return torch.diag_embed(torch.stack([1 / s2, 2 / s2], -1))


def categorical_metric(th, n=1.0):  # coordinates: first K-1 probabilities
    last = 1 - th.sum(-1)
    return n * (torch.diag_embed(1 / th) + (1 / last)[..., None, None])


ONE_D = {
    "poisson": (lambda th: 1 / th[..., None], lambda x: Poisson(t(x)), (1.0, 7.5)),
    "exponential": (lambda th: 1 / th[..., None] ** 2, lambda x: Exponential(t(x)), (0.3, 4.0)),
    "bernoulli": (lambda th: 1 / (th * (1 - th))[..., None], lambda x: Bernoulli(t(x)), (0.1, 0.85)),
    "binomial": (lambda th: 6 / (th * (1 - th))[..., None], lambda x: Binomial(6, t(x)), (0.2, 0.7)),
    "geometric": (lambda th: 1 / (th**2 * (1 - th))[..., None], lambda x: Geometric(t(x)), (0.15, 0.8)),
}


# ------------------------------------------------------------------ closed form vs geodesic


@pytest.mark.parametrize("name", sorted(ONE_D))
def test_one_parameter_geodesic_length_matches_closed_form(name):
    metric, make, (a, b) = ONE_D[name]
    g = fb.geodesic(metric, [a], [b])
    d = fb.fisher_rao_distance(make(a), make(b)).item()
    assert abs(g.length - d) < 1e-6
    assert g.speed_variation < 1e-4


@pytest.mark.parametrize(
    "a, b",
    [((0.0, 1.0), (3.0, 1.0)), ((-5.0, 1.0), (5.0, 1.0)), ((0.0, 1.0), (0.0, 5.0)), ((1.0, 0.3), (-2.0, 4.0))],
)
def test_normal_geodesic_length_matches_closed_form(a, b):
    g = fb.geodesic(normal_metric, a, b)
    d = fb.fisher_rao_distance(Normal(*t(a)), Normal(*t(b))).item()
    assert abs(g.length - d) < 1e-6
    # the closed form by hand: sqrt(2) arccosh(1 + (dmu^2/2 + dsigma^2) / (2 s1 s2))
    by_hand = math.sqrt(2) * math.acosh(1 + ((a[0] - b[0]) ** 2 / 2 + (a[1] - b[1]) ** 2) / (2 * a[1] * b[1]))
    assert abs(d - by_hand) < 1e-12


@pytest.mark.parametrize("n", [1, 5])
def test_categorical_and_multinomial_geodesic_length_matches_closed_form(n):
    p, q = t([0.2, 0.3, 0.5]), t([0.6, 0.3, 0.1])
    g = fb.geodesic(lambda th: categorical_metric(th, n), p[:2], q[:2])
    if n == 1:
        d = fb.fisher_rao_distance(Categorical(p), Categorical(q)).item()
    else:
        d = fb.fisher_rao_distance(Multinomial(n, p), Multinomial(n, q)).item()
    assert abs(g.length - d) < 1e-6
    assert abs(d - 2 * math.sqrt(n) * math.acos(float((p * q).sqrt().sum()))) < 1e-12


def test_geodesic_with_core_fisher_metric_matches_closed_form():
    """The metric from fb.fisher_information (families module) gives the same geodesics."""
    G = fb.fisher_metric(Normal, ("loc", "scale"))
    x = t([[0.0, 1.0], [2.0, 0.5]])
    assert torch.allclose(G(x), normal_metric(x), atol=1e-12)
    g = fb.geodesic(G, [0.0, 1.0], [2.0, 1.5], n_nodes=17)
    assert abs(g.length - fb.fisher_rao_distance(Normal(0.0, 1.0), Normal(2.0, 1.5)).item()) < 1e-6
    Gc = fb.fisher_metric(Categorical, ("probs",))
    assert torch.allclose(Gc(t([0.2, 0.3])), categorical_metric(t([0.2, 0.3])), atol=1e-12)


def test_distance_same_in_scale_and_log_scale_coordinates():
    """(mu, sigma) and (mu, log sigma) give the same length and the same curve."""
    to_scale = lambda ph: torch.stack([ph[..., 0], ph[..., 1].exp()], -1)  # noqa: E731
    G_log = fb.pullback_metric(normal_metric, to_scale)
    a, b = (1.0, 0.3), (-2.0, 4.0)
    g_log = fb.geodesic(G_log, [a[0], math.log(a[1])], [b[0], math.log(b[1])])
    g = fb.geodesic(normal_metric, a, b)
    d = fb.fisher_rao_distance(Normal(*t(a)), Normal(*t(b))).item()
    assert abs(g_log.length - d) < 1e-6 and abs(g.length - d) < 1e-6
    # same curve: both constant-speed parameterisations, so points agree at equal t
    ts = np.linspace(0, 1, 9)
    assert torch.allclose(to_scale(g_log(ts)), g(ts), atol=1e-5)
    # pullback agrees with the core API's reparameterize(fisher, jacobian)
    phi = t([0.5, -0.7])
    J = torch.diag(t([1.0, math.exp(-0.7)]))
    assert torch.allclose(G_log(phi), fb.reparameterize(normal_metric(to_scale(phi)), J), atol=1e-12)


# ------------------------------------------------------------------ metric properties (hypothesis)

mus = st.floats(-5, 5)
sigmas = st.floats(0.05, 20)


@SETTINGS
@given(mus, sigmas, mus, sigmas, mus, sigmas)
def test_normal_distance_symmetric_triangle(m1, s1, m2, s2, m3, s3):
    p, q, r = Normal(t(m1), t(s1)), Normal(t(m2), t(s2)), Normal(t(m3), t(s3))
    d = fb.fisher_rao_distance
    assert torch.isclose(d(p, q), d(q, p), rtol=1e-12, atol=1e-12)
    assert d(p, r) <= d(p, q) + d(q, r) + 1e-9
    assert d(p, p) < 1e-7  # arccosh near 1 computed via log1p/sqrt: exact zero up to rounding


simplex3 = st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3).map(lambda v: t(v) / t(v).sum())


@SETTINGS
@given(simplex3, simplex3, simplex3)
def test_categorical_distance_symmetric_triangle(p, q, r):
    P, Q, R = Categorical(p), Categorical(q), Categorical(r)
    d = fb.fisher_rao_distance
    assert torch.isclose(d(P, Q), d(Q, P), rtol=1e-12, atol=1e-12)
    assert d(P, R) <= d(P, Q) + d(Q, R) + 1e-9
    assert d(P, Q) <= math.pi + 1e-12  # sphere of radius 2, positive orthant: at most a quarter circle times 2


@SETTINGS
@given(st.sampled_from(sorted(ONE_D)), st.floats(0.02, 0.98), st.floats(0.02, 0.98), st.floats(0.02, 0.98))
def test_one_parameter_distance_symmetric_triangle(name, x, y, z):
    _, make, _ = ONE_D[name]
    scale = 10.0 if name in ("poisson", "exponential") else 1.0
    P, Q, R = (make(v * scale) for v in (x, y, z))
    d = fb.fisher_rao_distance
    assert torch.isclose(d(P, Q), d(Q, P), rtol=1e-12, atol=1e-12)
    assert d(P, R) <= d(P, Q) + d(Q, R) + 1e-9


@SETTINGS
@given(mus, st.floats(0.1, 5), mus, st.floats(0.1, 5))
def test_normal_log_exp_maps_invert_and_have_distance_norm(m1, s1, m2, s2):
    p, q = Normal(t(m1), t(s1)), Normal(t(m2), t(s2))
    v = fb.log_map(p, q)
    norm = torch.sqrt(v[0] ** 2 / s1**2 + 2 * v[1] ** 2 / s1**2)  # Fisher norm at p
    d = fb.fisher_rao_distance(p, q)
    assert torch.isclose(norm, d, rtol=1e-9, atol=1e-9)
    back = fb.exp_map(p, v)
    assert abs(back.loc.item() - m2) < 1e-7 * (1 + abs(m2)) and abs(back.scale.item() - s2) < 1e-7 * s2


@SETTINGS
@given(simplex3, simplex3)
def test_categorical_log_exp_maps_invert(p, q):
    P, Q = Categorical(p), Categorical(q)
    v = fb.log_map(P, Q)
    assert abs(v.sum().item()) < 1e-12
    assert torch.isclose(torch.sqrt((v**2 / p).sum()), fb.fisher_rao_distance(P, Q), rtol=1e-9, atol=1e-9)
    assert torch.allclose(fb.exp_map(P, v).probs.double(), q, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ONE_D))
def test_one_parameter_log_exp_maps(name):
    _, make, (a, b) = ONE_D[name]
    p, q = make(a), make(b)
    v = fb.log_map(p, q)
    back = fb.exp_map(p, v)
    attr = "rate" if name in ("poisson", "exponential") else "probs"
    assert abs(getattr(back, attr).item() - b) < 1e-9
    info = fb.fisher_information(p).item()
    assert abs(math.sqrt(info) * abs(v.item()) - fb.fisher_rao_distance(p, q).item()) < 1e-9


def test_exp_map_path_is_the_numerical_geodesic():
    p, q = Normal(t(1.0), t(0.3)), Normal(t(-2.0), t(4.0))
    v = fb.log_map(p, q)
    ts = np.linspace(0, 1, 7)
    closed = fb.exp_map(p, torch.as_tensor(ts)[:, None] * v)
    g = fb.geodesic(normal_metric, [1.0, 0.3], [-2.0, 4.0])
    assert torch.allclose(torch.stack([closed.loc, closed.scale], -1), g(ts), atol=1e-5)
    # the half-ellipse: (mu - c)^2 / 2 + sigma^2 = R^2 along the path
    mu, s = closed.loc, closed.scale
    c = 0.5 * ((mu[0] ** 2 / 2 + s[0] ** 2) - (mu[-1] ** 2 / 2 + s[-1] ** 2)) / ((mu[0] - mu[-1]) / 2)
    radius2 = (mu - c) ** 2 / 2 + s**2
    assert torch.allclose(radius2, radius2[0].expand_as(radius2), rtol=1e-9)


# ------------------------------------------------------------------ Christoffel symbols


def test_christoffel_symbols_normal_closed_form_and_fd_agree():
    th = t([[0.3, 2.0], [-1.0, 0.5]])
    gam = fb.christoffel_symbols(normal_metric, th)
    s = th[:, 1]
    expect = torch.zeros(2, 2, 2, 2, dtype=D)
    expect[:, 0, 0, 1] = expect[:, 0, 1, 0] = -1 / s
    expect[:, 1, 0, 0] = 1 / (2 * s)
    expect[:, 1, 1, 1] = -1 / s
    assert torch.allclose(gam, expect, atol=1e-12)
    fd = fb.christoffel_symbols(normal_metric, th, derivative="fd")
    assert torch.allclose(fd, expect, atol=1e-7)
    with pytest.raises(ValueError, match="derivative"):
        fb.christoffel_symbols(normal_metric, th, derivative="spline")


# ------------------------------------------------------------------ KL expansion


def _shift(dist, delta):
    if isinstance(dist, Normal):
        return Normal(dist.loc + delta[0], dist.scale + delta[1])
    if isinstance(dist, Gamma):
        return Gamma(dist.concentration + delta[0], dist.rate + delta[1])
    if isinstance(dist, Categorical):
        p = dist.probs[:-1] + delta
        return Categorical(torch.cat([p, 1 - p.sum(-1, keepdim=True)]))
    raise TypeError


@pytest.mark.parametrize(
    "dist, direction",
    [
        (Normal(t(0.5), t(1.3)), t([0.6, -0.8])),
        (Gamma(t(2.5), t(1.5)), t([1.0, 0.5])),
        (Categorical(t([0.2, 0.3, 0.5])), t([0.1, -0.05])),
    ],
)
def test_kl_quadratic_error_shrinks_at_cubic_rate(dist, direction):
    hs = [0.2 / 2**i for i in range(5)]
    errs = []
    for h in hs:
        exact = kl_divergence(dist, _shift(dist, h * direction))
        approx = fb.kl_quadratic(dist, h * direction)
        errs.append(abs(exact - approx).item())
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert all(2.7 < r < 3.3 for r in rates), rates
    # and the quadratic term itself is the leading term: relative error -> 0 linearly
    rel = errs[-1] / fb.kl_quadratic(dist, hs[-1] * direction).item()
    assert rel < 0.05


def test_kl_quadratic_validates_delta():
    with pytest.raises(ValueError, match="delta"):
        fb.kl_quadratic(Normal(0.0, 1.0), t([1.0, 2.0, 3.0]))


# ------------------------------------------------------------------ Jeffreys prior


def test_jeffreys_bernoulli_is_beta_half_half():
    prior = fb.jeffreys_prior(Bernoulli(t(0.3)))
    assert isinstance(prior, Beta)
    ps = t([0.01, 0.2, 0.5, 0.9])
    log_sqrt_info = torch.stack([0.5 * fb.fisher_information(Bernoulli(p)).squeeze().log() for p in ps])
    diff = prior.log_prob(ps) - log_sqrt_info
    assert torch.allclose(diff, torch.full_like(diff, -math.log(math.pi)), atol=1e-10)  # 1/B(1/2,1/2) = 1/pi


def test_jeffreys_categorical_is_dirichlet_half():
    prior = fb.jeffreys_prior(Categorical(t([0.2, 0.3, 0.5])))
    assert isinstance(prior, Dirichlet) and torch.allclose(prior.concentration, t([0.5] * 3))
    G = fb.fisher_metric(Categorical, ("probs",))
    pts = t([[0.2, 0.3], [0.05, 0.9], [0.4, 0.4]])
    full = torch.cat([pts, 1 - pts.sum(-1, keepdim=True)], -1)
    diff = prior.log_prob(full) - fb.jeffreys_log_density(G, pts)
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-10)
    assert torch.isclose(diff[0], -torch.lgamma(t(0.5)) * 3 + torch.lgamma(t(1.5)) - 0.0, atol=1e-10)


def test_jeffreys_improper_and_reparameterisation():
    with pytest.raises(ValueError, match="improper"):
        fb.jeffreys_prior(Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="improper"):
        fb.jeffreys_prior(Poisson(1.0))
    with pytest.raises(TypeError, match="Jeffreys"):
        fb.jeffreys_prior(Gamma(1.0, 1.0))
    # Normal: sqrt(det I) = sqrt(2)/sigma^2; in (mu, log sigma) it gains log|d sigma/d s| = s
    th = t([[0.0, 0.5], [1.0, 2.0]])
    assert torch.allclose(fb.jeffreys_log_density(normal_metric, th), 0.5 * math.log(2) - 2 * th[:, 1].log())
    G_log = fb.pullback_metric(normal_metric, lambda ph: torch.stack([ph[..., 0], ph[..., 1].exp()], -1))
    ph = torch.stack([th[:, 0], th[:, 1].log()], -1)
    assert torch.allclose(fb.jeffreys_log_density(G_log, ph), fb.jeffreys_log_density(normal_metric, th) + ph[:, 1])


# ------------------------------------------------------------------ errors


def test_off_manifold_errors():
    bad = Normal(t(0.0), t(-1.0), validate_args=False)
    with pytest.raises(OffManifoldError, match="scale"):
        fb.fisher_rao_distance(bad, Normal(0.0, 1.0))
    with pytest.raises(OffManifoldError, match="simplex"):
        fb.exp_map(Categorical(t([0.5, 0.5, 0.0])), t([0.1, -0.1, 0.0]))
    with pytest.raises(OffManifoldError, match="leaves the simplex"):
        fb.exp_map(Categorical(t([0.2, 0.3, 0.5])), t([-0.5, 0.0, 0.5]) * 3)
    with pytest.raises(OffManifoldError):
        fb.exp_map(Poisson(t(1.0)), t([-5.0]))
    with pytest.raises(OffManifoldError):
        fb.fisher_metric(Normal, ("loc", "scale"))(t([0.0, -1.0]))
    with pytest.raises(OffManifoldError, match="start"):
        fb.geodesic(normal_metric, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(TypeError, match="same family"):
        fb.fisher_rao_distance(Normal(0.0, 1.0), Poisson(1.0))
    with pytest.raises(ValueError, match="total_count"):
        fb.fisher_rao_distance(Binomial(3, t(0.5)), Binomial(4, t(0.5)))
    with pytest.raises(TypeError, match="closed-form"):
        fb.fisher_rao_distance(Gamma(1.0, 1.0), Gamma(2.0, 1.0))


def test_geodesic_failure_raises_with_advice_not_a_wrong_length():
    # the metric 1/x^2 is singular at 0: there is no geodesic from -1 to 1
    with pytest.raises(GeodesicError, match="Try"):
        fb.geodesic(lambda th: 1 / th[..., None] ** 2, [-1.0], [1.0])
    # an impossible accuracy budget
    with pytest.raises(GeodesicError, match="Try"):
        fb.geodesic(normal_metric, [-5.0, 1.0], [5.0, 1.0], tol=1e-9, max_nodes=40)
    with pytest.raises(ValueError, match="n_nodes"):
        fb.geodesic(normal_metric, [0.0, 1.0], [1.0, 1.0], n_nodes=2)


# ------------------------------------------------------------------ dually flat structure

EXPFAM = [
    (Normal(t(0.3), t(1.2)), Normal(t(-1.0), t(0.6))),
    (Gamma(t(2.0), t(1.0)), Gamma(t(3.5), t(0.4))),
    (Beta(t(2.0), t(3.0)), Beta(t(0.5), t(4.0))),
    (Poisson(t(2.0)), Poisson(t(5.0))),
    (Bernoulli(t(0.2)), Bernoulli(t(0.7))),
    (Binomial(5, t(0.2)), Binomial(5, t(0.7))),
    (Exponential(t(2.0)), Exponential(t(0.3))),
    (Geometric(t(0.2)), Geometric(t(0.6))),
    (Categorical(t([0.2, 0.3, 0.5])), Categorical(t([0.6, 0.3, 0.1]))),
]


@pytest.mark.parametrize("p, q", EXPFAM, ids=lambda d: type(d).__name__)
def test_kl_is_bregman_of_log_partition(p, q):
    kl = kl_divergence(p, q)
    assert torch.isclose(fb.kl_bregman(p, q), kl, rtol=1e-10, atol=1e-12)
    # the same through the generic Bregman divergence and through the dual potential
    psi = lambda th: fb.log_partition(p, th)  # noqa: E731
    tp, tq = fb.natural_parameters(p), fb.natural_parameters(q)
    assert torch.isclose(fb.bregman_divergence(psi, tq, tp), kl, rtol=1e-10, atol=1e-12)
    fenchel = fb.log_partition(p, tq) + fb.dual_potential(p) - (tq * fb.expectation_parameters(p)).sum(-1)
    assert torch.isclose(fenchel, kl, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [pq[0] for pq in EXPFAM], ids=lambda d: type(d).__name__)
def test_expectation_parameters_are_gradient_of_log_partition_and_invert(p):
    th = fb.natural_parameters(p).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fb.log_partition(p, th).sum(), th)
    eta = fb.expectation_parameters(p)
    assert torch.allclose(eta, grad, atol=1e-12)
    assert torch.allclose(fb.natural_parameters(fb.from_natural(p, th.detach())), th.detach(), atol=1e-12)
    assert torch.allclose(fb.natural_parameters(fb.from_expectation(p, eta)), th.detach(), atol=1e-9)


def test_expectation_parameters_are_moments():
    assert torch.allclose(fb.expectation_parameters(Normal(t(1.0), t(2.0))), t([1.0, 5.0]))
    assert torch.allclose(fb.expectation_parameters(Geometric(t(0.25))), Geometric(t(0.25)).mean[None])
    g = Gamma(t(3.0), t(2.0))
    assert torch.allclose(fb.expectation_parameters(g), t([torch.digamma(t(3.0)) - math.log(2.0), 1.5]))


def test_hessian_of_log_partition_is_fisher_in_natural_coordinates():
    p = Bernoulli(logits=t(0.4))
    hess = torch.autograd.functional.hessian(lambda th: fb.log_partition(p, th), fb.natural_parameters(p))
    assert torch.allclose(hess, fb.fisher_information(p, params=("logits",)), atol=1e-12)
    # Normal: theta = (mu/s^2, -1/(2 s^2)); I_theta = J^T I_(mu, s) J with J = d(mu, s)/d theta
    q = Normal(t(0.7), t(1.4))
    th = fb.natural_parameters(q)
    hess = torch.autograd.functional.hessian(lambda z: fb.log_partition(Normal, z), th)
    to_ms = lambda z: torch.stack([-z[0] / (2 * z[1]), (-0.5 / z[1]).sqrt()])  # noqa: E731
    J = torch.autograd.functional.jacobian(to_ms, th)
    assert torch.allclose(hess, fb.reparameterize(fb.fisher_information(q), J), atol=1e-10)


def test_m_projection_onto_binomial_family_and_pythagoras():
    rng = np.random.default_rng(3)
    p = t(rng.dirichlet(np.ones(7)))
    x = torch.arange(7, dtype=D)
    base = torch.exp(torch.lgamma(t(7.0)) - torch.lgamma(x + 1) - torch.lgamma(7 - x))  # C(6, x)
    q, theta = fb.m_projection(p, x, base=base)
    # the projection onto Binomial(6, .) matches the mean
    binom = Binomial(6, probs=(p @ x) / 6)
    assert torch.allclose(q, binom.log_prob(x).exp(), atol=1e-12)
    assert abs(torch.sigmoid(theta).item() - ((p @ x) / 6).item()) < 1e-12

    def kl(a, b):
        return (a * (a / b).log()).sum()

    for prob in (0.1, 0.5, 0.83):
        r = Binomial(6, probs=t(prob)).log_prob(x).exp()
        assert torch.isclose(kl(p, r), kl(p, q) + kl(q, r), rtol=1e-10)  # Pythagorean relation
        assert kl(p, q) <= kl(p, r)


def test_m_projection_two_statistics_and_errors():
    p = t([0.1, 0.2, 0.3, 0.25, 0.15])
    x = torch.arange(5, dtype=D)
    T = torch.stack([x, x**2], -1)
    q, _ = fb.m_projection(p, T)
    assert torch.allclose(q @ T, p @ T, atol=1e-10)
    r = torch.softmax(T @ t([0.3, -0.2]), 0)
    assert torch.isclose((p * (p / r).log()).sum(), (p * (p / q).log()).sum() + (q * (q / r).log()).sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="boundary"):
        fb.m_projection(t([1.0, 0.0, 0.0, 0.0, 0.0]), x)
    with pytest.raises(OffManifoldError, match="simplex"):
        fb.m_projection(t([0.5, 0.6]), t([0.0, 1.0]))
    with pytest.raises(ValueError, match="degenerate"):
        fb.m_projection(p, torch.stack([x, 2 * x], -1))


def test_dualflat_bad_inputs():
    with pytest.raises(TypeError, match="exponential families"):
        fb.natural_parameters(torch.distributions.Cauchy(0.0, 1.0))
    with pytest.raises(OffManifoldError):
        fb.from_natural(Normal, t([0.0, 1.0]))  # theta_2 must be negative
    with pytest.raises(OffManifoldError, match="Jensen"):
        fb.from_expectation(Gamma, t([1.0, 1.0]))  # E log x > log E x is impossible
    with pytest.raises(ValueError, match="total_count"):
        fb.kl_bregman(Binomial(3, t(0.5)), Binomial(4, t(0.5)))


def test_gamma_geodesic_without_closed_form_is_a_shortest_path():
    """No closed form for the Gamma family: check metric properties of the numerical distance."""
    G = fb.fisher_metric(Gamma, ("concentration", "rate"))
    a, b = t([0.5, 2.0]), t([6.0, 0.5])
    ab = fb.geodesic(G, a, b, n_nodes=17)
    ba = fb.geodesic(G, b, a, n_nodes=17)
    assert abs(ab.length - ba.length) < 1e-6  # symmetric
    # shorter than the straight line in (concentration, rate), whose length is a 1-D quadrature
    s = torch.linspace(0, 1, 2001, dtype=D)[:, None]
    line = a + s * (b - a)
    speed = torch.einsum("ma,mab,mb->m", (b - a).expand_as(line), G(line), (b - a).expand_as(line)).sqrt()
    straight = torch.trapezoid(speed, s[:, 0]).item()
    assert ab.length < 0.7 * straight  # 4.15 against 6.59
    # the midpoint of the geodesic splits its length in two equal halves (constant speed)
    mid = ab(0.5)[0]
    first = fb.geodesic(G, a, mid, n_nodes=17)
    assert abs(first.length - ab.length / 2) < 1e-6
