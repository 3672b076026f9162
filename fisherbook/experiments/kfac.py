r"""The experiments of Chapter 5 and ``benchmarks/kfac.py``: Kronecker approximation quality and
full-batch training of a digits autoencoder with K-FAC, SGD with Nesterov momentum and Adam.

Kept in the package (and tested) so that the chapter and the benchmark run the same code.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..optim.kfac import KFAC

__all__ = ["mlp", "KroneckerComparison", "kronecker_comparison", "TrainHistory", "train_full_batch",
           "DigitsCNN", "MinibatchHistory", "train_minibatch",
           "make_optimizer", "iterations_to", "kfac_phase_timer", "KFAC_PHASES"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
OPTIMIZERS = ("kfac", "sgd", "adam")


def mlp(widths: Sequence[int], activation: str = "tanh", seed: int = 0,
        dtype: torch.dtype = torch.float32) -> nn.Sequential:
    r"""A fully connected network with the given layer ``widths`` and an activation between layers.

    ``mlp((64, 20, 20, 20, 10))`` is the digits classifier of Chapter 5 and
    ``mlp((64, 32, 16, 4, 16, 32, 64))`` an autoencoder with a 4-unit code. Weights use torch's
    default ``nn.Linear`` initialisation drawn from a private ``torch.Generator`` seeded with
    ``seed``: the same weights as ``torch.manual_seed(seed)`` followed by the default layers, but
    the caller's global random stream is neither reseeded nor advanced.

    Parameters
    ----------
    widths : sequence of int
        At least two positive layer widths, input first.
    activation : {"tanh", "relu", "sigmoid"}
        Non-linearity after every layer but the last.
    seed : int
        Seed of the initialisation.
    dtype : torch.dtype
        Floating dtype of the parameters.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> net = mlp((4, 3, 2))
    >>> net
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): Tanh()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    widths = list(widths)
    if len(widths) < 2 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be at least two positive ints, got {widths!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(_linear(a, b, gen))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers).to(dtype)


def _linear(fan_in: int, fan_out: int, gen: torch.Generator) -> nn.Linear:
    """``nn.Linear(fan_in, fan_out)`` with its default initialisation (``reset_parameters``) drawn
    from ``gen`` instead of the global generator, in the same order."""
    layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


@dataclass
class KroneckerComparison:
    r"""Exact Fisher of a Linear network beside its Kronecker-factored approximation.

    ``exact`` and ``kron`` are dense :math:`P \times P` matrices in parameter order
    (``kron`` block-diagonal over layers, :math:`G_l \otimes A_l` in each block);
    ``exact_inv`` and ``kron_inv`` are :math:`(F + \lambda I)^{-1}` and
    :math:`(\tilde F + \lambda I)^{-1}`; ``slices`` gives each layer's index range;
    ``block_error[l]`` is :math:`\lVert F_{ll} - G_l \otimes A_l \rVert_F / \lVert F_{ll} \rVert_F`
    and ``inverse_error[l]`` the same for the layer's block of the inverses;
    ``diagonal_error`` and ``diagonal_inverse_error`` are the same errors for the diagonal
    approximation :math:`\operatorname{diag}(F)`, a baseline. ``kept`` marks the coordinates that
    enter the inverses: those with a zero Fisher diagonal (weights of inputs that are zero for every
    example) are decoupled in both matrices, their damped inverse is exactly :math:`1/\lambda` in
    both, and they are left out so they do not dominate the comparison.
    """

    exact: Tensor
    kron: Tensor
    exact_inv: Tensor
    kron_inv: Tensor
    slices: list[slice]
    block_error: list[float]
    inverse_error: list[float]
    diagonal_error: list[float]
    diagonal_inverse_error: list[float]
    kept: Tensor
    damping: float


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(a))


def kronecker_comparison(model: nn.Module, inputs: Tensor, likelihood: str = "categorical",
                         damping: float = 1e-3) -> KroneckerComparison:
    r"""Compare the exact (true) Fisher of a Linear network with its K-FAC approximation.

    Both come from ``fisherbook.curvature.fisher`` (``kind="true"``, representations
    ``"dense"`` and ``"kfac"``), so the only difference is the Kronecker factorisation
    :math:`\mathbb{E}[a a^\top \otimes g g^\top] \approx \mathbb{E}[a a^\top] \otimes \mathbb{E}[g g^\top]`
    and the neglect of between-layer blocks.

    Parameters
    ----------
    model : nn.Module
        A network whose parameters all belong to ``nn.Linear`` layers.
    inputs : Tensor
        Examples along dim 0.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        The model's predictive distribution.
    damping : float
        :math:`\lambda > 0` for the inverses.

    Returns
    -------
    KroneckerComparison

    Examples
    --------
    >>> net = mlp((3, 4, 2), dtype=torch.float64)
    >>> cmp = kronecker_comparison(net, torch.randn(50, 3, dtype=torch.float64))
    >>> [round(e, 6) for e in kronecker_comparison(net[:1], torch.randn(1, 3, dtype=torch.float64)).block_error]
    [0.0]
    >>> len(cmp.block_error), cmp.exact.shape
    (2, torch.Size([26, 26]))
    """
    from .. import curvature

    if not damping > 0:
        raise ValueError(f"damping must be > 0, got {damping!r}")
    F = curvature.fisher(model, inputs, likelihood=likelihood, kind="true", representation="dense").to_dense()
    K = curvature.fisher(model, inputs, likelihood=likelihood, kind="true", representation="kfac")
    Kd = K.to_dense()
    eye = torch.eye(F.shape[0], dtype=F.dtype, device=F.device)
    kept = F.diagonal() > 0
    F_inv = torch.zeros_like(F)
    K_inv = torch.zeros_like(F)
    D_inv = torch.zeros_like(F)
    idx = kept.nonzero().squeeze(1)
    sub = (idx.unsqueeze(1), idx.unsqueeze(0))
    F_inv[sub] = torch.linalg.inv(F[sub] + damping * eye[sub])
    K_inv[sub] = torch.linalg.inv(Kd[sub] + damping * eye[sub])
    D_inv[sub] = torch.diag(1 / (F.diagonal()[idx] + damping))
    slices, start = [], 0
    for m in K.modules:  # type: ignore[attr-defined]  # representation="kfac" returns a curvature.KFAC
        n = sum(p.numel() for p in m.parameters())
        slices.append(slice(start, start + n))
        start += n
    block = [_rel(F[s, s], Kd[s, s]) for s in slices]
    inv = [_rel(F_inv[s, s], K_inv[s, s]) for s in slices]
    dblock = [_rel(F[s, s], torch.diag(F.diagonal()[s])) for s in slices]
    dinv = [_rel(F_inv[s, s], D_inv[s, s]) for s in slices]
    return KroneckerComparison(F, Kd, F_inv, K_inv, slices, block, inv, dblock, dinv, kept, damping)


@dataclass
class TrainHistory:
    """Full-batch training record: ``losses[k]`` is the loss at iterate ``k`` (before step ``k+1``),
    ``times[k]`` the cumulative wall-clock seconds when it was computed (``times[0] = 0``)."""

    name: str
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


#: The phases of a K-FAC step that :func:`kfac_phase_timer` times, and the optimiser methods that
#: run them (the statistics also run inside the model's forward and backward passes, from hooks).
KFAC_PHASES = {"factors": ("_mc_statistics", "_empirical_inputs", "_empirical_grad"),
               "inverses": ("_refresh_inverses",), "precondition": ("precondition",),
               "update": ("_apply_update",)}


@contextlib.contextmanager
def kfac_phase_timer(optimizer: KFAC, sync_cuda: bool = False) -> Iterator[dict[str, float]]:
    r"""Time the phases of a :class:`~fisherbook.optim.KFAC` optimiser from the outside.

    Inside the block the optimiser's phase methods (:data:`KFAC_PHASES`) are wrapped by timers
    (instance attributes that shadow the methods; removed on exit), so the optimiser itself carries
    no profiling code. The yielded dict holds the *exclusive* seconds of each phase: the
    eigendecompositions that ``precondition`` triggers count under ``"inverses"`` only.

    Parameters
    ----------
    optimizer : KFAC
        The optimiser to time.
    sync_cuda : bool
        Synchronise CUDA around each timed call, so that GPU work is attributed to its phase.

    Examples
    --------
    >>> net = mlp((3, 4, 2), dtype=torch.float64)
    >>> X, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    >>> opt = KFAC(net, lr=0.1)
    >>> with kfac_phase_timer(opt) as t:
    ...     torch.nn.functional.cross_entropy(net(X), y).backward()
    ...     _ = opt.step()
    >>> sorted(t), all(v > 0 for v in t.values())
    (['factors', 'inverses', 'precondition', 'update'], True)
    """
    if not isinstance(optimizer, KFAC):
        raise TypeError(f"optimizer must be a fisherbook.optim.KFAC, got {type(optimizer).__name__}")
    timings = {phase: 0.0 for phase in KFAC_PHASES}
    inner: list[float] = [0.0]  # seconds spent in timed calls nested in the current one

    def sync() -> None:
        if sync_cuda and torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(phase: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sync()
            outer, inner[0] = inner[0], 0.0
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                sync()
                elapsed = time.perf_counter() - t0
                timings[phase] += elapsed - inner[0]
                inner[0] = outer + elapsed
        return wrapper

    names = [name for methods in KFAC_PHASES.values() for name in methods]
    for phase, methods in KFAC_PHASES.items():
        for name in methods:
            setattr(optimizer, name, timed(phase, getattr(optimizer, name)))
    try:
        yield timings
    finally:
        for name in names:
            optimizer.__dict__.pop(name, None)


def make_optimizer(name: str, model: nn.Module, lr: float, momentum: float = 0.0,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """``"kfac"`` (``fisherbook.optim.KFAC``), ``"sgd"`` (Nesterov when ``momentum > 0``) or ``"adam"``.

    ``kwargs`` go to the optimiser's constructor; for Adam ``momentum`` is ``beta1``.

    Examples
    --------
    >>> type(make_optimizer("sgd", mlp((2, 1)), lr=0.1, momentum=0.9)).__name__
    'SGD'
    """
    if name == "kfac":
        return KFAC(model, lr=lr, momentum=momentum, **kwargs)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0, **kwargs)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=(momentum or 0.9, 0.999), **kwargs)
    raise ValueError(f"name must be one of {OPTIMIZERS}, got {name!r}")


def train_full_batch(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                     optimizer: torch.optim.Optimizer, steps: int, name: str = "") -> TrainHistory:
    r"""Run ``steps`` full-batch steps and record the loss and cumulative wall time at every iterate.

    The loss after the last step is recorded too, so ``losses`` has ``steps + 1`` entries. A
    non-finite loss stops the run early (the record ends there).

    Examples
    --------
    >>> net = mlp((2, 1), dtype=torch.float64)
    >>> X = torch.randn(20, 2, dtype=torch.float64)
    >>> h = train_full_batch(net, X, X.sum(1, keepdim=True), torch.nn.functional.mse_loss,
    ...                      torch.optim.SGD(net.parameters(), lr=0.1), steps=50)
    >>> len(h.losses), h.losses[-1] < 0.01 * h.losses[0]
    (51, True)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    hist = TrainHistory(name)
    with contextlib.ExitStack() as stack:
        if isinstance(optimizer, KFAC):
            hist.timings = stack.enter_context(kfac_phase_timer(optimizer))
        _train(hist, model, inputs, targets, loss_fn, optimizer, steps)
    return hist


def _train(hist: TrainHistory, model: nn.Module, inputs: Tensor, targets: Tensor,
           loss_fn: Callable[[Tensor, Tensor], Tensor], optimizer: torch.optim.Optimizer, steps: int) -> None:
    elapsed = 0.0
    for k in range(steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        value = float(loss.detach())
        if k == steps or not torch.isfinite(loss.detach()):
            hist.losses.append(value)
            hist.times.append(elapsed)
            break
        loss.backward()
        optimizer.step()
        hist.losses.append(value)
        hist.times.append(elapsed)
        elapsed += time.perf_counter() - t0


def iterations_to(history: TrainHistory, target: float) -> int | None:
    """First iteration whose loss is at or below ``target`` (``None`` if never reached).

    Examples
    --------
    >>> iterations_to(TrainHistory("x", [3.0, 2.0, 1.0]), 2.5)
    1
    """
    for k, v in enumerate(history.losses):
        if v <= target:
            return k
    return None


class DigitsCNN(nn.Module):
    r"""The small CNN of Chapter 5's mini-batch experiment, on 8×8 digits ``(N, 1, 8, 8)``.

    Conv2d 1→8 (3×3, padding 1), tanh, Conv2d 8→8 (3×3, stride 2), tanh, Linear 72→10; weights
    :math:`\mathcal N(0, 1/\text{fan-in})` and zero biases from a private generator seeded with ``seed``.

    Examples
    --------
    >>> net = DigitsCNN(0)
    >>> net(torch.zeros(2, 1, 8, 8)).shape, sum(p.numel() for p in net.parameters())
    (torch.Size([2, 10]), 1394)
    """

    def __init__(self, seed: int = 0, channels: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        self.head = nn.Linear(channels * 9, 10)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.head):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]  # the three layers have biases

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.conv1(x))
        h = torch.tanh(self.conv2(h))
        return self.head(h.flatten(1))


@dataclass
class MinibatchHistory:
    """A mini-batch run: ``steps[k]`` iterations done when the full-data loss ``losses[k]`` was
    evaluated, ``times[k]`` the training seconds by then (evaluations not counted); ``reached`` is
    the first evaluated iteration at or below the target (``None`` if the budget ran out)."""

    name: str
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    reached: int | None = None
    seconds_to_target: float | None = None


def train_minibatch(model: nn.Module, inputs: Tensor, targets: Tensor, optimizer: torch.optim.Optimizer,
                    max_steps: int, batch_size: int, target: float, seed: int = 0, eval_every: int = 10,
                    name: str = "", diverged: float = 2.0) -> MinibatchHistory:
    r"""Mini-batch cross-entropy training until the full-data loss reaches ``target``.

    Every epoch visits the examples in a new random order (a generator seeded with ``seed``); every
    ``eval_every`` iterations the mean cross-entropy over all of ``inputs`` is evaluated (not timed).
    The run stops at the first evaluation at or below ``target``, at ``max_steps``, or when the
    loss is non-finite or above ``diverged`` times its initial value (a failed run).

    Examples
    --------
    >>> net = mlp((4, 3), dtype=torch.float64)
    >>> X, y = torch.randn(64, 4, dtype=torch.float64), torch.randint(0, 3, (64,))
    >>> h = train_minibatch(net, X, y, torch.optim.SGD(net.parameters(), lr=0.5), 100, 16, target=0.0)
    >>> h.steps[:3], h.reached
    ([0, 10, 20], None)
    """
    hist = MinibatchHistory(name)
    gen = torch.Generator().manual_seed(seed)
    n = inputs.shape[0]
    order = torch.randperm(n, generator=gen)
    pos, elapsed = 0, 0.0

    def evaluate(k: int) -> bool:
        with torch.no_grad():
            value = float(nn.functional.cross_entropy(model(inputs), targets))
        hist.steps.append(k)
        hist.losses.append(value)
        hist.times.append(elapsed)
        if value <= target and hist.reached is None:
            hist.reached, hist.seconds_to_target = k, elapsed
            return True
        return not math.isfinite(value) or value > diverged * hist.losses[0]

    if evaluate(0):
        return hist
    for k in range(1, max_steps + 1):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs[idx]), targets[idx])
        loss.backward()
        optimizer.step()
        elapsed += time.perf_counter() - t0
        if k % eval_every == 0 and evaluate(k):
            break
    return hist
