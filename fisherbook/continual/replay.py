r"""Experience replay: a small buffer of stored examples trained on alongside each new task.

Replay is the baseline that the regularisation methods (EWC, SI, MAS) are measured against in
the class-incremental scenario, where they fail (van de Ven, Tuytelaars & Tolias 2022): a
quadratic penalty on the parameters cannot make the network compare classes it never saw
together, while a handful of stored old examples in every mini-batch can. :class:`Replay` keeps
``per_class`` examples of every class of every finished task and adds their mean cross-entropy
(through their task's head, if it has one) to the loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_int, check_real
from ..data import Task
from ..errors import ArgumentTypeError
from ._checks import check_model
from .strategies import Strategy
from .training import task_head

__all__ = ["Replay"]


class Replay(Strategy):
    r"""Replay of a fixed number of stored examples per class.

    After each task, ``per_class`` training examples of each of its classes (drawn without
    replacement with the strategy's own generator) are stored with their labels and the task's
    head. While later tasks are trained the loss gains

    .. math::

        \text{weight} \cdot \frac{1}{|M|} \sum_{(x, y) \in M} -\log p(y \mid x, \theta)

    over the whole memory :math:`M` (a few dozen examples: the whole memory fits in each step).
    The memory grows by ``per_class`` times the number of classes per task.

    Parameters
    ----------
    per_class : int
        Stored examples per class, ``>= 1``.
    weight : float
        Weight of the replay loss, ``>= 0`` (1: as much as the new task's mean loss).
    seed : int
        Seed of the choice of stored examples.

    Attributes
    ----------
    memory : list of (Tensor, Tensor, tuple of int or None)
        Stored inputs, labels and head, one entry per finished task.

    Examples
    --------
    >>> X, y = torch.randn(20, 3), torch.arange(20) % 2
    >>> r = Replay(per_class=3); r.after_task(nn.Linear(3, 2), Task("A", X, y, X, y))
    >>> r.memory[0][0].shape, sorted(r.memory[0][1].tolist())
    (torch.Size([6, 3]), [0, 0, 0, 1, 1, 1])
    """

    def __init__(self, per_class: int, weight: float = 1.0, seed: int = 0) -> None:
        self.per_class = check_int(per_class, "per_class", minimum=1)
        self.weight = check_real(weight, "weight", low=0.0)
        self.seed = check_int(seed, "seed", minimum=0)
        self._generator = torch.Generator().manual_seed(self.seed)
        self.memory: list[tuple[Tensor, Tensor, tuple[int, ...] | None]] = []
        self.name = f"replay ({self.per_class} per class)"

    def penalty(self, model: nn.Module) -> Tensor | None:
        check_model(model)
        if not self.memory:
            return None
        p = next(model.parameters())
        total, n = p.new_zeros(()), 0
        for X, y, head in self.memory:
            out = model(X.to(device=p.device, dtype=p.dtype))
            if head is not None:
                out = out[:, list(head)]
            total = total + torch.nn.functional.cross_entropy(out, y.to(p.device), reduction="sum")
            n += y.shape[0]
        return self.weight * total / n

    def after_task(self, model: nn.Module, task: Any) -> None:
        check_model(model)
        if not isinstance(task, Task):
            raise ArgumentTypeError(f"task must be a fisherbook.data.Task, got {type(task).__name__}")
        keep = []
        for c in torch.unique(task.y_train).tolist():
            idx = torch.nonzero(task.y_train == c).reshape(-1)
            pick = idx[torch.randperm(idx.numel(), generator=self._generator)[: self.per_class]]
            keep.append(pick)
        order = torch.cat(keep)
        self.memory.append((task.X_train[order].clone(), task.y_train[order].clone(), task_head(task)))
