r"""Argument validators shared by every module: one signature, ``check_x(value, name, ...)``.

Each returns the cleaned value (a Python ``int``/``float``, or a tensor) and raises the
:mod:`fisherbook.errors` class that the rule in that module prescribes, with a message naming
the argument and what is allowed. NumPy scalars are accepted wherever Python numbers are.
Private: the public functions call these; users meet only the errors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, NotPositiveDefiniteError, ShapeError

__all__ = [
    "check_int",
    "check_real",
    "check_probability",
    "check_level",
    "check_option",
    "check_tensor",
    "check_finite",
    "check_square",
    "check_symmetric_psd",
    "check_callable",
    "check_distribution",
]


def _is_real_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) in ``[minimum, maximum]``.

    >>> check_int(3, "n")
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, Tensor) and value.numel() == 1 and not value.dtype.is_floating_point \
                and value.dtype != torch.bool:
            value = int(value.item())
        else:
            raise ArgumentTypeError(
                f"{name} must be an integer{_range_text(minimum, maximum)}, got "
                f"{type(value).__name__}"
            )
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidArgumentError(f"{name} must be an integer{_range_text(minimum, maximum)}, got {value}")
    return value


def _range_text(minimum: float | None, maximum: float | None, open_low: bool = False, open_high: bool = False) -> str:
    if minimum is None and maximum is None:
        return ""
    if maximum is None:
        return f" {'>' if open_low else '>='} {minimum}"
    if minimum is None:
        return f" {'<' if open_high else '<='} {maximum}"
    return f" in {'(' if open_low else '['}{minimum}, {maximum}{')' if open_high else ']'}"


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    finite: bool = True,
) -> float:
    """A real number (Python, NumPy or a one-element tensor) within the given bounds.

    >>> check_real(0.5, "lr", low=0.0, open_low=True)
    0.5
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if not _is_real_number(value):
        raise ArgumentTypeError(f"{name} must be a real number{_range_text(low, high, open_low, open_high)}, "
                                f"got {type(value).__name__}")
    value = float(value)
    allowed = _range_text(low, high, open_low, open_high)
    what = f"{name} must be a {'finite ' if finite else ''}real number{allowed}, got {value!r}"
    if math.isnan(value) or (finite and math.isinf(value)):
        raise NonFiniteError(what)
    if low is not None and (value < low or (open_low and value == low)):
        raise InvalidArgumentError(what)
    if high is not None and (value > high or (open_high and value == high)):
        raise InvalidArgumentError(what)
    return value


def check_probability(value: Any, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """A number in [0, 1] (ends excluded on request)."""
    return check_real(value, name, low=0.0, high=1.0, open_low=open_low, open_high=open_high)


def check_level(value: Any, name: str = "level") -> float:
    """A confidence level in (0, 1)."""
    return check_real(value, name, low=0.0, high=1.0, open_low=True, open_high=True)


def check_option(value: Any, name: str, options: Iterable[str]) -> str:
    """One of a fixed set of strings.

    >>> check_option("kfac", "representation", ("dense", "kfac"))
    'kfac'
    """
    options = tuple(options)
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be one of {options}, got {type(value).__name__}")
    if value not in options:
        raise InvalidArgumentError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_tensor(
    value: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    finite: bool = True,
    nonempty: bool = True,
) -> Tensor:
    """A tensor (or array-like converted to one) with the given number of dimensions, finite and
    non-empty unless told otherwise; converted to ``dtype`` when given."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise ArgumentTypeError(
                f"{name} must be a tensor or array-like of numbers, got "
                f"{type(value).__name__}"
            ) from None
    elif dtype is not None:
        value = value.to(dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            raise ShapeError(
                f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape "
                f"{tuple(value.shape)}"
            )
    if nonempty and value.numel() == 0:
        raise ShapeError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if finite:
        check_finite(value, name)
    return value


def check_finite(value: Tensor, name: str) -> Tensor:
    """Raise :class:`~fisherbook.errors.NonFiniteError` if a tensor holds NaN or inf.

    A NaN or inf entry makes the sum non-finite, so a finite sum proves the tensor finite in one
    reduction; only a non-finite sum (a bad entry, or finite entries whose sum overflows) pays for
    the elementwise check.
    """
    if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value.sum()).all()):
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise NonFiniteError(f"{name} must be finite; it has {int(bad.sum())} NaN or infinite entries")
    return value


def check_square(value: Tensor, name: str) -> Tensor:
    """A (batch of) square matrices."""
    if value.ndim < 2 or value.shape[-1] != value.shape[-2]:
        raise ShapeError(f"{name} must be a square matrix (or a batch of them), got shape {tuple(value.shape)}")
    return value


def check_symmetric_psd(
    value: Tensor, name: str, *, rtol: float = 1e-8, definite: bool = False, check_eigenvalues: bool = True
) -> Tensor:
    r"""A symmetric positive semi-definite (or definite) matrix, up to round-off.

    Symmetry is checked to ``rtol`` relative to the largest entry; it is never silently imposed.
    Definiteness is checked on the eigenvalues relative to the largest one (skipped with
    ``check_eigenvalues=False``, for callers that factorise the matrix anyway).

    >>> check_symmetric_psd(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "fisher")
    Traceback (most recent call last):
    ...
    fisherbook.errors.NotPositiveDefiniteError: fisher must be symmetric; its largest relative asymmetry is 1
    """
    check_square(value, name)
    check_finite(value, name)
    scale = value.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(torch.finfo(value.dtype).tiny)
    asym = ((value - value.transpose(-1, -2)).abs() / scale).amax()
    if float(asym) > rtol:
        raise NotPositiveDefiniteError(f"{name} must be symmetric; its largest relative asymmetry is {float(asym):.3g}")
    if not check_eigenvalues:
        return value
    eig = torch.linalg.eigvalsh(0.5 * (value + value.transpose(-1, -2)))
    lo = eig[..., 0] / scale[..., 0, 0]
    tol = 0.0 if definite else -10 * value.shape[-1] * torch.finfo(value.dtype).eps
    if bool((lo <= tol).any() if definite else (lo < tol).any()):
        kind = "positive definite" if definite else "positive semi-definite"
        raise NotPositiveDefiniteError(
            f"{name} must be {kind}; its smallest eigenvalue is "
            f"{float(eig[..., 0].min()):.3g}"
        )
    return value


def check_callable(value: Any, name: str, what: str = "a callable") -> Any:
    """A callable; ``what`` describes its signature in the message (e.g. ``"a callable theta -> G(theta)"``).

    >>> check_callable(len, "f") is len
    True
    """
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_distribution(value: Any, name: str = "dist") -> Any:
    """A ``torch.distributions.Distribution`` instance.

    >>> check_distribution(3.0, "prior")
    Traceback (most recent call last):
    ...
    fisherbook.errors.ArgumentTypeError: prior must be a torch.distributions.Distribution, got float
    """
    from torch.distributions import Distribution

    if not isinstance(value, Distribution):
        raise ArgumentTypeError(f"{name} must be a torch.distributions.Distribution, got {type(value).__name__}")
    return value
