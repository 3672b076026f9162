r"""The diagonal Fisher of a task, and how much two tasks' Fishers overlap.

:func:`diagonal_fisher` is the per-parameter importance EWC weights its penalty with; it is a thin
wrapper over :func:`fisherbook.curvature.fisher` with ``representation="diagonal"``.
:func:`fisher_overlap` is Kirkpatrick et al.'s :math:`1 - d^2` between two such diagonals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import curvature
from .._validate import check_int, check_option, check_tensor
from ..curvature.likelihoods import LIKELIHOODS, Likelihood
from ..errors import ArgumentTypeError, FisherbookError, InvalidArgumentError, ShapeError
from ._checks import FISHER_KINDS, as_tensor_list, check_fisher_values, check_model, check_model_mode

__all__ = ["diagonal_fisher", "fisher_overlap"]


def diagonal_fisher(
    model: nn.Module,
    inputs: Tensor,
    *,
    kind: str,
    targets: Tensor | None = None,
    likelihood: str = "categorical",
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    distributed: bool = False,
    process_group: Any = None,
) -> list[Tensor]:
    r"""Diagonal of the Fisher of ``model`` on ``inputs``, one tensor per parameter.

    A thin wrapper over ``fisherbook.curvature.fisher`` with ``representation="diagonal"``:
    the mean over examples of :math:`\operatorname{diag}(J_n^\top \Lambda_n J_n)` for
    ``kind="true"``, of squared gradients of log-likelihoods at targets sampled from the model for
    ``kind="mc"``, and of squared gradients at the observed ``targets`` for ``kind="empirical"``.
    The kind has no default: which Fisher EWC uses is a modelling choice (van de Ven 2025 finds
    the true Fisher works best).

    Parameters
    ----------
    model : nn.Module
        The network; its parameters (in ``model.parameters()`` order) define the layout. Put it in
        ``eval()`` mode first if it has dropout or batch normalisation.
    inputs : Tensor
        Inputs, shape ``(N, ...)``, finite, ``N >= 1``.
    kind : str
        Which Fisher: ``"true"``, ``"mc"`` or ``"empirical"``.
    targets : Tensor, optional
        Observed targets, required for ``kind="empirical"``.
    likelihood : str
        Output likelihood, e.g. ``"categorical"`` for a classifier returning logits.
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    generator : torch.Generator, optional
        Source of randomness for ``kind="mc"``.
    distributed : bool
        Under ``torch.distributed``: ``inputs`` (and ``targets``) are this rank's shard of the task
        and the result is the diagonal Fisher of the union of the shards, the same on every rank
        (:func:`fisherbook.curvature.distributed.diagonal_fisher`).
    process_group : torch.distributed.ProcessGroup, optional
        The group to reduce over when ``distributed`` (default: the world).

    Returns
    -------
    list of Tensor
        Shaped like ``list(model.parameters())``, non-negative.

    Raises
    ------
    UnsupportedError
        If ``model`` has batch normalisation in training mode (it normalises with the batch's
        statistics, so there is no per-example gradient).

    Warns
    -----
    ModelModeWarning
        If ``model`` is in training mode with dropout (the Fisher would change from call to call).

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Linear(3, 2)
    >>> F = diagonal_fisher(net, torch.randn(5, 3), kind="true")
    >>> [tuple(f.shape) for f in F]
    [(2, 3), (2,)]
    """
    check_model(model)
    kind = check_option(kind, "kind", FISHER_KINDS)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    if not isinstance(inputs, Tensor):
        raise ArgumentTypeError(f"inputs must be a torch.Tensor with examples along dim 0, got {type(inputs).__name__}")
    if inputs.ndim == 0:
        raise ShapeError("inputs must have the examples along dim 0, got a 0-dimensional tensor")
    check_tensor(inputs, "inputs")
    if kind == "empirical":
        if targets is None:
            raise InvalidArgumentError("targets are required for kind='empirical' (one target per example)")
        if not isinstance(targets, Tensor):
            raise ArgumentTypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
        if targets.ndim == 0 or targets.shape[0] != inputs.shape[0]:
            raise ShapeError(f"targets must have one entry per example ({inputs.shape[0]} along dim 0), "
                             f"got shape {tuple(targets.shape)}")
        check_tensor(targets, "targets")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if isinstance(likelihood, str):
        likelihood = check_option(likelihood, "likelihood", LIKELIHOODS)
    elif not isinstance(likelihood, Likelihood):
        raise ArgumentTypeError(f"likelihood must be one of {LIKELIHOODS}, got {type(likelihood).__name__}")
    check_model_mode(model, "the Fisher", per_example=True)
    try:
        F = curvature.fisher(
            model,
            inputs,
            likelihood=likelihood,
            kind=kind,
            targets=targets,
            representation="diagonal",
            n_samples=n_samples,
            generator=generator,
            distributed=distributed,
            process_group=process_group,
        )
    except (TypeError, ValueError) as err:  # the core's own checks (targets against outputs), in our vocabulary
        if isinstance(err, FisherbookError):
            raise
        raise (ArgumentTypeError if isinstance(err, TypeError) else InvalidArgumentError)(str(err)) from err
    return [f.detach() for f in F.unflatten(F.diag())]


def _flat_normalised(name: str, f: Any) -> Tensor:
    if isinstance(f, Tensor):
        v = f.reshape(-1)
    else:
        parts = as_tensor_list(name, f)
        if not parts:
            raise InvalidArgumentError(f"{name} must hold at least one tensor")
        v = torch.cat([t.reshape(-1) for t in parts])
    if v.numel() == 0:
        raise ShapeError(f"{name} must not be empty")
    check_fisher_values(name, [v])
    total = v.sum()
    if not bool(total > 0):
        raise InvalidArgumentError(f"{name} must have a positive trace (it is all zeros)")
    if not bool(torch.isfinite(total)) or bool(total < torch.finfo(v.dtype).tiny):
        v = v / v.max()  # a trace that overflows or is subnormal: rescale first (the overlap is scale-free)
        total = v.sum()
    return v / total


def fisher_overlap(fisher_a: Tensor | Sequence[Tensor], fisher_b: Tensor | Sequence[Tensor]) -> Tensor:
    r"""Kirkpatrick et al.'s Fisher overlap :math:`1 - d^2` between two diagonal Fishers.

    Both Fishers are normalised to unit trace, :math:`\hat F = F / \operatorname{tr} F`, and

    .. math::

        d^2 = \tfrac12 \operatorname{tr}\bigl(\hat F_1 + \hat F_2 - 2 (\hat F_1 \hat F_2)^{1/2}\bigr)
            = \tfrac12 \sum_i \bigl(\sqrt{\hat f_{1i}} - \sqrt{\hat f_{2i}}\bigr)^2 ,

    the squared Fréchet distance (Kirkpatrick et al. 2017, SI). For diagonals the overlap
    :math:`1 - d^2 = \sum_i \sqrt{\hat f_{1i} \hat f_{2i}}` is the Bhattacharyya coefficient of the
    two normalised diagonals: 1 for proportional Fishers, 0 for disjoint supports.

    Parameters
    ----------
    fisher_a, fisher_b : Tensor or Sequence of Tensor
        Fisher diagonals (a flat tensor or a list of tensors, flattened and concatenated), same
        number of entries, finite, non-negative, with positive trace (any scale the dtype holds:
        the overlap is scale-free, and a trace that would overflow is rescaled first).

    Returns
    -------
    Tensor
        A scalar in :math:`[0, 1]`.

    Examples
    --------
    >>> fisher_overlap(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0]))
    tensor(0.)
    >>> fisher_overlap(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    tensor(1.)
    """
    a, b = _flat_normalised("fisher_a", fisher_a), _flat_normalised("fisher_b", fisher_b)
    if a.numel() != b.numel():
        raise ShapeError(f"fisher_a has {a.numel()} entries but fisher_b has {b.numel()}")
    d2 = 0.5 * ((a.sqrt() - b.to(a).sqrt()) ** 2).sum()
    return (1.0 - d2).clamp(0.0, 1.0)
