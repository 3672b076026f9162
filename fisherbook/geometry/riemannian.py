r"""Information geometry: the Fisher–Rao metric, distances, geodesics and Jeffreys priors.

A parametric family :math:`\{p_\theta\}` is a Riemannian manifold whose metric is the Fisher
information, :math:`ds^2 = d\theta^\top I(\theta)\, d\theta`. This module computes with that metric:

- :func:`fisher_rao_distance` — closed-form geodesic distances for the univariate Normal
  (a hyperbolic half-plane), Categorical and Multinomial (a sphere), and the one-parameter
  Poisson, Exponential, Bernoulli, Binomial and Geometric families;
- :func:`exp_map` / :func:`log_map` — exponential and logarithm maps where closed forms exist;
- :func:`geodesic` — the geodesic boundary-value problem for *any* metric
  :math:`\theta \mapsto G(\theta)`, solved numerically, with :func:`christoffel_symbols`,
  :func:`fisher_metric` (the metric of any family from :func:`~fisherbook.stats.estimators.fisher_information`)
  and :func:`pullback_metric` (the same metric in other coordinates);
- :func:`jeffreys_prior` / :func:`jeffreys_log_density` — :math:`\pi(\theta) \propto \sqrt{\det I(\theta)}`;
- :func:`kl_quadratic` — the local expansion :math:`\mathrm{KL}(p_\theta \,\|\, p_{\theta+\delta})
  \approx \tfrac12 \delta^\top I(\theta) \delta`.

The dually flat structure of exponential families (natural and expectation coordinates,
KL as a Bregman divergence, m-projections) lives in :mod:`fisherbook.geometry.dualflat`.

Points off the manifold raise :class:`~fisherbook.errors.OffManifoldError`; a geodesic solve that does not
converge raises :class:`~fisherbook.errors.GeodesicError` with advice rather than returning a wrong length.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_bvp
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Dirichlet,
    Distribution,
    Exponential,
    Geometric,
    Multinomial,
    Normal,
    Poisson,
    constraints,
)

from .._validate import check_callable
from ..errors import ArgumentTypeError, GeodesicError, InvalidArgumentError, OffManifoldError, ShapeError

__all__ = [
    "Geodesic",
    "fisher_rao_distance",
    "exp_map",
    "log_map",
    "fisher_metric",
    "pullback_metric",
    "christoffel_symbols",
    "geodesic",
    "jeffreys_prior",
    "jeffreys_log_density",
    "kl_quadratic",
]

DTYPE = torch.float64
Metric = Callable[[Tensor], Tensor]






# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _f64(x: Any, name: str) -> Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"{name} must be a real tensor or array of numbers, got {type(x).__name__}") from None
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ArgumentTypeError(f"{name} must be a real tensor, got dtype {t.dtype}")
    t = t.to(DTYPE)
    if not torch.isfinite(t).all():
        raise OffManifoldError(f"{name} must be finite, got {t}")
    return t


def _positive(x: Tensor, name: str, family: str) -> Tensor:
    if not (x > 0).all():
        raise OffManifoldError(f"{family}: {name} must be > 0 (off the manifold otherwise), got {x}")
    return x


def _unit_interval(p: Tensor, name: str, family: str, *, closed: bool = True) -> Tensor:
    ok = ((p >= 0) & (p <= 1)) if closed else ((p > 0) & (p < 1))
    if not ok.all():
        rng = "[0, 1]" if closed else "(0, 1)"
        raise OffManifoldError(f"{family}: {name} must lie in {rng}, got {p}")
    return p


def _simplex(p: Tensor, name: str, family: str, *, interior: bool = False) -> Tensor:
    if p.ndim < 1 or p.shape[-1] < 2:
        raise OffManifoldError(f"{family}: {name} must have at least 2 categories in its last dimension")
    if interior and not (p > 0).all():
        raise OffManifoldError(f"{family}: {name} must be strictly positive here (interior of the simplex), got {p}")
    # tolerance: float32 probabilities (torch's default dtype) sum to 1 only to ~1e-7
    if not (p >= 0).all() or not torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-6):
        raise OffManifoldError(f"{family}: {name} must be non-negative and sum to 1 (the simplex), got {p}")
    return p / p.sum(-1, keepdim=True)


def _probs(d: Any) -> Tensor:
    return _f64(d.probs, "probs")


def _same_total_count(p: Any, q: Any) -> Tensor:
    n1 = torch.as_tensor(p.total_count, dtype=DTYPE)
    n2 = torch.as_tensor(q.total_count, dtype=DTYPE)
    if not torch.equal(*torch.broadcast_tensors(n1, n2)):
        raise InvalidArgumentError(
            f"total_count must be equal for both distributions (different n are different manifolds), "
            f"got {n1} and {n2}"
        )
    if not (n1 > 0).all():
        raise OffManifoldError(f"total_count must be > 0, got {n1}")
    return n1


# --------------------------------------------------------------------------------------------
# closed forms: isometric coordinates of one-parameter families, the half-plane, the sphere
# --------------------------------------------------------------------------------------------


def _isometric_1d(d: Any) -> tuple[Tensor, Tensor, Callable[..., Distribution]]:
    r"""For a one-parameter family return :math:`\varphi(\theta)`, :math:`\varphi'(\theta) = \sqrt{I(\theta)}`
    and :math:`\varphi^{-1}`, where :math:`\varphi` maps the family isometrically onto an interval."""
    if isinstance(d, Poisson):
        lam = _f64(d.rate, "rate")
        _positive(lam, "rate", "Poisson")
        return 2 * lam.sqrt(), lam.rsqrt(), lambda phi: Poisson(_positive(phi, "phi", "Poisson") ** 2 / 4)
    if isinstance(d, Exponential):
        lam = _positive(_f64(d.rate, "rate"), "rate", "Exponential")
        return lam.log(), 1 / lam, lambda phi: Exponential(phi.exp())
    if isinstance(d, (Bernoulli, Binomial)):
        n = torch.as_tensor(getattr(d, "total_count", 1.0), dtype=DTYPE)
        fam = type(d).__name__
        p = _unit_interval(_probs(d), "probs", fam, closed=False)
        scale = 2 * n.sqrt()

        def inverse(phi: Tensor, n: Tensor = n, scale: Tensor = scale, fam: str = fam) -> Distribution:
            u = phi / scale
            if not ((u > 0) & (u < math.pi / 2)).all():
                raise OffManifoldError(f"{fam}: the tangent vector leads off the manifold (probs outside (0, 1))")
            probs = torch.sin(u) ** 2
            return Bernoulli(probs=probs) if fam == "Bernoulli" else Binomial(n, probs=probs)

        return scale * torch.asin(p.sqrt()), n.sqrt() / (p * (1 - p)).sqrt(), inverse
    if isinstance(d, Geometric):
        p = _unit_interval(_probs(d), "probs", "Geometric", closed=False)

        def inverse_geo(phi: Tensor) -> Distribution:
            if not (phi < 0).all():
                raise OffManifoldError("Geometric: the tangent vector leads off the manifold (probs outside (0, 1))")
            return Geometric(probs=1 / torch.cosh(phi / 2) ** 2)

        return -2 * torch.atanh((1 - p).sqrt()), 1 / (p * (1 - p).sqrt()), inverse_geo
    raise ArgumentTypeError(f"no isometric coordinate for {type(d).__name__}")


_ONE_D = (Poisson, Exponential, Bernoulli, Binomial, Geometric)


def _normal_halfplane(d: Any) -> tuple[Tensor, Tensor]:
    mu = _f64(d.loc, "loc")
    sigma = _positive(_f64(d.scale, "scale"), "scale", "Normal")
    mu, sigma = torch.broadcast_tensors(mu, sigma)
    return mu / math.sqrt(2.0), sigma  # (u, sigma) with ds^2 = 2 (du^2 + dsigma^2) / sigma^2


def _normal_halfplane_pair(p: Any, q: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Half-plane coordinates of two Normals, rescaled by a common power of two when every value is
    tiny: the distance is invariant under (mu, sigma) -> (c mu, c sigma), and scaling by 2^k is
    exact, so subnormal locations and scales keep their bits through the divisions that follow."""
    mu1, s1 = torch.broadcast_tensors(_f64(p.loc, "loc"), _positive(_f64(p.scale, "scale"), "scale", "Normal"))
    mu2, s2 = torch.broadcast_tensors(_f64(q.loc, "loc"), _positive(_f64(q.scale, "scale"), "scale", "Normal"))
    top = torch.stack(torch.broadcast_tensors(mu1.abs(), s1, mu2.abs(), s2)).amax(0)
    scale = torch.where(top < 2.0**-500, torch.full_like(top, 2.0**900), torch.ones_like(top))
    r2 = math.sqrt(2.0)
    return (mu1 * scale) / r2, s1 * scale, (mu2 * scale) / r2, s2 * scale


def _halfplane_distance(u1: Tensor, s1: Tensor, u2: Tensor, s2: Tensor) -> Tensor:
    r"""Distance in the metric :math:`2(du^2 + d\sigma^2)/\sigma^2`, stable over the whole range of doubles.

    With :math:`x = \sqrt{\Delta u^2 + \Delta\sigma^2} / (2\sqrt{\sigma_1\sigma_2})`,
    :math:`\operatorname{arccosh}(1 + 2x^2) = 2\operatorname{asinh}(x)`, so the distance is
    :math:`2\sqrt2\,\operatorname{asinh} x`: exactly 0 for a point and itself, accurate for nearby
    points, and for :math:`x` beyond :math:`10^{150}` (where :math:`x` itself may overflow) the
    logarithmic form :math:`2\sqrt2\,\log(2x)` computed from logarithms. Differences are
    taken on halves so that they cannot overflow.
    """
    half = torch.hypot(u1 / 2 - u2 / 2, s1 / 2 - s2 / 2)  # = |difference| / 2, no overflow
    root1, root2 = s1.sqrt(), s2.sqrt()
    x = (half / root1) / root2
    log_2x = math.log(2.0) + torch.log(half) - 0.5 * (torch.log(s1) + torch.log(s2))
    big = ~(x < 1e150)
    safe_x = torch.where(big, torch.ones_like(x), x)
    return 2 * math.sqrt(2.0) * torch.where(big, log_2x, torch.asinh(safe_x))


def _sphere(d: Distribution, *, interior: bool = False) -> tuple[Tensor, Tensor]:
    """Unit-sphere point sqrt(p) and the scale 2 sqrt(n) of the embedding."""
    fam = type(d).__name__
    p = _simplex(_probs(d), "probs", fam, interior=interior)
    n = torch.as_tensor(getattr(d, "total_count", 1.0), dtype=DTYPE)
    return p.sqrt(), 2 * n.sqrt()


def fisher_rao_distance(p: Distribution, q: Distribution) -> Tensor:
    r"""Closed-form Fisher–Rao (geodesic) distance between two members of the same family.

    The distance is the length of the shortest path between the two parameter points in the
    Fisher metric :math:`ds^2 = d\theta^\top I(\theta)\, d\theta`; it does not depend on how the
    family is parameterised. Closed forms (Miyamoto et al. 2023):

    - Normal :math:`(\mu, \sigma)`, metric :math:`(d\mu^2 + 2\,d\sigma^2)/\sigma^2`, a hyperbolic
      half-plane of curvature :math:`-1/2`:
      :math:`\sqrt2\,\operatorname{arccosh}\bigl(1 + \frac{\Delta\mu^2/2 + \Delta\sigma^2}{2\sigma_1\sigma_2}\bigr)`;
    - Categorical: :math:`2 \arccos \sum_i \sqrt{p_i q_i}` (a great circle on a sphere of radius 2);
      Multinomial with ``total_count`` :math:`n`: :math:`2\sqrt n \arccos \sum_i \sqrt{p_i q_i}`;
    - Poisson: :math:`2|\sqrt{\lambda_1} - \sqrt{\lambda_2}|`; Exponential: :math:`|\ln(\lambda_1/\lambda_2)|`;
    - Binomial(:math:`n`): :math:`2\sqrt n\,|\arcsin\sqrt{p_1} - \arcsin\sqrt{p_2}|` (Bernoulli: :math:`n = 1`);
    - Geometric: :math:`2|\operatorname{artanh}\sqrt{1-p_1} - \operatorname{artanh}\sqrt{1-p_2}|`.

    Families without a closed form: solve :func:`geodesic` with :func:`fisher_metric`.

    Parameters
    ----------
    p, q : torch.distributions.Distribution
        Two distributions of the same class (batch shapes broadcast). Binomial and Multinomial
        need equal ``total_count``.

    Returns
    -------
    Tensor
        Float64 distances, of the broadcast batch shape.

    Raises
    ------
    ArgumentTypeError
        If the classes differ or the family has no closed form here.
    InvalidArgumentError
        If ``total_count`` differs.
    OffManifoldError
        If a parameter is off the manifold (non-positive scale or rate, probabilities off the simplex).

    Examples
    --------
    >>> from torch.distributions import Normal, Poisson
    >>> fisher_rao_distance(Poisson(torch.tensor(1.0)), Poisson(torch.tensor(4.0)))
    tensor(2., dtype=torch.float64)
    >>> d = fisher_rao_distance(Normal(0.0, 1.0), Normal(0.0, math.e))
    >>> round(d.item(), 6) == round(math.sqrt(2), 6)   # vertical line: sqrt(2) |log(s2/s1)|
    True
    """
    if not isinstance(p, Distribution) or not isinstance(q, Distribution):
        raise ArgumentTypeError("p and q must be torch.distributions.Distribution instances")
    if type(p) is not type(q):
        raise ArgumentTypeError(f"p and q must be of the same family, got {type(p).__name__} and {type(q).__name__}")
    if isinstance(p, Normal):
        return _halfplane_distance(*_normal_halfplane_pair(p, q))
    if isinstance(p, (Categorical, Multinomial)):
        if isinstance(p, Multinomial):
            _same_total_count(p, q)
        x1, scale = _sphere(p)
        x2, _ = _sphere(q)
        if x1.shape[-1] != x2.shape[-1]:
            raise ShapeError(f"p and q must have the same number of categories, got {x1.shape[-1]} and {x2.shape[-1]}")
        # angle between unit vectors, computed stably as 2 asin(|x1 - x2| / 2)
        chord = (x1 - x2).norm(dim=-1)
        return scale * 2 * torch.asin((chord / 2).clamp(max=1.0))
    if isinstance(p, _ONE_D):
        if isinstance(p, Binomial):
            _same_total_count(p, q)
        if isinstance(p, (Bernoulli, Binomial, Geometric)):
            # the boundary p in {0, 1} is at finite distance: use the closed forms directly
            n = torch.as_tensor(getattr(p, "total_count", 1.0), dtype=DTYPE)
            fam = type(p).__name__
            p1 = _unit_interval(_probs(p), "probs", fam)
            p2 = _unit_interval(_probs(q), "probs", fam)
            if isinstance(p, Geometric):
                if not ((p1 > 0) & (p2 > 0)).all():
                    raise OffManifoldError("Geometric: probs must be > 0")
                return 2 * (torch.atanh((1 - p1).sqrt()) - torch.atanh((1 - p2).sqrt())).abs()
            return 2 * n.sqrt() * (torch.asin(p1.sqrt()) - torch.asin(p2.sqrt())).abs()
        if isinstance(p, Poisson):
            l1 = _f64(p.rate, "rate")
            l2 = _f64(q.rate, "rate")  # type: ignore[attr-defined]  # q is a Poisson: same class as p
            if not ((l1 >= 0) & (l2 >= 0)).all():
                raise OffManifoldError("Poisson: rate must be >= 0")
            return 2 * (l1.sqrt() - l2.sqrt()).abs()
        phi1, _, _ = _isometric_1d(p)
        phi2, _, _ = _isometric_1d(q)
        return (phi1 - phi2).abs()
    raise ArgumentTypeError(
        f"no closed-form Fisher–Rao distance for {type(p).__name__}; "
        "use geodesic(fisher_metric(...), start, end).length"
    )


def _tangent(v: Any, size: int, name: str = "tangent") -> Tensor:
    v = _f64(v, name)
    if v.ndim < 1 or v.shape[-1] != size:
        raise ShapeError(f"{name} must have last dimension {size}, got shape {tuple(v.shape)}")
    return v


def exp_map(dist: Distribution, tangent: Tensor) -> Distribution:
    r"""Riemannian exponential map: follow the Fisher–Rao geodesic from ``dist`` for unit time.

    The geodesic starts at :math:`\theta` with velocity ``tangent``; its length is the Fisher norm
    :math:`\sqrt{v^\top I(\theta) v}`. Closed forms: the Normal half-plane (a Möbius rotation of the
    vertical geodesic :math:`i e^t`), the Categorical / Multinomial sphere
    (:math:`\xi = \sqrt p`, a great circle), and the one-parameter families (a straight line in the
    isometric coordinate :math:`\varphi` with :math:`\varphi' = \sqrt{I}`).

    Parameters
    ----------
    dist : Distribution
        Normal, Categorical, Multinomial, Poisson, Exponential, Bernoulli, Binomial or Geometric,
        with parameters in the interior of the manifold.
    tangent : Tensor
        Velocity in the family's coordinates, last dimension: Normal ``(loc, scale)`` (2);
        Categorical / Multinomial ``probs`` (K, summing to 0); one-parameter families
        ``rate`` or ``probs`` (1).

    Returns
    -------
    Distribution
        Same family (and ``total_count``) at the end of the geodesic.

    Raises
    ------
    OffManifoldError
        If the start is off (or on the boundary of) the manifold, or the geodesic leaves the
        manifold before unit time (Categorical: a probability reaches 0; Poisson: the rate reaches 0).

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> q = exp_map(Normal(0.0, 1.0), torch.tensor([0.0, 1.0]))   # straight up the half-plane
    >>> round(q.scale.item(), 6) == round(math.exp(1.0), 6)
    True
    """
    if isinstance(dist, Normal):
        u0, s0 = _normal_halfplane(dist)
        v = _tangent(tangent, 2)
        u0, s0, v0, v1 = torch.broadcast_tensors(u0, s0, v[..., 0], v[..., 1])
        w = torch.complex(v0 / math.sqrt(2.0), v1)
        speed = w.abs() / s0
        direction = torch.where(w.abs() > 0, w / w.abs().clamp_min(1e-300), torch.ones_like(w))
        theta = torch.angle(-1j * direction) / 2
        c, s = torch.cos(theta), torch.sin(theta)
        z = 1j * torch.exp(speed.to(w.dtype))
        zeta = (c * z + s) / (-s * z + c)
        mu = math.sqrt(2.0) * (u0 + s0 * zeta.real)
        sigma = s0 * zeta.imag
        return Normal(mu, sigma)
    if isinstance(dist, (Categorical, Multinomial)):
        x0, _ = _sphere(dist, interior=True)
        v = _tangent(tangent, x0.shape[-1])
        x0, v = torch.broadcast_tensors(x0, v)
        if not torch.allclose(v.sum(-1), torch.zeros((), dtype=DTYPE), atol=1e-9):
            raise InvalidArgumentError("tangent of a Categorical/Multinomial must sum to 0 over the categories")
        dx = v / (2 * x0)
        a = dx.norm(dim=-1, keepdim=True)
        x1 = torch.cos(a) * x0 + torch.where(a > 0, torch.sin(a) / a.clamp_min(1e-300), 1.0) * dx
        if (x1 < -1e-12).any():
            raise OffManifoldError(
                "the geodesic leaves the simplex before unit time (a probability reaches 0); shorten the tangent"
            )
        probs = x1.clamp_min(0) ** 2
        probs = probs / probs.sum(-1, keepdim=True)
        if isinstance(dist, Multinomial):
            return Multinomial(dist.total_count, probs=probs)
        return Categorical(probs=probs)
    if isinstance(dist, _ONE_D):
        phi, dphi, inverse = _isometric_1d(dist)
        v = _tangent(tangent, 1)[..., 0]
        return inverse(phi + dphi * v)
    raise ArgumentTypeError(f"no closed-form exponential map for {type(dist).__name__}")


def log_map(p: Distribution, q: Distribution) -> Tensor:
    r"""Riemannian logarithm: the initial velocity of the geodesic from ``p`` reaching ``q`` at unit time.

    Inverse of :func:`exp_map`; its Fisher norm :math:`\sqrt{v^\top I(\theta_p) v}` equals
    :func:`fisher_rao_distance` ``(p, q)``. On the Normal half-plane the geodesic is a half-ellipse
    (a half-circle in :math:`(\mu/\sqrt2, \sigma)`) centred on the :math:`\mu`-axis; its tangent at
    :math:`p` is proportional to :math:`\bigl(2\Delta u\,\sigma_1,\ \Delta u^2 + \sigma_2^2 - \sigma_1^2\bigr)`.

    Parameters
    ----------
    p, q : Distribution
        Same family, as for :func:`exp_map`; ``p`` in the interior of the manifold.

    Returns
    -------
    Tensor
        The velocity, in the coordinates described in :func:`exp_map`.

    Examples
    --------
    >>> from torch.distributions import Poisson
    >>> log_map(Poisson(torch.tensor(1.0)), Poisson(torch.tensor(4.0)))   # (2*2 - 2*1) / (1/sqrt(1))
    tensor([2.], dtype=torch.float64)
    """
    if type(p) is not type(q):
        raise ArgumentTypeError(f"p and q must be of the same family, got {type(p).__name__} and {type(q).__name__}")
    if isinstance(p, Normal):
        u1, s1 = _normal_halfplane(p)
        u2, s2 = _normal_halfplane(q)
        u1, s1, u2, s2 = torch.broadcast_tensors(u1, s1, u2, s2)
        du = u2 - u1
        direction = torch.stack([2 * du * s1, du**2 + s2**2 - s1**2], dim=-1)
        norm = direction.norm(dim=-1, keepdim=True)
        dist = fisher_rao_distance(p, q).unsqueeze(-1) / math.sqrt(2.0)  # hyperbolic distance in (u, sigma)
        w = torch.where(norm > 0, dist * s1.unsqueeze(-1) * direction / norm.clamp_min(1e-300), 0.0)
        return torch.stack([math.sqrt(2.0) * w[..., 0], w[..., 1]], dim=-1)
    if isinstance(p, (Categorical, Multinomial)):
        if isinstance(p, Multinomial):
            _same_total_count(p, q)
        x0, _ = _sphere(p, interior=True)
        x1, _ = _sphere(q)
        x0, x1 = torch.broadcast_tensors(x0, x1)
        c = (x0 * x1).sum(-1, keepdim=True).clamp(-1.0, 1.0)
        u = x1 - c * x0
        un = u.norm(dim=-1, keepdim=True)
        angle = 2 * torch.asin(((x1 - x0).norm(dim=-1, keepdim=True) / 2).clamp(max=1.0))
        dx = torch.where(un > 0, angle * u / un.clamp_min(1e-300), 0.0)
        return 2 * x0 * dx
    if isinstance(p, _ONE_D):
        if isinstance(p, Binomial):
            _same_total_count(p, q)
        phi1, dphi, _ = _isometric_1d(p)
        phi2, _, _ = _isometric_1d(q)
        return ((phi2 - phi1) / dphi).unsqueeze(-1)
    raise ArgumentTypeError(f"no closed-form logarithm map for {type(p).__name__}")


# --------------------------------------------------------------------------------------------
# metrics as functions theta -> G(theta)
# --------------------------------------------------------------------------------------------


def fisher_metric(
    family: type[Distribution],
    params: Sequence[str],
    *,
    method: str = "closed_form",
    **fixed: Any,
) -> Metric:
    r"""The Fisher metric of a family as a function :math:`\theta \mapsto G(\theta) = I(\theta)`.

    The returned callable builds ``family(**{params[i]: theta[..., i]}, **fixed)`` and returns
    :func:`~fisherbook.stats.estimators.fisher_information` of it for the parameters ``params`` (in that order),
    so every family and method the core API knows gives a metric for :func:`geodesic`.

    Parameters
    ----------
    family : type
        A ``torch.distributions`` class, e.g. ``Normal`` or ``Gamma``.
    params : Sequence of str
        Constructor names of the coordinates, e.g. ``("loc", "scale")``: scalar parameters, or
        the single simplex parameter ``("probs",)`` of a Categorical / Multinomial, whose
        coordinates are its first :math:`K-1` entries.
    method : str
        Passed to :func:`~fisherbook.stats.estimators.fisher_information` (``"closed_form"``, ``"quadrature"``).
    **fixed
        Constructor arguments held fixed (``total_count=10``, ``df=3.0``).

    Returns
    -------
    Callable
        ``metric(theta)`` with ``theta`` of shape ``(..., k)`` returning float64 ``(..., k, k)``.
        Points off the manifold raise :class:`~fisherbook.errors.OffManifoldError`.

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> G = fisher_metric(Normal, ("loc", "scale"))
    >>> G(torch.tensor([0.0, 2.0]))
    tensor([[0.2500, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    if not (isinstance(family, type) and issubclass(family, Distribution)):
        raise ArgumentTypeError(f"family must be a torch.distributions class, got {family!r}")
    params = tuple(params)
    if not params or not all(isinstance(n, str) for n in params):
        raise InvalidArgumentError(f"params must be a non-empty sequence of parameter names, got {params!r}")
    k = len(params)
    arg_constraints = getattr(family, "arg_constraints", {})
    simplex = k == 1 and arg_constraints.get(params[0]) is constraints.simplex

    def metric(theta: Tensor) -> Tensor:
        from ..stats import estimators  # the core API; imported late so this module loads without it

        theta = torch.as_tensor(theta, dtype=DTYPE)
        if simplex:  # the first K-1 probabilities are the coordinates, p_K = 1 - sum
            if theta.ndim < 1 or theta.shape[-1] < 1:
                raise ShapeError("theta must hold the first K-1 probabilities in its last dimension")
            kwargs = {params[0]: torch.cat([theta, 1 - theta.sum(-1, keepdim=True)], dim=-1)}
        elif theta.shape[-1:] != (k,):
            raise ShapeError(
                f"theta must have last dimension {k} ({', '.join(params)}), got shape "
                f"{tuple(theta.shape)}"
            )
        else:
            kwargs = {name: theta[..., i] for i, name in enumerate(params)}
        try:
            make: Any = family  # a torch.distributions class, called with its constructor names
            dist = make(**kwargs, **fixed, validate_args=True)
        except ValueError as err:
            raise OffManifoldError(f"{family.__name__}{tuple(params)}: {err}") from err
        out = estimators.fisher_information(dist, params=params, method=method)
        assert isinstance(out, Tensor)  # closed_form / quadrature return a tensor
        return out

    metric.__name__ = f"fisher_metric_{family.__name__}"
    metric.params = params  # type: ignore[attr-defined]
    return metric


def _batched_jacobian(f: Callable[[Tensor], Tensor], x: Tensor, *, create_graph: bool) -> Tensor:
    """Jacobian of a point-separable map (m, k) -> (m, ...) as (m, ..., k), one backward pass per output."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True) if not x.requires_grad else x
        y = f(x)
        flat = y.reshape(y.shape[0], -1)
        cols = []
        for j in range(flat.shape[1]):
            if not flat.requires_grad:
                cols.append(torch.zeros_like(x))
                continue
            (g,) = torch.autograd.grad(
                flat[:, j].sum(), x, retain_graph=True, create_graph=create_graph, allow_unused=True
            )
            cols.append(torch.zeros_like(x) if g is None else g)
    return torch.stack(cols, dim=1).reshape(*y.shape, x.shape[-1])


def pullback_metric(metric: Metric, transform: Callable[[Tensor], Tensor]) -> Metric:
    r"""The same metric in new coordinates: :math:`\tilde G(\varphi) = J^\top G(f(\varphi))\, J`.

    Here :math:`J = \partial f/\partial\varphi`.

    If :math:`\theta = f(\varphi)`, lengths, distances and geodesics do not change; only their
    coordinates do. The Jacobian is taken by autograd, so ``transform`` must be written in torch
    and act elementwise on a batch ``(..., k)``.

    Parameters
    ----------
    metric : Callable
        :math:`\theta \mapsto G(\theta)`, batch ``(..., k) -> (..., k, k)``.
    transform : Callable
        :math:`\varphi \mapsto \theta`, batch ``(..., k) -> (..., k)``.

    Returns
    -------
    Callable
        :math:`\varphi \mapsto \tilde G(\varphi)`.

    Examples
    --------
    >>> G = lambda th: torch.diag_embed(torch.stack([1 / th[..., 1] ** 2, 2 / th[..., 1] ** 2], -1))
    >>> to_scale = lambda ph: torch.stack([ph[..., 0], ph[..., 1].exp()], -1)   # (mu, log sigma) -> (mu, sigma)
    >>> pullback_metric(G, to_scale)(torch.tensor([0.0, 0.0], dtype=torch.float64))
    tensor([[1., 0.],
            [0., 2.]], dtype=torch.float64)
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    check_callable(transform, "transform", "a callable phi -> theta")

    def pulled(phi: Tensor) -> Tensor:
        phi = torch.as_tensor(phi, dtype=DTYPE)
        shape = phi.shape
        flat = phi.reshape(-1, shape[-1])
        graph = flat.requires_grad
        J = _batched_jacobian(transform, flat, create_graph=True)  # (m, k, k)
        theta = transform(flat)
        G = metric(theta)
        out = J.transpose(-1, -2) @ G @ J
        if not graph or (theta.requires_grad and not G.requires_grad):
            # a metric that autograd cannot follow makes the pullback only partly differentiable:
            # return no graph at all, so that derivative="auto" falls back to finite differences
            out = out.detach()
        return out.reshape(*shape[:-1], shape[-1], shape[-1])

    return pulled


def _metric_and_derivative(metric: Metric, x: Tensor, derivative: str) -> tuple[Tensor, Tensor]:
    """G (m, k, k) and dG (m, k, k, k) with dG[m, c, a, b] = d G_ab / d theta_c."""
    m, k = x.shape
    if derivative in ("auto", "autograd"):
        try:
            with torch.enable_grad():
                xg = x.detach().clone().requires_grad_(True)
                G = metric(xg)
                if G.requires_grad:
                    dG = _batched_jacobian(lambda _: G, xg, create_graph=False)  # (m, k, k, c)
                    return G.detach(), dG.permute(0, 3, 1, 2).contiguous()
        except (RuntimeError, TypeError):
            if derivative == "autograd":
                raise
        if derivative == "autograd":
            raise InvalidArgumentError("derivative='autograd' but the metric is not differentiable by torch autograd")
    elif derivative != "fd":
        raise InvalidArgumentError(f"derivative must be 'auto', 'autograd' or 'fd', got {derivative!r}")
    # central finite differences, step relative to the coordinate's size
    h = 1e-5 * (1 + x.abs())
    G = metric(x).detach()
    shifts = torch.eye(k, dtype=DTYPE)
    dG = torch.empty(m, k, k, k, dtype=DTYPE)
    for c in range(k):
        step = h[:, c : c + 1] * shifts[c]
        dG[:, c] = (metric(x + step).detach() - metric(x - step).detach()) / (2 * h[:, c, None, None])
    return G, dG


def christoffel_symbols(metric: Metric, theta: Tensor, *, derivative: str = "auto") -> Tensor:
    r"""Christoffel symbols of the Levi-Civita connection of ``metric`` at ``theta``.

    .. math::

        \Gamma^a_{bc} = \tfrac12\, G^{ad}\bigl(\partial_b G_{dc} + \partial_c G_{db} - \partial_d G_{bc}\bigr),

    with the metric's derivatives by torch autograd (``"autograd"``), or central finite
    differences (``"fd"``); ``"auto"`` tries autograd and falls back to finite differences.

    Parameters
    ----------
    metric : Callable
        :math:`\theta \mapsto G(\theta)`, batch ``(..., k) -> (..., k, k)``.
    theta : Tensor
        Points, shape ``(..., k)``.
    derivative : str
        How to differentiate the metric: ``"autograd"`` (torch autograd), ``"fd"`` (central finite
        differences) or ``"auto"`` (the default). ``"auto"`` uses autograd whenever the metric's output
        carries a graph, so a metric that returns a graph must be differentiable in full (a
        partly detached metric gives wrong symbols; :func:`geodesic` then fails its
        constant-speed check).

    Returns
    -------
    Tensor
        ``Gamma[..., a, b, c]`` :math:`= \Gamma^a_{bc}`, shape ``(..., k, k, k)``.

    Examples
    --------
    For the Normal :math:`(\mu, \sigma)`: :math:`\Gamma^\mu_{\mu\sigma} = -1/\sigma`,
    :math:`\Gamma^\sigma_{\mu\mu} = 1/(2\sigma)`, :math:`\Gamma^\sigma_{\sigma\sigma} = -1/\sigma`.

    >>> G = lambda th: torch.diag_embed(torch.stack([1 / th[..., 1] ** 2, 2 / th[..., 1] ** 2], -1))
    >>> Gam = christoffel_symbols(G, torch.tensor([0.0, 2.0]))
    >>> Gam[0, 0, 1].item(), Gam[1, 0, 0].item(), Gam[1, 1, 1].item()
    (-0.5, 0.25, -0.5)
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    theta = _f64(theta, "theta")
    shape = theta.shape
    x = theta.reshape(-1, shape[-1])
    G, dG = _metric_and_derivative(metric, x, derivative)
    lower = 0.5 * (dG.permute(0, 2, 1, 3) + dG.permute(0, 2, 3, 1) - dG)  # [m, d, b, c]
    # numpy's batched solve: torch's batched LAPACK path is ~1000x slower for tiny k x k systems
    gamma = torch.as_tensor(np.linalg.solve(G.numpy(), lower.reshape(x.shape[0], shape[-1], -1).numpy()))
    return gamma.reshape(*shape, shape[-1], shape[-1])


# --------------------------------------------------------------------------------------------
# numerical geodesics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geodesic:
    r"""A numerically solved geodesic :math:`\gamma: [0, 1] \to \Theta` (returned by :func:`geodesic`).

    Attributes
    ----------
    t : numpy.ndarray
        The final collocation mesh on :math:`[0, 1]`.
    points : Tensor
        :math:`\gamma(t)` on the mesh, shape ``(len(t), k)``.
    velocities : Tensor
        :math:`\dot\gamma(t)` on the mesh.
    length : float
        :math:`\int_0^1 \sqrt{\dot\gamma^\top G(\gamma)\, \dot\gamma}\, dt` by Gauss–Legendre quadrature.
    speed_variation : float
        Largest relative deviation of the speed from its mean (0 for an exact geodesic, which has
        constant speed): an accuracy diagnostic.
    """

    t: np.ndarray
    points: Tensor
    velocities: Tensor
    length: float
    speed_variation: float
    _sol: Any = field(repr=False, compare=False)

    def __call__(self, t: Any) -> Tensor:
        """Points :math:`\\gamma(t)` for ``t`` in [0, 1], shape ``(len(t), k)``."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        if (t < 0).any() or (t > 1).any():
            raise InvalidArgumentError("t must lie in [0, 1]")
        k = self.points.shape[1]
        return torch.as_tensor(self._sol.sol(t)[:k].T, dtype=DTYPE)


_ADVICE = (
    "Try: more initial nodes (n_nodes), a looser tol, an `initial` path (e.g. through an "
    "intermediate point), or endpoints closer together; check that the metric is smooth and "
    "positive definite along the straight line between the endpoints."
)


def _positive_definite(G: Tensor) -> bool:
    """Whether every matrix of a batch is finite, symmetric and positive definite."""
    g = G.detach().numpy()
    if not np.isfinite(g).all() or not np.allclose(g, np.swapaxes(g, -1, -2), rtol=1e-8, atol=1e-12):
        return False
    return bool((np.linalg.eigvalsh(g) > 0).all())


def _check_metric(G: Tensor, where: str) -> None:
    if not _positive_definite(G):
        raise OffManifoldError(f"the metric is not finite, symmetric and positive definite at {where}")


def _single_threaded_blas() -> Any:
    """Limit BLAS to one thread: the tiny systems here only pay for thread spin-up and contention."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no type hints
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _discrete_geodesic(metric: Metric, a: np.ndarray, b: np.ndarray, n_nodes: int, derivative: str) -> np.ndarray:
    """Initial path: minimise the discrete energy sum_i dx_i^T G(midpoint_i) dx_i over the interior nodes.

    A robust global start for the collocation solver, which from a straight line can fail to
    find geodesics that bend far away from it (e.g. distant points of the Normal half-plane).
    The gradient uses the metric's derivatives (autograd or finite differences), so metrics that
    autograd cannot differentiate work too; paths through points where the metric is not
    positive definite are rejected.
    """
    k = a.shape[0]
    s = np.linspace(0.0, 1.0, n_nodes)[:, None]
    straight = a + (b - a) * s  # (n, k)
    best: list[Any] = [float("inf"), straight[1:-1].ravel().copy()]

    def energy(z: np.ndarray) -> tuple[float, np.ndarray]:
        inner = z.reshape(n_nodes - 2, k)
        path = np.vstack([a, inner, b])
        dx = np.diff(path, axis=0)
        mids = torch.as_tensor((path[1:] + path[:-1]) / 2)
        try:
            G, dG = _metric_and_derivative(metric, mids, derivative)
            ok = _positive_definite(G) and _positive_definite(metric(torch.as_tensor(inner)))
        except (ValueError, RuntimeError):  # off the manifold: reject the step
            ok = False
        if not ok or not torch.isfinite(dG).all():
            return float("inf"), np.zeros_like(z)
        Gn, dGn = G.numpy(), dG.detach().numpy()
        scale = n_nodes - 1
        e = scale * float(np.einsum("ma,mab,mb->", dx, Gn, dx))
        Gdx = np.einsum("mab,mb->ma", Gn, dx)
        quad = np.einsum("ma,mcab,mb->mc", dx, dGn, dx)
        grad = scale * (2 * Gdx[:-1] - 2 * Gdx[1:] + 0.5 * quad[:-1] + 0.5 * quad[1:])
        if e < best[0]:
            best[:] = [e, z.copy()]
        return e, grad.ravel()

    if np.isfinite(energy(best[1])[0]):
        from scipy.optimize import minimize

        # a rough minimiser is all the collocation solver needs as a start
        minimize(energy, best[1], jac=True, method="L-BFGS-B", options={"maxiter": 300, "ftol": 1e-10})
    return np.vstack([a, best[1].reshape(n_nodes - 2, k), b]).T


def geodesic(
    metric: Metric,
    start: Any,
    end: Any,
    *,
    n_nodes: int = 33,
    tol: float = 1e-6,
    max_nodes: int = 5_000,
    derivative: str = "auto",
    initial: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Geodesic:
    r"""Solve the geodesic equation between two points of a Riemannian manifold as a boundary-value problem.

    The geodesic :math:`\gamma(t)`, :math:`t \in [0, 1]`, satisfies

    .. math::

        \ddot\gamma^a + \Gamma^a_{bc}(\gamma)\, \dot\gamma^b \dot\gamma^c = 0, \qquad
        \gamma(0) = \theta_0,\ \gamma(1) = \theta_1,

    solved by collocation (:func:`scipy.integrate.solve_bvp`) from the straight line (or
    ``initial``) with :func:`christoffel_symbols` of ``metric``. Its length
    :math:`\int_0^1 \|\dot\gamma\|_{G}\, dt` is the Fisher–Rao distance when the geodesic is the
    shortest path (always on the Normal half-plane and the one-parameter families; on the
    Categorical sphere for points less than half a great circle apart).

    Parameters
    ----------
    metric : Callable
        :math:`\theta \mapsto G(\theta)`, batch ``(m, k) -> (m, k, k)``, e.g. from
        :func:`fisher_metric` or :func:`pullback_metric`.
    start, end : array_like
        End points, shape ``(k,)``.
    n_nodes : int
        Nodes of the initial mesh (at least 3).
    tol : float
        Collocation tolerance passed to ``solve_bvp`` (relative residual), in (0, 0.1).
    max_nodes : int
        Largest mesh ``solve_bvp`` may build.
    derivative : str
        How the Christoffel symbols differentiate the metric: ``"auto"``, ``"autograd"`` or ``"fd"``
        (see :func:`christoffel_symbols`).
    initial : Callable, optional
        ``t -> theta(t)`` with ``t`` of shape ``(m,)`` returning ``(k, m)``: an initial path.

    Returns
    -------
    Geodesic
        Path, velocities, length and a speed-variation diagnostic.

    Raises
    ------
    OffManifoldError
        If the metric is not finite and positive definite at an end point.
    GeodesicError
        If the solver does not converge, leaves the manifold, or the result fails the
        constant-speed check — never a silently wrong length. The message gives advice.

    Examples
    --------
    The Poisson metric :math:`1/\lambda` has distance :math:`2|\sqrt{\lambda_1} - \sqrt{\lambda_2}|`:

    >>> g = geodesic(lambda th: 1 / th[..., None], [1.0], [4.0])
    >>> round(g.length, 8)
    2.0
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    if not isinstance(n_nodes, int) or n_nodes < 3:
        raise InvalidArgumentError(f"n_nodes must be an integer >= 3, got {n_nodes!r}")
    if not 0 < tol < 0.1:
        raise InvalidArgumentError(f"tol must lie in (0, 0.1), got {tol!r}")
    x0 = _f64(start, "start").reshape(-1)
    x1 = _f64(end, "end").reshape(-1)
    if x0.shape != x1.shape:
        raise ShapeError(f"start and end must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    k = x0.shape[0]
    ends = torch.stack([x0, x1])
    G_ends = metric(ends)
    if G_ends.shape != (2, k, k):
        raise ShapeError(f"metric must map (m, {k}) to (m, {k}, {k}); got shape {tuple(G_ends.shape)}")
    _check_metric(G_ends[0], f"start {x0.tolist()}")
    _check_metric(G_ends[1], f"end {x1.tolist()}")
    a, b = x0.numpy(), x1.numpy()

    def rhs(t: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(y[:k].T)
        v = torch.as_tensor(y[k:].T)
        gam = christoffel_symbols(metric, x, derivative=derivative)
        acc = -torch.einsum("mabc,mb,mc->ma", gam, v, v)
        return np.vstack([y[k:], acc.numpy().T])

    def bc(ya: np.ndarray, yb: np.ndarray) -> np.ndarray:
        return np.concatenate([ya[:k] - a, yb[:k] - b])

    t = np.linspace(0.0, 1.0, n_nodes)
    if initial is None:
        with _single_threaded_blas():
            x_init = _discrete_geodesic(metric, a, b, n_nodes, derivative)
        v_init = np.gradient(x_init, t, axis=1, edge_order=2)
    else:
        x_init = np.asarray(initial(t), dtype=float)
        if x_init.shape != (k, n_nodes):
            raise ShapeError(f"initial(t) must return shape ({k}, {n_nodes}), got {x_init.shape}")
        v_init = np.gradient(x_init, t, axis=1)
    y_init = np.vstack([x_init, v_init])
    try:
        with np.errstate(all="raise"), _single_threaded_blas():
            sol = solve_bvp(rhs, bc, t, y_init, tol=tol, max_nodes=max_nodes, bc_tol=tol)
    except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as err:
        raise GeodesicError(f"geodesic solve failed ({type(err).__name__}: {err}). {_ADVICE}") from err
    if sol.status != 0 or not np.isfinite(sol.y).all():
        raise GeodesicError(f"geodesic solve did not converge: {sol.message} {_ADVICE}")

    # length by 8-point Gauss–Legendre on every mesh interval of the collocation solution
    nodes, weights = np.polynomial.legendre.leggauss(8)
    lo, hi = sol.x[:-1, None], sol.x[1:, None]
    tq = ((hi - lo) / 2 * nodes + (hi + lo) / 2).ravel()
    wq = ((hi - lo) / 2 * weights).ravel()
    yq = sol.sol(tq)
    xq = torch.as_tensor(yq[:k].T)
    vq = torch.as_tensor(yq[k:].T)
    try:
        Gq = metric(xq).detach()
        _check_metric(Gq, "a point of the solved path")
    except (ValueError, RuntimeError) as err:
        raise GeodesicError(f"the solved path leaves the manifold ({err}). {_ADVICE}") from err
    speed = torch.einsum("ma,mab,mb->m", vq, Gq, vq).clamp_min(0).sqrt().numpy()
    length = float(np.dot(wq, speed))
    mean_speed = float(np.dot(wq, speed))
    variation = float(np.max(np.abs(speed - mean_speed)) / mean_speed) if mean_speed > 0 else 0.0
    if variation > max(1e-3, 1e3 * tol):
        raise GeodesicError(
            f"the solved path does not have constant speed (relative variation {variation:.2e}): "
            f"not an accurate geodesic. {_ADVICE}"
        )
    return Geodesic(
        t=sol.x,
        points=torch.as_tensor(sol.y[:k].T.copy()),
        velocities=torch.as_tensor(sol.y[k:].T.copy()),
        length=length,
        speed_variation=variation,
        _sol=sol,
    )


# --------------------------------------------------------------------------------------------
# Jeffreys prior and the local expansion of KL
# --------------------------------------------------------------------------------------------


def jeffreys_log_density(metric: Metric, theta: Any) -> Tensor:
    r"""Unnormalised log Jeffreys density :math:`\log\sqrt{\det G(\theta)} = \tfrac12 \log\det I(\theta)`.

    The Jeffreys prior is the Riemannian volume of the Fisher metric, so it transforms as a
    density under reparameterisation: in coordinates :math:`\varphi` with :math:`\theta = f(\varphi)`
    it gains :math:`\log|\det \partial f/\partial\varphi|` (use :func:`pullback_metric`).

    Parameters
    ----------
    metric : Callable
        :math:`\theta \mapsto G(\theta)`, e.g. :func:`fisher_metric`.
    theta : array_like
        Points, shape ``(..., k)``.

    Returns
    -------
    Tensor
        Shape ``(...)``.

    Examples
    --------
    Normal :math:`(\mu, \sigma)`: :math:`\sqrt{\det I} = \sqrt2/\sigma^2`.

    >>> G = lambda th: torch.diag_embed(torch.stack([1 / th[..., 1] ** 2, 2 / th[..., 1] ** 2], -1))
    >>> round(jeffreys_log_density(G, torch.tensor([0.0, 1.0])).item(), 6) == round(0.5 * math.log(2), 6)
    True
    """
    check_callable(metric, "metric", "a callable theta -> G(theta)")
    theta = _f64(theta, "theta")
    G = metric(theta)
    sign, logdet = torch.linalg.slogdet(G)
    if not (sign > 0).all():
        raise OffManifoldError("the metric is not positive definite at some theta")
    return 0.5 * logdet


def jeffreys_prior(dist: Distribution) -> Distribution:
    r"""The normalised Jeffreys prior of ``dist``'s family, where proper.

    The prior is :math:`\pi(\theta) \propto \sqrt{\det I(\theta)}`.

    Only ``dist``'s family and fixed quantities (number of categories, batch shape) matter,
    not its parameter values. Proper cases:

    - Bernoulli and Binomial(:math:`n`) in ``probs``: :math:`\sqrt{n/(p(1-p))}` normalises to
      :math:`\mathrm{Beta}(\tfrac12, \tfrac12)`;
    - Categorical and Multinomial with :math:`K` categories: :math:`\prod_i p_i^{-1/2}` normalises to
      :math:`\mathrm{Dirichlet}(\tfrac12, \dots, \tfrac12)`.

    Improper cases raise ``ValueError`` naming the unnormalised density: Normal
    :math:`(\mu, \sigma)` :math:`\propto 1/\sigma^2`; Poisson :math:`\propto \lambda^{-1/2}`;
    Exponential :math:`\propto 1/\lambda`; Geometric :math:`\propto p^{-1}(1-p)^{-1/2}`.
    Use :func:`jeffreys_log_density` for those.

    Parameters
    ----------
    dist : Distribution
        A member of the family.

    Returns
    -------
    Distribution
        ``Beta`` or ``Dirichlet`` with ``dist``'s batch shape.

    Examples
    --------
    >>> from torch.distributions import Bernoulli
    >>> jeffreys_prior(Bernoulli(torch.tensor(0.3)))
    Beta()
    """
    half = torch.tensor(0.5, dtype=DTYPE)
    if isinstance(dist, (Bernoulli, Binomial)):
        c = half.expand(dist.batch_shape)
        return Beta(c, c)
    if isinstance(dist, (Categorical, Multinomial)):
        K = dist.probs.shape[-1]
        return Dirichlet(half.expand(*dist.batch_shape, K).clone())
    improper = {
        Normal: "1/scale**2 in (loc, scale)",
        Poisson: "rate**(-1/2)",
        Exponential: "1/rate",
        Geometric: "probs**(-1) (1 - probs)**(-1/2)",
    }
    for fam, density in improper.items():
        if isinstance(dist, fam):
            raise InvalidArgumentError(
                f"the Jeffreys prior of {fam.__name__} is improper (proportional to {density}); "
                "use jeffreys_log_density for the unnormalised log density"
            )
    raise ArgumentTypeError(
        f"no closed-form Jeffreys prior for {type(dist).__name__}; "
        "use jeffreys_log_density(fisher_metric(...), theta)"
    )


def kl_quadratic(dist: Distribution, delta: Any, params: Sequence[str] | None = None) -> Tensor:
    r"""Second-order approximation of the KL divergence by the Fisher information.

    :math:`\mathrm{KL}(p_\theta \,\|\, p_{\theta+\delta}) \approx \tfrac12\, \delta^\top I(\theta)\, \delta`.

    The KL divergence vanishes with zero gradient at :math:`\delta = 0` and its Hessian there is the
    Fisher information, so the error of this approximation is :math:`O(\|\delta\|^3)`.

    Parameters
    ----------
    dist : Distribution
        :math:`p_\theta`.
    delta : array_like
        Parameter step(s), shape ``(..., k)`` broadcasting against ``dist``'s batch shape.
    params : Sequence of str, optional
        Coordinates of :math:`\theta` and their order, as for :func:`~fisherbook.stats.estimators.fisher_information`.

    Returns
    -------
    Tensor
        :math:`\tfrac12\delta^\top I\delta`, float64.

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> kl_quadratic(Normal(0.0, 2.0), torch.tensor([1.0, 0.0]))   # 1/2 * 1/sigma^2
    tensor(0.1250, dtype=torch.float64)
    """
    from ..stats import estimators

    info = estimators.fisher_information(dist, params=None if params is None else tuple(params))
    delta = _f64(delta, "delta")
    if delta.shape[-1:] != info.shape[-1:]:
        raise ShapeError(f"delta must have last dimension {info.shape[-1]}, got shape {tuple(delta.shape)}")
    return 0.5 * torch.einsum("...a,...ab,...b->...", delta, info, delta)
