r"""Argument checks shared by the modules of :mod:`fisherbook.bayes` (private).

They complement :mod:`fisherbook._validate`: models, ``(inputs, targets)`` pairs, targets of the
named likelihoods against model outputs, and the model-mode check.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validate import check_finite
from ..curvature.checks import check_model_mode, stochastic_layers  # noqa: F401  (shared with continual: one model-mode rule)
from ..curvature.checks import check_module as check_model  # noqa: F401
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
)


def check_inputs(inputs: Any, name: str = "inputs") -> Tensor:
    """A tensor with at least one example along dim 0, finite if floating point."""
    if not isinstance(inputs, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor with examples along dim 0, got {type(inputs).__name__}")
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ShapeError(f"{name} must have at least one example along dim 0, got shape {tuple(inputs.shape)}")
    check_finite(inputs, name)
    return inputs


def check_pair(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """An ``(inputs, targets)`` pair of tensors with the same, non-zero number of rows, finite."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise ArgumentTypeError(f"{name} must be a pair (inputs, targets) of tensors, got {type(data).__name__}")
    x, y = data
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ArgumentTypeError(f"{name} must be a pair (inputs, targets) of tensors, got "
                                f"({type(x).__name__}, {type(y).__name__})")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise ShapeError(f"{name}: inputs and targets must have the same, non-zero number of rows, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    check_finite(x, f"{name} inputs")
    check_finite(y, f"{name} targets")
    return x, y


def check_targets(likelihood: str, outputs: Tensor, targets: Tensor, name: str = "targets") -> None:
    """Targets of a named likelihood against the model's outputs ``(N, K)``.

    ``"categorical"``: integer class indices of shape ``(N,)`` in ``[0, K)``; ``"bernoulli"``: 0/1
    labels shaped like the outputs; ``"gaussian"``: finite values shaped like the outputs.
    """
    n, k = outputs.shape
    if likelihood == "categorical":
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} for likelihood 'categorical' must be integer class indices, got dtype "
                                    f"{targets.dtype}")
        if targets.shape != (n,):
            raise ShapeError(f"{name} for likelihood 'categorical' must have shape ({n},) (one class index per "
                             f"example), got {tuple(targets.shape)}")
        if int(targets.min()) < 0 or int(targets.max()) >= k:
            raise InvalidArgumentError(f"{name} must be class indices in [0, {k - 1}] for a model with {k} outputs, "
                                       f"got range [{int(targets.min())}, {int(targets.max())}]")
        return
    if targets.numel() != n * k or targets.shape[0] != n:
        raise ShapeError(f"{name} for likelihood {likelihood!r} must have the model output's shape ({n} examples, "
                         f"{k} outputs each), got {tuple(targets.shape)}")
    if likelihood == "bernoulli" and not bool(((targets == 0) | (targets == 1)).all()):
        raise InvalidArgumentError(f"{name} for likelihood 'bernoulli' must be 0/1 labels")


def check_outputs(out: Tensor, n: int) -> Tensor:
    """Model outputs with the ``n`` examples along dim 0 and finite, as ``(n, K)``."""
    if out.ndim == 0 or out.shape[0] != n:
        raise ShapeError(f"model output must have the {n} examples along dim 0, got shape {tuple(out.shape)}")
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        raise NonFiniteError("model outputs must be finite; the model returns NaN or infinite values on these inputs")
    return out.reshape(n, -1)
