"""Tests for the graduate-depth information geometry of chapter 7 (issue 19): α-connections and the
Amari–Chentsov tensor, curvature from a metric, α-divergences, the multivariate normal / SPD geometry,
the canonical divergence and e-projections, and EM as alternating projections.

Independent routes agree: hand-written closed forms, expectations by quadrature with autodiff scores,
autodiff of a metric, finite differences through ``fb.fisher_metric`` (whose closed forms carry no
graph), third derivatives of the log-partition function, a second algorithm (Brioschi against the
Riemann tensor; EM against the projections; the BVP geodesic against the closed form).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from torch.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    Gamma,
    MultivariateNormal,
    Normal,
    Poisson,
    StudentT,
    kl_divergence,
)

import fisherbook as fb

D = torch.float64
NODES, WEIGHTS = np.polynomial.legendre.leggauss(300)


def t(x):
    return torch.tensor(x, dtype=D)


def gl(lo, hi):
    """Gauss–Legendre nodes and weights on [lo, hi]."""
    half = (hi - lo) / 2
    return torch.tensor(half * NODES + (hi + lo) / 2), torch.tensor(half * WEIGHTS)


def normal_model(th):
    return Normal(th[0], th[1])


def normal_metric(th):  # (mu, sigma): diag(1, 2) / sigma^2
    return torch.diag(torch.stack([1 / th[1] ** 2, 2 / th[1] ** 2]))


def normal_T(s):  # Amari–Chentsov tensor of N(mu, sigma) in (mu, sigma), by hand: E[z^2 (z^2-1)] = 2, E[(z^2-1)^3] = 8
    T = torch.zeros(2, 2, 2, dtype=D)
    T[0, 0, 1] = T[0, 1, 0] = T[1, 0, 0] = 2 / s**3
    T[1, 1, 1] = 8 / s**3
    return T


def normal_levi_civita(s):  # Gamma_ijk = 1/2 (d_i g_jk + d_j g_ik - d_k g_ij), by hand
    L = torch.zeros(2, 2, 2, dtype=D)
    L[0, 0, 1] = 1 / s**3
    L[0, 1, 0] = L[1, 0, 0] = -1 / s**3
    L[1, 1, 1] = -2 / s**3
    return L


# ----------------------------------------------------------------------------- connections


@pytest.mark.parametrize("alpha", [-1.0, -0.3, 0.0, 0.5, 1.0, 2.0])
def test_alpha_connection_of_the_normal_family_matches_the_closed_form(alpha):
    x, w = gl(-25.0, 25.0)
    for mu, s in [(0.0, 1.0), (0.7, 1.8), (-1.0, 0.6)]:
        got = fb.alpha_connection(normal_model, [mu, s], alpha, x, w)
        want = normal_levi_civita(s) - alpha / 2 * normal_T(s)
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-10)  # Gauss–Legendre on a smooth integrand


def test_three_routes_to_the_levi_civita_connection_agree():
    x, w = gl(-25.0, 25.0)
    th = [0.4, 1.3]
    by_quadrature = fb.alpha_connection(normal_model, th, 0.0, x, w)
    by_autograd = fb.levi_civita_lowered(normal_metric, th)
    by_fd = fb.levi_civita_lowered(fb.fisher_metric(Normal, ("loc", "scale")), th)  # no graph: central differences
    assert torch.allclose(by_quadrature, normal_levi_civita(1.3), atol=1e-10)
    assert torch.allclose(by_autograd, normal_levi_civita(1.3), atol=1e-13)
    assert torch.allclose(by_fd, normal_levi_civita(1.3), atol=1e-6)  # h = 1e-4: truncation h^2 ~ 1e-8 relative


def test_raised_symbols_match_christoffel_symbols():
    x, w = gl(-25.0, 25.0)
    raised = fb.alpha_connection(normal_model, [0.2, 1.7], 0.0, x, w, raised=True)
    batch_metric = lambda th: torch.diag_embed(torch.stack([1 / th[..., 1] ** 2, 2 / th[..., 1] ** 2], -1))  # noqa: E731
    assert torch.allclose(raised, fb.christoffel_symbols(batch_metric, t([0.2, 1.7])), atol=1e-10)


def test_duality_of_the_alpha_connections():
    # d_k g_ij = Gamma^(alpha)_kij + Gamma^(-alpha)_kji
    x, w = gl(-25.0, 25.0)
    th = t([0.3, 1.4])
    dG = torch.autograd.functional.jacobian(normal_metric, th)  # [i, j, k]
    for alpha in (0.3, 1.0):
        a = fb.alpha_connection(normal_model, th, alpha, x, w)
        b = fb.alpha_connection(normal_model, th, -alpha, x, w)
        # dG.permute(2, 0, 1)[k, i, j] = d_k g_ij; a[k, i, j] = Gamma^(alpha)_{ki,j}; b[k, j, i] = Gamma^(-alpha)_{kj,i}
        assert torch.allclose(dG.permute(2, 0, 1), a + b.transpose(1, 2), atol=1e-10)
        assert not torch.allclose(dG.permute(2, 0, 1), a + a.transpose(1, 2), atol=1e-3)  # alpha is not self-dual


def test_amari_chentsov_tensor_routes_agree():
    x, w = gl(-25.0, 25.0)
    assert torch.allclose(fb.amari_chentsov_tensor(normal_model, [0.5, 1.3], x, w), normal_T(1.3), atol=1e-10)
    # natural coordinates of an exponential family: the third derivatives of psi
    eta = fb.natural_parameters(Normal(t(0.5), t(1.3)))
    by_quadrature = fb.amari_chentsov_tensor(lambda th: fb.from_natural(Normal, th), eta, x, w)
    assert torch.allclose(by_quadrature, fb.exponential_family_tensor(Normal, eta), rtol=1e-9, atol=1e-9)
    # a discrete family on a finite support: Poisson on 0..80 at rate 3, T = psi''' = lambda
    ks = torch.arange(81, dtype=D)
    by_sum = fb.amari_chentsov_tensor(lambda th: Poisson(th[0].exp()), [math.log(3.0)], ks)
    assert abs(by_sum.item() - 3.0) < 1e-10
    assert torch.allclose(fb.exponential_family_tensor(Poisson, [math.log(3.0)]), t([[[3.0]]]))


def test_bernoulli_tensor_closed_form_and_symmetry():
    p = 0.3
    T = fb.amari_chentsov_tensor(lambda th: Bernoulli(probs=th[0]), [p], t([0.0, 1.0]))
    assert abs(T.item() - (1 - 2 * p) / (p * (1 - p)) ** 2) < 1e-12
    # categorical K = 3 in (p1, p2): symmetric in all three indices
    T3 = fb.amari_chentsov_tensor(lambda th: Categorical(torch.cat([th, 1 - th.sum(0, keepdim=True)])),
                                  [0.2, 0.5], torch.arange(3, dtype=D))
    for perm in [(0, 2, 1), (1, 0, 2), (2, 1, 0)]:
        assert torch.allclose(T3, T3.permute(*perm))
    # closed form: T_ijk = delta_ijk / p_i^2 - 1 / p_3^2
    want = torch.zeros(2, 2, 2, dtype=D) - 1 / 0.3**2
    want[0, 0, 0] += 1 / 0.2**2
    want[1, 1, 1] += 1 / 0.5**2
    assert torch.allclose(T3, want, atol=1e-10)


def test_exponential_family_is_e_flat_in_natural_and_m_flat_in_expectation_coordinates():
    x, w = gl(-30.0, 30.0)
    ref = Normal(t(0.4), t(1.3))
    nat, mean = fb.natural_parameters(ref), fb.expectation_parameters(ref)
    e_nat = fb.alpha_connection(lambda th: fb.from_natural(Normal, th), nat, 1.0, x, w)
    m_mean = fb.alpha_connection(lambda e: fb.from_expectation(Normal, e), mean, -1.0, x, w)
    assert e_nat.abs().max() < 1e-10 and m_mean.abs().max() < 1e-10
    # but not the other way round: the m-connection in natural coordinates is T (non-zero)
    m_nat = fb.alpha_connection(lambda th: fb.from_natural(Normal, th), nat, -1.0, x, w)
    assert torch.allclose(m_nat, fb.exponential_family_tensor(Normal, nat), rtol=1e-8)


def test_flatness_is_coordinate_free_riemann_tensor_of_the_alpha_connections():
    # in (mu, sigma), where no symbol vanishes: R^(+-1) = 0, R^(alpha) = (1 - alpha^2) R^(0)
    x, w = gl(-25.0, 25.0)
    th = [0.3, 1.2]
    R = {a: fb.riemann_tensor(lambda s, a=a: fb.alpha_connection(normal_model, s, a, x, w, raised=True), th)
         for a in (-1.0, 0.0, 0.5, 1.0)}
    assert R[1.0].abs().max() < 1e-9 and R[-1.0].abs().max() < 1e-9
    assert R[0.0].abs().max() > 0.1
    assert torch.allclose(R[0.5], 0.75 * R[0.0], atol=1e-9)


# ----------------------------------------------------------------------------- curvature


def categorical3_metric(th):  # (p1, p2), p3 = 1 - p1 - p2
    return torch.diag(1 / th) + 1 / (1 - th.sum())


def gamma_metric(th):  # (shape a, rate b)
    a, b = th[0], th[1]
    return torch.stack([torch.stack([torch.polygamma(1, a), -1 / b]), torch.stack([-1 / b, a / b**2])])


def gamma_K(a):  # closed form (Arwini & Dodson 2008): (psi1 + a psi2) / (4 (a psi1 - 1)^2)
    a = t(a)
    p1, p2 = torch.polygamma(1, a), torch.polygamma(2, a)
    return float((p1 + a * p2) / (4 * (a * p1 - 1) ** 2))


@pytest.mark.parametrize("method", ["riemann", "brioschi"])
def test_gaussian_curvature_of_three_families(method):
    for pt in [(0.0, 1.0), (2.0, 0.3), (-1.0, 4.0)]:
        assert abs(fb.gaussian_curvature(normal_metric, pt, method=method) + 0.5) < 1e-12
    for pt in [(1 / 3, 1 / 3), (0.1, 0.7)]:
        assert abs(fb.gaussian_curvature(categorical3_metric, pt, method=method) - 0.25) < 1e-10
    for a, b in [(0.7, 1.0), (2.5, 1.3), (20.0, 0.1)]:
        assert abs(fb.gaussian_curvature(gamma_metric, (a, b), method=method) - gamma_K(a)) < 1e-9


def test_gaussian_curvature_through_fisher_metric_by_finite_differences():
    # fb.fisher_metric has no autograd graph: nested central differences, error ~ eps / h^2 ~ 1e-8
    G = fb.fisher_metric(Gamma, ("concentration", "rate"))
    assert abs(fb.gaussian_curvature(G, (2.5, 1.3)) - gamma_K(2.5)) < 1e-5
    Gc = fb.fisher_metric(Categorical, ("probs",))
    assert abs(fb.gaussian_curvature(Gc, (0.2, 0.3), method="brioschi") - 0.25) < 1e-5


def test_gamma_curvature_limits():
    # negative everywhere, -> -1/2 as a -> infinity (the family approaches the normal's geometry)
    Ks = [gamma_K(a) for a in (0.5, 1.0, 5.0, 50.0, 5000.0)]
    assert all(k < 0 for k in Ks)
    assert abs(Ks[-1] + 0.5) < 1e-3
    assert abs(fb.gaussian_curvature(gamma_metric, (5000.0, 2.0)) - Ks[-1]) < 1e-6


def test_curvature_is_invariant_under_reparameterisation():
    to_scale = lambda ph: torch.stack([ph[0], ph[1].exp()])  # noqa: E731
    pulled = lambda ph: (J := torch.autograd.functional.jacobian(to_scale, ph, create_graph=True)).T @ normal_metric(to_scale(ph)) @ J  # noqa: E501,E731
    assert abs(fb.gaussian_curvature(pulled, (0.4, -0.3)) + 0.5) < 1e-12


# ----------------------------------------------------------------------------- alpha-divergences


def test_alpha_divergence_special_cases():
    p, q = Normal(t(0.0), t(1.0)), Normal(t(1.0), t(2.0))
    assert torch.isclose(fb.alpha_divergence(p, q, -1.0), kl_divergence(p, q))
    assert torch.isclose(fb.alpha_divergence(p, q, 1.0), kl_divergence(q, p))
    # alpha -> +-1 is continuous
    assert abs(fb.alpha_divergence(p, q, -1 + 1e-7).item() - kl_divergence(p, q).item()) < 1e-6
    # alpha = 0: four times the squared Hellinger distance of two normals
    s1, s2, dm = 1.0, 2.0, 1.0
    h2 = 1 - math.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * math.exp(-(dm**2) / (4 * (s1**2 + s2**2)))
    assert abs(fb.alpha_divergence(p, q, 0.0).item() - 4 * h2) < 1e-12
    # duality D_alpha(p||q) = D_-alpha(q||p)
    for a in (0.3, 0.9, 1.5):
        assert torch.isclose(fb.alpha_divergence(p, q, a), fb.alpha_divergence(q, p, -a))


@pytest.mark.parametrize("alpha", [-0.8, 0.0, 0.4, 0.95])
def test_alpha_divergence_closed_form_against_quadrature(alpha):
    pairs = [
        (Normal(t(0.3), t(1.2)), Normal(t(-1.0), t(0.6)), None),
        (Gamma(t(2.0), t(1.0)), Gamma(t(3.5), t(0.4)), (0.0, 80.0)),
        (Poisson(t(2.0)), Poisson(t(5.0)), "poisson"),
        (Binomial(5, t(0.2)), Binomial(5, t(0.7)), "binomial"),
        (Categorical(t([0.2, 0.3, 0.5])), Categorical(t([0.6, 0.3, 0.1])), "categorical"),
    ]
    a = (1 - alpha) / 2
    for p, q, support in pairs:
        if support == "poisson":
            ks = torch.arange(100, dtype=D)
            aff = float((p.log_prob(ks).exp() ** a * q.log_prob(ks).exp() ** (1 - a)).sum())
        elif support in ("binomial", "categorical"):
            ks = torch.arange(6 if support == "binomial" else 3, dtype=D)
            aff = float((p.log_prob(ks).exp() ** a * q.log_prob(ks).exp() ** (1 - a)).sum())
        else:
            lo, hi = support or (-30.0, 30.0)
            f = lambda z: math.exp(a * float(p.log_prob(t(z))) + (1 - a) * float(q.log_prob(t(z))))  # noqa: E731
            aff = integrate.quad(f, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        want = 4 / (1 - alpha**2) * (1 - aff)
        assert abs(fb.alpha_divergence(p, q, alpha).item() - want) < 1e-9


def test_alpha_divergence_by_nodes_for_a_family_without_closed_form():
    p, q = StudentT(t(4.0), t(0.0), t(1.0)), StudentT(t(4.0), t(0.5), t(1.5))
    x, w = gl(-2000.0, 2000.0)
    x2, w2 = gl(-60.0, 60.0)
    # two quadratures of the heavy-tailed integrand: a wide one and a panel rule near the mass
    xs = torch.cat([x2, torch.linspace(60.0, 2000.0, 4000, dtype=D)[1:], -torch.linspace(60.0, 2000.0, 4000, dtype=D)[1:]])
    ws = torch.cat([w2, torch.full((3999,), 1940 / 3999, dtype=D), torch.full((3999,), 1940 / 3999, dtype=D)])
    f = lambda z: math.sqrt(math.exp(float(p.log_prob(t(z))) + float(q.log_prob(t(z)))))  # noqa: E731
    want = 4 * (1 - integrate.quad(f, -np.inf, np.inf, epsabs=1e-12)[0])
    got = fb.alpha_divergence(p, q, 0.0, x=xs, weights=ws)
    assert abs(got.item() - want) < 1e-6  # the coarse tail panels: (tail mass ~ 1e-5) x (relative error)
    del x, w


@pytest.mark.parametrize("alpha", [-1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
def test_alpha_divergence_local_expansion_is_half_the_fisher_form(alpha):
    p = Normal(t(0.2), t(1.1))
    info = fb.fisher_information(p)
    v = t([0.6, 0.8])
    hs = 0.05 / 2.0 ** torch.arange(6, dtype=D)
    errs = []
    for h in hs:
        q = Normal(t(0.2) + h * v[0], t(1.1) + h * v[1])
        errs.append(abs(fb.alpha_divergence(p, q, alpha).item() - 0.5 * h.item() ** 2 * float(v @ info @ v)))
    slope = np.polyfit(np.log(hs.numpy()), np.log(errs), 1)[0]
    assert abs(slope - 3) < 0.1  # the third-order remainder (its coefficient involves T and alpha)


@settings(max_examples=30, deadline=None)
@given(st.floats(-0.99, 0.99), st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_alpha_divergence_bernoulli_is_nonnegative_and_zero_on_the_diagonal(alpha, p1, p2):
    d = fb.alpha_divergence(Bernoulli(t(p1)), Bernoulli(t(p2)), alpha).item()
    a = (1 - alpha) / 2
    want = 4 / (1 - alpha**2) * (1 - (p1**a * p2 ** (1 - a) + (1 - p1) ** a * (1 - p2) ** (1 - a)))
    assert d >= 0 and abs(d - want) < 1e-9 * max(1.0, abs(want))
    # round-off of the log-affinity (a few eps) is amplified by 4 / (1 - alpha^2)
    assert 0 <= fb.alpha_divergence(Bernoulli(t(p1)), Bernoulli(t(p1)), alpha).item() < 50 * 2.2e-16 * 4 / (1 - alpha**2)


# ----------------------------------------------------------------------------- multivariate normal / SPD


def random_spd(gen, k):
    A = torch.randn(k, k, generator=gen, dtype=D)
    return A @ A.T + 0.5 * torch.eye(k, dtype=D)


def test_mvn_metric_is_the_hessian_of_kl():
    gen = torch.Generator().manual_seed(3)
    for k in (1, 2, 3):
        mu, S = torch.randn(k, generator=gen, dtype=D), random_spd(gen, k)
        th0 = fb.mvn_coordinates(mu, S)

        def kl(th, k=k, mu=mu, S=S):
            m, C = fb.mvn_from_coordinates(th, k)
            return kl_divergence(MultivariateNormal(mu, S), MultivariateNormal(m, C))

        H = torch.autograd.functional.hessian(kl, th0)
        assert torch.allclose(H, fb.mvn_fisher_metric(k)(th0), atol=1e-10)


def test_mvn_metric_for_k_1_is_the_normal_metric_in_mu_and_variance():
    G = fb.mvn_fisher_metric(1)(t([0.3, 4.0]))
    assert torch.allclose(G, torch.diag(t([1 / 4.0, 1 / (2 * 16.0)])))


def test_spd_distance_properties():
    gen = torch.Generator().manual_seed(1)
    S1, S2, S3 = (random_spd(gen, 3) for _ in range(3))
    d = fb.spd_fisher_distance
    A = torch.randn(3, 3, generator=gen, dtype=D) + 3 * torch.eye(3, dtype=D)
    assert torch.isclose(d(S1, S2), d(S2, S1))
    assert torch.isclose(d(S1, S2), d(A @ S1 @ A.T, A @ S2 @ A.T))  # affine invariance
    assert torch.isclose(d(S1, S2), d(torch.linalg.inv(S1), torch.linalg.inv(S2)))  # inversion is an isometry
    assert d(S1, S3) <= d(S1, S2) + d(S2, S3) + 1e-12
    assert d(S1, S1) < 1e-7
    # k = 1: the vertical distance of the normal half-plane, sqrt(2) |log(s2 / s1)|
    assert abs(d(t([[4.0]]), t([[9.0]])).item() - math.sqrt(2) * math.log(3 / 2)) < 1e-14


def test_spd_geodesic_has_constant_speed_and_matches_the_bvp():
    gen = torch.Generator().manual_seed(2)
    S1, S2 = random_spd(gen, 2), random_spd(gen, 2)
    ts = torch.linspace(0, 1, 11, dtype=D)
    path = fb.spd_geodesic(S1, S2, ts)
    assert torch.allclose(path[0], S1) and torch.allclose(path[-1], S2)
    total = fb.spd_fisher_distance(S1, S2)
    for i in range(10):
        assert torch.isclose(fb.spd_fisher_distance(path[i], path[i + 1]), total / 10, rtol=1e-9)
    bvp = fb.geodesic(fb.mvn_fisher_metric(2, mean=False), fb.mvn_coordinates(None, S1), fb.mvn_coordinates(None, S2))
    assert abs(bvp.length - total.item()) < 1e-6
    _, on_bvp = fb.mvn_from_coordinates(bvp(ts.numpy()), 2, mean=False)
    assert torch.allclose(on_bvp, path, atol=1e-5)


@pytest.mark.slow
def test_mvn_mean_free_distance_between_its_bounds_and_equal_to_the_univariate_case():
    G = fb.mvn_fisher_metric(2)
    S1, S2 = t([[2.0, 0.6], [0.6, 1.0]]), t([[0.5, -0.3], [-0.3, 1.5]])
    mu1, mu2 = t([0.0, 0.0]), t([1.0, -0.5])
    d = fb.geodesic(G, fb.mvn_coordinates(mu1, S1), fb.mvn_coordinates(mu2, S2)).length
    fixed = fb.spd_fisher_distance(S1, S2).item()
    dm = mu2 - mu1
    path = fixed + min(math.sqrt(float(dm @ torch.linalg.solve(S, dm))) for S in (S1, S2))
    assert fixed < d < path
    # a mean shift along an axis with unit covariance: the univariate half-plane distance
    I2 = torch.eye(2, dtype=D)
    d_axis = fb.geodesic(G, fb.mvn_coordinates(t([0.0, 0.0]), I2), fb.mvn_coordinates(t([3.0, 0.0]), I2)).length
    assert abs(d_axis - fb.fisher_rao_distance(Normal(t(0.0), t(1.0)), Normal(t(3.0), t(1.0))).item()) < 1e-6


# ----------------------------------------------------------------------------- canonical divergence, projections


def test_canonical_divergence_is_reverse_kl_and_bregman():
    pairs = [(Normal(t(0.3), t(1.2)), Normal(t(-1.0), t(0.6))), (Gamma(t(2.0), t(1.0)), Gamma(t(3.5), t(0.4))),
             (Binomial(5, t(0.2)), Binomial(5, t(0.7)))]
    for p, q in pairs:
        assert torch.isclose(fb.canonical_divergence(p, q), kl_divergence(q, p).to(D), rtol=1e-10)
        psi = lambda th, p=p: fb.log_partition(p, th)  # noqa: E731
        breg = fb.bregman_divergence(psi, fb.natural_parameters(p), fb.natural_parameters(q))
        assert torch.isclose(fb.canonical_divergence(p, q), breg, rtol=1e-10)


def test_e_projection_dual_pythagoras_and_max_entropy():
    p = t([0.1, 0.2, 0.3, 0.25, 0.15])
    T = torch.arange(5, dtype=D)
    q, lam = fb.e_projection(p, T, 1.2)
    assert abs(float(q @ T) - 1.2) < 1e-12
    assert torch.allclose(q, torch.softmax(p.log() + lam * T, 0))  # exponential tilt
    kl = lambda a, b: float((a * (a / b).log()).sum())  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # random members r of M = {E_r[T] = 1.2}: mix q with a direction in the null space
        v = torch.randn(5, generator=gen, dtype=D)
        basis = torch.stack([torch.ones(5, dtype=D), T])
        v = v - basis.T @ torch.linalg.solve(basis @ basis.T, basis @ v)
        r = q + 0.5 * v * float(q.min() / v.abs().max())
        assert abs(kl(r, p) - kl(r, q) - kl(q, p)) < 1e-12
    # uniform p: maximum entropy under the moment constraint, higher than any other member
    u = torch.full((6,), 1 / 6, dtype=D)
    die, _ = fb.e_projection(u, torch.arange(1.0, 7.0), 4.5)
    ent = lambda a: -float((a * a.log()).sum())  # noqa: E731
    other = die + 0.01 * t([1.0, -2.0, 1.0, 0.0, 0.0, 0.0])
    assert ent(die) > ent(other)


# ----------------------------------------------------------------------------- em


@pytest.mark.parametrize("seed", [0, 1])
def test_em_and_alternating_projections_give_identical_iterates(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(30, generator=gen, dtype=D) * 0.7 - 1.5, torch.randn(20, generator=gen, dtype=D) + 2.0])
    init = ([0.3, 0.7], [-0.2, 0.4], [1.5, 1.5])
    a = fb.gaussian_mixture_em(x, *init, n_iter=8)
    b = fb.gaussian_mixture_em(x, *init, n_iter=8, method="projections")
    for f in ("weights", "means", "scales", "log_likelihood"):
        assert torch.allclose(getattr(a, f), getattr(b, f), atol=1e-10, rtol=0)
    assert bool((a.log_likelihood.diff() >= -1e-12).all())  # each projection can only lower the divergence


def test_em_fixed_point_is_a_stationary_point_of_the_likelihood():
    gen = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(150, generator=gen, dtype=D) - 2.0, 0.5 * torch.randn(100, generator=gen, dtype=D) + 1.5])
    fit = fb.gaussian_mixture_em(x, [0.5, 0.5], [-1.0, 1.0], [1.0, 1.0], n_iter=300)
    w, m, s = fit.weights[-1], fit.means[-1], fit.scales[-1]
    th = torch.cat([w[:1].logit(), m, s.log()]).requires_grad_(True)

    def loglik(th):
        ww = torch.cat([th[:1].sigmoid(), 1 - th[:1].sigmoid()])
        return torch.logsumexp(ww.log() + Normal(th[1:3], th[3:].exp()).log_prob(x[:, None]), -1).mean()

    (g,) = torch.autograd.grad(loglik(th), th)
    assert g.abs().max() < 1e-8
