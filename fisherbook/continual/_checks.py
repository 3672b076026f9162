r"""Argument checks shared by the modules of :mod:`fisherbook.continual` (private).

They complement :mod:`fisherbook._validate` with what only continual learning needs: lists of
tensors shaped like a model's parameters, Fisher diagonals, and the model-mode check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._validate import check_real
from ..curvature.checks import check_model_mode, stochastic_layers  # noqa: F401  (shared with bayes: one model-mode rule)
from ..curvature.checks import check_module as check_model  # noqa: F401
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
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


def check_batches(data: Any, targets: Any = None) -> None:
    """``data`` is a DataLoader or an iterable of batches (not a tensor, a string, a mapping or a
    map-style Dataset of single examples), and ``targets`` is ``None`` (batches carry their own)."""
    if isinstance(data, str | bytes | dict) or not isinstance(data, Iterable):
        raise ArgumentTypeError("inputs must be a torch.Tensor with examples along dim 0, a DataLoader or an "
                                f"iterable of batches (tensors or (inputs, targets) pairs), got {type(data).__name__}")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        raise ArgumentTypeError(f"inputs is a {type(data).__name__} (a Dataset of single examples); wrap it in "
                                "torch.utils.data.DataLoader(dataset, batch_size=...) to pass batches")
    if isinstance(data, list | tuple) and data and not isinstance(data[0], Tensor | list | tuple):
        raise ArgumentTypeError(f"inputs must be a torch.Tensor or batches (tensors or (inputs, targets) pairs); got a "
                                f"{type(data).__name__} whose first element is {type(data[0]).__name__} (for one "
                                "batch of data, pass torch.tensor(...))")
    if isinstance(data, list | tuple) and data and isinstance(data[0], list | tuple) and data[0] and not isinstance(
            data[0][0], Tensor):
        raise ArgumentTypeError(f"inputs must be a torch.Tensor or batches (tensors or (inputs, targets) pairs); got a "
                                f"{type(data).__name__} of {type(data[0]).__name__}s of {type(data[0][0]).__name__} "
                                "(for one batch of data, pass torch.tensor(...))")
    if targets is not None:
        raise InvalidArgumentError("targets must be None when inputs is a DataLoader or an iterable of batches; "
                                   "let each batch be an (inputs, targets) pair instead")
