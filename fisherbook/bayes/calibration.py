r"""Calibration of predicted class probabilities: reliability curves and the expected calibration error.

A classifier is calibrated when, among the predictions made with confidence :math:`c` (the largest
class probability), a fraction :math:`c` is right. :func:`calibration_curve` gives the data of a
reliability diagram (mean confidence and accuracy per equal-width confidence bin) and
:func:`expected_calibration_error` their count-weighted mean gap (Naeini et al. 2015; Guo et al.
2017). Chapter 8 uses them to compare the MAP network with its last-layer Laplace predictive
(:class:`.LastLayerLaplace`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validate import check_finite, check_int
from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError, SizeLimitError

__all__ = ["calibration_curve", "expected_calibration_error"]

_MAX_BINS = 10**6


def _check_probs_targets(probs: Any, targets: Any, n_bins: Any) -> tuple[Tensor, Tensor, Tensor, int]:
    if not isinstance(probs, Tensor) or not isinstance(targets, Tensor):
        raise ArgumentTypeError(f"probs and targets must be torch tensors, got {type(probs).__name__} and "
                                f"{type(targets).__name__}")
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    if n_bins > _MAX_BINS:
        raise SizeLimitError(f"n_bins must be at most {_MAX_BINS:.0e} (equal-width confidence bins), got {n_bins}")
    if not probs.is_floating_point():
        raise ArgumentTypeError(f"probs must be a floating-point tensor of probabilities, got dtype {probs.dtype}")
    if probs.dim() == 1:
        probs = torch.stack([1 - probs, probs], dim=1)
    if probs.dim() != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ShapeError(f"probs must have shape (n,) or (n, C) with n >= 1, got {tuple(probs.shape)}")
    if targets.shape != (probs.shape[0],):
        raise ShapeError(f"targets must have shape ({probs.shape[0]},) (one per row of probs), got "
                         f"{tuple(targets.shape)}")
    check_finite(probs, "probs")
    if bool((probs < 0).any()) or bool((probs > 1).any()):
        raise InvalidArgumentError("probs must lie in [0, 1]")
    if not torch.allclose(probs.sum(1), torch.ones(1, dtype=probs.dtype), atol=1e-4):
        raise InvalidArgumentError("probs must sum to 1 over classes (within 1e-4)")
    if targets.is_complex() or targets.dtype == torch.bool:
        raise ArgumentTypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.is_floating_point():
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise InvalidArgumentError("floating-point targets must be 0/1 labels")
        targets = targets.long()
    if bool((targets < 0).any()) or bool((targets >= probs.shape[1]).any()):
        raise InvalidArgumentError(f"targets must be class indices in [0, {probs.shape[1]})")
    conf, pred = probs.max(1)
    correct = (pred == targets).to(probs.dtype)
    bins = torch.clamp((conf * n_bins).ceil().long() - 1, 0, n_bins - 1)  # bin b covers (b/B, (b+1)/B]
    return conf, correct, bins, n_bins


def calibration_curve(probs: Tensor, targets: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    r"""Reliability-diagram data: mean confidence, accuracy and count per confidence bin.

    The confidence of a prediction is its largest class probability; bins are equal-width on
    :math:`(0, 1]`. Empty bins report NaN confidence and accuracy with count 0.

    Parameters
    ----------
    probs : Tensor
        ``(n, C)`` class probabilities, or ``(n,)`` probabilities of class 1 (binary).
    targets : Tensor
        ``(n,)`` class indices (0/1 for binary).
    n_bins : int
        Number of bins, in ``[1, 10**6]``.

    Returns
    -------
    tuple of Tensor
        ``confidence``, ``accuracy`` (each shape ``(n_bins,)``) and ``counts`` (int64).

    Examples
    --------
    >>> import torch
    >>> conf, acc, cnt = calibration_curve(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]), n_bins=5)
    >>> cnt.tolist()
    [0, 0, 0, 1, 1]
    >>> acc[3:].tolist(), [round(c, 2) for c in conf[3:].tolist()]
    ([0.0, 1.0], [0.8, 0.9])
    """
    conf, correct, bins, n_bins = _check_probs_targets(probs, targets, n_bins)
    counts = torch.bincount(bins, minlength=n_bins)
    sum_conf = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, conf)
    sum_acc = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, correct)
    denom = counts.to(conf.dtype)
    nan = torch.full_like(denom, float("nan"))
    return (torch.where(counts > 0, sum_conf / denom.clamp_min(1), nan),
            torch.where(counts > 0, sum_acc / denom.clamp_min(1), nan), counts)


def expected_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 15) -> Tensor:
    r"""Expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    .. math::

       \mathrm{ECE} = \sum_{b=1}^B \frac{|B_b|}{n}\, \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|,

    with predictions grouped into :math:`B` equal-width bins of confidence (largest class
    probability).

    Parameters
    ----------
    probs : Tensor
        ``(n, C)`` class probabilities, or ``(n,)`` probabilities of class 1 (binary).
    targets : Tensor
        ``(n,)`` class indices (0/1 for binary).
    n_bins : int
        Number of bins :math:`B`, in ``[1, 10**6]``.

    Returns
    -------
    Tensor
        A scalar in :math:`[0, 1]`.

    Examples
    --------
    Always 90 % confident, right 60 % of the time:

    >>> import torch
    >>> probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
    >>> targets = torch.tensor([0] * 6 + [1] * 4)
    >>> round(expected_calibration_error(probs, targets).item(), 6)
    0.3
    """
    conf, correct, bins, n_bins = _check_probs_targets(probs, targets, n_bins)
    n = conf.shape[0]
    gap = torch.zeros(n_bins, dtype=conf.dtype).index_add_(0, bins, conf - correct)
    return gap.abs().sum() / n
