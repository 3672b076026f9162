r"""The Fisher geometry of the multivariate normal family :math:`\mathcal N_k(\mu, \Sigma)`.

The Fisher metric of :math:`\mathcal N_k(\mu, \Sigma)` in :math:`(\mu, \Sigma)` is (Skovgaard 1984)

.. math::

    ds^2 = d\mu^\top \Sigma^{-1} d\mu + \tfrac12 \operatorname{tr}\bigl((\Sigma^{-1} d\Sigma)^2\bigr).

At fixed mean the second term alone is the affine-invariant metric on symmetric positive definite
matrices, whose geodesics and distance have closed forms (Atkinson & Mitchell 1981; Pennec et al. 2006):

.. math::

    d(\Sigma_1, \Sigma_2) = \sqrt{\tfrac12 \textstyle\sum_i \log^2\lambda_i}, \quad
    \lambda_i \text{ the eigenvalues of } \Sigma_1^{-1}\Sigma_2, \qquad
    \gamma(t) = \Sigma_1^{1/2}\bigl(\Sigma_1^{-1/2}\Sigma_2\Sigma_1^{-1/2}\bigr)^t\Sigma_1^{1/2}.

With the mean free there is no closed form for :math:`k \ge 2`: :func:`mvn_fisher_metric` gives the metric
in the coordinates :math:`(\mu, \operatorname{vech}\Sigma)` for the numerical
:func:`~fisherbook.geometry.riemannian.geodesic` solver, and :func:`mvn_coordinates` /
:func:`mvn_from_coordinates` convert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int, check_tensor
from ..errors import OffManifoldError, ShapeError

__all__ = ["spd_fisher_distance", "spd_geodesic", "mvn_fisher_metric", "mvn_coordinates", "mvn_from_coordinates"]

DTYPE = torch.float64


def _spd(S: Any, name: str) -> Tensor:
    M = check_tensor(S, name, dtype=DTYPE)
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise ShapeError(f"{name} must be a square matrix (or a batch), got shape {tuple(M.shape)}")
    scale = M.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-300)
    if bool((((M - M.transpose(-1, -2)).abs() / scale) > 1e-10).any()):
        raise OffManifoldError(f"{name} must be symmetric")
    _, info = torch.linalg.cholesky_ex(M)
    if bool((info != 0).any()):
        raise OffManifoldError(f"{name} must be positive definite (a covariance matrix of full rank)")
    return 0.5 * (M + M.transpose(-1, -2))


def _sym_fn(S: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    lam, U = torch.linalg.eigh(S)
    return (U * fn(lam).unsqueeze(-2)) @ U.transpose(-1, -2)


def spd_fisher_distance(cov1: Any, cov2: Any) -> Tensor:
    r"""Fisher–Rao distance between two normals with the same mean.

    The normals are :math:`\mathcal N(\mu, \Sigma_1)` and :math:`\mathcal N(\mu, \Sigma_2)`.

    :math:`d = \sqrt{\tfrac12\sum_i \log^2\lambda_i}` with :math:`\lambda_i` the eigenvalues of
    :math:`\Sigma_1^{-1}\Sigma_2`, computed as those of the symmetric :math:`L^{-1}\Sigma_2L^{-\top}`
    (:math:`\Sigma_1 = LL^\top`). Invariant under :math:`\Sigma \mapsto A\Sigma A^\top` for every invertible :math:`A`.

    Parameters
    ----------
    cov1, cov2 : array_like
        Symmetric positive definite matrices, shape ``(..., k, k)`` (batches broadcast).

    Returns
    -------
    Tensor
        Shape ``(...)``, float64.

    Raises
    ------
    OffManifoldError
        If a matrix is not symmetric positive definite.

    Examples
    --------
    In one dimension it is the normal family's vertical distance :math:`\sqrt2\,|\log(\sigma_2/\sigma_1)|`:

    >>> import math
    >>> d = spd_fisher_distance([[1.0]], [[math.e ** 2]])    # sigma from 1 to e
    >>> round(d.item(), 12) == round(math.sqrt(2), 12)
    True
    """
    S1, S2 = _spd(cov1, "cov1"), _spd(cov2, "cov2")
    if S1.shape[-1] != S2.shape[-1]:
        raise ShapeError(f"cov1 and cov2 must have the same size, got {tuple(S1.shape)} and {tuple(S2.shape)}")
    S1, S2 = torch.broadcast_tensors(S1, S2)
    L = torch.linalg.cholesky(S1)
    half = torch.linalg.solve_triangular(L, S2, upper=False).transpose(-1, -2)
    M = torch.linalg.solve_triangular(L, half, upper=False)
    lam = torch.linalg.eigvalsh(0.5 * (M + M.transpose(-1, -2)))
    return (0.5 * (lam.log() ** 2).sum(-1)).sqrt()


def spd_geodesic(cov1: Any, cov2: Any, t: Any) -> Tensor:
    r"""Points of the fixed-mean Fisher geodesic.

    :math:`\gamma(t) = \Sigma_1^{1/2}(\Sigma_1^{-1/2}\Sigma_2\Sigma_1^{-1/2})^t\Sigma_1^{1/2}`.

    :math:`\gamma(0) = \Sigma_1`, :math:`\gamma(1) = \Sigma_2`, constant speed
    :func:`spd_fisher_distance` ``(cov1, cov2)``; :math:`t` outside :math:`[0, 1]` extends the geodesic
    (it never leaves the positive definite cone).

    Parameters
    ----------
    cov1, cov2 : array_like
        Symmetric positive definite, shape ``(k, k)``.
    t : array_like
        Times, shape ``(m,)`` (or a scalar).

    Returns
    -------
    Tensor
        Shape ``(m, k, k)``.

    Examples
    --------
    The midpoint of :math:`I` and :math:`4I` is :math:`2I` (the geometric mean):

    >>> spd_geodesic(torch.eye(2), 4 * torch.eye(2), [0.5])[0]
    tensor([[2., 0.],
            [0., 2.]], dtype=torch.float64)
    """
    S1, S2 = _spd(cov1, "cov1"), _spd(cov2, "cov2")
    if S1.ndim != 2 or S1.shape != S2.shape:
        raise ShapeError(
            f"cov1 and cov2 must be two (k, k) matrices of the same size, got {tuple(S1.shape)} and {tuple(S2.shape)}"
        )
    ts = check_tensor(t, "t", dtype=DTYPE).reshape(-1)
    root = _sym_fn(S1, torch.sqrt)
    inv_root = _sym_fn(S1, torch.rsqrt)
    M = inv_root @ S2 @ inv_root
    lam, U = torch.linalg.eigh(0.5 * (M + M.T))
    powers = (U.unsqueeze(0) * lam.unsqueeze(0) ** ts[:, None, None]) @ U.T
    return root @ powers @ root


def _tril_index(k: int) -> tuple[Tensor, Tensor]:
    rows, cols = torch.tril_indices(k, k)
    return rows, cols


def mvn_coordinates(mean: Any, cov: Any) -> Tensor:
    r"""Coordinates :math:`(\mu, \operatorname{vech}\Sigma)` of :math:`\mathcal N_k(\mu, \Sigma)`: the mean, then the
    lower triangle of :math:`\Sigma` row by row (:math:`k + k(k+1)/2` numbers), as :func:`mvn_fisher_metric` uses.

    Pass ``mean=None`` for the fixed-mean coordinates :math:`\operatorname{vech}\Sigma` alone.

    Examples
    --------
    >>> mvn_coordinates([1.0, 2.0], [[2.0, 0.5], [0.5, 1.0]])
    tensor([1.0000, 2.0000, 2.0000, 0.5000, 1.0000], dtype=torch.float64)
    """
    S = _spd(cov, "cov")
    if S.ndim != 2:
        raise ShapeError(f"cov must be one (k, k) matrix, got shape {tuple(S.shape)}")
    k = S.shape[0]
    rows, cols = _tril_index(k)
    vech = S[rows, cols]
    if mean is None:
        return vech
    mu = check_tensor(mean, "mean", ndim=1, dtype=DTYPE)
    if mu.shape[0] != k:
        raise ShapeError(f"mean must have length {k} (the size of cov), got {mu.shape[0]}")
    return torch.cat([mu, vech])


def mvn_from_coordinates(theta: Any, k: int, *, mean: bool = True) -> tuple[Tensor | None, Tensor]:
    r"""Inverse of :func:`mvn_coordinates`: ``(mean, cov)`` from coordinates of shape ``(..., k + k(k+1)/2)``
    (or ``(..., k(k+1)/2)`` with ``mean=False``, returning ``(None, cov)``).

    Examples
    --------
    >>> mu, S = mvn_from_coordinates([1.0, 2.0, 2.0, 0.5, 1.0], 2)
    >>> S
    tensor([[2.0000, 0.5000],
            [0.5000, 1.0000]], dtype=torch.float64)
    """
    k = check_int(k, "k", minimum=1)
    th = check_tensor(theta, "theta", dtype=DTYPE)
    m = k * (k + 1) // 2
    want = m + (k if mean else 0)
    if th.ndim < 1 or th.shape[-1] != want:
        what = "mean and vech of cov" if mean else "vech of cov"
        raise ShapeError(f"theta must have last dimension {want} for k = {k} ({what}), got shape {tuple(th.shape)}")
    mu = th[..., :k] if mean else None
    vech = th[..., k:] if mean else th
    rows, cols = _tril_index(k)
    return mu, _scatter(vech, rows, cols, k)


def _scatter(vech: Tensor, rows: Tensor, cols: Tensor, k: int) -> Tensor:
    """Symmetric (..., k, k) matrices from their lower triangles (..., k(k+1)/2)."""
    flat = torch.zeros(*vech.shape[:-1], k * k, dtype=vech.dtype)
    flat = flat.index_add(-1, rows * k + cols, vech)
    off = rows != cols
    flat = flat.index_add(-1, cols[off] * k + rows[off], vech[..., off])
    return flat.reshape(*vech.shape[:-1], k, k)


def mvn_fisher_metric(k: int, *, mean: bool = True) -> Callable[[Tensor], Tensor]:
    r"""The Fisher metric of :math:`\mathcal N_k(\mu, \Sigma)` in the coordinates of :func:`mvn_coordinates`.

    .. math::

        G = \begin{pmatrix} \Sigma^{-1} & 0 \\ 0 & G_\Sigma \end{pmatrix}, \qquad
        (G_\Sigma)_{(ab),(cd)} = \tfrac12\operatorname{tr}\bigl(\Sigma^{-1}E_{ab}\Sigma^{-1}E_{cd}\bigr),

    with :math:`E_{ab}` the symmetric matrix of the coordinate :math:`\Sigma_{ab}` (:math:`a \ge b`): ones at
    :math:`(a, b)` and :math:`(b, a)`. Written in torch, so :func:`~fisherbook.geometry.riemannian.christoffel_symbols`
    and :func:`~fisherbook.geometry.riemannian.geodesic` differentiate it by autograd.

    Parameters
    ----------
    k : int
        Dimension of the normal.
    mean : bool
        ``True``: coordinates :math:`(\mu, \operatorname{vech}\Sigma)`; ``False``: the fixed-mean metric on
        :math:`\operatorname{vech}\Sigma` alone (the affine-invariant metric of SPD matrices).

    Returns
    -------
    Callable
        ``theta (..., d) -> G (..., d, d)``; points whose :math:`\Sigma` is not positive definite raise
        :class:`~fisherbook.errors.OffManifoldError`.

    Examples
    --------
    For :math:`k = 1` it is the normal family's metric in :math:`(\mu, \sigma^2)`:
    :math:`\operatorname{diag}(1/\sigma^2, 1/(2\sigma^4))`.

    >>> mvn_fisher_metric(1)(torch.tensor([0.0, 2.0]))
    tensor([[0.5000, 0.0000],
            [0.0000, 0.1250]], dtype=torch.float64)
    """
    k = check_int(k, "k", minimum=1)
    rows, cols = _tril_index(k)
    m = rows.shape[0]
    basis = _scatter(torch.eye(m, dtype=DTYPE), rows, cols, k)  # (m, k, k): E_ab

    def metric(theta: Tensor) -> Tensor:
        mu, S = mvn_from_coordinates(theta, k, mean=mean)
        _, info = torch.linalg.cholesky_ex(S.detach())
        if bool((info != 0).any()):
            raise OffManifoldError("the covariance coordinates are not positive definite")
        Sinv = torch.linalg.inv(S)
        A = Sinv.unsqueeze(-3) @ basis  # (..., m, k, k): Sigma^-1 E_ab
        G_S = 0.5 * torch.einsum("...aij,...bji->...ab", A, A)
        if not mean:
            return G_S
        batch = theta.shape[:-1] if isinstance(theta, Tensor) else torch.Size()
        out = torch.zeros(*batch, k + m, k + m, dtype=DTYPE)
        out = out + torch.nn.functional.pad(Sinv, (0, m, 0, m)) + torch.nn.functional.pad(G_S, (k, 0, k, 0))
        return out

    metric.__name__ = f"mvn_fisher_metric_{k}"
    return metric
