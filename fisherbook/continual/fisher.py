r"""The diagonal Fisher of a task, and how much two tasks' Fishers overlap.

:func:`diagonal_fisher` is the per-parameter importance EWC weights its penalty with; it is a thin
wrapper over :func:`fisherbook.curvature.fisher` with ``representation="diagonal"``.
:func:`fisher_overlap` is Kirkpatrick et al.'s :math:`1 - d^2` between two such diagonals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from .. import curvature
from .._validate import check_int, check_option, check_tensor
from ..curvature.likelihoods import LIKELIHOODS, Likelihood
from ..errors import ArgumentTypeError, FisherbookError, InvalidArgumentError, ShapeError
from ._checks import (
    FISHER_KINDS,
    as_tensor_list,
    check_batches,
    check_fisher_values,
    check_model,
    check_model_mode,
)

__all__ = ["diagonal_fisher", "fisher_overlap", "batched_empirical_fisher"]


def diagonal_fisher(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
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
    inputs : Tensor, torch.utils.data.DataLoader or iterable of batches
        Inputs, shape ``(N, ...)``, finite, ``N >= 1``; or a ``DataLoader`` or any iterable of
        batches, each an input tensor or an ``(inputs, targets)`` pair. Batches are streamed
        through :func:`fisherbook.curvature.fisher`: the result is the exact mean over all
        examples, each batch weighted by its size, equal to the one-tensor call on the
        concatenated batches up to round-off. With ``kind="empirical"`` every batch must be a
        pair (and ``targets`` must then be ``None``).
    kind : str
        Which Fisher: ``"true"``, ``"mc"`` or ``"empirical"``.
    targets : Tensor, optional
        Observed targets, required for ``kind="empirical"`` with tensor ``inputs``; ``None`` with
        batched inputs (the targets come from the batches).
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

    The same from a DataLoader (the exact mean over its batches):

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> X, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    >>> F1 = diagonal_fisher(net, X, kind="empirical", targets=y)
    >>> F2 = diagonal_fisher(net, DataLoader(TensorDataset(X, y), batch_size=4), kind="empirical")
    >>> all(torch.allclose(a, b) for a, b in zip(F1, F2))
    True
    """
    check_model(model)
    kind = check_option(kind, "kind", FISHER_KINDS)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    if not isinstance(inputs, Tensor):
        check_batches(inputs, targets)
    else:
        if inputs.ndim == 0:
            raise ShapeError("inputs must have the examples along dim 0, got a 0-dimensional tensor")
        check_tensor(inputs, "inputs")
    if kind == "empirical" and isinstance(inputs, Tensor):
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
            cast(Any, inputs),  # the core takes a tensor or batches
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


def batched_empirical_fisher(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    targets: Tensor | None = None,
    *,
    batch_size: int | None = None,
) -> list[Tensor]:
    r"""Avalanche's EWC importances: squared gradients of mini-batch *mean* losses, averaged over batches.

    For mini-batches :math:`B_1, \dots, B_M` of the data and the mean cross-entropy
    :math:`\ell_{B}(\theta) = \frac{1}{|B|}\sum_{n \in B} -\log p(y_n \mid x_n, \theta)` at the
    observed labels,

    .. math::

        \tilde F = \frac1M \sum_{m=1}^{M} \bigl(\nabla_\theta \ell_{B_m}(\theta)\bigr)^{\odot 2} ,

    an unweighted mean over batches. This is not a Fisher: the square of a mean gradient is
    :math:`\bar g^2 + \sigma^2/|B|` in expectation (with :math:`\bar g` the full-data mean gradient
    and :math:`\sigma^2` the per-example variance), so at a well-trained anchor, where
    :math:`\bar g \approx 0`, it is about :math:`1/|B|` times the per-example empirical Fisher
    (:func:`diagonal_fisher` with ``kind="empirical"``), which it equals for ``batch_size=1``.
    van de Ven (2025) compares it with the true Fisher in EWC.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits.
    inputs : Tensor or iterable of (inputs, targets) batches
        One tensor (cut into consecutive batches of ``batch_size``), or a ``DataLoader`` /
        iterable of ``(inputs, targets)`` pairs (each pair one batch; ``batch_size`` must then be
        ``None``).
    targets : Tensor, optional
        Class labels, one per example; required with tensor ``inputs``, ``None`` otherwise.
    batch_size : int, optional
        Batch size for tensor ``inputs``, ``>= 1``.

    Returns
    -------
    list of Tensor
        Shaped like ``list(model.parameters())``, non-negative.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Linear(3, 2).double()
    >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    >>> a = batched_empirical_fisher(net, X, y, batch_size=1)
    >>> b = diagonal_fisher(net, X, kind="empirical", targets=y)
    >>> all(torch.allclose(p, q) for p, q in zip(a, b))   # batches of one: the empirical Fisher
    True
    """
    check_model(model)
    check_model_mode(model, "the Fisher", per_example=False)
    params = [p for p in model.parameters()]
    if isinstance(inputs, Tensor):
        if batch_size is None:
            raise InvalidArgumentError("batch_size is required when inputs is one tensor (an int >= 1)")
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if inputs.ndim == 0 or inputs.shape[0] == 0:
            raise ShapeError(f"inputs must hold at least one example along dim 0, got shape {tuple(inputs.shape)}")
        check_tensor(inputs, "inputs")
        if not isinstance(targets, Tensor):
            raise ArgumentTypeError(f"targets must be a torch.Tensor of class labels, got {type(targets).__name__}")
        if targets.ndim != 1 or targets.shape[0] != inputs.shape[0]:
            raise ShapeError(f"targets must have one label per example ({inputs.shape[0]}), got shape "
                             f"{tuple(targets.shape)}")
        batches: Iterable[Any] = [(inputs[i:i + batch_size], targets[i:i + batch_size])
                                  for i in range(0, inputs.shape[0], batch_size)]
    else:
        check_batches(inputs, targets)
        if batch_size is not None:
            raise InvalidArgumentError("batch_size must be None when inputs is a DataLoader or an iterable of "
                                       "batches (each batch is used as it comes)")
        batches = inputs
    total = [torch.zeros_like(p) for p in params]
    m = 0
    for k, batch in enumerate(batches):
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise ArgumentTypeError(f"batch {k} of inputs must be an (inputs, targets) pair, got "
                                    f"{type(batch).__name__}")
        xb, yb = batch[0], batch[1]
        if not isinstance(xb, Tensor) or not isinstance(yb, Tensor):
            raise ArgumentTypeError(f"batch {k} of inputs must hold tensors, got {type(xb).__name__} and "
                                    f"{type(yb).__name__}")
        xb = xb.to(device=params[0].device, dtype=params[0].dtype if xb.is_floating_point() else xb.dtype)
        check_tensor(xb, f"batch {k} of inputs")
        out = model(xb)
        if out.ndim != 2 or out.shape[0] != xb.shape[0] or yb.shape != (xb.shape[0],):
            raise ShapeError(f"batch {k}: the model must give (n, K) logits and the targets (n,) labels, got "
                             f"{tuple(out.shape)} and {tuple(yb.shape)}")
        loss = torch.nn.functional.cross_entropy(out, yb.to(out.device))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for t, g in zip(total, grads):
            if g is not None:
                t.add_(g.detach() ** 2)
        m += 1
    if m == 0:
        raise ShapeError("inputs yielded no batches: at least one (inputs, targets) batch is needed")
    return [t / m for t in total]
