r"""Argument checks shared by the modules of :mod:`fisherbook.continual` (private).

They complement :mod:`fisherbook._validate` with what only continual learning needs: lists of
tensors shaped like a model's parameters, Fisher diagonals, and the model-mode check.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_real
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    ModelModeWarning,
    NonFiniteError,
    ShapeError,
    UnsupportedError,
)

FISHER_KINDS = ("true", "mc", "empirical")


def check_lam(lam: Any) -> float:
    """The penalty strength: a finite real number >= 0 (NumPy scalars accepted)."""
    return check_real(lam, "lam", low=0.0)


def check_gamma(gamma: Any) -> float:
    """The online-EWC decay, a real number in [0, 1]."""
    return check_real(gamma, "gamma", low=0.0, high=1.0)


def as_tensor_list(name: str, tensors: Any) -> list[Tensor]:
    """A list of tensors from a tensor sequence or iterable (``model.parameters()`` works)."""
    if isinstance(tensors, Tensor) or isinstance(tensors, str | bytes) or not isinstance(tensors, Iterable):
        raise ArgumentTypeError(f"{name} must be a sequence of tensors (e.g. list(model.parameters())), "
                                f"got {type(tensors).__name__}")
    out = list(tensors)
    for k, t in enumerate(out):
        if not isinstance(t, Tensor):
            raise ArgumentTypeError(f"{name} must be a sequence of tensors; {name}[{k}] is {type(t).__name__}")
    return out


def _label(names: Sequence[str] | None, k: int) -> str:
    return f"parameter {k}" if names is None else f"parameter {k} ({names[k]!r})"


def check_like(name: str, tensors: Sequence[Tensor], params: Sequence[Tensor],
               names: Sequence[str] | None = None, what: str = "the model has") -> None:
    """Same number of tensors as ``params`` and each the same shape, else :class:`ShapeError` naming it."""
    if len(tensors) != len(params):
        raise ShapeError(f"{name} has {len(tensors)} tensors but {what} {len(params)} parameter tensors")
    for k, (t, p) in enumerate(zip(tensors, params)):
        if t.shape != p.shape:
            raise ShapeError(f"{name}[{k}] has shape {tuple(t.shape)} but {_label(names, k)} has shape "
                             f"{tuple(p.shape)}")


def check_fisher_values(name: str, fisher: Sequence[Tensor]) -> None:
    """Every tensor finite (:class:`NonFiniteError`) and non-negative (:class:`InvalidArgumentError`)."""
    for k, f in enumerate(fisher):
        if f.is_floating_point() and not bool(torch.isfinite(f).all()):
            raise NonFiniteError(f"{name}[{k}] must be finite and non-negative (a Fisher diagonal); it has NaN or "
                                 "infinite entries")
        if bool((f < 0).any()):
            raise InvalidArgumentError(f"{name}[{k}] must be finite and non-negative (a Fisher diagonal); its "
                                       f"smallest entry is {float(f.min()):.3g}")


def check_model(model: Any, name: str = "model") -> nn.Module:
    """A ``torch.nn.Module`` with at least one parameter."""
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise InvalidArgumentError(f"{name} has no parameters")
    return model


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
