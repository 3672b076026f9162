r"""Information bounds: Cramér–Rao (:func:`crlb`), van Trees (:func:`van_trees`), Bhattacharyya
(:func:`bhattacharyya_bound`) and Hammersley–Chapman–Robbins (:func:`hcr_bound`).

Chapter 2. :func:`crlb` and :func:`van_trees` work from tensors in float64; :func:`van_trees` also
takes the prior itself and integrates its information :math:`I(\pi) = \int \pi'^2/\pi` by
quadrature over the prior's support.
The Bhattacharyya and Hammersley–Chapman–Robbins bounds take the family itself (a callable
:math:`\theta \mapsto` distribution) and integrate over its support by a double-exponential rule.
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
from .._validate import check_callable, check_distribution, check_int, check_real, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedError
from .estimators import _breakpoints, _centre_scale, _inverse, _transform

__all__ = ["bhattacharyya_bound", "bhattacharyya_matrix", "chi_square_divergence", "crlb", "hcr_bound", "van_trees"]

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


# --------------------------------------------------------------------------- quadrature helpers
# A vectorised double-exponential (tanh-sinh / sinh-sinh) trapezoid rule on the support mapped to
# the real line: smooth integrands on intervals, half-lines and the line converge exponentially in
# the number of nodes, and all nodes are evaluated in one call (one autograd pass for the
# Bhattacharyya matrix).

_DE_T = 4.0          # the trapezoid runs over t in [-_DE_T, _DE_T]
_DE_LEVELS = 10      # step 2**-2 ... 2**-11
_DE_RTOL = 1e-10


def _support_of(dist: Distribution, name: str) -> tuple[float, float]:
    support = dist.support
    if bool(getattr(support, "is_discrete", False)):
        raise UnsupportedError(
            f"{name} must give continuous distributions, got the discrete {type(dist).__name__}: "
            "this bound integrates a density (pass the distribution of a continuous sufficient statistic)"
        )
    if dist.batch_shape != torch.Size() or dist.event_shape != torch.Size():
        raise ShapeError(
            f"{name} must give a scalar distribution (empty batch and event shape), got batch shape "
            f"{tuple(dist.batch_shape)} and event shape {tuple(dist.event_shape)}"
        )
    if support is constraints.real:
        return -math.inf, math.inf
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if lower is None and upper is None:
        raise UnsupportedError(
            f"{name} must give a distribution on an interval of the real line, got support {support}"
        )
    lo = -math.inf if lower is None else float(torch.as_tensor(lower))
    hi = math.inf if upper is None else float(torch.as_tensor(upper))
    return lo, hi


def _de_integral(
    fn: Callable[[Tensor], Tensor], lo: float, hi: float, marks: list[float], what: str, *, diverge_to_inf: bool = False
) -> Tensor:
    r""":math:`\int_{lo}^{hi} f(x)\,dx` of a vector-valued ``fn`` (nodes ``(m,)`` -> values ``(m, K)``).

    The interval is mapped to the line (affine for the line, log for a half-line, logit for an
    interval), centred and scaled on ``marks`` (points where the mass is), then integrated by the
    sinh-sinh trapezoid rule, halving the step until two levels agree to ``_DE_RTOL``.
    """
    if math.isinf(lo) and math.isinf(hi):
        kind = "real"
    elif math.isinf(hi):
        kind = "lower"
    elif math.isinf(lo):
        kind = "upper"
    else:
        kind = "interval"
    inner = [v for v in marks if lo < v < hi and math.isfinite(v)]
    us = sorted(_inverse(v, lo, hi, kind) for v in inner)
    if kind == "real":
        us = sorted(inner)
    centre = us[len(us) // 2] if us else 0.0
    spread = (us[-1] - us[0]) / 6.0 if len(us) >= 2 else 1.0
    if not (math.isfinite(spread) and spread > 0):
        spread = 1.0

    def values(tt: Tensor) -> Tensor:
        s = 0.5 * math.pi * torch.sinh(tt)
        u = centre + spread * torch.sinh(s)
        dudt = spread * 0.5 * math.pi * torch.cosh(tt) * torch.cosh(s)
        if kind == "real":
            x, dxdu = u, torch.ones_like(u)
        elif kind == "lower":
            x, dxdu = lo + torch.exp(u), torch.exp(u)
        elif kind == "upper":
            x, dxdu = hi - torch.exp(u), torch.exp(u)
        else:
            sg = torch.sigmoid(u)
            x, dxdu = lo + (hi - lo) * sg, (hi - lo) * sg * torch.sigmoid(-u)
        w = dxdu * dudt
        ok = torch.isfinite(x) & (x > lo) & (x < hi) & torch.isfinite(w) & (w > 0)
        out = torch.zeros(tt.shape[0], 1, dtype=DTYPE)
        if bool(ok.any()):
            f = fn(x[ok])
            out = torch.zeros(tt.shape[0], f.shape[-1], dtype=DTYPE)
            out[ok] = f * w[ok, None]
        return out

    h = 0.25
    tt = torch.arange(-_DE_T, _DE_T + h / 2, h, dtype=DTYPE)
    first = values(tt)
    total = first.sum(0)
    estimate = h * total
    if diverge_to_inf:  # a convergent integrand is negligible at the ends of the sinh-sinh map
        ends = torch.maximum(first[0].abs(), first[-1].abs())
        if bool((~torch.isfinite(total) | (ends > 1e-12 * total.abs())).any()):
            return torch.full_like(estimate, math.inf)
    for _ in range(_DE_LEVELS - 1):
        h /= 2
        new = torch.arange(-_DE_T + h, _DE_T, 2 * h, dtype=DTYPE)
        vals = values(new).sum(0)
        total = total + vals if total.shape == vals.shape else total.expand_as(vals) + vals
        previous, estimate = estimate, h * total
        if previous.shape == estimate.shape and bool(
            (torch.abs(estimate - previous) <= _DE_RTOL * torch.abs(estimate).max() + 1e-300).all()
        ):
            if not bool(torch.isfinite(estimate).all()):
                break
            return estimate
    if diverge_to_inf and bool((~torch.isfinite(estimate) | (estimate > 1.5 * previous) | (estimate > 1e30)).any()):
        return torch.full_like(estimate, math.inf)  # the sums keep growing as the step halves: divergent
    raise InvalidArgumentError(
        f"{what}: the quadrature did not converge (last two estimates {previous.tolist()} and "
        f"{estimate.tolist()}); the integral may be infinite or the density too irregular"
    )


def _family(family: Any, theta: Any, name: str = "family") -> Distribution:
    fn = family
    try:
        dist = fn(torch.as_tensor(theta, dtype=DTYPE))
    except ValueError as err:
        raise InvalidArgumentError(f"{name}({float(theta):.6g}) is not a valid distribution: {err}") from err
    if not isinstance(dist, Distribution):
        raise ArgumentTypeError(
            f"{name} must map theta to a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist


def _marks(dist: Distribution, lo: float, hi: float) -> list[float]:
    return _breakpoints(dist, lo, hi)


# --------------------------------------------------------------------------- Bhattacharyya


def _check_family(family: Any) -> Callable[[Tensor], Distribution]:
    if isinstance(family, Distribution) or not callable(family):
        raise ArgumentTypeError(
            "family must be a callable theta -> torch.distributions.Distribution (e.g. "
            f"lambda lam: Gamma(10.0, lam)), got {type(family).__name__}"
        )
    return family


def bhattacharyya_matrix(family: Callable[[Tensor], Distribution], theta: float | Tensor, order: int) -> Tensor:
    r"""The Bhattacharyya matrix of order :math:`k` of a one-parameter family at :math:`\theta`.

    With :math:`p_\theta` the density of the data (or of a sufficient statistic, which has the same
    matrix) and :math:`r_i = \partial_\theta^i p_\theta / p_\theta`,

    .. math::

        B_{ij}(\theta) = \operatorname{E}_\theta[r_i r_j]
        = \int \frac{\partial_\theta^i p_\theta(x)\, \partial_\theta^j p_\theta(x)}{p_\theta(x)}\, dx,
        \qquad i, j = 1, \dots, k .

    :math:`B_{11}` is the Fisher information. The derivatives come from nested autograd of
    :math:`\exp(\log p_\theta(x) - \log p_{\theta_0}(x))` at :math:`\theta_0`, the integral from a
    double-exponential quadrature over the support.

    Parameters
    ----------
    family : callable
        Maps a float64 tensor :math:`\theta` to a scalar continuous ``torch.distributions``
        distribution; it must broadcast over a tensor of :math:`\theta` values (every
        ``torch.distributions`` constructor does). For :math:`n` i.i.d. observations pass the
        distribution of a sufficient statistic (``lambda lam: Gamma(n, lam)`` for the sum of
        :math:`n` Exponential(:math:`\lambda`) draws).
    theta : float or 0-dim Tensor
        The parameter value.
    order : int
        :math:`k`, from 1 to 8.

    Returns
    -------
    Tensor
        float64, shape ``(k, k)``.

    Raises
    ------
    ArgumentTypeError
        If ``family`` is not a callable returning a distribution.
    UnsupportedError
        If the distribution is discrete.
    InvalidArgumentError
        If ``order < 1`` or ``theta`` is not finite or outside the family's parameter space.

    Examples
    --------
    The sum of ten Exponential(2) draws is Gamma(10, 2); :math:`B_{11} = n/\lambda^2 = 2.5`:

    >>> import torch
    >>> from torch.distributions import Gamma
    >>> B = bhattacharyya_matrix(lambda lam: Gamma(torch.tensor(10.0, dtype=torch.float64), lam), 2.0, 2)
    >>> [[round(float(v), 6) for v in row] for row in B]  # [[n/l^2, -2n/l^3], [-2n/l^3, (2n^2+6n)/l^4]]
    [[2.5, -2.5], [-2.5, 16.25]]
    """
    fam = _check_family(family)
    th = check_real(theta, "theta")
    k = check_int(order, "order", minimum=1, maximum=8)
    dist = _family(fam, th)
    lo, hi = _support_of(dist, "family")

    def integrand(x: Tensor) -> Tensor:
        tv = torch.full_like(x, th).requires_grad_(True)
        with torch.enable_grad():
            logp = fam(tv).log_prob(x)
            base = logp.detach()
            f = torch.exp(logp - base)
            ratios = []
            cur = f
            for i in range(k):
                (cur,) = torch.autograd.grad(cur.sum(), tv, create_graph=i < k - 1)
                ratios.append(cur.detach())
        r = torch.stack(ratios, -1)  # (m, k)
        p = torch.exp(base)
        prod = r[:, :, None] * r[:, None, :]
        out = torch.where(p[:, None, None] > 0, p[:, None, None] * prod, torch.zeros((), dtype=DTYPE))
        return out.reshape(x.shape[0], k * k)

    B = _de_integral(integrand, lo, hi, _marks(dist, lo, hi), "bhattacharyya_matrix").reshape(k, k)
    return 0.5 * (B + B.T)


def bhattacharyya_bound(
    family: Callable[[Tensor], Distribution],
    theta: float | Tensor,
    order: int,
    g_derivatives: Tensor | list[float] | None = None,
) -> Tensor:
    r"""The Bhattacharyya lower bound of order :math:`k` on the variance of an unbiased estimator.

    If :math:`T` is unbiased for :math:`g(\theta)` and the first :math:`k` derivatives of
    :math:`\int T p_\theta` may be taken under the integral, then :math:`\operatorname{Cov}(T, r_i)
    = g^{(i)}(\theta)` and projecting :math:`T` on :math:`r_1, \dots, r_k` gives
    (Bhattacharyya 1946)

    .. math::

        \operatorname{Var}_\theta T \ge \gamma^\top B(\theta)^{-1} \gamma, \qquad
        \gamma = (g'(\theta), \dots, g^{(k)}(\theta)),

    with :math:`B` the :func:`bhattacharyya_matrix`. Order 1 is the Cramér–Rao bound; the bound
    does not decrease with the order.

    Parameters
    ----------
    family : callable
        As in :func:`bhattacharyya_matrix` (the distribution of the whole sample or of a sufficient
        statistic).
    theta : float or 0-dim Tensor
        The parameter value.
    order : int
        :math:`k \ge 1`.
    g_derivatives : Tensor or list of float, optional
        :math:`(g'(\theta), \dots, g^{(k)}(\theta))`, length ``order``. Default
        :math:`(1, 0, \dots, 0)`: the bound for :math:`\theta` itself.

    Returns
    -------
    Tensor
        0-dim float64.

    Raises
    ------
    ShapeError
        If ``g_derivatives`` does not have ``order`` entries.
    NotPositiveDefiniteError
        If the Bhattacharyya matrix is singular (the :math:`r_i` are linearly dependent).

    Examples
    --------
    Second-order bound for the Exponential rate from :math:`n = 10` draws,
    :math:`\lambda^2 (n+3)/(n(n+1))`, between the Cramér–Rao :math:`\lambda^2/n = 0.4` and the
    UMVU variance :math:`\lambda^2/(n-2) = 0.5`:

    >>> import torch
    >>> from torch.distributions import Gamma
    >>> fam = lambda lam: Gamma(torch.tensor(10.0, dtype=torch.float64), lam)
    >>> round(float(bhattacharyya_bound(fam, 2.0, 2)), 6)  # 4 * 13 / 110
    0.472727
    """
    B = bhattacharyya_matrix(family, theta, order)
    k = B.shape[0]
    if g_derivatives is None:
        gamma = torch.zeros(k, dtype=DTYPE)
        gamma[0] = 1.0
    else:
        gamma = _tensor(g_derivatives, "g_derivatives").reshape(-1)
        if gamma.shape[0] != k:
            raise ShapeError(f"g_derivatives must have order={k} entries (g', ..., g^(k)), got {gamma.shape[0]}")
    Binv = spd_inverse(B, "the Bhattacharyya matrix")
    return gamma @ Binv @ gamma


# --------------------------------------------------------------------------- Hammersley–Chapman–Robbins


def chi_square_divergence(p: Distribution, q: Distribution) -> Tensor:
    r"""The :math:`\chi^2` divergence :math:`\chi^2(p \,\|\, q) = \int (p - q)^2 / q` of two densities.

    Integrated as :math:`\int q\,(p/q - 1)^2` over the support of :math:`q` (no cancellation when
    :math:`p \approx q`), split at the ends of the support of :math:`p`; it is :math:`+\infty`
    when the support of :math:`p` is not inside that of :math:`q`, and reported as :math:`+\infty`
    when the quadrature diverges (an integrand that does not decay at the ends of the map, or sums
    that keep growing as the step is halved, or exceed :math:`10^{30}` without converging).

    Parameters
    ----------
    p, q : torch Distribution
        Scalar continuous distributions on intervals of the real line.

    Returns
    -------
    Tensor
        0-dim float64, possibly ``inf``.

    Raises
    ------
    ArgumentTypeError
        If ``p`` or ``q`` is not a distribution.
    UnsupportedError
        If either is discrete.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal, Uniform
    >>> d = lambda m: Normal(torch.tensor(m, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    >>> round(float(chi_square_divergence(d(0.5), d(0.0))), 8)  # exp(0.5**2) - 1
    0.28402542
    >>> u = lambda b: Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    >>> round(float(chi_square_divergence(u(1.5), u(2.0))), 8)  # 2/1.5 - 1
    0.33333333
    >>> float(chi_square_divergence(u(2.0), u(1.5)))
    inf
    """
    check_distribution(p, "p")
    check_distribution(q, "q")
    lo_p, hi_p = _support_of(p, "p")
    lo_q, hi_q = _support_of(q, "q")
    if lo_p < lo_q or hi_p > hi_q:
        return torch.tensor(math.inf, dtype=DTYPE)

    def inside(x: Tensor) -> Tensor:
        lq, lp = q.log_prob(x), p.log_prob(x)
        diff = lp - lq
        d = torch.expm1(torch.clamp(diff, max=30.0))
        # q (p/q - 1)^2, and exp(2 log p - log q) where p/q > e^30 (no 0 * inf far in the tails)
        term = torch.where(diff > 30.0, torch.exp(2 * lp - lq), torch.exp(lq) * d * d)
        return torch.where(torch.isfinite(lq) & (lq > -745.0), term, torch.zeros((), dtype=DTYPE))[:, None]

    def outside(x: Tensor) -> Tensor:  # p = 0 there: the integrand is q
        return torch.exp(q.log_prob(x))[:, None]

    total = _de_integral(inside, lo_p, hi_p, _marks(p, lo_p, hi_p), "chi_square_divergence", diverge_to_inf=True)[0]
    for a, b in ((lo_q, lo_p), (hi_p, hi_q)):
        if a < b:
            total = total + _de_integral(outside, a, b, _marks(q, a, b), "chi_square_divergence")[0]
    return total


def hcr_bound(
    family: Callable[[Tensor], Distribution],
    theta: float | Tensor,
    n: int = 1,
    *,
    g: Callable[[float], float] | None = None,
    shifts: Tensor | None = None,
) -> Tensor:
    r"""The Hammersley–Chapman–Robbins lower bound on the variance of an unbiased estimator.

    For any :math:`T` with :math:`\operatorname{E}_\vartheta T = g(\vartheta)` at :math:`\vartheta = \theta`
    and :math:`\theta + h`, the Cauchy–Schwarz inequality applied to :math:`T` and
    :math:`p_{\theta+h}/p_\theta - 1` gives (Hammersley 1950; Chapman & Robbins 1951)

    .. math::

        \operatorname{Var}_\theta T \ge \sup_{h}
        \frac{(g(\theta + h) - g(\theta))^2}{\chi^2(p^{(n)}_{\theta+h} \,\|\, p^{(n)}_\theta)},
        \qquad 1 + \chi^2(p^{(n)}_{\theta+h}\|p^{(n)}_\theta) = \bigl(1 + \chi^2(p_{\theta+h}\|p_\theta)\bigr)^n,

    for :math:`n` i.i.d. observations. No differentiability is needed, and the support may move
    with :math:`\theta` (shifts whose support leaves that of :math:`p_\theta` have
    :math:`\chi^2 = \infty` and contribute 0). For a regular family the supremum is the limit
    :math:`h \to 0`, the Cramér–Rao bound.

    Parameters
    ----------
    family : callable
        Maps a float64 0-dim tensor :math:`\vartheta` to a scalar continuous distribution (one
        observation).
    theta : float or 0-dim Tensor
        The parameter value.
    n : int
        Number of i.i.d. observations.
    g : callable, optional
        The estimand :math:`g` (float to float). Default: the identity.
    shifts : Tensor, optional
        Candidate shifts :math:`h \ne 0`. Default: :math:`\pm s\,10^{-6 \dots 0}` (61 values on each
        side, :math:`s = \max(|\theta|, 1)`); shifts leaving the parameter space, and shifts whose
        :math:`\chi^2` the quadrature cannot resolve (next to where it diverges), are skipped. The best
        grid point is refined by a bounded scalar search between its neighbours. The supremum is
        over this range: where it is approached only as :math:`|h|` grows (the Exponential rate
        with :math:`n = 1`, which has no unbiased estimator of finite variance), pass wider shifts.

    Returns
    -------
    Tensor
        0-dim float64.

    Raises
    ------
    InvalidArgumentError
        If ``n < 1``, a shift is 0, or no shift stays in the parameter space.

    Examples
    --------
    Uniform(0, theta), theta = 2, n = 100: :math:`0.637\,\theta^2/n^2` (tending to
    :math:`0.648\,\theta^2/n^2` as :math:`n` grows), the right order: the UMVU estimator has
    variance :math:`\theta^2/(n(n+2))`:

    >>> import torch
    >>> from torch.distributions import Uniform
    >>> fam = lambda th: Uniform(torch.zeros((), dtype=torch.float64), th)
    >>> b = float(hcr_bound(fam, 2.0, n=100))
    >>> round(b * 100**2 / 4, 3)  # max over u of n^2 u^2 / ((1 - u)^-n - 1)
    0.637
    """
    from scipy import optimize

    fam = _check_family(family)
    th = check_real(theta, "theta")
    n = check_int(n, "n")
    gfun = (lambda v: v) if g is None else check_callable(g, "g", "a callable float -> float")
    if shifts is None:
        scale = max(abs(th), 1.0)
        mags = scale * torch.logspace(-6, 0, 61, dtype=DTYPE)
        hs = torch.cat([-mags.flip(0), mags])
    else:
        hs = check_tensor(shifts, "shifts", ndim=1, dtype=DTYPE)
        if bool((hs == 0).any()):
            raise InvalidArgumentError("shifts must all be non-zero (h = 0 gives 0/0)")
        hs = torch.sort(hs).values
    base = _family(fam, th)
    _support_of(base, "family")
    g0 = float(gfun(th))

    def objective(h: float) -> float:
        try:
            other = fam(torch.tensor(th + h, dtype=DTYPE))
        except ValueError:
            return math.nan
        try:
            chi = float(chi_square_divergence(other, base))
        except InvalidArgumentError:  # unresolved quadrature: a shift near where chi^2 diverges
            return math.nan
        if math.isinf(chi):
            return 0.0
        total = math.expm1(n * math.log1p(chi)) if n * math.log1p(chi) < 700 else math.inf
        num = (float(gfun(th + h)) - g0) ** 2
        return num / total if total > 0 else math.nan

    vals = [objective(float(h)) for h in hs]
    valid = [i for i, v in enumerate(vals) if math.isfinite(v)]
    if not valid:
        raise InvalidArgumentError(
            f"hcr_bound: no shift h keeps theta + h = {th:.6g} + h in the parameter space of the family"
        )
    best = max(valid, key=lambda i: vals[i])
    value = vals[best]
    lo_i, hi_i = max(best - 1, 0), min(best + 1, len(hs) - 1)
    a, b = float(hs[lo_i]), float(hs[hi_i])
    if a < 0 < b:  # do not search across h = 0
        a, b = (a, -1e-300) if float(hs[best]) < 0 else (1e-300, b)
    if b > a:
        def loss(h: float) -> float:
            v = objective(h)
            return -v if math.isfinite(v) else 0.0

        res = optimize.minimize_scalar(
            loss, bounds=(a, b), method="bounded", options={"xatol": 1e-12 * max(abs(a), abs(b))}
        )
        if -float(res.fun) > value:
            value = -float(res.fun)
    return torch.tensor(value, dtype=DTYPE)
