r"""Checks on the model that every curvature computation runs first.

The Fisher is a property of a *deterministic* map from one example to its outputs. Two kinds of
module break that:

- **Stochastic layers in training mode** (``nn.Dropout`` and its variants with ``p > 0``): the
  outputs, and so the Fisher, change from call to call. :func:`check_model` issues a
  :class:`~fisherbook.errors.ModelModeWarning` (a warning, not an error: MC-dropout curvature is
  a legitimate if unusual request) and the computation proceeds with the masks drawn by torch.
- **Modules that couple the examples of a batch or that the engine cannot differentiate per
  example**: batch norm in training mode (it normalises with the batch's statistics, so an
  example's output depends on the others) and recurrent layers (``nn.RNN``, ``nn.LSTM``,
  ``nn.GRU``). These raise :class:`~fisherbook.errors.UnsupportedError` naming the module and
  what to do instead, rather than failing deep inside ``torch.func``.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from ..errors import ArgumentTypeError, InvalidArgumentError, ModelModeWarning, UnsupportedError

__all__ = ["check_model", "SUPPORTED_MODULES"]

SUPPORTED_MODULES = (
    "any feed-forward nn.Module that maps a batch to outputs example by example and works under "
    "torch.func (nn.Linear and nn.Conv2d take a fast structured path; activations, pooling, flattening, "
    "nn.LayerNorm, batch norm in eval() mode and embeddings work through torch.func)"
)


def check_model(model: nn.Module) -> None:
    """Raise or warn for modules that make the per-example Fisher undefined or unsupported.

    Raises
    ------
    UnsupportedError
        For batch norm in training mode or a recurrent layer, naming the module.

    Warns
    -----
    ModelModeWarning
        For dropout in training mode (``p > 0``): the Fisher would change from call to call.

    Examples
    --------
    >>> import torch
    >>> check_model(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).eval())
    >>> check_model(torch.nn.LSTM(2, 2))
    Traceback (most recent call last):
    ...
    fisherbook.errors.UnsupportedError: model contains nn.LSTM at 'model', a recurrent layer, ...
    """
    stochastic: list[str] = []
    for name, module in model.named_modules():
        where = name or "model"
        if isinstance(module, nn.RNNBase):
            raise UnsupportedError(
                f"model contains nn.{type(module).__name__} at {where!r}, a recurrent layer, which the curvature "
                f"engine does not support; supported: {SUPPORTED_MODULES}")
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise UnsupportedError(
                f"model contains nn.{type(module).__name__} at {where!r} in training mode: it normalises with "
                "the batch's statistics, so one example's outputs depend on the others and the per-example "
                f"Fisher is undefined. Call model.eval() first; supported: {SUPPORTED_MODULES}")
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            stochastic.append(f"{where} (nn.{type(module).__name__}, p={module.p})")
    if stochastic:
        warnings.warn(
            f"model is in training mode with stochastic layers: {', '.join(stochastic)}; the Fisher will "
            "differ from call to call. Call model.eval() for the Fisher of the deterministic network.",
            ModelModeWarning, stacklevel=3)


# ---- shared by continual and bayes (the model-mode rule of their docstrings); not re-exported

def check_module(model: Any, name: str = "model") -> nn.Module:
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
