r"""Amari's α-divergences and their local expansion to the Fisher metric.

For densities :math:`p, q` and :math:`\alpha \ne \pm 1` (Amari 2016, §3.6; Amari & Nagaoka 2000, §3.6)

.. math::

    D_\alpha(p \,\|\, q) = \frac{4}{1 - \alpha^2}\Bigl(1 - \int p^{\frac{1-\alpha}{2}}\, q^{\frac{1+\alpha}{2}}\Bigr),

with the limits :math:`D_{-1}(p\|q) = \mathrm{KL}(p\|q)` and :math:`D_{1}(p\|q) = \mathrm{KL}(q\|p)`;
:math:`D_0 = 2\int(\sqrt p - \sqrt q)^2 = 4 H^2` with :math:`H^2 = 1 - \int\sqrt{pq}` the squared Hellinger
distance. Every :math:`D_\alpha` is an f-divergence with :math:`f''(1) = 1`, so for a regular model
:math:`D_\alpha(p_\theta \| p_{\theta + d\theta}) = \tfrac12\, d\theta^\top I(\theta)\, d\theta + O(\|d\theta\|^3)`,
whatever :math:`\alpha`; the third-order term is where the α-connections appear.

For exponential families the integral is closed-form through the log-partition function:
:math:`\log\int p_{\theta_1}^{a}\, p_{\theta_2}^{1-a}
= \psi(a\theta_1 + (1-a)\theta_2) - a\psi(\theta_1) - (1-a)\psi(\theta_2)`.
Any other family: sum over given nodes of the sample space (a finite support or a quadrature rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._validate import check_distribution, check_real, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, OffManifoldError, ShapeError

__all__ = ["alpha_divergence"]

DTYPE = torch.float64


def _log_affinity_expfam(p: Distribution, q: Distribution, a: float) -> Tensor:
    """log int p^a q^(1-a) for two members of an exponential family of fisherbook.geometry.dualflat."""
    from . import dualflat

    tp, tq = dualflat.natural_parameters(p), dualflat.natural_parameters(q)
    mix = a * tp + (1 - a) * tq
    try:
        dualflat.from_natural(p, mix)
    except (OffManifoldError, ValueError):
        raise InvalidArgumentError(
            f"D_alpha is infinite here: the integral of p^{a:g} q^{1 - a:g} diverges "
            "(a theta_p + (1 - a) theta_q leaves the natural parameter space); use |alpha| <= 1"
        ) from None
    return dualflat.log_partition(p, mix) - a * dualflat.log_partition(p, tp) - (1 - a) * dualflat.log_partition(q, tq)


def _log_affinity_nodes(p: Distribution, q: Distribution, a: float, x: Any, weights: Any) -> Tensor:
    xs = check_tensor(x, "x", dtype=DTYPE)
    if xs.ndim < 1 or xs.shape[1:] != p.event_shape or p.batch_shape != torch.Size() or q.batch_shape != torch.Size():
        raise ShapeError(
            f"x must hold nodes of shape (n, *event_shape) for single distributions p, q (empty batch shape); got x of "
            f"shape {tuple(xs.shape)}, batch shapes {tuple(p.batch_shape)} and {tuple(q.batch_shape)}"
        )
    w = (torch.ones(xs.shape[0], dtype=DTYPE) if weights is None
         else check_tensor(weights, "weights", ndim=1, dtype=DTYPE))
    if w.shape[0] != xs.shape[0] or not bool((w >= 0).all()):
        raise ShapeError(f"weights must be {xs.shape[0]} non-negative numbers, one per node")
    lp, lq = p.log_prob(xs).to(DTYPE), q.log_prob(xs).to(DTYPE)
    for name, lv in (("p", lp), ("q", lq)):
        total = float((w * lv.exp()).sum())
        if not abs(total - 1) < 1e-6:
            raise InvalidArgumentError(
                f"the nodes integrate {name} to {total:.8g}, not 1: they do not cover the sample space"
            )
    return torch.logsumexp(torch.log(w) + a * lp + (1 - a) * lq, dim=0)


def _kl_nodes(p: Distribution, q: Distribution, x: Any, weights: Any) -> Tensor:
    xs = check_tensor(x, "x", dtype=DTYPE)
    w = (torch.ones(xs.shape[0], dtype=DTYPE) if weights is None
         else check_tensor(weights, "weights", ndim=1, dtype=DTYPE))
    lp, lq = p.log_prob(xs).to(DTYPE), q.log_prob(xs).to(DTYPE)
    return (w * lp.exp() * (lp - lq)).sum()


def alpha_divergence(p: Distribution, q: Distribution, alpha: float, *, x: Any = None, weights: Any = None) -> Tensor:
    r"""Amari's α-divergence :math:`D_\alpha(p\,\|\,q)`.

    .. math::

        D_\alpha(p\|q) = \frac{4}{1-\alpha^2}\Bigl(1 - \int p^{\frac{1-\alpha}2} q^{\frac{1+\alpha}2}\Bigr),
        \quad D_{-1}(p\|q) = \mathrm{KL}(p\|q), \quad D_1(p\|q) = \mathrm{KL}(q\|p).

    Duality: :math:`D_\alpha(p\|q) = D_{-\alpha}(q\|p)`. Special cases: :math:`\alpha = \mp1` the two KL
    divergences, :math:`\alpha = 0` four times the squared Hellinger distance
    :math:`1 - \int\sqrt{pq}`. Locally
    :math:`D_\alpha(p_\theta\|p_{\theta+\delta}) = \tfrac12\delta^\top I\delta + O(\|\delta\|^3)`.

    Parameters
    ----------
    p, q : Distribution
        Two members of the same family. Without ``x``: an exponential family of
        :mod:`~fisherbook.geometry.dualflat` (closed form by the log-partition function; batch shapes broadcast).
    alpha : float
        Any real number; for :math:`|\alpha| > 1` the divergence can be infinite, which raises.
    x : array_like, optional
        Nodes of the sample space, shape ``(n, *event_shape)``: the integral becomes
        :math:`\sum_n w_n p(x_n)^{a} q(x_n)^{1-a}` — any family, single distributions only.
    weights : array_like, optional
        Quadrature weights for ``x`` (``None``: a sum over a finite support).

    Returns
    -------
    Tensor
        float64, of the broadcast batch shape.

    Raises
    ------
    InvalidArgumentError
        If the divergence is infinite (:math:`|\alpha| > 1` and the integral diverges), or the nodes do not
        cover the sample space.
    ArgumentTypeError
        If the families differ, or no nodes are given for a family without a closed form.

    Examples
    --------
    For two Normals with equal scale,
    :math:`D_\alpha = \frac{4}{1-\alpha^2}\bigl(1 - e^{-(1-\alpha^2)\Delta\mu^2/(8\sigma^2)}\bigr)`:

    >>> from torch.distributions import Normal
    >>> d = alpha_divergence(Normal(0.0, 1.0), Normal(1.0, 1.0), 0.5)
    >>> import math
    >>> round(d.item(), 10) == round(4 / 0.75 * (1 - math.exp(-0.75 / 8)), 10)
    True
    """
    check_distribution(p, "p")
    check_distribution(q, "q")
    if type(p) is not type(q):
        raise ArgumentTypeError(f"p and q must be of the same family, got {type(p).__name__} and {type(q).__name__}")
    al = check_real(alpha, "alpha")
    if x is None:
        from .dualflat import _FAMILIES, kl_bregman

        if type(p) not in _FAMILIES:
            raise ArgumentTypeError(
                f"no closed-form alpha-divergence for {type(p).__name__}: "
                "pass nodes x (and weights) of its sample space"
            )
        if al == -1.0:
            return kl_bregman(p, q)
        if al == 1.0:
            return kl_bregman(q, p)
        log_aff = _log_affinity_expfam(p, q, (1 - al) / 2)
    else:
        if al == -1.0:
            return _kl_nodes(p, q, x, weights)
        if al == 1.0:
            return _kl_nodes(q, p, x, weights)
        log_aff = _log_affinity_nodes(p, q, (1 - al) / 2, x, weights)
    # D_alpha >= 0 for every alpha (Hoelder's inequality); round-off near p = q can give -1e-14: clamp
    out = (-torch.expm1(log_aff) * (4 / (1 - al**2))).clamp_min(0.0)
    if not bool(torch.isfinite(out).all()):
        raise InvalidArgumentError(f"D_alpha is not finite for alpha = {al} (the integral overflows)")
    return out
