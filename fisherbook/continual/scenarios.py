r"""The three continual-learning scenarios of van de Ven, Tuytelaars & Tolias (2022) on split digits.

The ten digit classes are split into tasks of two classes each (``0/1``, ``2/3``, …) and the same
five-task sequence is learned in three ways, which differ in what the learner is told at test time:

- **task-incremental** (``"task"``): the task identity is given. Each task has its own two output
  units of one ten-way network (a multi-headed network; :class:`HeadTask` with ``head=(2t, 2t+1)``)
  and is trained and tested on them only, with labels ``0, 1``;
- **domain-incremental** (``"domain"``): the task identity is not given and not needed. One shared
  two-way head answers "first or second class of its pair" (labels ``0, 1``, e.g. even against odd);
- **class-incremental** (``"class"``): the task identity is not given and must be inferred. One
  ten-way head answers "which digit" (labels ``0–9``), over all classes seen so far.

:func:`split_digits_scenario` builds the tasks and says how many outputs the network needs;
:func:`~fisherbook.continual.training.train_sequence` honours the heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._validate import check_int, check_option
from ..data import Task, split_digits
from ..errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["HeadTask", "Scenario", "SCENARIOS", "split_digits_scenario"]

SCENARIOS = ("task", "domain", "class")


@dataclass(frozen=True)
class HeadTask(Task):
    r"""A :class:`~fisherbook.data.Task` with its own output units (a head) of a shared network.

    Attributes
    ----------
    head : tuple of int
        The output units of this task, distinct and non-negative; labels ``y`` index into it
        (label ``k`` is unit ``head[k]``).

    Examples
    --------
    >>> y = torch.tensor([0, 1])
    >>> t = HeadTask("2/3", torch.zeros(2, 3), y, torch.zeros(2, 3), y, head=(2, 3))
    >>> t.head, t.n_train
    ((2, 3), 2)
    """

    head: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.head, str | bytes) or not isinstance(self.head, tuple | list):
            raise ArgumentTypeError(f"head must be a tuple of output indices, got {type(self.head).__name__}")
        head = tuple(check_int(h, "head entry", minimum=0) for h in self.head)
        if not head or len(set(head)) != len(head):
            raise InvalidArgumentError(f"head must hold at least one output index, all distinct; got {self.head!r}")
        object.__setattr__(self, "head", head)
        for split in ("train", "test"):
            y = getattr(self, f"y_{split}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(head)):
                raise InvalidArgumentError(f"y_{split} must index into the head (labels 0..{len(head) - 1}), got "
                                           f"labels in [{int(y.min())}, {int(y.max())}]")


@dataclass(frozen=True)
class Scenario:
    r"""A task sequence and the output layer it needs.

    Attributes
    ----------
    name : str
        ``"task"``, ``"domain"`` or ``"class"`` (incremental).
    tasks : list of Task
        The sequence; :class:`HeadTask` in the task-incremental scenario.
    n_out : int
        Output units of the network: 10 (task- and class-incremental) or 2 (domain-incremental).

    Examples
    --------
    >>> sc = split_digits_scenario("domain")
    >>> sc.n_out, [t.name for t in sc.tasks][:2]
    (2, ['0/1', '2/3'])
    """

    name: str
    tasks: list[Task]
    n_out: int

    def __post_init__(self) -> None:
        check_option(self.name, "name", SCENARIOS)
        if isinstance(self.tasks, Task) or not isinstance(self.tasks, list) or not self.tasks or not all(
                isinstance(t, Task) for t in self.tasks):
            raise ArgumentTypeError(f"tasks must be a non-empty list of fisherbook.data.Task, got {self.tasks!r:.80}")
        check_int(self.n_out, "n_out", minimum=1)


def split_digits_scenario(
    scenario: str,
    n_tasks: int = 5,
    test_size: float = 0.25,
    seed: int = 0,
    dtype: Any = torch.float32,
) -> Scenario:
    r"""Split digits as a task-, domain- or class-incremental sequence (van de Ven et al. 2022).

    Task :math:`t` holds the digits :math:`2t` and :math:`2t + 1` (``fisherbook.data.split_digits``:
    one stratified split of all ten classes, z-scored with its training statistics).

    Parameters
    ----------
    scenario : {"task", "domain", "class"}
        Task-incremental: :class:`HeadTask` with ``head=(2t, 2t+1)`` of a 10-way network, labels
        0/1. Domain-incremental: labels 0/1 on a shared 2-way head. Class-incremental: labels
        0–9 on a 10-way head.
    n_tasks : int
        Number of tasks, 1 to 5 (the first ``n_tasks`` pairs).
    test_size : float
        Fraction held out, in ``(0, 1)``.
    seed : int
        Seed of the split.
    dtype : torch.dtype
        Floating dtype of the features.

    Returns
    -------
    Scenario

    Examples
    --------
    >>> sc = split_digits_scenario("task", seed=0)
    >>> sc.n_out, sc.tasks[1].head, sorted(set(sc.tasks[1].y_train.tolist()))
    (10, (2, 3), [0, 1])
    >>> sorted(set(split_digits_scenario("class").tasks[1].y_train.tolist()))
    [2, 3]
    """
    scenario = check_option(scenario, "scenario", SCENARIOS)
    n_tasks = check_int(n_tasks, "n_tasks", minimum=1, maximum=5)
    classes = [(2 * t, 2 * t + 1) for t in range(n_tasks)]
    tasks = split_digits(classes, relabel=scenario != "class", test_size=test_size, seed=seed, dtype=dtype)
    if scenario == "task":
        tasks = [HeadTask(t.name, t.X_train, t.y_train, t.X_test, t.y_test, head=c) for t, c in zip(tasks, classes)]
    return Scenario(scenario, list(tasks), 2 if scenario == "domain" else 10)
