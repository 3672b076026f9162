r"""Estimators that beat the Cramér–Rao bound somewhere: Hodges' superefficient estimator and
James–Stein shrinkage, with their exact risks and a Monte-Carlo risk (chapter 2).

Both act on a Gaussian observation: :math:`\bar X \sim N(\theta, \sigma^2/n)` for Hodges,
:math:`X \sim N_d(\theta, \sigma^2 I_d)` for James–Stein.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import integrate, stats
from torch import Tensor

from .._validate import check_callable, check_int, check_real, check_tensor
from ..errors import InvalidArgumentError, ShapeError

__all__ = ["hodges_estimator", "hodges_risk", "james_stein", "james_stein_risk", "simulate_risk"]

DTYPE = torch.float64


def _threshold(n: int, threshold: float | None) -> float:
    if threshold is None:
        return float(n) ** -0.25
    return check_real(threshold, "threshold", low=0.0)


def hodges_estimator(xbar: Tensor, n: int, *, threshold: float | None = None) -> Tensor:
    r"""Hodges' estimator: the sample mean, set to 0 when it is within :math:`n^{-1/4}` of 0.

    .. math::

        T_n = \bar X\, \mathbf 1\{|\bar X| > a_n\}, \qquad a_n = n^{-1/4}.

    Under :math:`N(\theta, 1)` data, :math:`\sqrt n (T_n - \theta)` tends to :math:`N(0, 1)` for
    :math:`\theta \ne 0` and to 0 at :math:`\theta = 0`: its asymptotic variance beats the
    Cramér–Rao bound at one point (superefficiency), paid for by a large risk near
    :math:`\theta \approx a_n`.

    Parameters
    ----------
    xbar : Tensor
        Sample means, any shape.
    n : int
        The sample size behind each mean.
    threshold : float, optional
        :math:`a_n`; default :math:`n^{-1/4}`.

    Returns
    -------
    Tensor
        Same shape as ``xbar``, float64.

    Examples
    --------
    >>> import torch
    >>> hodges_estimator(torch.tensor([0.05, 0.5]), n=10_000)  # a_n = 0.1
    tensor([0.0000, 0.5000], dtype=torch.float64)
    """
    x = check_tensor(xbar, "xbar", dtype=DTYPE)
    n = check_int(n, "n")
    a = _threshold(n, threshold)
    return torch.where(x.abs() > a, x, torch.zeros((), dtype=DTYPE))


def hodges_risk(theta: Tensor | float, n: int, sigma: float = 1.0, *, threshold: float | None = None) -> Tensor:
    r"""Exact mean-squared error :math:`\operatorname{E}_\theta (T_n - \theta)^2` of :func:`hodges_estimator`.

    With :math:`\bar X \sim N(\theta, \sigma^2/n)`, :math:`l = (-a - \theta)\sqrt n/\sigma`,
    :math:`u = (a - \theta)\sqrt n/\sigma` and :math:`P = \Phi(u) - \Phi(l)` the probability of
    setting the estimate to 0,

    .. math::

        \operatorname{E}(T_n - \theta)^2 = \frac{\sigma^2}{n}\bigl(1 - P + u\varphi(u) - l\varphi(l)\bigr)
        + \theta^2 P .

    The sample mean's risk is :math:`\sigma^2/n`; ``n * hodges_risk(...) / sigma**2`` is the
    normalised risk, 1 for the sample mean.

    Parameters
    ----------
    theta : Tensor or float
        True means, any shape.
    n : int
        Sample size.
    sigma : float
        Standard deviation of one observation, > 0.
    threshold : float, optional
        :math:`a_n`; default :math:`n^{-1/4}`.

    Returns
    -------
    Tensor
        float64, the shape of ``theta``.

    Examples
    --------
    >>> import torch
    >>> r = hodges_risk(torch.tensor([0.0, 10.0]), n=10_000)
    >>> [round(float(v) * 10_000, 4) for v in r]  # normalised: ~0 at 0, 1 far away
    [0.0, 1.0]
    """
    th = check_tensor(theta, "theta", dtype=DTYPE)
    n = check_int(n, "n")
    s = check_real(sigma, "sigma", low=0.0, open_low=True)
    a = _threshold(n, threshold)
    rt = math.sqrt(n) / s
    lo = (-a - th) * rt
    up = (a - th) * rt
    normal = torch.distributions.Normal(torch.zeros((), dtype=DTYPE), torch.ones((), dtype=DTYPE))
    P = normal.cdf(up) - normal.cdf(lo)
    phi_u = torch.exp(normal.log_prob(up))
    phi_l = torch.exp(normal.log_prob(lo))
    inside_sq = P - (up * phi_u - lo * phi_l)  # E[Z^2 1{l < Z < u}]
    zeroed = torch.where(P > 0, th**2 * P, torch.zeros((), dtype=DTYPE))  # no inf * 0 for |theta| ~ 1e300
    return s**2 / n * (1.0 - inside_sq) + zeroed


def james_stein(x: Tensor, sigma: float = 1.0, *, positive_part: bool = False) -> Tensor:
    r"""The James–Stein estimator of a normal mean vector in dimension :math:`d \ge 3`.

    For :math:`X \sim N_d(\theta, \sigma^2 I_d)`,

    .. math::

        \delta_{JS}(X) = \Bigl(1 - \frac{(d - 2)\sigma^2}{\lVert X\rVert^2}\Bigr) X,

    and the positive-part version clips the factor at 0. Its total risk
    :math:`\operatorname{E}\lVert\delta - \theta\rVert^2` is below :math:`d\sigma^2`, the risk of
    :math:`X` itself, for every :math:`\theta` (James & Stein 1961).

    Parameters
    ----------
    x : Tensor
        Observations, shape ``(..., d)`` with ``d >= 3``.
    sigma : float
        Standard deviation of each coordinate, > 0.
    positive_part : bool
        Clip the shrinkage factor at 0.

    Returns
    -------
    Tensor
        float64, the shape of ``x``.

    Raises
    ------
    ShapeError
        If ``x`` has no last dimension or ``d < 3``.

    Examples
    --------
    >>> import torch
    >>> james_stein(torch.tensor([1.0, 2.0, 2.0]))  # factor 1 - 1/9
    tensor([0.8889, 1.7778, 1.7778], dtype=torch.float64)
    """
    X = check_tensor(x, "x", dtype=DTYPE)
    s = check_real(sigma, "sigma", low=0.0, open_low=True)
    if X.dim() == 0 or X.shape[-1] < 3:
        raise ShapeError(
            f"x must have shape (..., d) with d >= 3 (James-Stein shrinkage dominates only then), got {tuple(X.shape)}"
        )
    d = X.shape[-1]
    sq = (X * X).sum(-1, keepdim=True)
    factor = 1.0 - (d - 2) * s**2 / sq
    if positive_part:
        factor = factor.clamp(min=0.0)
    return factor * X


def _inverse_ncx2_mean(d: int, lam: float) -> float:
    r""":math:`\operatorname{E}[1/Y]` for :math:`Y \sim \chi^2_d(\lambda)`, :math:`d \ge 3`.

    The Poisson mixture :math:`\sum_k \mathrm{Pois}(k; \lambda/2)/(d - 2 + 2k)`, summed over the
    window where the Poisson weights exceed double precision; for :math:`\lambda/2 > 10^6`, the
    integral :math:`\int_0^1 s^{d-3} e^{-\lambda(1-s^2)/2}\,ds` instead.
    """
    m = lam / 2.0
    if m <= 1e6:
        width = 40.0 * math.sqrt(m) + 60.0
        k = np.arange(max(0, int(m - width)), int(m + width) + 1, dtype=np.float64)
        w = stats.poisson.pmf(k, m) if m > 0 else (k == 0).astype(np.float64)
        return float(np.sum(w / (d - 2.0 + 2.0 * k)))
    cut = max(0.0, 1.0 - 50.0 / m)
    val = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for a, b in ((0.0, cut), (cut, 1.0)):
            v, _ = integrate.quad(lambda s: s ** (d - 3) * math.exp(-m * (1.0 - s * s)), a, b, epsabs=0.0,
                                  epsrel=1e-10, limit=200)
            val += v
    return val


def james_stein_risk(theta_norm: Tensor | float, d: int, sigma: float = 1.0) -> Tensor:
    r"""Exact total risk :math:`\operatorname{E}\lVert\delta_{JS}(X) - \theta\rVert^2` of :func:`james_stein`.

    By Stein's identity,

    .. math::

        R(\theta) = \sigma^2\Bigl(d - (d - 2)^2\, \operatorname{E}\frac{1}{\chi^2_d(\lambda)}\Bigr),
        \qquad \lambda = \lVert\theta\rVert^2/\sigma^2,

    which depends on :math:`\theta` only through :math:`\lVert\theta\rVert`; it is :math:`2\sigma^2`
    at :math:`\theta = 0` and rises to :math:`d\sigma^2` (the risk of :math:`X`) as
    :math:`\lVert\theta\rVert \to \infty`. :math:`\operatorname{E}[1/\chi^2_d(\lambda)]` is the
    Poisson mixture :math:`\sum_k e^{-\lambda/2}(\lambda/2)^k/k!\,/(d - 2 + 2k)`.

    Parameters
    ----------
    theta_norm : Tensor or float
        :math:`\lVert\theta\rVert \ge 0`, any shape.
    d : int
        Dimension, ``d >= 3``.
    sigma : float
        Standard deviation of each coordinate, > 0.

    Returns
    -------
    Tensor
        float64, the shape of ``theta_norm``.

    Examples
    --------
    >>> import torch
    >>> james_stein_risk(torch.tensor([0.0, 1e4]), d=5)  # 2 at the origin, d far away
    tensor([2.0000, 5.0000], dtype=torch.float64)
    """
    r = check_tensor(theta_norm, "theta_norm", dtype=DTYPE)
    if bool((r < 0).any()):
        raise InvalidArgumentError(f"theta_norm must be >= 0 (a norm), got minimum {float(r.min())}")
    d = check_int(d, "d", minimum=3)
    s = check_real(sigma, "sigma", low=0.0, open_low=True)
    lam = (r / s) ** 2
    flat = [_inverse_ncx2_mean(d, float(v)) for v in lam.reshape(-1)]
    inv = torch.tensor(flat, dtype=DTYPE).reshape(r.shape)
    return s**2 * (d - (d - 2) ** 2 * inv)


def simulate_risk(
    estimator: Callable[[Tensor], Tensor],
    theta: Tensor | float,
    sigma: float,
    reps: int,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    r"""Monte-Carlo total risk :math:`\operatorname{E}\lVert\hat\theta(X) - \theta\rVert^2` under
    :math:`X \sim N(\theta, \sigma^2 I)`, with its standard error.

    Draws ``reps`` observations at once (shape ``(reps, *theta.shape)``), applies ``estimator`` to
    the batch, and returns the mean of the squared errors (summed over coordinates) and
    their standard deviation over :math:`\sqrt{\text{reps}}`.

    Parameters
    ----------
    estimator : callable
        Maps a batch ``(reps, *theta.shape)`` to estimates of the same shape.
    theta : Tensor or float
        The true mean (scalar or vector).
    sigma : float
        Standard deviation of each coordinate of the observation, > 0 (for a mean of :math:`n`
        draws, :math:`\sigma/\sqrt n`).
    reps : int
        Number of replications, >= 2.
    generator : torch.Generator, optional
        The random stream.

    Returns
    -------
    tuple of float
        ``(risk, standard_error)``.

    Raises
    ------
    ShapeError
        If ``estimator`` returns a different shape.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> risk, se = simulate_risk(lambda x: x, torch.zeros(4), 1.0, 20_000, g)
    >>> abs(risk - 4.0) < 4 * se  # the risk of X itself is d sigma^2
    True
    """
    est = check_callable(estimator, "estimator", "a callable batch -> estimates")
    th = check_tensor(theta, "theta", dtype=DTYPE)
    s = check_real(sigma, "sigma", low=0.0, open_low=True)
    reps = check_int(reps, "reps", minimum=2)
    x = th + s * torch.randn((reps, *th.shape), generator=generator, dtype=DTYPE)
    out = torch.as_tensor(est(x), dtype=DTYPE)
    if out.shape != x.shape:
        raise ShapeError(f"estimator must return shape {tuple(x.shape)} (the batch's), got {tuple(out.shape)}")
    sq = ((out - th) ** 2).reshape(reps, -1).sum(-1)
    return float(sq.mean()), float(sq.std() / math.sqrt(reps))


