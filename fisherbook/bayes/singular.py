r"""Singular learning theory: Bayes free energy, WBIC and the real log canonical threshold.

For data :math:`D_n` of size :math:`n`, write the *energy*
:math:`E(w) = n L_n(w) = -\sum_i \log p(x_i \mid w)` and :math:`\varphi` for the prior. The Bayes free
energy is :math:`F_n = -\log \int e^{-E(w)} \varphi(w)\,dw`
(minus the log evidence). Watanabe's widely applicable Bayesian information criterion is the mean
energy under the tempered posterior :math:`p_\beta(w) \propto e^{-\beta E(w)} \varphi(w)` at
:math:`\beta = 1/\log n`,

.. math::

    \mathrm{WBIC} = \operatorname E_{\beta}[E(w)], \qquad \beta = 1 / \log n,

and for realisable models, regular or singular, both :math:`F_n` and WBIC equal
:math:`n L_n(w_0) + \lambda \log n` to leading order, where :math:`\lambda` is the real log canonical
threshold (RLCT) of the model at the truth :math:`w_0`; BIC replaces :math:`\lambda` by :math:`d/2`, which is
right only for regular models (Watanabe 2013).

The functions take the energy on a set of points :math:`w_j` with log base weights
:math:`\log b_j`: quadrature nodes with :math:`b_j = \varphi(w_j)\,\Delta w_j`, or draws from the prior with
:math:`b_j = 1/J`. Expectations are then self-normalised sums, computed stably with ``logsumexp``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validate import check_int, check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError

__all__ = ["wbic_temperature", "tempered_mean", "free_energy", "wbic", "rlct_estimate"]


def _pair(energy: Tensor, log_base: Tensor) -> tuple[Tensor, Tensor]:
    for name, t in (("energy", energy), ("log_base", log_base)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ArgumentTypeError(f"{name} must be a floating-point torch.Tensor")
    if energy.shape != log_base.shape or energy.numel() == 0:
        raise ShapeError(f"energy and log_base must have one (non-empty) shape, got {tuple(energy.shape)} "
                         f"and {tuple(log_base.shape)}")
    e, b = energy.reshape(-1).to(torch.float64), log_base.reshape(-1).to(torch.float64)
    if not bool(torch.isfinite(e).all()):
        raise NonFiniteError("energy must be finite at every point")
    if bool(torch.isnan(b).any()) or bool((b == math.inf).any()):
        raise NonFiniteError("log_base must not be NaN or +inf (use -inf for zero weight)")
    return e, b


def wbic_temperature(n: int) -> float:
    r"""The inverse temperature :math:`\beta = 1/\log n` of WBIC, for :math:`n \ge 2`.

    Examples
    --------
    >>> round(wbic_temperature(100), 4)
    0.2171
    """
    return 1.0 / math.log(check_int(n, "n", minimum=2))


def tempered_mean(energy: Tensor, log_base: Tensor, beta: float) -> Tensor:
    r""":math:`\operatorname E_\beta[E] = \sum_j E_j\, b_j e^{-\beta E_j} / \sum_j b_j e^{-\beta E_j}`.

    Examples
    --------
    >>> import torch
    >>> e = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> round(float(tempered_mean(e, torch.zeros(2, dtype=torch.float64), beta=0.0)), 6)  # beta = 0: prior mean
    0.5
    """
    e, b = _pair(energy, log_base)
    bt = check_real(beta, "beta", low=0.0)
    w = torch.softmax(b - bt * e, dim=0)
    return (w * e).sum()


def free_energy(energy: Tensor, log_base: Tensor) -> Tensor:
    r"""The Bayes free energy :math:`F_n = -\log \sum_j b_j e^{-E_j}` (minus the log evidence).

    Examples
    --------
    >>> import math, torch
    >>> e = torch.zeros(4, dtype=torch.float64)
    >>> float(free_energy(e, torch.full((4,), math.log(0.25), dtype=torch.float64)))  # sum of weights 1
    -0.0
    """
    e, b = _pair(energy, log_base)
    return -torch.logsumexp(b - e, dim=0)


def wbic(energy: Tensor, log_base: Tensor, n: int) -> Tensor:
    r"""WBIC :math:`= \operatorname E_\beta[n L_n(w)]` at :math:`\beta = 1/\log n` (Watanabe 2013).

    Parameters
    ----------
    energy : Tensor
        :math:`n L_n(w_j) = -\sum_i \log p(x_i \mid w_j)` at the points :math:`w_j`.
    log_base : Tensor
        Log weights of the points (prior density times quadrature weight, or ``-log J`` for
        ``J`` prior draws), same shape.
    n : int
        Sample size.

    Examples
    --------
    >>> import math, torch
    >>> # n observations x = 0 from N(w, 1), flat prior on a grid: E_beta[E] = E(w_hat) + 1/(2 beta)
    >>> w = torch.linspace(-5, 5, 20001, dtype=torch.float64)
    >>> n = 100
    >>> energy = n * (0.5 * math.log(2 * math.pi) + 0.5 * w**2)
    >>> value = wbic(energy, torch.zeros_like(w), n)
    >>> round(float(value - energy.min()), 4), round(0.5 * math.log(n), 4)
    (2.3026, 2.3026)
    """
    return tempered_mean(energy, log_base, wbic_temperature(n))


def rlct_estimate(energy: Tensor, log_base: Tensor, beta1: float, beta2: float) -> Tensor:
    r"""Two-temperature estimate of the real log canonical threshold.

    .. math::

        \hat\lambda = \frac{\operatorname E_{\beta_1}[E] - \operatorname E_{\beta_2}[E]}{1/\beta_1 - 1/\beta_2}.

    Since :math:`\operatorname E_\beta[n L_n] = n L_n(w_0) + \lambda/\beta + o_p(1/\beta)` for
    :math:`\beta = \beta_0 / \log n` (Watanabe 2013), the difference at two temperatures isolates
    :math:`\lambda`. For a regular model with a flat prior and a quadratic energy it is exactly
    :math:`d/2`.

    Examples
    --------
    >>> import math, torch
    >>> w = torch.linspace(-5, 5, 20001, dtype=torch.float64)
    >>> energy = 1000 * 0.5 * w**2  # a regular one-parameter model: lambda = 1/2
    >>> round(float(rlct_estimate(energy, torch.zeros_like(w), 1 / math.log(1000), 2 / math.log(1000))), 4)
    0.5
    """
    b1 = check_real(beta1, "beta1", low=0.0, open_low=True)
    b2 = check_real(beta2, "beta2", low=0.0, open_low=True)
    if b1 == b2:
        raise InvalidArgumentError(f"beta1 and beta2 must differ, got {b1} twice")
    return (tempered_mean(energy, log_base, b1) - tempered_mean(energy, log_base, b2)) / (1 / b1 - 1 / b2)
