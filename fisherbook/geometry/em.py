r"""The EM algorithm as alternating e- and m-projections (Csiszár & Tusnády 1984; Amari 1995).

For a latent-variable model :math:`p_\theta(x, z)` and data :math:`x_1, \dots, x_N`, consider two sets of
distributions on :math:`(x, z)`:

- the **data manifold** :math:`\mathcal D = \{q(x, z) : q(x) = \hat p(x)\}`, all joint distributions whose
  :math:`x`-marginal is the empirical one — m-flat (closed under mixtures);
- the **model manifold** :math:`\mathcal M = \{p_\theta(x, z)\}` — e-flat when the complete-data model is an
  exponential family, as a Gaussian mixture is.

The **em algorithm** alternates the *e-projection* of :math:`p_\theta` onto :math:`\mathcal D`,
:math:`q = \arg\min_{q \in \mathcal D}\mathrm{KL}(q\,\|\,p_\theta)`, which is
:math:`q(z \mid x_n) = p_\theta(z \mid x_n)`, and the *m-projection* of :math:`q` onto :math:`\mathcal M`,
:math:`\theta' = \arg\min_\theta \mathrm{KL}(q\,\|\,p_\theta)`,
which for an exponential family is moment matching, :math:`\operatorname{E}_{\theta'}[T] = \operatorname{E}_q[T]`.
These are exactly the E and M steps of Dempster, Laird & Rubin (1977);
:math:`\min_{q\in\mathcal D}\mathrm{KL}(q\|p_\theta)` is the negative log-likelihood up to a constant,
so each step can only raise the likelihood.

:func:`gaussian_mixture_em` runs both algorithms on a one-dimensional Gaussian mixture: the classical
E and M steps (responsibilities, weighted means and variances), or the two projections computed with the
dually flat machinery of :mod:`~fisherbook.geometry.dualflat` (the e-projection by Newton's method on the
tilt of :func:`~fisherbook.geometry.dualflat.e_projection`, the m-projection through expectation parameters
and :func:`~fisherbook.geometry.dualflat.from_expectation`). The iterates coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Categorical, Normal

from .._validate import check_int, check_option, check_tensor
from ..errors import InvalidArgumentError, ShapeError

__all__ = ["MixtureTrace", "gaussian_mixture_em"]

DTYPE = torch.float64


@dataclass(frozen=True)
class MixtureTrace:
    r"""The iterates of :func:`gaussian_mixture_em`, the initial values first.

    Attributes
    ----------
    weights, means, scales : Tensor
        Shape ``(n_iter + 1, K)``: mixture weights :math:`\pi_k`, means :math:`\mu_k`, standard deviations
        :math:`\sigma_k`.
    log_likelihood : Tensor
        Shape ``(n_iter + 1,)``: the mean log-likelihood
        :math:`\frac1N\sum_n \log\sum_k \pi_k\mathcal N(x_n; \mu_k, \sigma_k^2)`.
    """

    weights: Tensor
    means: Tensor
    scales: Tensor
    log_likelihood: Tensor


def _joint_log(x: Tensor, w: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """log p_theta(x_n, z = k), shape (N, K)."""
    return w.log() + Normal(m, s).log_prob(x[:, None])


def _em_step(x: Tensor, w: Tensor, m: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r = torch.softmax(_joint_log(x, w, m, s), dim=1)  # responsibilities p_theta(z | x_n)
    nk = r.sum(0)
    mean = (r * x[:, None]).sum(0) / nk
    var = (r * (x[:, None] - mean) ** 2).sum(0) / nk
    return nk / x.shape[0], mean, var.sqrt()


def _projection_step(x: Tensor, w: Tensor, m: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    from .dualflat import _moment_match, from_expectation

    N, K = x.shape[0], w.shape[0]
    # e-projection of p_theta onto D = {q : q(x_n) = 1/N}: minimise KL(q || p_theta) over q on the atoms
    # (x_n, z), i.e. tilt p_theta by lambda_n on the indicator of x_n until every x-marginal is 1/N
    # (N - 1 indicators: the last is fixed by normalisation)
    log_base = _joint_log(x, w, m, s).reshape(-1)  # atom (n, k) at index n K + k
    log_base = log_base - torch.logsumexp(log_base, 0)
    indicators = torch.zeros(N * K, N - 1, dtype=DTYPE)
    rows = torch.arange(N * K)
    atom = rows // K
    keep = atom < N - 1
    indicators[rows[keep], atom[keep]] = 1.0
    target = torch.full((N - 1,), 1.0 / N, dtype=DTYPE)
    q, _ = _moment_match(log_base, indicators, target, 1e-13, 100, "the e-projection of the em algorithm",
                         "the empirical marginal", min_prob=0.0)
    q = q.reshape(N, K)
    # m-projection of q onto the complete-data exponential family, T(x, z) = (1[z=k], 1[z=k] x, 1[z=k] x^2):
    # match the expectation parameters eta_k = E_q[T_k], then read off each component from its own eta
    eta0 = q.sum(0)
    eta1 = (q * x[:, None]).sum(0)
    eta2 = (q * x[:, None] ** 2).sum(0)
    cat: Any = from_expectation(Categorical, eta0[:-1])
    comp: Any = from_expectation(Normal, torch.stack([eta1 / eta0, eta2 / eta0], -1))
    return cat.probs.to(DTYPE), comp.loc.to(DTYPE), comp.scale.to(DTYPE)


def gaussian_mixture_em(
    x: Any,
    weights: Any,
    means: Any,
    scales: Any,
    *,
    n_iter: int = 50,
    method: str = "em",
) -> MixtureTrace:
    r"""Fit a one-dimensional Gaussian mixture by EM, in one of two forms.

    The mixture is :math:`\sum_k \pi_k\mathcal N(\mu_k, \sigma_k^2)`.

    ``method="em"``: the E step computes responsibilities :math:`r_{nk} = p_\theta(z = k \mid x_n)`, the M step
    :math:`\pi_k = \frac1N\sum_n r_{nk}`, :math:`\mu_k = \sum_n r_{nk}x_n/\sum_n r_{nk}`,
    :math:`\sigma_k^2 = \sum_n r_{nk}(x_n - \mu_k)^2/\sum_n r_{nk}` (Dempster, Laird & Rubin 1977).

    ``method="projections"``: Amari's em algorithm. The e-projection of :math:`p_\theta` onto the data manifold
    is found by Newton's method on the exponential tilt that matches the empirical marginal (it is not told
    that the answer is the posterior); the m-projection onto the model manifold matches the expectation
    parameters :math:`\operatorname{E}_q[\mathbb 1_{z=k}]`, :math:`\operatorname{E}_q[\mathbb 1_{z=k}x]`,
    :math:`\operatorname{E}_q[\mathbb 1_{z=k}x^2]`
    through :func:`~fisherbook.geometry.dualflat.from_expectation`. The two methods give the same iterates
    up to round-off.

    Parameters
    ----------
    x : array_like
        Data, shape ``(N,)``, at least 2 points.
    weights, means, scales : array_like
        Initial :math:`\pi` (positive, summing to 1), :math:`\mu`, :math:`\sigma` (positive), each of shape ``(K,)``.
    n_iter : int
        Number of iterations.
    method : str
        ``"em"`` or ``"projections"``.

    Returns
    -------
    MixtureTrace

    Raises
    ------
    InvalidArgumentError
        If a weight or scale is not positive, or the weights do not sum to 1.
    ShapeError
        If the shapes do not match.

    Examples
    --------
    >>> x = torch.cat([torch.linspace(-3, -1, 20), torch.linspace(1, 3, 20)])
    >>> fit = gaussian_mixture_em(x, [0.5, 0.5], [-0.5, 0.5], [1.0, 1.0], n_iter=30)
    >>> [round(v, 3) for v in fit.means[-1].tolist()]
    [-2.0, 2.0]
    """
    xs = check_tensor(x, "x", ndim=1, dtype=DTYPE)
    if xs.shape[0] < 2:
        raise ShapeError(f"x must hold at least 2 observations, got {xs.shape[0]}")
    w = check_tensor(weights, "weights", ndim=1, dtype=DTYPE)
    m = check_tensor(means, "means", ndim=1, dtype=DTYPE)
    s = check_tensor(scales, "scales", ndim=1, dtype=DTYPE)
    if not (w.shape == m.shape == s.shape):
        raise ShapeError(f"weights, means and scales must have the same shape (K,), got "
                         f"{tuple(w.shape)}, {tuple(m.shape)} and {tuple(s.shape)}")
    if not bool((w > 0).all()) or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-9):
        raise InvalidArgumentError(f"weights must be positive and sum to 1, got {w.tolist()}")
    if not bool((s > 0).all()):
        raise InvalidArgumentError(f"scales must be positive, got {s.tolist()}")
    n_iter = check_int(n_iter, "n_iter", minimum=0)
    method = check_option(method, "method", ("em", "projections"))
    step = _em_step if method == "em" else _projection_step
    ws, ms, ss = [w], [m], [s]
    for _ in range(n_iter):
        w, m, s = step(xs, w, m, s)
        if not bool((s > 0).all()) or not bool(torch.isfinite(torch.cat([w, m, s])).all()):
            raise InvalidArgumentError(
                "a component collapsed onto a single point (scale -> 0, likelihood unbounded): "
                "start from other values or use more data per component"
            )
        ws.append(w)
        ms.append(m)
        ss.append(s)
    W, M, S = torch.stack(ws), torch.stack(ms), torch.stack(ss)
    loglik = torch.logsumexp(W.log()[:, None, :] + Normal(M[:, None, :], S[:, None, :]).log_prob(xs[None, :, None]), -1)
    return MixtureTrace(weights=W, means=M, scales=S, log_likelihood=loglik.mean(-1))
