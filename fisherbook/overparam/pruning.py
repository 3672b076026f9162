r"""Pruning by saliency: Optimal Brain Damage with the Fisher diagonal, and magnitude pruning.

Optimal Brain Damage (LeCun, Denker & Solla 1990) expands the loss to second order around a
minimum and drops the off-diagonal terms: zeroing weight :math:`i` raises the loss by about
:math:`s_i = \tfrac12 H_{ii} \theta_i^2`. With the Fisher diagonal in place of the Hessian's
(its expectation at a well-fitted model), :math:`s_i = \tfrac12 F_{ii}\theta_i^2`; magnitude pruning
is the same rule with :math:`F = I`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_finite, check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError

__all__ = ["obd_saliency", "magnitude_saliency", "prune"]


def _flat(t: Tensor, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise ShapeError(f"{name} must be a flat vector of shape (P,), got {tuple(t.shape)}")
    return check_finite(t, name)


def obd_saliency(theta: Tensor, fisher_diag: Tensor) -> Tensor:
    r"""OBD saliencies :math:`s_i = \tfrac12 F_{ii} \theta_i^2` with the Fisher diagonal.

    Examples
    --------
    >>> import torch
    >>> obd_saliency(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([4.0, 1.0, 0.0]))
    tensor([2., 2., 0.])
    """
    theta, d = _flat(theta, "theta"), _flat(fisher_diag, "fisher_diag")
    if d.shape != theta.shape:
        raise ShapeError(f"fisher_diag must have the shape of theta {tuple(theta.shape)}, got {tuple(d.shape)}")
    if bool((d < 0).any()):
        raise InvalidArgumentError("fisher_diag must be non-negative (a Fisher diagonal)")
    return 0.5 * d * theta**2


def magnitude_saliency(theta: Tensor) -> Tensor:
    r"""Magnitude saliencies :math:`|\theta_i|`.

    The same ranking as :math:`\tfrac12\theta_i^2`, OBD with :math:`F = I`.

    Examples
    --------
    >>> import torch
    >>> magnitude_saliency(torch.tensor([1.0, -2.0, 0.5]))
    tensor([1.0000, 2.0000, 0.5000])
    """
    return _flat(theta, "theta").abs()


def prune(theta: Tensor, saliency: Tensor, sparsity: float, prunable: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Zero the ``round(sparsity * n)`` entries of ``theta`` with the smallest saliency.

    Only entries where the boolean ``prunable`` mask is true (all by default, e.g. weights but not
    biases) compete; :math:`n` is their number. Ties are broken by position (stable sort).
    Returns the pruned vector and the boolean mask of entries kept.

    Examples
    --------
    >>> import torch
    >>> theta = torch.tensor([1.0, -2.0, 3.0, 0.5])
    >>> pruned, keep = prune(theta, magnitude_saliency(theta), 0.5)
    >>> pruned, keep
    (tensor([ 0., -2.,  3.,  0.]), tensor([False,  True,  True, False]))
    """
    theta, s = _flat(theta, "theta"), _flat(saliency, "saliency")
    if s.shape != theta.shape:
        raise ShapeError(f"saliency must have the shape of theta {tuple(theta.shape)}, got {tuple(s.shape)}")
    frac = check_real(sparsity, "sparsity", low=0.0, high=1.0)
    if prunable is None:
        prunable = torch.ones_like(theta, dtype=torch.bool)
    if not isinstance(prunable, Tensor) or prunable.dtype != torch.bool or prunable.shape != theta.shape:
        raise ShapeError(f"prunable must be a boolean tensor of shape {tuple(theta.shape)}")
    candidates = torch.nonzero(prunable).reshape(-1)
    n_drop = int(round(frac * candidates.numel()))
    order = torch.sort(s[candidates], stable=True).indices
    keep = torch.ones_like(theta, dtype=torch.bool)
    keep[candidates[order[:n_drop]]] = False
    return torch.where(keep, theta, torch.zeros_like(theta)), keep
