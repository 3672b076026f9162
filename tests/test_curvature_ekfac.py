"""EKFAC (fisherbook.curvature.ekfac, module curvature/eigencorrection.py) against the dense Fisher: its scalings are the exact Fisher's
diagonal in the Kronecker eigenbasis (the Frobenius-optimal diagonal there), it is never farther
from the exact block than K-FAC, and every operator method agrees with its dense matrix."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fisherbook as fb
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, ShapeError, UnsupportedError

DT = torch.float64


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)


class TinyCNN(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 2, 2, stride=2, bias=False)
        self.head = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.conv2(torch.tanh(self.conv(x)))).flatten(1))


def blocks(E):
    """Flat index of each layer's augmented weight (the EKFAC block order)."""
    return E._index


@pytest.mark.parametrize("make, shape", [(mlp, (30, 4)), (TinyCNN, (12, 1, 4, 4))])
@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_scalings_are_the_exact_fishers_diagonal_in_the_kronecker_eigenbasis(make, shape, likelihood):
    model = make(1).to(DT)
    X = torch.randn(*shape, dtype=DT)
    E = fb.curvature.ekfac(model, X, likelihood=likelihood)
    F = fb.curvature.fisher(model, X, likelihood=likelihood).to_dense()
    K = fb.curvature.fisher(model, X, likelihood=likelihood, representation="kfac")
    for (qa, qg), s, idx, (a, g), (ka, kg) in zip(E.bases, E.scalings, blocks(E), E.factors, K.factors):
        torch.testing.assert_close(a, ka)  # the factors are K-FAC's
        torch.testing.assert_close(g, kg)
        q = torch.kron(qg, qa)
        block = F[idx.unsqueeze(1), idx.unsqueeze(0)]
        torch.testing.assert_close(s.reshape(-1), (q.T @ block @ q).diagonal(), rtol=1e-9, atol=1e-12)
        # optimal: any other diagonal in that basis (K-FAC's eigenvalue products, a perturbation) is farther
        ea, eg = torch.linalg.eigvalsh(a), torch.linalg.eigvalsh(g)
        err = torch.linalg.matrix_norm(block - (q * s.reshape(-1)) @ q.T)
        kron = torch.linalg.matrix_norm(block - (q * torch.outer(eg, ea).reshape(-1)) @ q.T)
        other = torch.linalg.matrix_norm(block - (q * (s.reshape(-1) * 1.1)) @ q.T)
        assert err <= kron + 1e-12 and err < other
        torch.testing.assert_close(kron, torch.linalg.matrix_norm(block - torch.kron(g, a)))


def test_never_farther_from_the_exact_fisher_than_kfac_on_random_networks():
    for seed in range(4):
        model = mlp(seed)
        X = 2 * torch.randn(50, 4, dtype=DT)
        F = fb.curvature.fisher(model, X).to_dense()
        E = fb.curvature.ekfac(model, X)
        K = fb.curvature.fisher(model, X, representation="kfac")
        mask = K.to_dense() != 0
        assert torch.linalg.matrix_norm((F - E.to_dense()) * mask) < torch.linalg.matrix_norm((F - K.to_dense()) * mask)


def test_one_example_linear_layer_is_exact():
    """One example: the block is b b^T ⊗ a a^T summed over output factors, which K-FAC matches
    (theorem of Chapter 5), and EKFAC with it."""
    layer = nn.Linear(3, 2).to(DT)
    x = torch.randn(1, 3, dtype=DT)
    torch.testing.assert_close(fb.curvature.ekfac(layer, x).to_dense(), fb.curvature.fisher(layer, x).to_dense())


@pytest.mark.parametrize("make, shape", [(mlp, (20, 4)), (TinyCNN, (6, 1, 4, 4))])
def test_operator_methods_agree_with_the_dense_matrix(make, shape):
    model = make(2).to(DT)
    E = fb.curvature.ekfac(model, torch.randn(*shape, dtype=DT), kind="mc", generator=torch.Generator().manual_seed(0))
    M = E.to_dense()
    p = E.num_params
    torch.testing.assert_close(M, M.T)
    assert torch.linalg.eigvalsh(M).min() > -1e-10
    v, V = torch.randn(p, dtype=DT), torch.randn(p, 3, dtype=DT)
    torch.testing.assert_close(E @ v, M @ v)
    torch.testing.assert_close(v @ E, M @ v)
    torch.testing.assert_close(E @ V, M @ V)
    torch.testing.assert_close(E.diag(), M.diagonal())
    torch.testing.assert_close(E.trace(), M.trace())
    torch.testing.assert_close(E.frobenius_norm(), torch.linalg.matrix_norm(M))
    torch.testing.assert_close(E.vTMv(v), v @ M @ v)
    lam = 0.05
    eye = torch.eye(p, dtype=DT)
    torch.testing.assert_close(E.solve(V, damping=lam), torch.linalg.solve(M + lam * eye, V))
    torch.testing.assert_close(E.inverse(damping=lam).to_dense(), torch.linalg.inv(M + lam * eye))
    torch.testing.assert_close(E.logdet(damping=lam), torch.linalg.slogdet(M + lam * eye)[1])
    torch.testing.assert_close((2.5 * E).to_dense(), 2.5 * M)
    torch.testing.assert_close((E + E).to_dense(), 2 * M)
    assert isinstance(E + E, fb.curvature.EKFAC)
    D = fb.curvature.fisher(model, torch.randn(*shape, dtype=DT), representation="diagonal")
    torch.testing.assert_close((E + D).to_dense(), M + D.to_dense())
    torch.testing.assert_close((-E).to_dense(), -M)


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(1e-3, 1e3), lam=st.floats(1e-6, 1e2), seed=st.integers(0, 10_000))
def test_solve_inverts_the_damped_matrix_over_scales(scale, lam, seed):
    model = mlp(seed % 7)
    X = scale * torch.randn(15, 4, dtype=DT, generator=torch.Generator().manual_seed(seed))
    E = fb.curvature.ekfac(model, X, likelihood="gaussian")
    v = torch.randn(E.num_params, dtype=DT, generator=torch.Generator().manual_seed(seed + 1))
    x = E.solve(v, damping=lam)
    res = torch.linalg.vector_norm(E @ x + lam * x - v) / torch.linalg.vector_norm(v)
    assert math.isfinite(float(res)) and res < 1e-8


def test_batches_give_the_one_tensor_result():
    model = TinyCNN(3).to(DT)
    X = torch.randn(18, 1, 4, 4, dtype=DT)
    one = fb.curvature.ekfac(model, X)
    loader = DataLoader(TensorDataset(X), batch_size=5)
    many = fb.curvature.ekfac(model, loader)
    torch.testing.assert_close(many.to_dense(), one.to_dense())
    gen = fb.curvature.ekfac(model, (X[i:i + 6] for i in range(0, 18, 6)))  # a one-shot iterator
    torch.testing.assert_close(gen.to_dense(), one.to_dense())


def test_given_bases_and_kfac_statistics_share_one_pass():
    model = mlp(4)
    X = torch.randn(25, 4, dtype=DT)
    E = fb.curvature.ekfac(model, X, kind="mc", generator=torch.Generator().manual_seed(5))
    factors, scalings = fb.curvature.kfac_statistics(model, X, kind="mc", generator=torch.Generator().manual_seed(5),
                                                     bases=E.bases)
    K = fb.curvature.fisher(model, X, kind="mc", representation="kfac", generator=torch.Generator().manual_seed(5))
    for (a, g), (ka, kg), s, es in zip(factors, K.factors, scalings, E.scalings):
        torch.testing.assert_close(a, ka)
        torch.testing.assert_close(g, kg)
        torch.testing.assert_close(s, es)
    again = fb.curvature.ekfac(model, X, kind="mc", generator=torch.Generator().manual_seed(5), bases=E.bases)
    assert again.factors is None
    torch.testing.assert_close(again.to_dense(), E.to_dense())


def test_empirical_kind_matches_the_dense_empirical_fisher_in_the_basis():
    model = mlp(6)
    X, y = torch.randn(30, 4, dtype=DT), torch.randint(0, 3, (30,))
    E = fb.curvature.ekfac(model, X, kind="empirical", targets=y)
    F = fb.curvature.fisher(model, X, kind="empirical", targets=y).to_dense()
    for (qa, qg), s, idx in zip(E.bases, E.scalings, blocks(E)):
        q = torch.kron(qg, qa)
        torch.testing.assert_close(s.reshape(-1), (q.T @ F[idx.unsqueeze(1), idx.unsqueeze(0)] @ q).diagonal())


def test_bad_input():
    model = mlp()
    X = torch.randn(5, 4, dtype=DT)
    with pytest.raises(UnsupportedError, match="ekfac"):
        fb.curvature.ekfac(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).to(DT), X)
    with pytest.raises(InvalidArgumentError, match="kind"):
        fb.curvature.ekfac(model, X, kind="exact")
    with pytest.raises(InvalidArgumentError, match="targets"):
        fb.curvature.ekfac(model, X, kind="empirical")
    with pytest.raises(ShapeError, match="bases"):
        fb.curvature.ekfac(model, X, bases=[(torch.eye(5, dtype=DT), torch.eye(5, dtype=DT))])
    with pytest.raises(ArgumentTypeError, match="inputs"):
        fb.curvature.ekfac(model, "data")
    with pytest.raises(ShapeError):
        fb.curvature.ekfac(model, X[:0])
    E = fb.curvature.ekfac(model, X)
    with pytest.raises(InvalidArgumentError, match="damping"):
        E.solve(torch.zeros(E.num_params, dtype=DT), damping=-1.0)
    with pytest.raises(ShapeError):
        E @ torch.zeros(3, dtype=DT)
