r"""Continual-learning strategies: how a learner protects old tasks while it learns a new one.

A :class:`Strategy` contributes a penalty to the loss (:meth:`Strategy.penalty`) and consolidates
what it needs when a task ends (:meth:`Strategy.after_task`): :class:`FineTuning` does nothing,
:class:`L2` anchors the parameters, :class:`EWC` anchors them with the Fisher diagonal of each
finished task (Kirkpatrick et al. 2017) or, online, with one running Fisher (Schwarz et al.
2018). :func:`.train_sequence` runs any of them over a task
sequence.

The penalties check, on every call, that the model still has the parameters the anchors were
taken from: a model whose parameter count or shapes differ raises
:class:`~fisherbook.errors.ShapeError` naming the first parameter that does not match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_int, check_option
from ..data import Task
from ..errors import ArgumentTypeError, ShapeError
from ._checks import FISHER_KINDS, check_fisher_values, check_gamma, check_lam, check_model
from .fisher import batched_empirical_fisher, diagonal_fisher
from .penalties import online_fisher_update, quadratic

__all__ = ["Strategy", "FineTuning", "L2", "EWC"]

EWC_KINDS = FISHER_KINDS + ("batched_empirical",)


def _params_matching(model: nn.Module, anchor: list[Tensor], anchor_names: list[str]) -> list[Tensor]:
    """The model's parameters, after checking they match ``anchor`` in number and shape; else a
    :class:`ShapeError` naming the first parameter that does not."""
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    for k, (name, p) in enumerate(named):
        if k >= len(anchor):
            raise ShapeError(f"model has {len(named)} parameter tensors but the anchor has {len(anchor)}; "
                             f"parameter {name!r} has no anchor")
        if p.shape != anchor[k].shape:
            raise ShapeError(f"parameter {name!r} has shape {tuple(p.shape)} but the anchored parameter "
                             f"{anchor_names[k]!r} has shape {tuple(anchor[k].shape)}")
    if len(named) != len(anchor):
        raise ShapeError(f"model has {len(named)} parameter tensors but the anchor has {len(anchor)}; "
                         f"anchored parameter {anchor_names[len(named)]!r} is missing")
    return [p for _, p in named]


class Strategy:
    r"""How a continual learner protects old tasks: a penalty and an end-of-task update.

    :func:`.train_sequence` minimises ``cross_entropy + strategy.penalty(model)``
    on each task and calls ``strategy.after_task(model, task)`` once training on ``task`` ends.
    Subclasses override both; the base class is plain fine-tuning.

    Examples
    --------
    >>> Strategy().penalty(nn.Linear(2, 2)) is None
    True
    """

    name = "fine-tuning"

    def penalty(self, model: nn.Module) -> Tensor | None:
        """Penalty added to the loss (``None``: none)."""
        check_model(model)
        return None

    def after_task(self, model: nn.Module, task: Task | None) -> None:
        """Consolidate after training ``task`` (anchors, Fishers)."""
        check_model(model)

    def before_step(self, model: nn.Module) -> None:
        """Called by :func:`.train_sequence` after ``loss.backward()``, before the optimiser step
        (``p.grad`` holds the gradient of the total loss). Does nothing by default."""

    def after_step(self, model: nn.Module) -> None:
        """Called by :func:`.train_sequence` right after the optimiser step. Does nothing by default."""


class FineTuning(Strategy):
    r"""No protection: each task is trained from where the previous one left off.

    Examples
    --------
    >>> FineTuning().penalty(nn.Linear(2, 2)) is None
    True
    """

    name = "fine-tuning"


class L2(Strategy):
    r"""L2 to the parameters reached after the previous task: :math:`\frac{\lambda}{2}\lVert\theta-\theta^*\rVert^2`.

    Parameters
    ----------
    lam : float
        Strength :math:`\lambda \ge 0`.

    Raises
    ------
    ShapeError
        From :meth:`penalty`, if the model's parameters differ in number or shape from the
        anchored ones.

    Examples
    --------
    >>> net = nn.Linear(2, 1); s = L2(lam=1.0); s.after_task(net, None)
    >>> s.penalty(net).item()
    0.0
    """

    name = "L2"

    def __init__(self, lam: float) -> None:
        self.lam = check_lam(lam)
        self.anchor: list[Tensor] | None = None
        self.anchor_names: list[str] = []

    def penalty(self, model: nn.Module) -> Tensor | None:
        if self.anchor is None:
            return None
        params = _params_matching(model, self.anchor, self.anchor_names)
        return quadratic(params, self.anchor, None, self.lam)

    def after_task(self, model: nn.Module, task: Task | None) -> None:
        check_model(model)
        self.anchor_names = [n for n, _ in model.named_parameters()]
        self.anchor = [p.detach().clone() for p in model.parameters()]


class EWC(Strategy):
    r"""Elastic weight consolidation, with separate per-task penalties or online.

    With ``online=False`` (Kirkpatrick et al. 2017) training task :math:`t` minimises

    .. math::

        L_t(\theta) + \sum_{s < t} \frac{\lambda}{2} \sum_i F_{s,i} (\theta_i - \theta^*_{s,i})^2 ,

    one penalty per past task, each with the Fisher :math:`F_s` and anchor :math:`\theta^*_s`
    taken when task :math:`s` ended. With ``online=True`` (Schwarz et al. 2018) one running
    Fisher :math:`F \leftarrow \gamma F + F_s` and the single latest anchor are kept. With
    :math:`\gamma = 1` the two differ only in the anchors: the online penalty anchors every past
    Fisher at the latest parameters, which is what the Laplace recursion of Huszár (2018) asks
    for, whereas the separate penalties count the earlier tasks' data again (see Chapter 6).

    Parameters
    ----------
    lam : float
        Strength :math:`\lambda \ge 0`.
    kind : str
        Which diagonal Fisher: ``"true"``, ``"mc"`` or ``"empirical"`` (no default; see
        :func:`~fisherbook.continual.fisher.diagonal_fisher`), or ``"batched_empirical"``,
        Avalanche's squared gradients of mini-batch mean losses
        (:func:`~fisherbook.continual.fisher.batched_empirical_fisher`).
    online : bool
        Online EWC (one Fisher, one anchor).
    gamma : float
        Decay of online EWC, in ``[0, 1]``; ignored when ``online=False``.
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    max_examples : int, optional
        Estimate each Fisher on the first ``max_examples`` training examples only.
    generator : torch.Generator, optional
        Randomness for ``kind="mc"``; it must live on the model's device.
    batch_size : int
        Mini-batch size of ``kind="batched_empirical"`` in :meth:`after_task` (the
        other kinds read the task's training set as one tensor).

    Attributes
    ----------
    fishers : list of list of Tensor
        The Fisher diagonal of every finished task (also kept in online mode, for inspection).
    anchors : list of list of Tensor
        The parameters at the end of every finished task.
    running_fisher : list of Tensor or None
        Online mode: the accumulated Fisher.

    Raises
    ------
    ShapeError
        From :meth:`penalty`, if the model's parameters differ in number or shape from the
        anchored ones.

    Warns
    -----
    ModelModeWarning
        From :meth:`after_task`, if the model is in training mode with dropout (see
        :func:`~fisherbook.continual.fisher.diagonal_fisher`, which also refuses train-mode batch norm).

    Examples
    --------
    >>> from fisherbook.continual import make_mlp
    >>> net = make_mlp(4, (3,), 2, seed=0)
    >>> ewc = EWC(lam=10.0, kind="true")
    >>> X, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    >>> ewc.after_task(net, Task("A", X, y, X, y))
    >>> ewc.penalty(net).item()  # zero at the anchor
    0.0
    """

    def __init__(
        self,
        lam: float,
        kind: str,
        online: bool = False,
        gamma: float = 1.0,
        n_samples: int = 1,
        max_examples: int | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 128,
    ) -> None:
        self.lam = check_lam(lam)
        self.kind: str = check_option(kind, "kind", EWC_KINDS)
        self.batch_size: int = check_int(batch_size, "batch_size", minimum=1)
        self.gamma: float = check_gamma(gamma)
        self.n_samples: int = check_int(n_samples, "n_samples", minimum=1)
        self.max_examples: int | None = (None if max_examples is None
                                         else check_int(max_examples, "max_examples", minimum=1))
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.online: bool = bool(online)
        self.generator = generator
        self.fishers: list[list[Tensor]] = []
        self.anchors: list[list[Tensor]] = []
        self.anchor_names: list[list[str]] = []
        self.running_fisher: list[Tensor] | None = None
        self.name = f"{'online ' if online else ''}EWC ({kind})"

    def penalty(self, model: nn.Module) -> Tensor | None:
        if not self.anchors:
            return None
        if self.online:
            params = _params_matching(model, self.anchors[-1], self.anchor_names[-1])
            return quadratic(params, self.anchors[-1], self.running_fisher, self.lam)
        total: Tensor | None = None
        for a, names, f in zip(self.anchors, self.anchor_names, self.fishers):
            params = _params_matching(model, a, names)
            term = quadratic(params, a, f, self.lam)
            total = term if total is None else total + term
        return total

    def after_task(self, model: nn.Module, task: Any) -> None:
        check_model(model)
        if not isinstance(task, Task):
            raise ArgumentTypeError(f"task must be a fisherbook.data.Task, got {type(task).__name__}")
        p = next(model.parameters())
        m = task.n_train if self.max_examples is None else min(self.max_examples, task.n_train)
        X = task.X_train[:m].to(device=p.device, dtype=p.dtype)
        y = task.y_train[:m].to(p.device)
        if self.kind == "batched_empirical":
            self.consolidate(model, [(X[i:i + self.batch_size], y[i:i + self.batch_size])
                                     for i in range(0, m, self.batch_size)])
        else:  # one tensor: the same Fisher as batches, bit for bit as before consolidate() existed
            targets = y if self.kind == "empirical" else None
            self._store(model, diagonal_fisher(model, X, kind=self.kind, targets=targets, n_samples=self.n_samples,
                                               generator=self.generator))

    def consolidate(self, model: nn.Module, data: Tensor | Iterable[Any]) -> None:
        r"""Take the Fisher of ``data`` at the current parameters and anchor there.

        :meth:`after_task` calls this with the task's training set. Call it yourself to
        consolidate on data of your own: a tensor of inputs (``kind="true"`` or ``"mc"``), or a
        ``torch.utils.data.DataLoader`` or any iterable of input batches or ``(inputs, targets)``
        pairs, over which the exact mean is taken, each batch weighted by its size
        (:func:`~fisherbook.continual.fisher.diagonal_fisher`). ``kind="empirical"`` and
        ``"batched_empirical"`` need ``(inputs, targets)`` batches; for ``"batched_empirical"``
        every batch is one mini-batch of Avalanche's estimator
        (:func:`~fisherbook.continual.fisher.batched_empirical_fisher`).

        Parameters
        ----------
        model : nn.Module
            The model, at the parameters to anchor.
        data : Tensor, DataLoader or iterable of batches
            The old task's data.

        Examples
        --------
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from fisherbook.continual import make_mlp
        >>> net = make_mlp(4, (3,), 2, seed=0)
        >>> X, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
        >>> ewc = EWC(lam=1.0, kind="empirical")
        >>> ewc.consolidate(net, DataLoader(TensorDataset(X, y), batch_size=3))
        >>> ewc.penalty(net).item()
        0.0
        """
        check_model(model)
        if isinstance(data, Task):
            raise ArgumentTypeError("data must be inputs or batches, not a Task; use after_task(model, task)")
        if self.kind == "batched_empirical":
            if isinstance(data, Tensor):
                raise ArgumentTypeError("kind='batched_empirical' needs (inputs, targets) batches (a DataLoader or "
                                        "an iterable of pairs), got one tensor")
            F = batched_empirical_fisher(model, data)
        else:
            if isinstance(data, Tensor) and self.kind == "empirical":
                raise ArgumentTypeError("kind='empirical' needs the targets: pass (inputs, targets) batches (a "
                                        "DataLoader or an iterable of pairs), not one tensor of inputs")
            F = diagonal_fisher(model, data, kind=self.kind, n_samples=self.n_samples, generator=self.generator)
        self._store(model, F)

    def _store(self, model: nn.Module, F: list[Tensor]) -> None:
        check_fisher_values("fisher", F)  # validated once here; penalty() then skips the value checks
        self.fishers.append(F)
        self.anchor_names.append([n for n, _ in model.named_parameters()])
        self.anchors.append([q.detach().clone() for q in model.parameters()])
        if self.online:
            if self.running_fisher is not None and [f.shape for f in self.running_fisher] != [f.shape for f in F]:
                raise ShapeError("the model's parameter shapes changed since the last task; online EWC keeps one "
                                 "running Fisher and needs the same parameters for every task")
            self.running_fisher = online_fisher_update(self.running_fisher, F, self.gamma)
