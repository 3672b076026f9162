r"""Merging models trained from one initialisation: plain averaging and Fisher-weighted averaging.

Matena & Raffel (2022) read each model :math:`i` as a Laplace posterior
:math:`\mathcal N(\theta_i, (N_i F_i)^{-1})` with a diagonal Fisher :math:`F_i` and merge by the
mode of the (weighted) product of these Gaussians,

.. math::

    \theta^\star = \frac{\sum_i \lambda_i F_i \odot \theta_i}{\sum_i \lambda_i F_i}
    \quad\text{(elementwise)},

which is the plain average when all :math:`F_i` are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._validate import check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError

__all__ = ["average_merge", "fisher_merge"]


def _stack(tensors: Sequence[Tensor], name: str) -> Tensor:
    if not isinstance(tensors, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a non-empty list of flat tensors, got {type(tensors).__name__}")
    if not tensors:
        raise InvalidArgumentError(f"{name} must be a non-empty list of flat tensors, got an empty one")
    if not all(isinstance(t, Tensor) for t in tensors):
        raise ArgumentTypeError(f"{name} must hold torch.Tensors")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1 or len(shapes.pop()) != 1:
        raise ShapeError(f"{name} must be flat vectors of one shape (P,), "
                         f"got shapes {[tuple(t.shape) for t in tensors]}")
    return torch.stack(list(tensors))


def _weights(weights: Sequence[float] | None, m: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.full((m,), 1.0 / m, dtype=like.dtype, device=like.device)
    if len(weights) != m:
        raise ShapeError(f"weights must have one entry per model ({m}), got {len(weights)}")
    w = torch.tensor([check_real(x, "weights", low=0.0) for x in weights], dtype=like.dtype, device=like.device)
    if float(w.sum()) <= 0:
        raise InvalidArgumentError("weights must not all be zero")
    return w / w.sum()


def average_merge(thetas: Sequence[Tensor], weights: Sequence[float] | None = None) -> Tensor:
    r"""The weighted average :math:`\sum_i \lambda_i \theta_i` (weights normalised to sum to one).

    Examples
    --------
    >>> import torch
    >>> average_merge([torch.tensor([0.0, 2.0]), torch.tensor([2.0, 4.0])])
    tensor([1., 3.])
    """
    t = _stack(thetas, "thetas")
    return (_weights(weights, t.shape[0], t).unsqueeze(1) * t).sum(0)


def fisher_merge(thetas: Sequence[Tensor], fisher_diags: Sequence[Tensor], weights: Sequence[float] | None = None,
                 eps: float = 1e-8) -> Tensor:
    r"""Fisher-weighted average :math:`\sum_i \lambda_i (F_i + \epsilon) \theta_i / \sum_i \lambda_i (F_i + \epsilon)`.

    ``eps`` (Matena & Raffel's floor on the Fisher) keeps coordinates that no model's Fisher
    sees at their plain average instead of 0/0.

    Examples
    --------
    >>> import torch
    >>> fisher_merge([torch.tensor([0.0, 2.0]), torch.tensor([2.0, 4.0])],
    ...              [torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0])], eps=0.0 + 1e-12)
    tensor([0.5000, 3.0000])
    """
    t = _stack(thetas, "thetas")
    f = _stack(fisher_diags, "fisher_diags")
    if f.shape != t.shape:
        raise ShapeError(f"fisher_diags must match thetas in number and shape, "
                         f"got {tuple(f.shape)} and {tuple(t.shape)}")
    if bool((f < 0).any()):
        raise InvalidArgumentError("fisher_diags must be non-negative")
    e = check_real(eps, "eps", low=0.0, open_low=True)
    w = _weights(weights, t.shape[0], t).unsqueeze(1) * (f + e)
    return (w * t).sum(0) / w.sum(0)
