r"""Cramér–Rao bounds, maximum likelihood, likelihood-based intervals and coverage.

The tools of chapters 2 and 3. Everything here works from tensors and from
``torch.distributions`` log-densities with autograd in float64:

* :func:`crlb` — the Cramér–Rao bound for a parameter vector, for a function
  :math:`g(\theta)`, for :math:`n` observations, and for a biased estimator;
  :func:`van_trees` — the Bayesian (van Trees) bound for a prior.
* :func:`simulate_estimator` — bias, variance and mean-squared error of an estimator by
  simulation, vectorised over a ``reps × n`` sample array.
* :func:`mle` — maximum likelihood by damped Newton steps, batched over independent data sets,
  with a convergence check; :class:`MLEResult` carries observed, expected and sandwich
  covariances.
* :func:`wald_interval`, :func:`score_interval`, :func:`lr_interval` — intervals for a scalar
  parameter; :func:`coverage` — their Monte-Carlo coverage.
* :func:`sandwich_covariance` — :math:`A^{-1} B A^{-1}` for a possibly misspecified model.

Exact coverage of Binomial and Poisson intervals lives in :mod:`fisherbook.stats.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import integrate
from torch import Tensor
from ..errors import ConvergenceError
from torch.distributions import Distribution, constraints, transform_to

__all__ = [
    "CoverageEstimate",
    "EstimatorSummary",
    "MLEResult",
    "coverage",
    "crlb",
    "lr_interval",
    "mle",
    "sample",
    "sandwich_covariance",
    "score_interval",
    "simulate_estimator",
    "van_trees",
    "wald_interval",
]

DTYPE = torch.float64




# --------------------------------------------------------------------------- helpers


def _tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        t = value.to(DTYPE)
    elif isinstance(value, (int, float, np.floating, np.integer, list, tuple, np.ndarray)):
        t = torch.as_tensor(value, dtype=DTYPE)
    else:
        raise TypeError(f"{name} must be a tensor or a number, got {type(value).__name__}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def _check_n(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n}")
    return int(n)


def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _z(level: float) -> float:
    return float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=DTYPE)))


def _chol_inverse(matrix: Tensor, name: str) -> Tensor:
    """Inverse of a batch of symmetric positive-definite matrices; ValueError if singular."""
    sym = 0.5 * (matrix + matrix.transpose(-1, -2))
    chol, info = torch.linalg.cholesky_ex(sym)
    if bool((info != 0).any()):
        raise ValueError(
            f"{name} is singular or not positive definite (Cholesky failed); "
            "the parameter is not identifiable from this information"
        )
    return torch.cholesky_inverse(chol)


# --------------------------------------------------------------------------- bounds


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
    ValueError
        If ``n < 1``, the information is singular, or shapes do not match.

    Examples
    --------
    >>> import torch
    >>> crlb(torch.tensor([[0.25]]), n=100)
    tensor([[0.0400]], dtype=torch.float64)
    >>> crlb(1.0, n=10, bias=-0.1, bias_grad=-0.1)  # (1 - 0.1)**2 / 10 + 0.1**2
    tensor(0.0910, dtype=torch.float64)
    """
    n = _check_n(n)
    F = _tensor(fisher, "fisher")
    scalar = F.dim() == 0
    if scalar:
        F = F.reshape(1, 1)
    if F.dim() < 2 or F.shape[-1] != F.shape[-2]:
        raise ValueError(f"fisher must be a scalar or have shape (..., k, k), got {tuple(F.shape)}")
    k = F.shape[-1]
    inv = _chol_inverse(n * F, "fisher")
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
            raise ValueError(f"grad_g must have last dimension k={k}, got shape {tuple(J.shape)}")
    if bias_grad is not None:
        D = _tensor(bias_grad, "bias_grad")
        if D.dim() > 0:
            scalar = False
        D = D.reshape(1, -1) if D.dim() <= 1 else D
        try:
            J = J + D
        except RuntimeError as err:
            raise ValueError(f"bias_grad shape {tuple(D.shape)} does not match grad_g {tuple(J.shape)}") from err
    out = J @ inv @ J.transpose(-1, -2)
    if bias is not None:
        b = _tensor(bias, "bias")
        if b.dim() > 0:
            scalar = False
        b = b.reshape(-1)
        if b.shape[-1] not in (1, out.shape[-1]):
            raise ValueError(f"bias must have {out.shape[-1]} entries, got {b.shape[-1]}")
        b = b.expand(out.shape[-1])
        out = out + torch.outer(b, b)
    return out.reshape(()) if scalar else out


def _support_limits(dist: Distribution) -> tuple[float, float]:
    support = dist.support
    if support is constraints.real:
        return -math.inf, math.inf
    if support is constraints.positive or support is constraints.nonnegative:
        return 0.0, math.inf
    if support is constraints.unit_interval:
        return 0.0, 1.0
    if isinstance(support, constraints.interval):
        return float(support.lower_bound), float(support.upper_bound)
    raise ValueError(f"prior must be a continuous scalar distribution on an interval, got support {support}")


def _prior_expectation(prior: Distribution, fn: Callable[[float], float]) -> float:
    lo, hi = _support_limits(prior)

    def integrand(t: float) -> float:
        x = torch.tensor(t, dtype=DTYPE)
        return math.exp(float(prior.log_prob(x))) * fn(t)

    value, err = integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-10)
    return value


def van_trees(
    fisher: Tensor | float | Callable[[Tensor], Tensor],
    prior: Tensor | float | Distribution,
    n: int = 1,
) -> Tensor:
    r"""Van Trees (Bayesian Cramér–Rao) bound on the Bayes risk of any estimator.

    For a prior :math:`\pi` that vanishes at the ends of its support, every estimator
    :math:`\hat\theta` of a scalar :math:`\theta` based on :math:`n` i.i.d. observations satisfies
    (Gill & Levit 1995)

    .. math::

        \operatorname{E}_\pi \operatorname{E}_\theta (\hat\theta - \theta)^2
        \ge \frac{1}{n\,\operatorname{E}_\pi[I(\theta)] + I(\pi)},
        \qquad I(\pi) = \int \frac{\pi'(\theta)^2}{\pi(\theta)}\, d\theta,

    and in :math:`k` dimensions the matrix version
    :math:`(n\operatorname{E}_\pi[I] + I(\pi))^{-1}`. No unbiasedness is required.

    Parameters
    ----------
    fisher : Tensor, float or callable
        Either the prior-averaged per-observation information
        :math:`\operatorname{E}_\pi[I(\theta)]` (scalar or ``(k, k)``), or a function mapping a
        0-dim float64 tensor :math:`\theta` to the scalar per-observation information
        :math:`I(\theta)`, which is then averaged against ``prior`` by quadrature.
    prior : Tensor, float or torch Distribution
        Either the prior's information :math:`I(\pi)` (scalar or ``(k, k)``) or a scalar
        continuous ``torch.distributions`` prior, whose information is found by quadrature.
    n : int
        Number of observations, ``n >= 1``.

    Returns
    -------
    Tensor
        The bound: 0-dim for a scalar parameter, else ``(k, k)``.

    Raises
    ------
    ValueError
        If ``n < 1`` or the total information is not positive definite.
    TypeError
        If ``fisher`` is a callable but ``prior`` is not a distribution.

    Examples
    --------
    Normal data with variance 4 and a ``N(0, 1)`` prior on the mean, ten observations:

    >>> import torch
    >>> from torch.distributions import Normal
    >>> prior = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    >>> van_trees(0.25, prior, n=10)  # 1 / (10/4 + 1)
    tensor(0.2857, dtype=torch.float64)
    """
    n = _check_n(n)
    if callable(fisher) and not isinstance(fisher, Tensor):
        if not isinstance(prior, Distribution):
            raise TypeError("prior must be a torch Distribution when fisher is a callable")
        EI = torch.tensor(
            _prior_expectation(prior, lambda t: float(fisher(torch.tensor(t, dtype=DTYPE)))), dtype=DTYPE
        )
    else:
        EI = _tensor(fisher, "fisher")
    if isinstance(prior, Distribution):
        if prior.batch_shape != torch.Size() or prior.event_shape != torch.Size():
            raise ValueError("prior must be a scalar distribution (empty batch and event shape)")

        def dlog2(t: float) -> float:
            x = torch.tensor(t, dtype=DTYPE, requires_grad=True)
            (g,) = torch.autograd.grad(prior.log_prob(x), x)
            return float(g) ** 2

        Ipi = torch.tensor(_prior_expectation(prior, dlog2), dtype=DTYPE)
    else:
        Ipi = _tensor(prior, "prior")
    total = n * EI + Ipi
    if total.dim() == 0:
        if not total > 0:
            raise ValueError(f"total information n*E[I] + I(prior) must be > 0, got {float(total)}")
        return 1.0 / total
    return _chol_inverse(total, "n*E[I] + I(prior)")


# --------------------------------------------------------------------------- simulation


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
    if generator is None:
        return dist.sample(shape)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dist.sample(shape)


def _resolve_target(dist: Distribution, target: Any) -> Tensor:
    if isinstance(target, str):
        if not hasattr(dist, target):
            raise ValueError(f"target {target!r} is not a parameter of {type(dist).__name__}")
        return torch.as_tensor(getattr(dist, target), dtype=DTYPE)
    if target is None:
        names = [k for k in dist.arg_constraints if k in dist.__dict__]
        if len(names) != 1:
            raise ValueError(
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
    ValueError
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
    n = _check_n(n)
    reps = _check_n(reps, "reps")
    if reps < 2:
        raise ValueError(f"reps must be an integer >= 2, got {reps}")
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a torch Distribution, got {type(dist).__name__}")
    if dist.batch_shape != torch.Size():
        raise ValueError(f"dist must have empty batch shape, got {tuple(dist.batch_shape)}")
    theta = _resolve_target(dist, target)
    x = sample(dist, (reps, n), generator).to(DTYPE)
    est = estimator(x)
    if not isinstance(est, Tensor):
        raise TypeError(f"estimator must return a tensor, got {type(est).__name__}")
    est = est.to(DTYPE)
    if est.dim() == 0 or est.shape[0] != reps or est.dim() > 2:
        raise ValueError(
            f"estimator must return shape (reps,) or (reps, m) = ({reps}, ...), got {tuple(est.shape)}"
        )
    if not torch.isfinite(est).all():
        bad = int((~torch.isfinite(est)).any(dim=tuple(range(1, est.dim()))).sum()) if est.dim() > 1 else int(
            (~torch.isfinite(est)).sum()
        )
        raise ValueError(f"estimator returned non-finite values in {bad} of {reps} replications")
    if est.dim() == 2 and theta.numel() not in (1, est.shape[1]):
        raise ValueError(f"target has {theta.numel()} entries, estimator returns {est.shape[1]}")
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


# --------------------------------------------------------------------------- maximum likelihood

Family = type[Distribution] | Callable[..., Distribution]


def _is_dist_class(family: Any) -> bool:
    return isinstance(family, type) and issubclass(family, Distribution)


def _constraint_of(family: Any, name: str, given: Mapping[str, Any] | None) -> Any:
    if given is not None and name in given:
        return given[name]
    if _is_dist_class(family):
        table = family.arg_constraints
        if not isinstance(table, Mapping):  # a property: constraints depend on other parameters
            raise ValueError(
                f"the constraint of {name!r} in {family.__name__} depends on other parameters; "
                "pass a callable family with explicit constraints instead"
            )
        if name not in table:
            raise ValueError(f"{name!r} is not a parameter of {family.__name__}")
        return table[name]
    return constraints.real


@dataclass
class _Model:
    family: Any
    names: tuple[str, ...]
    fixed: dict[str, Any]
    x: Tensor
    transforms: tuple[Any, ...]

    def dist(self, values: list[Tensor], validate: bool = False) -> Distribution:
        kw = dict(self.fixed)
        for name, v in zip(self.names, values):
            kw[name] = v
        if _is_dist_class(self.family):
            return self.family(**kw, validate_args=validate)
        return self.family(**kw)

    def logp(self, values: list[Tensor], expand: bool = False, validate: bool = False) -> Tensor:
        """Per-observation log-densities, shape ``(*batch, n)``."""
        if expand:
            vals = values
        else:
            vals = [v.unsqueeze(-1) for v in values]
        return self.dist(vals, validate).log_prob(self.x)

    def loglik(self, values: list[Tensor]) -> Tensor:
        return self.logp(values).sum(-1)


def _grad_hess(fn: Callable[[list[Tensor]], Tensor], values: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Value, gradient ``(*batch, k)`` and Hessian ``(*batch, k, k)`` of a batch-separable ``fn``."""
    leaves = [v.detach().clone().requires_grad_(True) for v in values]
    with torch.enable_grad():
        val = fn(leaves)
        grads = torch.autograd.grad(val.sum(), leaves, create_graph=True)
        rows = []
        for gj in grads:
            if not gj.requires_grad:
                rows.append(torch.zeros(*gj.shape, len(leaves), dtype=DTYPE))
                continue
            row = torch.autograd.grad(gj.sum(), leaves, retain_graph=True, allow_unused=True)
            rows.append(
                torch.stack([r if r is not None else torch.zeros_like(gj) for r in row], dim=-1)
            )
    g = torch.stack([gj.detach() for gj in grads], dim=-1)
    H = torch.stack(rows, dim=-2).detach()
    return val.detach(), g, 0.5 * (H + H.transpose(-1, -2))


@dataclass
class MLEResult:
    r"""Result of :func:`mle`: estimates, log-likelihood and information at the maximum.

    ``theta`` stacks the estimated parameters in the order of ``names`` (shape
    ``(*batch, k)``); ``params`` maps each name to its ``(*batch)`` estimate.
    ``observed_information`` is the total observed information
    :math:`J(\hat\theta) = -\nabla^2 \ell(\hat\theta)` over the ``n`` observations.
    """

    names: tuple[str, ...]
    params: dict[str, Tensor]
    theta: Tensor
    log_likelihood: Tensor
    observed_information: Tensor
    n: int
    n_iter: int
    converged: Tensor
    _model: _Model = field(repr=False)

    def scores(self) -> Tensor:
        r"""Per-observation scores :math:`\nabla_\theta \log p(x_i; \hat\theta)`, shape ``(*batch, n, k)``."""
        n = self.n
        leaves = [
            v.unsqueeze(-1).expand(*v.shape, n).clone().requires_grad_(True) for v in self.params.values()
        ]
        with torch.enable_grad():
            lp = self._model.logp(leaves, expand=True)
            grads = torch.autograd.grad(lp.sum(), leaves, allow_unused=True)
        return torch.stack([g if g is not None else torch.zeros_like(leaves[0]) for g in grads], dim=-1).detach()

    def expected_information(self) -> Tensor:
        r"""Total expected information :math:`n I(\hat\theta)` (i.i.d. families given as a class).

        Uses :func:`~fisherbook.stats.estimators.fisher_information` in closed form for the estimated parameters
        with the fixed ones held at their values.

        Raises
        ------
        TypeError
            If the model was given as a callable (the expected information of a regression
            model is not a function of the family alone).
        """
        if not _is_dist_class(self._model.family):
            raise TypeError("expected_information needs a torch.distributions class as family")
        from .estimators import fisher_information  # the core API; imported late to keep modules independent

        d = self._model.dist([v for v in self.params.values()], validate=False)
        info = fisher_information(d, params=self.names)
        return self.n * info.to(DTYPE)

    def covariance(self, kind: str = "observed") -> Tensor:
        r"""Estimated covariance of :math:`\hat\theta`, shape ``(*batch, k, k)``.

        ``kind="observed"`` gives :math:`J(\hat\theta)^{-1}`, ``"expected"`` gives
        :math:`(n I(\hat\theta))^{-1}` and ``"sandwich"`` gives :math:`J^{-1} B J^{-1}` with
        :math:`B = \sum_i s_i s_i^\top` (see :func:`sandwich_covariance`).
        """
        if kind == "observed":
            return _chol_inverse(self.observed_information, "observed information")
        if kind == "expected":
            return _chol_inverse(self.expected_information(), "expected information")
        if kind == "sandwich":
            return sandwich_covariance(self.scores(), self.observed_information)
        raise ValueError(f"kind must be 'observed', 'expected' or 'sandwich', got {kind!r}")

    def standard_errors(self, kind: str = "observed") -> Tensor:
        """Square roots of the diagonal of :meth:`covariance`, shape ``(*batch, k)``."""
        return self.covariance(kind).diagonal(dim1=-2, dim2=-1).sqrt()


def _prepare(
    family: Any, x: Any, names: tuple[str, ...], fixed: Mapping[str, Any] | None, constraints_: Mapping[str, Any] | None
) -> _Model:
    if not (_is_dist_class(family) or callable(family)):
        raise TypeError(f"family must be a torch.distributions class or a callable, got {type(family).__name__}")
    xt = torch.as_tensor(x, dtype=DTYPE) if not isinstance(x, Tensor) else x.to(DTYPE)
    if xt.dim() < 1 or xt.shape[-1] < 1:
        raise ValueError(f"x must have shape (*batch, n) with n >= 1, got {tuple(xt.shape)}")
    fixed_t = {k: (v.to(DTYPE) if isinstance(v, Tensor) and v.is_floating_point() else v) for k, v in (fixed or {}).items()}
    transforms = []
    for name in names:
        c = _constraint_of(family, name, constraints_)
        try:
            transforms.append(transform_to(c))
        except NotImplementedError as err:
            raise ValueError(f"parameter {name!r} has constraint {c} with no unconstrained transform") from err
    return _Model(family, names, fixed_t, xt, tuple(transforms))


def mle(
    family: Family,
    x: Tensor,
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
    tol: float = 1e-14,
    max_iter: int = 200,
    strict: bool = True,
) -> MLEResult:
    r"""Maximum-likelihood estimate for i.i.d. data (or a regression), batched over data sets.

    Maximises :math:`\ell(\theta) = \sum_{i=1}^n \log p(x_i; \theta)` by Newton steps in
    unconstrained coordinates :math:`u` (``torch.distributions.transform_to`` of each
    parameter's constraint), damped Levenberg–Marquardt style: the step solves
    :math:`(-\nabla^2_u \ell + \lambda I) \delta = \nabla_u \ell`, and a step that lowers
    :math:`\ell` is rejected and retried with a larger :math:`\lambda`. A fit has converged
    when :math:`-\nabla_u^2\ell` is positive definite and the Newton decrement
    :math:`\nabla\ell^\top(-\nabla^2\ell)^{-1}\nabla\ell` is below ``tol``.

    Every leading axis of ``x`` is a separate data set, fitted independently and in parallel;
    the last axis indexes the ``n`` observations.

    Parameters
    ----------
    family : torch.distributions class or callable
        A class such as ``Gamma``, called as ``family(**params, **fixed)``; or a callable
        returning a distribution (e.g. a regression,
        ``lambda b0, b1: Poisson(torch.exp(b0 + b1 * z))``). Each parameter arrives as a
        tensor broadcastable to ``x`` (shape ``(*batch, 1)`` or ``(*batch, n)``); the family
        must act elementwise, observation :math:`i` depending only on entry :math:`i`.
    x : Tensor
        Data, shape ``(*batch, n)``; scalar observations.
    init : mapping
        Starting value of each estimated parameter (number or ``(*batch)`` tensor), inside its
        constraint. The names and their order define ``theta``.
    fixed : mapping, optional
        Parameters held fixed (e.g. ``{"total_count": 10}``, ``{"scale": 1.0}``).
    constraints : mapping, optional
        Constraint per parameter for a callable family (default ``constraints.real``).
    tol : float
        Newton-decrement tolerance (a log-likelihood gap of about ``tol / 2``).
    max_iter : int
        Maximum number of Newton steps.
    strict : bool
        If True, raise :class:`~fisherbook.errors.ConvergenceError` when any fit fails to converge; if False
        return and flag them in ``converged``.

    Returns
    -------
    MLEResult

    Raises
    ------
    ValueError
        If ``init`` is empty, outside a constraint, or gives a non-finite log-likelihood
        (data outside the support).
    ConvergenceError
        If a fit does not converge within ``max_iter`` steps (for example when the maximum is
        on the boundary, as for a Binomial with no successes) and ``strict`` is True.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Exponential
    >>> x = torch.tensor([0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    >>> fit = mle(Exponential, x, init={"rate": 1.0})
    >>> round(float(fit.params["rate"]), 6), round(4 / float(x.sum()), 6)  # n / sum(x)
    (0.666667, 0.666667)
    >>> round(float(fit.observed_information[0, 0]), 4)  # n / rate^2
    9.0
    """
    if not isinstance(init, Mapping) or len(init) == 0:
        raise ValueError("init must be a non-empty mapping from parameter name to starting value")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    max_iter = _check_n(max_iter, "max_iter")
    names = tuple(init)
    model = _prepare(family, x, names, fixed, constraints)
    batch = model.x.shape[:-1]
    n = model.x.shape[-1]
    theta0 = []
    for name, tr in zip(names, model.transforms):
        v = torch.as_tensor(init[name], dtype=DTYPE).expand(batch).clone()
        if not bool(tr.codomain.check(v).all()):
            raise ValueError(f"init[{name!r}] = {v} is outside the parameter's constraint {tr.codomain}")
        theta0.append(v)
    # validate the data against the support once, with validation switched on
    try:
        lp0 = model.logp(theta0, validate=True)
    except ValueError as err:
        raise ValueError(f"x is outside the support of the family at init: {err}") from err
    if not torch.isfinite(lp0).all():
        raise ValueError("init gives a non-finite log-likelihood; check x against the family's support")
    u = [tr.inv(v) for tr, v in zip(model.transforms, theta0)]

    def f_u(us: list[Tensor]) -> Tensor:
        return model.loglik([tr(ui) for tr, ui in zip(model.transforms, us)])

    k = len(names)
    eye = torch.eye(k, dtype=DTYPE)
    lam = torch.zeros(batch, dtype=DTYPE)
    done = torch.zeros(batch, dtype=torch.bool)
    val, g, H = _grad_hess(f_u, u)
    it = 0
    for it in range(1, max_iter + 1):
        A = -H
        eig_min = torch.linalg.eigvalsh(A)[..., 0]
        pd = eig_min > 1e-12 * A.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
        decrement = torch.where(
            pd, (g.unsqueeze(-2) @ torch.linalg.solve(torch.where(pd[..., None, None], A, eye), g.unsqueeze(-1))).reshape(batch), torch.full(batch, math.inf, dtype=DTYPE)
        )
        if bool(done.all()):
            break
        # a fit inside the tolerance takes one last pure Newton step (quadratic convergence
        # makes its error negligible) and is then frozen
        newly = pd & (decrement < tol) & ~done
        shift = (lam + (-eig_min).clamp_min(0) * 1.01 + torch.where(pd, 0.0, 1e-6)).to(DTYPE)
        shift = torch.where(newly, 0.0, shift)
        step = torch.linalg.solve(A + shift[..., None, None] * eye, g.unsqueeze(-1)).squeeze(-1)
        norm = step.norm(dim=-1, keepdim=True)  # guard against overflow only; the damping does the rest
        step = torch.where(norm > 1e6, step * 1e6 / norm, step)
        step = torch.where(done.unsqueeze(-1), 0.0, step)
        u_new = [ui + step[..., j] for j, ui in enumerate(u)]
        with torch.no_grad():
            val_new = f_u(u_new)
        ok = torch.isfinite(val_new) & ~done & (newly | (val_new >= val - 1e-12 * val.abs().clamp_min(1.0)))
        done = done | newly
        u = [torch.where(ok, un, ui) for un, ui in zip(u_new, u)]
        lam = torch.where(ok, lam / 10, torch.where(lam > 0, lam * 10, 1e-3 * A.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)))
        val, g, H = _grad_hess(f_u, u)
    converged = done
    if strict and not bool(converged.all()):
        raise ConvergenceError(
            f"mle did not converge for {int((~converged).sum())} of {converged.numel()} data set(s) "
            f"in max_iter={max_iter} steps; the maximum may be on the boundary of the parameter space "
            "or the likelihood may be flat (try other init, a larger max_iter, or strict=False)"
        )
    theta = [tr(ui).detach() for tr, ui in zip(model.transforms, u)]
    ll, _, Hth = _grad_hess(model.loglik, theta)
    return MLEResult(
        names=names,
        params=dict(zip(names, theta)),
        theta=torch.stack(theta, dim=-1),
        log_likelihood=ll,
        observed_information=-Hth,
        n=n,
        n_iter=it,
        converged=converged,
        _model=model,
    )


def sandwich_covariance(scores: Tensor, information: Tensor) -> Tensor:
    r"""Sandwich (robust, Huber–White) covariance :math:`A^{-1} B A^{-1}` of an M-estimator.

    With per-observation scores :math:`s_i = \nabla_\theta \log p(x_i;\hat\theta)` and the total
    negative Hessian :math:`A = -\sum_i \nabla^2_\theta \log p(x_i; \hat\theta)`,

    .. math::

        \widehat{\operatorname{Cov}}(\hat\theta) = A^{-1} B A^{-1},\qquad B = \sum_{i=1}^n s_i s_i^\top .

    When the model is correct :math:`B \approx A` and this reduces to :math:`A^{-1}`; when it is
    misspecified only the sandwich stays consistent (White 1980). This is the ``HC0``
    covariance of statsmodels.

    Parameters
    ----------
    scores : Tensor
        Shape ``(..., n, k)``.
    information : Tensor
        Total observed information :math:`A`, shape ``(..., k, k)``, positive definite.

    Returns
    -------
    Tensor
        Shape ``(..., k, k)``.

    Raises
    ------
    ValueError
        If shapes do not match or ``information`` is singular.

    Examples
    --------
    Poisson mean fitted to counts: :math:`A = n/\bar x`, and the sandwich is the
    sample variance over :math:`n`:

    >>> import torch
    >>> x = torch.tensor([0.0, 1.0, 1.0, 5.0], dtype=torch.float64)
    >>> lam = x.mean()
    >>> s = (x / lam - 1).unsqueeze(-1)
    >>> round(sandwich_covariance(s, torch.tensor([[4 / lam]])).item(), 6), round(float(((x - lam) ** 2).mean() / 4), 6)
    (0.921875, 0.921875)
    """
    S = _tensor(scores, "scores")
    A = _tensor(information, "information")
    if S.dim() < 2 or A.dim() < 2 or A.shape[-1] != A.shape[-2] or S.shape[-1] != A.shape[-1]:
        raise ValueError(
            f"scores must be (..., n, k) and information (..., k, k) with the same k; "
            f"got {tuple(S.shape)} and {tuple(A.shape)}"
        )
    Ainv = _chol_inverse(A, "information")
    B = S.transpose(-1, -2) @ S
    return Ainv @ B @ Ainv


# --------------------------------------------------------------------------- intervals


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
        A fit from :func:`mle`.
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
        raise TypeError(f"result must be an MLEResult, got {type(result).__name__}")
    level = _check_level(level)
    if param is None:
        if len(result.names) != 1:
            raise ValueError(f"param is required: the fit estimated {result.names}")
        param = result.names[0]
    if param not in result.names:
        raise ValueError(f"param must be one of {result.names}, got {param!r}")
    j = result.names.index(param)
    se = result.standard_errors(information)[..., j]
    est = result.theta[..., j]
    z = _z(level)
    return est - z * se, est + z * se


def _fit_one(
    family: Any, x: Any, param: str, fixed: Mapping[str, Any] | None, init: Any, constraints_: Mapping[str, Any] | None = None
) -> MLEResult:
    return mle(family, x, {param: init}, fixed=fixed, constraints=constraints_)


def _invert(
    stat: Callable[[Tensor], Tensor], fit: MLEResult, crit: float, n_bisect: int = 60
) -> tuple[Tensor, Tensor]:
    """Both ends of ``{theta : stat(theta) <= crit}`` around the MLE, by outward search and bisection.

    Works in the unconstrained coordinate of the parameter; an end that is never crossed is the
    edge of the parameter space.
    """
    tr = fit._model.transforms[0]
    theta_hat = fit.theta[..., 0]
    u0 = tr.inv(theta_hat)
    # scale of the search: standard error in u from the observed information in u
    _, _, Hu = _grad_hess(lambda us: fit._model.loglik([tr(us[0])]), [u0])
    se_u = (1.0 / (-Hu[..., 0, 0]).clamp_min(1e-300)).sqrt().clamp(1e-6, 1e3)
    ends = []
    for sign in (-1.0, 1.0):
        inner = torch.zeros_like(u0)
        outer = torch.full_like(u0, math.inf)
        delta = se_u.clone()
        active = torch.ones_like(u0, dtype=torch.bool)
        for _ in range(80):
            with torch.no_grad():
                s = stat(tr(u0 + sign * delta))
            crossed = active & ~(s <= crit)  # NaN counts as crossed (outside the model)
            outer = torch.where(crossed, delta, outer)
            inner = torch.where(active & ~crossed, delta, inner)
            active = active & ~crossed
            if not bool(active.any()):
                break
            delta = torch.where(active, delta * 2, delta)
        found = torch.isfinite(outer)
        lo = inner.clone()
        hi = torch.where(found, outer, inner + 1.0)
        for _ in range(n_bisect):
            mid = 0.5 * (lo + hi)
            with torch.no_grad():
                s = stat(tr(u0 + sign * mid))
            below = s <= crit
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        end = tr(u0 + sign * 0.5 * (lo + hi))
        edge = tr(torch.full_like(u0, sign * math.inf))
        ends.append(torch.where(found, end, edge))
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
    level = _check_level(level)
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

    crit = _z(level) ** 2
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
        As in :func:`mle`.
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
        Constraint of ``param`` for a callable family (default real), as in :func:`mle`.

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
    level = _check_level(level)
    fit = _fit_one(family, x, param, fixed, init, constraints)
    ll_hat = fit.log_likelihood

    def stat(theta: Tensor) -> Tensor:
        return 2 * (ll_hat - fit._model.loglik([theta]))

    return _invert(stat, fit, _z(level) ** 2)


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
    ValueError
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
    n = _check_n(n)
    reps = _check_n(reps, "reps")
    if reps < 2:
        raise ValueError(f"reps must be an integer >= 2, got {reps}")
    if dist.batch_shape != torch.Size():
        raise ValueError(f"dist must have empty batch shape, got {tuple(dist.batch_shape)}")
    theta = _resolve_target(dist, target)
    x = sample(dist, (reps, n), generator).to(DTYPE)
    lo, hi = interval(x)
    lo, hi = torch.as_tensor(lo, dtype=DTYPE), torch.as_tensor(hi, dtype=DTYPE)
    if lo.shape != (reps,) or hi.shape != (reps,):
        raise ValueError(f"interval must return two tensors of shape ({reps},), got {tuple(lo.shape)}, {tuple(hi.shape)}")
    if bool((lo > hi).any()) or bool(torch.isnan(lo).any() | torch.isnan(hi).any()):
        raise ValueError("interval returned NaN or lower > upper")
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
