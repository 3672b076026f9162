r"""Score vectors and Fisher information by every route: closed form, quadrature, Monte Carlo.

For a family :math:`p(x\mid\theta)` the score is :math:`s(x;\theta)=\nabla_\theta\log p(x\mid\theta)`
and the Fisher information is

.. math::

    I(\theta) = \mathbb E_\theta\big[s\,s^\top\big] = -\mathbb E_\theta\big[\nabla^2_\theta\log p\big],

the second equality holding under the usual regularity conditions. :func:`fisher_information`
computes it

* ``"closed_form"``: from :mod:`fisherbook.stats.families` (the fast path);
* ``"quadrature"``: as the exact expectation of :math:`s s^\top` by adaptive quadrature
  (``scipy.integrate.quad``) over the support of a continuous univariate family, or by
  enumeration of a discrete one (infinite supports truncated once the remaining terms, bounded
  by a geometric series, fall below :data:`ENUMERATION_TAIL` of the sum);
* ``"score"`` / ``"hessian"``: as Monte-Carlo averages of :math:`s s^\top` and
  :math:`-\nabla^2\log p` over samples, with standard errors (:class:`FisherEstimate`).

Scores and Hessians come from autograd on a float64 copy of the distribution rebuilt from its
named constructor parameters. Vector and matrix parameters enter through free coordinates
(see :func:`coordinate_names`): the first :math:`K-1` entries of ``probs`` on the simplex; the
lower triangle, row-major, of ``covariance_matrix``, ``precision_matrix`` (symmetric
perturbations) or ``scale_tril``; every entry of other vector parameters. ``total_count`` is
always held fixed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import torch
from scipy import integrate
from torch import Tensor
from torch.distributions import Distribution, VonMises, constraints

from .._validate import check_int, check_option, check_symmetric_psd
from ..errors import (
    ArgumentTypeError,
    ConvergenceError,
    InvalidArgumentError,
    NonFiniteError,
    OffManifoldError,
    ShapeError,
    SizeLimitError,
    UnsupportedError,
)
from . import _params
from ._params import NOT_TWICE_DIFFERENTIABLE, _Resolved, resolve
from .families import _closed_form_resolved, check_information_finite

__all__ = [
    "parameter_names",
    "coordinate_names",
    "FisherEstimate",
    "fisher_information",
    "score",
    "observed_information",
    "empirical_fisher",
    "reparameterize",
    "conditional_fisher",
    "QUADRATURE_RTOL",
    "ENUMERATION_TAIL",
]

_DTYPE = torch.float64
_METHODS = ("closed_form", "quadrature", "score", "hessian")
#: Relative tolerance requested from ``scipy.integrate.quad`` for each entry (relative to
#: :math:`\sqrt{I_{mm}I_{nn}}` for off-diagonal entries).
QUADRATURE_RTOL: float = 1e-10
#: Enumeration of an infinite discrete support stops when a geometric bound on the remaining
#: terms of :math:`p(x)(1+\lVert s(x)\rVert^2)` is below this fraction of their running sum.
ENUMERATION_TAIL: float = 1e-15
_MAX_ENUMERATION = 20_000_000
# quad's error estimate is pessimistic and floors at the rounding error of log p itself (for
# StudentT with large df the df-score is a difference of nearly equal digammas); a result is
# rejected only when the estimate says it is clearly unconverged.
_QUAD_FAIL = 1e-3
_CHUNK = 1 << 15


@dataclass(frozen=True)
class FisherEstimate:
    r"""A Monte-Carlo estimate of a Fisher information matrix.

    Attributes
    ----------
    value : torch.Tensor
        The estimate, float64, shape ``batch_shape + (k, k)`` (same as the closed form).
    stderr : torch.Tensor
        Standard error of each entry, :math:`\hat\sigma/\sqrt{n}` with :math:`\hat\sigma` the
        sample standard deviation of the per-sample matrices; same shape as ``value``.
    n_samples : int
        Number of samples averaged.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Poisson
    >>> g = torch.Generator().manual_seed(0)
    >>> est = fisher_information(Poisson(torch.tensor(4.0)), method="score", n_samples=20000,
    ...                          generator=g)
    >>> bool(abs(est.value - 0.25) < 5 * est.stderr)
    True
    """

    value: Tensor
    stderr: Tensor
    n_samples: int


# --------------------------------------------------------------------------- parameters


def parameter_names(dist: Distribution) -> tuple[str, ...]:
    r"""The constructor parameters a distribution was built with, in constructor order.

    These are the names :func:`fisher_information` and :func:`score`
    differentiate with respect to by default. Of the mutually exclusive groups (``probs`` /
    ``logits``; ``covariance_matrix`` / ``precision_matrix`` / ``scale_tril``) the one the object
    was constructed with is returned; ``total_count`` is fixed and never listed. (A
    ``MultivariateNormal`` or ``Geometric`` does not record which one it was given: once another
    one has been read from it, the first in constructor order is returned. Pass ``params`` to
    be explicit.)

    Parameters
    ----------
    dist : torch.distributions.Distribution
        The distribution.

    Returns
    -------
    tuple of str
        Parameter names, e.g. ``("loc", "scale")`` for a Normal.

    Raises
    ------
    ArgumentTypeError
        If ``dist`` is not a distribution or has no named parameters (e.g. a
        ``TransformedDistribution`` or ``Independent`` wrapper).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal, Bernoulli, StudentT
    >>> parameter_names(Normal(0.0, 1.0))
    ('loc', 'scale')
    >>> parameter_names(Bernoulli(logits=torch.tensor(0.3)))
    ('logits',)
    >>> parameter_names(StudentT(df=3.0))
    ('df', 'loc', 'scale')
    """
    return _params.parameter_names(dist)


def coordinate_names(
    dist: Distribution, params: str | Sequence[str] | None = None
) -> tuple[str, ...]:
    r"""Labels of the rows/columns of the Fisher matrix for ``dist`` and ``params``.

    Scalar parameters are labelled by their name; vector and matrix parameters by their name
    and index: the first :math:`K-1` entries of ``probs`` on the simplex; the lower triangle,
    row-major, of ``covariance_matrix`` / ``precision_matrix`` / ``scale_tril``; every entry of
    other vector parameters.

    Parameters
    ----------
    dist : torch.distributions.Distribution
        The distribution.
    params : str or Sequence of str, optional
        Parameter names; default :func:`parameter_names` of ``dist``.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import MultivariateNormal, Categorical
    >>> coordinate_names(MultivariateNormal(torch.zeros(2), torch.eye(2)))
    ('loc[0]', 'loc[1]', 'covariance_matrix[0,0]', 'covariance_matrix[1,0]', 'covariance_matrix[1,1]')
    >>> coordinate_names(Categorical(probs=torch.tensor([0.2, 0.3, 0.5])))
    ('probs[0]', 'probs[1]')
    """
    return _params.coordinate_names(dist, params)


# --------------------------------------------------------------------------- autograd engine


def _derivatives(
    r: _Resolved, x: Tensor, hessian: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """log p(x), score and (optionally) Hessian of log p(x) per sample and batch element.

    ``x`` has shape ``sample + batch + event`` (broadcasting against the batch). Returns
    ``lp`` of shape ``S = broadcast(sample + batch)``, ``g`` of shape ``S + (k,)`` and
    ``H`` of shape ``S + (k, k)``.
    """
    event_dim = len(r.dist.event_shape)
    lp_shape = torch.broadcast_shapes(x.shape[: x.dim() - event_dim], r.batch_shape)
    k = r.k
    theta = r.coords().expand(lp_shape + (k,)).clone().requires_grad_(True)
    with torch.enable_grad():
        d = r.build(theta, lp_shape)
        lp = d.log_prob(x)
        (g,) = torch.autograd.grad(lp.sum(), theta, create_graph=hessian)
        h = None
        if hessian:
            rows = []
            for j in range(k):
                (row,) = torch.autograd.grad(
                    g[..., j].sum(),
                    theta,
                    retain_graph=j < k - 1,
                    allow_unused=True,
                    materialize_grads=True,
                )
                rows.append(row)
            h = torch.stack(rows, dim=-2).detach()
    return lp.detach(), g.detach(), h


def _as_data(x: object, name: str = "x") -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"{name} must be a tensor or array of numbers") from None
    if t.is_complex():
        raise ArgumentTypeError(f"{name} must be real, got a complex tensor")
    t = t.to(_DTYPE)
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{name} must be finite; found NaN or infinite values")
    return t


def _check_support(d: Distribution, x: Tensor, name: str = "x") -> None:
    event_dim = len(d.event_shape)
    if x.dim() < event_dim or x.shape[x.dim() - event_dim :] != d.event_shape:
        raise ShapeError(
            f"{name} must end in the event shape {tuple(d.event_shape)} of "
            f"{type(d).__name__}, got shape {tuple(x.shape)}"
        )
    try:
        torch.broadcast_shapes(x.shape[: x.dim() - event_dim], d.batch_shape)
    except RuntimeError:
        raise ShapeError(
            f"{name} of shape {tuple(x.shape)} does not broadcast against batch shape "
            f"{tuple(d.batch_shape)}"
        ) from None
    support = d.support
    if support is None:
        raise UnsupportedError(f"{type(d).__name__} declares no support; fisherbook cannot check {name} against it")
    ok = support.check(x)
    if not bool(torch.as_tensor(ok).all()):
        raise InvalidArgumentError(f"{name} has values outside the support of {type(d).__name__}")


def score(
    dist: Distribution, x: Tensor | np.ndarray | float, params: str | Sequence[str] | None = None
) -> Tensor:
    r"""Per-sample score vectors :math:`s(x;\theta) = \nabla_\theta \log p(x\mid\theta)`.

    Parameters
    ----------
    dist : torch.distributions.Distribution
        The model at the parameter value of interest.
    x : torch.Tensor or numpy.ndarray or float
        Observations of shape ``sample_shape + batch_shape + event_shape`` (or broadcastable
        against the batch shape, as for ``dist.log_prob``).
    params : str or Sequence of str, optional
        Constructor parameters to differentiate; default :func:`parameter_names`.

    Returns
    -------
    torch.Tensor
        float64, shape ``log_prob(x).shape + (k,)``, i.e. ``sample_shape + batch_shape + (k,)``.

    Raises
    ------
    InvalidArgumentError
        For non-finite data, data outside the support, or invalid ``params``.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> score(Normal(0.0, 2.0), torch.tensor([0.0, 2.0]))
    tensor([[ 0.0000, -0.5000],
            [ 0.5000,  0.0000]], dtype=torch.float64)
    """
    r = resolve(dist, params)
    x = _as_data(x)
    _check_support(r.dist, x)
    _, g, _ = _derivatives(r, x)
    return g


# --------------------------------------------------------------------------- Monte Carlo


def _seed_from(generator: torch.Generator | int | None) -> int | None:
    if generator is None:
        return None
    if isinstance(generator, bool):
        raise ArgumentTypeError("generator must be a torch.Generator, an int seed or None")
    if isinstance(generator, int):
        return generator
    if isinstance(generator, torch.Generator):
        return int(torch.randint(0, 2**62, (), generator=generator))
    raise ArgumentTypeError(
        f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}"
    )


def _sample(d: Distribution, n: int, generator: torch.Generator | int | None) -> Tensor:
    seed = _seed_from(generator)
    if seed is None:
        return d.sample((n,))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return d.sample((n,))


def _monte_carlo(
    r: _Resolved, method: str, n: int, generator: torch.Generator | int | None
) -> FisherEstimate:
    if method == "hessian":
        bad = [p for p in r.names if (r.cls, p) in NOT_TWICE_DIFFERENTIABLE]
        if bad:
            raise UnsupportedError(
                f"method='hessian': log p of {r.cls.__name__} is not twice differentiable in "
                f"{bad[0]} (the second derivative is a point mass that sampling never sees), "
                "so -E[Hessian] is wrong; use method='score' or 'quadrature'"
            )
    x = _sample(r.dist, n, generator).to(_DTYPE)
    count = 0
    mean: Tensor | None = None
    m2: Tensor | None = None
    for start in range(0, n, _CHUNK):
        xb = x[start : start + _CHUNK]
        _, g, h = _derivatives(r, xb, hessian=method == "hessian")
        if method == "score":
            per = g.unsqueeze(-1) * g.unsqueeze(-2)
        else:
            assert h is not None  # _derivatives returns the Hessian when asked for it
            per = -h
        nb = per.shape[0]
        bmean = per.mean(0)
        bm2 = ((per - bmean) ** 2).sum(0)
        if mean is None or m2 is None:
            mean, m2, count = bmean, bm2, nb
        else:
            delta = bmean - mean
            tot = count + nb
            mean = mean + delta * (nb / tot)
            m2 = m2 + bm2 + delta**2 * (count * nb / tot)
            count = tot
    assert mean is not None and m2 is not None
    stderr = torch.sqrt(m2 / (count - 1) / count)
    return FisherEstimate(value=mean, stderr=stderr, n_samples=count)


# --------------------------------------------------------------------------- quadrature


def _select(r: _Resolved, idx: tuple[int, ...]) -> _Resolved:
    """The scalar-batch sub-problem for one batch element."""
    nb = len(r.batch_shape)

    def pick(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() >= nb and nb > 0:
            return v.expand(r.batch_shape + v.shape[nb:])[idx]
        return v

    values = {n: pick(v) for n, v in r.values.items()}
    fixed = {n: pick(v) for n, v in r.fixed.items()}
    d = r.cls(**{n: values[n] for n in r.full}, **fixed, validate_args=False)
    return _Resolved(r.cls, d, r.full, r.params, values, fixed, torch.Size())


def _enumeration_window(r: _Resolved) -> tuple[int, int] | None:
    """For a large integer interval (Binomial(10**9, p)): the part of the support that holds its mass.

    Outside mean -/+ 40 standard deviations the mass is below exp(-800) (Chernoff), so summing
    the window is exact in float64; None when the support is small enough to enumerate whole.
    """
    support = r.dist.support
    if not isinstance(support, constraints.integer_interval):
        return None
    lo, hi = int(torch.as_tensor(support.lower_bound)), int(torch.as_tensor(support.upper_bound))
    if hi - lo + 1 <= _CHUNK:
        return None
    try:
        mean, sd = float(r.dist.mean), float(r.dist.stddev)
    except (NotImplementedError, ValueError, RuntimeError):
        mean, sd = math.nan, math.nan
    if math.isfinite(mean) and math.isfinite(sd):
        lo, hi = max(lo, math.floor(mean - 40.0 * sd - 1)), min(hi, math.ceil(mean + 40.0 * sd + 1))
    if hi - lo + 1 > _MAX_ENUMERATION:
        raise SizeLimitError(
            f"method='quadrature': summing over the support of {r.cls.__name__} needs {hi - lo + 1} terms "
            f"at these parameters, more than the limit of {_MAX_ENUMERATION}; use method='closed_form' "
            "where available or method='score' (Monte Carlo)"
        )
    return lo, hi


def _enumerate_finite(r: _Resolved) -> Tensor:
    window = _enumeration_window(r)
    if window is None:
        chunks = [r.dist.enumerate_support(expand=False).to(_DTYPE)]
    else:  # chunked, so that memory stays bounded
        starts = range(window[0], window[1] + 1, _CHUNK)
        chunks = [torch.arange(a, min(a + _CHUNK, window[1] + 1), dtype=_DTYPE) for a in starts]
    total = torch.zeros(r.k, r.k, dtype=_DTYPE)
    for x in chunks:
        lp, g, _ = _derivatives(r, x)
        w = torch.exp(lp)
        terms = w[..., None, None] * g.unsqueeze(-1) * g.unsqueeze(-2)
        terms = torch.where(w[..., None, None] > 0, terms, torch.zeros_like(terms))
        total = total + terms.sum(0)
    return total


def _enumerate_infinite(r: _Resolved) -> Tensor:
    total = torch.zeros(r.k, r.k, dtype=_DTYPE)
    weight_sum = 0.0
    start, size = 0, 1024
    try:
        mean, sd = float(r.dist.mean), float(r.dist.stddev)
        if math.isfinite(mean) and math.isfinite(sd) and mean - 40.0 * sd > 0:
            # below mean - 40 sd the mass is < exp(-800) (Chernoff) for these families
            start = int(mean - 40.0 * sd)
    except (NotImplementedError, ValueError, RuntimeError):
        pass
    while True:
        x = torch.arange(start, start + size, dtype=_DTYPE)
        lp, g, _ = _derivatives(r, x)
        p = torch.exp(lp)
        gg = g.unsqueeze(-1) * g.unsqueeze(-2)
        terms = torch.where(p[:, None, None] > 0, p[:, None, None] * gg, torch.zeros_like(gg))
        total = total + terms.sum(0)
        w = torch.where(p > 0, p * (1.0 + (g * g).sum(-1)), torch.zeros_like(p))
        weight_sum += float(w.sum())
        last, before = float(w[-1]), float(w[-2])
        start += size
        if last == 0.0 and weight_sum > 0.0:
            break
        if before > 0 and last < before:
            ratio = last / before
            tail = last * ratio / (1.0 - ratio)
            # decreasing across the whole chunk end: geometric bound applies
            if tail <= ENUMERATION_TAIL * weight_sum and bool((w[-64:].diff() <= 0).all()):
                break
        if start > _MAX_ENUMERATION:
            raise SizeLimitError(
                f"method='quadrature': the support of {r.cls.__name__} needs more than "
                f"{_MAX_ENUMERATION} terms at these parameters; use method='score'"
            )
        size = min(size * 2, 1 << 20)
    return total


def _transform(
    lower: float, upper: float, centre: float = 0.0, scale: float = 1.0
) -> tuple[Callable[[float], tuple[float, float]], str]:
    """Map an unbounded variable u to the support; returns (u -> (x, log|dx/du|), kind).

    On the real line the map is affine, ``x = centre + scale * u``, so that a density of any
    location and width is integrated where its mass is (``Normal(0, 1e-8)``, ``Normal(1e6, 1)``).
    """
    if math.isinf(lower) and math.isinf(upper):
        if centre == 0.0 and scale == 1.0:
            return (lambda u: (u, 0.0)), "real"
        log_scale = math.log(scale)
        return (lambda u: (centre + scale * u, log_scale)), "real"
    if not math.isinf(lower) and math.isinf(upper):
        return (lambda u: (lower + math.exp(u) if u < 709 else math.inf, u)), "lower"
    if math.isinf(lower) and not math.isinf(upper):
        return (lambda u: (upper - math.exp(u) if u < 709 else -math.inf, u)), "upper"
    width = upper - lower

    def interval(u: float) -> tuple[float, float]:
        e = math.exp(-abs(u))  # in (0, 1], underflows gracefully to 0
        if u <= 0:
            x = lower + width * e / (1.0 + e)
        else:
            x = upper - width * e / (1.0 + e)
        lj = math.log(width) - abs(u) - 2.0 * math.log1p(e)
        return x, lj

    return interval, "interval"


def _inverse(x: float, lower: float, upper: float, kind: str, centre: float = 0.0, scale: float = 1.0) -> float:
    if kind == "real":
        return (x - centre) / scale
    if kind == "lower":
        return math.log(x - lower)
    if kind == "upper":
        return math.log(upper - x)
    t = (x - lower) / (upper - lower)
    return math.log(t) - math.log1p(-t)


def _breakpoints(d: Distribution, lower: float, upper: float) -> list[float]:
    xs: list[float] = []
    try:
        q = torch.tensor([1e-3, 0.1, 0.5, 0.9, 1 - 1e-3], dtype=_DTYPE)
        xs = [float(v) for v in d.icdf(q)]
    except (NotImplementedError, AttributeError, RuntimeError, ValueError):
        xs = []
    if not xs or not all(math.isfinite(v) for v in xs):
        xs = []
        try:
            m, s = float(d.mean), float(d.stddev)
        except (NotImplementedError, RuntimeError, ValueError):
            m, s = math.nan, math.nan
        if math.isfinite(m) and math.isfinite(s) and s > 0:
            xs = [m + c * s for c in (-4.0, -1.0, 0.0, 1.0, 4.0)]
        else:
            loc = float(getattr(d, "loc", 0.0))
            scale = float(getattr(d, "scale", 1.0))
            xs = [loc + c * scale for c in (-10.0, -1.0, 0.0, 1.0, 10.0)]
    return sorted({v for v in xs if lower < v < upper and math.isfinite(v)})


def _support_interval(d: Distribution) -> tuple[float, float]:
    """The interval to integrate a univariate continuous density over (one period for VonMises)."""
    if isinstance(d, VonMises):
        loc = float(d.loc)
        return loc - math.pi, loc + math.pi
    support = d.support
    lower = float(torch.as_tensor(getattr(support, "lower_bound", -math.inf)))
    upper = float(torch.as_tensor(getattr(support, "upper_bound", math.inf)))
    return lower, upper


def _centre_scale(bps: list[float]) -> tuple[float, float]:
    """Median and spread of the breakpoints (quantiles): the affine map of a real support."""
    if len(bps) < 2:
        return 0.0, 1.0
    centre = bps[len(bps) // 2]
    spread = (bps[-1] - bps[0]) / 6.0
    if not (math.isfinite(spread) and spread > 0):
        return 0.0, 1.0
    return centre, spread


def _quadrature_continuous(r: _Resolved) -> Tensor:
    d = r.dist
    lower, upper = _support_interval(d)
    bps = _breakpoints(d, lower, upper)
    centre, scale = _centre_scale(bps) if math.isinf(lower) and math.isinf(upper) else (0.0, 1.0)
    if 1e-3 <= scale <= 1e3 and abs(centre) <= 1e3 * scale:
        centre, scale = 0.0, 1.0  # ordinary scales: the identity map, as it always was
    elif math.ulp(abs(centre)) > 1e-9 * scale:
        raise UnsupportedError(
            f"method='quadrature': the density of {r.cls.__name__} is too narrow for its location to be "
            f"integrated in float64 (spread about {scale:.3g} around {centre:.6g}, where doubles are "
            f"{math.ulp(abs(centre)):.2g} apart); use method='closed_form' where available, or "
            "method='score' / 'hessian' (Monte Carlo)"
        )
    phi, kind = _transform(lower, upper, centre, scale)
    cuts = [_inverse(v, lower, upper, kind, centre, scale) for v in bps]
    inner = sorted({c for c in cuts if math.isfinite(c)}) or [0.0]
    k = r.k
    cache: dict[float, np.ndarray] = {}  # the quads of all entries share their nodes

    def integrand_matrix(u: float) -> np.ndarray:
        hit = cache.get(u)
        if hit is not None:
            return hit
        x, logjac = phi(u)
        if not math.isfinite(x) or x <= lower or x >= upper:
            out = np.zeros((k + 1, k + 1))
        else:
            lp, g, _ = _derivatives(r, torch.tensor(x, dtype=_DTYPE))
            logw = float(lp) + logjac
            if logw < -745.0 or not math.isfinite(float(lp)):
                out = np.zeros((k + 1, k + 1))
            elif logw > 700.0:
                raise UnsupportedError(
                    f"method='quadrature': the density of {r.cls.__name__} is too concentrated "
                    "to integrate at these parameters; use method='score'"
                )
            elif not bool(torch.isfinite(g).all()):
                # autograd can overflow far in a tail (Weibull at x < 1e-100); a weight below
                # e^-230 cannot matter unless the score exceeded e^100 there.
                if logw > -230.0:
                    raise UnsupportedError(
                        f"method='quadrature': the score of {r.cls.__name__} is not finite at "
                        f"x={x:.6g}; use method='score'"
                    )
                out = np.zeros((k + 1, k + 1))
            else:
                gn = np.concatenate([[1.0], g.numpy()])  # index 0: the density itself
                out = math.exp(logw) * np.outer(gn, gn)
        cache[u] = out
        return out

    def piece(m: int, n: int, a: float, b: float, epsabs: float) -> tuple[float, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return integrate.quad(
                lambda u: integrand_matrix(u)[m, n],
                a,
                b,
                epsabs=epsabs,
                epsrel=QUADRATURE_RTOL,
                limit=500,
            )

    edges = [-math.inf, *inner, math.inf]

    def integrate_entry(m: int, n: int, epsabs: float) -> tuple[float, float]:
        val, err = 0.0, 0.0
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            v, e = piece(m, n, a, b, epsabs)
            val, err = val + v, err + e
        return val, err

    mass, _ = integrate_entry(0, 0, 0.0)
    # torch's VonMises normalises with a polynomial approximation of log I0, good to ~1e-8
    if not abs(mass - 1.0) <= (1e-6 if isinstance(d, VonMises) else 1e-9):
        raise UnsupportedError(
            f"method='quadrature': the density of {r.cls.__name__} integrates to {mass:.10f} "
            "in float64 at these parameters (mass beyond the smallest/largest double, e.g. a "
            "concentration near 0); use method='score' or the closed form"
        )
    out = np.zeros((k, k))
    for m in range(k):
        out[m, m], err = integrate_entry(m + 1, m + 1, 0.0)
        if not (err <= _QUAD_FAIL * abs(out[m, m]) or err < 1e-300):
            raise ConvergenceError(
                f"method='quadrature' did not converge for {r.cls.__name__} at these "
                f"parameters (error estimate {err:.2e} on {out[m, m]:.6e}); "
                "use method='score'"
            )
    for m in range(k):
        for n in range(m):
            scale = math.sqrt(abs(out[m, m] * out[n, n]))
            out[m, n], err = integrate_entry(m + 1, n + 1, QUADRATURE_RTOL * scale)
            out[n, m] = out[m, n]
            if not err <= _QUAD_FAIL * scale:
                raise ConvergenceError(
                    f"method='quadrature' did not converge for {r.cls.__name__} at these "
                    f"parameters (error estimate {err:.2e}); use method='score'"
                )
    return torch.from_numpy(out)


def _quadrature(r: _Resolved) -> Tensor:
    d = r.dist
    discrete = bool(getattr(d.support, "is_discrete", False))
    if not discrete and len(d.event_shape) > 0:
        raise UnsupportedError(
            f"method='quadrature' integrates over univariate supports only; "
            f"{r.cls.__name__} is multivariate continuous: use method='closed_form' where "
            "available, or method='score' / 'hessian' (Monte Carlo)"
        )
    infinite = discrete and (
        d.support is constraints.nonnegative_integer
        or d.support is constraints.positive_integer
        or (
            isinstance(d.support, constraints.integer_interval)
            and bool(torch.as_tensor(d.support.upper_bound).isinf().any())
        )
    )
    if discrete and not infinite and not d.has_enumerate_support:
        raise UnsupportedError(
            f"method='quadrature': cannot enumerate the support of {r.cls.__name__}; "
            "use method='score'"
        )
    batch = r.batch_shape
    results = []
    for idx in np.ndindex(*batch) if len(batch) else [()]:
        sub = _select(r, tuple(idx))
        if discrete and not infinite:
            results.append(_enumerate_finite(sub))
        elif discrete:
            results.append(_enumerate_infinite(sub))
        else:
            results.append(_quadrature_continuous(sub))
    out = torch.stack(results).reshape(batch + (r.k, r.k))
    return 0.5 * (out + out.mT)


# --------------------------------------------------------------------------- public API


def _check_n_samples(n_samples: object) -> int:
    return check_int(n_samples, "n_samples (a standard error needs two)", minimum=2)


@overload
def fisher_information(
    dist: Distribution,
    params: str | Sequence[str] | None = None,
    method: Literal["closed_form", "quadrature"] = "closed_form",
    n_samples: None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor: ...


@overload
def fisher_information(
    dist: Distribution,
    params: str | Sequence[str] | None,
    method: Literal["score", "hessian"],
    n_samples: int | None = None,
    generator: torch.Generator | int | None = None,
) -> FisherEstimate: ...


@overload
def fisher_information(
    dist: Distribution,
    params: str | Sequence[str] | None = None,
    *,
    method: Literal["score", "hessian"],
    n_samples: int | None = None,
    generator: torch.Generator | int | None = None,
) -> FisherEstimate: ...


@overload
def fisher_information(
    dist: Distribution,
    params: str | Sequence[str] | None = None,
    method: str = "closed_form",
    n_samples: int | None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor | FisherEstimate: ...


def fisher_information(
    dist: Distribution,
    params: str | Sequence[str] | None = None,
    method: str = "closed_form",
    n_samples: int | None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor | FisherEstimate:
    r"""Fisher information of a distribution, per observation.

    .. math::

        I(\theta) = \mathbb E_\theta\big[s s^\top\big]
        = -\mathbb E_\theta\big[\nabla^2_\theta \log p(X\mid\theta)\big],
        \qquad s = \nabla_\theta \log p(X\mid\theta).

    Parameters
    ----------
    dist : torch.distributions.Distribution
        The model at the parameter value of interest. Batched distributions give batched
        matrices.
    params : str or Sequence of str, optional
        Constructor parameters to differentiate (any subset, any order; others held fixed).
        Default: those the object was built with (:func:`parameter_names`).
        ``total_count`` is always fixed. Of ``probs``/``logits`` and of
        ``covariance_matrix``/``precision_matrix``/``scale_tril`` either member may be named,
        whichever the object was built with. Vector/matrix parameters contribute the
        coordinates described in :func:`coordinate_names`.
    method : str
        One of ``"closed_form"`` (default), ``"quadrature"``, ``"score"``, ``"hessian"``.
        ``closed_form``: the formula from :mod:`fisherbook.stats.families`. ``quadrature``: the exact
        expectation of :math:`s s^\top` by ``scipy.integrate.quad`` (relative tolerance
        :data:`QUADRATURE_RTOL` per entry; continuous univariate families) or by enumeration
        (discrete; infinite supports truncated with tail bound :data:`ENUMERATION_TAIL`);
        multivariate continuous families raise ``ValueError``. ``score`` / ``hessian``:
        Monte-Carlo means of :math:`s s^\top` and :math:`-\nabla^2\log p`.
    n_samples : int, optional
        Number of samples for ``score`` / ``hessian`` (at least 2; default 10 000). Not
        accepted by the exact methods.
    generator : torch.Generator or int, optional
        Randomness for ``score`` / ``hessian``: a generator (one seed is drawn from it) or an
        int seed. The global RNG state is left untouched when one is given.

    Returns
    -------
    torch.Tensor or FisherEstimate
        float64 of shape ``dist.batch_shape + (k, k)`` for the exact methods; a
        :class:`FisherEstimate` (``value``, ``stderr`` of that shape, ``n_samples``) for the
        Monte-Carlo methods.

    Raises
    ------
    InvalidArgumentError
        Unknown method or parameter name, invalid parameter values (e.g. ``scale <= 0``),
        parameters at which the information is infinite (``probs`` of 0 or 1), no closed form
        (the message suggests ``method="quadrature"``), ``n_samples < 2``, parameters that move
        the support (Uniform), ``method="hessian"`` where log p is not twice differentiable.
    ArgumentTypeError
        If ``dist`` is not a distribution.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal, StudentT
    >>> d = Normal(torch.tensor(0.0), torch.tensor(2.0))
    >>> fisher_information(d)
    tensor([[0.2500, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    >>> fisher_information(d, params="scale", method="quadrature")
    tensor([[0.5000]], dtype=torch.float64)
    >>> t = StudentT(torch.tensor(4.0))
    >>> fisher_information(t, params=("loc", "scale"))
    tensor([[0.7143, 0.0000],
            [0.0000, 1.1429]], dtype=torch.float64)
    """
    check_option(method, "method", _METHODS)
    r = resolve(dist, params)
    if method in ("closed_form", "quadrature"):
        if n_samples is not None:
            raise InvalidArgumentError(
                f"n_samples applies to method='score' or 'hessian', not method={method!r}"
            )
        out = _closed_form_resolved(r) if method == "closed_form" else _quadrature(r)
        check_information_finite(out, r.cls.__name__)
        return out
    n = 10_000 if n_samples is None else _check_n_samples(n_samples)
    est = _monte_carlo(r, method, n, generator)
    if not (torch.isfinite(est.value).all() and torch.isfinite(est.stderr).all()):
        raise OffManifoldError(
            f"the Monte-Carlo Fisher information of {r.cls.__name__} is not finite at these "
            "parameter values (e.g. probs of exactly 0 or 1)"
        )
    return est


def _as_theta(theta: object) -> Tensor:
    if not isinstance(theta, Tensor):
        try:
            theta = torch.as_tensor(np.asarray(theta, dtype=float))
        except (TypeError, ValueError):
            raise ArgumentTypeError("theta must be a 1-D tensor of parameter values") from None
    theta = theta.detach().to(_DTYPE)
    if theta.dim() != 1:
        raise ShapeError(f"theta must be a 1-D tensor of parameters, got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise NonFiniteError("theta must be finite")
    return theta


def observed_information(log_lik: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    r"""Observed information :math:`J(\theta) = -\nabla^2_\theta \ell(\theta)`.

    Parameters
    ----------
    log_lik : Callable
        ``log_lik(theta)`` returns the scalar log-likelihood of the data at ``theta``
        (differentiable with torch autograd).
    theta : torch.Tensor
        1-D parameter vector of length ``k`` (converted to float64).

    Returns
    -------
    torch.Tensor
        float64, shape ``(k, k)``, symmetric.

    Raises
    ------
    InvalidArgumentError
        If ``theta`` is not a finite 1-D vector, ``log_lik`` does not return a scalar, or the
        Hessian is not finite.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> x = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    >>> observed_information(lambda th: Normal(th[0], 1.0).log_prob(x).sum(), torch.zeros(1))
    tensor([[3.]], dtype=torch.float64)
    """
    if not callable(log_lik):
        raise ArgumentTypeError("log_lik must be a callable theta -> scalar log-likelihood")
    theta = _as_theta(theta)
    out = log_lik(theta)
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise ShapeError("log_lik must return a scalar tensor (the total log-likelihood)")
    h = torch.autograd.functional.hessian(lambda t: log_lik(t).reshape(()), theta)
    j = -(h + h.mT) / 2
    if not torch.isfinite(j).all():
        raise NonFiniteError("the Hessian of log_lik at theta is not finite")
    return j.to(_DTYPE)


def empirical_fisher(
    log_lik: Callable[[Tensor], Tensor] | Distribution,
    theta: Tensor,
    params: str | Sequence[str] | None = None,
) -> Tensor:
    r"""Empirical Fisher :math:`\frac1N\sum_i \nabla\ell_i \nabla\ell_i^\top` for observed data.

    The average outer product of per-example scores *at the observed data*, not under the
    model; it equals the Fisher information only in expectation at the true parameter and for
    a well-specified model (see Kunstner et al., 2019, for its limitations).

    Parameters
    ----------
    log_lik : Callable or torch.distributions.Distribution
        Either ``log_lik(theta)`` returning the vector of per-example log-likelihoods
        (shape ``(N,)``), or a distribution whose scores are taken at data ``theta``.
    theta : torch.Tensor
        The 1-D parameter vector when ``log_lik`` is a callable; the data ``x`` (shape
        ``(N,) + batch_shape + event_shape``) when it is a distribution.
    params : str or Sequence of str, optional
        Parameters to differentiate, for the distribution form only.

    Returns
    -------
    torch.Tensor
        float64, shape ``(k, k)`` (callable form) or ``batch_shape + (k, k)`` (distribution
        form).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> x = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    >>> empirical_fisher(lambda th: Normal(th[0], 1.0).log_prob(x), torch.zeros(1))
    tensor([[1.]], dtype=torch.float64)
    >>> empirical_fisher(Normal(0.0, 1.0), x, params="loc")
    tensor([[1.]], dtype=torch.float64)
    """
    if isinstance(log_lik, Distribution):
        r = resolve(log_lik, params)
        x = _as_data(theta, "theta (the data x)")
        _check_support(r.dist, x, "theta (the data x)")
        s = score(log_lik, x, params)
        lead = s.dim() - 1 - len(r.batch_shape)
        if lead < 1:
            raise ShapeError("the data must have a leading sample dimension")
        s = s.reshape((-1,) + s.shape[lead:])
        if s.shape[0] == 0:
            raise ShapeError("theta (the data x) must hold at least one observation, got none")
        return torch.einsum("n...i,n...j->...ij", s, s) / s.shape[0]
    if params is not None:
        raise InvalidArgumentError("params applies only when log_lik is a Distribution")
    if not callable(log_lik):
        raise ArgumentTypeError("log_lik must be a callable theta -> per-example log-likelihoods")
    theta = _as_theta(theta)
    out = log_lik(theta)
    if not isinstance(out, Tensor) or out.dim() != 1:
        raise ShapeError("log_lik must return a 1-D tensor of per-example log-likelihoods")
    if out.shape[0] == 0:
        raise ShapeError("log_lik returned no per-example log-likelihoods: the empirical Fisher needs at least one")
    jac = torch.autograd.functional.jacobian(log_lik, theta).to(_DTYPE)  # (N, k)
    if not torch.isfinite(jac).all():
        raise NonFiniteError("per-example gradients of log_lik at theta are not finite")
    return jac.mT @ jac / jac.shape[0]


def reparameterize(fisher: Tensor, jacobian: Tensor) -> Tensor:
    r"""Fisher information in new coordinates: :math:`I_\eta = J^\top I_\theta J`.

    With :math:`\theta = \theta(\eta)` and :math:`J_{ij} = \partial\theta_i/\partial\eta_j`
    the score transforms as :math:`s_\eta = J^\top s_\theta`, hence the rule.

    Parameters
    ----------
    fisher : torch.Tensor
        :math:`I_\theta`, shape ``batch + (k, k)``.
    jacobian : torch.Tensor
        :math:`\partial\theta/\partial\eta`, shape ``batch + (k, m)`` (broadcasting over the
        batch dimensions).

    Returns
    -------
    torch.Tensor
        float64, shape ``batch + (m, m)``.

    Examples
    --------
    Bernoulli: from :math:`p` to the logit :math:`\eta`, :math:`dp/d\eta = p(1-p)`.

    >>> import torch
    >>> p = torch.tensor(0.2, dtype=torch.float64)
    >>> reparameterize(torch.tensor([[1 / (p * (1 - p))]]), torch.tensor([[p * (1 - p)]]))
    tensor([[0.1600]], dtype=torch.float64)
    """
    for name, t in (("fisher", fisher), ("jacobian", jacobian)):
        if not isinstance(t, Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor")
        if t.dim() < 2:
            raise ShapeError(f"{name} must have at least 2 dimensions, got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise NonFiniteError(f"{name} must be finite")
    if fisher.shape[-1] != fisher.shape[-2]:
        raise ShapeError(f"fisher must be square in its last two dims, got {tuple(fisher.shape)}")
    # a Fisher information is symmetric positive semi-definite: refuse one that is not (to
    # round-off), rather than symmetrising it silently
    check_symmetric_psd(fisher.to(_DTYPE), "fisher", rtol=1e-10)
    if jacobian.shape[-2] != fisher.shape[-1]:
        raise ShapeError(
            f"jacobian must have shape (..., {fisher.shape[-1]}, m) to match fisher, got "
            f"{tuple(jacobian.shape)}"
        )
    f = fisher.to(_DTYPE)
    j = jacobian.to(_DTYPE)
    out = j.mT @ f @ j
    return (out + out.mT) / 2


def conditional_fisher(
    model: Callable[[Tensor], Distribution],
    theta: Tensor,
    params: str | Sequence[str] | None = None,
    reduction: str = "sum",
    method: str = "closed_form",
) -> Tensor:
    r"""Expected Fisher information of a conditional model :math:`p(y\mid x_i, \theta)`.

    ``model(theta)`` returns a distribution whose batch indexes the examples
    :math:`i = 1..N`, with parameters :math:`\eta_i(\theta)` (e.g. ``Bernoulli(logits=X @ theta)``).
    The labels are averaged over the model, the inputs held at the data:

    .. math::

        I(\theta) = \sum_i J_i^\top\, I_{\eta}(\eta_i)\, J_i,
        \qquad J_i = \frac{\partial \eta_i}{\partial\theta},

    with :math:`I_\eta` the Fisher information of the output family (the reparameterisation
    rule of :func:`reparameterize` applied per example). For a canonical-link GLM
    (logistic, Poisson regression) it equals the observed information; for other links
    (probit) it does not.

    Parameters
    ----------
    model : Callable
        ``theta -> Distribution`` with batch shape ``(N,)`` (or any batch shape; all batch
        elements are treated as examples).
    theta : torch.Tensor
        1-D parameter vector of length ``k``.
    params : str or Sequence of str, optional
        Output-distribution parameters through which ``theta`` acts; default those the
        distribution was built with.
    reduction : str
        ``"sum"`` (default): total information of the data set; ``"mean"``: per example.
    method : str
        How :math:`I_\eta` is computed: ``"closed_form"`` (default) or ``"quadrature"``
        (see :func:`fisher_information`).

    Returns
    -------
    torch.Tensor
        float64, shape ``(k, k)``.

    Examples
    --------
    Logistic regression: :math:`X^\top \operatorname{diag}(p_i(1-p_i)) X`.

    >>> import torch
    >>> from torch.distributions import Bernoulli
    >>> X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> F = conditional_fisher(lambda b: Bernoulli(logits=X @ b), torch.zeros(2))
    >>> F
    tensor([[0.7500, 0.7500],
            [0.7500, 1.2500]], dtype=torch.float64)
    """
    from ._params import _to_coords

    if not callable(model):
        raise ArgumentTypeError("model must be a callable theta -> torch.distributions.Distribution")
    check_option(reduction, "reduction", ("sum", "mean"))
    check_option(method, "method", ("closed_form", "quadrature"))
    theta = _as_theta(theta)
    d0 = model(theta)
    r = resolve(d0, params)
    fisher = _closed_form_resolved(r) if method == "closed_form" else _quadrature(r)

    def coords(th: Tensor) -> Tensor:
        d = model(th)
        parts = []
        for p in r.params:
            v = getattr(d, p.name)
            if p.constraint is constraints.simplex:
                v = v / v.sum(-1, keepdim=True)
            parts.append(_to_coords(p.constraint, v, len(p.event_shape)))
        out = torch.cat(parts, dim=-1)
        return out.expand(r.batch_shape + out.shape[-1:])

    jac = torch.autograd.functional.jacobian(coords, theta).to(_DTYPE)  # batch + (m, k)
    per = reparameterize(fisher, jac).reshape(-1, theta.numel(), theta.numel())
    out = per.sum(0) if reduction == "sum" else per.mean(0)
    if not torch.isfinite(out).all():
        raise NonFiniteError("the conditional Fisher information is not finite at theta")
    return out
