r"""Synaptic Intelligence and MAS: the EWC penalty with other importances.

Both strategies keep one anchor (the parameters after the latest task) and one accumulated
importance :math:`\Omega = \sum_{s} \Omega_s` over the finished tasks, and add

.. math::

    \frac{\lambda}{2} \sum_i \Omega_i \, (\theta_i - \theta^*_i)^2

to the loss, the convention of :class:`~fisherbook.continual.strategies.EWC` (Zenke et al.'s :math:`c` and
Aljundi et al.'s :math:`\lambda`, written without the :math:`\tfrac12`, are half of ours). They
differ only in :math:`\Omega_s`: :class:`SI` integrates gradient times update along the
training path (:func:`~fisherbook.continual.importance.si_importance`), :class:`MAS` measures the
sensitivity of the output norm at the end (:func:`~fisherbook.continual.importance.mas_importance`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_int, check_real
from ..data import Task
from ..errors import ArgumentTypeError, InvalidArgumentError
from ._checks import check_lam, check_model
from .importance import mas_importance, si_importance
from .penalties import quadratic
from .strategies import Strategy, _params_matching

__all__ = ["SI", "MAS"]


class _Accumulated(Strategy):
    """One anchor and one summed importance (private base of SI and MAS)."""

    def __init__(self, lam: float) -> None:
        self.lam = check_lam(lam)
        self.importance: list[Tensor] | None = None
        self.importances: list[list[Tensor]] = []
        self.anchor: list[Tensor] | None = None
        self.anchor_names: list[str] = []

    def penalty(self, model: nn.Module) -> Tensor | None:
        if self.anchor is None:
            return None
        params = _params_matching(model, self.anchor, self.anchor_names)
        return quadratic(params, self.anchor, self.importance, self.lam)

    def _consolidate(self, model: nn.Module, omega: list[Tensor]) -> None:
        self.importances.append(omega)
        self.importance = omega if self.importance is None else [a + b for a, b in zip(self.importance, omega)]
        self.anchor_names = [n for n, _ in model.named_parameters()]
        self.anchor = [p.detach().clone() for p in model.parameters()]


class SI(_Accumulated):
    r"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017).

    During training on a task it accumulates, for every parameter, the path integral
    :math:`\omega_i = -\sum_t g_i(t)\,\Delta\theta_i(t)` of the gradient used by each optimiser step
    (the gradient of the total loss, penalty included, as in van de Ven et al.'s reference code)
    times the step's update. When the task ends its importance is
    :math:`\Omega_{s,i} = \max(0, \omega_i / (\Delta_i^2 + \xi))` with :math:`\Delta_i` the
    parameter's displacement over the task (:func:`~fisherbook.continual.importance.si_importance`); the
    importances are summed over tasks and the penalty is :math:`\frac{\lambda}{2}\sum_i \Omega_i
    (\theta_i - \theta^*_i)^2` at the latest anchor. It needs the training loop's hooks
    (:func:`~fisherbook.continual.training.train_sequence` calls them).

    Parameters
    ----------
    lam : float
        Strength :math:`\lambda \ge 0` (Zenke et al.'s :math:`c = \lambda / 2`).
    xi : float
        Damping :math:`\xi > 0` (Zenke et al. use 0.1 on split MNIST; it has the units of a
        squared parameter displacement).

    Attributes
    ----------
    importance : list of Tensor or None
        The summed :math:`\Omega`.
    importances : list of list of Tensor
        Each finished task's :math:`\Omega_s`.

    Examples
    --------
    >>> net = nn.Linear(2, 1)
    >>> si = SI(lam=1.0, xi=0.1)
    >>> for _ in range(3):   # what train_sequence does around each step
    ...     net.zero_grad(); net(torch.ones(1, 2)).sum().backward()
    ...     si.before_step(net)
    ...     with torch.no_grad():
    ...         for p in net.parameters(): p -= 0.1 * p.grad
    ...     si.after_step(net)
    >>> si.after_task(net, None)
    >>> [bool((w > 0).all()) for w in si.importance]   # every step lowered the loss
    [True, True]
    """

    def __init__(self, lam: float, xi: float = 0.1) -> None:
        super().__init__(lam)
        self.xi = check_real(xi, "xi", low=0.0, open_low=True)
        self.name = "SI"
        self._start: list[Tensor] | None = None
        self._omega: list[Tensor] | None = None
        self._grad: list[Tensor] | None = None
        self._before: list[Tensor] | None = None

    def before_step(self, model: nn.Module) -> None:
        params = list(model.parameters())
        if self._start is None:
            self._start = [p.detach().clone() for p in params]
            self._omega = [torch.zeros_like(p) for p in params]
        self._grad = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        self._before = [p.detach().clone() for p in params]

    def after_step(self, model: nn.Module) -> None:
        if self._grad is None or self._before is None or self._omega is None:
            raise InvalidArgumentError("SI.after_step was called without before_step: call both around every "
                                    "optimiser step (train_sequence does)")
        for w, g, b, p in zip(self._omega, self._grad, self._before, model.parameters()):
            w.sub_(g * (p.detach() - b))
        self._grad = self._before = None

    def after_task(self, model: nn.Module, task: Task | None) -> None:
        check_model(model)
        params = [p.detach() for p in model.parameters()]
        if self._start is None or self._omega is None:  # no step was taken on this task
            self._start = [p.clone() for p in params]
            self._omega = [torch.zeros_like(p) for p in params]
        delta = [p - s for p, s in zip(params, self._start)]
        self._consolidate(model, si_importance(self._omega, delta, self.xi))
        self._start = self._omega = None


class MAS(_Accumulated):
    r"""Memory-aware synapses (Aljundi et al. 2018).

    When a task ends its importance is the mean absolute gradient of the squared output norm on
    the task's training inputs (:func:`~fisherbook.continual.importance.mas_importance`); importances are
    summed over tasks and the penalty is :math:`\frac{\lambda}{2}\sum_i \Omega_i (\theta_i -
    \theta^*_i)^2` at the latest anchor. Labels are not used.

    Parameters
    ----------
    lam : float
        Strength :math:`\lambda \ge 0` (Aljundi et al.'s :math:`\lambda` is half of ours).
    max_examples : int, optional
        Use the first ``max_examples`` training inputs only.

    Examples
    --------
    >>> from fisherbook.continual import make_mlp
    >>> net = make_mlp(4, (3,), 2, seed=0)
    >>> X, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    >>> mas = MAS(lam=1.0); mas.after_task(net, Task("A", X, y, X, y))
    >>> mas.penalty(net).item()   # zero at the anchor
    0.0
    """

    def __init__(self, lam: float, max_examples: int | None = None) -> None:
        super().__init__(lam)
        self.max_examples = None if max_examples is None else check_int(max_examples, "max_examples", minimum=1)
        self.name = "MAS"

    def after_task(self, model: nn.Module, task: Any) -> None:
        check_model(model)
        if not isinstance(task, Task):
            raise ArgumentTypeError(f"task must be a fisherbook.data.Task, got {type(task).__name__}")
        m = task.n_train if self.max_examples is None else min(self.max_examples, task.n_train)
        self._consolidate(model, mas_importance(model, task.X_train[:m]))
