r"""Closed-form intervals for a Binomial proportion and a Poisson rate, and their exact coverage.

The coverage of an interval procedure :math:`C` for a discrete family is a finite (or rapidly
convergent) sum over the support,

.. math::

    c(\theta) = \sum_x \mathbf 1[\theta \in C(x)]\, p(x;\theta),

so it can be computed exactly instead of simulated (Brown, Cai & DasGupta 2001).
:func:`exact_coverage` does this for a whole grid of sample sizes and parameter values at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import special, stats
from torch import Tensor

from .._numerics import bisect, two_sided_z
from .._validate import check_level, check_option, check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, SizeLimitError

__all__ = [
    "BINOMIAL_METHODS",
    "MAX_GRID",
    "POISSON_METHODS",
    "binomial_interval",
    "exact_coverage",
    "poisson_interval",
]

#: Interval methods of :func:`binomial_interval`.
BINOMIAL_METHODS = ("wald", "wilson", "agresti-coull", "jeffreys", "clopper-pearson", "lr")
#: Interval methods of :func:`poisson_interval`.
POISSON_METHODS = ("wald", "score", "jeffreys", "garwood", "lr")


#: The largest (sample size, parameter, count) grid :func:`exact_coverage` builds in one call
#: (float64 entries; 2e7 is about 160 MB per array).
MAX_GRID = 20_000_000


def _counts(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be an integer or an array of integers, got {type(x).__name__}") from None
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{name} must contain finite non-negative integers")
    if np.any(a < 0) or np.any(a != np.round(a)):
        raise InvalidArgumentError(f"{name} must contain non-negative integers")
    return a


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return special.xlogy(x, y)


def _bisect(f: Any, lo: np.ndarray, hi: np.ndarray, iters: int = 64) -> np.ndarray:
    """Root of ``f`` (negative at ``lo``, non-negative at ``hi``), elementwise."""
    return bisect(lambda q: f(q) < 0, lo, hi, n_iter=iters)


def _binomial_np(x: np.ndarray, n: np.ndarray, level: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1 - level
    z = two_sided_z(level)
    p = x / n
    if method == "wald":
        half = z * np.sqrt(p * (1 - p) / n)
        lo, hi = p - half, p + half
    elif method == "wilson":
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        # exact ends: the interval reaches 0 at x = 0 and 1 at x = n (round-off would miss them)
        lo, hi = np.where(x == 0, 0.0, centre - half), np.where(x == n, 1.0, centre + half)
    elif method == "agresti-coull":
        nt = n + z**2
        pt = (x + z**2 / 2) / nt
        half = z * np.sqrt(pt * (1 - pt) / nt)
        lo, hi = pt - half, pt + half
    elif method == "jeffreys":
        lo = np.where(x > 0, stats.beta.ppf(alpha / 2, x + 0.5, n - x + 0.5), 0.0)
        hi = np.where(x < n, stats.beta.isf(alpha / 2, x + 0.5, n - x + 0.5), 1.0)
    elif method == "clopper-pearson":
        with np.errstate(invalid="ignore"):
            lo = np.where(x > 0, stats.beta.ppf(alpha / 2, np.maximum(x, 1), n - x + 1), 0.0)
            hi = np.where(x < n, stats.beta.isf(alpha / 2, x + 1, np.maximum(n - x, 1)), 1.0)
    elif method == "lr":
        crit = z**2
        ll_hat = _xlogy(x, p) + _xlogy(n - x, 1 - p)

        def excess(q: np.ndarray) -> np.ndarray:  # 2[l(p_hat) - l(q)] - crit, decreasing then increasing
            with np.errstate(divide="ignore"):
                return 2 * (ll_hat - _xlogy(x, q) - _xlogy(n - x, 1 - q)) - crit

        zero, one = np.zeros_like(p), np.ones_like(p)
        # lower end on [0, p_hat]: excess(q) decreases in q there; search with g(q) = -excess
        lo = np.where(x > 0, _bisect(lambda q: -excess(q), zero, p), 0.0)
        hi = np.where(x < n, _bisect(excess, p, one), 1.0)
    else:
        check_option(method, "method", BINOMIAL_METHODS)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def _broadcast(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = np.broadcast_arrays(a, b)
    except ValueError:
        raise InvalidArgumentError(f"the counts have shapes {a.shape} and {b.shape}, which do not broadcast") from None
    return x, y


def binomial_interval(
    x: Any, n: Any, level: float = 0.95, method: str = "wilson"
) -> tuple[Tensor, Tensor]:
    r"""Confidence interval for a Binomial proportion :math:`p` from :math:`x` successes in :math:`n`.

    With :math:`\hat p = x/n` and :math:`z = \Phi^{-1}(1-\alpha/2)`:

    * ``"wald"``: :math:`\hat p \pm z\sqrt{\hat p(1-\hat p)/n}` (expected = observed information);
    * ``"wilson"`` (the score interval):
      :math:`\big(\hat p + \tfrac{z^2}{2n} \pm z\sqrt{\hat p(1-\hat p)/n + z^2/(4n^2)}\big) / (1 + z^2/n)`;
    * ``"agresti-coull"``: Wald around :math:`\tilde p = (x + z^2/2)/(n + z^2)` with
      :math:`\tilde n = n + z^2`;
    * ``"jeffreys"``: equal-tailed Beta(:math:`x + \tfrac12, n - x + \tfrac12`) quantiles,
      lower end 0 when :math:`x = 0` and upper end 1 when :math:`x = n`;
    * ``"clopper-pearson"``: the exact (conservative) Beta quantile interval;
    * ``"lr"``: :math:`\{p : 2[\ell(\hat p) - \ell(p)] \le z^2\}` by bisection.

    All ends are clipped to :math:`[0, 1]`. Inputs broadcast; the work is vectorised.

    Parameters
    ----------
    x : array-like of int
        Successes, :math:`0 \le x \le n`.
    n : array-like of int
        Trials, :math:`n \ge 1`.
    level : float
        Confidence level in (0, 1).
    method : str
        One of :data:`BINOMIAL_METHODS`.

    Returns
    -------
    (Tensor, Tensor)
        float64 lower and upper ends, of the broadcast shape of ``x`` and ``n``.

    Raises
    ------
    InvalidArgumentError
        If counts are not integers, ``n < 1``, ``x > n``, or the method or level is invalid.

    Examples
    --------
    >>> lo, hi = binomial_interval(0, 20, method="wald")  # degenerate: zero width at x = 0
    >>> float(lo), float(hi)
    (0.0, 0.0)
    >>> lo, hi = binomial_interval(0, 20, method="wilson")
    >>> round(float(hi), 4)
    0.1611
    """
    level = check_level(level)
    check_option(method, "method", BINOMIAL_METHODS)
    xa, na = _broadcast(_counts(x, "x"), _counts(n, "n"))
    if np.any(na < 1):
        raise InvalidArgumentError("n must be an integer >= 1")
    if np.any(xa > na):
        raise InvalidArgumentError("x must satisfy 0 <= x <= n")
    lo, hi = _binomial_np(xa.astype(float), na.astype(float), level, method)
    return torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)


def _poisson_np(t: np.ndarray, n: np.ndarray, level: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1 - level
    z = two_sided_z(level)
    lam = t / n
    if method == "wald":
        half = z * np.sqrt(t) / n
        lo, hi = lam - half, lam + half
    elif method == "score":
        root = z * np.sqrt(t + z**2 / 4)
        lo, hi = np.where(t == 0, 0.0, (t + z**2 / 2 - root) / n), (t + z**2 / 2 + root) / n
    elif method == "jeffreys":
        lo = np.where(t > 0, stats.gamma.ppf(alpha / 2, t + 0.5) / n, 0.0)
        hi = stats.gamma.isf(alpha / 2, t + 0.5) / n
    elif method == "garwood":
        lo = np.where(t > 0, stats.gamma.ppf(alpha / 2, np.maximum(t, 1)) / n, 0.0)
        hi = stats.gamma.isf(alpha / 2, t + 1) / n
    elif method == "lr":
        crit = z**2
        ll_hat = _xlogy(t, lam) - n * lam

        def excess(q: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore"):
                return 2 * (ll_hat - _xlogy(t, q) + n * q) - crit

        # upper end: 10 standard errors (sqrt(t + 1) / n) above lam, far past the crossing
        top = lam + 10 * (np.sqrt(t + 1) + crit) / n
        lo = np.where(t > 0, _bisect(lambda q: -excess(q), np.zeros_like(lam), lam), 0.0)
        hi = _bisect(excess, lam, top)
    else:
        check_option(method, "method", POISSON_METHODS)
    return np.clip(lo, 0.0, None), hi


def poisson_interval(
    t: Any, n: Any = 1, level: float = 0.95, method: str = "score"
) -> tuple[Tensor, Tensor]:
    r"""Confidence interval for a Poisson rate :math:`\lambda` from the total :math:`t = \sum_{i=1}^n x_i`.

    The total is sufficient, :math:`t \sim \text{Poisson}(n\lambda)`. With
    :math:`\hat\lambda = t/n`:

    * ``"wald"``: :math:`\hat\lambda \pm z\sqrt{t}/n`;
    * ``"score"``: :math:`\big(t + z^2/2 \pm z\sqrt{t + z^2/4}\big)/n`, the roots of
      :math:`(t - n\lambda)^2 = z^2 n \lambda`;
    * ``"jeffreys"``: Gamma(:math:`t + \tfrac12`) quantiles over :math:`n` (lower end 0 at
      :math:`t = 0`);
    * ``"garwood"``: the exact (conservative) Gamma quantile interval;
    * ``"lr"``: :math:`\{\lambda : 2[\ell(\hat\lambda) - \ell(\lambda)] \le z^2\}` by bisection.

    Lower ends are clipped at 0.

    Parameters
    ----------
    t : array-like of int
        Total count, :math:`t \ge 0`.
    n : array-like of int
        Number of observations, :math:`n \ge 1`.
    level : float
        Confidence level in (0, 1).
    method : str
        One of :data:`POISSON_METHODS`.

    Returns
    -------
    (Tensor, Tensor)
        float64 lower and upper ends.

    Examples
    --------
    >>> lo, hi = poisson_interval(12, 4, method="wald")  # 3 -/+ 1.96 * sqrt(12) / 4
    >>> round(float(lo), 4), round(float(hi), 4)
    (1.3026, 4.6974)
    """
    level = check_level(level)
    check_option(method, "method", POISSON_METHODS)
    ta, na = _broadcast(_counts(t, "t"), _counts(n, "n"))
    if np.any(na < 1):
        raise InvalidArgumentError("n must be an integer >= 1")
    lo, hi = _poisson_np(ta.astype(float), na.astype(float), level, method)
    return torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)


def exact_coverage(
    family: Any,
    n: Any,
    theta: Any,
    method: str | tuple[str, ...] | list[str],
    level: float = 0.95,
    tail: float = 1e-12,
) -> Tensor:
    r"""Exact coverage of Binomial or Poisson intervals over a grid of sample sizes and parameters.

    For each sample size :math:`n` and parameter value :math:`\theta` (a proportion :math:`p`
    or a rate :math:`\lambda`) this is

    .. math::

        c(n, \theta) = \sum_{x} \mathbf 1[\theta \in C_n(x)]\, P_\theta(X = x),

    summed over :math:`x = 0, \dots, n` for the Binomial and over the total count
    :math:`t \sim \text{Poisson}(n\lambda)` for the Poisson (truncated where the upper tail is
    below ``tail``; the returned value is then exact to within ``tail``). Intervals are computed
    once per :math:`(n, x)` and the sum is one vectorised reduction over an
    ``(n, theta, x)`` array.

    Parameters
    ----------
    family : str or torch.distributions class
        ``"binomial"`` / ``Binomial`` or ``"poisson"`` / ``Poisson``.
    n : array-like of int
        Sample sizes (trials for the Binomial, observations for the Poisson), each ``>= 1``.
    theta : array-like of float
        Proportions in (0, 1) or positive rates.
    method : str or sequence of str
        Interval method(s): :data:`BINOMIAL_METHODS` or :data:`POISSON_METHODS`.
    level : float
        Nominal level in (0, 1).
    tail : float
        Poisson truncation mass, in (0, 1e-3].

    Returns
    -------
    Tensor
        float64 coverage, shape ``(len(n), len(theta))``, or ``(len(method), len(n), len(theta))``
        when several methods are asked for.

    Raises
    ------
    InvalidArgumentError
        For an unknown family or method, ``n < 1``, or ``theta`` outside the parameter space.
    SizeLimitError
        If the grid of sample sizes, parameters and counts would exceed :data:`MAX_GRID` entries
        (``exact_coverage("poisson", [1000], [1e6], "wald")`` would need about 7 GB).

    Examples
    --------
    Clopper–Pearson is conservative: its coverage is never below the nominal level.

    >>> c = exact_coverage("binomial", [10, 30], [0.1, 0.5], "clopper-pearson")
    >>> c.shape, bool((c >= 0.95).all())
    (torch.Size([2, 2]), True)
    """
    level = check_level(level)
    name = family if isinstance(family, str) else getattr(family, "__name__", None)
    if not isinstance(name, str):
        raise ArgumentTypeError(f"family must be 'binomial' or 'poisson' (or their torch classes), got {family!r}")
    name = name.lower()
    if name not in ("binomial", "poisson"):
        raise InvalidArgumentError(f"family must be 'binomial' or 'poisson' (or their torch classes), got {family!r}")
    if not isinstance(method, (str, tuple, list)):
        raise ArgumentTypeError(f"method must be a method name or a sequence of them, got {type(method).__name__}")
    methods = (method,) if isinstance(method, str) else tuple(method)
    if not methods:
        raise InvalidArgumentError("method must name at least one interval method")
    allowed = BINOMIAL_METHODS if name == "binomial" else POISSON_METHODS
    for m in methods:
        check_option(m, f"method (for the {name})", allowed)
    ns = _counts(n, "n").reshape(-1)
    if ns.size == 0 or np.any(ns < 1):
        raise InvalidArgumentError("n must be a non-empty array of integers >= 1")
    try:
        raw = theta.detach().cpu().numpy() if isinstance(theta, Tensor) else theta
        th = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"theta must be a number or an array of numbers, got {type(theta).__name__}") from None
    if th.size == 0 or not np.all(np.isfinite(th)):
        raise NonFiniteError("theta must be a non-empty array of finite values")

    def guard(n_x: int) -> None:
        size = ns.size * th.size * n_x
        if size > MAX_GRID:
            raise SizeLimitError(
                f"exact_coverage would build a grid of {ns.size} sample sizes x {th.size} parameter values x "
                f"{n_x} counts = {size:.3g} entries, more than MAX_GRID = {MAX_GRID:.3g} (about "
                f"{8 * MAX_GRID / 1e6:.0f} MB per array); split the grid into several calls (the work grows "
                "with the largest n * theta), or estimate the coverage by simulation with fisherbook.coverage"
            )

    if name == "binomial":
        if np.any((th <= 0) | (th >= 1)):
            raise InvalidArgumentError("theta must lie in (0, 1) for the binomial")
        guard(int(ns.max()) + 1)
        xs = np.arange(int(ns.max()) + 1, dtype=np.float64)
        X, N = np.broadcast_arrays(xs[None, :], ns[:, None])
        valid = X <= N
        Xc = np.minimum(X, N)
        # log pmf on the (n, theta, x) grid
        logp = (
            special.gammaln(N + 1) - special.gammaln(Xc + 1) - special.gammaln(N - Xc + 1)
        )[:, None, :] + _xlogy(Xc[:, None, :], th[None, :, None]) + _xlogy(
            (N - Xc)[:, None, :], 1 - th[None, :, None]
        )
    else:
        tail = check_real(tail, "tail", low=0.0, high=1e-3, open_low=True)
        if np.any(th <= 0):
            raise InvalidArgumentError("theta must be > 0 for the poisson")
        tmax_f = float(stats.poisson.isf(tail, ns.max() * th.max())) + 1
        guard(int(min(tmax_f, 1e18)) + 1)
        tmax = int(tmax_f)
        xs = np.arange(tmax + 1, dtype=np.float64)
        X, N = np.broadcast_arrays(xs[None, :], ns[:, None])
        valid = np.ones_like(X, dtype=bool)
        Xc = X
        mu = ns[:, None, None] * th[None, :, None]
        logp = _xlogy(Xc[:, None, :], mu) - mu - special.gammaln(Xc + 1)[:, None, :]
    pmf = np.where(valid[:, None, :], np.exp(logp), 0.0)
    out = []
    for m in methods:
        if name == "binomial":
            lo, hi = _binomial_np(Xc, N.astype(float), level, m)
        else:
            lo, hi = _poisson_np(Xc, N.astype(float), level, m)
        inside = (lo[:, None, :] <= th[None, :, None]) & (th[None, :, None] <= hi[:, None, :])
        out.append((pmf * inside).sum(-1))
    res = torch.as_tensor(np.stack(out), dtype=torch.float64)
    return res[0] if isinstance(method, str) else res
