r"""Simulation: reproducible sampling, Monte-Carlo bias/variance/MSE of estimators, interval coverage.

Chapters 2 and 3. :func:`sample` draws from a ``torch.distributions`` object with a private
generator; :func:`simulate_estimator` and :func:`coverage` draw one ``(reps, n)`` array and apply
the estimator or interval procedure to all replications at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._validate import check_distribution, check_int, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError

__all__ = ["CoverageEstimate", "EstimatorSummary", "coverage", "sample", "simulate_estimator"]

DTYPE = torch.float64


def _tensor(value: Any, name: str) -> Tensor:
    return check_tensor(value, name, dtype=DTYPE)


def _check_dist(dist: Any) -> Distribution:
    if not isinstance(dist, Distribution):
        raise ArgumentTypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
    if dist.batch_shape != torch.Size():
        raise ShapeError(f"dist must have empty batch shape, got {tuple(dist.batch_shape)}")
    return dist


@dataclass(frozen=True)
class EstimatorSummary:
    r"""Monte-Carlo summary of an estimator returned by :func:`simulate_estimator`.

    Every statistic comes with its Monte-Carlo standard error (``*_se``), so a notebook can
    compare it with a bound at a tolerance of a few standard errors. For an estimator with
    ``m`` outputs the fields have shape ``(m,)``; for a scalar estimator they are 0-dim.
    ``estimates`` holds the ``reps`` estimates themselves.
    """

    estimates: Tensor
    target: Tensor
    mean: Tensor
    bias: Tensor
    bias_se: Tensor
    variance: Tensor
    variance_se: Tensor
    mse: Tensor
    mse_se: Tensor
    n: int
    reps: int


def sample(dist: Distribution, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Draw ``dist.sample(shape)`` reproducibly from ``generator``, leaving the global RNG untouched.

    ``torch.distributions`` samples from the global generator only. With a ``generator``, one
    seed is drawn from it and the sample is taken inside :func:`torch.random.fork_rng`, so a
    notebook or test can keep its own reproducible stream. Without one, this is
    ``dist.sample(shape)``.

    Parameters
    ----------
    dist : torch Distribution
        What to sample.
    shape : tuple of int
        Sample shape (prepended to the distribution's batch and event shape).
    generator : torch.Generator, optional
        Source of randomness.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Exponential
    >>> d = Exponential(torch.tensor(1.0))
    >>> a = sample(d, (3,), torch.Generator().manual_seed(0))
    >>> b = sample(d, (3,), torch.Generator().manual_seed(0))
    >>> bool(torch.equal(a, b)), tuple(a.shape)
    (True, (3,))
    """
    check_distribution(dist)
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise ArgumentTypeError(f"shape must be a tuple of integers, got {type(shape).__name__}")
    shape = tuple(check_int(k, "each entry of shape", minimum=0) for k in shape)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    shape = tuple(shape)
    if generator is None:
        return dist.sample(shape)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dist.sample(shape)


def _resolve_target(dist: Distribution, target: Any) -> Tensor:
    if isinstance(target, str):
        if not hasattr(dist, target):
            raise InvalidArgumentError(f"target {target!r} is not a parameter of {type(dist).__name__}")
        return torch.as_tensor(getattr(dist, target), dtype=DTYPE)
    if target is None:
        names = [k for k in dist.arg_constraints if k in dist.__dict__]
        if len(names) != 1:
            raise InvalidArgumentError(
                f"target is required for {type(dist).__name__} (parameters {names}); "
                "pass a parameter name or the true value of what the estimator estimates"
            )
        return torch.as_tensor(getattr(dist, names[0]), dtype=DTYPE)
    return _tensor(target, "target")


def simulate_estimator(
    estimator: Callable[[Tensor], Tensor],
    dist: Distribution,
    n: int,
    reps: int,
    generator: torch.Generator | None = None,
    *,
    target: str | float | Tensor | None = None,
) -> EstimatorSummary:
    r"""Bias, variance and mean-squared error of an estimator, by simulation.

    Draws one ``(reps, n, *event_shape)`` float64 array from ``dist`` and applies
    ``estimator`` to it once (no Python loop over replications): row :math:`r` is a sample
    of size :math:`n` and ``estimator`` must return the ``reps`` estimates :math:`T_r`.
    With :math:`\bar T` the mean and :math:`\theta` the target,

    .. math::

        \widehat{\text{bias}} = \bar T - \theta, \quad
        \widehat{\operatorname{Var}} = \tfrac{1}{R-1}\sum_r (T_r - \bar T)^2, \quad
        \widehat{\text{MSE}} = \tfrac{1}{R}\sum_r (T_r - \theta)^2 .

    Standard errors: :math:`s/\sqrt R` for the bias, the standard deviation of
    :math:`(T_r-\theta)^2` over :math:`\sqrt R` for the MSE, and
    :math:`\sqrt{(\hat\mu_4 - \hat\sigma^4)/R}` for the variance.

    Parameters
    ----------
    estimator : callable
        Maps a ``(reps, n, *event_shape)`` tensor to shape ``(reps,)`` or ``(reps, m)``.
    dist : torch Distribution
        The data distribution, with empty batch shape.
    n : int
        Sample size, ``n >= 1``.
    reps : int
        Number of replications, ``reps >= 2``.
    generator : torch.Generator, optional
        Source of randomness; the global RNG is left untouched when given.
    target : str, float or Tensor, optional
        What the estimator estimates: a parameter name of ``dist`` or a value. Default: the
        single parameter of a one-parameter family.

    Returns
    -------
    EstimatorSummary

    Raises
    ------
    InvalidArgumentError
        If ``n < 1``, ``reps < 2``, ``dist`` is batched, the estimator returns the wrong shape
        or non-finite values, or the target is ambiguous.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> g = torch.Generator().manual_seed(0)
    >>> d = Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    >>> s = simulate_estimator(lambda x: x.mean(-1), d, n=25, reps=20_000, generator=g, target="loc")
    >>> bool(abs(s.variance - 4 / 25) < 4 * s.variance_se)  # Var(mean) = sigma^2 / n
    True
    """
    if not callable(estimator):
        raise ArgumentTypeError(f"estimator must be a callable (reps, n) -> (reps,), got {type(estimator).__name__}")
    n = check_int(n, "n")
    reps = check_int(reps, "reps", minimum=2)
    _check_dist(dist)
    theta = _resolve_target(dist, target)
    x = sample(dist, (reps, n), generator).to(DTYPE)
    est = estimator(x)
    if not isinstance(est, Tensor):
        raise ArgumentTypeError(f"estimator must return a tensor, got {type(est).__name__}")
    est = est.to(DTYPE)
    if est.dim() == 0 or est.shape[0] != reps or est.dim() > 2:
        raise ShapeError(
            f"estimator must return shape (reps,) or (reps, m) = ({reps}, ...), got {tuple(est.shape)}"
        )
    if not torch.isfinite(est).all():
        bad = int((~torch.isfinite(est)).any(dim=tuple(range(1, est.dim()))).sum()) if est.dim() > 1 else int(
            (~torch.isfinite(est)).sum()
        )
        raise NonFiniteError(f"estimator returned non-finite values in {bad} of {reps} replications")
    if est.dim() == 2 and theta.numel() not in (1, est.shape[1]):
        raise ShapeError(f"target has {theta.numel()} entries, estimator returns {est.shape[1]}")
    mean = est.mean(0)
    centred = est - mean
    var = centred.pow(2).sum(0) / (reps - 1)
    m4 = centred.pow(4).mean(0)
    var_se = ((m4 - var**2).clamp_min(0) / reps).sqrt()
    err = est - theta
    sq = err.pow(2)
    return EstimatorSummary(
        estimates=est,
        target=theta,
        mean=mean,
        bias=mean - theta,
        bias_se=(var / reps).sqrt(),
        variance=var,
        variance_se=var_se,
        mse=sq.mean(0),
        mse_se=sq.std(0) / math.sqrt(reps),
        n=n,
        reps=reps,
    )



@dataclass(frozen=True)
class CoverageEstimate:
    """Monte-Carlo coverage of an interval procedure, from :func:`coverage`.

    ``coverage`` is the fraction of intervals containing the target, ``stderr`` its binomial
    standard error; ``below`` / ``above`` are the fractions missing on each side (the whole
    interval below / above the target); ``mean_length`` is the average length.
    """

    coverage: float
    stderr: float
    below: float
    above: float
    mean_length: float
    reps: int


def coverage(
    interval: Callable[[Tensor], tuple[Tensor, Tensor]],
    dist: Distribution,
    n: int,
    reps: int,
    generator: torch.Generator | None = None,
    *,
    target: str | float | Tensor | None = None,
) -> CoverageEstimate:
    r"""Monte-Carlo coverage :math:`P_\theta(\theta \in C(X))` of an interval procedure.

    Draws a ``(reps, n)`` sample array from ``dist`` (one draw, no loop) and calls
    ``interval`` once on it; the estimate is the fraction of the ``reps`` intervals containing
    the target, with standard error :math:`\sqrt{\hat c(1-\hat c)/R}`.

    Parameters
    ----------
    interval : callable
        Maps a ``(reps, n)`` tensor to ``(lower, upper)``, each of shape ``(reps,)``.
    dist : torch Distribution
        Data distribution with empty batch shape.
    n : int
        Sample size, ``n >= 1``.
    reps : int
        Replications, ``reps >= 2``.
    generator : torch.Generator, optional
        Source of randomness.
    target : str, float or Tensor, optional
        The true value (or parameter name); default the single parameter of ``dist``.

    Returns
    -------
    CoverageEstimate

    Raises
    ------
    InvalidArgumentError
        If the interval function returns the wrong shapes or ``lower > upper``.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> g = torch.Generator().manual_seed(1)
    >>> d = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    >>> ci = lambda x: (x.mean(-1) - 1.96 / x.shape[-1] ** 0.5, x.mean(-1) + 1.96 / x.shape[-1] ** 0.5)
    >>> c = coverage(ci, d, n=10, reps=20_000, generator=g, target="loc")
    >>> abs(c.coverage - 0.95) < 4 * c.stderr
    True
    """
    if not callable(interval):
        raise ArgumentTypeError(
            f"interval must be a callable (reps, n) -> (lower, upper), got "
            f"{type(interval).__name__}"
        )
    n = check_int(n, "n")
    reps = check_int(reps, "reps", minimum=2)
    _check_dist(dist)
    theta = _resolve_target(dist, target)
    x = sample(dist, (reps, n), generator).to(DTYPE)
    lo, hi = interval(x)
    lo, hi = torch.as_tensor(lo, dtype=DTYPE), torch.as_tensor(hi, dtype=DTYPE)
    if lo.shape != (reps,) or hi.shape != (reps,):
        raise ShapeError(
            f"interval must return two tensors of shape ({reps},), got {tuple(lo.shape)}, "
            f"{tuple(hi.shape)}"
        )
    if bool((lo > hi).any()) or bool(torch.isnan(lo).any() | torch.isnan(hi).any()):
        raise InvalidArgumentError(
            "interval returned NaN or lower > upper: it must return lower <= upper for every "
            "replication"
        )
    inside = (lo <= theta) & (theta <= hi)
    c = float(inside.double().mean())
    return CoverageEstimate(
        coverage=c,
        stderr=math.sqrt(max(c * (1 - c), 1e-300) / reps),
        below=float((hi < theta).double().mean()),
        above=float((lo > theta).double().mean()),
        mean_length=float((hi - lo).mean()),
        reps=reps,
    )
