"""Tests for fisherbook.curvature.spectrum: Lanczos, top eigenpairs, SLQ and Hutchinson against dense results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import eigsh
from torch import nn

import fisherbook as fb
from fisherbook.curvature.spectrum import (
    as_linear_operator,
    as_operator,
    hutchinson_trace,
    lanczos,
    spectral_density,
    top_eigenpairs,
)
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, ShapeError

D = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _psd(n: int, seed: int, rank: int | None = None, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, rank or n, generator=g, dtype=D)
    return scale * b @ b.T / n


def _sym(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, n, generator=g, dtype=D)
    return (b + b.T) / 2


def _fisher(seed: int = 0, n: int = 40):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=D)
    return net, x


@given(n=st.integers(2, 40), seed=st.integers(0, 10_000))
@SETTINGS
def test_full_lanczos_reproduces_the_spectrum(n, seed):
    # m = P steps with full reorthogonalisation: T is similar to A (restarts handle invariant subspaces)
    a = _sym(n, seed)
    lz = lanczos(a, n, generator=torch.Generator().manual_seed(seed), restart=True)
    assert lz.basis.shape == (n, n)
    ident = lz.basis.T @ lz.basis
    assert torch.allclose(ident, torch.eye(n, dtype=D), atol=1e-10)
    assert torch.allclose(lz.basis.T @ a @ lz.basis, lz.tridiagonal(), atol=1e-9)
    assert torch.allclose(torch.linalg.eigvalsh(lz.tridiagonal()), torch.linalg.eigvalsh(a), atol=1e-9)


def test_lanczos_stops_on_an_invariant_subspace_of_a_low_rank_matrix():
    a = _psd(30, 1, rank=4)  # Krylov space of dimension at most 5 (4 non-zero eigenvalues and 0)
    lz = lanczos(a, 30, generator=torch.Generator().manual_seed(0))
    assert lz.alpha.numel() == 5
    ritz = torch.linalg.eigvalsh(lz.tridiagonal())
    exact = torch.linalg.eigvalsh(a)
    assert torch.allclose(ritz[1:], exact[-4:], rtol=1e-9)
    assert abs(ritz[0]) < 1e-10
    full = lanczos(a, 30, generator=torch.Generator().manual_seed(0), restart=True)
    assert torch.allclose(torch.linalg.eigvalsh(full.tridiagonal()), exact, atol=1e-10)
    assert int((full.beta == 0).sum()) >= 1  # restarts are recorded as zeros


@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), scale=st.sampled_from([1e-6, 1.0, 1e6]))
@SETTINGS
def test_top_eigenpairs_match_eigvalsh_on_a_spread_spectrum(seed, k, scale):
    # a Fisher-like spectrum: a few outliers over a bulk near zero, at widely different scales
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(120, 120, generator=g, dtype=D))
    lam = torch.cat([torch.tensor([50.0, 30.0, 20.0, 12.0, 8.0, 5.0], dtype=D), torch.rand(114, generator=g, dtype=D)])
    a = scale * (q * lam) @ q.T
    res = top_eigenpairs(a, k, generator=g)
    exact = torch.linalg.eigvalsh(a).flip(0)[:k]
    assert torch.allclose(res.values, exact, rtol=1e-8)
    # eigenvectors: residual small and each matches the exact one up to sign
    assert bool((res.residuals <= 1e-6 * scale * 50).all())
    exact_vecs = q[:, :k]
    assert torch.allclose((res.vectors.T @ exact_vecs).diagonal().abs(), torch.ones(k, dtype=D), atol=1e-6)


def test_top_eigenpairs_on_every_fisher_representation_and_scipy_agree():
    net, x = _fisher()
    dense = fb.curvature.fisher(net, x).to_dense()
    exact = torch.linalg.eigvalsh(dense).flip(0)[:5]
    for rep in ("dense", "matrix_free"):
        F = fb.curvature.fisher(net, x, representation=rep)
        vals = top_eigenpairs(F, 5, generator=torch.Generator().manual_seed(0)).values
        assert torch.allclose(vals, exact, rtol=1e-8), rep
    kf = fb.curvature.fisher(net, x, representation="kfac")
    kvals = top_eigenpairs(kf, 3, generator=torch.Generator().manual_seed(0)).values
    assert torch.allclose(kvals, torch.linalg.eigvalsh(kf.to_dense()).flip(0)[:3], rtol=1e-8)
    sv = np.sort(eigsh(as_linear_operator(fb.curvature.fisher(net, x, representation="matrix_free")), k=5,
                       which="LA", return_eigenvectors=False))[::-1]
    assert np.allclose(sv, exact.numpy(), rtol=1e-8)


def test_callable_operator_needs_size_and_matches_tensor():
    a = _psd(25, 3)
    vals = top_eigenpairs(lambda v: a @ v, 3, size=25, generator=torch.Generator().manual_seed(1)).values
    assert torch.allclose(vals, torch.linalg.eigvalsh(a).flip(0)[:3], rtol=1e-8)
    with pytest.raises(ArgumentTypeError):
        as_operator(lambda v: v)
    with pytest.raises(ShapeError):
        as_operator(a, size=24)
    with pytest.raises(ShapeError):
        as_operator(torch.zeros(3, 4, dtype=D))
    with pytest.raises(ArgumentTypeError):
        as_operator("matrix")


@given(n=st.integers(5, 60), m=st.integers(1, 8), seed=st.integers(0, 10_000))
@SETTINGS
def test_slq_is_gauss_quadrature_exact_for_low_degree_polynomials(n, m, seed):
    # per probe, sum_j tau_j^2 theta_j^k = q1' A^k q1 exactly for k <= 2m - 1
    m = min(m, n)
    a = _sym(n, seed)
    g = torch.Generator().manual_seed(seed)
    sd = spectral_density(a, n_iter=m, n_probes=3, generator=g)
    g = torch.Generator().manual_seed(seed)  # replay the probes
    probes = [torch.randint(0, 2, (n,), generator=g).to(D) * 2 - 1 for _ in range(3)]
    for k in range(0, 2 * m):
        exact = np.mean([float(v @ torch.linalg.matrix_power(a, k) @ v) / n for v in probes])
        assert math.isclose(sd.moment(k), exact, rel_tol=1e-7, abs_tol=1e-7 * float(a.norm(2)) ** k)
    for t, w in zip(sd.nodes, sd.weights):
        assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)


def test_slq_moments_estimate_traces_of_powers_within_their_standard_error():
    a = _psd(200, 4, rank=50)
    n_probes = 60
    sd = spectral_density(a, n_iter=12, n_probes=n_probes, generator=torch.Generator().manual_seed(0))
    for k in (1, 2, 3):
        per_probe = torch.tensor([float((w * t**k).sum()) for t, w in zip(sd.nodes, sd.weights)], dtype=D)
        se = float(per_probe.std()) / math.sqrt(n_probes)
        exact = float(torch.linalg.matrix_power(a, k).trace()) / 200
        assert abs(sd.moment(k) - exact) < 4 * se + 1e-12  # 4 SE: fails with probability < 1e-4
        assert math.isclose(sd.trace(lambda t: t**k), 200 * sd.moment(k), rel_tol=1e-12)
    grid = torch.linspace(-1, 20, 4001, dtype=D)
    dens = sd.density(grid, sigma=0.1)
    assert math.isclose(float(torch.trapezoid(dens, grid)), 1.0, rel_tol=1e-3)  # a probability density


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_is_within_its_standard_error_and_the_se_is_right(distribution):
    a = _psd(60, 5)
    exact = float(a.trace())
    est = hutchinson_trace(a, 400, distribution=distribution, generator=torch.Generator().manual_seed(2))
    assert abs(est.estimate - exact) < 4 * est.stderr
    # the estimated SE matches the known variance of one probe value
    fro2, diag2 = float((a**2).sum()), float((a.diagonal() ** 2).sum())
    var = 2 * (fro2 - diag2) if distribution == "rademacher" else 2 * fro2
    assert math.isclose(est.stderr, math.sqrt(var / 400), rel_tol=0.25)  # SE of an SE from 400 draws: ~4-8 %


def test_hutchinson_on_a_matrix_free_fisher_and_bad_inputs():
    net, x = _fisher(1)
    F = fb.curvature.fisher(net, x, representation="matrix_free")
    est = hutchinson_trace(F, 200, generator=torch.Generator().manual_seed(0))
    assert abs(est.estimate - float(F.trace())) < 4 * est.stderr
    with pytest.raises(InvalidArgumentError):
        hutchinson_trace(F, 1)
    with pytest.raises(InvalidArgumentError):
        hutchinson_trace(F, 5, distribution="uniform")
    with pytest.raises(InvalidArgumentError):
        lanczos(F, F.num_params + 1)
    with pytest.raises(InvalidArgumentError):
        lanczos(F, 3, v0=torch.zeros(F.num_params, dtype=D))
    with pytest.raises(ShapeError):
        lanczos(F, 3, v0=torch.ones(3, dtype=D))
    with pytest.raises(InvalidArgumentError):
        top_eigenpairs(F, 0)
