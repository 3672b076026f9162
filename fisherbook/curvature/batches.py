r"""Data in batches: one tensor, a ``DataLoader`` or any iterable of batches.

:func:`fisherbook.curvature.fisher` accumulates the exact mean over all examples,

.. math::

    F = \frac{1}{N} \sum_{b} \sum_{n \in b} J_n^\top S_n S_n^\top J_n ,
    \qquad N = \sum_b |b| ,

so every batch contributes its *sum* and the division by :math:`N` happens once at the end:
the result does not depend on how the examples are split (up to floating-point round-off), and
memory holds one batch's statistics plus the result.

A batch is an input tensor, or a tuple or list ``(inputs, targets, ...)`` as a
``torch.utils.data.DataLoader`` over a ``TensorDataset`` yields; elements after the targets are
ignored. Targets are used by ``kind="empirical"`` and ignored otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError

__all__ = ["Batches", "as_batches"]


class Batches:
    """A re-iterable source of ``(inputs, targets)`` batches.

    Re-iterable inputs (a ``DataLoader``, a list or tuple of batches) are kept by reference and
    iterated again on each pass; a one-shot iterator (a generator) is read into a list on the first
    pass when ``store`` is true (the matrix-free representation, which needs one pass per
    product), and otherwise allowed one pass only.
    """

    def __init__(self, data: Any, *, store: bool = False, progress: bool = False, desc: str = "fisher") -> None:
        self._data = data
        self._one_shot = iter(data) is data
        self._stored: list[Any] | None = None
        self._store = store
        self._passes = 0
        self.progress = progress
        self.desc = desc
        self.shuffled = _is_shuffled(data)

    def __len__(self) -> int:
        if self._stored is not None:
            return len(self._stored)
        return len(self._data)

    def _raw(self) -> Iterator[Any]:
        if self._stored is not None:
            return iter(self._stored)
        if self._one_shot:
            if self._passes > 0:
                raise InvalidArgumentError("inputs is a one-shot iterator that has already been consumed; pass a "
                                           "DataLoader or a list of batches to iterate over the data again")
            if self._store:
                self._stored = list(self._data)
                return iter(self._stored)
        return iter(self._data)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        raw = self._raw()
        self._passes += 1
        if self.progress:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

            try:
                total: int | None = len(self)
            except TypeError:
                total = None
            raw = iter(tqdm(raw, total=total, desc=self.desc, leave=False))
        count = 0
        for index, batch in enumerate(raw):
            count += 1
            yield _split(batch, index)
        if count == 0:
            raise ShapeError("inputs yielded no batches: a DataLoader or iterable of batches must hold at least "
                             "one example")


def _split(batch: Any, index: int) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ShapeError(f"batch {index} of inputs is empty; a batch is an input tensor or (inputs, targets)")
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"batch {index} of inputs must start with an input tensor, got {type(x).__name__}")
        if y is not None and not isinstance(y, Tensor):
            raise ArgumentTypeError(f"batch {index} of inputs has targets of type {type(y).__name__}; "
                                    "targets must be a torch.Tensor")
        return x, y
    raise ArgumentTypeError(f"batch {index} of inputs must be a torch.Tensor or a tuple (inputs, targets), "
                            f"got {type(batch).__name__}")


def _is_shuffled(data: Any) -> bool:
    loader = torch.utils.data.DataLoader
    if isinstance(data, loader):
        batch_sampler: Any = data.batch_sampler
        sampler = batch_sampler.sampler if batch_sampler is not None else data.sampler
        return isinstance(sampler, torch.utils.data.RandomSampler)
    return False


def as_batches(inputs: Any, targets: Tensor | None, *, store: bool, progress: bool) -> Batches:
    """Wrap ``inputs`` (anything but a tensor) as :class:`Batches`, or raise a named error."""
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Iterable):
        raise ArgumentTypeError("inputs must be a torch.Tensor with examples along dim 0, a DataLoader or an "
                                f"iterable of batches, got {type(inputs).__name__}")
    if isinstance(inputs, torch.utils.data.Dataset) and not isinstance(inputs, torch.utils.data.IterableDataset):
        raise ArgumentTypeError(f"inputs is a {type(inputs).__name__} (a Dataset of single examples); wrap it in "
                                "torch.utils.data.DataLoader(dataset, batch_size=...) to pass batches")
    if targets is not None:
        raise InvalidArgumentError("targets must be None when inputs is a DataLoader or an iterable of batches; "
                                   "let each batch be an (inputs, targets) pair instead")
    return Batches(inputs, store=store, progress=progress)
