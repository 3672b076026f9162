"""Bhattacharyya and Hammersley–Chapman–Robbins bounds, and the chi-square divergence behind the
latter: quadrature against closed forms, scipy quadrature, Monte Carlo and the Cramér–Rao bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from torch.distributions import Cauchy, Exponential, Gamma, Gumbel, Normal, Uniform

import fisherbook as fb

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def gamma_sum(n):
    """The sufficient statistic of n Exponential(lam) draws: Gamma(n, lam)."""
    return lambda lam: Gamma(t(float(n)), lam)


# ----------------------------------------------------------------------------- Bhattacharyya


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 400), st.floats(1e-3, 1e3))
def test_bhattacharyya_order_two_exponential_rate_closed_form(n, lam):
    # B = [[n/l^2, -2n/l^3], [-2n/l^3, (2n^2 + 6n)/l^4]]  =>  [B^-1]_11 = l^2 (n+3) / (n (n+1))
    B = fb.bhattacharyya_matrix(gamma_sum(n), lam, 2)
    exact = torch.tensor([[n / lam**2, -2 * n / lam**3], [-2 * n / lam**3, (2 * n**2 + 6 * n) / lam**4]], dtype=D)
    assert torch.allclose(B, exact, rtol=1e-8, atol=0)
    bound = fb.bhattacharyya_bound(gamma_sum(n), lam, 2)
    assert math.isclose(float(bound), lam**2 * (n + 3) / (n * (n + 1)), rel_tol=1e-8)


@pytest.mark.parametrize(
    "family, theta, info",
    [
        (lambda m: Normal(m, t(2.0)), 0.7, 0.25),           # 1/sigma^2
        (lambda s: Normal(t(0.0), s), 1.5, 2 / 1.5**2),      # 2/sigma^2
        (lambda lam: Exponential(lam), 3.0, 1 / 9.0),        # 1/lam^2
        (lambda m: Cauchy(m, t(1.0)), 0.0, 0.5),             # 1/(2 gamma^2), heavy tails
        (lambda m: Gumbel(m, t(1.0)), 1.0, 1.0),             # 1/beta^2
    ],
)
def test_bhattacharyya_order_one_is_the_cramer_rao_bound(family, theta, info):
    B = fb.bhattacharyya_matrix(family, theta, 1)
    assert math.isclose(float(B[0, 0]), info, rel_tol=1e-8)
    assert math.isclose(float(fb.bhattacharyya_bound(family, theta, 1)), float(fb.crlb(info)), rel_tol=1e-8)


def test_bhattacharyya_normal_location_matrix_is_hermite():
    # r_k = He_k(z) / sigma^k for N(mu, sigma): B = diag(k! / sigma^(2k)), orthogonal Hermite polynomials
    sigma = 1.7
    B = fb.bhattacharyya_matrix(lambda m: Normal(m, t(sigma)), -0.3, 4)
    exact = torch.diag(torch.tensor([math.factorial(k) / sigma ** (2 * k) for k in range(1, 5)], dtype=D))
    assert torch.allclose(B, exact, rtol=1e-8, atol=1e-10)


def test_bhattacharyya_matrix_against_monte_carlo():
    # r1 = n/l - S, r2 = (n/l - S)^2 - n/l^2 for S ~ Gamma(n, l): Monte-Carlo averages within 5 s.e.
    n, lam, reps = 6, 1.5, 400_000
    g = torch.Generator().manual_seed(11)
    S = torch._standard_gamma(torch.full((reps,), float(n), dtype=D), generator=g) / lam
    r1 = n / lam - S
    r2 = r1**2 - n / lam**2
    prods = torch.stack([r1 * r1, r1 * r2, r2 * r2])
    mean, se = prods.mean(-1), prods.std(-1) / math.sqrt(reps)
    B = fb.bhattacharyya_matrix(gamma_sum(n), lam, 2)
    assert (torch.abs(mean - torch.stack([B[0, 0], B[0, 1], B[1, 1]])) < 5 * se).all()


def test_bhattacharyya_bounds_increase_towards_the_umvu_variance():
    n, lam = 8, 2.0
    bounds = [float(fb.bhattacharyya_bound(gamma_sum(n), lam, k)) for k in range(1, 6)]
    umvu = lam**2 / (n - 2)  # Var((n-1)/S), the smallest variance of any unbiased estimator
    assert all(a < b for a, b in zip(bounds, bounds[1:]))
    assert bounds[-1] < umvu
    assert umvu - bounds[-1] < 0.05 * (umvu - bounds[0])  # order 5 closes 95 % of the gap


def test_bhattacharyya_g_derivatives():
    # g = 1/lam (the mean): (g', g'') = (-1/l^2, 2/l^3); S/n is unbiased and efficient, so every order is mu^2/n
    n, lam = 10, 2.0
    for k in (1, 2, 3):
        gd = [-1 / lam**2, 2 / lam**3, -6 / lam**4][:k]
        b = fb.bhattacharyya_bound(gamma_sum(n), lam, k, g_derivatives=gd)
        assert math.isclose(float(b), 1 / (lam**2 * n), rel_tol=1e-7)


# ----------------------------------------------------------------------------- chi-square divergence


@pytest.mark.parametrize(
    "p, q, exact",
    [
        (Normal(t(0.5), t(2.0)), Normal(t(0.0), t(2.0)), math.expm1(0.25 / 4)),  # exp(d^2/s^2) - 1
        (Exponential(t(1.5)), Exponential(t(2.0)), 1.5**2 / (2.0 * (2 * 1.5 - 2.0)) - 1),  # a^2/(b(2a-b)) - 1
        (Uniform(t(0.0), t(1.5)), Uniform(t(0.0), t(2.0)), 2.0 / 1.5 - 1),
        (Cauchy(t(1.0), t(1.0)), Cauchy(t(0.0), t(1.0)), 0.5),                    # d^2 / (2 gamma^2)
        (Normal(t(0.0), t(1e-3)), Normal(t(0.0), t(1e-3)), 0.0),
    ],
)
def test_chi_square_closed_forms(p, q, exact):
    assert abs(float(fb.chi_square_divergence(p, q)) - exact) <= 1e-9 * max(1.0, exact) + 1e-14


def test_chi_square_against_scipy_quad():
    p, q = Gamma(t(3.0), t(1.2)), Gamma(t(2.5), t(1.0))

    def f(x):
        xt = t(x)
        return float(torch.exp(2 * p.log_prob(xt) - q.log_prob(xt)))

    ref = integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0] - 1
    assert math.isclose(float(fb.chi_square_divergence(p, q)), ref, rel_tol=1e-8)


def test_chi_square_infinite_cases():
    assert math.isinf(float(fb.chi_square_divergence(Uniform(t(0.0), t(2.0)), Uniform(t(0.0), t(1.0)))))
    assert math.isinf(float(fb.chi_square_divergence(Exponential(t(0.9)), Exponential(t(2.0)))))  # 2a <= b
    assert math.isinf(float(fb.chi_square_divergence(Normal(t(0.0), t(3.0)), Normal(t(0.0), t(1.0)))))  # s_p^2 >= 2 s_q^2


# ----------------------------------------------------------------------------- Hammersley–Chapman–Robbins


def _grid_sup(fn, lo, hi, m=400_001):
    h = np.linspace(lo, hi, m)
    h = h[h != 0]
    v = fn(h)
    return float(np.nanmax(v))


@pytest.mark.parametrize("n", [1, 100, pytest.param(1000, marks=pytest.mark.slow)])
def test_hcr_uniform_matches_the_closed_form_and_has_order_one_over_n_squared(n):
    theta = 2.0
    b = float(fb.hcr_bound(lambda th: Uniform(t(0.0), th), theta, n=n))
    # chi^2_n = (theta/(theta+h))^n - 1 for -theta < h < 0 (h > 0: support leaves [0, theta], chi^2 = inf)
    with np.errstate(over="ignore"):  # (theta/(theta+h))^n overflows to inf near h = -theta: ratio 0 there
        exact = _grid_sup(lambda h: h**2 / ((theta / (theta + h)) ** n - 1), -theta * (1 - 1e-9), -1e-12)
    assert math.isclose(b, exact, rel_tol=1e-6)
    assert b <= theta**2 / (n * (n + 2)) * (1 + 1e-12)  # below the UMVU variance, as a bound must be
    if n == 1000:  # n^2 b / theta^2 -> max_c c^2 / (e^c - 1) = 0.6476...
        c = np.linspace(0.01, 5, 1_000_001)
        assert math.isclose(b * n**2 / theta**2, float(np.max(c**2 / np.expm1(c))), rel_tol=2e-3)


@pytest.mark.parametrize("n", [10, pytest.param(2, marks=pytest.mark.slow), pytest.param(50, marks=pytest.mark.slow)])
def test_hcr_exponential_matches_closed_form_between_crlb_and_umvu(n):
    lam = 2.0
    b = float(fb.hcr_bound(lambda rate: Exponential(rate), lam, n=n))
    # 1 + chi^2 = (lam+h)^2 / (lam (lam + 2h)) per observation, finite for h > -lam/2
    exact = _grid_sup(lambda h: h**2 / (((lam + h) ** 2 / (lam * (lam + 2 * h))) ** n - 1), -lam / 2 * (1 - 1e-6), lam)
    assert math.isclose(b, exact, rel_tol=1e-5)
    assert lam**2 / n < b
    if n > 2:
        assert b < lam**2 / (n - 2)


def test_hcr_regular_family_tends_to_the_cramer_rao_bound():
    sigma, n = 1.5, 7
    b = fb.hcr_bound(lambda m: Normal(m, t(sigma)), 0.3, n=n)
    assert math.isclose(float(b), sigma**2 / n, rel_tol=1e-6)  # h^2/(exp(n h^2/s^2) - 1) increases to s^2/n as h -> 0
    b2 = fb.hcr_bound(lambda m: Normal(m, t(sigma)), 0.3, n=n, g=lambda m: 3 * m)
    assert math.isclose(float(b2), 9 * sigma**2 / n, rel_tol=1e-6)


def test_hcr_custom_shifts():
    lam, n = 2.0, 10
    hs = torch.linspace(-0.9, 0.9, 19, dtype=D)
    hs = hs[hs != 0]
    b = float(fb.hcr_bound(lambda r: Exponential(r), lam, n=n, shifts=hs))
    full = float(fb.hcr_bound(lambda r: Exponential(r), lam, n=n))
    assert b <= full * (1 + 1e-9)
    assert b > lam**2 / n  # a coarse grid already beats the Cramér–Rao bound here
