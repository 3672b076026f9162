r"""Fisher information of a coarsened observation: an observation seen only in bins, or censored.

A statistic :math:`T = t(X)` carries the information of its own distribution,
:math:`I_T(\theta) = \operatorname{Var}_\theta \nabla_\theta \log p_T(T \mid \theta)`, and by the data
processing inequality :math:`I_T(\theta) \preceq I_X(\theta)`, with equality for every
:math:`\theta` exactly when :math:`T` is sufficient. Two coarsenings of a univariate continuous
observation are computed here, each from the distribution's differentiable ``cdf``:

- **binning** (grouping, rounding): only the bin :math:`B_j = (e_{j-1}, e_j]` containing
  :math:`X` is seen, a categorical statistic with probabilities
  :math:`P_j(\theta) = F_\theta(e_j) - F_\theta(e_{j-1})` and information

  .. math:: I_B(\theta) = \sum_j \frac{\nabla_\theta P_j\, \nabla_\theta P_j^\top}{P_j};

- **type-I right censoring** at a fixed :math:`c`: :math:`(\min(X, c), \mathbf 1\{X \le c\})` is seen,
  with information

  .. math::

      I_c(\theta) = \int_{x \le c} s\, s^\top\, p_\theta(x)\, dx
      + \frac{\nabla_\theta S_\theta(c)\, \nabla_\theta S_\theta(c)^\top}{S_\theta(c)},
      \qquad S_\theta(c) = 1 - F_\theta(c),

  the exact observations contributing their score and the censored ones the score of the survival
  probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._validate import check_real, check_tensor
from ..errors import InvalidArgumentError, ShapeError, UnsupportedError
from . import _params, _pointwise

__all__ = ["binned_information", "censored_information"]

_DTYPE = torch.float64
#: Relative tolerance of the quadrature in :func:`censored_information`.
QUADRATURE_RTOL = 1e-10


def _resolve(dist: Any, params: str | Sequence[str] | None) -> _params._Resolved:
    r = _params.resolve(dist, params)
    if r.batch_shape != torch.Size() or r.dist.event_shape != torch.Size():
        raise ShapeError(
            f"dist must be a single univariate distribution (batch and event shape ()), got batch shape "
            f"{tuple(r.batch_shape)} and event shape {tuple(r.dist.event_shape)}"
        )
    if r.dist.has_enumerate_support or getattr(r.dist.support, "is_discrete", False):
        raise UnsupportedError(
            f"dist: {type(dist).__name__} is discrete; these coarsenings are for continuous families"
        )
    return r


def _cdf_and_jacobian(r: _params._Resolved, x: Tensor) -> tuple[Tensor, Tensor]:
    """F(x) and its Jacobian in the coordinates, shapes (m,) and (m, k): each point gets its own copy of
    the parameters, so one backward pass gives every row."""
    m = x.shape[0]
    theta = r.coords().expand(m, r.k).clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            f = r.build(theta, torch.Size([m])).cdf(x)
            (jac,) = torch.autograd.grad(f.sum(), theta)
        except NotImplementedError:
            raise UnsupportedError(
                f"dist: the cdf of {r.cls.__name__} is not available or cannot be differentiated in these "
                "parameters by torch"
            ) from None
    if not torch.isfinite(jac).all():
        raise UnsupportedError(f"dist: the cdf of {r.cls.__name__} is not differentiable at these points")
    return f.detach(), jac


def binned_information(dist: Distribution, edges: Any, params: str | Sequence[str] | None = None) -> Tensor:
    r"""Fisher information of the bin that one observation falls in.

    With interior cut points :math:`e_1 < \dots < e_m`, the bins are
    :math:`(-\infty, e_1], (e_1, e_2], \dots, (e_m, \infty)` (clipped to the support), with
    probabilities :math:`P_j(\theta)`; the bin index is a categorical statistic and its information is

    .. math:: I_B(\theta) = \sum_{j=0}^{m} \frac{\nabla_\theta P_j\, \nabla_\theta P_j^\top}{P_j}
       \;\preceq\; I_X(\theta).

    The probabilities are differences of ``cdf`` values, so a bin far in the upper tail (where the cdf
    is close to 1) is accurate to about ``1e-16`` absolutely, not relatively. Bins of zero probability
    carry no information and are skipped. Refining the bins (adding cut
    points) never decreases :math:`I_B`, and as the bins shrink it tends to :math:`I_X`.

    Parameters
    ----------
    dist : torch.distributions.Distribution
        A single univariate continuous distribution with a differentiable ``cdf`` (Normal,
        Exponential, Laplace, Cauchy, ...).
    edges : array_like
        The interior cut points, a strictly increasing 1-D array of finite numbers.
    params : str or Sequence of str, optional
        The parameters, as for :func:`~fisherbook.stats.estimators.fisher_information`.

    Returns
    -------
    Tensor
        float64 of shape ``(k, k)``.

    Raises
    ------
    ShapeError
        ``edges`` not 1-D or empty, ``dist`` batched or multivariate.
    InvalidArgumentError
        ``edges`` not strictly increasing, or unknown ``params``.
    NonFiniteError
        ``edges`` with NaN or infinite values.
    UnsupportedError
        ``dist`` discrete or without a differentiable ``cdf``.

    Examples
    --------
    One Normal(0, 1) observation seen only through its sign keeps :math:`2/\pi` of the information
    about the location:

    >>> from torch.distributions import Normal
    >>> binned_information(Normal(0.0, 1.0), [0.0], params="loc")
    tensor([[0.6366]], dtype=torch.float64)
    """
    r = _resolve(dist, params)
    e = check_tensor(edges, "edges", ndim=1, dtype=_DTYPE)
    if e.numel() > 1 and not bool((e[1:] > e[:-1]).all()):
        raise InvalidArgumentError("edges must be strictly increasing")
    lower, upper = _pointwise.support(r)
    e = e[(e > lower) & (e < upper)]  # cut points outside the support split off empty bins
    if e.numel() == 0:
        return torch.zeros(r.k, r.k, dtype=_DTYPE)
    f, jac = _cdf_and_jacobian(r, e)
    zero = torch.zeros(1, dtype=_DTYPE)
    probs = torch.diff(torch.cat([zero, f, zero + 1]))
    grads = torch.diff(torch.cat([torch.zeros(1, r.k, dtype=_DTYPE), jac, torch.zeros(1, r.k, dtype=_DTYPE)]), dim=0)
    keep = probs > 0
    g = grads[keep]
    info = (g.unsqueeze(-1) * g.unsqueeze(-2) / probs[keep][:, None, None]).sum(0)
    return 0.5 * (info + info.mT)


def censored_information(dist: Distribution, limit: float, params: str | Sequence[str] | None = None) -> Tensor:
    r"""Fisher information of one observation right-censored at a fixed limit (type-I censoring).

    What is seen is :math:`(\min(X, c), \mathbf 1\{X \le c\})`: the value when :math:`X \le c`, only
    the fact :math:`X > c` otherwise. Its information is

    .. math::

        I_c(\theta) = \int_{x \le c} s(\theta; x)\, s(\theta; x)^\top\, p_\theta(x)\, dx
        + \frac{\nabla_\theta S_\theta(c)\, \nabla_\theta S_\theta(c)^\top}{S_\theta(c)}
        \;\preceq\; I_X(\theta),

    with :math:`S_\theta(c) = 1 - F_\theta(c)`. The integral is computed by adaptive quadrature
    (``scipy.integrate.cubature``, relative tolerance :data:`QUADRATURE_RTOL`) of the autograd score.
    For an Exponential(:math:`\lambda`) it is :math:`(1 - e^{-\lambda c})/\lambda^2`: the fraction of
    information kept is the probability of an uncensored observation.

    Parameters
    ----------
    dist : torch.distributions.Distribution
        A single univariate continuous distribution with a differentiable ``cdf``.
    limit : float
        The censoring point :math:`c`, finite; it must leave positive probability on both sides.
    params : str or Sequence of str, optional
        The parameters, as for :func:`~fisherbook.stats.estimators.fisher_information`.

    Returns
    -------
    Tensor
        float64 of shape ``(k, k)``.

    Raises
    ------
    ArgumentTypeError
        ``limit`` not a real number.
    NonFiniteError
        ``limit`` NaN or infinite.
    InvalidArgumentError
        ``limit`` outside the interior of the support, or with (numerically) no probability above it.
    ShapeError, UnsupportedError
        As for :func:`binned_information`.

    Examples
    --------
    >>> from torch.distributions import Exponential
    >>> censored_information(Exponential(2.0), 0.5)   # (1 - e^{-1}) / 4
    tensor([[0.1580]], dtype=torch.float64)
    """
    r = _resolve(dist, params)
    c = check_real(limit, "limit")
    lower, upper = _pointwise.support(r)
    if not lower < c < upper:
        raise InvalidArgumentError(f"limit must lie inside the support ({lower}, {upper}) of {r.cls.__name__}, got {c}")
    cx = torch.tensor([c], dtype=_DTYPE)
    f, jac = _cdf_and_jacobian(r, cx)
    surv = 1.0 - float(f[0])
    if not surv > 0.0 or float(f[0]) <= 0.0:
        raise InvalidArgumentError(
            f"limit = {c} leaves no probability on one side (F(limit) = {float(f[0]):.3g}): "
            "nothing or everything is censored"
        )
    k = r.k

    def integrand(x: Tensor) -> Tensor:
        lp, g = _pointwise.derivatives(r, x, 1)
        return (lp.exp()[:, None, None] * g.unsqueeze(-1) * g.unsqueeze(-2)).reshape(-1, k * k)

    centre, spread = _pointwise.centre_scale(r)
    value = _pointwise.expectation(integrand, lower, c, QUADRATURE_RTOL, points=[centre],
                                   centre=centre, scale=spread)
    body = torch.as_tensor(value, dtype=_DTYPE).reshape(k, k)
    gs = -jac[0]  # gradient of the survival probability
    info = body + torch.outer(gs, gs) / surv
    return 0.5 * (info + info.mT)
