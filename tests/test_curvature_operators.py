"""Operator algebra of the curvature representations, every operation against the dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
from torch import nn

import fisherbook as fb
from fisherbook.curvature import KFAC, Inverse, Scaled, Sum, fisher
from fisherbook.errors import InvalidArgumentError, NotPositiveDefiniteError, ShapeError, UnsupportedError

pytestmark = pytest.mark.usefixtures("one_thread")

REPS = fb.curvature.REPRESENTATIONS
DT = torch.float64
TOL = dict(atol=1e-9, rtol=1e-9)  # dense float64 references; solves of conditioning <= ~1e3


@pytest.fixture(scope="module")
def mats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)).double()
    X = torch.randn(13, 1, 5, 5, dtype=DT)
    return {rep: fisher(model, X, representation=rep) for rep in REPS}


def eye(p):
    return torch.eye(p, dtype=DT)


@pytest.mark.parametrize("rep", REPS)
def test_products_from_both_sides(mats, rep):
    F = mats[rep]
    M = F.to_dense()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(F.num_params, generator=g, dtype=DT)
    V = torch.randn(F.num_params, 3, generator=g, dtype=DT)
    assert torch.allclose(F @ v, M @ v, **TOL)
    assert torch.allclose(v @ F, v @ M, **TOL)
    assert torch.allclose(F @ V, M @ V, **TOL)
    assert torch.allclose(V.T @ F, V.T @ M, **TOL)
    assert F.T is F and F.adjoint() is F
    assert torch.allclose(M, M.T, atol=1e-14, rtol=0)  # the claim behind F.T = F


@pytest.mark.parametrize("rep", REPS)
def test_scalar_multiples(mats, rep):
    F = mats[rep]
    M = F.to_dense()
    for c in (2.0, 0.5, -1.5, np.float32(3.0), torch.tensor(0.25, dtype=DT)):
        for scaled in (c * F, F * c):
            assert torch.allclose(scaled.to_dense(), float(c) * M, **TOL)
    assert torch.allclose((F / 4).to_dense(), M / 4, **TOL)
    assert torch.allclose((-F).to_dense(), -M, **TOL)
    with pytest.raises(InvalidArgumentError, match="zero"):
        F / 0
    with pytest.raises(InvalidArgumentError, match="finite"):
        F * float("nan")
    with pytest.raises(TypeError):
        F * "2"


@pytest.mark.parametrize("a", REPS)
@pytest.mark.parametrize("b", REPS)
def test_sums_same_and_mixed(mats, a, b):
    F, G = mats[a], mats[b]
    S = F + G
    assert torch.allclose(S.to_dense(), F.to_dense() + G.to_dense(), **TOL)
    assert torch.allclose((F - G).to_dense(), F.to_dense() - G.to_dense(), **TOL)
    v = torch.randn(F.num_params, dtype=DT)
    assert torch.allclose(S @ v, F @ v + G @ v, **TOL)
    assert torch.allclose(S.diag(), F.diag() + G.diag(), **TOL)
    expected = {("diagonal", "diagonal"): "Diagonal", ("diagonal", "block_diagonal"): "BlockDiagonal",
                ("block_diagonal", "diagonal"): "BlockDiagonal", ("block_diagonal", "block_diagonal"): "BlockDiagonal"}
    if "dense" in (a, b):
        assert type(S).__name__ == "Dense"
    else:
        assert type(S).__name__ == expected.get((a, b), "Sum")


def test_sum_builtin_and_nested(mats):
    K, D, M = mats["kfac"], mats["diagonal"], mats["matrix_free"]
    S = sum([K, D, M])
    assert isinstance(S, Sum) and len(S.terms) == 3
    assert torch.allclose(S.to_dense(), K.to_dense() + D.to_dense() + M.to_dense(), **TOL)
    assert torch.allclose((2 * S).to_dense(), 2 * S.to_dense(), **TOL)
    assert torch.allclose(S.trace(), S.to_dense().trace(), **TOL)
    other = fisher(nn.Linear(2, 2).double(), torch.randn(3, 2, dtype=DT))
    with pytest.raises(ShapeError, match="shapes"):
        K + other


ALL = (*REPS, "sum", "scaled")


def get(mats, name):
    if name == "sum":
        return mats["kfac"] + 0.5 * mats["diagonal"]
    if name == "scaled":
        return 3.0 * mats["matrix_free"]
    return mats[name]


@pytest.mark.parametrize("name", ALL)
def test_scalar_summaries(mats, name):
    F = get(mats, name)
    M = F.to_dense()
    v = torch.randn(F.num_params, dtype=DT)
    V = torch.randn(F.num_params, 4, dtype=DT)
    assert torch.allclose(F.vTMv(v), v @ M @ v, **TOL) and F.vTMv(v).dim() == 0
    assert torch.allclose(F.vTMv(V), torch.einsum("pk,pq,qk->k", V, M, V), **TOL)
    assert torch.allclose(F.frobenius_norm(), torch.linalg.matrix_norm(M), **TOL)
    assert torch.allclose(F.trace(), M.trace(), **TOL)
    assert torch.allclose(F.diag(), M.diagonal(), **TOL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("damping", [1e-2, 1.0])
def test_solve_one_signature(mats, name, damping):
    F = get(mats, name)
    M = F.to_dense()
    V = torch.randn(F.num_params, 2, dtype=DT)
    A = M + damping * eye(F.num_params)
    # residual, not error: the iterative solves (matrix-free, sum) stop at relative residual 1e-10
    x = F.solve(V, damping=damping)
    assert torch.linalg.matrix_norm(A @ x - V) <= 1e-9 * torch.linalg.matrix_norm(V)
    x1 = F.solve(V[:, 0], damping)
    assert x1.shape == (F.num_params,) and torch.linalg.vector_norm(A @ x1 - V[:, 0]) <= 1e-9 * V[:, 0].norm()


@pytest.mark.parametrize("name", ["dense", "diagonal", "block_diagonal", "kfac", "scaled_kfac"])
def test_inverse_and_logdet(mats, name):
    F = 2.0 * mats["kfac"] if name == "scaled_kfac" else mats[name]
    M = F.to_dense() + 0.1 * eye(F.num_params)
    inv = F.inverse(0.1)
    assert torch.allclose(inv.to_dense(), torch.linalg.inv(M), **TOL)
    assert torch.allclose(inv.diag(), torch.linalg.inv(M).diagonal(), **TOL)
    assert torch.allclose(F.logdet(0.1), torch.linalg.slogdet(M)[1], **TOL)
    assert torch.allclose(inv.logdet(), -torch.linalg.slogdet(M)[1], **TOL)


def test_kfac_inverse_exact_and_factored(mats):
    K = mats["kfac"]
    lam = 0.05
    exact = K.inverse(lam)
    assert isinstance(exact, Inverse)
    v = torch.randn(K.num_params, dtype=DT)
    assert torch.allclose(exact.solve(exact @ v), v, **TOL)  # ((F + λI)^-1)^-1 = F + λI
    assert torch.allclose(exact.inverse().to_dense(), K.to_dense() + lam * eye(K.num_params), **TOL)
    fac = K.inverse(lam, factored=True)
    assert isinstance(fac, KFAC)  # the factored damping keeps the Kronecker structure
    assert torch.allclose(fac @ v, K.solve(v, lam, factored=True), **TOL)
    with pytest.raises(NotPositiveDefiniteError, match="singular"):
        fisher(nn.Linear(3, 2).double(), torch.randn(1, 3, dtype=DT), representation="kfac").inverse(0.0)


def test_negative_multiple_refuses_solve(mats):
    N = -1.0 * mats["kfac"]
    assert isinstance(N, Scaled)
    with pytest.raises(UnsupportedError, match="negative"):
        N.solve(torch.ones(N.num_params, dtype=DT), damping=1.0)
    Z = 0.0 * mats["matrix_free"]
    v = torch.ones(Z.num_params, dtype=DT)
    assert torch.allclose(Z.solve(v, damping=2.0), v / 2)


def test_matrix_free_has_no_cheap_inverse(mats):
    with pytest.raises(NotImplementedError, match="solve"):
        mats["matrix_free"].inverse(0.1)
    with pytest.raises(NotImplementedError):
        (mats["kfac"] + mats["diagonal"]).logdet(0.1)


@pytest.mark.parametrize("name", ALL)
def test_to_scipy_eigsh_and_cg(mats, name):
    F = get(mats, name)
    M = F.to_dense()
    op = F.to_scipy()
    assert isinstance(op, sla.LinearOperator) and op.shape == F.shape and op.dtype == np.float64
    top = sla.eigsh(op, k=3, which="LA", return_eigenvectors=False)
    assert np.allclose(np.sort(top), torch.linalg.eigvalsh(M)[-3:].numpy(), atol=1e-8, rtol=1e-8)
    b = np.linspace(-1, 1, F.num_params)
    damped = op + 0.1 * sla.aslinearoperator(np.eye(F.num_params))
    x, info = sla.cg(damped, b, rtol=1e-12, atol=0.0)
    assert info == 0
    assert np.allclose(x, torch.linalg.solve(M + 0.1 * eye(F.num_params), torch.from_numpy(b)).numpy(), atol=1e-8)
    assert np.allclose(op.rmatvec(b), op.matvec(b))


def test_to_scipy_follows_float32():
    model = nn.Linear(3, 2)
    F = fisher(model, torch.randn(10, 3), representation="diagonal")
    op = F.to_scipy()
    assert op.dtype == np.float32
    assert np.allclose(op @ np.ones(8, dtype=np.float32), F.diag().numpy(), atol=1e-6)


def test_numpy_rejects_nothing_silently(mats):
    F = mats["dense"]
    with pytest.raises(TypeError):
        F @ [1.0, 2.0]
    with pytest.raises(ShapeError, match=r"\(77,\)"):
        F @ torch.ones(5, dtype=DT)
