r"""The Fisher of data sharded over the ranks of a ``torch.distributed`` process group.

Each rank :math:`r` holds a shard :math:`\mathcal D_r` of :math:`n_r` examples (a ``DataLoader``
with a ``DistributedSampler``, say) and the same model. The Fisher of the union
:math:`\mathcal D = \bigcup_r \mathcal D_r`, :math:`N = \sum_r n_r`, is a mean over examples, so it
is the weighted mean of the shards' Fishers,

.. math::

    F = \frac1N \sum_{n \in \mathcal D} J_n^\top \Lambda_n J_n
      = \frac1N \sum_r n_r F_r ,

and one ``all_reduce`` (a sum) of :math:`n_r F_r` and of :math:`n_r` gives every rank the Fisher
of all the data. The same holds for each stored piece: the diagonal, each block, the matrix, and
the two Kronecker factors of every K-FAC layer (:math:`A = N^{-1} \sum_n \bar a_n \bar a_n^\top`
and :math:`G` are themselves means over examples, so the result is the K-FAC of the union, *not*
the mean of the shards' Kronecker products). A matrix-free Fisher reduces every product
:math:`F v = N^{-1} \sum_r n_r F_r v` (and its ``diag``/``to_dense``) when it is called: every rank
must then call the same products in the same order, as in any collective.

Only PyTorch's collectives are used (``torch.distributed.all_reduce``, ``all_gather_object``),
so the code runs on ``gloo`` (CPU tensors) and ``nccl`` (CUDA tensors: the model's device) alike.

``kind="mc"``: each rank draws the sampled targets of its shard from its own ``generator``. Give
every rank a different seed (e.g. ``seed + rank``); the draws are then independent across ranks
and the distributed result has the distribution of the one-process Monte-Carlo Fisher of all the
data. Exactly, it equals :math:`N^{-1} \sum_r n_r F_r^{\text{mc}}` with :math:`F_r^{\text{mc}}` the
one-process result on shard :math:`r` with rank :math:`r`'s generator (what the tests check).

Examples
--------
Without a process group the distributed call refuses (a :class:`~fisherbook.errors.DistributedError`):

>>> import torch
>>> from fisherbook.curvature import distributed
>>> from fisherbook.errors import DistributedError
>>> model = torch.nn.Linear(3, 2).double()
>>> try:
...     distributed.fisher(model, torch.randn(4, 3, dtype=torch.float64))
... except DistributedError as err:
...     print(str(err)[:60])
the distributed Fisher needs an initialised torch.distribute

A recipe, run in each of the processes started by ``torchrun --nproc-per-node 2 script.py``::

    torch.distributed.init_process_group("gloo")        # "nccl" on GPUs
    sampler = DistributedSampler(dataset, shuffle=False)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler)
    F = distributed.fisher(model, loader, representation="kfac")   # the same F on every rank
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..errors import ArgumentTypeError, DistributedError, InvalidArgumentError, UnsupportedError
from .api import fisher as _fisher
from .likelihoods import Likelihood
from .representations import KFAC, BlockDiagonal, CurvatureMatrix, Dense, Diagonal, MatrixFree

__all__ = ["fisher", "reduce_fisher", "diagonal_fisher", "check_process_group", "check_same_parameters",
           "unwrap"]


def check_process_group(group: Any = None, what: str = "the distributed Fisher") -> Any:
    """Return ``group`` after checking that ``torch.distributed`` is usable.

    Raises
    ------
    DistributedError
        ``torch.distributed`` is not available in this build, or no process group is initialised
        (call ``torch.distributed.init_process_group`` first, e.g. under ``torchrun``).
    """
    dist = torch.distributed
    if not dist.is_available():
        raise DistributedError(f"{what} needs torch.distributed, which this PyTorch build does not provide")
    if not dist.is_initialized():
        raise DistributedError(
            f"{what} needs an initialised torch.distributed process group; call "
            "torch.distributed.init_process_group(backend) first (torchrun sets the environment), or drop the "
            "distributed option to compute on this process only")
    return group


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper; else ``model``.

    The curvature engine runs its own forward and backward passes; going through the wrapper would
    trigger its gradient synchronisation, so the engine runs the wrapped module itself.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def check_same_parameters(model: nn.Module, group: Any = None) -> None:
    """Check that every rank's ``model`` has the same parameter names and shapes (one small collective).

    Raises
    ------
    DistributedError
        The ranks' models differ; the message names the first rank and parameter that disagree.
    """
    check_process_group(group, "check_same_parameters")
    dist = torch.distributed
    mine = [(name, tuple(p.shape)) for name, p in unwrap(model).named_parameters()]
    everyone: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, mine, group=group)
    reference = everyone[0]
    for rank, theirs in enumerate(everyone):
        if theirs == reference:
            continue
        diff = next(((a, b) for a, b in zip(reference, theirs) if a != b), None)
        detail = (f"rank 0 has {diff[0][0]!r} of shape {diff[0][1]}, rank {rank} has {diff[1][0]!r} of shape "
                  f"{diff[1][1]}" if diff is not None else
                  f"rank 0 has {len(reference)} parameters, rank {rank} has {len(theirs)}")
        raise DistributedError(f"the ranks' models disagree on their parameters ({detail}); every rank must "
                               "hold the same model (DistributedDataParallel broadcasts rank 0's at construction)")


def _all_reduce_sum(tensors: list[Tensor], group: Any) -> list[Tensor]:
    """Sum ``tensors`` over the ranks in one collective (flattened into one buffer)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM, group=group)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out


def _global_count(n_local: int, like: Tensor, group: Any) -> float:
    total = torch.tensor([float(n_local)], dtype=torch.float64, device=like.device)
    torch.distributed.all_reduce(total, group=group)
    return float(total.item())


def _check_count(n_local: Any) -> int:
    if isinstance(n_local, bool) or not isinstance(n_local, int):
        raise ArgumentTypeError(f"n_local must be an int (examples on this rank), got {type(n_local).__name__}")
    if n_local < 0:
        raise InvalidArgumentError(f"n_local must be >= 0, got {n_local}")
    return n_local


def reduce_fisher(F: CurvatureMatrix, n_local: int | Callable[[], int], group: Any = None) -> CurvatureMatrix:
    r"""The Fisher of the union of the ranks' shards, from this rank's Fisher ``F`` of ``n_local`` examples.

    Returns :math:`N^{-1} \sum_r n_r F_r` in the representation of ``F`` (a collective: every rank
    calls it with its own ``F`` of the same model). Dense, diagonal, block-diagonal and K-FAC
    matrices are reduced at once (one ``all_reduce`` of all their entries); a
    :class:`~fisherbook.curvature.MatrixFree` comes back as a matrix-free operator whose every
    ``mv``, ``diag`` and ``to_dense`` computes the local result and reduces it.

    Parameters
    ----------
    F : CurvatureMatrix
        This rank's Fisher, a mean over its ``n_local`` examples.
    n_local : int or callable
        The number of examples behind ``F``; a callable (evaluated after each local product) for a
        matrix-free ``F`` whose data are counted while it streams.
    group : ProcessGroup, optional
        The process group (default: the world).

    Raises
    ------
    DistributedError
        No initialised process group.
    UnsupportedError
        A lazy combination (``Sum``, ``Scaled``, ``Inverse``): reduce the terms first.
    """
    check_process_group(group)
    count: Callable[[], int] = (lambda: _check_count(n_local)) if not callable(n_local) else n_local

    if isinstance(F, MatrixFree):
        def reduced(fn: Callable[[], Tensor]) -> Tensor:
            local = fn()
            n = count()
            total = _global_count(n, local, group)
            out = _all_reduce_sum([local * n], group)[0]
            return out / total

        return MatrixFree(lambda v: reduced(lambda: F._mv(v)), lambda: reduced(F.to_dense),
                          lambda: reduced(F.diag), F.layout)

    n = count()
    if isinstance(F, Dense):
        total = _global_count(n, F.matrix, group)
        return Dense(_all_reduce_sum([F.matrix * n], group)[0] / total, F.layout)
    if isinstance(F, Diagonal):
        total = _global_count(n, F.values, group)
        return Diagonal(_all_reduce_sum([F.values * n], group)[0] / total, F.layout)
    if isinstance(F, BlockDiagonal):
        total = _global_count(n, F.blocks[0], group)
        blocks = _all_reduce_sum([b * n for b in F.blocks], group)
        return BlockDiagonal([b / total for b in blocks], F.index, F.layout)
    if isinstance(F, KFAC):
        total = _global_count(n, F.factors[0][0], group)
        flat = _all_reduce_sum([t * n for pair in F.factors for t in pair], group)
        factors = [(flat[2 * k] / total, flat[2 * k + 1] / total) for k in range(len(F.factors))]
        return KFAC(factors, F.layers, F.layout)
    raise UnsupportedError(f"reduce_fisher takes a Dense, Diagonal, BlockDiagonal, KFAC or MatrixFree Fisher, got "
                           f"{type(F).__name__}; reduce the terms of a lazy combination before combining them")


class _Counted:
    """Pass batches through and count the examples of the latest complete pass."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.count: int | None = None
        self._running = 0
        self._one_shot = isinstance(data, Iterator)  # a generator or iterator: one pass only
        self._it: Iterator[Any] | None = None

    @staticmethod
    def _size(batch: Any) -> int:
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        return int(x.shape[0]) if isinstance(x, Tensor) and x.dim() > 0 else 0

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        if self._one_shot:
            self._it = iter(self._data)
            return self
        return self._gen()

    def _gen(self) -> Iterator[Any]:
        running = 0
        for batch in self._data:
            running += self._size(batch)
            yield batch
        self.count = running

    def __next__(self) -> Any:  # one-shot sources stay one-shot (the engine stores or refuses a second pass)
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            self.count = self._running
            raise
        self._running += self._size(batch)
        return batch


def fisher(
    model: nn.Module,
    inputs: Any,
    likelihood: str | Likelihood = "categorical",
    kind: str = "true",
    targets: Tensor | None = None,
    representation: str = "dense",
    n_samples: int = 1,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    group: Any = None,
    progress: bool = False,
) -> CurvatureMatrix:
    r"""The Fisher of the union of every rank's data: :func:`fisherbook.curvature.fisher` then :func:`reduce_fisher`.

    Takes the arguments of :func:`fisherbook.curvature.fisher` (``inputs`` is this rank's shard:
    a tensor, a ``DataLoader`` with a ``DistributedSampler``, or any iterable of batches) and a
    process ``group`` (default: the world). A ``DistributedDataParallel`` model is unwrapped (the
    engine runs the module inside, so no gradient synchronisation is triggered). Every rank must
    call it, with the same model and options, and hold at least one example (a
    ``DistributedSampler`` pads the shards to equal sizes).

    With ``kind="mc"`` each rank samples from its own ``generator`` (seed it with the rank); see
    the module notes for what the result equals.

    Raises
    ------
    DistributedError
        No initialised process group; ranks whose models differ in parameter names or shapes.

    Examples
    --------
    See the module docstring: the call needs a process group.
    """
    check_process_group(group)
    model = unwrap(model)
    check_same_parameters(model, group)
    if isinstance(inputs, Tensor):
        local = _fisher(model, inputs, likelihood, kind, targets, representation, n_samples, sigma, generator,
                        progress=progress)
        return reduce_fisher(local, int(inputs.shape[0]), group)
    if _shuffles(inputs) and kind == "mc" and representation == "matrix_free":
        raise UnsupportedError("kind='mc' with representation='matrix_free' replays the same sampled targets on "
                               "every product, which needs the batches in the same order on every pass; the "
                               "DataLoader shuffles. Use shuffle=False, or another representation.")
    counted = _Counted(inputs)
    local = _fisher(model, cast(Any, counted), likelihood, kind, targets, representation, n_samples, sigma, generator,
                    progress=progress)

    def count() -> int:
        if counted.count is None:  # pragma: no cover - the engine runs a full pass before it returns
            raise DistributedError("the local data were not counted: the engine did not finish a pass")
        return counted.count

    return reduce_fisher(local, count, group)


def _shuffles(data: Any) -> bool:
    loader = torch.utils.data.DataLoader
    if isinstance(data, loader):
        batch_sampler: Any = data.batch_sampler
        sampler = batch_sampler.sampler if batch_sampler is not None else data.sampler
        return isinstance(sampler, torch.utils.data.RandomSampler)
    return False


def diagonal_fisher(
    model: nn.Module,
    inputs: Any,
    *,
    kind: str,
    targets: Tensor | None = None,
    likelihood: str = "categorical",
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    group: Any = None,
) -> list[Tensor]:
    r"""Diagonal Fisher of the union of the ranks' data, one tensor per parameter (for EWC).

    The distributed counterpart of :func:`fisherbook.continual.fisher.diagonal_fisher`: every rank gets
    the same list, shaped like ``list(model.parameters())``, so an EWC penalty built from it (and
    the anchors, equal on every rank under DDP) is the same on every rank, and DDP's gradient
    average of the penalised loss is the one-process gradient.
    """
    F = fisher(model, inputs, likelihood=likelihood, kind=kind, targets=targets, representation="diagonal",
               n_samples=n_samples, generator=generator, group=group)
    return [f.detach() for f in F.unflatten(F.diag())]
