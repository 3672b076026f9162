r"""Summaries of the accuracy matrix of a task sequence.

:math:`R_{ij}` is the test accuracy on task :math:`j` after training on tasks :math:`0..i`
(:func:`.train_sequence` fills it). Three numbers summarise it: the final
average accuracy, backward transfer (Lopez-Paz & Ranzato 2017) and average forgetting (Chaudhry
et al. 2018).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validate import check_tensor
from ..errors import ShapeError

__all__ = ["average_accuracy", "backward_transfer", "forgetting"]


def _check_R(R: Any, min_tasks: int = 1, what: str = "") -> Tensor:
    R = check_tensor(R, "R", dtype=torch.float64, nonempty=False)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
        raise ShapeError(f"R must be a square (T, T) accuracy matrix with T >= 1, got shape {tuple(R.shape)}")
    if R.shape[0] < min_tasks:
        raise ShapeError(f"R must cover at least {min_tasks} tasks for {what}, got shape {tuple(R.shape)}")
    return R


def average_accuracy(R: Tensor) -> float:
    r"""Average accuracy after the last task, :math:`A = \frac1T \sum_j R_{T,j}`.

    Parameters
    ----------
    R : Tensor
        Square accuracy matrix, shape ``(T, T)``, finite.

    Returns
    -------
    float

    Examples
    --------
    >>> average_accuracy(torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64))
    0.65
    """
    R = _check_R(R)
    return float(R[-1].mean())


def backward_transfer(R: Tensor) -> float:
    r"""Backward transfer :math:`\frac{1}{T-1} \sum_{j<T} (R_{T,j} - R_{j,j})` (Lopez-Paz & Ranzato 2017).

    Negative values mean forgetting.

    Parameters
    ----------
    R : Tensor
        Square accuracy matrix, shape ``(T, T)`` with :math:`T \ge 2`, finite.

    Returns
    -------
    float

    Examples
    --------
    >>> backward_transfer(torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64))
    -0.4
    """
    R = _check_R(R, 2, "backward transfer")
    return float((R[-1, :-1] - R.diagonal()[:-1]).mean())


def forgetting(R: Tensor) -> float:
    r"""Average forgetting :math:`\frac{1}{T-1}\sum_{j<T} \max_{i<T} R_{i,j} - R_{T,j}` (Chaudhry et al. 2018).

    The drop of each earlier task from its best accuracy during the sequence to its final one.

    Parameters
    ----------
    R : Tensor
        Square accuracy matrix, shape ``(T, T)`` with :math:`T \ge 2`, finite.

    Returns
    -------
    float

    Examples
    --------
    >>> forgetting(torch.tensor([[0.9, 0.1, 0.1], [0.95, 0.8, 0.1], [0.5, 0.7, 0.9]], dtype=torch.float64))
    0.275
    """
    R = _check_R(R, 2, "forgetting")
    best = R[:-1, :-1].max(dim=0).values
    return float((best - R[-1, :-1]).mean())
