r"""Running a strategy over a task sequence and recording the accuracy matrix.

:func:`train_sequence` is the protocol every :class:`.Strategy` is written
for: train on each task in turn with the strategy's penalty added, let the strategy consolidate,
and fill row :math:`i` of the accuracy matrix :math:`R` (accuracy on task :math:`j` after training
task :math:`i`) with :func:`evaluate`. :func:`make_mlp` builds the multilayer perceptrons the
continual-learning literature uses, seeded without touching the global random stream.

These are public API: they take any classifier, any list of :class:`~fisherbook.data.Task` and
any strategy, and seed nothing but their own generators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_int, check_real
from ..data import Task
from ..errors import ArgumentTypeError, ConvergenceError, InvalidArgumentError, ShapeError
from ._checks import check_model
from .metrics import average_accuracy, backward_transfer, forgetting
from .strategies import FineTuning, Strategy

__all__ = ["make_mlp", "evaluate", "ContinualResult", "train_sequence", "HeadView"]


def make_mlp(
    n_in: int,
    hidden: Sequence[int] = (100, 100),
    n_out: int = 10,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    r"""A multilayer perceptron with ReLU hidden layers, ``Linear → ReLU → … → Linear``.

    Kirkpatrick et al. (2017) use two hidden layers of 400 ReLU units for permuted MNIST; on the
    64-pixel digits two layers of 100 are plenty. With ``seed`` the default PyTorch initialisation
    is drawn from that seed without disturbing the global random state.

    Parameters
    ----------
    n_in : int
        Input features, >= 1.
    hidden : Sequence of int
        Hidden-layer widths, each >= 1 (may be empty: a linear model).
    n_out : int
        Outputs (logits), >= 1.
    seed : int, optional
        Seed of the initialisation, >= 0.
    dtype : torch.dtype
        Floating parameter dtype.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> net = make_mlp(64, (100, 100), 10, seed=0)
    >>> sum(p.numel() for p in net.parameters())
    17610
    """
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
        raise ArgumentTypeError(f"hidden must be a sequence of positive integers, got {type(hidden).__name__}")
    sizes = [check_int(n_in, "n_in", minimum=1)]
    sizes += [check_int(h, f"hidden[{k}]", minimum=1) for k, h in enumerate(hidden)]
    sizes.append(check_int(n_out, "n_out", minimum=1))
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentTypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1], dtype=dtype))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_tasks(tasks: Any) -> list[Task]:
    if isinstance(tasks, Task) or isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise ArgumentTypeError(f"tasks must be a non-empty sequence of fisherbook.data.Task, got "
                                f"{type(tasks).__name__}")
    tasks = list(tasks)
    if not tasks:
        raise InvalidArgumentError("tasks must be a non-empty sequence of fisherbook.data.Task, got an empty one")
    for k, t in enumerate(tasks):
        if not isinstance(t, Task):
            raise ArgumentTypeError(f"tasks must be a non-empty sequence of fisherbook.data.Task; tasks[{k}] is "
                                    f"{type(t).__name__}")
    return tasks


def task_head(task: Task) -> tuple[int, ...] | None:
    """The output units a task uses (``task.head`` of a :class:`~.scenarios.HeadTask`), or ``None``: all."""
    return getattr(task, "head", None)


class HeadView(nn.Module):
    r"""A classifier seen through one task's head: ``HeadView(model, head)(x) = model(x)[:, head]``.

    The task-incremental scenario gives each task its own output units of one shared network (a
    multi-headed network). :func:`train_sequence` trains and tests a task with a head through
    this view and hands the view to ``strategy.after_task``, so a Fisher, an importance or a
    replay buffer computed there sees the task's own softmax. The view owns no parameters of its
    own: its parameters are the model's, in the same order.

    Parameters
    ----------
    model : nn.Module
        Maps ``(n, d)`` inputs to ``(n, K)`` logits.
    head : tuple of int
        The output units of the task, distinct, in ``0 .. K-1``.

    Examples
    --------
    >>> view = HeadView(nn.Linear(3, 4), (2, 3))
    >>> view(torch.zeros(5, 3)).shape, len(list(view.parameters()))
    (torch.Size([5, 2]), 2)
    """

    def __init__(self, model: nn.Module, head: tuple[int, ...]) -> None:
        super().__init__()
        check_model(model)
        self.model = model
        self.head = tuple(head)
        self.register_buffer("_index", torch.tensor(self.head, dtype=torch.int64), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if out.ndim != 2 or max(self.head) >= out.shape[1]:
            raise ShapeError(f"the head {self.head} needs (n, K) outputs with K > {max(self.head)}, got shape "
                             f"{tuple(out.shape)}")
        return out.index_select(1, self._index.to(out.device))


def _view(model: nn.Module, task: Task) -> nn.Module:
    head = task_head(task)
    return model if head is None else HeadView(model, head)


def _forward(model: nn.Module, X: Tensor, task: Task) -> Tensor:
    """``model(X)`` with (n, K) logits checked (through the task's head, if it has one); torch's
    error for inputs the model cannot take is turned into a ShapeError that names the task."""
    try:
        out = _view(model, task)(X)
    except RuntimeError as err:
        raise ShapeError(f"model cannot be applied to the inputs of task {task.name!r} (shape {tuple(X.shape)}, "
                         f"{task.n_features} features): {err}") from err
    _check_outputs(out, X.shape[0], task)
    return out


def _check_outputs(out: Tensor, n: int, task: Task) -> None:
    if out.ndim != 2 or out.shape[0] != n:
        raise ShapeError(f"model must map ({n}, {task.n_features}) inputs to ({n}, K) logits, got output shape "
                         f"{tuple(out.shape)} on task {task.name!r}")


@torch.no_grad()
def evaluate(model: nn.Module, tasks: Sequence[Task]) -> Tensor:
    r"""Test accuracy of a classifier (argmax of its outputs) on each task.

    The model is evaluated in ``eval()`` mode and returned to the mode it was in. A task with a
    head (:class:`~.scenarios.HeadTask`, the task-incremental scenario) takes the argmax over its
    own output units only.

    Parameters
    ----------
    model : nn.Module
        Maps ``(n, d)`` inputs to ``(n, K)`` logits.
    tasks : Sequence of Task
        Tasks to evaluate on.

    Returns
    -------
    Tensor
        Accuracies in ``[0, 1]``, float64, shape ``(len(tasks),)``.

    Examples
    --------
    >>> from fisherbook.data import permuted_digits
    >>> acc = evaluate(make_mlp(64, (), 10, seed=0), permuted_digits(2))
    >>> acc.shape, bool(((acc >= 0) & (acc <= 1)).all())
    (torch.Size([2]), True)
    """
    check_model(model)
    tasks = _check_tasks(tasks)
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    accs = []
    try:
        for task in tasks:
            out = _forward(model, task.X_test.to(device=p.device, dtype=p.dtype), task)
            accs.append((out.argmax(dim=-1).cpu() == task.y_test.cpu()).double().mean())
    finally:
        model.train(was_training)
    return torch.stack(accs)


@dataclass
class ContinualResult:
    r"""What :func:`train_sequence` returns.

    Attributes
    ----------
    R : Tensor
        Accuracy matrix, float64, shape ``(T, T)``: ``R[i, j]`` is the test accuracy on task
        ``j`` after training on tasks ``0..i``.
    names : list of str
        Task names.
    strategy : str
        Name of the strategy.
    losses : list of float
        Mean training loss (data term) over the last epoch of each task.

    Examples
    --------
    >>> res = ContinualResult(torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64), ["A", "B"], "L2")
    >>> res.average_accuracy, res.backward_transfer
    (0.65, -0.4)
    """

    R: Tensor
    names: list[str]
    strategy: str
    losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.R, Tensor):
            raise ArgumentTypeError(f"R must be a torch.Tensor, got {type(self.R).__name__}")
        T = self.R.shape[0] if self.R.ndim else 0
        if self.R.ndim != 2 or self.R.shape[1] != T or T < 1:
            raise ShapeError(f"R must be a square (T, T) accuracy matrix with T >= 1, got shape {tuple(self.R.shape)}")
        if len(self.names) != T:
            raise ShapeError(f"names must hold one name per task ({T}), got {len(self.names)}")
        if not isinstance(self.strategy, str):
            raise ArgumentTypeError(f"strategy must be a str (the strategy's name), got {type(self.strategy).__name__}")

    @property
    def average_accuracy(self) -> float:
        """See :func:`.average_accuracy`."""
        return average_accuracy(self.R)

    @property
    def backward_transfer(self) -> float:
        """See :func:`.backward_transfer`."""
        return backward_transfer(self.R)

    @property
    def forgetting(self) -> float:
        """See :func:`.forgetting`."""
        return forgetting(self.R)


def train_sequence(
    model: nn.Module,
    tasks: Sequence[Task],
    strategy: Strategy | None = None,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    callback: Callable[[int, nn.Module], None] | None = None,
) -> ContinualResult:
    r"""Train ``model`` on ``tasks`` in order and record the accuracy matrix.

    For each task :math:`i` a fresh Adam optimiser (learning rate ``lr``, the setting of
    Kirkpatrick et al. 2017, Table S1) runs ``epochs`` passes of shuffled mini-batches over the
    task's training set, in ``train()`` mode, minimising the mean cross-entropy plus
    ``strategy.penalty(model)``; around each optimiser step it calls ``strategy.before_step(model)``
    (the gradients of the total loss are in ``p.grad``) and ``strategy.after_step(model)``, which
    Synaptic Intelligence uses for its path integral. A task with a head
    (:class:`~.scenarios.HeadTask`) is trained and tested on its own output units, and
    ``after_task`` receives the model seen through that head (:class:`HeadView`).
    Then, in ``eval()`` mode, ``strategy.after_task`` consolidates,
    ``callback(i, model)`` is called if given, and row :math:`i` of :math:`R` is filled with the
    test accuracy on every task (future ones included, so :math:`R_{ij}` for :math:`j > i` shows
    zero-shot transfer).

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits; trained in place.
    tasks : Sequence of Task
        The task sequence.
    strategy : Strategy, optional
        :class:`.FineTuning` (the default), :class:`.L2`,
        :class:`.EWC`, or a subclass of :class:`.Strategy`.
    epochs : int
        Passes over each task's training set, at least 1.
    lr : float
        Adam learning rate, finite and ``>= 0``.
    batch_size : int
        Mini-batch size, at least 1 (a batch size at least the training-set size is full batch).
    seed : int
        Seed of the mini-batch shuffling, ``>= 0`` (the initialisation is the caller's, see
        :func:`make_mlp`); the same seed gives the same run.
    callback : Callable, optional
        ``callback(i, model)`` after task ``i`` is consolidated.

    Returns
    -------
    ContinualResult

    Raises
    ------
    ConvergenceError
        If the training loss becomes NaN or infinite (lower ``lr`` or the strategy's ``lam``).

    Examples
    --------
    >>> from fisherbook.data import permuted_digits
    >>> tasks = permuted_digits(n_tasks=2)
    >>> res = train_sequence(make_mlp(64, (32,), 10, seed=0), tasks, FineTuning(), epochs=1)
    >>> res.R.shape, res.names
    (torch.Size([2, 2]), ['P1', 'P2'])
    """
    check_model(model)
    tasks = _check_tasks(tasks)
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    lr = check_real(lr, "lr", low=0.0)
    seed = check_int(seed, "seed", minimum=0)
    strategy = FineTuning() if strategy is None else strategy
    if not isinstance(strategy, Strategy):
        raise ArgumentTypeError(f"strategy must be a fisherbook.continual.Strategy, got {type(strategy).__name__}")
    if callback is not None and not callable(callback):
        raise ArgumentTypeError(f"callback must be callable or None, got {type(callback).__name__}")
    p0 = next(model.parameters())
    device, dtype = p0.device, p0.dtype
    g = torch.Generator().manual_seed(seed)
    T = len(tasks)
    R = torch.zeros(T, T, dtype=torch.float64)
    losses = []
    loss_fn = nn.CrossEntropyLoss()
    for i, task in enumerate(tasks):
        X = task.X_train.to(device=device, dtype=dtype)
        y = task.y_train.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        total = 0.0
        for _ in range(epochs):
            order = torch.randperm(task.n_train, generator=g).to(device)
            total = 0.0
            for start in range(0, task.n_train, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                out = _forward(model, X[idx], task)
                data_loss = loss_fn(out, y[idx])
                pen = strategy.penalty(model)
                loss = data_loss if pen is None else data_loss + pen
                loss.backward()
                strategy.before_step(model)
                opt.step()
                strategy.after_step(model)
                total += float(data_loss.detach()) * len(idx)
            if not math.isfinite(total):
                raise ConvergenceError(f"training loss diverged on task {i} ({task.name}); lower lr or lam")
        losses.append(total / task.n_train)
        model.eval()
        strategy.after_task(_view(model, task), task)
        if callback is not None:
            callback(i, model)
        R[i] = evaluate(model, tasks)
    return ContinualResult(R=R, names=[t.name for t in tasks], strategy=strategy.name, losses=losses)
