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

from torch import nn

from ..errors import ModelModeWarning, UnsupportedError

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
