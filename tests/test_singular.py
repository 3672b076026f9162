"""Tests for fisherbook.bayes.singular: free energy, WBIC and the RLCT against closed forms and quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from fisherbook.bayes.singular import free_energy, rlct_estimate, tempered_mean, wbic, wbic_temperature
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError

D = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _gaussian_mean_grid(x: torch.Tensor, tau: float, m: int = 40001):
    """Energy and log base weights (N(0, tau^2) prior x trapezoid cell) for x_i ~ N(w, 1) on a grid."""
    w = torch.linspace(-8, 8, m, dtype=D)
    n = x.numel()
    sx, sxx = float(x.sum()), float((x**2).sum())
    energy = 0.5 * n * math.log(2 * math.pi) + 0.5 * (sxx - 2 * w * sx + n * w**2)  # sum_i (x_i - w)^2 / 2 + const
    log_prior = -0.5 * math.log(2 * math.pi * tau**2) - 0.5 * w**2 / tau**2
    return w, energy, log_prior + math.log(float(w[1] - w[0]))


@given(n=st.integers(2, 400), tau=st.floats(0.3, 3.0), seed=st.integers(0, 1000))
@SETTINGS
def test_free_energy_and_wbic_of_a_conjugate_gaussian_mean(n, tau, seed):
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + torch.randn(n, generator=g, dtype=D)
    _, energy, log_base = _gaussian_mean_grid(x, tau)
    # exact evidence: x ~ N(0, I + tau^2 11'), whose determinant is 1 + n tau^2 (Sherman-Morrison for the inverse)
    sx, sxx = float(x.sum()), float((x**2).sum())
    exact_f = 0.5 * n * math.log(2 * math.pi) + 0.5 * math.log(1 + n * tau**2) \
        + 0.5 * (sxx - tau**2 * sx**2 / (1 + n * tau**2))
    assert math.isclose(float(free_energy(energy, log_base)), exact_f, rel_tol=1e-9, abs_tol=1e-7)
    # exact tempered mean: posterior N(m, 1/p) with p = beta n + 1/tau^2, m = beta sum(x) / p
    beta = wbic_temperature(n)
    p = beta * n + 1 / tau**2
    mean = beta * float(x.sum()) / p
    exact_wbic = 0.5 * n * math.log(2 * math.pi) + 0.5 * (float(((x - mean) ** 2).sum()) + n / p)
    assert math.isclose(float(wbic(energy, log_base, n)), exact_wbic, rel_tol=1e-9, abs_tol=1e-7)


def test_rlct_of_regular_models_is_half_the_dimension():
    # quadratic energy in d dimensions, flat prior: E_beta[E] = E_min + d / (2 beta) exactly
    g1 = torch.linspace(-4, 4, 401, dtype=D)
    a, b = torch.meshgrid(g1, g1, indexing="ij")
    energy = 300 * (0.5 * a**2 + 0.5 * (a + 2 * b) ** 2) + 7.0
    lam = rlct_estimate(energy, torch.zeros_like(energy), 1 / math.log(300), 1.5 / math.log(300))
    assert abs(float(lam) - 1.0) < 1e-6


def test_rlct_of_the_product_model_ab_is_one_half():
    # E = n (ab)^2 / 2 (truth ab = 0): the RLCT of (ab)^2 is 1/2 with multiplicity 2, not d/2 = 1.
    # Exact tempered means by 1-D quadrature in c = ab, whose prior density for a, b ~ N(0,1) is K0(|c|)/pi.
    n = 10**4

    def mean_energy(beta):
        f = lambda c, k: (n * c * c / 2) ** k * math.exp(-beta * n * c * c / 2) * special.k0(abs(c)) / math.pi  # noqa: E731
        s = 20 / math.sqrt(beta * n)
        z = 2 * integrate.quad(f, 0, s, args=(0,), limit=200)[0]
        return 2 * integrate.quad(f, 0, s, args=(1,), limit=200)[0] / z

    b1, b2 = 1 / math.log(n), 1.5 / math.log(n)
    exact = (mean_energy(b1) - mean_energy(b2)) / (1 / b1 - 1 / b2)
    # the same from the package on a 2-D grid in (a, b)
    g1 = torch.linspace(-6, 6, 2001, dtype=D)
    a, b = torch.meshgrid(g1, g1, indexing="ij")
    energy = n * (a * b) ** 2 / 2
    log_base = -0.5 * (a**2 + b**2) - math.log(2 * math.pi)
    lam = float(rlct_estimate(energy, log_base, b1, b2))
    assert math.isclose(lam, exact, rel_tol=1e-6)  # two quadratures; both converged (finer grids agree to 1e-9)
    # the log log n correction of multiplicity 2 keeps it below 1/2 at finite n, far from BIC's 1
    assert 0.3 < lam < 0.5


def test_tempered_mean_limits_and_bad_input():
    e = torch.tensor([3.0, 1.0, 2.0], dtype=D)
    z = torch.zeros(3, dtype=D)
    assert math.isclose(float(tempered_mean(e, z, 0.0)), 2.0)
    assert math.isclose(float(tempered_mean(e, z, 1e4)), 1.0)  # beta -> inf: the minimum
    assert math.isclose(float(tempered_mean(e, torch.tensor([0.0, -math.inf, 0.0], dtype=D), 0.0)), 2.5)
    with pytest.raises(ShapeError):
        tempered_mean(e, z[:2], 1.0)
    with pytest.raises(ArgumentTypeError):
        tempered_mean([1.0], z, 1.0)
    with pytest.raises(NonFiniteError):
        free_energy(torch.tensor([math.nan], dtype=D), torch.zeros(1, dtype=D))
    with pytest.raises(InvalidArgumentError):
        tempered_mean(e, z, -1.0)
    with pytest.raises(InvalidArgumentError):
        rlct_estimate(e, z, 0.5, 0.5)
    with pytest.raises(InvalidArgumentError):
        wbic_temperature(1)
