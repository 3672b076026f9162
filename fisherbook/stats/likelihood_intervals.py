r"""Intervals for a scalar parameter from a likelihood: Wald, score (Rao) and likelihood ratio.

Chapter 3. :func:`wald_interval` reads a fit from :func:`~fisherbook.stats.mle.mle`;
:func:`score_interval` and :func:`lr_interval` invert their test statistic by an outward search
from the MLE and a vectorised bisection, batched over data sets. An end the statistic never
crosses is the edge of the parameter space (``inf`` for a positive parameter, 1 for a
probability).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._numerics import bisect_bracket, two_sided_z
from .._validate import check_level
from ..errors import ArgumentTypeError, InvalidArgumentError
from .mle import DTYPE, Family, MLEResult, _grad_hess, mle

__all__ = ["lr_interval", "score_interval", "wald_interval"]


def wald_interval(
    result: MLEResult, param: str | None = None, level: float = 0.95, information: str = "observed"
) -> tuple[Tensor, Tensor]:
    r"""Wald interval :math:`\hat\theta_j \pm z_{1-\alpha/2}\, \widehat{\mathrm{se}}_j` from a fit.

    The standard error is the square root of the diagonal entry of the covariance estimate
    chosen by ``information``: ``"observed"`` (:math:`J(\hat\theta)^{-1}`), ``"expected"``
    (:math:`(nI(\hat\theta))^{-1}`) or ``"sandwich"``.

    Parameters
    ----------
    result : MLEResult
        A fit from :func:`~fisherbook.stats.mle.mle`.
    param : str, optional
        The parameter; required when more than one was estimated.
    level : float
        Confidence level in (0, 1).
    information : str
        ``"observed"``, ``"expected"`` or ``"sandwich"``.

    Returns
    -------
    (Tensor, Tensor)
        Lower and upper limits, each of the fit's batch shape.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Poisson
    >>> fit = mle(Poisson, torch.tensor([2.0, 4.0, 3.0, 3.0], dtype=torch.float64), init={"rate": 1.0})
    >>> lo, hi = wald_interval(fit)  # 3 -/+ 1.96 * sqrt(3 / 4)
    >>> round(float(lo), 4), round(float(hi), 4)
    (1.3026, 4.6974)
    """
    if not isinstance(result, MLEResult):
        raise ArgumentTypeError(f"result must be an MLEResult, got {type(result).__name__}")
    level = check_level(level)
    if param is None:
        if len(result.names) != 1:
            raise InvalidArgumentError(f"param is required: the fit estimated {result.names}")
        param = result.names[0]
    if param not in result.names:
        raise InvalidArgumentError(f"param must be one of {result.names}, got {param!r}")
    j = result.names.index(param)
    se = result.standard_errors(information)[..., j]
    est = result.theta[..., j]
    z = two_sided_z(level)
    return est - z * se, est + z * se


def _fit_one(
    family: Any,
    x: Any,
    param: str,
    fixed: Mapping[str, Any] | None,
    init: Any,
    constraints_: Mapping[str, Any] | None = None,
) -> MLEResult:
    return mle(family, x, {param: init}, fixed=fixed, constraints=constraints_)


def _invert(
    stat: Callable[[Tensor], Tensor], fit: MLEResult, crit: float, n_bisect: int = 60
) -> tuple[Tensor, Tensor]:
    """Both ends of ``{theta : stat(theta) <= crit}`` around the MLE, by outward search and bisection.

    Works in the unconstrained coordinate of the parameter, doubling the step from one standard
    error until the statistic exceeds ``crit``, then bisecting. Where the statistic cannot be
    evaluated (it overflows, or the parameter leaves the doubles) before it exceeds ``crit``, the
    set is unbounded on that side as far as float64 can tell, and the end is the edge of the
    parameter space (``inf`` for a rate or scale, 1 for a probability) rather than the point where
    the arithmetic broke down.
    """
    tr = fit._model.transforms[0]
    theta_hat = fit.theta[..., 0]
    u0 = tr.inv(theta_hat)
    # scale of the search: standard error in u from the observed information in u
    _, _, Hu = _grad_hess(lambda us: fit._model.loglik([tr(us[0])]), [u0])
    se_u = (1.0 / (-Hu[..., 0, 0]).clamp_min(1e-300)).sqrt().clamp(1e-6, 1e3)

    def evaluate(u: Tensor) -> Tensor:
        with torch.no_grad():
            theta = tr(u)
            finite = torch.isfinite(theta)
            s = stat(torch.where(finite, theta, theta_hat))  # the statistic is never asked about inf
        return torch.where(finite, s, torch.full_like(s, math.nan))

    ends = []
    for sign in (-1.0, 1.0):
        inner = torch.zeros_like(u0)
        outer = torch.full_like(u0, math.inf)
        delta = se_u.clone()
        active = torch.ones_like(u0, dtype=torch.bool)
        for _ in range(1100):  # 2**1100 standard errors: past every double
            s = evaluate(u0 + sign * delta)
            stop = active & ~(s <= crit)  # crossed, or the statistic is not finite
            outer = torch.where(stop, delta, outer)
            inner = torch.where(active & ~stop, delta, inner)
            active = active & ~stop
            if not bool(active.any()):
                break
            delta = torch.where(active, delta * 2, delta)
        found = torch.isfinite(outer)
        hi = torch.where(found, outer, inner + 1.0)

        def inside(d: Tensor, sign: float = sign) -> Tensor:
            return evaluate(u0 + sign * d) <= crit

        lo_b, hi_b = bisect_bracket(inside, inner.clone(), hi, n_iter=n_bisect)
        mid = 0.5 * (lo_b + hi_b)
        beyond = evaluate(u0 + sign * hi_b)  # the outer end of the final bracket
        # a genuine crossing leaves a finite statistic above crit just outside the end
        crossed = found & torch.isfinite(beyond)
        end = tr(u0 + sign * mid)
        edge = tr(torch.full_like(u0, sign * math.inf))
        ends.append(torch.where(crossed, end, edge))
    return ends[0], ends[1]


def score_interval(
    family: type[Distribution],
    x: Tensor,
    param: str,
    *,
    init: Any,
    fixed: Mapping[str, Any] | None = None,
    level: float = 0.95,
    fisher: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Score (Rao) interval for a scalar parameter, the other parameters known.

    The set of :math:`\theta` not rejected by the score test,

    .. math::

        \Big\{\theta : \frac{U(\theta)^2}{n I(\theta)} \le \chi^2_{1,\,\text{level}}\Big\},
        \qquad U(\theta) = \sum_i \partial_\theta \log p(x_i;\theta),

    found by searching outwards from the MLE and bisecting. It needs the expected information
    at every candidate :math:`\theta`, not only at :math:`\hat\theta`; for the Binomial it is
    the Wilson interval.

    Parameters
    ----------
    family : torch.distributions class
        The family, e.g. ``Poisson``.
    x : Tensor
        Data, shape ``(*batch, n)``; each leading index a separate data set.
    param : str
        The parameter of interest (a constructor argument of ``family``).
    init : float or Tensor
        Starting value for the MLE.
    fixed : mapping, optional
        Values of the other parameters.
    level : float
        Confidence level in (0, 1).
    fisher : callable, optional
        Per-observation information :math:`I(\theta)` for a ``(*batch)`` tensor of values.
        Default: :func:`~fisherbook.stats.estimators.fisher_information` in closed form.

    Returns
    -------
    (Tensor, Tensor)
        Lower and upper limits, each of shape ``(*batch)``.

    Examples
    --------
    For Poisson counts the score interval solves a quadratic:

    >>> import torch
    >>> from torch.distributions import Poisson
    >>> x = torch.tensor([2.0, 4.0, 3.0, 3.0], dtype=torch.float64)
    >>> lo, hi = score_interval(Poisson, x, "rate", init=1.0, fisher=lambda r: 1 / r)
    >>> z2 = 1.959963984540054 ** 2
    >>> round(float(lo), 5) == round((12 + z2 / 2 - (z2 * (12 + z2 / 4)) ** 0.5) / 4, 5)
    True
    """
    level = check_level(level)
    fit = _fit_one(family, x, param, fixed, init)
    model = fit._model
    n = fit.n
    if fisher is None:
        from .estimators import fisher_information

        def fisher(theta: Tensor) -> Tensor:
            d = model.dist([theta], validate=False)
            return fisher_information(d, params=(param,))[..., 0, 0].to(DTYPE)

    def stat(theta: Tensor) -> Tensor:
        leaf = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (U,) = torch.autograd.grad(model.loglik([leaf]).sum(), leaf)
        return U**2 / (n * fisher(theta.detach()))

    crit = two_sided_z(level) ** 2
    return _invert(stat, fit, crit)


def lr_interval(
    family: Family,
    x: Tensor,
    param: str,
    *,
    init: Any,
    fixed: Mapping[str, Any] | None = None,
    level: float = 0.95,
    constraints: Mapping[str, Any] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Likelihood-ratio interval for a scalar parameter, the other parameters known.

    .. math::

        \big\{\theta : 2[\ell(\hat\theta) - \ell(\theta)] \le \chi^2_{1,\,\text{level}}\big\},

    found by searching outwards from the MLE and bisecting. Unlike the Wald interval it is
    invariant under reparameterisation and need not be symmetric about :math:`\hat\theta`.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle`.
    x : Tensor
        Data, shape ``(*batch, n)``.
    param : str
        The parameter of interest.
    init : float or Tensor
        Starting value for the MLE.
    fixed : mapping, optional
        Values of the other parameters.
    level : float
        Confidence level in (0, 1).
    constraints : mapping, optional
        Constraint of ``param`` for a callable family (default real), as in :func:`~fisherbook.stats.mle.mle`.

    Returns
    -------
    (Tensor, Tensor)
        Lower and upper limits, each of shape ``(*batch)``.

    Examples
    --------
    Exponential rate: the interval is asymmetric, longer on the right.

    >>> import torch
    >>> from torch.distributions import Exponential
    >>> x = torch.tensor([0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    >>> lo, hi = lr_interval(Exponential, x, "rate", init=1.0)
    >>> bool(hi - 2 / 3 > 2 / 3 - lo)
    True
    """
    level = check_level(level)
    fit = _fit_one(family, x, param, fixed, init, constraints)
    ll_hat = fit.log_likelihood

    def stat(theta: Tensor) -> Tensor:
        return 2 * (ll_hat - fit._model.loglik([theta]))

    return _invert(stat, fit, two_sided_z(level) ** 2)

