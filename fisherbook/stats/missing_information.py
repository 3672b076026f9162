r"""Louis's formula: the observed information of incomplete data from complete-data derivatives.

When the complete data :math:`(y, z)` are only partly observed (:math:`y` seen, :math:`z` missing: a
censored value, a mixture label), the observed-data log-likelihood
:math:`\ell(\theta; y) = \log \int p(y, z \mid \theta)\, dz` is often awkward to differentiate while the
complete-data one, :math:`\ell_c(\theta; y, z)`, is easy. Louis (1982) showed that

.. math::

    -\nabla^2 \ell(\theta; y)
    = \underbrace{\operatorname{E}\bigl[-\nabla^2 \ell_c \mid y\bigr]}_{\text{complete}}
    - \underbrace{\operatorname{Var}\bigl[\nabla \ell_c \mid y\bigr]}_{\text{missing}},
    \qquad \nabla \ell(\theta; y) = \operatorname{E}\bigl[\nabla \ell_c \mid y\bigr],

the conditional moments being taken under :math:`p(z \mid y, \theta)` at the same :math:`\theta`. This is
the *missing information principle* (Orchard & Woodbury 1972): observed = complete − missing.
Averaged over :math:`y`, it is the data-processing decomposition
:math:`I_Y = I_{(Y,Z)} - \operatorname{E}\operatorname{Var}(s_{(Y,Z)} \mid Y)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import check_callable, check_tensor
from ..errors import InvalidArgumentError, ShapeError

__all__ = ["MissingInformation", "louis_information"]

_DTYPE = torch.float64


def _jvp(out: Tensor, th: Tensor, v: Tensor) -> Tensor:
    r"""The directional derivative of every entry of ``out`` along ``v``, by two reverse passes.

    With a dummy cotangent ``u``, :math:`a = J^\top u` is linear in ``u`` and its gradient in ``u``
    along ``v`` is :math:`J v`: a Jacobian-vector product in O(size of out) memory, itself
    differentiable in ``th`` (so it can be applied twice for the per-entry Hessian).
    """
    if not out.requires_grad:
        return torch.zeros_like(out)
    u = torch.zeros_like(out, requires_grad=True)
    (a,) = torch.autograd.grad(out, th, grad_outputs=u, create_graph=True, allow_unused=True, materialize_grads=True)
    if not a.requires_grad:
        return torch.zeros_like(out)
    (jv,) = torch.autograd.grad(a, u, grad_outputs=v, create_graph=True, allow_unused=True, materialize_grads=True)
    return jv


def _entry_derivatives(fun: Callable[[Tensor], Tensor], th: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient and Hessian in ``th`` of every entry of ``fun(th)`` separately: (n, m, k), (n, m, k, k)."""
    k = th.numel()
    eye = torch.eye(k, dtype=_DTYPE)
    t = th.clone().requires_grad_(True)
    with torch.enable_grad():
        out = fun(t).to(_DTYPE)
        cols = [_jvp(out, t, eye[j]) for j in range(k)]
        g = torch.stack([c.detach() for c in cols], -1)
        h = torch.stack([torch.stack([_jvp(c, t, eye[r]).detach() for r in range(k)], -1) for c in cols], -2)
    return g, h


@dataclass(frozen=True)
class MissingInformation:
    r"""The three terms of Louis's formula, summed over the observations, each float64 ``(k, k)``.

    Attributes
    ----------
    complete : Tensor
        :math:`\sum_i \operatorname{E}[-\nabla^2 \ell_c \mid y_i]`.
    missing : Tensor
        :math:`\sum_i \operatorname{Var}[\nabla \ell_c \mid y_i]`.
    observed : Tensor
        ``complete - missing``: the observed information :math:`-\nabla^2 \ell(\theta; y)`.
    score : Tensor
        :math:`\sum_i \operatorname{E}[\nabla \ell_c \mid y_i]`, the observed-data score (Fisher's
        identity), shape ``(k,)``.
    """

    complete: Tensor
    missing: Tensor
    observed: Tensor
    score: Tensor


def louis_information(
    complete_loglik: Callable[[Tensor], Tensor],
    theta: Any,
    weights: Any = None,
) -> MissingInformation:
    r"""Observed information of incomplete data by Louis's formula.

    .. math::

        J(\theta) = \sum_i \Bigl(\operatorname{E}\bigl[-\nabla^2 \ell_c \mid y_i\bigr]
        - \operatorname{Var}\bigl[\nabla \ell_c \mid y_i\bigr]\Bigr),

    with the conditional expectations over the missing data :math:`z` replaced by weighted averages over
    ``m`` completions :math:`z_{i1}, \dots, z_{im}` of each observation: exact when the completions
    enumerate a discrete :math:`z` (a mixture label) with weights :math:`p(z \mid y_i, \theta)`, or
    quadrature nodes; a Monte-Carlo estimate when they are draws from :math:`p(z \mid y_i, \theta)`
    with equal weights.

    Parameters
    ----------
    complete_loglik : callable
        ``theta -> Tensor`` of shape ``(n, m)``: the complete-data log-likelihood
        :math:`\ell_c(\theta; y_i, z_{ij})` of observation ``i`` completed by its ``j``-th completion.
        It must be a differentiable torch function of ``theta``.
    theta : array_like
        The parameter, shape ``(k,)``; the conditional distribution of the missing data (the
        completions and weights) must be the one at this :math:`\theta`.
    weights : array_like, optional
        Shape ``(n, m)``, non-negative, each row summing to 1: the conditional probabilities of the
        completions. Default: equal weights ``1/m`` (completions drawn from the conditional
        distribution).

    Returns
    -------
    MissingInformation
        ``complete``, ``missing``, ``observed`` (each ``(k, k)``) and the observed ``score``.

    Raises
    ------
    ArgumentTypeError
        ``complete_loglik`` not callable, ``theta`` or ``weights`` not array-like.
    ShapeError
        ``theta`` not 1-D, the log-likelihood not of shape ``(n, m)``, ``weights`` of another shape.
    InvalidArgumentError
        Negative weights, or rows not summing to 1.
    NonFiniteError
        Non-finite ``theta``, weights or log-likelihood values.

    Examples
    --------
    Exponential(rate) lifetimes, the second censored at 1: its complete value is 1 + Exp(rate).
    Completing it at two Gauss-Laguerre nodes is exact, and the observed information is
    (number uncensored) / rate**2 = 1 / 4:

    >>> import numpy as np, torch
    >>> nodes, w = np.polynomial.laguerre.laggauss(2)
    >>> rate = torch.tensor([2.0], dtype=torch.float64)
    >>> x = torch.tensor([[0.3, 0.3], list(1 + nodes / 2.0)], dtype=torch.float64)
    >>> weights = torch.tensor([[0.5, 0.5], list(w)], dtype=torch.float64)
    >>> out = louis_information(lambda th: torch.log(th) - th * x, rate, weights)
    >>> round(out.observed.item(), 12), round(out.missing.item(), 12)
    (0.25, 0.25)
    """
    check_callable(complete_loglik, "complete_loglik", "a callable theta -> Tensor of shape (n, m)")
    th = check_tensor(theta, "theta", ndim=1, dtype=_DTYPE).detach()
    with torch.no_grad():
        value = complete_loglik(th)
    if not isinstance(value, Tensor) or value.ndim != 2:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ShapeError(f"complete_loglik must return a tensor of shape (n, m), got {shape}")
    check_tensor(value, "complete_loglik(theta)")
    n, m = value.shape
    if weights is None:
        w = torch.full((n, m), 1.0 / m, dtype=_DTYPE)
    else:
        w = check_tensor(weights, "weights", ndim=2, dtype=_DTYPE)
        if w.shape != value.shape:
            raise ShapeError(f"weights must have the shape {(n, m)} of complete_loglik(theta), got {tuple(w.shape)}")
        if bool((w < 0).any()):
            raise InvalidArgumentError("weights must be non-negative (conditional probabilities of the completions)")
        if not torch.allclose(w.sum(-1), torch.ones(n, dtype=_DTYPE), rtol=0.0, atol=1e-10):
            raise InvalidArgumentError("weights: each row must sum to 1 (conditional probabilities of the completions)")

    g, h = _entry_derivatives(complete_loglik, th)  # (n, m, k), (n, m, k, k)
    check_tensor(g, "the gradient of complete_loglik")
    check_tensor(h, "the Hessian of complete_loglik")
    wg = w[..., None]
    mean_g = (wg * g).sum(1)  # (n, k)
    complete = -(w[..., None, None] * h).sum((0, 1))
    second = (w[..., None, None] * g.unsqueeze(-1) * g.unsqueeze(-2)).sum(1)  # (n, k, k)
    missing = (second - mean_g.unsqueeze(-1) * mean_g.unsqueeze(-2)).sum(0)
    complete = 0.5 * (complete + complete.mT)
    missing = 0.5 * (missing + missing.mT)
    return MissingInformation(complete, missing, complete - missing, mean_g.sum(0))
