r"""Elastic weight consolidation and baselines for learning a sequence of tasks.

After training task :math:`A` to parameters :math:`\theta^*_A`, elastic weight consolidation
(EWC; Kirkpatrick et al. 2017) trains task :math:`B` on

.. math::

    L(\theta) = L_B(\theta) + \sum_i \frac{\lambda}{2} F_i \, (\theta_i - \theta^*_{A,i})^2 ,

where :math:`F` is the diagonal of the Fisher information of task :math:`A` at
:math:`\theta^*_A`. The quadratic is the Laplace approximation of the log posterior of task
:math:`A`, with the Fisher standing in for its precision.

This module provides

- :func:`ewc_penalty` and :func:`l2_penalty`, the penalties as differentiable functions of the
  parameters, anchors and Fisher diagonals given as lists of tensors;
- :func:`diagonal_fisher`, the diagonal Fisher of a model from ``fisherbook.curvature.fisher``,
  with the kind (``"true"``, ``"mc"`` or ``"empirical"``) always chosen by the caller;
- strategies :class:`FineTuning`, :class:`L2` and :class:`EWC` (one penalty per past task, or
  *online* EWC with :math:`F \leftarrow \gamma F + F_{\text{new}}` and a single anchor; Schwarz
  et al. 2018), all run by :func:`train_sequence`;
- :func:`train_sequence`, which trains a model on a list of :class:`~fisherbook.data.Task`
  and returns the accuracy matrix :math:`R_{ij}` (accuracy on task :math:`j` after training
  task :math:`i`), with :func:`average_accuracy`, :func:`backward_transfer` and :func:`forgetting`;
- :func:`fisher_overlap`, Kirkpatrick et al.'s :math:`1 - d^2` between two Fishers.

Everything follows the device and dtype of the model it is given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..data import Task

__all__ = [
    "ewc_penalty",
    "l2_penalty",
    "online_fisher_update",
    "diagonal_fisher",
    "fisher_overlap",
    "make_mlp",
    "evaluate",
    "Strategy",
    "FineTuning",
    "L2",
    "EWC",
    "ContinualResult",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "train_sequence",
]

FISHER_KINDS = ("true", "mc", "empirical")


# --------------------------------------------------------------------------- validation
def _check_lam(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a real number >= 0, got {type(lam).__name__}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    return float(lam)


def _as_list(name: str, tensors: Iterable[Tensor]) -> list[Tensor]:
    out = list(tensors)
    if not all(isinstance(t, Tensor) for t in out):
        raise TypeError(f"{name} must be a sequence of tensors")
    return out


def _check_like(name: str, tensors: Sequence[Tensor], params: Sequence[Tensor]) -> None:
    if len(tensors) != len(params):
        raise ValueError(f"{name} has {len(tensors)} tensors but the model has {len(params)} parameter tensors")
    for k, (t, p) in enumerate(zip(tensors, params)):
        if t.shape != p.shape:
            raise ValueError(
                f"{name}[{k}] has shape {tuple(t.shape)} but parameter {k} has shape {tuple(p.shape)}"
            )


def _check_fisher(fisher: Sequence[Tensor], params: Sequence[Tensor]) -> None:
    _check_like("fisher", fisher, params)
    for k, f in enumerate(fisher):
        if not torch.isfinite(f).all() or (f < 0).any():
            raise ValueError(f"fisher[{k}] must be finite and non-negative (a Fisher diagonal)")


# --------------------------------------------------------------------------- penalties
def ewc_penalty(
    params: Iterable[Tensor], anchor: Sequence[Tensor], fisher: Sequence[Tensor], lam: float
) -> Tensor:
    r"""The EWC penalty :math:`\frac{\lambda}{2} \sum_i F_i (\theta_i - \theta^*_i)^2`.

    Its gradient is :math:`\lambda F \odot (\theta - \theta^*)` and it vanishes, with its
    gradient, at the anchor. This is the convention of Kirkpatrick et al. (2017, eq. 3); some
    libraries (Avalanche) drop the factor :math:`\tfrac12`, so their :math:`\lambda` is half ours.

    Parameters
    ----------
    params : Iterable of Tensor
        Current parameters :math:`\theta`, e.g. ``model.parameters()``.
    anchor : Sequence of Tensor
        Anchor :math:`\theta^*`, shaped like ``params``.
    fisher : Sequence of Tensor
        Fisher diagonal :math:`F`, shaped like ``params``, finite and non-negative.
    lam : float
        Strength :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor
        A scalar, differentiable with respect to ``params``.

    Raises
    ------
    ValueError
        If ``lam < 0`` or a shape of ``anchor`` / ``fisher`` does not match ``params``.

    Examples
    --------
    >>> theta = [torch.tensor([1.0, 2.0])]
    >>> ewc_penalty(theta, anchor=[torch.zeros(2)], fisher=[torch.tensor([1.0, 0.5])], lam=2.0)
    tensor(3.)
    """
    lam = _check_lam(lam)
    params = _as_list("params", params)
    anchor = _as_list("anchor", anchor)
    fisher = _as_list("fisher", fisher)
    _check_like("anchor", anchor, params)
    _check_fisher(fisher, params)
    if not params:
        raise ValueError("params must hold at least one tensor")
    return _quadratic(params, anchor, fisher, lam)


def _quadratic(params: Sequence[Tensor], anchor: Sequence[Tensor], fisher: Sequence[Tensor] | None, lam: float) -> Tensor:
    """:func:`ewc_penalty` without the checks, for the training loop (inputs validated once).

    ``fisher=None`` means unit weights (the L2 penalty).
    """
    total = params[0].new_zeros(())
    for k, (p, a) in enumerate(zip(params, anchor)):
        sq = (p - a.to(p)) ** 2
        total = total + (sq if fisher is None else fisher[k].to(p) * sq).sum()
    return 0.5 * lam * total


def l2_penalty(params: Iterable[Tensor], anchor: Sequence[Tensor], lam: float) -> Tensor:
    r"""The plain L2-to-anchor penalty :math:`\frac{\lambda}{2} \lVert \theta - \theta^* \rVert^2`.

    It is :func:`ewc_penalty` with :math:`F = 1`: every parameter is held equally firmly,
    whatever its importance for the old task.

    Parameters
    ----------
    params : Iterable of Tensor
        Current parameters.
    anchor : Sequence of Tensor
        Anchor, shaped like ``params``.
    lam : float
        Strength :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor
        A scalar.

    Examples
    --------
    >>> l2_penalty([torch.tensor([3.0, 4.0])], [torch.zeros(2)], lam=1.0)
    tensor(12.5000)
    """
    params = _as_list("params", params)
    return ewc_penalty(params, anchor, [torch.ones_like(p) for p in params], lam)


def online_fisher_update(fisher: Sequence[Tensor] | None, fisher_new: Sequence[Tensor], gamma: float) -> list[Tensor]:
    r"""Online-EWC accumulation :math:`F \leftarrow \gamma F + F_{\text{new}}`.

    Schwarz et al. (2018) keep one running Fisher and one anchor instead of a penalty per task;
    :math:`\gamma \in [0, 1]` down-weights older tasks (:math:`\gamma = 1` sums all Fishers,
    :math:`\gamma = 0` keeps only the newest).

    Parameters
    ----------
    fisher : Sequence of Tensor or None
        The running Fisher; ``None`` before the first task.
    fisher_new : Sequence of Tensor
        The Fisher of the task just learned, shaped like ``fisher``.
    gamma : float
        Decay in ``[0, 1]``.

    Returns
    -------
    list of Tensor
        New tensors; the inputs are not modified.

    Examples
    --------
    >>> online_fisher_update([torch.tensor([1.0, 2.0])], [torch.tensor([0.5, 0.5])], gamma=0.5)
    [tensor([1.0000, 1.5000])]
    """
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    fisher_new = _as_list("fisher_new", fisher_new)
    if fisher is None:
        return [f.detach().clone() for f in fisher_new]
    fisher = _as_list("fisher", fisher)
    _check_like("fisher_new", fisher_new, fisher)
    return [gamma * f.detach() + g.detach() for f, g in zip(fisher, fisher_new)]


def diagonal_fisher(
    model: nn.Module,
    inputs: Tensor,
    *,
    kind: str,
    targets: Tensor | None = None,
    likelihood: str = "categorical",
    n_samples: int = 1,
    generator: torch.Generator | None = None,
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
        The network; its parameters (in ``model.parameters()`` order) define the layout.
    inputs : Tensor
        Inputs, shape ``(N, ...)``.
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

    Returns
    -------
    list of Tensor
        Shaped like ``list(model.parameters())``, non-negative.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Linear(3, 2)
    >>> F = diagonal_fisher(net, torch.randn(5, 3), kind="true")
    >>> [tuple(f.shape) for f in F]
    [(2, 3), (2,)]
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    if kind == "empirical" and targets is None:
        raise ValueError("targets are required for kind='empirical'")
    from .. import curvature

    F = curvature.fisher(
        model,
        inputs,
        likelihood=likelihood,
        kind=kind,
        targets=targets,
        representation="diagonal",
        n_samples=n_samples,
        generator=generator,
    )
    return [f.detach() for f in F.unflatten(F.diag())]


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
        number of entries, non-negative, with positive trace.

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

    def flat(name: str, f: Tensor | Sequence[Tensor]) -> Tensor:
        v = f.reshape(-1) if isinstance(f, Tensor) else torch.cat([t.reshape(-1) for t in _as_list(name, f)])
        if not torch.isfinite(v).all() or (v < 0).any():
            raise ValueError(f"{name} must be finite and non-negative")
        if not v.sum() > 0:
            raise ValueError(f"{name} must have a positive trace")
        return v / v.sum()

    a, b = flat("fisher_a", fisher_a), flat("fisher_b", fisher_b)
    if a.numel() != b.numel():
        raise ValueError(f"fisher_a has {a.numel()} entries but fisher_b has {b.numel()}")
    d2 = 0.5 * ((a.sqrt() - b.to(a).sqrt()) ** 2).sum()
    return (1.0 - d2).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- models and evaluation
def make_mlp(
    n_in: int, hidden: Sequence[int] = (100, 100), n_out: int = 10, seed: int | None = None, dtype: torch.dtype = torch.float32
) -> nn.Sequential:
    r"""A multilayer perceptron with ReLU hidden layers, ``Linear → ReLU → … → Linear``.

    Kirkpatrick et al. (2017) use two hidden layers of 400 ReLU units for permuted MNIST; on the
    64-pixel digits two layers of 100 are plenty. With ``seed`` the default PyTorch initialisation
    is drawn from that seed without disturbing the global random state.

    Parameters
    ----------
    n_in : int
        Input features.
    hidden : Sequence of int
        Hidden-layer widths (may be empty: a linear model).
    n_out : int
        Outputs (logits).
    seed : int, optional
        Seed of the initialisation.
    dtype : torch.dtype
        Parameter dtype.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> net = make_mlp(64, (100, 100), 10, seed=0)
    >>> sum(p.numel() for p in net.parameters())
    17610
    """
    sizes = [n_in, *hidden, n_out]
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"n_in, hidden and n_out must be positive integers, got {sizes!r}")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1], dtype=dtype))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def evaluate(model: nn.Module, tasks: Sequence[Task]) -> Tensor:
    r"""Test accuracy of a classifier (argmax of its outputs) on each task.

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
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    accs = []
    for task in tasks:
        pred = model(task.X_test.to(device=p.device, dtype=p.dtype)).argmax(dim=-1)
        accs.append((pred.cpu() == task.y_test.cpu()).double().mean())
    model.train(was_training)
    return torch.stack(accs)


# --------------------------------------------------------------------------- strategies
class Strategy:
    r"""How a continual learner protects old tasks: a penalty and an end-of-task update.

    :func:`train_sequence` minimises ``cross_entropy + strategy.penalty(model)`` on each task and
    calls ``strategy.after_task(model, task)`` once training on ``task`` ends. Subclasses override
    both; the base class is plain fine-tuning.
    """

    name = "fine-tuning"

    def penalty(self, model: nn.Module) -> Tensor | None:
        """Penalty added to the loss (``None``: none)."""
        return None

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Consolidate after training ``task`` (anchors, Fishers)."""


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

    Examples
    --------
    >>> net = nn.Linear(2, 1); s = L2(lam=1.0); s.after_task(net, None)
    >>> s.penalty(net).item()
    0.0
    """

    name = "L2"

    def __init__(self, lam: float) -> None:
        self.lam = _check_lam(lam)
        self.anchor: list[Tensor] | None = None

    def penalty(self, model: nn.Module) -> Tensor | None:
        if self.anchor is None:
            return None
        params = list(model.parameters())
        return _quadratic(params, self.anchor, None, self.lam)

    def after_task(self, model: nn.Module, task: Task | None) -> None:
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
        :func:`diagonal_fisher`).
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

    Attributes
    ----------
    fishers : list of list of Tensor
        The Fisher diagonal of every finished task (also kept in online mode, for inspection).
    anchors : list of list of Tensor
        The parameters at the end of every finished task.
    running_fisher : list of Tensor or None
        Online mode: the accumulated Fisher.

    Examples
    --------
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
    ) -> None:
        self.lam = _check_lam(lam)
        if kind not in FISHER_KINDS:
            raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
            raise ValueError(f"max_examples must be None or an integer >= 1, got {max_examples!r}")
        self.kind, self.online, self.gamma = kind, bool(online), float(gamma)
        self.n_samples, self.max_examples, self.generator = n_samples, max_examples, generator
        self.fishers: list[list[Tensor]] = []
        self.anchors: list[list[Tensor]] = []
        self.running_fisher: list[Tensor] | None = None
        self.name = f"{'online ' if online else ''}EWC ({kind})"

    def penalty(self, model: nn.Module) -> Tensor | None:
        if not self.anchors:
            return None
        params = list(model.parameters())
        if self.online:
            return _quadratic(params, self.anchors[-1], self.running_fisher, self.lam)
        return sum(_quadratic(params, a, f, self.lam) for a, f in zip(self.anchors, self.fishers))

    def after_task(self, model: nn.Module, task: Task) -> None:
        p = next(model.parameters())
        m = task.n_train if self.max_examples is None else min(self.max_examples, task.n_train)
        X = task.X_train[:m].to(device=p.device, dtype=p.dtype)
        y = task.y_train[:m].to(p.device)
        F = diagonal_fisher(
            model,
            X,
            kind=self.kind,
            targets=y if self.kind == "empirical" else None,
            n_samples=self.n_samples,
            generator=self.generator,
        )
        params = list(model.parameters())
        _check_fisher(F, params)  # validated once here; penalty() then skips the checks
        self.fishers.append(F)
        self.anchors.append([q.detach().clone() for q in params])
        if self.online:
            self.running_fisher = online_fisher_update(self.running_fisher, F, self.gamma)


# --------------------------------------------------------------------------- metrics
def _check_R(R: Tensor) -> Tensor:
    R = torch.as_tensor(R, dtype=torch.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
        raise ValueError(f"R must be a square (T, T) accuracy matrix, got shape {tuple(R.shape)}")
    return R


def average_accuracy(R: Tensor) -> float:
    r"""Average accuracy after the last task, :math:`A = \frac1T \sum_j R_{T,j}`.

    Examples
    --------
    >>> average_accuracy(torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64))
    0.65
    """
    R = _check_R(R)
    return float(R[-1].mean())


def backward_transfer(R: Tensor) -> float:
    r"""Backward transfer :math:`\frac{1}{T-1} \sum_{j<T} (R_{T,j} - R_{j,j})` (Lopez-Paz & Ranzato 2017).

    Negative values mean forgetting. Needs :math:`T \ge 2`.

    Examples
    --------
    >>> backward_transfer(torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=torch.float64))
    -0.4
    """
    R = _check_R(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("R must cover at least 2 tasks for backward transfer")
    return float((R[-1, :-1] - R.diagonal()[:-1]).mean())


def forgetting(R: Tensor) -> float:
    r"""Average forgetting :math:`\frac{1}{T-1}\sum_{j<T} \max_{i<T} R_{i,j} - R_{T,j}` (Chaudhry et al. 2018).

    The drop of each earlier task from its best accuracy during the sequence to its final one.
    Needs :math:`T \ge 2`.

    Examples
    --------
    >>> forgetting(torch.tensor([[0.9, 0.1, 0.1], [0.95, 0.8, 0.1], [0.5, 0.7, 0.9]], dtype=torch.float64))
    0.275
    """
    R = _check_R(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("R must cover at least 2 tasks for forgetting")
    best = R[:-1, :-1].max(dim=0).values
    return float((best - R[-1, :-1]).mean())


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
    """

    R: Tensor
    names: list[str]
    strategy: str
    losses: list[float] = field(default_factory=list)

    @property
    def average_accuracy(self) -> float:
        """See :func:`average_accuracy`."""
        return average_accuracy(self.R)

    @property
    def backward_transfer(self) -> float:
        """See :func:`backward_transfer`."""
        return backward_transfer(self.R)

    @property
    def forgetting(self) -> float:
        """See :func:`forgetting`."""
        return forgetting(self.R)


# --------------------------------------------------------------------------- training loop
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
    task's training set, minimising the mean cross-entropy plus ``strategy.penalty(model)``.
    Then ``strategy.after_task`` consolidates, ``callback(i, model)`` is called if given, and
    row :math:`i` of :math:`R` is filled with the test accuracy on every task (future ones
    included, so :math:`R_{ij}` for :math:`j > i` shows zero-shot transfer).

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits; trained in place.
    tasks : Sequence of Task
        The task sequence.
    strategy : Strategy, optional
        :class:`FineTuning` (the default), :class:`L2`, :class:`EWC`, or a subclass of
        :class:`Strategy`.
    epochs : int
        Passes over each task's training set, at least 1.
    lr : float
        Adam learning rate, ``>= 0``.
    batch_size : int
        Mini-batch size, at least 1 (a batch size at least the training-set size is full batch).
    seed : int
        Seed of the mini-batch shuffling (the initialisation is the caller's, see
        :func:`make_mlp`); the same seed gives the same run.
    callback : Callable, optional
        ``callback(i, model)`` after task ``i`` is consolidated.

    Returns
    -------
    ContinualResult

    Examples
    --------
    >>> from fisherbook.data import permuted_digits
    >>> tasks = permuted_digits(n_tasks=2)
    >>> res = train_sequence(make_mlp(64, (32,), 10, seed=0), tasks, FineTuning(), epochs=1)
    >>> res.R.shape, res.names
    (torch.Size([2, 2]), ['P1', 'P2'])
    """
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, Task) for t in tasks):
        raise TypeError("tasks must be a non-empty sequence of fisherbook.data.Task")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    strategy = FineTuning() if strategy is None else strategy
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a fisherbook.continual.Strategy, got {type(strategy).__name__}")
    p0 = next(model.parameters())
    device, dtype = p0.device, p0.dtype
    g = torch.Generator().manual_seed(int(seed))
    T = len(tasks)
    R = torch.zeros(T, T, dtype=torch.float64)
    losses = []
    loss_fn = nn.CrossEntropyLoss()
    for i, task in enumerate(tasks):
        X = task.X_train.to(device=device, dtype=dtype)
        y = task.y_train.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(task.n_train, generator=g).to(device)
            total = 0.0
            for start in range(0, task.n_train, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                data_loss = loss_fn(model(X[idx]), y[idx])
                pen = strategy.penalty(model)
                loss = data_loss if pen is None else data_loss + pen
                loss.backward()
                opt.step()
                total += float(data_loss.detach()) * len(idx)
            if not math.isfinite(total):
                raise FloatingPointError(f"training loss diverged on task {i} ({task.name}); lower lr or lam")
        losses.append(total / task.n_train)
        strategy.after_task(model, task)
        if callback is not None:
            callback(i, model)
        R[i] = evaluate(model, tasks)
    return ContinualResult(R=R, names=[t.name for t in tasks], strategy=strategy.name, losses=losses)
