r"""Maximum likelihood: :func:`mle` (batched damped Newton), :class:`MLEResult`, :func:`sandwich_covariance`.

Chapter 3. Each leading axis of the data is a separate data set, fitted in parallel in the
unconstrained coordinates of ``torch.distributions.transform_to``; the result carries observed,
expected and sandwich (Huber–White) covariances.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints, transform_to

from .._numerics import newton, spd_inverse
from .._validate import check_int, check_option, check_real, check_tensor
from ..errors import ArgumentTypeError, ConvergenceError, InvalidArgumentError, ShapeError, UnsupportedError

__all__ = ["MLEResult", "mle", "sandwich_covariance"]

DTYPE = torch.float64


def _tensor(value: Any, name: str) -> Tensor:
    return check_tensor(value, name, dtype=DTYPE)


Family = type[Distribution] | Callable[..., Distribution]


def _is_dist_class(family: Any) -> bool:
    return isinstance(family, type) and issubclass(family, Distribution)


def _constraint_of(family: Any, name: str, given: Mapping[str, Any] | None) -> Any:
    if given is not None and name in given:
        return given[name]
    if _is_dist_class(family):
        table = family.arg_constraints
        if not isinstance(table, Mapping):  # a property: constraints depend on other parameters
            raise UnsupportedError(
                f"the constraint of {name!r} in {family.__name__} depends on other parameters; "
                "pass a callable family with explicit constraints instead"
            )
        if name not in table:
            raise InvalidArgumentError(
                f"{name!r} is not a parameter of {family.__name__}; its parameters are {tuple(table)}"
            )
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
        ArgumentTypeError
            If the model was given as a callable (the expected information of a regression
            model is not a function of the family alone).
        """
        if not _is_dist_class(self._model.family):
            raise UnsupportedError("expected_information needs a torch.distributions class as family")
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
            return spd_inverse(self.observed_information, "observed information")
        if kind == "expected":
            return spd_inverse(self.expected_information(), "expected information")
        if kind == "sandwich":
            return sandwich_covariance(self.scores(), self.observed_information)
        check_option(kind, "kind", ("observed", "expected", "sandwich"))
        raise AssertionError("unreachable")  # pragma: no cover

    def standard_errors(self, kind: str = "observed") -> Tensor:
        """Square roots of the diagonal of :meth:`covariance`, shape ``(*batch, k)``."""
        return self.covariance(kind).diagonal(dim1=-2, dim2=-1).sqrt()


def _prepare(
    family: Any, x: Any, names: tuple[str, ...], fixed: Mapping[str, Any] | None, constraints_: Mapping[str, Any] | None
) -> _Model:
    if not (_is_dist_class(family) or callable(family)):
        raise ArgumentTypeError(
            f"family must be a torch.distributions class or a callable, got "
            f"{type(family).__name__}"
        )
    xt = check_tensor(x, "x", dtype=DTYPE, nonempty=False)
    if xt.dim() < 1 or xt.shape[-1] < 1:
        raise ShapeError(f"x must have shape (*batch, n) with n >= 1, got {tuple(xt.shape)}")
    fixed_t = {
        k: (v.to(DTYPE) if isinstance(v, Tensor) and v.is_floating_point() else v) for k, v in (fixed or {}).items()
    }
    transforms = []
    for name in names:
        c = _constraint_of(family, name, constraints_)
        try:
            transforms.append(transform_to(c))
        except NotImplementedError as err:
            raise UnsupportedError(f"parameter {name!r} has constraint {c} with no unconstrained transform") from err
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
    InvalidArgumentError
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
        raise InvalidArgumentError("init must be a non-empty mapping from parameter name to starting value")
    tol = check_real(tol, "tol", low=0.0, open_low=True)
    max_iter = check_int(max_iter, "max_iter")
    names = tuple(init)
    model = _prepare(family, x, names, fixed, constraints)
    batch = model.x.shape[:-1]
    n = model.x.shape[-1]
    theta0 = []
    for name, tr in zip(names, model.transforms):
        v = torch.as_tensor(init[name], dtype=DTYPE).expand(batch).clone()
        if not bool(tr.codomain.check(v).all()):
            raise InvalidArgumentError(f"init[{name!r}] = {v} is outside the parameter's constraint {tr.codomain}")
        theta0.append(v)
    # validate the data against the support once, with validation switched on
    try:
        lp0 = model.logp(theta0, validate=True)
    except ValueError as err:
        raise InvalidArgumentError(f"x is outside the support of the family at init: {err}") from err
    if not torch.isfinite(lp0).all():
        raise InvalidArgumentError("init gives a non-finite log-likelihood; check x against the family's support")
    u = [tr.inv(v) for tr, v in zip(model.transforms, theta0)]

    def f_u(us: list[Tensor]) -> Tensor:
        return model.loglik([tr(ui) for tr, ui in zip(model.transforms, us)])

    def objective(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # minimise -loglik in u
        val, g, H = _grad_hess(f_u, list(x.unbind(-1)))
        return -val, -g, -H

    def value(x: Tensor) -> Tensor:
        return -f_u(list(x.unbind(-1)))

    res = newton(objective, value, torch.stack(u, dim=-1), tol=tol, max_iter=max_iter, criterion="decrement")
    u = list(res.x.unbind(-1))
    it = res.n_iter
    done = res.converged
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
    InvalidArgumentError
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
    S = check_tensor(scores, "scores", dtype=DTYPE, nonempty=False)
    A = _tensor(information, "information")
    if S.dim() < 2 or A.dim() < 2 or A.shape[-1] != A.shape[-2] or S.shape[-1] != A.shape[-1]:
        raise ShapeError(
            f"scores must be (..., n, k) and information (..., k, k) with the same k; "
            f"got {tuple(S.shape)} and {tuple(A.shape)}"
        )
    if S.shape[-2] == 0 or S.shape[-1] == 0:
        raise ShapeError(f"scores must hold at least one observation and one parameter, got shape {tuple(S.shape)}")
    Ainv = spd_inverse(A, "information")
    B = S.transpose(-1, -2) @ S
    return Ainv @ B @ Ainv

