r"""First-order asymptotics built on the MLE: the delta method, variance-stabilising intervals and
Le Cam's one-step estimator.

Chapter 3. :func:`delta_method` propagates a covariance through a smooth map by its Jacobian
(autograd); :func:`stabilised_interval` builds the Wald interval on a variance-stabilising scale
(square root for the Poisson, arcsine square root for the Bernoulli, log for the Exponential) and
maps it back; :func:`one_step` takes one Newton or Fisher-scoring step from a starting estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .._numerics import spd_inverse, two_sided_z
from .._validate import check_callable, check_int, check_level, check_option, check_tensor
from ..errors import InvalidArgumentError, ShapeError
from .mle import DTYPE, Family, _grad_hess, _is_dist_class, _prepare

__all__ = ["STABILISED_FAMILIES", "delta_method", "one_step", "stabilised_interval"]

STABILISED_FAMILIES = ("poisson", "bernoulli", "exponential")


def delta_method(fn: Callable[[Tensor], Tensor], theta: Any, covariance: Any) -> tuple[Tensor, Tensor]:
    r"""Delta method: the value and approximate covariance of :math:`g(\hat\theta)`.

    If :math:`\sqrt n(\hat\theta - \theta) \to N(0, \Sigma)` and :math:`g` is differentiable at
    :math:`\theta` with Jacobian :math:`G`, then :math:`\sqrt n(g(\hat\theta) - g(\theta)) \to N(0, G\Sigma G^\top)`;
    this returns :math:`g(\hat\theta)` and :math:`G(\hat\theta)\,\Sigma\,G(\hat\theta)^\top`, with :math:`G`
    from autograd.

    Parameters
    ----------
    fn : callable
        Maps a ``(k,)`` tensor to a ``(m,)`` tensor or a scalar.
    theta : Tensor
        The estimate, shape ``(k,)``.
    covariance : Tensor
        Its covariance, shape ``(k, k)``.

    Returns
    -------
    (Tensor, Tensor)
        :math:`g(\hat\theta)` of shape ``(m,)`` and its covariance ``(m, m)`` (a scalar ``fn``
        gives ``(1,)`` and ``(1, 1)``).

    Examples
    --------
    The log of an Exponential rate has standard error :math:`1/\sqrt n` whatever the rate:

    >>> import torch
    >>> lam, n = torch.tensor([2.0], dtype=torch.float64), 25
    >>> value, cov = delta_method(torch.log, lam, lam[None] ** 2 / n)
    >>> round(float(cov.sqrt()), 6)
    0.2
    """
    check_callable(fn, "fn")
    th = check_tensor(theta, "theta", dtype=DTYPE)
    cov = check_tensor(covariance, "covariance", dtype=DTYPE)
    if th.dim() != 1 or cov.shape != (th.shape[0], th.shape[0]):
        raise ShapeError(f"theta must be (k,) and covariance (k, k); got {tuple(th.shape)} and {tuple(cov.shape)}")
    value = torch.as_tensor(fn(th), dtype=DTYPE).reshape(-1)
    G = torch.autograd.functional.jacobian(lambda v: torch.as_tensor(fn(v)).reshape(-1), th).reshape(value.shape[0], -1)
    if not bool(torch.isfinite(G).all()):
        raise InvalidArgumentError("fn is not differentiable at theta (its Jacobian is not finite)")
    return value.detach(), (G @ cov @ G.T).detach()


def stabilised_interval(family: str, x: Any, level: float = 0.95) -> tuple[Tensor, Tensor]:
    r"""Wald interval on a variance-stabilising scale, mapped back to the parameter.

    A transform :math:`h` with :math:`h'(\theta) = \sqrt{I(\theta)}` makes the delta-method
    variance of :math:`h(\hat\theta)` equal :math:`1/n` for every :math:`\theta`; the interval is
    :math:`h^{-1}\big(h(\hat\theta) \pm z/\sqrt n\big)`, clipped to the range of :math:`h`:

    * ``"poisson"`` (rate :math:`\lambda`): :math:`h = 2\sqrt\lambda`, so
      :math:`\big(\max(0, \sqrt{\hat\lambda} - z/(2\sqrt n))^2,\ (\sqrt{\hat\lambda} + z/(2\sqrt n))^2\big)`;
    * ``"bernoulli"`` (probability :math:`p`): :math:`h = 2\arcsin\sqrt p`;
    * ``"exponential"`` (rate :math:`\lambda`): :math:`h = \log\lambda`, so
      :math:`\hat\lambda\, e^{\mp z/\sqrt n}`.

    Parameters
    ----------
    family : str
        One of :data:`STABILISED_FAMILIES`.
    x : Tensor
        Data, shape ``(*batch, n)``: counts, 0/1 outcomes, or positive times.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    (Tensor, Tensor)
        Lower and upper limits, each of shape ``(*batch)``.

    Examples
    --------
    >>> import torch
    >>> lo, hi = stabilised_interval("exponential", torch.tensor([0.5, 1.0, 1.5, 1.0], dtype=torch.float64))
    >>> round(float(lo * hi), 6)  # symmetric on the log scale about log(1 / mean) = 0
    1.0
    """
    family = check_option(family, "family", STABILISED_FAMILIES)
    level = check_level(level)
    xt = check_tensor(x, "x", dtype=DTYPE)
    if xt.dim() < 1:
        raise ShapeError(f"x must have shape (*batch, n), got {tuple(xt.shape)}")
    n = xt.shape[-1]
    if family == "poisson" and bool(((xt < 0) | (xt != xt.round())).any()):
        raise InvalidArgumentError("x must hold non-negative integer counts for family='poisson'")
    if family == "bernoulli" and bool(((xt != 0) & (xt != 1)).any()):
        raise InvalidArgumentError("x must hold 0/1 outcomes for family='bernoulli'")
    if family == "exponential" and bool((xt <= 0).any()):
        raise InvalidArgumentError("x must hold positive values for family='exponential'")
    est = xt.mean(-1)
    half = two_sided_z(level) / math.sqrt(n)  # half-width on the scale where the variance is 1/n
    if family == "poisson":
        r = est.sqrt()
        return (r - half / 2).clamp_min(0.0) ** 2, (r + half / 2) ** 2
    if family == "bernoulli":
        a = torch.asin(est.sqrt())
        return torch.sin((a - half / 2).clamp_min(0.0)) ** 2, torch.sin((a + half / 2).clamp_max(math.pi / 2)) ** 2
    lam = 1.0 / est
    return lam * math.exp(-half), lam * math.exp(half)


def one_step(
    family: Family,
    x: Any,
    init: Mapping[str, Any],
    *,
    method: str = "newton",
    steps: int = 1,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
) -> Tensor:
    r"""Le Cam's one-step estimator: Newton (or Fisher-scoring) steps from a starting estimate.

    .. math::

        \hat\theta^{(1)} = \tilde\theta + \mathcal I(\tilde\theta)^{-1}\, U(\tilde\theta),

    with :math:`U` the total score and :math:`\mathcal I` the observed information
    :math:`J = -\nabla^2\ell` (``method="newton"``) or the expected :math:`nI` (``"scoring"``),
    in the coordinates of the parameters themselves. If :math:`\tilde\theta` is
    :math:`\sqrt n`-consistent, one step already has the MLE's limit
    :math:`N(\theta, (nI)^{-1})` (Le Cam 1956; Lehmann and Casella 1998, Thm 6.4.3); unlike
    :func:`~fisherbook.stats.mle.mle` there is no line search and no check that the step stays
    inside the parameter space.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle` (``"scoring"`` needs a class).
    x : Tensor
        Data, shape ``(*batch, n)``.
    init : mapping
        The starting estimate of each parameter (number or ``(*batch)`` tensor).
    method : str
        ``"newton"`` or ``"scoring"``.
    steps : int
        Number of steps (1 is Le Cam's estimator).
    fixed, constraints : mapping, optional
        As in :func:`~fisherbook.stats.mle.mle`.

    Returns
    -------
    Tensor
        Shape ``(*batch, k)``, the parameters in the order of ``init``.

    Examples
    --------
    For the Exponential rate a Newton step from :math:`\tilde\lambda` is :math:`2\tilde\lambda - \tilde\lambda^2\bar x`:

    >>> import torch
    >>> from torch.distributions import Exponential
    >>> x = torch.tensor([0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    >>> round(float(one_step(Exponential, x, {"rate": 0.5})[0]), 6), 2 * 0.5 - 0.25 * 1.5
    (0.625, 0.625)
    """
    method = check_option(method, "method", ("newton", "scoring"))
    steps = check_int(steps, "steps")
    if not isinstance(init, Mapping) or len(init) == 0:
        raise InvalidArgumentError("init must be a non-empty mapping from parameter name to starting value")
    if method == "scoring" and not _is_dist_class(family):
        raise InvalidArgumentError("method='scoring' needs a torch.distributions class as family; use method='newton'")
    names = tuple(init)
    model = _prepare(family, x, names, fixed, constraints)
    batch = model.x.shape[:-1]
    n = model.x.shape[-1]
    theta = []
    for name in names:
        v = check_tensor(init[name], f"init[{name!r}]", dtype=DTYPE).expand(batch).clone()
        theta.append(v)
    for _ in range(steps):
        val, U, H = _grad_hess(model.loglik, theta)
        if not bool(torch.isfinite(val).all()):
            raise InvalidArgumentError(
                "init gives a non-finite log-likelihood; check it against the parameter's constraint"
            )
        if method == "newton":  # J need not be positive definite away from the maximum: solve, do not invert
            try:
                step = torch.linalg.solve(-H, U.unsqueeze(-1)).squeeze(-1)
            except RuntimeError as err:
                raise InvalidArgumentError("the observed information is singular at the starting value") from err
        else:
            from .estimators import fisher_information  # the core API; imported late to keep modules independent

            info = n * fisher_information(model.dist(theta, validate=False), params=names).to(DTYPE)
            step = (spd_inverse(info, "expected information at the starting value") @ U.unsqueeze(-1)).squeeze(-1)
        theta = list((torch.stack(theta, -1) + step).unbind(-1))
    out = torch.stack(theta, -1)
    if not bool(torch.isfinite(out).all()):
        raise InvalidArgumentError("the step left the doubles; the starting value is too far from the maximum")
    return out
