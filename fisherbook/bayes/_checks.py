r"""Argument checks shared by the modules of :mod:`fisherbook.bayes` (private).

They complement :mod:`fisherbook._validate`: models, ``(inputs, targets)`` pairs, targets of the
named likelihoods against model outputs, and the model-mode check.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_finite
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    ModelModeWarning,
    NonFiniteError,
    ShapeError,
    UnsupportedError,
)


def check_model(model: Any, name: str = "model") -> nn.Module:
    """A ``torch.nn.Module`` with at least one parameter."""
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise InvalidArgumentError(f"{name} has no parameters")
    return model


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


def stochastic_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """Submodules in training mode that make a forward pass random (dropout) or batch-dependent
    (batch normalisation, which then uses the statistics of the batch)."""
    dropout, batchnorm = [], []
    for mname, m in model.named_modules():
        if not m.training:
            continue
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            dropout.append(f"{mname or 'model'} ({type(m).__name__})")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            batchnorm.append(f"{mname or 'model'} ({type(m).__name__})")
    return dropout, batchnorm


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_model_mode(model: nn.Module, what: str, *, per_example: bool, stacklevel: int = 3) -> None:
    """The model-mode rule of :mod:`fisherbook.continual` and :mod:`fisherbook.bayes`.

    - Batch normalisation in training mode where per-example derivatives are needed (``per_example``)
      raises :class:`~fisherbook.errors.UnsupportedError`: it normalises with the statistics of the
      batch, so the examples are not independent and a per-example gradient does not exist.
    - Otherwise dropout or batch normalisation in training mode gives a
      :class:`~fisherbook.errors.ModelModeWarning`: ``what`` would change from call to call (or with
      the batch).
    """
    dropout, batchnorm = stochastic_layers(model)
    if per_example and batchnorm:
        raise UnsupportedError(
            f"model is in training mode with batch normalisation ({_listed(batchnorm)}), which uses the statistics "
            f"of the batch, so {what} has no per-example form; call model.eval() first")
    layers = dropout + batchnorm
    if layers:
        warnings.warn(
            f"model is in training mode with stochastic layers ({_listed(layers)}), so {what} changes from call "
            "to call; call model.eval() first", ModelModeWarning, stacklevel=stacklevel)
