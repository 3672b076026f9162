r"""Closed-form Fisher information of standard families, keyed by torch.distributions class.

Every formula is per observation and with respect to the free coordinates of
:func:`fisherbook.stats.estimators.coordinate_names` (one coordinate per scalar parameter; the
first :math:`K-1` entries of ``probs`` on the simplex; the lower triangle, row-major, of a
covariance, precision or Cholesky factor). Each entry of :data:`CLOSED_FORMS` carries its formula
in LaTeX, so the book's table of closed forms is generated from the same objects that compute the
numbers, and every formula is tested against quadrature / enumeration (``method="quadrature"``).

The multivariate normal uses the Gaussian formula (Porat & Friedlander 1986)

.. math::

    I_{mn} = \frac{\partial \mu^\top}{\partial\theta_m}\Sigma^{-1}\frac{\partial \mu}{\partial\theta_n}
    + \tfrac12 \operatorname{tr}\Big(\Sigma^{-1}\frac{\partial\Sigma}{\partial\theta_m}
    \Sigma^{-1}\frac{\partial\Sigma}{\partial\theta_n}\Big),

with :math:`\theta` the mean and the lower triangle of ``covariance_matrix`` (symmetric
perturbations: an off-diagonal coordinate moves :math:`\Sigma_{ij}` and :math:`\Sigma_{ji}`
together), of ``precision_matrix`` (:math:`\partial\Sigma = -\Sigma\,\partial P\,\Sigma`), or of
``scale_tril`` (:math:`\partial\Sigma = \partial L\,L^\top + L\,\partial L^\top`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Cauchy,
    Dirichlet,
    Distribution,
    Exponential,
    Gamma,
    Geometric,
    HalfNormal,
    Laplace,
    LogNormal,
    Multinomial,
    MultivariateNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    StudentT,
)

from ..errors import OffManifoldError, UnsupportedError
from ._params import _event_dim, _n_coords, _Resolved, resolve

__all__ = ["ClosedForm", "CLOSED_FORMS", "closed_form_fisher", "find_closed_form"]


@dataclass(frozen=True)
class ClosedForm:
    r"""A closed-form Fisher information for one family and parameterisation.

    Attributes
    ----------
    family : type
        The ``torch.distributions`` class (matched exactly, not by subclass).
    params : tuple of str
        The parameters the formula is with respect to, in constructor order; any subset of
        them may be requested (the Fisher of a subset, others held fixed, is the sub-block).
    fisher : Callable
        ``fisher(values)`` maps a dict of float64 parameter values (batch + event shapes) to the
        batch of Fisher matrices over the free coordinates of ``params``.
    latex : str
        The formula, for tables.
    example : Callable
        ``example()`` builds a float64 instance of the family in this parameterisation at a
        typical parameter value (for tables and tests).
    held_fixed : tuple of str
        Parameters of the family the formula treats as known (``df`` of StudentT).
    """

    family: type
    params: tuple[str, ...]
    fisher: Callable[[dict[str, Tensor]], Tensor]
    latex: str
    example: Callable[[], Distribution]
    held_fixed: tuple[str, ...] = ()


def _t(v: float | list) -> Tensor:
    return torch.tensor(v, dtype=torch.float64)


def _diag(*entries: Tensor) -> Tensor:
    return torch.diag_embed(torch.stack(torch.broadcast_tensors(*entries), dim=-1))


def _mat(rows: Sequence[Sequence[Tensor]]) -> Tensor:
    flat = torch.broadcast_tensors(*[e for row in rows for e in row])
    k = len(rows)
    return torch.stack(flat, dim=-1).reshape(flat[0].shape + (k, k))


def _trigamma(x: Tensor) -> Tensor:
    return torch.polygamma(1, x)


#: Coefficients c_n of the asymptotic series psi'(x) ~ sum_n c_n x^-n (Bernoulli numbers B_2k at
#: n = 2k + 1); through x^-11 the truncation error at x >= 20 is below 1e-16 relative.
_TRIGAMMA_SERIES = ((1, 1.0), (2, 0.5), (3, 1 / 6), (5, -1 / 30), (7, 1 / 42), (9, -1 / 30), (11, 5 / 66))
_SERIES_FROM = 20.0


def _inv_pow_diff(x: Tensor, y: Tensor, n: int) -> Tensor:
    r""":math:`x^{-n} - (x+y)^{-n}` without cancellation: :math:`x^{-n}(1 - (1 + y/x)^{-n})`."""
    return -torch.expm1(-n * torch.log1p(y / x)) * x.pow(-n)


def _trigamma_diff(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`\psi'(x) - \psi'(x + y)` for :math:`x, y > 0`, accurate to a few ulps even when both terms are
    nearly equal (``Beta(1, 1e16)``, where :math:`\psi'(10^{16}) - \psi'(10^{16} + 1) = 10^{-32}`).

    Shifts :math:`x` up to 20 with :math:`\psi'(x) = \psi'(x+1) + 1/x^2` (each step a difference
    of inverse squares, taken stably) and sums the asymptotic series term by term.
    """
    x, y = torch.broadcast_tensors(x, y)
    out = torch.zeros_like(x)
    shifted = x.clone()
    for _ in range(int(_SERIES_FROM)):
        low = shifted < _SERIES_FROM
        if not bool(low.any()):
            break
        out = out + torch.where(low, _inv_pow_diff(shifted, y, 2), torch.zeros_like(x))
        shifted = torch.where(low, shifted + 1.0, shifted)
    for n, c in _TRIGAMMA_SERIES:
        out = out + c * _inv_pow_diff(shifted, y, n)
    return out


def _one(x: Tensor) -> Tensor:
    return x.unsqueeze(-1).unsqueeze(-1)


def _bernoulli_probs(v: dict[str, Tensor]) -> Tensor:
    p = v["probs"]
    return _one(1.0 / (p * (1.0 - p)))


def _p_q(logits: Tensor) -> Tensor:
    """p (1 - p) for p = sigmoid(logits), as sigmoid(eta) sigmoid(-eta): accurate near p = 0 and 1."""
    return torch.sigmoid(logits) * torch.sigmoid(-logits)


def _bernoulli_logits(v: dict[str, Tensor]) -> Tensor:
    return _one(_p_q(v["logits"]))


def _binomial_probs(v: dict[str, Tensor]) -> Tensor:
    p, n = v["probs"], v["total_count"]
    return _one(n / (p * (1.0 - p)))


def _binomial_logits(v: dict[str, Tensor]) -> Tensor:
    return _one(v["total_count"] * _p_q(v["logits"]))


def _geometric_probs(v: dict[str, Tensor]) -> Tensor:
    p = v["probs"]
    return _one(1.0 / (p * p * (1.0 - p)))


def _geometric_logits(v: dict[str, Tensor]) -> Tensor:
    return _one(torch.sigmoid(-v["logits"]))  # 1 - p


def _negbin_probs(v: dict[str, Tensor]) -> Tensor:
    # torch: number of successes (prob p each) before total_count failures; mean r p/(1-p).
    p, r = v["probs"], v["total_count"]
    return _one(r / (p * (1.0 - p) ** 2))


def _negbin_logits(v: dict[str, Tensor]) -> Tensor:
    p, r = torch.sigmoid(v["logits"]), v["total_count"]
    return _one(r * p)


def _categorical_probs(v: dict[str, Tensor], n: Tensor | float = 1.0) -> Tensor:
    p = v["probs"]
    head, last = p[..., :-1], p[..., -1:]
    k = head.shape[-1]
    eye = torch.diag_embed(1.0 / head)
    ones = torch.ones(k, k, dtype=p.dtype)
    return _nmul(n, eye + (1.0 / last).unsqueeze(-1) * ones)


def _categorical_logits(v: dict[str, Tensor], n: Tensor | float = 1.0) -> Tensor:
    p = torch.softmax(v["logits"], dim=-1)
    k = p.shape[-1]
    # diagonal p_i (1 - p_i) with 1 - p_i summed from the other probabilities (no cancellation near p_i = 1)
    rest = (p.unsqueeze(-2) * (1.0 - torch.eye(k, dtype=p.dtype))).sum(-1)
    out = -p.unsqueeze(-1) * p.unsqueeze(-2)
    out = out - torch.diag_embed(torch.diagonal(out, dim1=-2, dim2=-1)) + torch.diag_embed(p * rest)
    return _nmul(n, out)


def _nmul(n: Tensor | float, m: Tensor) -> Tensor:
    if isinstance(n, Tensor):
        return n.unsqueeze(-1).unsqueeze(-1) * m
    return n * m


def _multinomial_probs(v: dict[str, Tensor]) -> Tensor:
    return _categorical_probs(v, torch.as_tensor(v["total_count"], dtype=v["probs"].dtype))


def _multinomial_logits(v: dict[str, Tensor]) -> Tensor:
    return _categorical_logits(v, torch.as_tensor(v["total_count"], dtype=v["logits"].dtype))


def _poisson(v: dict[str, Tensor]) -> Tensor:
    return _one(1.0 / v["rate"])


def _over_sq(c: Tensor | float, s: Tensor) -> Tensor:
    """c / s^2 as (c / s) / s: no overflow of s^2 for s up to 1e308, no underflow for tiny s."""
    return (c / s) / s


def _exponential(v: dict[str, Tensor]) -> Tensor:
    return _one(_over_sq(1.0, v["rate"]))


def _normal(v: dict[str, Tensor]) -> Tensor:
    s = v["scale"]
    zero = torch.zeros_like(v["loc"])
    return _mat([[_over_sq(1.0, s) + zero, zero], [zero, _over_sq(2.0, s) + zero]])


def _halfnormal(v: dict[str, Tensor]) -> Tensor:
    return _one(_over_sq(2.0, v["scale"]))


def _laplace(v: dict[str, Tensor]) -> Tensor:
    b = v["scale"]
    zero = torch.zeros_like(v["loc"])
    return _mat([[_over_sq(1.0, b) + zero, zero], [zero, _over_sq(1.0, b) + zero]])


def _cauchy(v: dict[str, Tensor]) -> Tensor:
    g = _over_sq(0.5, v["scale"])
    zero = torch.zeros_like(v["loc"])
    return _mat([[g + zero, zero], [zero, g + zero]])


def _studentt(v: dict[str, Tensor]) -> Tensor:
    nu, s = v["df"], v["scale"]
    zero = torch.zeros_like(v["loc"])
    return _mat(
        [
            [_over_sq((nu + 1.0) / (nu + 3.0), s) + zero, zero],
            [zero, _over_sq(2.0 * nu / (nu + 3.0), s) + zero],
        ]
    )


def _gamma(v: dict[str, Tensor]) -> Tensor:
    a, b = v["concentration"], v["rate"]
    return _mat([[_trigamma(a), -1.0 / b], [-1.0 / b, _over_sq(a, b)]])


def _beta(v: dict[str, Tensor]) -> Tensor:
    a, b = v["concentration1"], v["concentration0"]
    t = _trigamma(a + b)
    return _mat([[_trigamma_diff(a, b), -t], [-t, _trigamma_diff(b, a)]])


def _dirichlet(v: dict[str, Tensor]) -> Tensor:
    a = v["concentration"]
    total = a.sum(-1, keepdim=True)
    t = _trigamma(total.squeeze(-1))
    k = a.shape[-1]
    out = -t[..., None, None] * torch.ones(k, k, dtype=a.dtype)
    # diagonal psi'(a_i) - psi'(sum a), taken as one stable difference
    diag = _trigamma_diff(a, total - a)
    return out - torch.diag_embed(torch.diagonal(out, dim1=-2, dim2=-1)) + torch.diag_embed(diag)


def _mvn(kind: str) -> Callable[[dict[str, Tensor]], Tensor]:
    def fisher(v: dict[str, Tensor]) -> Tensor:
        loc = v["loc"]
        mat = v[kind]
        d = loc.shape[-1]
        if kind == "covariance_matrix":
            cov = mat
        elif kind == "precision_matrix":
            cov = torch.cholesky_inverse(torch.linalg.cholesky(mat))
        else:
            cov = mat @ mat.mT
        chol = torch.linalg.cholesky(cov)
        prec = torch.cholesky_inverse(chol)
        i, j = torch.tril_indices(d, d)
        m = i.numel()
        basis = torch.zeros(m, d, d, dtype=loc.dtype)
        basis[torch.arange(m), i, j] = 1.0
        if kind == "scale_tril":
            # dSigma = E L^T + L E^T, E the elementary lower-triangular matrix
            e_lt = basis @ mat.unsqueeze(-3).mT
            dcov = e_lt + e_lt.mT
        else:
            sym = basis + basis.mT - torch.diag_embed(torch.diagonal(basis, dim1=-2, dim2=-1))
            if kind == "covariance_matrix":
                dcov = sym
            else:
                dcov = -(cov.unsqueeze(-3) @ sym @ cov.unsqueeze(-3))
        b = prec.unsqueeze(-3) @ dcov  # batch + (m, d, d)
        cov_block = 0.5 * torch.einsum("...mab,...nba->...mn", b, b)
        batch = torch.broadcast_shapes(prec.shape[:-2], cov_block.shape[:-2], loc.shape[:-1])
        k = d + m
        out = torch.zeros(batch + (k, k), dtype=loc.dtype)
        out[..., :d, :d] = prec
        out[..., d:, d:] = cov_block
        return out

    return fisher


#: Registered closed forms. Looked up by exact class and by the parameterisation requested.
CLOSED_FORMS: tuple[ClosedForm, ...] = (
    ClosedForm(Bernoulli, ("probs",), _bernoulli_probs, r"\frac{1}{p(1-p)}", example=lambda: Bernoulli(probs=_t(0.3))),
    ClosedForm(
        Bernoulli,
        ("logits",),
        _bernoulli_logits,
        r"p(1-p),\ p=\sigma(\eta)",
        example=lambda: Bernoulli(logits=_t(-0.8)),
    ),
    ClosedForm(Binomial, ("probs",), _binomial_probs, r"\frac{n}{p(1-p)}", example=lambda: Binomial(10, probs=_t(0.3))),
    ClosedForm(Binomial, ("logits",), _binomial_logits, r"n\,p(1-p)", example=lambda: Binomial(10, logits=_t(-0.8))),
    ClosedForm(
        Geometric,
        ("probs",),
        _geometric_probs,
        r"\frac{1}{p^2(1-p)}",
        example=lambda: Geometric(probs=_t(0.3)),
    ),
    ClosedForm(Geometric, ("logits",), _geometric_logits, r"1-p", example=lambda: Geometric(logits=_t(-0.8))),
    ClosedForm(
        NegativeBinomial,
        ("probs",),
        _negbin_probs,
        r"\frac{r}{p(1-p)^2}",
        example=lambda: NegativeBinomial(_t(4.0), probs=_t(0.3)),
    ),
    ClosedForm(
        NegativeBinomial,
        ("logits",),
        _negbin_logits,
        r"r\,p",
        example=lambda: NegativeBinomial(_t(4.0), logits=_t(-0.8)),
    ),
    ClosedForm(
        Categorical,
        ("probs",),
        _categorical_probs,
        r"\operatorname{diag}(1/p_{1:K-1}) + \frac{1}{p_K}\mathbf 1\mathbf 1^\top",
        example=lambda: Categorical(probs=_t([0.2, 0.3, 0.5])),
    ),
    ClosedForm(
        Categorical,
        ("logits",),
        _categorical_logits,
        r"\operatorname{diag}(p) - p p^\top",
        example=lambda: Categorical(logits=_t([0.0, 0.4, 0.9])),
    ),
    ClosedForm(
        Multinomial,
        ("probs",),
        _multinomial_probs,
        r"n\big(\operatorname{diag}(1/p_{1:K-1}) + \frac{1}{p_K}\mathbf 1\mathbf 1^\top\big)",
        example=lambda: Multinomial(5, probs=_t([0.2, 0.3, 0.5])),
    ),
    ClosedForm(
        Multinomial,
        ("logits",),
        _multinomial_logits,
        r"n\big(\operatorname{diag}(p) - p p^\top\big)",
        example=lambda: Multinomial(5, logits=_t([0.0, 0.4, 0.9])),
    ),
    ClosedForm(Poisson, ("rate",), _poisson, r"\frac{1}{\lambda}", example=lambda: Poisson(_t(3.0))),
    ClosedForm(Exponential, ("rate",), _exponential, r"\frac{1}{\lambda^2}", example=lambda: Exponential(_t(2.0))),
    ClosedForm(
        Normal,
        ("loc", "scale"),
        _normal,
        r"\operatorname{diag}\Big(\frac{1}{\sigma^2}, \frac{2}{\sigma^2}\Big)",
        example=lambda: Normal(_t(1.0), _t(2.0)),
    ),
    ClosedForm(
        LogNormal,
        ("loc", "scale"),
        _normal,
        r"\operatorname{diag}\Big(\frac{1}{\sigma^2}, \frac{2}{\sigma^2}\Big)",
        example=lambda: LogNormal(_t(0.0), _t(0.5)),
    ),
    ClosedForm(HalfNormal, ("scale",), _halfnormal, r"\frac{2}{\sigma^2}", example=lambda: HalfNormal(_t(2.0))),
    ClosedForm(
        Laplace,
        ("loc", "scale"),
        _laplace,
        r"\operatorname{diag}\Big(\frac{1}{b^2}, \frac{1}{b^2}\Big)",
        example=lambda: Laplace(_t(0.0), _t(2.0)),
    ),
    ClosedForm(
        Cauchy,
        ("loc", "scale"),
        _cauchy,
        r"\operatorname{diag}\Big(\frac{1}{2\gamma^2}, \frac{1}{2\gamma^2}\Big)",
        example=lambda: Cauchy(_t(0.0), _t(2.0)),
    ),
    ClosedForm(
        StudentT,
        ("loc", "scale"),
        _studentt,
        r"\operatorname{diag}\Big(\frac{\nu+1}{(\nu+3)\sigma^2}, \frac{2\nu}{(\nu+3)\sigma^2}\Big)",
        example=lambda: StudentT(_t(4.0), _t(0.0), _t(2.0)),
        held_fixed=("df",),
    ),
    ClosedForm(
        Gamma,
        ("concentration", "rate"),
        _gamma,
        r"\begin{pmatrix}\psi'(\alpha) & -1/\beta\\ -1/\beta & \alpha/\beta^2\end{pmatrix}",
        example=lambda: Gamma(_t(2.0), _t(3.0)),
    ),
    ClosedForm(
        Beta,
        ("concentration1", "concentration0"),
        _beta,
        r"\begin{pmatrix}\psi'(\alpha)-\psi'(\alpha+\beta) & -\psi'(\alpha+\beta)\\"
        r" -\psi'(\alpha+\beta) & \psi'(\beta)-\psi'(\alpha+\beta)\end{pmatrix}",
        example=lambda: Beta(_t(2.0), _t(3.0)),
    ),
    ClosedForm(
        Dirichlet,
        ("concentration",),
        _dirichlet,
        r"\operatorname{diag}\psi'(\alpha) - \psi'\big(\textstyle\sum_i\alpha_i\big)\mathbf 1\mathbf 1^\top",
        example=lambda: Dirichlet(_t([1.0, 2.0, 3.0])),
    ),
    ClosedForm(
        MultivariateNormal,
        ("loc", "covariance_matrix"),
        _mvn("covariance_matrix"),
        r"\Sigma^{-1} \oplus \tfrac12\operatorname{tr}(\Sigma^{-1}\partial_m\Sigma\,\Sigma^{-1}\partial_n\Sigma)",
        example=lambda: MultivariateNormal(_t([0.0, 1.0]), covariance_matrix=_t([[2.0, 0.5], [0.5, 1.0]])),
    ),
    ClosedForm(
        MultivariateNormal,
        ("loc", "precision_matrix"),
        _mvn("precision_matrix"),
        r"\Sigma^{-1} \oplus \tfrac12\operatorname{tr}(P^{-1}\partial_m P\,P^{-1}\partial_n P)",
        example=lambda: MultivariateNormal(_t([0.0, 1.0]), precision_matrix=_t([[2.0, 0.5], [0.5, 1.0]])),
    ),
    ClosedForm(
        MultivariateNormal,
        ("loc", "scale_tril"),
        _mvn("scale_tril"),
        r"\Sigma^{-1} \oplus \tfrac12\operatorname{tr}(\Sigma^{-1}\partial_m\Sigma\,\Sigma^{-1}\partial_n\Sigma),"
        r"\ \Sigma = LL^\top",
        example=lambda: MultivariateNormal(_t([0.0, 1.0]), scale_tril=_t([[1.5, 0.0], [0.5, 1.0]])),
    ),
)


def find_closed_form(family: type, params: Sequence[str]) -> ClosedForm | None:
    """The registered closed form of ``family`` covering all of ``params``, if any.

    Parameters
    ----------
    family : type
        A ``torch.distributions`` class.
    params : Sequence of str
        Parameter names.

    Returns
    -------
    ClosedForm or None

    Examples
    --------
    >>> from torch.distributions import StudentT
    >>> find_closed_form(StudentT, ("loc", "scale")).held_fixed
    ('df',)
    >>> find_closed_form(StudentT, ("df", "loc")) is None
    True
    """
    for cf in CLOSED_FORMS:
        if cf.family is family and set(params) <= set(cf.params):
            return cf
    return None


def _closed_form_resolved(r: _Resolved) -> Tensor:
    cf = find_closed_form(r.cls, r.names)
    if cf is None:
        known = [cf.params for cf in CLOSED_FORMS if cf.family is r.cls]
        hint = (
            f"closed forms exist for {r.cls.__name__} with respect to subsets of {known}; "
            if known
            else f"fisherbook has no closed form for {r.cls.__name__}; "
        )
        raise UnsupportedError(
            f"params={r.names}: {hint}use method='quadrature' for the exact value "
            "(or method='score' / 'hessian' for Monte-Carlo estimates)"
        )
    values = dict(r.values)
    values.update({k: v for k, v in r.fixed.items() if isinstance(v, Tensor)})
    if "total_count" in r.fixed and not isinstance(r.fixed["total_count"], Tensor):
        count: Any = r.fixed["total_count"]  # a Python number here (tensors were handled above)
        values["total_count"] = torch.as_tensor(float(count), dtype=torch.float64)
    full = cf.fisher(values)
    # index of each requested coordinate in the formula's coordinate list
    sizes = {}
    for name in cf.params:
        v = r.values[name]
        c = r.dist.arg_constraints[name]
        ev = _event_dim(c)
        sizes[name] = _n_coords(c, v.shape[v.dim() - ev :] if ev else torch.Size())
    offsets, start = {}, 0
    for name in cf.params:
        offsets[name] = start
        start += sizes[name]
    idx = torch.cat([torch.arange(offsets[n], offsets[n] + sizes[n]) for n in r.names])
    out = full[..., idx[:, None], idx[None, :]]
    return out.expand(r.batch_shape + out.shape[-2:]).clone()


def closed_form_fisher(dist: Distribution, params: str | Sequence[str] | None = None) -> Tensor:
    r"""Closed-form Fisher information of a distribution (per observation).

    Parameters
    ----------
    dist : torch.distributions.Distribution
        One of the families in :data:`CLOSED_FORMS`.
    params : str or Sequence of str, optional
        Constructor parameters to differentiate, any subset in any order; default
        :func:`fisherbook.stats.estimators.parameter_names`. The others are held fixed.

    Returns
    -------
    torch.Tensor
        float64, shape ``dist.batch_shape + (k, k)``.

    Raises
    ------
    UnsupportedError
        If no closed form covers ``params`` (the message suggests ``method="quadrature"``).
    InvalidArgumentError
        For invalid parameter values; :class:`~fisherbook.errors.OffManifoldError` (a subclass)
        on the boundary of the parameter space, where the information is infinite (``probs=0``).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> closed_form_fisher(Normal(0.0, 2.0))
    tensor([[0.2500, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    r = resolve(dist, params)
    out = _closed_form_resolved(r)
    check_information_finite(out, r.cls.__name__)
    return out


def check_information_finite(out: Tensor, family: str) -> None:
    """Raise :class:`~fisherbook.errors.OffManifoldError` for an infinite or undefined Fisher information."""
    if not bool(torch.isfinite(out).all()):
        raise OffManifoldError(
            f"the Fisher information of {family} is infinite or undefined at these parameter values "
            "(e.g. probs of exactly 0 or 1); move them inside the open parameter space"
        )
