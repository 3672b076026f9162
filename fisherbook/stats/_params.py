"""Parameter handling shared by :mod:`fisherbook.stats.families` and :mod:`fisherbook.stats.estimators`.

A ``torch.distributions`` object is described here by the constructor parameters it was built
with (``loc``/``scale``, ``probs`` *or* ``logits``, ``covariance_matrix`` *or* ``scale_tril`` *or*
``precision_matrix``, ...). Fisher information is taken with respect to the *free coordinates* of
a chosen subset of them:

* a parameter whose constraint has ``event_dim == 0`` (``loc``, ``scale``, ``rate``, ``probs`` of
  a Bernoulli, ...) contributes one coordinate;
* ``probs`` on the simplex (Categorical, Multinomial, OneHotCategorical) contributes its first
  :math:`K-1` entries, the last being :math:`p_K = 1 - \\sum_{i<K} p_i`;
* ``covariance_matrix`` and ``precision_matrix`` contribute the :math:`d(d+1)/2` entries on and
  below the diagonal (row-major order of ``torch.tril_indices``), each off-diagonal coordinate
  moving the two symmetric entries together;
* ``scale_tril`` contributes its :math:`d(d+1)/2` lower-triangular entries in the same order;
* any other vector or matrix parameter (``logits`` of a Categorical, ``loc`` of a multivariate
  normal, ``concentration`` of a Dirichlet) contributes all of its entries, flattened.

``total_count`` (Binomial, Multinomial, NegativeBinomial) is always held fixed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Laplace, Pareto, Uniform, constraints

from .._validate import check_distribution
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, OffManifoldError, UnsupportedError

__all__: list[str] = []  # public wrappers live in fisherbook.stats.estimators

#: Groups of mutually exclusive constructor parameters: a distribution is built with one of each.
_ALTERNATIVES: tuple[tuple[str, ...], ...] = (
    ("probs", "logits"),
    ("covariance_matrix", "precision_matrix", "scale_tril"),
)
#: Constructor arguments that are never differentiated (integer-valued or structural).
_FIXED: frozenset[str] = frozenset({"total_count"})
#: Parameters that move the support: the regularity conditions fail, Fisher information as
#: E[s s^T] does not measure what it measures for regular families.
_SUPPORT_DEPENDENT: dict[type, tuple[str, ...]] = {Uniform: ("low", "high"), Pareto: ("scale",)}
#: (family, parameter) pairs whose log-density is not twice differentiable in the parameter,
#: so that -E[d^2 log p] misses a point mass and method="hessian" is wrong.
NOT_TWICE_DIFFERENTIABLE: frozenset[tuple[type, str]] = frozenset({(Laplace, "loc")})

_DTYPE = torch.float64
_MATRIX = (constraints.positive_definite, constraints.lower_cholesky, constraints.positive_semidefinite)


def _check_dist(dist: object) -> Distribution:
    return check_distribution(dist, "dist")


def _group_of(name: str) -> tuple[str, ...] | None:
    for group in _ALTERNATIVES:
        if name in group:
            return group
    return None


def _given_alternative(dist: Distribution, group: tuple[str, ...]) -> str | None:
    """Which member of ``group`` the distribution was constructed with."""
    present = [n for n in group if n in dist.__dict__]
    if not present:
        inner = dist.__dict__.get("_categorical")  # Multinomial, OneHotCategorical
        if isinstance(inner, Distribution):
            return _given_alternative(inner, group)
        return None
    if len(present) == 1:
        return present[0]
    # Several are cached because the lazy alternatives were read; disambiguate.
    param = dist.__dict__.get("_param")
    if param is not None:
        for n in present:
            if dist.__dict__[n] is param:
                return n
    # MultivariateNormal (and Geometric) keep no record of which one they were given: once a
    # lazy alternative has been read, fall back to constructor order (pass ``params``).
    return present[0]


def parameter_names(dist: Distribution) -> tuple[str, ...]:
    """See :func:`fisherbook.stats.estimators.parameter_names`."""
    _check_dist(dist)
    try:
        arg_constraints = dist.arg_constraints
    except NotImplementedError:
        arg_constraints = {}
    sig = inspect.signature(type(dist).__init__)
    names: list[str] = []
    for n in sig.parameters:
        if n not in arg_constraints or n in _FIXED:
            continue
        group = _group_of(n)
        if group is None:
            names.append(n)
            continue
        chosen = _given_alternative(dist, group)
        if chosen is not None and chosen not in names:
            names.append(chosen)
    if not names:
        raise ArgumentTypeError(
            f"{type(dist).__name__} has no named constructor parameters that fisherbook can "
            "differentiate; build the distribution directly from torch.distributions families "
            "(Normal, Gamma, Categorical, MultivariateNormal, ...)"
        )
    return tuple(names)


def _all_names(cls: type, arg_constraints: dict) -> list[str]:
    sig = inspect.signature(cls)
    return [n for n in sig.parameters if n in arg_constraints and n not in _FIXED]


def _event_dim(constraint: constraints.Constraint) -> int:
    return int(getattr(constraint, "event_dim", 0))


def _n_coords(constraint: constraints.Constraint, shape: torch.Size) -> int:
    """Number of free coordinates of a parameter of event shape ``shape``."""
    if constraint is constraints.simplex:
        return shape[-1] - 1
    if constraint in _MATRIX:
        d = shape[-1]
        return d * (d + 1) // 2
    return math.prod(shape) if len(shape) else 1


def _to_coords(constraint: constraints.Constraint, value: Tensor, ev: int) -> Tensor:
    """Map a parameter value (batch + event) to its free coordinates (batch + (m,))."""
    if ev == 0:
        return value.unsqueeze(-1)
    if constraint is constraints.simplex:
        return value[..., :-1]
    if constraint in _MATRIX:
        d = value.shape[-1]
        i, j = torch.tril_indices(d, d)
        return value[..., i, j]
    return value.reshape(value.shape[: value.dim() - ev] + (-1,))


def _scatter_tril(coords: Tensor, d: int) -> Tensor:
    i, j = torch.tril_indices(d, d)
    flat_index = (i * d + j).to(coords.device)
    out = coords.new_zeros(coords.shape[:-1] + (d * d,))
    out = out.index_copy(-1, flat_index, coords)
    return out.reshape(coords.shape[:-1] + (d, d))


def _from_coords(
    constraint: constraints.Constraint, coords: Tensor, event_shape: torch.Size
) -> Tensor:
    """Inverse of :func:`_to_coords`, differentiable in ``coords``."""
    ev = len(event_shape)
    if ev == 0:
        return coords.squeeze(-1)
    if constraint is constraints.simplex:
        last = 1.0 - coords.sum(-1, keepdim=True)
        return torch.cat([coords, last], dim=-1)
    if constraint in _MATRIX:
        out = _scatter_tril(coords, event_shape[-1])
        if constraint is not constraints.lower_cholesky:
            out = out + out.mT - torch.diag_embed(torch.diagonal(out, dim1=-2, dim2=-1))
        return out
    return coords.reshape(coords.shape[:-1] + event_shape)


@dataclass(frozen=True)
class _Param:
    name: str
    constraint: constraints.Constraint
    event_shape: torch.Size
    n: int


@dataclass
class _Resolved:
    """A float64 copy of a distribution, and the coordinates being differentiated."""

    cls: type
    dist: Distribution  # float64 copy in the parameterisation that contains ``params``
    full: tuple[str, ...]  # all free parameter names of that parameterisation
    params: tuple[_Param, ...]  # requested, in requested order
    values: dict[str, Tensor]  # float64 values of every constructor parameter, batch + event
    fixed: dict[str, object]  # fixed constructor arguments (total_count)
    batch_shape: torch.Size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def k(self) -> int:
        return sum(p.n for p in self.params)

    def coords(self) -> Tensor:
        """Free coordinates of the requested parameters, batch + (k,)."""
        parts = [
            _to_coords(p.constraint, self.values[p.name], len(p.event_shape)).expand(
                self.batch_shape + (p.n,)
            )
            for p in self.params
        ]
        return torch.cat(parts, dim=-1)

    def build(self, coords: Tensor, lp_shape: torch.Size) -> Distribution:
        """Rebuild the distribution with the requested parameters set from ``coords``.

        ``coords`` has shape ``lp_shape + (k,)``; the other parameters are expanded to
        ``lp_shape``, so every leading index gets its own copy of the parameters and one
        backward pass gives per-sample, per-batch-element gradients.
        """
        kwargs: dict[str, object] = {}
        start = 0
        requested = {}
        for p in self.params:
            requested[p.name] = _from_coords(
                p.constraint, coords[..., start : start + p.n], p.event_shape
            )
            start += p.n
        nb = len(self.batch_shape)
        for name in self.full:
            if name in requested:
                kwargs[name] = requested[name]
            else:
                v = self.values[name]
                kwargs[name] = v.expand(lp_shape + v.shape[nb:])
        for name, fv in self.fixed.items():
            if isinstance(fv, Tensor) and fv.dim() > 0:
                kwargs[name] = fv.expand(lp_shape + fv.shape[nb:])
            else:
                kwargs[name] = fv
        return self.cls(**kwargs, validate_args=False)


def _as_param_tuple(params: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if params is None:
        return None
    if isinstance(params, str):
        return (params,)
    try:
        out = tuple(params)
    except TypeError:
        raise ArgumentTypeError(
            f"params must be a parameter name or a sequence of names, got {type(params).__name__}"
        ) from None
    for p in out:
        if not isinstance(p, str):
            raise ArgumentTypeError(f"params must contain parameter names (str), got {p!r}")
    if not out:
        raise InvalidArgumentError("params must name at least one parameter")
    if len(set(out)) != len(out):
        raise InvalidArgumentError(f"params contains a repeated name: {out}")
    return out


def _describe(c: constraints.Constraint) -> str:
    text = {
        constraints.positive: "> 0",
        constraints.unit_interval: "0 <= value <= 1",
        constraints.simplex: "non-negative entries summing to 1",
        constraints.positive_definite: "positive definite (symmetric)",
        constraints.lower_cholesky: "lower triangular with positive diagonal",
        constraints.real: "a real number",
    }.get(c)
    if text is not None:
        return text
    lower = getattr(c, "lower_bound", None)
    upper = getattr(c, "upper_bound", None)
    if lower is not None and upper is not None:
        return f"{lower} <= value <= {upper}"
    if lower is not None:
        return f"value > {lower}"
    return str(c)


def _check_values(dist: Distribution, values: dict[str, Tensor]) -> None:
    cls_name = type(dist).__name__
    for name, v in values.items():
        if not torch.isfinite(v).all():
            raise NonFiniteError(f"parameter {name} of {cls_name} must be finite, got {v}")
        c = dist.arg_constraints.get(name)
        if c is None:
            continue
        ok = c.check(v)
        if not bool(torch.as_tensor(ok).all()):
            raise OffManifoldError(
                f"parameter {name} of {cls_name} must satisfy {_describe(c)}, "
                f"got values violating it: {v.detach()}"
            )


def resolve(dist: Distribution, params: str | Sequence[str] | None) -> _Resolved:
    """Validate ``dist`` and ``params``; return a float64 copy set up for differentiation."""
    _check_dist(dist)
    cls = type(dist)
    built = parameter_names(dist)
    requested = _as_param_tuple(params)
    if requested is None:
        requested = built
    arg_constraints = dist.arg_constraints
    all_names = _all_names(cls, arg_constraints)
    # Which member of each alternative group do we differentiate?
    full = list(built)
    for name in requested:
        if name in _FIXED:
            raise InvalidArgumentError(
                f"params: {name} of {cls.__name__} is held fixed (an integer count); "
                f"choose from {built}"
            )
        if name not in all_names:
            raise InvalidArgumentError(
                f"params: unknown parameter {name!r} for {cls.__name__}; "
                f"its constructor parameters are {tuple(all_names)}"
            )
        group = _group_of(name)
        if group is not None and name not in full:
            clash = [n for n in requested if n in group and n != name]
            if clash:
                raise InvalidArgumentError(
                    f"params: {name!r} and {clash[0]!r} are alternative parameterisations of "
                    f"{cls.__name__}; name only one"
                )
            full = [name if n in group else n for n in full]
    for name in requested:
        if name in _SUPPORT_DEPENDENT.get(cls, ()):
            raise UnsupportedError(
                f"params: the support of {cls.__name__} depends on {name}, so the regularity "
                "conditions behind Fisher information fail (E[score] != 0); fisherbook does not "
                f"compute it for {cls.__name__}.{name}"
            )
    # float64 values of the built parameterisation, then of the requested alternative.
    values = {n: torch.as_tensor(getattr(dist, n)).detach().to(_DTYPE) for n in built}
    fixed: dict[str, object] = {}
    for n in _FIXED:
        if n in inspect.signature(cls.__init__).parameters and hasattr(dist, n):
            v = getattr(dist, n)
            fixed[n] = v.detach().to(_DTYPE) if isinstance(v, Tensor) else v
    _check_values(dist, values)
    for n, v in values.items():
        if arg_constraints[n] is constraints.simplex:
            values[n] = v / v.sum(-1, keepdim=True)  # renormalise in float64
    make: Any = cls  # a torch.distributions class, called with its own constructor names
    copy = make(**values, **fixed, validate_args=False)
    for n in full:
        if n not in values:
            values[n] = torch.as_tensor(getattr(copy, n)).detach().to(_DTYPE).clone()
    for n in list(values):
        if n not in full:
            del values[n]
    if tuple(full) != built:
        copy = make(**{n: values[n] for n in full}, **fixed, validate_args=False)
    batch_shape = copy.batch_shape
    plist = []
    for n in requested:
        c = arg_constraints[n]
        ev_dim = _event_dim(c)
        v = values[n]
        event_shape = v.shape[v.dim() - ev_dim :] if ev_dim else torch.Size()
        if v.shape[: v.dim() - ev_dim] != batch_shape:
            raise ArgumentTypeError(
                f"parameter {n} of {cls.__name__} has shape {tuple(v.shape)}, which is not the "
                f"batch shape {tuple(batch_shape)} plus its own event dims: fisherbook cannot map "
                f"it to coordinates ({cls.__name__} is a transformed distribution)"
            )
        plist.append(_Param(n, c, event_shape, _n_coords(c, event_shape)))
    return _Resolved(cls, copy, tuple(full), tuple(plist), values, fixed, batch_shape)


def coordinate_names(
    dist: Distribution, params: str | Sequence[str] | None = None
) -> tuple[str, ...]:
    """See :func:`fisherbook.stats.estimators.coordinate_names`."""
    r = resolve(dist, params)
    out: list[str] = []
    for p in r.params:
        if len(p.event_shape) == 0:
            out.append(p.name)
        elif p.constraint is constraints.simplex:
            out.extend(f"{p.name}[{i}]" for i in range(p.n))
        elif p.constraint in _MATRIX:
            d = p.event_shape[-1]
            i, j = torch.tril_indices(d, d)
            out.extend(f"{p.name}[{a},{b}]" for a, b in zip(i.tolist(), j.tolist(), strict=True))
        else:
            idx = torch.cartesian_prod(*[torch.arange(s) for s in p.event_shape])
            if idx.dim() == 1:
                idx = idx.unsqueeze(-1)
            out.extend(f"{p.name}[{','.join(str(t) for t in row.tolist())}]" for row in idx)
    return tuple(out)
