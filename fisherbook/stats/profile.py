r"""Profile likelihood with nuisance parameters, its interval, the Cox–Reid adjustment and REML.

Chapter 3. :func:`profile_loglik` maximises the log-likelihood over the nuisance parameters at
each value of the parameter of interest (optionally with the Cox–Reid adjustment
:math:`-\tfrac12\log\det J_{\lambda\lambda}`); :func:`profile_interval` inverts the profile
likelihood-ratio statistic; :func:`reml_variance` is the restricted-likelihood estimate of a
within-group variance, the consistent repair of the Neyman–Scott MLE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._numerics import two_sided_z
from .._validate import check_level, check_tensor
from ..errors import InvalidArgumentError, ShapeError
from .likelihood_intervals import _invert
from .mle import DTYPE, Family, mle

__all__ = ["profile_interval", "profile_loglik", "reml_variance"]


def _split(param: str, init: Mapping[str, Any]) -> list[str]:
    if not isinstance(init, Mapping) or param not in init:
        raise InvalidArgumentError(f"init must be a mapping that contains the parameter of interest {param!r}")
    nuisance = [k for k in init if k != param]
    if not nuisance:
        raise InvalidArgumentError(
            f"init has no nuisance parameter besides {param!r}; the profile is the likelihood itself (use lr_interval)"
        )
    return nuisance


def _profile(
    family: Any, x: Any, param: str, value: Tensor, init: Mapping[str, Any], nuisance: list[str],
    fixed: Mapping[str, Any] | None, constraints: Mapping[str, Any] | None, adjusted: bool,
) -> Tensor:
    fixed_p = dict(fixed or {}) | {param: value.unsqueeze(-1)}
    fit = mle(family, x, {k: init[k] for k in nuisance}, fixed=fixed_p, constraints=constraints)
    out = fit.log_likelihood
    if adjusted:
        out = out - 0.5 * torch.logdet(fit.observed_information)
    return out


def profile_loglik(
    family: Family,
    x: Tensor,
    param: str,
    values: Any,
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
    adjusted: bool = False,
) -> Tensor:
    r"""Profile log-likelihood :math:`\ell_p(\psi) = \max_\lambda \ell(\psi, \lambda)` on a grid of :math:`\psi`.

    With ``adjusted=True`` it returns the Cox–Reid adjusted profile
    :math:`\ell_p(\psi) - \tfrac12 \log\det J_{\lambda\lambda}(\psi, \hat\lambda_\psi)`, where
    :math:`J_{\lambda\lambda}` is the observed information of the nuisance parameters; for
    parameters orthogonal to the nuisance ones (Cox and Reid 1987) it removes the
    :math:`O(1)` bias of the profile score, and for a normal variance with group means as
    nuisance parameters it is the restricted (REML) likelihood.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle`.
    x : Tensor
        Data, shape ``(*batch, n)``.
    param : str
        The parameter of interest :math:`\psi` (a key of ``init``).
    values : sequence or Tensor
        Grid of :math:`\psi`, shape ``(g,)``.
    init : mapping
        Starting values of all parameters; those other than ``param`` are the nuisance parameters.
    fixed, constraints : mapping, optional
        As in :func:`~fisherbook.stats.mle.mle`.
    adjusted : bool
        Subtract :math:`\tfrac12\log\det J_{\lambda\lambda}`.

    Returns
    -------
    Tensor
        Shape ``(g, *batch)``.

    Examples
    --------
    Normal data, mean profiled out: :math:`\ell_p(\sigma) = -n\log\sigma - n\hat\sigma^2/(2\sigma^2) + c`,
    maximised at the MLE :math:`\hat\sigma`:

    >>> import torch
    >>> from torch.distributions import Normal
    >>> x = torch.tensor([0.1, 1.9, 1.2, 0.8], dtype=torch.float64)
    >>> grid = torch.linspace(0.4, 1.2, 81, dtype=torch.float64)
    >>> lp = profile_loglik(Normal, x, "scale", grid, {"loc": 0.0, "scale": 1.0})
    >>> round(float(grid[lp.argmax()]), 2), round(float(x.std(correction=0)), 2)
    (0.65, 0.65)
    """
    nuisance = _split(param, init)
    grid = check_tensor(values, "values", dtype=DTYPE)
    if grid.dim() != 1:
        raise ShapeError(f"values must be a 1-d grid, got shape {tuple(grid.shape)}")
    xt = check_tensor(x, "x", dtype=DTYPE)
    batch = xt.shape[:-1]
    return torch.stack(
        [
            _profile(family, xt, param, v.expand(batch), init, nuisance, fixed, constraints, adjusted)
            for v in grid
        ]
    )


def profile_interval(
    family: Family,
    x: Tensor,
    param: str,
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
    level: float = 0.95,
) -> tuple[Tensor, Tensor]:
    r"""Profile likelihood-ratio interval for one parameter with the others estimated.

    .. math::

        \big\{\psi : 2\,[\ell(\hat\theta) - \ell_p(\psi)] \le \chi^2_{1,\,\text{level}}\big\},

    found by an outward search from :math:`\hat\psi` and bisection, batched over data sets; by
    Wilks' theorem its coverage tends to ``level`` with the nuisance parameters unknown.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle`.
    x : Tensor
        Data, shape ``(*batch, n)``.
    param : str
        The parameter of interest (a key of ``init``).
    init : mapping
        Starting values of all parameters.
    fixed, constraints : mapping, optional
        As in :func:`~fisherbook.stats.mle.mle`.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    (Tensor, Tensor)
        Lower and upper limits, each of shape ``(*batch)``.

    Examples
    --------
    For a Normal mean with unknown variance the profile interval is
    :math:`\bar x \pm \hat\sigma\sqrt{e^{z^2/n} - 1}`:

    >>> import math, torch
    >>> from torch.distributions import Normal
    >>> x = torch.tensor([0.1, 1.9, 1.2, 0.8, 1.4], dtype=torch.float64)
    >>> lo, hi = profile_interval(Normal, x, "loc", {"loc": 0.0, "scale": 1.0})
    >>> half = float(x.std(correction=0)) * math.sqrt(math.exp(1.959963984540054 ** 2 / 5) - 1)
    >>> round(float(hi - x.mean()), 8) == round(half, 8)
    True
    """
    level = check_level(level)
    nuisance = _split(param, init)
    full = mle(family, x, dict(init), fixed=fixed, constraints=constraints)
    hats = {k: full.params[k] for k in nuisance}
    # a one-parameter fit of psi with the nuisance held at its MLE: the scale and transform for the search
    cond = mle(
        family, x, {param: full.params[param]}, fixed=dict(fixed or {}) | {k: v.unsqueeze(-1) for k, v in hats.items()},
        constraints=constraints,
    )
    ll_hat = full.log_likelihood

    def stat(theta: Tensor) -> Tensor:
        lp = _profile(family, full._model.x, param, theta, hats, nuisance, fixed, constraints, False)
        return 2 * (ll_hat - lp)

    return _invert(stat, cond, two_sided_z(level) ** 2, n_bisect=40)  # 2^-40 of the bracket: below any digit shown


def reml_variance(x: Any) -> Tensor:
    r"""REML estimate of a common variance from groups with their own means (Neyman–Scott).

    For :math:`X_{ij} \sim N(\mu_i, \sigma^2)`, :math:`i = 1..m`, :math:`j = 1..k`, the likelihood
    of the within-group contrasts (free of the :math:`\mu_i`) is maximised by

    .. math:: \hat\sigma^2_{\text{REML}} = \frac{1}{m(k-1)}\sum_{i,j} (X_{ij} - \bar X_i)^2,

    unbiased and consistent as :math:`m \to \infty`, whereas the MLE divides by :math:`mk` and
    tends to :math:`(1 - 1/k)\sigma^2` (Patterson and Thompson 1971).

    Parameters
    ----------
    x : Tensor
        Shape ``(*batch, m, k)``: ``m`` groups of ``k >= 2`` observations.

    Returns
    -------
    Tensor
        Shape ``(*batch)``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 2.0], [5.0, 5.0], [1.0, -1.0]], dtype=torch.float64)
    >>> float(reml_variance(x))  # (2 + 0 + 2) / (3 * 1)
    1.3333333333333333
    """
    xt = check_tensor(x, "x", dtype=DTYPE)
    if xt.dim() < 2 or xt.shape[-1] < 2 or xt.shape[-2] < 1:
        raise ShapeError(f"x must have shape (*batch, m, k) with m >= 1 groups of k >= 2, got {tuple(xt.shape)}")
    if not bool(torch.isfinite(xt).all()):
        raise InvalidArgumentError("x must be finite")
    m, k = xt.shape[-2], xt.shape[-1]
    ss = ((xt - xt.mean(-1, keepdim=True)) ** 2).sum((-1, -2))
    return ss / (m * (k - 1))
