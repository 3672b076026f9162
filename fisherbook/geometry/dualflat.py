r"""The dually flat geometry of exponential families.

An exponential family :math:`p_\theta(x) = h(x)\exp(\theta^\top T(x) - \psi(\theta))` has two
affine coordinate systems (Amari 2016, ch. 6; Nielsen 2020):

- the **natural** parameters :math:`\theta`, in which the log-partition :math:`\psi` is convex and
  :math:`I(\theta) = \nabla^2\psi(\theta)`;
- the **expectation** parameters :math:`\eta = \nabla\psi(\theta) = \operatorname{E}_\theta[T(X)]`,
  in which the dual potential :math:`\varphi(\eta) = \theta^\top\eta - \psi(\theta)` (the negative
  entropy up to the base measure) is convex.

The KL divergence is the Bregman divergence of either potential,

.. math::

    \mathrm{KL}(p_{\theta_1} \,\|\, p_{\theta_2}) = B_\psi(\theta_2, \theta_1)
    = B_\varphi(\eta_1, \eta_2)
    = \psi(\theta_2) + \varphi(\eta_1) - \theta_2^\top \eta_1,

and KL projections obey a Pythagorean relation: if :math:`q^\star` is the m-projection of
:math:`p` onto an exponential family :math:`\mathcal E` (the member with the same
:math:`\operatorname{E}[T]`), then :math:`\mathrm{KL}(p\,\|\,r) = \mathrm{KL}(p\,\|\,q^\star) +
\mathrm{KL}(q^\star\,\|\,r)` for every :math:`r \in \mathcal E`.

Families: Bernoulli, Binomial, Poisson, Exponential, Geometric, Normal, Gamma, Beta, Categorical,
Multinomial (``total_count`` held fixed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Distribution,
    Exponential,
    Gamma,
    Geometric,
    Multinomial,
    Normal,
    Poisson,
)

from .._numerics import newton
from .._validate import check_callable, check_distribution, check_tensor
from ..errors import ArgumentTypeError, ConvergenceError, InvalidArgumentError, OffManifoldError, ShapeError

__all__ = [
    "natural_parameters",
    "expectation_parameters",
    "log_partition",
    "dual_potential",
    "from_natural",
    "from_expectation",
    "bregman_divergence",
    "kl_bregman",
    "m_projection",
    "e_projection",
    "canonical_divergence",
]

DTYPE = torch.float64


@dataclass(frozen=True)
class _ExpFam:
    natural: Callable[[Any], Tensor]  # theta, batch + (k,), from a distribution of the family
    psi: Callable[[Tensor, Any], Tensor]  # log-partition psi(theta; n), batch
    build: Callable[[Tensor, Any], Distribution]  # distribution from theta
    mean: Callable[[Tensor, Any], Tensor]  # closed-form eta = grad psi(theta)
    theta_of_eta: Callable[[Tensor, Any], Tensor] | None  # closed-form inverse, if any


def _f(x: Any) -> Tensor:
    return torch.as_tensor(x).to(DTYPE)


def _last(x: Tensor) -> Tensor:
    return x.unsqueeze(-1)


def _categorical_natural(d: Any) -> Tensor:
    p = _f(d.probs)
    if not (p > 0).all():
        raise OffManifoldError(f"{type(d).__name__}: probs must be > 0 for natural parameters, got {p}")
    return (p[..., :-1] / p[..., -1:]).log()


def _cat_logits(theta: Tensor) -> Tensor:
    return torch.cat([theta, torch.zeros_like(theta[..., :1])], dim=-1)


_FAMILIES: dict[type, _ExpFam] = {
    Bernoulli: _ExpFam(
        natural=lambda d: _last(_f(d.logits)),
        psi=lambda t, n: F.softplus(t[..., 0]),
        build=lambda t, n: Bernoulli(logits=t[..., 0]),
        mean=lambda t, n: torch.sigmoid(t),
        theta_of_eta=lambda e, n: torch.logit(e),
    ),
    Binomial: _ExpFam(
        natural=lambda d: _last(_f(d.logits)),
        psi=lambda t, n: n * F.softplus(t[..., 0]),
        build=lambda t, n: Binomial(n, logits=t[..., 0]),
        mean=lambda t, n: n.unsqueeze(-1) * torch.sigmoid(t),
        theta_of_eta=lambda e, n: torch.logit(e / n.unsqueeze(-1)),
    ),
    Poisson: _ExpFam(
        natural=lambda d: _last(_f(d.rate).log()),
        psi=lambda t, n: t[..., 0].exp(),
        build=lambda t, n: Poisson(t[..., 0].exp()),
        mean=lambda t, n: t.exp(),
        theta_of_eta=lambda e, n: e.log(),
    ),
    Exponential: _ExpFam(  # T(x) = x, theta = -rate
        natural=lambda d: _last(-_f(d.rate)),
        psi=lambda t, n: -(-t[..., 0]).log(),
        build=lambda t, n: Exponential(-t[..., 0]),
        mean=lambda t, n: -1 / t,
        theta_of_eta=lambda e, n: -1 / e,
    ),
    Geometric: _ExpFam(  # p(k) = (1-p)^k p, T(k) = k, theta = log(1-p)
        natural=lambda d: _last(torch.log1p(-_f(d.probs))),
        psi=lambda t, n: -torch.log(-torch.expm1(t[..., 0])),
        build=lambda t, n: Geometric(probs=-torch.expm1(t[..., 0])),
        mean=lambda t, n: t.exp() / -torch.expm1(t),
        theta_of_eta=lambda e, n: torch.log(e / (1 + e)),
    ),
    Normal: _ExpFam(  # T(x) = (x, x^2), theta = (mu/sigma^2, -1/(2 sigma^2))
        natural=lambda d: torch.stack(
            torch.broadcast_tensors(_f(d.loc) / _f(d.scale) ** 2, -0.5 / _f(d.scale) ** 2), -1
        ),
        psi=lambda t, n: -t[..., 0] ** 2 / (4 * t[..., 1]) - 0.5 * torch.log(-2 * t[..., 1]),
        build=lambda t, n: Normal(-t[..., 0] / (2 * t[..., 1]), (-0.5 / t[..., 1]).sqrt()),
        mean=lambda t, n: torch.stack(
            [-t[..., 0] / (2 * t[..., 1]), t[..., 0] ** 2 / (4 * t[..., 1] ** 2) - 0.5 / t[..., 1]], -1
        ),
        theta_of_eta=lambda e, n: torch.stack(
            [e[..., 0] / (e[..., 1] - e[..., 0] ** 2), -0.5 / (e[..., 1] - e[..., 0] ** 2)], -1
        ),
    ),
    Gamma: _ExpFam(  # T(x) = (log x, x), theta = (alpha - 1, -beta)
        natural=lambda d: torch.stack(torch.broadcast_tensors(_f(d.concentration) - 1, -_f(d.rate)), -1),
        psi=lambda t, n: torch.lgamma(t[..., 0] + 1) - (t[..., 0] + 1) * torch.log(-t[..., 1]),
        build=lambda t, n: Gamma(t[..., 0] + 1, -t[..., 1]),
        mean=lambda t, n: torch.stack(
            [torch.digamma(t[..., 0] + 1) - torch.log(-t[..., 1]), -(t[..., 0] + 1) / t[..., 1]], -1
        ),
        theta_of_eta=None,
    ),
    Beta: _ExpFam(  # T(x) = (log x, log(1-x)), theta = (a - 1, b - 1)
        natural=lambda d: torch.stack(torch.broadcast_tensors(_f(d.concentration1) - 1, _f(d.concentration0) - 1), -1),
        psi=lambda t, n: (
            torch.lgamma(t[..., 0] + 1) + torch.lgamma(t[..., 1] + 1) - torch.lgamma(t[..., 0] + t[..., 1] + 2)
        ),
        build=lambda t, n: Beta(t[..., 0] + 1, t[..., 1] + 1),
        mean=lambda t, n: torch.stack(
            [
                torch.digamma(t[..., 0] + 1) - torch.digamma(t[..., 0] + t[..., 1] + 2),
                torch.digamma(t[..., 1] + 1) - torch.digamma(t[..., 0] + t[..., 1] + 2),
            ],
            -1,
        ),
        theta_of_eta=None,
    ),
    Categorical: _ExpFam(  # T(x) = one-hot of the first K-1 categories, theta_i = log(p_i / p_K)
        natural=_categorical_natural,
        psi=lambda t, n: torch.logsumexp(_cat_logits(t), dim=-1),
        build=lambda t, n: Categorical(logits=_cat_logits(t)),
        mean=lambda t, n: torch.softmax(_cat_logits(t), dim=-1)[..., :-1],
        theta_of_eta=lambda e, n: (e / (1 - e.sum(-1, keepdim=True))).log(),
    ),
    Multinomial: _ExpFam(
        natural=_categorical_natural,
        psi=lambda t, n: n * torch.logsumexp(_cat_logits(t), dim=-1),
        build=lambda t, n: Multinomial(int(n), logits=_cat_logits(t)),
        mean=lambda t, n: n * torch.softmax(_cat_logits(t), dim=-1)[..., :-1],
        theta_of_eta=lambda e, n: ((e / n) / (1 - (e / n).sum(-1, keepdim=True))).log(),
    ),
}


def _family(d: Any) -> tuple[_ExpFam, Any]:
    cls = d if isinstance(d, type) else type(d)
    spec = _FAMILIES.get(cls)
    if spec is None:
        raise ArgumentTypeError(
            f"{getattr(cls, '__name__', cls)} is not one of the exponential families handled here: "
            f"{', '.join(c.__name__ for c in _FAMILIES)}"
        )
    n = None
    if not isinstance(d, type) and cls in (Binomial, Multinomial):
        n = torch.as_tensor(d.total_count, dtype=DTYPE)
    return spec, n


def _check_dist(d: Any) -> Distribution:
    return check_distribution(d, "dist")


def natural_parameters(dist: Distribution) -> Tensor:
    r"""Natural parameters :math:`\theta` of an exponential-family distribution, shape ``batch + (k,)``.

    Conventions (sufficient statistic :math:`T`): Bernoulli / Binomial :math:`\operatorname{logit} p`
    (:math:`T = x`); Poisson :math:`\log\lambda`; Exponential :math:`-\lambda`; Geometric
    :math:`\log(1-p)`; Normal :math:`(\mu/\sigma^2, -1/(2\sigma^2))` with :math:`T = (x, x^2)`;
    Gamma :math:`(\alpha - 1, -\beta)` with :math:`T = (\log x, x)`; Beta :math:`(a-1, b-1)` with
    :math:`T = (\log x, \log(1-x))`; Categorical / Multinomial :math:`\log(p_i/p_K)`, :math:`i < K`,
    with :math:`T` the counts of the first :math:`K-1` categories.

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> natural_parameters(Normal(1.0, 2.0))
    tensor([ 0.2500, -0.1250], dtype=torch.float64)
    """
    spec, _ = _family(_check_dist(dist))
    return spec.natural(dist)


def log_partition(family: Any, theta: Any) -> Tensor:
    r"""Log-partition function :math:`\psi(\theta)` (without base-measure constants), differentiable in ``theta``.

    Parameters
    ----------
    family : Distribution or type
        A distribution (which fixes ``total_count``) or a family class.
    theta : Tensor
        Natural parameters, shape ``batch + (k,)``.

    Examples
    --------
    >>> from torch.distributions import Poisson
    >>> log_partition(Poisson, torch.tensor([0.0]))   # psi(theta) = exp(theta)
    tensor(1., dtype=torch.float64)
    """
    spec, n = _family(family)
    if n is None and family in (Binomial, Multinomial):
        raise ArgumentTypeError("pass a Binomial / Multinomial instance, which fixes total_count")
    return spec.psi(check_tensor(theta, "theta", dtype=DTYPE), n)


def expectation_parameters(dist: Distribution) -> Tensor:
    r"""Expectation parameters :math:`\eta = \nabla\psi(\theta) = \operatorname{E}[T(X)]`, shape ``batch + (k,)``.

    Computed in closed form (tested against the gradient of :func:`log_partition`).

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> expectation_parameters(Normal(1.0, 2.0))   # (E X, E X^2)
    tensor([1., 5.], dtype=torch.float64)
    """
    spec, n = _family(_check_dist(dist))
    return spec.mean(spec.natural(dist), n)


def dual_potential(dist: Distribution) -> Tensor:
    r"""Dual potential :math:`\varphi(\eta) = \theta^\top\eta - \psi(\theta)`, the convex conjugate of :math:`\psi`.

    Up to the base measure it is the negative entropy: :math:`\varphi(\eta) = -H(p) - \operatorname{E}[\log h(X)]`.

    Examples
    --------
    >>> from torch.distributions import Bernoulli
    >>> p = torch.tensor(0.3)
    >>> phi = dual_potential(Bernoulli(p))   # p log p + (1-p) log(1-p)
    >>> bool(torch.isclose(phi, (p * p.log() + (1 - p) * (1 - p).log()).double()))
    True
    """
    spec, n = _family(_check_dist(dist))
    theta = spec.natural(dist)
    return (theta * spec.mean(theta, n)).sum(-1) - spec.psi(theta, n)


def from_natural(family: Any, theta: Any) -> Distribution:
    r"""The distribution with natural parameters ``theta`` (inverse of :func:`natural_parameters`).

    Parameters
    ----------
    family : Distribution or type
        Family (an instance for Binomial / Multinomial, which fixes ``total_count``).
    theta : Tensor
        Shape ``batch + (k,)``; must lie in the natural parameter space (e.g. :math:`\theta_2 < 0`
        for the Normal), else :class:`~fisherbook.errors.OffManifoldError`.

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> q = from_natural(Normal, torch.tensor([0.25, -0.125]))
    >>> q.loc.item(), q.scale.item()
    (1.0, 2.0)
    """
    spec, n = _family(family)
    theta = torch.as_tensor(theta, dtype=DTYPE)
    psi = spec.psi(theta, n) if n is not None or family not in (Binomial, Multinomial) else None
    if psi is None:
        raise ArgumentTypeError("pass a Binomial / Multinomial instance, which fixes total_count")
    if not torch.isfinite(psi).all():
        raise OffManifoldError(f"theta is outside the natural parameter space of the family: {theta}")
    try:
        return spec.build(theta, n)
    except ValueError as err:
        raise OffManifoldError(f"theta is outside the natural parameter space of the family: {err}") from err


def from_expectation(family: Any, eta: Any, *, tol: float = 1e-12, max_iter: int = 100) -> Distribution:
    r"""The distribution with expectation parameters ``eta`` (solving :math:`\nabla\psi(\theta) = \eta`).

    Closed forms where they exist; otherwise (Gamma, Beta) Newton's method on the convex
    :math:`\psi(\theta) - \theta^\top\eta`, whose Hessian is the Fisher information.

    Parameters
    ----------
    family : Distribution or type
        As for :func:`from_natural`.
    eta : Tensor
        Shape ``batch + (k,)``, in the interior of the convex hull of :math:`T`'s support.
    tol, max_iter : float, int
        Newton tolerance on :math:`\|\nabla\psi(\theta) - \eta\|_\infty` and iteration cap.

    Examples
    --------
    >>> from torch.distributions import Gamma
    >>> g = Gamma(torch.tensor(3.0), torch.tensor(2.0))
    >>> back = from_expectation(Gamma, expectation_parameters(g))
    >>> round(back.concentration.item(), 8), round(back.rate.item(), 8)
    (3.0, 2.0)
    """
    spec, n = _family(family)
    eta = torch.as_tensor(eta, dtype=DTYPE)
    if not torch.isfinite(eta).all():
        raise OffManifoldError(f"eta must be finite, got {eta}")
    if spec.theta_of_eta is not None:
        if family in (Binomial, Multinomial) and n is None:
            raise ArgumentTypeError("pass a Binomial / Multinomial instance, which fixes total_count")
        theta = spec.theta_of_eta(eta, n)
        if not torch.isfinite(theta).all():
            raise OffManifoldError(f"eta is not a valid expectation parameter of the family: {eta}")
        return from_natural(family, theta)
    # Newton on the strictly convex f(theta) = psi(theta) - theta . eta
    cls = family if isinstance(family, type) else type(family)
    if cls is Gamma:  # E[x] = a/b, E[log x] = digamma(a) - log b; start from a moment guess
        m = eta[..., 1]
        gap = torch.log(m) - eta[..., 0]
        if not (m > 0).all() or not (gap > 0).all():
            raise OffManifoldError("Gamma: eta must satisfy E[x] > 0 and log E[x] > E[log x] (Jensen)")
        a = (3 - gap + ((gap - 3) ** 2 + 24 * gap).sqrt()) / (12 * gap)  # Minka's approximation
        theta = torch.stack([a - 1, -a / m], -1)
    else:  # Beta
        if not ((eta < 0).all()):
            raise OffManifoldError("Beta: eta = (E log x, E log(1-x)) must be negative")
        theta = torch.zeros_like(eta)
    def derivatives(th: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        th = th.detach().requires_grad_(True)
        with torch.enable_grad():
            f = spec.psi(th, n) - (th * eta).sum(-1)
            grad = torch.autograd.grad(f.sum(), th, create_graph=True)[0]
            hess = torch.stack(
                [torch.autograd.grad(grad[..., i].sum(), th, retain_graph=True)[0] for i in range(th.shape[-1])], -2
            )
        return f.detach(), grad.detach(), hess.detach()

    def value(th: Tensor) -> Tensor:
        return spec.psi(th, n) - (th * eta).sum(-1)

    res = newton(derivatives, value, theta, tol=tol, max_iter=max_iter, criterion="gradient")
    if not bool(res.converged.all()):
        raise ConvergenceError(
            f"from_expectation did not converge in {max_iter} Newton steps (residual {res.grad.abs().max():.2e}); "
            "eta may be near the boundary of the expectation space"
        )
    return from_natural(family, res.x)


def bregman_divergence(potential: Callable[[Tensor], Tensor], x: Any, y: Any) -> Tensor:
    r"""Bregman divergence :math:`B_F(x, y) = F(x) - F(y) - \nabla F(y)^\top (x - y)` of a convex potential.

    The gradient is taken by torch autograd, so ``potential`` must be written in torch and map
    ``batch + (k,)`` to ``batch``.

    Examples
    --------
    For :math:`F(z) = \|z\|^2` it is the squared Euclidean distance:

    >>> bregman_divergence(lambda z: (z ** 2).sum(-1), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    tensor(5., dtype=torch.float64)
    """
    check_callable(potential, "potential", "a callable batch + (k,) -> batch")
    x = check_tensor(x, "x", dtype=DTYPE)
    y = check_tensor(y, "y", dtype=DTYPE).detach().requires_grad_(True)
    if x.shape[-1:] != y.shape[-1:]:
        raise ShapeError(f"x and y must have the same last dimension, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    with torch.enable_grad():
        fy = potential(y)
        (grad,) = torch.autograd.grad(fy.sum(), y)
    return potential(x) - fy.detach() - (grad * (x - y.detach())).sum(-1)


def kl_bregman(p: Distribution, q: Distribution) -> Tensor:
    r"""KL divergence of two members of an exponential family as a Bregman divergence.

    The divergence is :math:`B_\psi(\theta_q, \theta_p)`.

    .. math::

        \mathrm{KL}(p\,\|\,q) = \psi(\theta_q) - \psi(\theta_p) - \eta_p^\top(\theta_q - \theta_p).

    Examples
    --------
    >>> from torch.distributions import Normal, kl_divergence
    >>> p, q = Normal(0.0, 1.0), Normal(1.0, 2.0)
    >>> bool(torch.isclose(kl_bregman(p, q), kl_divergence(p, q).double()))
    True
    """
    if type(p) is not type(q):
        raise ArgumentTypeError(f"p and q must be of the same family, got {type(p).__name__} and {type(q).__name__}")
    spec, n = _family(_check_dist(p))
    if n is not None:
        n2 = torch.as_tensor(q.total_count, dtype=DTYPE)  # type: ignore[attr-defined]  # Binomial/Multinomial
        if not torch.equal(*torch.broadcast_tensors(n, n2)):
            raise InvalidArgumentError("total_count must be equal for p and q")
    tp, tq = spec.natural(p), spec.natural(q)
    return spec.psi(tq, n) - spec.psi(tp, n) - (spec.mean(tp, n) * (tq - tp)).sum(-1)


def m_projection(
    probs: Any,
    statistics: Any,
    base: Any | None = None,
    *,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    r"""m-projection of a distribution on a finite set onto an exponential family: moment matching.

    The family is :math:`q_\theta(x) \propto h(x)\exp(\theta^\top T(x))` on :math:`x = 0, \dots, K-1`.
    The minimiser of :math:`\mathrm{KL}(p\,\|\,q_\theta)` is the member with
    :math:`\operatorname{E}_{q}[T] = \operatorname{E}_p[T]`, found by Newton's method on the convex
    :math:`\psi(\theta) - \theta^\top\operatorname{E}_p[T]` (Hessian :math:`\operatorname{Cov}_q[T]`,
    the Fisher information). It satisfies the Pythagorean relation
    :math:`\mathrm{KL}(p\,\|\,r) = \mathrm{KL}(p\,\|\,q^\star) + \mathrm{KL}(q^\star\,\|\,r)` for every
    member :math:`r` of the family.

    Parameters
    ----------
    probs : Tensor
        :math:`p`, shape ``(K,)``, on the simplex.
    statistics : Tensor
        :math:`T`, shape ``(K, d)`` (or ``(K,)`` for :math:`d = 1`), with affinely independent columns.
    base : Tensor, optional
        Base measure :math:`h`, shape ``(K,)``, positive; default all ones.
    tol, max_iter : float, int
        Newton tolerance on the moment mismatch and iteration cap.

    Returns
    -------
    (Tensor, Tensor)
        The projected probabilities :math:`q^\star` (``(K,)``) and :math:`\theta^\star` (``(d,)``).

    Raises
    ------
    OffManifoldError
        If ``probs`` is off the simplex or ``base`` is not positive.
    InvalidArgumentError
        If :math:`\operatorname{E}_p[T]` lies on the boundary of the convex hull of :math:`T`
        (the projection is at infinity), or the statistics are degenerate.

    Examples
    --------
    Projecting onto Binomial(2, .) — base measure (1, 2, 1), :math:`T(x) = x` — matches the mean:

    >>> q, theta = m_projection(torch.tensor([0.5, 0.1, 0.4], dtype=torch.float64), torch.tensor([0.0, 1.0, 2.0]),
    ...                         base=torch.tensor([1.0, 2.0, 1.0]))
    >>> round(float((q * torch.arange(3.0)).sum()), 10)   # E_q[x] = E_p[x] = 0.9
    0.9
    """
    p = torch.as_tensor(probs, dtype=DTYPE)
    if p.ndim != 1 or p.shape[0] < 2 or (p < 0).any() or abs(float(p.sum()) - 1) > 1e-6:
        raise OffManifoldError(f"probs must be a 1-D probability vector on the simplex, got {p}")
    p = p / p.sum()  # float32 input sums to 1 only to ~1e-7
    T = torch.as_tensor(statistics, dtype=DTYPE)
    if T.ndim == 1:
        T = T.unsqueeze(-1)
    if T.ndim != 2 or T.shape[0] != p.shape[0]:
        raise ShapeError(f"statistics must have shape (K, d) with K = {p.shape[0]}, got {tuple(T.shape)}")
    logh = torch.zeros_like(p) if base is None else torch.as_tensor(base, dtype=DTYPE).log()
    if base is not None and (logh.shape != p.shape or not torch.isfinite(logh).all()):
        raise OffManifoldError("base must be a positive vector of the same length as probs")
    return _moment_match(logh, T, p @ T, tol, max_iter, "m_projection", "E_p[T]")


def _moment_match(logh: Tensor, T: Tensor, target: Tensor, tol: float, max_iter: int, who: str,
                  what: str, min_prob: float = 1e-12) -> tuple[Tensor, Tensor]:
    """The member q of {h exp(theta . T - psi)} on a finite set with E_q[T] = target, by Newton's method.

    A solution with a probability below ``min_prob`` (or a huge parameter) is taken as a projection at
    infinity and refused; callers whose solutions legitimately hold tiny probabilities pass 0."""
    centred = T - T.mean(0)
    if torch.linalg.matrix_rank(centred) < T.shape[1]:
        raise InvalidArgumentError("statistics are degenerate: their columns are affinely dependent on the support")
    scale = max(1.0, float(T.abs().max()))

    def derivatives(th: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits = logh + T @ th
        q = torch.softmax(logits, 0)
        mean = q @ T
        cov = (T - mean).T @ ((T - mean) * q[:, None])
        return torch.logsumexp(logits, 0) - th @ target, mean - target, cov

    def value(th: Tensor) -> Tensor:
        return torch.logsumexp(logh + T @ th, 0) - th @ target

    # the moment mismatch is measured relative to the size of the statistics: its round-off
    # floor is about eps * max|T|, so an absolute 1e-12 could not be reached for T = x**2 on 0..4
    res = newton(derivatives, value, torch.zeros(T.shape[1], dtype=DTYPE), tol=tol * scale, max_iter=max_iter,
                 criterion="gradient")
    q = torch.softmax(logh + T @ res.x, 0)
    if bool(res.converged) and not bool((q < min_prob).any()) and bool(res.x.abs().max() < 1e6):
        return q, res.x
    raise InvalidArgumentError(
        f"{who} did not converge: {what} is (nearly) on the boundary of the convex hull of the "
        "statistics, so the projection lies at infinity"
    )


def e_projection(probs: Any, statistics: Any, target: Any, *, tol: float = 1e-12,
                 max_iter: int = 200) -> tuple[Tensor, Tensor]:
    r"""e-projection of a distribution on a finite set onto the m-flat family :math:`\{q : \operatorname{E}_q[T] = c\}`.

    The minimiser of :math:`\mathrm{KL}(q\,\|\,p)` over the linear family :math:`\mathcal M = \{q :
    \operatorname{E}_q[T] = c\}` (the I-projection of Csiszár 1975; maximum entropy relative to :math:`p`) is the
    exponential tilt :math:`q^\star(x) \propto p(x)\exp(\lambda^\top T(x))` with :math:`\lambda` chosen so that
    :math:`\operatorname{E}_{q^\star}[T] = c`: the e-geodesic from :math:`p` meets :math:`\mathcal M` orthogonally.
    The dual Pythagorean relation :math:`\mathrm{KL}(r\,\|\,p) = \mathrm{KL}(r\,\|\,q^\star) +
    \mathrm{KL}(q^\star\,\|\,p)` holds for every :math:`r \in \mathcal M`.

    Parameters
    ----------
    probs : Tensor
        :math:`p`, shape ``(K,)``, strictly positive on the simplex.
    statistics : Tensor
        :math:`T`, shape ``(K, d)`` (or ``(K,)``), affinely independent columns.
    target : Tensor
        :math:`c`, shape ``(d,)`` (or a scalar), in the interior of the convex hull of the rows of :math:`T`.
    tol, max_iter : float, int
        Newton tolerance on the moment mismatch and iteration cap.

    Returns
    -------
    (Tensor, Tensor)
        :math:`q^\star` (``(K,)``) and the tilt :math:`\lambda` (``(d,)``).

    Raises
    ------
    OffManifoldError
        If ``probs`` is not a strictly positive probability vector.
    InvalidArgumentError
        If ``target`` is on or outside the boundary of the convex hull (the constraint set touches the
        boundary of the simplex or is empty), or the statistics are degenerate.

    Examples
    --------
    Tilting the uniform distribution on a die to mean 4.5 (Jaynes' dice):

    >>> q, lam = e_projection(torch.full((6,), 1 / 6, dtype=torch.float64), torch.arange(1.0, 7.0), 4.5)
    >>> round(float(q @ torch.arange(1.0, 7.0, dtype=torch.float64)), 10)
    4.5
    """
    p = torch.as_tensor(probs, dtype=DTYPE)
    if p.ndim != 1 or p.shape[0] < 2 or not bool((p > 0).all()) or abs(float(p.sum()) - 1) > 1e-6:
        raise OffManifoldError(f"probs must be a strictly positive 1-D probability vector, got {p}")
    p = p / p.sum()
    T = check_tensor(statistics, "statistics", dtype=DTYPE)
    if T.ndim == 1:
        T = T.unsqueeze(-1)
    if T.ndim != 2 or T.shape[0] != p.shape[0]:
        raise ShapeError(f"statistics must have shape (K, d) with K = {p.shape[0]}, got {tuple(T.shape)}")
    c = check_tensor(target, "target", dtype=DTYPE).reshape(-1)
    if c.shape[0] != T.shape[1]:
        raise ShapeError(f"target must have {T.shape[1]} entries (one per statistic), got {c.shape[0]}")
    return _moment_match(p.log(), T, c, tol, max_iter, "e_projection", "target")


def canonical_divergence(p: Distribution, q: Distribution) -> Tensor:
    r"""Canonical divergence of the dually flat structure.

    :math:`D(p, q) = \psi(\theta_p) + \varphi(\eta_q) - \theta_p^\top\eta_q`.

    Defined from the two potentials and the two affine coordinate systems alone (Amari & Nagaoka 2000,
    §3.4). It is non-negative, zero only at :math:`p = q` (Fenchel–Young), equals the Bregman divergence
    :math:`B_\psi(\theta_p, \theta_q) = B_\varphi(\eta_q, \eta_p)`, and on an exponential family it is the KL
    divergence :math:`\mathrm{KL}(q\,\|\,p)` — with the arguments in this order.

    Examples
    --------
    >>> from torch.distributions import Poisson, kl_divergence
    >>> p, q = Poisson(torch.tensor(2.0)), Poisson(torch.tensor(5.0))
    >>> bool(torch.isclose(canonical_divergence(p, q), kl_divergence(q, p).double()))
    True
    """
    if type(p) is not type(q):
        raise ArgumentTypeError(f"p and q must be of the same family, got {type(p).__name__} and {type(q).__name__}")
    spec, n = _family(_check_dist(p))
    _check_dist(q)
    if n is not None:
        n2 = torch.as_tensor(q.total_count, dtype=DTYPE)  # type: ignore[attr-defined]  # Binomial/Multinomial
        if not torch.equal(*torch.broadcast_tensors(n, n2)):
            raise InvalidArgumentError("total_count must be equal for p and q")
    tp, tq = spec.natural(p), spec.natural(q)
    eq = spec.mean(tq, n)
    phi_q = (tq * eq).sum(-1) - spec.psi(tq, n)
    return spec.psi(tp, n) + phi_q - (tp * eq).sum(-1)
