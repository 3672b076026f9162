r"""The three likelihood tests (Wald, score, likelihood ratio), the Bartlett correction and
chi-bar-squared tails for a null on the boundary.

Chapter 3. :func:`likelihood_tests` fits a family with and without a null hypothesis that fixes
some of its parameters, and returns the three statistics, each asymptotically :math:`\chi^2_r`
under the null (Wilks). :func:`bartlett_factor` gives :math:`\operatorname{E}[\mathrm{LR}]/r` in closed
form for two one-parameter families; :func:`bartlett_factor_mc` estimates it by simulation for any
family; :func:`chibar2_sf` is the tail of a :math:`\bar\chi^2` mixture, and
:func:`variance_component_lr` the likelihood ratio for the classic boundary null, a variance
component at 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import special
from scipy import stats as sps
from torch import Tensor

from .._numerics import spd_inverse
from .._validate import check_int, check_option, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError
from .mle import DTYPE, Family, MLEResult, _constraint_of, _grad_hess, _is_dist_class, mle

__all__ = [
    "BARTLETT_MODELS", "LikelihoodTests", "bartlett_factor", "bartlett_factor_mc", "chibar2_sf", "likelihood_tests",
    "lr_statistic", "variance_component_lr",
]

BARTLETT_MODELS = ("exponential-rate", "normal-variance")


@dataclass(frozen=True)
class LikelihoodTests:
    r"""Result of :func:`likelihood_tests`: the three statistics of one null, batched over data sets.

    ``wald``, ``score`` and ``lr`` have the data's batch shape; ``df`` is the number of parameters
    the null fixes. ``full`` is the unrestricted fit; ``restricted`` the values of all parameters
    under the null (tested ones at their null values, the others at their restricted MLE), stacked
    in the order of ``full.names``.
    """

    wald: Tensor
    score: Tensor
    lr: Tensor
    df: int
    full: MLEResult
    restricted: Tensor

    def pvalue(self, statistic: str = "lr", bartlett: float | Tensor | None = None) -> Tensor:
        r"""The :math:`\chi^2_{\mathrm{df}}` tail probability of a statistic.

        ``bartlett`` (the factor :math:`\operatorname{E}[\mathrm{LR}]/\mathrm{df}`, from
        :func:`bartlett_factor` or :func:`bartlett_factor_mc`) divides the statistic first.
        """
        check_option(statistic, "statistic", ("wald", "score", "lr"))
        value = getattr(self, statistic)
        if bartlett is not None:
            factor = check_tensor(bartlett, "bartlett", dtype=DTYPE)
            if not bool((factor > 0).all()):
                raise InvalidArgumentError("bartlett must be a positive factor E[LR] / df")
            value = value / factor
        return torch.as_tensor(sps.chi2.sf(value.numpy(), self.df), dtype=DTYPE)


def _information(model: Any, values: list[Tensor], names: tuple[str, ...], n: int, kind: str) -> tuple[Tensor, Tensor]:
    """Total score and information (observed or expected) of the full model at ``values``."""
    _, g, H = _grad_hess(model.loglik, values)
    if kind == "observed":
        return g, -H
    from .estimators import fisher_information  # the core API; imported late to keep modules independent

    info = fisher_information(model.dist(values, validate=False), params=names).to(DTYPE)
    return g, n * info


def _fits(
    family: Any,
    x: Any,
    null: Any,
    init: Any,
    fixed: Mapping[str, Any] | None,
    constraints: Mapping[str, Any] | None,
) -> tuple[MLEResult, list[Tensor], Tensor, dict[str, Tensor]]:
    """The full fit, the parameter values under the null (in ``full.names`` order), the restricted log-likelihood."""
    if not isinstance(null, Mapping) or len(null) == 0:
        raise InvalidArgumentError("null must be a non-empty mapping from a parameter name to its null value")
    if not isinstance(init, Mapping) or len(init) == 0:
        raise InvalidArgumentError("init must be a non-empty mapping from parameter name to starting value")
    unknown = [k for k in null if k not in init]
    if unknown:
        raise InvalidArgumentError(f"null names {unknown}, which are not estimated parameters; init has {tuple(init)}")
    full = mle(family, x, init, fixed=fixed, constraints=constraints)
    batch = full.log_likelihood.shape
    names = full.names
    null_t = {}
    for k, v in null.items():
        vt = torch.as_tensor(v, dtype=DTYPE)
        if not bool(torch.isfinite(vt).all()):
            raise InvalidArgumentError(f"null[{k!r}] must be finite, got {v}")
        codomain = _constraint_of(family, k, constraints)
        if not bool(codomain.check(vt).all()):
            raise InvalidArgumentError(f"null[{k!r}] = {v} is outside the parameter's constraint {codomain}")
        null_t[k] = vt.expand(batch).clone()
    nuisance = [k for k in names if k not in null]
    if nuisance:
        fixed_r = dict(fixed or {}) | {k: v.unsqueeze(-1) for k, v in null_t.items()}
        init_r = {k: full.params[k] for k in nuisance}
        restricted_fit = mle(family, x, init_r, fixed=fixed_r, constraints=constraints)
        values = [null_t[k] if k in null_t else restricted_fit.params[k] for k in names]
        ll0 = restricted_fit.log_likelihood
    else:
        values = [null_t[k] for k in names]
        ll0 = full._model.loglik(values)
    return full, values, ll0, null_t


def likelihood_tests(
    family: Family,
    x: Tensor,
    null: Mapping[str, Any],
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
    information: str = "expected",
) -> LikelihoodTests:
    r"""Wald, score (Rao) and likelihood-ratio statistics for a null that fixes some parameters.

    With :math:`\theta = (\psi, \lambda)`, the null :math:`H_0: \psi = \psi_0` (``null``, ``r``
    parameters), the MLE :math:`\hat\theta` and the restricted MLE
    :math:`\tilde\theta = (\psi_0, \hat\lambda_{\psi_0})`,

    .. math::

        W = (\hat\psi - \psi_0)^\top \big[\mathcal I(\hat\theta)^{-1}\big]_{\psi\psi}^{-1} (\hat\psi - \psi_0),\quad
        S = U(\tilde\theta)^\top \mathcal I(\tilde\theta)^{-1} U(\tilde\theta),\quad
        \Lambda = 2\big[\ell(\hat\theta) - \ell(\tilde\theta)\big],

    where :math:`U` is the total score and :math:`\mathcal I` the total information (expected,
    :math:`nI`, or observed, :math:`J`). Under the null and the regularity conditions of the
    chapter each tends to :math:`\chi^2_r`, and they differ by :math:`o_p(1)`.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle`.
    x : Tensor
        Data, shape ``(*batch, n)``.
    null : mapping
        The tested parameters and their null values (numbers or ``(*batch)`` tensors); a
        non-empty subset of ``init``.
    init : mapping
        Starting values of all estimated parameters (tested and nuisance).
    fixed, constraints : mapping, optional
        As in :func:`~fisherbook.stats.mle.mle`.
    information : str
        ``"expected"`` (needs a ``torch.distributions`` class) or ``"observed"``.

    Returns
    -------
    LikelihoodTests

    Raises
    ------
    InvalidArgumentError
        If ``null`` is empty or names a parameter not in ``init``.
    NotPositiveDefiniteError
        With ``information="observed"``, if :math:`J(\tilde\theta)` is not positive definite (the
        observed information at the null can be indefinite far from the MLE; use the expected
        information, or :func:`lr_statistic` alone).

    Examples
    --------
    For a Normal mean with known variance the three statistics coincide with :math:`n(\bar x-\mu_0)^2/\sigma^2`:

    >>> import torch
    >>> from torch.distributions import Normal
    >>> x = torch.tensor([0.3, -0.2, 1.1, 0.8], dtype=torch.float64)
    >>> res = likelihood_tests(Normal, x, {"loc": 0.0}, {"loc": 0.0}, fixed={"scale": 1.0})
    >>> [round(float(v), 6) for v in (res.wald, res.score, res.lr)], round(4 * float(x.mean()) ** 2, 6)
    ([1.0, 1.0, 1.0], 1.0)
    """
    information = check_option(information, "information", ("expected", "observed"))
    if information == "expected" and not _is_dist_class(family):
        raise InvalidArgumentError(
            "information='expected' needs a torch.distributions class as family; use information='observed'"
        )
    full, values, ll0, null_t = _fits(family, x, null, init, fixed, constraints)
    names = full.names
    lr = 2 * (full.log_likelihood - ll0)
    idx = [names.index(k) for k in null]
    diff = full.theta[..., idx] - torch.stack([null_t[k] for k in null], -1)
    cov = full.covariance(information)[..., idx, :][..., :, idx]
    wald = (diff.unsqueeze(-2) @ spd_inverse(cov, "covariance of the tested parameters") @ diff.unsqueeze(-1))
    U, info = _information(full._model, values, names, full.n, information)
    score = U.unsqueeze(-2) @ spd_inverse(info, "information at the restricted MLE") @ U.unsqueeze(-1)
    return LikelihoodTests(
        wald=wald[..., 0, 0], score=score[..., 0, 0], lr=lr.clamp_min(0.0), df=len(null), full=full,
        restricted=torch.stack(values, -1),
    )


def lr_statistic(
    family: Family,
    x: Tensor,
    null: Mapping[str, Any],
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
) -> Tensor:
    r"""The likelihood-ratio statistic :math:`2[\ell(\hat\theta) - \ell(\tilde\theta)]` alone.

    As :func:`likelihood_tests` without the Wald and score statistics, so it needs no
    information matrix (the observed information at the null need not be positive definite).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Exponential
    >>> x = torch.tensor([0.5, 1.0, 1.5, 1.0], dtype=torch.float64)  # mean 1: LR = 2n(l0 - 1 - log l0)
    >>> round(float(lr_statistic(Exponential, x, {"rate": 2.0}, {"rate": 1.0})), 6), round(8 * (1 - 0.693147), 5)
    (2.454823, 2.45482)
    """
    full, _, ll0, _ = _fits(family, x, null, init, fixed, constraints)
    return (2 * (full.log_likelihood - ll0)).clamp_min(0.0)


def bartlett_factor(model: str, n: int) -> float:
    r"""Exact Bartlett factor :math:`\operatorname{E}_{\theta_0}[\Lambda]/r` of a simple null, in closed form.

    ``"exponential-rate"``: :math:`n` Exponential(:math:`\lambda_0`) observations,
    :math:`\Lambda = 2n(\lambda_0\bar x - 1 - \log \lambda_0\bar x)`; with
    :math:`\lambda_0\sum x_i \sim \text{Gamma}(n, 1)`,

    .. math:: \operatorname{E}\Lambda = 2n\,(\log n - \psi(n)) = 1 + \frac{1}{6n} + O(n^{-2}).

    ``"normal-variance"``: :math:`n` Normal(:math:`\mu`, :math:`\sigma_0^2`) observations with
    :math:`\mu` known, :math:`\Lambda = n(s - 1 - \log s)`, :math:`s = \sum (x_i-\mu)^2/(n\sigma_0^2)`;
    with :math:`ns \sim \chi^2_n`,

    .. math:: \operatorname{E}\Lambda = n\,\big(\log(n/2) - \psi(n/2)\big) = 1 + \frac{1}{3n} + O(n^{-2}).

    Neither depends on the null value. Dividing :math:`\Lambda` by the factor makes its mean exactly
    :math:`r = 1` and its :math:`\chi^2_1` approximation accurate to :math:`O(n^{-2})` (Lawley 1956).

    Parameters
    ----------
    model : str
        One of :data:`BARTLETT_MODELS`.
    n : int
        Sample size, at least 1.

    Returns
    -------
    float

    Examples
    --------
    >>> round(bartlett_factor("exponential-rate", 10), 5), round(1 + 1 / 60, 5)
    (1.01665, 1.01667)
    """
    model = check_option(model, "model", BARTLETT_MODELS)
    n = check_int(n, "n")
    if model == "exponential-rate":
        return float(2 * n * (np.log(n) - special.digamma(n)))
    return float(n * (np.log(n / 2) - special.digamma(n / 2)))


def bartlett_factor_mc(
    family: Family,
    params: Mapping[str, Any],
    n: int,
    *,
    reps: int,
    generator: torch.Generator,
    null: Sequence[str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    constraints: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    r"""Monte-Carlo Bartlett factor :math:`\operatorname{E}_{\theta}[\Lambda]/r` and its standard error.

    Draws ``reps`` samples of size ``n`` from ``family(**params, **fixed)``, computes the
    likelihood-ratio statistic of the null that fixes the parameters named in ``null`` (default:
    all of ``params``) at their values in ``params``, and returns the mean over ``r`` with the
    Monte-Carlo standard error :math:`\mathrm{sd}(\Lambda)/(r\sqrt{\text{reps}})`. Evaluated at the
    MLE of the data at hand it is a parametric-bootstrap Bartlett correction.

    Parameters
    ----------
    family : torch.distributions class or callable
        As in :func:`~fisherbook.stats.mle.mle`.
    params : mapping
        Values of all estimated parameters (the simulation truth and the starting values).
    n, reps : int
        Sample size and number of simulated samples.
    generator : torch.Generator
        Source of the draws (the global RNG is not touched).
    null : sequence of str, optional
        The tested parameters (default all of ``params``).
    fixed, constraints : mapping, optional
        As in :func:`~fisherbook.stats.mle.mle`.

    Returns
    -------
    (float, float)
        The factor and its Monte-Carlo standard error.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Exponential
    >>> g = torch.Generator().manual_seed(0)
    >>> f, se = bartlett_factor_mc(Exponential, {"rate": 2.0}, 10, reps=4000, generator=g)
    >>> abs(f - bartlett_factor("exponential-rate", 10)) < 4 * se
    True
    """
    from .simulation import sample

    n = check_int(n, "n")
    reps = check_int(reps, "reps", minimum=2)
    if not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(params, Mapping) or len(params) == 0:
        raise InvalidArgumentError("params must be a non-empty mapping from parameter name to value")
    tested = tuple(params) if null is None else tuple(null)
    if len(tested) == 0 or any(k not in params for k in tested):
        raise InvalidArgumentError(f"null must name a non-empty subset of the parameters {tuple(params)}, got {tested}")
    kw = {k: torch.as_tensor(v, dtype=DTYPE) for k, v in params.items()} | dict(fixed or {})
    dist = family(**kw)
    x = sample(dist, (reps, n), generator).to(DTYPE)
    lr = lr_statistic(family, x, {k: params[k] for k in tested}, dict(params), fixed=fixed, constraints=constraints)
    r = len(tested)
    return float(lr.mean()) / r, float(lr.std()) / (r * reps**0.5)


def chibar2_sf(statistic: Any, weights: Sequence[float]) -> Tensor:
    r"""Tail probability of a chi-bar-squared mixture :math:`\bar\chi^2 = \sum_j w_j \chi^2_j`.

    .. math:: P(\bar\chi^2 > c) = \sum_{j \ge 1} w_j\, P(\chi^2_j > c) + w_0\,\mathbf 1[c < 0],

    with :math:`\chi^2_0` the point mass at 0. For one parameter on the boundary of its space
    (a variance component at 0, a mean constrained to be :math:`\ge 0`) the likelihood-ratio
    statistic tends to :math:`\tfrac12\chi^2_0 + \tfrac12\chi^2_1`: ``weights=(0.5, 0.5)``
    (Self and Liang 1987).

    Parameters
    ----------
    statistic : float or Tensor
        Non-negative values :math:`c`.
    weights : sequence of float
        :math:`w_0, w_1, \dots`, non-negative, summing to 1.

    Returns
    -------
    Tensor
        Same shape as ``statistic``.

    Examples
    --------
    >>> round(float(chibar2_sf(2.705543, (0.5, 0.5))), 4)  # half the chi2_1 tail at its 90 % point
    0.05
    """
    c = check_tensor(statistic, "statistic", dtype=DTYPE)
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise InvalidArgumentError("statistic must be finite and non-negative")
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size < 2 or not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise InvalidArgumentError(f"weights must be at least two non-negative numbers summing to 1, got {weights!r}")
    cn = c.numpy()
    out = sum(wj * sps.chi2.sf(cn, j) for j, wj in enumerate(w) if j >= 1)
    return torch.as_tensor(np.asarray(out, dtype=float), dtype=DTYPE)


def variance_component_lr(x: Any, method: str = "ml") -> Tensor:
    r"""Likelihood-ratio statistic for a zero variance component in the balanced one-way random-effects model.

    The model is :math:`X_{ij} = \mu + a_i + \varepsilon_{ij}`, :math:`i = 1..m` groups of
    :math:`j = 1..k` observations, :math:`a_i \sim N(0, \sigma_a^2)` and
    :math:`\varepsilon_{ij} \sim N(0, \sigma^2)` independent, and the null is
    :math:`H_0 : \sigma_a^2 = 0`, on the boundary of :math:`\sigma_a^2 \ge 0`. Each group's
    covariance :math:`\sigma^2 I + \sigma_a^2 J` has eigenvalue :math:`\sigma^2` on the
    within-group contrasts and :math:`\lambda = \sigma^2 + k\sigma_a^2` on the group mean, so
    with :math:`W = \sum_{ij}(X_{ij} - \bar X_i)^2`, :math:`B = k\sum_i(\bar X_i - \bar X)^2` and
    :math:`\mu` profiled out (:math:`\hat\mu = \bar X`, also the GLS estimate in a balanced design),

    .. math::

        -2\ell(\sigma^2, \lambda) = m(k-1)\log\sigma^2 + \frac{W}{\sigma^2}
        + d\log\lambda + \frac{B}{\lambda} + \text{const},

    with :math:`d = m` for maximum likelihood and :math:`d = m - 1` for REML (the likelihood of
    the contrasts free of :math:`\mu`). The maximum over :math:`\lambda \ge \sigma^2` is at
    :math:`\hat\sigma^2 = W/(m(k-1))`, :math:`\hat\lambda = B/d` when :math:`\hat\lambda \ge \hat\sigma^2`, and
    otherwise on the null, :math:`\sigma^2 = \lambda = (W + B)/(m(k-1) + d)`; the statistic
    :math:`2[\ell(\hat\theta) - \ell(\tilde\theta)]` is then exactly 0. As :math:`m \to \infty`
    it tends to :math:`\tfrac12\chi^2_0 + \tfrac12\chi^2_1` under the null (Self and Liang
    1987): use :func:`chibar2_sf` with ``weights=(0.5, 0.5)``. At finite :math:`m` the
    probability of exactly 0 is :math:`P(F_{m-1,\,m(k-1)} \le c)` with :math:`c = d/(m-1)`, above
    one half, and more so for maximum likelihood (whose :math:`\hat\lambda = B/m` is biased down),
    so the mixture's test is conservative; REML's is the closer.

    Parameters
    ----------
    x : Tensor
        Shape ``(*batch, m, k)``: ``m >= 2`` groups of ``k >= 2`` observations (a batch of data sets).
    method : {"ml", "reml"}
        Maximum likelihood or restricted (residual) maximum likelihood.

    Returns
    -------
    Tensor
        The statistic, shape ``(*batch)``, non-negative.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0], [0.5, 1.5], [0.2, 1.2]], dtype=torch.float64)  # no group effect
    >>> float(variance_component_lr(x))
    0.0
    >>> x = torch.tensor([[0.0, 0.1], [5.0, 5.1], [-4.0, -3.9]], dtype=torch.float64)  # a large one
    >>> round(float(variance_component_lr(x)), 3), round(float(variance_component_lr(x, "reml")), 3)
    (21.637, 22.431)
    """
    method = check_option(method, "method", ("ml", "reml"))
    xt = check_tensor(x, "x", dtype=DTYPE)
    if xt.dim() < 2 or xt.shape[-1] < 2 or xt.shape[-2] < 2:
        raise ShapeError(f"x must have shape (*batch, m, k) with m >= 2 groups of k >= 2, got {tuple(xt.shape)}")
    if not bool(torch.isfinite(xt).all()):
        raise InvalidArgumentError("x must be finite")
    m, k = xt.shape[-2], xt.shape[-1]
    means = xt.mean(-1)
    w = ((xt - means.unsqueeze(-1)) ** 2).sum((-1, -2))
    b = k * ((means - means.mean(-1, keepdim=True)) ** 2).sum(-1)
    if bool((w <= 0).any()):
        raise InvalidArgumentError("x must vary within some group (the within-group sum of squares is 0)")
    d = m if method == "ml" else m - 1
    dw = m * (k - 1)
    s2 = w / dw
    lam = (b / d).clamp_min(s2)  # the constrained maximum: lambda >= sigma^2
    s0 = (w + b) / (dw + d)
    m2_full = dw * torch.log(s2) + w / s2 + d * torch.log(lam) + b / lam
    m2_null = (dw + d) * torch.log(s0) + (dw + d)
    return (m2_null - m2_full).clamp_min(0.0)
