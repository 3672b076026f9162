r"""Affine connections of a statistical model: the α-family, the Amari–Chentsov tensor, curvature.

A regular model :math:`\{p_\theta\}` with log-likelihood :math:`\ell = \log p_\theta(x)` carries, besides the
Fisher metric :math:`g_{ij} = \operatorname{E}[\partial_i\ell\,\partial_j\ell]`, the symmetric
**Amari–Chentsov tensor** :math:`T_{ijk} = \operatorname{E}[\partial_i\ell\,\partial_j\ell\,\partial_k\ell]` and the
one-parameter family of torsion-free **α-connections** (Amari & Nagaoka 2000, §2.3)

.. math::

    \Gamma^{(\alpha)}_{ijk} = \operatorname{E}\Bigl[\bigl(\partial_i\partial_j\ell
        + \tfrac{1-\alpha}{2}\,\partial_i\ell\,\partial_j\ell\bigr)\,\partial_k\ell\Bigr]
    = \Gamma^{(0)}_{ijk} - \tfrac{\alpha}{2}\,T_{ijk},

with :math:`\Gamma_{ijk} = g(\nabla_{\partial_i}\partial_j, \partial_k)` (the *last* index lowered) and
:math:`\Gamma^{(0)}` the Levi-Civita connection of the Fisher metric. :math:`\alpha = 1` is the
e-connection, :math:`\alpha = -1` the m-connection; they are dual: :math:`\partial_k g_{ij} =
\Gamma^{(\alpha)}_{kij} + \Gamma^{(-\alpha)}_{kji}`.

This module computes

- :func:`alpha_connection` and :func:`amari_chentsov_tensor` as expectations over the sample space
  (nodes and weights given: a finite support, or a quadrature rule), with the derivatives of
  :math:`\ell` by forward-mode autodiff;
- :func:`levi_civita_lowered`:
  :math:`\Gamma^{(0)}_{ijk} = \tfrac12(\partial_i g_{jk} + \partial_j g_{ik} - \partial_k g_{ij})` from a metric by
  autodiff (a second route to :math:`\Gamma^{(0)}`);
- :func:`exponential_family_tensor`: :math:`T_{ijk} = \partial_i\partial_j\partial_k\psi(\theta)` in natural
  coordinates of an exponential family (a third route);
- :func:`riemann_tensor` of any connection and :func:`gaussian_curvature` of a two-dimensional metric
  (from the Riemann tensor of its Levi-Civita connection, or by Brioschi's formula).

Everything works at one point :math:`\theta` of shape ``(k,)``, in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._validate import check_callable, check_option, check_real, check_tensor
from ..errors import InvalidArgumentError, OffManifoldError, ShapeError

__all__ = [
    "alpha_connection",
    "amari_chentsov_tensor",
    "levi_civita_lowered",
    "exponential_family_tensor",
    "riemann_tensor",
    "gaussian_curvature",
]

DTYPE = torch.float64
Model = Callable[[Tensor], Distribution]


@contextlib.contextmanager
def _no_validation() -> Iterator[None]:
    """Switch off torch.distributions' argument checks (data-dependent branches that forward-mode
    autodiff cannot trace); the points themselves are checked before and after."""
    old = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(old)


def _point(theta: Any, name: str = "theta") -> Tensor:
    return check_tensor(theta, name, ndim=1, dtype=DTYPE)


def _nodes(model: Model, theta: Tensor, x: Any, weights: Any) -> tuple[Tensor, Tensor]:
    check_callable(model, "model", "a callable theta -> torch.distributions.Distribution")
    dist = model(theta)
    if not isinstance(dist, Distribution):
        raise InvalidArgumentError(
            f"model(theta) must return a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    if dist.batch_shape != torch.Size():
        raise ShapeError(
            f"model(theta) must be a single distribution (empty batch shape), got {tuple(dist.batch_shape)}"
        )
    xs = check_tensor(x, "x", dtype=DTYPE)
    n = xs.shape[0] if xs.ndim > 0 else 0
    if xs.ndim < 1 or xs.shape[1:] != dist.event_shape:
        raise ShapeError(f"x must hold sample-space nodes of shape (n, *event_shape) = (n, {tuple(dist.event_shape)}), "
                         f"got {tuple(xs.shape)}")
    if weights is None:
        w = torch.ones(n, dtype=DTYPE)
    else:
        w = check_tensor(weights, "weights", ndim=1, dtype=DTYPE)
        if w.shape[0] != n:
            raise ShapeError(f"weights must have one entry per node ({n}), got {w.shape[0]}")
        if not bool((w >= 0).all()):
            raise InvalidArgumentError("weights must be non-negative quadrature weights")
    return xs, w


def _log_lik_derivatives(model: Model, theta: Tensor, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Probabilities times weights (n,), scores (n, k) and Hessians (n, k, k) of log p_theta(x) at the nodes."""

    def loglik(th: Tensor) -> Tensor:
        return model(th).log_prob(x)

    with _no_validation():
        logp = loglik(theta)
        try:  # forward mode: k passes, whatever the number of nodes
            score = torch.func.jacfwd(loglik)(theta)
            hess = torch.func.jacfwd(torch.func.jacfwd(loglik))(theta)
        except RuntimeError:  # an op without a forward-mode rule (e.g. binary_cross_entropy_with_logits): reverse mode
            def grad_fn(th: Tensor) -> Tensor:
                out = torch.autograd.functional.jacobian(loglik, th, create_graph=True, vectorize=False)
                assert isinstance(out, Tensor)
                return out

            score = grad_fn(theta)
            hess_out = torch.autograd.functional.jacobian(grad_fn, theta, create_graph=True, vectorize=False)
            assert isinstance(hess_out, Tensor)
            hess = hess_out
    mass = w * logp.exp()
    total = float(mass.sum().detach())
    if not abs(total - 1) < 1e-6:
        raise InvalidArgumentError(
            f"the nodes and weights integrate p_theta to {total:.8g}, not 1: they do not cover the sample space "
            "(widen the quadrature interval or add nodes)"
        )
    return mass, score, hess


def amari_chentsov_tensor(model: Model, theta: Any, x: Any, weights: Any = None) -> Tensor:
    r"""The Amari–Chentsov tensor.

    :math:`T_{ijk}(\theta) = \operatorname{E}_\theta[\partial_i\ell\,\partial_j\ell\,\partial_k\ell]`.

    The expectation is :math:`\sum_n w_n\, p_\theta(x_n)\, (\cdot)(x_n)` over the given nodes: a finite
    sample space with ``weights=None``, or a quadrature rule of the sample space. Scores by forward-mode
    autodiff of ``model(theta).log_prob``.

    Parameters
    ----------
    model : Callable
        :math:`\theta \mapsto p_\theta`, a torch ``Distribution`` with empty batch shape, written in torch
        so that autodiff can follow it (e.g. ``lambda th: Normal(th[0], th[1])``).
    theta : array_like
        The point, shape ``(k,)``.
    x : array_like
        Nodes of the sample space, shape ``(n, *event_shape)``.
    weights : array_like, optional
        Quadrature weights, shape ``(n,)``; ``None`` for a sum over a finite support.

    Returns
    -------
    Tensor
        Shape ``(k, k, k)``, symmetric in all indices.

    Raises
    ------
    InvalidArgumentError
        If the nodes do not integrate :math:`p_\theta` to 1 (to 1e-6).

    Examples
    --------
    Bernoulli in the probability :math:`p`: :math:`T = (1 - 2p)/(p(1-p))^2`.

    >>> from torch.distributions import Bernoulli
    >>> T = amari_chentsov_tensor(lambda th: Bernoulli(probs=th[0]), [0.25], torch.tensor([0.0, 1.0]))
    >>> round(T.item(), 10) == round(0.5 / (0.25 * 0.75) ** 2, 10)
    True
    """
    th = _point(theta)
    xs, w = _nodes(model, th, x, weights)
    mass, s, _ = _log_lik_derivatives(model, th, xs, w)
    return torch.einsum("n,ni,nj,nk->ijk", mass, s, s, s)


def alpha_connection(model: Model, theta: Any, alpha: float, x: Any, weights: Any = None, *,
                     raised: bool = False) -> Tensor:
    r"""Christoffel symbols of the α-connection.

    :math:`\Gamma^{(\alpha)}_{ijk} =
    \operatorname{E}[(\partial_i\partial_j\ell + \tfrac{1-\alpha}{2}\partial_i\ell\,\partial_j\ell)\,\partial_k\ell]`.

    :math:`\alpha = 0` is the Levi-Civita connection of the Fisher metric, :math:`\alpha = 1` the
    exponential (e-) connection, :math:`\alpha = -1` the mixture (m-) connection; in general
    :math:`\Gamma^{(\alpha)} = \Gamma^{(0)} - \tfrac\alpha2 T` with :math:`T` the
    :func:`amari_chentsov_tensor`. An exponential family has :math:`\Gamma^{(1)} = 0` in its natural
    coordinates and :math:`\Gamma^{(-1)} = 0` in its expectation coordinates (it is dually flat).

    Parameters
    ----------
    model, theta, x, weights
        As for :func:`amari_chentsov_tensor`.
    alpha : float
        The connection's :math:`\alpha`, any real number.
    raised : bool
        Return :math:`\Gamma^{(\alpha)\,k}_{ij} = g^{kl}\Gamma^{(\alpha)}_{ijl}` (the symbols of the
        geodesic equation, index order ``[k, i, j]`` as in
        :func:`~fisherbook.geometry.riemannian.christoffel_symbols`) instead of the lowered symbols.

    Returns
    -------
    Tensor
        ``Gamma[i, j, k]`` :math:`= \Gamma^{(\alpha)}_{ijk}` (lowered, symmetric in ``i, j``), shape ``(k, k, k)``;
        or the raised symbols ``Gamma[k, i, j]``.

    Examples
    --------
    Normal :math:`(\mu, \sigma)`: :math:`\Gamma^{(\alpha)}_{\mu\mu\sigma} = (1 - \alpha)/\sigma^3`.

    >>> import numpy as np
    >>> from torch.distributions import Normal
    >>> nodes, w = np.polynomial.legendre.leggauss(200)
    >>> x, w = 12 * torch.tensor(nodes), 12 * torch.tensor(w)      # Gauss–Legendre on [-12, 12]
    >>> Gam = alpha_connection(lambda th: Normal(th[0], th[1]), [0.0, 1.0], 0.5, x, w)
    >>> round(Gam[0, 0, 1].item(), 8)
    0.5
    """
    th = _point(theta)
    a = check_real(alpha, "alpha")
    xs, w = _nodes(model, th, x, weights)
    mass, s, h = _log_lik_derivatives(model, th, xs, w)
    lower = torch.einsum("n,nij,nk->ijk", mass, h, s) + 0.5 * (1 - a) * torch.einsum("n,ni,nj,nk->ijk", mass, s, s, s)
    if not raised:
        return lower
    g = torch.einsum("n,ni,nj->ij", mass, s, s)
    return torch.linalg.solve(g, lower.permute(2, 0, 1).reshape(th.shape[0], -1)).reshape(lower.permute(2, 0, 1).shape)


def _metric_at(metric: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    G = metric(th)
    k = th.shape[0]
    if G.shape != (k, k):
        raise ShapeError(f"metric must map a point of shape ({k},) to a ({k}, {k}) matrix, got {tuple(G.shape)}")
    return G


def _jacobian(fn: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    """d fn / d theta appended as the last axis: reverse-mode autograd (with a graph, so it can be
    differentiated again) when ``fn`` is differentiable by torch; central differences otherwise
    (e.g. :func:`~fisherbook.geometry.riemannian.fisher_metric`, whose closed forms carry no graph)."""
    with torch.enable_grad():
        probe = th.detach().requires_grad_(True)
        out = fn(probe)
    if out.requires_grad:
        jac = torch.autograd.functional.jacobian(fn, th, create_graph=True, vectorize=False)
        assert isinstance(jac, Tensor)
        return jac
    # step h ~ 1e-4 (1 + |theta|): truncation O(h^2) ~ 1e-8, round-off eps / h ~ 1e-12 (eps / h^2 ~ 1e-8 when nested)
    h = 1e-4 * (1 + th.detach().abs())
    cols = []
    for c in range(th.shape[0]):
        step = torch.zeros_like(th)
        step[c] = h[c]
        cols.append((fn(th.detach() + step).detach() - fn(th.detach() - step).detach()) / (2 * h[c]))
    return torch.stack(cols, dim=-1)


def levi_civita_lowered(metric: Callable[[Tensor], Tensor], theta: Any) -> Tensor:
    r"""Levi-Civita symbols of the first kind.

    :math:`\Gamma_{ijk} = \tfrac12(\partial_i g_{jk} + \partial_j g_{ik} - \partial_k g_{ij})`.

    The metric's derivatives are taken by torch autograd when the metric carries a graph, by central
    differences otherwise (the metrics of :func:`~fisherbook.geometry.riemannian.fisher_metric`).

    Parameters
    ----------
    metric : Callable
        :math:`\theta \mapsto G(\theta)` for one point, ``(k,) -> (k, k)``, written in torch (the callables of
        :func:`~fisherbook.geometry.riemannian.fisher_metric` qualify).
    theta : array_like
        Shape ``(k,)``.

    Returns
    -------
    Tensor
        ``Gamma[i, j, k]``, shape ``(k, k, k)``, the same index convention as :func:`alpha_connection`.

    Examples
    --------
    >>> G = lambda th: torch.diag(torch.stack([1 / th[1] ** 2, 2 / th[1] ** 2]))   # normal (mu, sigma)
    >>> Gam = levi_civita_lowered(G, [0.0, 1.0])
    >>> Gam[0, 0, 1].item(), Gam[1, 1, 1].item()    # 1/sigma^3, -2/sigma^3
    (1.0, -2.0)
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    th = _point(theta)
    return _levi_civita(metric, th).detach()


def _levi_civita(metric: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    _metric_at(metric, th)
    dG = _jacobian(metric, th)  # dG[a, b, c] = d g_ab / d theta_c
    # Gamma_ijk = 1/2 (d_i g_jk + d_j g_ik - d_k g_ij)
    return 0.5 * (dG.permute(2, 0, 1) + dG.permute(0, 2, 1) - dG)


def exponential_family_tensor(family: Any, theta: Any) -> Tensor:
    r"""The Amari–Chentsov tensor of an exponential family in natural coordinates.

    :math:`T_{ijk} = \partial_i\partial_j\partial_k\psi(\theta)`.

    The third cumulant tensor of the sufficient statistic, by autograd of
    :func:`~fisherbook.geometry.dualflat.log_partition` (whose Hessian is the Fisher metric).

    Parameters
    ----------
    family : Distribution or type
        A family of :mod:`~fisherbook.geometry.dualflat` (an instance for Binomial / Multinomial).
    theta : array_like
        Natural parameters, shape ``(k,)``.

    Returns
    -------
    Tensor
        Shape ``(k, k, k)``.

    Examples
    --------
    Poisson, :math:`\psi(\theta) = e^\theta`: :math:`T = e^\theta = \lambda`.

    >>> from torch.distributions import Poisson
    >>> exponential_family_tensor(Poisson, [0.0])
    tensor([[[1.]]], dtype=torch.float64)
    """
    from .dualflat import log_partition

    th = _point(theta)
    log_partition(family, th)  # checks the family

    def psi(t: Tensor) -> Tensor:
        return log_partition(family, t)

    value = psi(th)
    if not bool(torch.isfinite(value)):
        raise OffManifoldError(f"theta is outside the natural parameter space: {th.tolist()}")

    def grad(t: Tensor) -> Tensor:
        return _jacobian(psi, t)

    def hess(t: Tensor) -> Tensor:
        return _jacobian(grad, t)

    return _jacobian(hess, th).detach()


def riemann_tensor(connection: Callable[[Tensor], Tensor], theta: Any) -> Tensor:
    r"""Riemann curvature tensor of an affine connection, :math:`R^a{}_{bcd}`.

    .. math::

        R^a{}_{bcd} = \partial_c\Gamma^a_{db} - \partial_d\Gamma^a_{cb}
        + \Gamma^a_{ce}\Gamma^e_{db} - \Gamma^a_{de}\Gamma^e_{cb},

    so that :math:`R(\partial_c, \partial_d)\partial_b = R^a{}_{bcd}\,\partial_a`. A connection is flat
    exactly where :math:`R = 0` (in any coordinates: it is a tensor).

    Parameters
    ----------
    connection : Callable
        :math:`\theta \mapsto \Gamma`, raised symbols ``Gamma[a, b, c]`` :math:`= \Gamma^a_{bc}` for one point,
        differentiable by torch autograd (e.g. ``lambda th: alpha_connection(model, th, alpha, x, w, raised=True)``).
    theta : array_like
        Shape ``(k,)``.

    Returns
    -------
    Tensor
        ``R[a, b, c, d]``, shape ``(k, k, k, k)``, antisymmetric in ``c, d``.

    Examples
    --------
    A constant connection is flat when its symbols commute; the zero connection certainly is:

    >>> riemann_tensor(lambda th: torch.zeros(2, 2, 2, dtype=torch.float64) * th.sum(), [0.0, 1.0]).abs().max().item()
    0.0
    """
    check_callable(connection, "connection", "a callable theta -> Gamma(theta) of shape (k, k, k)")
    th = _point(theta)
    k = th.shape[0]
    gam = connection(th)
    if gam.shape != (k, k, k):
        raise ShapeError(f"connection must return shape ({k}, {k}, {k}), got {tuple(gam.shape)}")
    dgam = _jacobian(connection, th)  # dgam[a, b, c, d] = d Gamma^a_bc / d theta_d
    return (
        torch.einsum("adbc->abcd", dgam)
        - torch.einsum("acbd->abcd", dgam)
        + torch.einsum("ace,edb->abcd", gam, gam)
        - torch.einsum("ade,ecb->abcd", gam, gam)
    ).detach()


def _brioschi(metric: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    G = _metric_at(metric, th)
    d1 = _jacobian(metric, th)  # d1[a, b, c] = d g_ab / d theta_c
    d2 = _jacobian(lambda t: _jacobian(metric, t), th)  # d2[a, b, c, e]
    E, F, Gg = G[0, 0], G[0, 1], G[1, 1]
    Eu, Ev, Fu, Fv, Gu, Gv = d1[0, 0, 0], d1[0, 0, 1], d1[0, 1, 0], d1[0, 1, 1], d1[1, 1, 0], d1[1, 1, 1]
    Evv, Fuv, Guu = d2[0, 0, 1, 1], d2[0, 1, 0, 1], d2[1, 1, 0, 0]
    zero = torch.zeros((), dtype=DTYPE)
    A = torch.stack([torch.stack([-Evv / 2 + Fuv - Guu / 2, Eu / 2, Fu - Ev / 2]),
                     torch.stack([Fv - Gu / 2, E, F]), torch.stack([Gv / 2, F, Gg])])
    B = torch.stack([torch.stack([zero, Ev / 2, Gu / 2]), torch.stack([Ev / 2, E, F]), torch.stack([Gu / 2, F, Gg])])
    return (torch.linalg.det(A) - torch.linalg.det(B)) / (E * Gg - F**2) ** 2


def gaussian_curvature(metric: Callable[[Tensor], Tensor], theta: Any, *, method: str = "riemann") -> float:
    r"""Gaussian curvature :math:`K` of a two-dimensional metric at a point, computed from the metric.

    ``"riemann"``: :math:`K = R_{1212}/\det g` with :math:`R_{abcd} = g_{ae}R^e{}_{bcd}` the
    :func:`riemann_tensor` of the Levi-Civita connection (symbols and their derivatives by autograd).
    ``"brioschi"``: Brioschi's formula in :math:`E, F, G` and their first and second derivatives
    (autograd). The two are independent algorithms for the same number (Gauss's theorema egregium).

    Parameters
    ----------
    metric : Callable
        ``(2,) -> (2, 2)``, written in torch, positive definite at ``theta``.
    theta : array_like
        Shape ``(2,)``.
    method : str
        ``"riemann"`` or ``"brioschi"``.

    Returns
    -------
    float

    Raises
    ------
    ShapeError
        If the metric is not two-dimensional.
    OffManifoldError
        If the metric is not positive definite at ``theta``.

    Examples
    --------
    The normal family in :math:`(\mu, \sigma)` is a hyperbolic plane of curvature :math:`-1/2`:

    >>> G = lambda th: torch.diag(torch.stack([1 / th[1] ** 2, 2 / th[1] ** 2]))
    >>> round(gaussian_curvature(G, [0.3, 1.7]), 12)
    -0.5
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    method = check_option(method, "method", ("riemann", "brioschi"))
    th = _point(theta)
    if th.shape != (2,):
        raise ShapeError(
            f"Gaussian curvature is defined here for two-dimensional metrics; theta has shape {tuple(th.shape)}"
        )
    G = _metric_at(metric, th).detach()
    if not bool(torch.isfinite(G).all()) or not bool((torch.linalg.eigvalsh(0.5 * (G + G.T)) > 0).all()):
        raise OffManifoldError(f"the metric is not finite and positive definite at {th.tolist()}")
    if method == "brioschi":
        return float(_brioschi(metric, th).detach())

    def raised(t: Tensor) -> Tensor:
        low = _levi_civita(metric, t)  # [i, j, k], k lowered
        g = metric(t)
        return torch.linalg.solve(g, low.permute(2, 0, 1).reshape(2, 4)).reshape(2, 2, 2)

    R = riemann_tensor(raised, th)
    R_low = torch.einsum("ae,ebcd->abcd", G, R)
    return float((R_low[0, 1, 0, 1] / torch.linalg.det(G)).detach())
