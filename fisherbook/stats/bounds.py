r"""Information bounds: Cramér–Rao (:func:`crlb`) and van Trees (:func:`van_trees`).

Chapter 2. Both work from tensors in float64; :func:`van_trees` also takes the prior itself and
integrates its information :math:`I(\pi) = \int \pi'^2/\pi` by quadrature over the prior's support.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from scipy import integrate
from torch import Tensor
from torch.distributions import Distribution, VonMises, constraints

from .._numerics import spd_inverse
from .._validate import check_int, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedError
from .estimators import _breakpoints, _centre_scale, _inverse, _transform

__all__ = ["crlb", "van_trees"]

DTYPE = torch.float64


def _tensor(value: Any, name: str) -> Tensor:
    return check_tensor(value, name, dtype=DTYPE)


def crlb(
    fisher: Tensor | float,
    n: int = 1,
    grad_g: Tensor | None = None,
    *,
    bias: Tensor | float | None = None,
    bias_grad: Tensor | float | None = None,
) -> Tensor:
    r"""Cramér–Rao lower bound on the covariance (or mean-squared error) of an estimator.

    For :math:`n` i.i.d. observations with per-observation Fisher information
    :math:`I(\theta)` (a :math:`k \times k` matrix), any unbiased estimator :math:`T` of
    :math:`g(\theta) \in \mathbb{R}^m` satisfies

    .. math::

        \operatorname{Cov}_\theta(T) \succeq J\,(n I(\theta))^{-1} J^\top,
        \qquad J = \partial g / \partial \theta^\top \in \mathbb{R}^{m \times k}.

    An estimator with bias :math:`b(\theta) = \operatorname{E}_\theta T - g(\theta)` has
    :math:`\operatorname{E}_\theta T = g + b`, so :math:`J` is replaced by
    :math:`J + \partial b/\partial\theta^\top`; adding :math:`b b^\top` bounds the
    mean-squared-error matrix. In the scalar case this is :math:`(1 + b')^2 / (nI) + b^2`.

    Parameters
    ----------
    fisher : Tensor or float
        Per-observation Fisher information, shape ``(..., k, k)``, or a scalar for a
        one-parameter family. Must be symmetric positive definite.
    n : int
        Number of i.i.d. observations, ``n >= 1``.
    grad_g : Tensor, optional
        Jacobian :math:`J` of :math:`g`, shape ``(m, k)`` (or ``(k,)`` for scalar :math:`g`).
        Default: the identity (bound for :math:`\theta` itself).
    bias : Tensor or float, optional
        Bias :math:`b(\theta)`, shape ``(m,)`` or scalar. When given the result bounds the
        mean-squared-error matrix :math:`\operatorname{E}(T-g)(T-g)^\top`.
    bias_grad : Tensor or float, optional
        Jacobian :math:`\partial b/\partial\theta^\top`, same shape as ``grad_g``.

    Returns
    -------
    Tensor
        float64 bound, shape ``(..., m, m)``; a 0-dim tensor when ``fisher`` is a scalar and
        ``grad_g``, ``bias`` and ``bias_grad`` are scalars or absent.

    Raises
    ------
    InvalidArgumentError
        If ``n < 1`` or shapes do not match (:class:`~fisherbook.errors.ShapeError`).
    NotPositiveDefiniteError
        If ``fisher`` is not symmetric (it is never symmetrised silently) or is singular.

    Examples
    --------
    >>> import torch
    >>> crlb(torch.tensor([[0.25]]), n=100)
    tensor([[0.0400]], dtype=torch.float64)
    >>> crlb(1.0, n=10, bias=-0.1, bias_grad=-0.1)  # (1 - 0.1)**2 / 10 + 0.1**2
    tensor(0.0910, dtype=torch.float64)
    """
    n = check_int(n, "n")
    F = _tensor(fisher, "fisher")
    scalar = F.dim() == 0
    if scalar:
        F = F.reshape(1, 1)
    if F.dim() < 2 or F.shape[-1] != F.shape[-2]:
        raise ShapeError(f"fisher must be a scalar or have shape (..., k, k), got {tuple(F.shape)}")
    k = F.shape[-1]
    inv = spd_inverse(n * F, "fisher")
    if grad_g is None:
        J = torch.eye(k, dtype=DTYPE)
    else:
        J = _tensor(grad_g, "grad_g")
        if J.dim() <= 1:
            scalar = scalar and J.dim() == 0
            J = J.reshape(1, -1)
        else:
            scalar = False
        if J.shape[-1] != k:
            raise ShapeError(f"grad_g must have last dimension k={k}, got shape {tuple(J.shape)}")
    if bias_grad is not None:
        D = _tensor(bias_grad, "bias_grad")
        if D.dim() > 0:
            scalar = False
        D = D.reshape(1, -1) if D.dim() <= 1 else D
        try:
            J = J + D
        except RuntimeError as err:
            raise ShapeError(f"bias_grad shape {tuple(D.shape)} does not match grad_g {tuple(J.shape)}") from err
    out = J @ inv @ J.transpose(-1, -2)
    if bias is not None:
        b = _tensor(bias, "bias")
        if b.dim() > 0:
            scalar = False
        b = b.reshape(-1)
        if b.shape[-1] not in (1, out.shape[-1]):
            raise ShapeError(f"bias must have {out.shape[-1]} entries, got {b.shape[-1]}")
        b = b.expand(out.shape[-1])
        out = out + torch.outer(b, b)
    return out.reshape(()) if scalar else out


# --------------------------------------------------------------------------- van Trees

#: How close to a finite end of its support (as a fraction of the prior's spread) the density of
#: a prior is evaluated to check that it vanishes there, and the largest fraction of its peak
#: density it may still have at that point.
_END_OFFSET = 1e-9
_END_RATIO = 1e-3


def _prior_support(prior: Distribution) -> tuple[float, float, bool]:
    """The interval a scalar continuous prior lives on, and whether it is a circle."""
    if isinstance(prior, VonMises):  # density of period 2 pi: one period, no ends
        loc = float(prior.loc)
        return loc - math.pi, loc + math.pi, True
    support = prior.support
    if bool(getattr(support, "is_discrete", False)):
        raise UnsupportedError(
            f"prior must be a continuous distribution, got the discrete {type(prior).__name__}: "
            "the van Trees inequality needs a differentiable prior density"
        )
    if support is constraints.real:
        return -math.inf, math.inf, False
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if lower is None and upper is None:
        raise UnsupportedError(
            f"prior must be a scalar distribution on an interval of the real line, got support {support}"
        )
    lo = -math.inf if lower is None else float(torch.as_tensor(lower))
    hi = math.inf if upper is None else float(torch.as_tensor(upper))
    return lo, hi, False


def _log_density(prior: Distribution, x: float) -> float:
    return float(prior.log_prob(torch.tensor(x, dtype=DTYPE)))


def _check_vanishes(prior: Distribution, lo: float, hi: float, cuts: list[float]) -> None:
    """Refuse a prior whose density does not go to 0 at a finite end of its support."""
    name = type(prior).__name__
    peak = max((_log_density(prior, c) for c in cuts), default=-math.inf)
    for end, side in ((lo, 1.0), (hi, -1.0)):
        if not math.isfinite(end):
            continue
        spread = (hi - lo) if math.isfinite(hi - lo) else max(abs(c - end) for c in cuts)
        x = end + side * _END_OFFSET * spread
        ratio = math.exp(_log_density(prior, x) - peak) if math.isfinite(peak) else math.inf
        if not ratio < _END_RATIO:
            raise InvalidArgumentError(
                f"prior must vanish at the ends of its support (the van Trees inequality needs "
                f"pi(theta) -> 0 there); {name} is supported on [{lo:.6g}, {hi:.6g}] and its density at "
                f"{x:.6g}, next to the end {end:.6g}, is {ratio:.3g} of its peak. Priors such as "
                "Uniform, Exponential or Beta(a, b) with a or b <= 1 are not allowed; use one that "
                "vanishes at the ends (e.g. Beta(a, b) with a, b > 2, or a Normal)"
            )


def _prior_expectation(prior: Distribution, fn: Callable[[float], float], what: str) -> float:
    r""":math:`\int \pi(\theta) f(\theta)\, d\theta` over the prior's support, by adaptive quadrature.

    The support is mapped to the real line (affinely around the prior's median and spread for a
    real support, by a log for a half-line, by a logit for an interval) and split at the prior's
    quantiles, so that narrow priors and priors far from 0 are integrated where their mass is.
    """
    lo, hi, circular = _prior_support(prior)
    bps = _breakpoints(prior, lo, hi)
    centre, scale = _centre_scale(bps) if math.isinf(lo) and math.isinf(hi) else (0.0, 1.0)
    phi, kind = _transform(lo, hi, centre, scale)
    if not circular:
        _check_vanishes(prior, lo, hi, bps or [0.0])
    cuts = sorted({u for u in (_inverse(v, lo, hi, kind, centre, scale) for v in bps) if math.isfinite(u)}) or [0.0]
    edges = [-math.inf, *cuts, math.inf]

    def integrand(u: float, with_fn: bool) -> float:
        x, logjac = phi(u)
        if not math.isfinite(x) or x <= lo or x >= hi:
            return 0.0
        logw = _log_density(prior, x) + logjac
        if not logw > -745.0:
            return 0.0
        w = math.exp(logw)
        return w * fn(x) if with_fn else w

    def total(with_fn: bool) -> tuple[float, float]:
        val, err = 0.0, 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                v, e = integrate.quad(integrand, a, b, args=(with_fn,), limit=200, epsabs=0.0, epsrel=1e-11)
                val, err = val + v, err + e
        return val, err

    mass, _ = total(False)
    if not abs(mass - 1.0) < 1e-8:
        raise InvalidArgumentError(
            f"prior: the density of {type(prior).__name__} integrates to {mass:.10g} by quadrature over "
            f"[{lo:.6g}, {hi:.6g}]; its mass cannot be resolved in float64 (an extremely narrow prior?)"
        )
    value, err = total(True)
    if not (math.isfinite(value) and err <= 1e-6 * abs(value) + 1e-300):
        raise InvalidArgumentError(
            f"{what} is infinite or could not be integrated for this {type(prior).__name__} prior "
            f"(quadrature gives {value:.6g} with error estimate {err:.2g}); the van Trees bound needs a "
            "finite I(pi), which fails when the density vanishes too slowly at an end of its support "
            "(Beta(a, b) needs a, b > 2)"
        )
    return value


def _check_prior(prior: Any) -> Distribution:
    if not isinstance(prior, Distribution):
        raise ArgumentTypeError(
            f"prior must be a torch.distributions.Distribution when fisher is a callable, got {type(prior).__name__}"
        )
    if prior.batch_shape != torch.Size() or prior.event_shape != torch.Size():
        raise ShapeError(
            f"prior must be a scalar distribution (empty batch and event shape), got batch shape "
            f"{tuple(prior.batch_shape)} and event shape {tuple(prior.event_shape)}"
        )
    return prior


def van_trees(
    fisher: Tensor | float | Callable[[Tensor], Tensor],
    prior: Tensor | float | Distribution,
    n: int = 1,
) -> Tensor:
    r"""Van Trees (Bayesian Cramér–Rao) bound on the Bayes risk of any estimator.

    For a prior :math:`\pi` with a density that is absolutely continuous, vanishes at the ends
    of its support and has finite information :math:`I(\pi)`, every estimator
    :math:`\hat\theta` of a scalar :math:`\theta` based on :math:`n` i.i.d. observations
    satisfies (Gill & Levit 1995)

    .. math::

        \operatorname{E}_\pi \operatorname{E}_\theta (\hat\theta - \theta)^2
        \ge \frac{1}{n\,\operatorname{E}_\pi[I(\theta)] + I(\pi)},
        \qquad I(\pi) = \int \frac{\pi'(\theta)^2}{\pi(\theta)}\, d\theta,

    and in :math:`k` dimensions the matrix version
    :math:`(n\operatorname{E}_\pi[I] + I(\pi))^{-1}`. No unbiasedness is required. If the prior
    does not vanish at an end (Uniform, Exponential, Beta(1, 1)) the inequality fails: a
    constant estimator can beat the "bound".

    Parameters
    ----------
    fisher : Tensor, float or callable
        Either the prior-averaged per-observation information
        :math:`\operatorname{E}_\pi[I(\theta)]` (scalar or ``(k, k)``), or a function mapping a
        0-dim float64 tensor :math:`\theta` to the scalar per-observation information
        :math:`I(\theta)`, which is then averaged against ``prior`` by quadrature.
    prior : Tensor, float or torch Distribution
        Either the prior's information :math:`I(\pi)` (scalar or ``(k, k)``) or a scalar
        continuous ``torch.distributions`` prior. Its information (and :math:`\operatorname{E}_\pi[I]`
        for a callable ``fisher``) is integrated by adaptive quadrature over the prior's support,
        mapped around the prior's quantiles so that its mass is found wherever it lies; a
        ``VonMises`` prior is integrated over one period.
    n : int
        Number of observations, ``n >= 1``.

    Returns
    -------
    Tensor
        The bound: 0-dim for a scalar parameter, else ``(k, k)``.

    Raises
    ------
    InvalidArgumentError
        If ``n < 1``, the total information is not positive, or the prior does not vanish at a
        finite end of its support, or its information is infinite.
    ArgumentTypeError
        If ``fisher`` is a callable but ``prior`` is not a distribution.

    Examples
    --------
    Normal data with variance 4 and a ``N(0, 1)`` prior on the mean, ten observations:

    >>> import torch
    >>> from torch.distributions import Normal
    >>> prior = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    >>> van_trees(0.25, prior, n=10)  # 1 / (10/4 + 1)
    tensor(0.2857, dtype=torch.float64)

    A narrow prior far from 0 (``I(pi) = 1/0.1**2 = 100``):

    >>> far = Normal(torch.tensor(7.0, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64))
    >>> round(float(van_trees(1.0, far)), 6)  # 1 / (1 + 100)
    0.009901
    """
    n = check_int(n, "n")
    if callable(fisher) and not isinstance(fisher, Tensor):
        pr = _check_prior(prior)
        fisher_fn = fisher

        def info(t: float) -> float:
            value = fisher_fn(torch.tensor(t, dtype=DTYPE))
            return float(torch.as_tensor(value))

        EI = torch.tensor(_prior_expectation(pr, info, "E_prior[I(theta)]"), dtype=DTYPE)
    else:
        EI = _tensor(fisher, "fisher")
    if isinstance(prior, Distribution):
        pr = _check_prior(prior)

        def dlog2(t: float) -> float:
            x = torch.tensor(t, dtype=DTYPE, requires_grad=True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(pr.log_prob(x), x)
            gf = float(g)
            return gf * gf  # overflows to inf (an infinite I(pi) is reported), not OverflowError

        Ipi = torch.tensor(_prior_expectation(pr, dlog2, "the prior's information I(pi)"), dtype=DTYPE)
    else:
        Ipi = _tensor(prior, "prior")
    total = n * EI + Ipi
    if total.dim() == 0:
        if not total > 0:
            raise InvalidArgumentError(f"total information n*E[I] + I(prior) must be > 0, got {float(total)}")
        return 1.0 / total
    if not torch.isfinite(total).all():
        raise NonFiniteError("total information n*E[I] + I(prior) must be finite")
    return spd_inverse(total, "n*E[I] + I(prior)")
