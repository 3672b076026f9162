r"""The error vocabulary of :mod:`fisherbook`.

Every error the package raises on purpose is a :class:`FisherbookError`, and also an instance of
the builtin exception a caller would already catch, so ``except ValueError`` keeps working.

One rule decides between the two builtins:

- :class:`ArgumentTypeError` (a :class:`TypeError`): the argument is of a type the function does
  not accept at all (a string where a number is expected, a list where a ``torch.nn.Module`` is).
- :class:`InvalidArgumentError` (a :class:`ValueError`): the type is accepted, the value is not
  (out of range, wrong shape, not finite, not symmetric, an option not in the allowed set).

Messages name the argument and say what is allowed, e.g.
``level must be a number in (0, 1), got 1.5``.

Failures of an algorithm on valid input (an iteration that does not converge, a geodesic
boundary-value problem without a solution) are :class:`ConvergenceError`, a
:class:`RuntimeError`.

Examples
--------
>>> from fisherbook.errors import InvalidArgumentError, FisherbookError
>>> issubclass(InvalidArgumentError, ValueError) and issubclass(InvalidArgumentError, FisherbookError)
True
"""

from __future__ import annotations

__all__ = [
    "FisherbookError",
    "ArgumentTypeError",
    "InvalidArgumentError",
    "ShapeError",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "UnsupportedError",
    "SizeLimitError",
    "ConvergenceError",
    "GeodesicError",
    "OffManifoldError",
    "DistributedError",
    "NotFittedError",
    "FisherbookWarning",
    "ModelModeWarning",
]


class FisherbookError(Exception):
    """Base class of every error :mod:`fisherbook` raises on purpose."""


class ArgumentTypeError(FisherbookError, TypeError):
    """An argument is of a type the function does not accept."""


class InvalidArgumentError(FisherbookError, ValueError):
    """An argument has an accepted type but a value outside what is allowed."""


class ShapeError(InvalidArgumentError):
    """An argument's shape does not match what the function needs (or another argument's)."""


class NonFiniteError(InvalidArgumentError):
    """An argument holds NaN or infinite values where finite ones are needed."""


class NotPositiveDefiniteError(InvalidArgumentError):
    """A matrix that must be symmetric positive (semi-)definite is not."""


class UnsupportedError(InvalidArgumentError):
    """The input is well formed but outside what this function covers (a layer type, a family).

    The message says what is covered and, where there is one, what to use instead.
    """


class SizeLimitError(InvalidArgumentError):
    """The work or memory an input asks for exceeds a documented limit.

    The message gives the limit and how to proceed (a smaller input, another method, or the
    keyword that raises the limit).
    """


class OffManifoldError(InvalidArgumentError):
    """A point lies outside the parameter space of the family it is used with."""


class ConvergenceError(FisherbookError, RuntimeError):
    """An iterative algorithm did not reach its tolerance on valid input."""


class GeodesicError(ConvergenceError):
    """A geodesic boundary-value problem could not be solved to tolerance."""


class DistributedError(FisherbookError, RuntimeError):
    """A distributed option was asked for without a usable process group, or ranks disagree."""


class NotFittedError(FisherbookError, RuntimeError):
    """A method that needs a fitted object (e.g. :meth:`~fisherbook.bayes.laplace.LastLayerLaplace.fit`)
    was called before fitting."""


class FisherbookWarning(UserWarning):
    """Base class of the warnings :mod:`fisherbook` issues."""


class ModelModeWarning(FisherbookWarning):
    """A model is in training mode with stochastic layers (dropout, batch statistics) where a
    Fisher is computed, so the result would change from call to call."""
