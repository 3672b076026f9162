r"""K-FAC: Kronecker-factored approximate curvature as a torch optimiser and preconditioner.

For an ``nn.Linear`` layer :math:`s = \bar W \bar a` with augmented weight :math:`\bar W = [W, b]`
and input :math:`\bar a = [a; 1]`, the Fisher block over :math:`\operatorname{vec}(\bar W)`
(row-major) is approximated by a Kronecker product (Martens & Grosse 2015),

.. math::

    F_{\bar W} \approx G \otimes A, \qquad
    A = \mathbb{E}[\bar a \bar a^\top], \qquad G = \mathbb{E}[\mathcal{D}s\, \mathcal{D}s^\top],

where :math:`\mathcal{D}s = \nabla_s \log p(\hat y \mid x)` is the gradient with respect to the
layer's output of the log-likelihood of a target :math:`\hat y` *sampled from the model's
predictive distribution* (or the observed target, for the empirical variant). An ``nn.Conv2d``
layer is the same matrix acting on the unfolded input patches at each of its :math:`T` output
positions (KFC, Grosse & Martens 2016): :math:`A` sums the patch outer products over positions and
:math:`G` averages the output-gradient outer products over them. Because
:math:`(G \otimes A)^{-1} = G^{-1} \otimes A^{-1}`, the preconditioned gradient of a layer costs two
small matrix products, :math:`G^{-1} \nabla_{\bar W} h\, A^{-1}`.

``KFAC`` takes its sampled-target factors from the curvature engine
(:func:`fisherbook.curvature.fisher` with ``kind="mc"`` and ``representation="kfac"``) on the
batch of the training forward pass, keeps exponential moving averages, refreshes
eigendecompositions every few steps and applies factored Tikhonov damping with the :math:`\pi`
correction. It is a standalone optimiser (``KFAC.step``) and a preconditioner in front of any torch
optimiser (``KFAC.precondition``).
"""

from __future__ import annotations

import math
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

import torch
from torch import Tensor, nn

from .._validate import check_int, check_option, check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, UnsupportedError
from ._groups import check_model_wide

__all__ = ["KFAC"]

_LIKELIHOODS = ("categorical", "bernoulli", "gaussian")
_FISHER_TYPES = ("mc", "empirical")
_PLACEMENTS = ("redundant", "round_robin")
#: hyper-parameters each param group may set for its own layers
_PER_GROUP = ("lr", "damping", "factor_decay", "momentum", "weight_decay", "factored_damping")
#: hyper-parameters of the whole model (the schedules, the likelihood, the KL bound): every group
#: carries the same value, that of the first group
_MODEL_WIDE = ("kl_clip", "factor_every", "inverse_every", "adapt_every", "n_samples", "likelihood", "fisher_type",
               "sigma", "adapt_damping", "min_damping", "max_damping", "factor_subset", "eigenvalue_corrected")


_Layer = nn.Linear | nn.Conv2d

#: the curvature engine's package: a forward pass it makes is never a training pass
_ENGINE = __name__.split(".")[0] + ".curvature"


def _in_engine_pass() -> bool:
    """Whether the caller runs inside a :mod:`fisherbook.curvature` function (a frame of that package
    is on the call stack): the engine's forward passes (``fisher``, ``kfac_statistics``, the
    per-example and Jacobian passes under ``torch.func``) are not the user's training pass."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == _ENGINE or name.startswith(_ENGINE + "."):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module a ``DistributedDataParallel`` wraps (the engine's own passes must not trigger its
    gradient synchronisation), else ``model``."""
    while isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def _kfac_layer(module: nn.Module) -> TypeGuard[_Layer]:
    """A layer whose Fisher block K-FAC approximates: nn.Linear, or nn.Conv2d that unfolds to a matrix."""
    if type(module) is nn.Linear:
        return True
    return (isinstance(module, nn.Conv2d) and type(module) is nn.Conv2d and module.groups == 1
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def _check_group(group: dict[str, Any]) -> None:
    """Validate (and normalise in place) the hyper-parameters of one param group."""
    group["lr"] = check_real(group["lr"], "lr", low=0.0, open_low=True)
    group["damping"] = check_real(group["damping"], "damping", low=0.0, open_low=True)
    group["factor_decay"] = check_real(group["factor_decay"], "factor_decay", low=0.0, high=1.0, open_high=True)
    group["momentum"] = check_real(group["momentum"], "momentum", low=0.0, high=1.0, open_high=True)
    group["weight_decay"] = check_real(group["weight_decay"], "weight_decay", low=0.0)
    group["factored_damping"] = bool(group["factored_damping"])
    if group["kl_clip"] is not None:
        group["kl_clip"] = check_real(group["kl_clip"], "kl_clip", low=0.0, open_low=True)
    for name in ("factor_every", "inverse_every", "adapt_every", "n_samples"):
        group[name] = check_int(group[name], name, minimum=1)
    if group["factor_subset"] is not None:
        group["factor_subset"] = check_int(group["factor_subset"], "factor_subset", minimum=1)
    check_option(group["likelihood"], "likelihood", _LIKELIHOODS)
    check_option(group["fisher_type"], "fisher_type", _FISHER_TYPES)
    group["sigma"] = check_real(group["sigma"], "sigma", low=0.0, open_low=True)
    group["adapt_damping"] = bool(group["adapt_damping"])
    if not isinstance(group["eigenvalue_corrected"], bool):
        raise ArgumentTypeError("eigenvalue_corrected must be True or False, got "
                                f"{type(group['eigenvalue_corrected']).__name__}")
    if group["eigenvalue_corrected"] and group["fisher_type"] != "mc":
        raise UnsupportedError("eigenvalue_corrected=True (EKFAC) projects per-example gradients of sampled targets "
                               "on the eigenbasis: it needs fisher_type='mc', got "
                               f"fisher_type={group['fisher_type']!r}")
    lo = group["min_damping"] = check_real(group["min_damping"], "min_damping", low=0.0, open_low=True)
    hi = group["max_damping"] = check_real(group["max_damping"], "max_damping", low=0.0, open_low=True)
    if lo > hi:
        raise InvalidArgumentError(f"min_damping ({lo}) must be <= max_damping ({hi})")
    if not lo <= group["damping"] <= hi:
        raise InvalidArgumentError(f"damping must lie in [min_damping, max_damping] = [{lo}, {hi}], "
                                   f"got {group['damping']}")


def _weak_hook(opt: KFAC, method: str) -> Callable[..., None]:
    """A hook that calls ``opt.<method>`` while the optimiser lives (the model does not keep it alive)."""
    ref = weakref.ref(opt)

    def hook(*args: Any) -> None:
        target = ref()
        if target is not None:
            getattr(target, method)(*args)

    return hook


def _remove_handles(handles: list[Any]) -> None:
    for h in handles:
        h.remove()
    handles.clear()


class _LayerView(nn.Module):
    """The model seen by the curvature engine: only the K-FAC layers are its parameters.

    Calling it runs the whole model (the layers are the model's own modules, so the engine's hooks
    see them); other parameters (layer norms, embeddings, frozen layers) are part of the function,
    not of the Fisher. ``args`` are the model's positional arguments with the examples at ``pos``.
    """

    def __init__(self, model: nn.Module, layers: list[_Layer], args: tuple, pos: int) -> None:
        super().__init__()
        self.kfac_layers = nn.ModuleList(layers)
        self._call: list[nn.Module] = [model]  # in a list, not a submodule: its other parameters stay out
        self._args = args
        self._pos = pos

    def forward(self, x: Tensor) -> Any:
        args = self._args[: self._pos] + (x,) + self._args[self._pos + 1:]
        return self._call[0](*args)


class KFAC(torch.optim.Optimizer):
    r"""K-FAC optimiser for the ``nn.Linear`` and ``nn.Conv2d`` layers of a model (Martens & Grosse 2015;
    Grosse & Martens 2016 for convolutions).

    Statistics are gathered by hooks while the model runs its training forward pass, so a
    training loop does not change::

        opt = KFAC(model, lr=0.1, likelihood="categorical")
        for X, y in batches:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            opt.step()

    On steps that refresh the factors (every ``factor_every`` steps), the first forward pass of
    ``model`` in training mode with gradients enabled triggers the statistics. Other passes leave
    the factors and the schedule alone: evaluation passes (``model.eval()`` or ``torch.no_grad()``),
    every pass of the curvature engine on the same model (passes made from inside
    :mod:`fisherbook.curvature`: a user's :func:`fisherbook.curvature.fisher` call and what is built on
    it, such as :func:`~fisherbook.continual.fisher.diagonal_fisher` or a Laplace fit), and the passes inside
    a :meth:`no_statistics` block. For ``fisher_type="mc"``,
    ``n_samples`` targets :math:`\hat y \sim p(y \mid f(x))` per example are drawn from the
    training pass's outputs and back-propagated all at once to the layer outputs through the
    training pass's own graph (kept for the user's ``backward``; parameters' ``.grad`` untouched):
    one extra batched backward pass and no second forward, with the draws and factors of
    :func:`fisherbook.curvature.fisher` with ``kind="mc"`` and ``representation="kfac"`` on the
    batch. With ``factor_subset``, ``eigenvalue_corrected``, a ``DistributedDataParallel`` model
    or a layer not called exactly once on ``(N, features)`` / ``(N, channels, height, width)``
    inputs, the model's batch (the rows of its first positional tensor argument) goes to the
    curvature engine instead, which runs the model once more (with dropout, the training pass's
    own mask is then not the one of the statistics). For ``fisher_type="empirical"`` the gradients of the training
    loss itself are used (gathered by hooks during the user's ``backward``), multiplied by the
    number of examples (the loss must be a *mean* over examples). With :math:`N` examples,

    .. math::

        \hat A = \frac1N \sum_n \bar a_n \bar a_n^\top, \qquad
        \hat G = \frac1N \sum_n \mathcal{D}s_n \mathcal{D}s_n^\top,

    and for an ``nn.Conv2d`` layer with :math:`T` output positions
    :math:`\hat A = \frac1N \sum_{n,t} \bar a_{nt} \bar a_{nt}^\top`,
    :math:`\hat G = \frac1{NT} \sum_{n,t} \mathcal{D}s_{nt} \mathcal{D}s_{nt}^\top`.

    With ``factor_subset`` :math:`m`, the statistics of a step use only a random subset
    :math:`S` of :math:`\min(m, N)` examples drawn without replacement (Martens & Grosse §8 compute
    them on a fraction of the mini-batch): :math:`\hat A = |S|^{-1} \sum_{n \in S} \bar a_n \bar a_n^\top`
    and likewise :math:`\hat G`, unbiased estimates of the full-batch statistics. For
    ``fisher_type="mc"`` the engine runs the model on the rows of its positional input tensors
    indexed by :math:`S` (other arguments are passed unchanged), so the extra cost of a statistics
    step shrinks by :math:`|S|/N`; modules with running buffers (batch norm) see that second call
    too. For ``fisher_type="empirical"`` the rows :math:`S` of the training pass are used (the same
    rows in every layer), :math:`\hat G = N^2 |S|^{-1} \sum_{n \in S} g_n g_n^\top` with :math:`g_n`
    the gradient of the mean loss (only the outer products get cheaper).

    The running factors are :math:`A \leftarrow \epsilon A + (1-\epsilon)\hat A` with
    :math:`\epsilon = \min(1 - 1/k, \texttt{factor\_decay})` at the :math:`k`-th update (the
    first update takes :math:`\hat A` as is). Every ``inverse_every`` steps the factors are
    eigendecomposed, :math:`A = Q_A \Lambda_A Q_A^\top`, :math:`G = Q_G \Lambda_G Q_G^\top`.
    The preconditioned gradient of a layer with gradient :math:`V = \nabla_{\bar W} h` is, with
    factored Tikhonov damping :math:`\gamma = \sqrt{\lambda + \eta}` (:math:`\lambda` = ``damping``,
    :math:`\eta` = ``weight_decay``) and
    :math:`\pi = \sqrt{(\operatorname{tr} A / \dim A) / (\operatorname{tr} G / \dim G)}`,

    .. math::

        U = (G + \tfrac{\gamma}{\pi} I)^{-1}\, V\, (A + \pi \gamma I)^{-1}
          = Q_G \left[ \frac{Q_G^\top V Q_A}{(\Lambda_G + \gamma/\pi)(\Lambda_A + \pi\gamma)^\top} \right] Q_A^\top ,

    or, with ``factored_damping=False``, :math:`U = (G \otimes A + \lambda I)^{-1} V` (the division
    by :math:`\lambda_{G,i} \lambda_{A,j} + \lambda`). With ``kl_clip`` :math:`\kappa` the updates
    of all layers are scaled by :math:`\nu = \min(1, \sqrt{\kappa / \sum \alpha^2 \langle U, V \rangle})`
    (:math:`\alpha` = the layer's ``lr``). ``step`` then applies heavy-ball momentum :math:`\mu`,
    :math:`m \leftarrow \mu m + U`, :math:`\theta \leftarrow \theta - \alpha m`. Parameters outside
    the K-FAC layers get the same momentum update with their plain gradient; they are listed in
    ``unpreconditioned`` and announced by a warning at construction.

    With ``adapt_damping=True``, every ``adapt_every`` steps ``step`` re-evaluates the
    closure after the update :math:`\delta` and compares the reduction with the quadratic model
    :math:`M(\delta) = g^\top \delta + \tfrac12 \delta^\top (\tilde F + \lambda I)\delta`
    (:math:`\tilde F` the Kronecker-factored Fisher from the running factors): with
    :math:`\rho = (h(\theta+\delta) - h(\theta)) / M(\delta)`, the damping of every group becomes
    :math:`\omega\lambda` if :math:`\rho > 3/4` and :math:`\lambda/\omega` if :math:`\rho < 1/4`,
    :math:`\omega = (19/20)^{T}` with :math:`T` = ``adapt_every`` (the Levenberg–Marquardt rule of
    Martens & Grosse §6.5).

    **Eigenvalue correction.** With ``eigenvalue_corrected=True`` (EKFAC, George et al. 2018) the
    eigenbases :math:`Q_A, Q_G` are refreshed as above, every ``inverse_every`` steps, and every
    statistics step also projects the batch's per-example pseudo-gradients :math:`g_{nc}` (same
    forward pass and sampled targets, :func:`fisherbook.curvature.kfac_statistics`) on the current
    basis: :math:`\hat S = \frac1N \sum_{n,c} (Q_G^\top g_{nc} Q_A)^2`, folded into a running
    :math:`S` with the factors' decay rule, restarted at each refresh (until the first batch in a
    new basis, :math:`S = \lambda_G \lambda_A^\top`, K-FAC's eigenvalues). The preconditioned
    gradient is :math:`U = Q_G [(Q_G^\top V Q_A) / (S + \lambda + \eta)] Q_A^\top` (Tikhonov damping
    added to the scalings; ``factored_damping`` is ignored), and the damping adaptation's quadratic
    model uses the same matrix.

    **Param groups.** By default all trainable parameters of ``model`` form one group. ``params``
    (or :meth:`add_param_group` later) gives several, as for any torch optimiser; ``lr``,
    ``damping``, ``factor_decay``, ``momentum``, ``weight_decay`` and ``factored_damping`` are then
    per group (a layer's weight and bias must share a group), while the schedules, the likelihood,
    ``kl_clip`` and the damping range are settings of the whole model, kept in every group with
    one value (a group that sets another raises :class:`~fisherbook.errors.InvalidArgumentError`).
    Parameters with ``requires_grad=False`` are never moved; a layer with one is not preconditioned.

    **Distributed training.** Wrap the model in ``DistributedDataParallel`` (which averages the
    gradients) and pass the wrapper: each rank computes :math:`\hat A_r, \hat G_r` on its own
    :math:`n_r` examples, and at the start of the next :meth:`precondition` one ``all_reduce``
    gives every rank :math:`\hat A = \sum_r n_r \hat A_r / \sum_r n_r` (and :math:`\hat G`), the
    statistics of the union of the ranks' batches, so that with equal local batches :math:`b` the
    trajectory of :math:`W` ranks is that of one process with batch :math:`W b` (for
    ``fisher_type="empirical"`` to round-off; for ``"mc"`` each rank samples with its own
    ``generator``: seed it with the rank). With ``adapt_damping`` the losses before and after the
    step are averaged over the ranks. Every rank must call the optimiser in lockstep (as DDP
    needs anyway), and the sampled-target pass of ``"mc"`` runs the wrapped module itself.

    **Hooks.** The optimiser hooks the model; the hooks do not keep it alive, and they are removed
    by :meth:`remove_hooks`, at the end of a ``with KFAC(...) as opt:`` block, or when the optimiser
    is garbage-collected.

    Parameters
    ----------
    model : nn.Module
        The model; its ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``, zero or numeric padding)
        layers are preconditioned (each layer called once per forward pass on ``(N, features)`` or
        ``(N, channels, height, width)`` inputs, the model returning ``(N, K)`` outputs).
    lr : float
        Step size :math:`\alpha > 0`.
    damping : float
        Tikhonov damping :math:`\lambda > 0`.
    factor_decay : float
        EMA decay :math:`\epsilon` of the factors, in ``[0, 1)`` (default 0.95).
    factor_every : int
        Gather factor statistics every this many steps (>= 1).
    inverse_every : int
        Recompute the eigendecompositions every this many steps (>= 1; default 20).
    momentum : float
        Heavy-ball momentum :math:`\mu` in ``[0, 1)``.
    weight_decay : float
        L2 coefficient :math:`\eta \ge 0`, added to the gradient (and to the damping).
    kl_clip : float, optional
        Bound :math:`\kappa > 0` on :math:`\sum \alpha^2 \langle U, V\rangle`; ``None`` disables it.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        The model's predictive distribution given its output :math:`f`: softmax over the last
        dimension, independent sigmoids, or :math:`\mathcal N(f, \sigma^2 I)`.
    fisher_type : {"mc", "empirical"}
        Targets sampled from the model (Martens & Grosse §5), or the training targets.
    n_samples : int
        Sampled targets per example for ``fisher_type="mc"`` (back-propagated together).
    factor_subset : int, optional
        Number :math:`m \ge 1` of examples, drawn at random (with ``generator``) on every
        statistics step, from which the factors are estimated; ``None`` (default) uses the whole
        batch.
    sigma : float
        Noise scale :math:`\sigma > 0` of the Gaussian likelihood.
    factored_damping : bool
        Factored Tikhonov damping with :math:`\pi` (default) or the exact damped Kronecker inverse.
    eigenvalue_corrected : bool
        EKFAC (George et al. 2018; ``fisher_type="mc"`` only, not distributed): keep K-FAC's
        eigenbases but precondition with the running second moments :math:`S` of the projected
        per-example gradients (see *Eigenvalue correction* above) instead of the eigenvalue products.
    adapt_damping : bool
        Levenberg–Marquardt adaptation of ``damping`` (needs a closure in ``step``).
    adapt_every : int
        Adaptation period :math:`T` (>= 1; default 5).
    min_damping, max_damping : float
        Range that the adapted damping is clipped to (``0 < min_damping <= max_damping``).
    generator : torch.Generator, optional
        Random generator for the sampled targets and the subsets.
    params : iterable, optional
        Parameters or param-group dicts (any of ``model``'s trainable parameters, and others,
        which get plain momentum updates); default: all trainable parameters of ``model``.
    distributed : bool, optional
        Average the factor statistics over the ranks of ``process_group`` at every statistics
        step (keyword only). ``None`` (default): on exactly when ``model`` is a
        ``torch.nn.parallel.DistributedDataParallel``. See *Distributed training* below.
    inverse_placement : {"redundant", "round_robin"}
        Under ``distributed``: every rank eigendecomposes every layer's factors
        (``"redundant"``, no communication), or layer :math:`i` is eigendecomposed on rank
        :math:`i \bmod W` and broadcast (``"round_robin"``: about :math:`1/W` of the work per
        rank, one broadcast per layer and refresh). Both give the same eigendecompositions.
    process_group : ProcessGroup, optional
        The ranks that train together (default: the world).

    Attributes
    ----------
    layers : list of (str, nn.Module)
        The preconditioned layers, in module order.
    unpreconditioned : list of str
        Names of parameters that receive plain (momentum) gradient updates.

    Raises
    ------
    ArgumentTypeError
        ``model`` not a module, a hyper-parameter of the wrong type, ``generator`` not a generator.
    InvalidArgumentError
        A hyper-parameter out of range, a model-wide setting that differs between groups, a layer
        whose weight and bias are in different groups.
    NonFiniteError
        (at a step) a non-finite gradient or non-finite factor statistics.

    Examples
    --------
    >>> import torch
    >>> from fisherbook.optim import KFAC
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> losses = []
    >>> with KFAC(model, lr=0.3, damping=1e-2, inverse_every=5, generator=torch.Generator().manual_seed(0)) as opt:
    ...     for _ in range(20):
    ...         opt.zero_grad()
    ...         loss = torch.nn.functional.cross_entropy(model(X), y)
    ...         loss.backward()
    ...         _ = opt.step()
    ...         losses.append(loss.item())
    >>> losses[-1] < 0.8 * losses[0]
    True
    >>> opt.unpreconditioned, len(model[0]._forward_hooks)  # hooks gone after the block
    ([], 0)
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.1,
        damping: float = 1e-3,
        factor_decay: float = 0.95,
        factor_every: int = 1,
        inverse_every: int = 20,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        kl_clip: float | None = None,
        likelihood: str = "categorical",
        fisher_type: str = "mc",
        n_samples: int = 1,
        factor_subset: int | None = None,
        eigenvalue_corrected: bool = False,
        sigma: float = 1.0,
        factored_damping: bool = True,
        adapt_damping: bool = False,
        adapt_every: int = 5,
        min_damping: float = 1e-8,
        max_damping: float = 1e4,
        generator: torch.Generator | None = None,
        *,
        params: Any = None,
        distributed: bool | None = None,
        inverse_placement: str = "redundant",
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        defaults = dict(lr=lr, damping=damping, factor_decay=factor_decay, momentum=momentum,
                        weight_decay=weight_decay, factored_damping=factored_damping, kl_clip=kl_clip,
                        factor_every=factor_every, inverse_every=inverse_every, adapt_every=adapt_every,
                        n_samples=n_samples, likelihood=likelihood, fisher_type=fisher_type, sigma=sigma,
                        adapt_damping=adapt_damping, min_damping=min_damping, max_damping=max_damping,
                        factor_subset=factor_subset, eigenvalue_corrected=eigenvalue_corrected)
        _check_group(dict(defaults))  # name a bad constructor argument before torch's own checks
        check_option(inverse_placement, "inverse_placement", _PLACEMENTS)
        if distributed is not None and not isinstance(distributed, bool):
            raise ArgumentTypeError(f"distributed must be True, False or None, got {type(distributed).__name__}")
        self.model = model
        self.generator = generator
        self.distributed = _is_ddp(model) if distributed is None else distributed
        self.inverse_placement = inverse_placement
        self.process_group = process_group
        self._stash: list[tuple[_Layer, Tensor, Tensor, int, int]] = []
        self._ready = False
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise InvalidArgumentError("model has no parameters that require gradients")
        self._counters: dict[str, Any] = {"step": 0, "factor_updates": 0, "collect": True}
        self.last_rho: float | None = None
        self._suspended = False
        self._paused = 0
        self._rows: tuple[int, Tensor] | None = None
        self._pending: dict[_Layer, dict[str, Any]] = {}
        self._records: dict[_Layer, list[tuple[Tensor, Tensor]]] = {}
        self._handles: list[Any] = []
        self._finalizer = weakref.finalize(self, _remove_handles, self._handles)
        self.layers: list[tuple[str, _Layer]] = []
        self.unpreconditioned: list[str] = []
        super().__init__(params, defaults)
        self._ready = True
        self._discover(stacklevel=3)
        if self.distributed and eigenvalue_corrected:
            raise UnsupportedError("eigenvalue_corrected=True (EKFAC) is not implemented for distributed training; "
                                   "use the K-FAC factors (eigenvalue_corrected=False)")
        if self.distributed:
            from ..curvature.distributed import check_process_group, check_same_parameters

            check_process_group(process_group, "KFAC(distributed=True)")
            check_same_parameters(model, process_group)

    # ------------------------------------------------------------------ groups, layers, hooks
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (torch.optim protocol); its layers are preconditioned from the next step.

        Per-group hyper-parameters default to the constructor's; model-wide ones must equal the
        first group's.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_group(group)
            check_model_wide(self.param_groups, _MODEL_WIDE, "model in KFAC")
        except Exception:
            self.param_groups.pop()  # a refused group leaves the optimiser as it was
            raise
        if self._ready:
            self._discover(stacklevel=3)

    def _group_of(self) -> dict[int, int]:
        return {id(p): k for k, group in enumerate(self.param_groups) for p in group["params"]}

    def _discover(self, stacklevel: int = 2) -> None:
        """Find the preconditioned layers and (re-)register the hooks."""
        owner = self._group_of()
        names = {id(p): n for n, p in self.model.named_parameters()}
        layers: list[tuple[str, _Layer]] = []
        covered: set[int] = set()
        for mname, module in self.model.named_modules():
            if not _kfac_layer(module):
                continue
            ps: list[Tensor] = [module.weight] + ([module.bias] if module.bias is not None else [])
            if not all(p.requires_grad and id(p) in owner for p in ps):
                continue
            if len({owner[id(p)] for p in ps}) > 1:
                raise InvalidArgumentError(f"layer {mname!r}: its weight and bias must be in the same param group "
                                           "(K-FAC preconditions them together)")
            layers.append((mname, module))
            covered.update(id(p) for p in ps)
        self.layers = layers
        self._layer_group = {m: owner[id(m.weight)] for _, m in layers}
        new = [names.get(id(p), f"param_groups[{k}][{j}]")
               for k, group in enumerate(self.param_groups) for j, p in enumerate(group["params"])
               if p.requires_grad and id(p) not in covered]
        fresh = [n for n in new if n not in self.unpreconditioned]
        self.unpreconditioned = new
        if fresh:
            warnings.warn("KFAC preconditions nn.Linear and nn.Conv2d layers only; these parameters get plain "
                          f"gradient updates: {', '.join(fresh)}", UserWarning, stacklevel=stacklevel)
        if not layers:
            warnings.warn("model has no nn.Linear or nn.Conv2d layer to precondition: KFAC reduces to SGD "
                          "with momentum", UserWarning, stacklevel=stacklevel)
        _remove_handles(self._handles)
        self._handles.extend(m.register_forward_hook(_weak_hook(self, "_layer_hook")) for _, m in layers)
        self._handles.append(self.model.register_forward_hook(_weak_hook(self, "_model_hook")))
        self._handles.append(self.model.register_forward_pre_hook(_weak_hook(self, "_model_pre_hook")))

    def remove_hooks(self) -> None:
        """Detach the hooks from the model (the optimiser stops gathering statistics)."""
        _remove_handles(self._handles)

    @contextmanager
    def no_statistics(self) -> Iterator[None]:
        """A block whose forward and backward passes gather no factor statistics.

        For other passes in training mode with gradients enabled that are not the training step
        (adversarial examples, a gradient check, fisherbook functions that run the model themselves
        rather than through :mod:`fisherbook.curvature`, such as
        :func:`~fisherbook.continual.fisher.batched_empirical_fisher`): outside such a block, the first of
        them on a statistics step would be taken for the training pass.
        Evaluation passes (``model.eval()`` or ``torch.no_grad()``) and the curvature engine's passes
        are never gathered and need no block. Blocks nest; collection resumes when the outermost
        ends, on error too.

        Examples
        --------
        >>> import torch
        >>> from fisherbook.optim import KFAC
        >>> model = torch.nn.Linear(3, 2)
        >>> opt = KFAC(model, generator=torch.Generator().manual_seed(0))
        >>> with opt.no_statistics():
        ...     _ = model(torch.randn(8, 3))
        >>> opt.factor_updates
        0
        >>> _ = model(torch.randn(8, 3))  # a training pass
        >>> opt.factor_updates
        1
        """
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def __enter__(self) -> KFAC:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove_hooks()

    def _hp(self, key: str) -> Any:
        """A model-wide hyper-parameter (every group holds the same value)."""
        return self.param_groups[0][key]

    def _group(self, module: _Layer) -> dict[str, Any]:
        return self.param_groups[self._layer_group[module]]

    # model-wide settings, read-only views of the param groups
    factor_every = property(lambda self: self._hp("factor_every"), doc="Period of the factor statistics.")
    inverse_every = property(lambda self: self._hp("inverse_every"), doc="Period of the eigendecompositions.")
    adapt_every = property(lambda self: self._hp("adapt_every"), doc="Period of the damping adaptation.")
    n_samples = property(lambda self: self._hp("n_samples"), doc="Sampled targets per example.")
    factor_subset = property(lambda self: self._hp("factor_subset"), doc="Examples per statistics step.")
    likelihood = property(lambda self: self._hp("likelihood"), doc="The model's predictive distribution.")
    fisher_type = property(lambda self: self._hp("fisher_type"), doc='"mc" or "empirical".')
    sigma = property(lambda self: self._hp("sigma"), doc="Noise scale of the Gaussian likelihood.")
    adapt_damping = property(lambda self: self._hp("adapt_damping"), doc="Levenberg–Marquardt adaptation on.")

    @property
    def steps(self) -> int:
        """Number of completed ``precondition`` calls (each ``step`` makes one)."""
        return int(self._counters["step"])

    @property
    def factor_updates(self) -> int:
        """Number of factor statistics folded into the running averages."""
        return int(self._counters["factor_updates"])

    def refresh(self, data: Any, *, progress: bool = False) -> None:
        r"""Set the running factors to their exact mean over all examples of ``data``, then the inverses.

        ``data`` is what :func:`fisherbook.curvature.fisher` accepts: a tensor of inputs, a
        ``DataLoader`` or any iterable of batches (``(inputs, targets)`` pairs for
        ``fisher_type="empirical"``); the statistics stream batch by batch (memory for one batch),
        each batch weighted by its size. With ``fisher_type="mc"`` the targets are sampled with the
        optimiser's ``generator`` (``kind="mc"``, ``n_samples`` per example); with ``"empirical"``
        the batches' targets are used (``kind="empirical"``, the gradients of the log-likelihood,
        not of a mean loss). With ``eigenvalue_corrected`` the scalings are recomputed too
        (:func:`fisherbook.curvature.ekfac`). The refresh counts as one factor update for the
        moving averages that follow; the step counter does not move. Use it to start training from
        factors of a large sample, or to re-estimate them now and then from a loader.

        Raises
        ------
        ArgumentTypeError, ShapeError, UnsupportedError
            As :func:`fisherbook.curvature.fisher` for ``data`` and the model.
        """
        from ..curvature import ekfac, fisher

        if not self.layers:
            return
        view = _LayerView(_unwrap(self.model), [m for _, m in self.layers], (None,), 0)
        kind = "mc" if self._hp("fisher_type") == "mc" else "empirical"
        kw = dict(likelihood=self._hp("likelihood"), kind=kind, n_samples=self._hp("n_samples"),
                  sigma=self._hp("sigma"), generator=self.generator, progress=progress)
        self._suspended = True
        try:
            if self._hp("eigenvalue_corrected"):
                curv: Any = ekfac(view, data, **kw)
                factors = curv.factors
            else:
                curv = fisher(view, data, representation="kfac", **kw)
                factors = curv.factors
        finally:
            self._suspended = False
        for k, ((_, m), (a, g)) in enumerate(zip(self.layers, factors)):
            st = self.state[m.weight]
            st["A"], st["G"] = a.clone(), g.clone()
            self._eigen_layer(m)
            if self._hp("eigenvalue_corrected"):
                st["S"], st["S_count"] = curv.scalings[k].clone(), 1
        self._counters["factor_updates"] += 1

    def factors(self) -> list[tuple[Tensor, Tensor]]:
        r"""The running ``(A, G)`` pair of every preconditioned layer (``A`` includes the bias row).

        Under ``distributed`` the statistics of a forward pass are averaged over the ranks and
        folded in at the next :meth:`precondition` (or :meth:`step`), so the factors include a
        batch from then on.
        """
        out = []
        for _, m in self.layers:
            st = self.state[m.weight]
            if "A" not in st:
                raise RuntimeError("no factor statistics yet: run a training forward pass first")
            out.append((st["A"], st["G"]))
        return out

    # ------------------------------------------------------------------ statistics
    def _collecting(self, module: nn.Module) -> bool:
        """Whether this forward pass is a training pass whose statistics are due (cheap tests first)."""
        return (self._counters["collect"] and not self._suspended and not self._paused and module.training
                and torch.is_grad_enabled() and not _in_engine_pass())

    def _subset(self, n: int, device: torch.device) -> Tensor:
        """Indices of ``min(factor_subset, n)`` of ``n`` rows drawn without replacement."""
        g = self.generator
        perm = torch.randperm(n, generator=g, device=g.device if g is not None else "cpu")
        return perm[: self._hp("factor_subset")].to(device)

    def _reuses_forward(self) -> bool:
        """Whether sampled-target statistics come from the training forward pass itself (no second
        forward): ``fisher_type="mc"`` on the whole batch, K-FAC factors, no DDP wrapper."""
        return (self._hp("fisher_type") == "mc" and self._hp("factor_subset") is None
                and not self._hp("eigenvalue_corrected") and not _is_ddp(self.model))

    def _layer_hook(self, module: _Layer, args: tuple, output: Tensor) -> None:
        if self._hp("fisher_type") == "empirical":
            if self._collecting(module):
                self._empirical_inputs(module, args[0], output)
        elif self._reuses_forward() and self._collecting(module):
            self._records.setdefault(module, []).append((args[0], output))

    def _empirical_inputs(self, module: _Layer, x: Tensor, output: Tensor) -> None:
        """Record a layer's input factor on the training pass and hook the gradient of its output."""
        if isinstance(module, nn.Conv2d):
            if x.dim() != 4:
                raise UnsupportedError(f"KFAC needs (N, channels, height, width) inputs for nn.Conv2d, got shape "
                                       f"{tuple(x.shape)}")
            padding = module.padding
            assert not isinstance(padding, str)  # _kfac_layer admits numeric padding only
            a = nn.functional.unfold(x.detach(), module.kernel_size, dilation=module.dilation,
                                     padding=padding, stride=module.stride).transpose(1, 2)  # (N, T, I)
        else:
            a = x.detach().reshape(-1, 1, module.weight.shape[1])
        n, positions = a.shape[0], a.shape[1]
        rows = None
        subset = self._hp("factor_subset")
        if subset is not None and n > subset:
            if self._rows is None or self._rows[0] != n:
                self._rows = (n, self._subset(n, a.device))  # shared by the layers
            rows = self._rows[1]
            a = a[rows]
        if module.bias is not None:
            a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
        a = a.reshape(-1, a.shape[-1])
        self._pending[module] = {"A": a.T @ a / (a.shape[0] // positions)}
        if output.requires_grad:
            output.register_hook(self._grad_hook(module, rows, positions))

    def _grad_hook(self, module: _Layer, rows: Tensor | None, positions: int) -> Callable[[Tensor], None]:
        ref = weakref.ref(self)

        def hook(grad: Tensor) -> None:
            opt = ref()
            if opt is not None:
                opt._empirical_grad(module, grad, rows, positions)

        return hook

    def _empirical_grad(self, module: _Layer, grad: Tensor, rows: Tensor | None, positions: int) -> None:
        """Fold the output-gradient factor of the training loss (a mean over the N examples)."""
        if module not in self._pending:
            return
        out = module.weight.shape[0]
        if isinstance(module, nn.Conv2d):
            g = grad.detach().flatten(2).transpose(1, 2)  # (N, T, O)
        else:
            g = grad.detach().reshape(-1, 1, out)
        n = g.shape[0]
        if rows is not None:
            g = g[rows]
        m = g.shape[0]
        g = g.reshape(-1, out)
        entry = self._pending.pop(module)
        self._fold(module, entry["A"], (g.T @ g) * (n * n / (m * positions)), m)
        if not self._pending:
            self._finish_collection()

    def _model_pre_hook(self, module: nn.Module, args: tuple) -> None:
        self._records = {}  # layer calls outside a pass of the model (a submodule called alone) do not count

    def _model_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._rows = None
        records, self._records = self._records, {}
        if self._hp("fisher_type") != "mc" or not self.layers or not self._collecting(module):
            return
        self._mc_statistics(args, output, records)

    def _rng_state(self, device: torch.device) -> Callable[[], None]:
        """A function that puts the random stream of the sampled targets back to its present state."""
        gen = self.generator
        if gen is not None:
            state = gen.get_state()

            def restore() -> None:
                gen.set_state(state)

            return restore
        if device.type == "cuda":
            cuda_state = torch.cuda.get_rng_state(device)
            return lambda: torch.cuda.set_rng_state(cuda_state, device)
        cpu_state = torch.random.get_rng_state()
        return lambda: torch.random.set_rng_state(cpu_state)

    def _forward_statistics(self, records: dict[_Layer, list[tuple[Tensor, Tensor]]],
                            output: Tensor) -> list[tuple[Tensor, Tensor]] | None:
        r"""Sampled-target factors from the training forward pass: no second forward.

        The layer hooks of the training pass recorded each layer's input :math:`\bar a` and output
        :math:`s`; the targets :math:`\hat y` are drawn from the pass's outputs and back-propagated
        to the :math:`s` through the training graph (kept for the user's ``backward``), exactly as
        the curvature engine does on its own forward pass, with the same draws from the same
        ``generator``. Returns ``None`` (the engine's separate pass is used) when a layer was not
        called exactly once on ``(N, features)`` or ``(N, channels, height, width)`` inputs, or when
        the training graph does not lead from the outputs to every layer's output (the random stream
        is then put back, so that the separate pass draws the same targets).
        """
        from ..curvature.likelihoods import get_likelihood  # optim depends on curvature, never the reverse

        n = output.shape[0] if output.dim() > 0 else 0
        if n == 0 or not output.requires_grad:
            return None
        acts, zs = [], []
        for _, m in self.layers:
            rec = records.get(m, [])
            if len(rec) != 1:
                return None
            x, z = rec[0]
            if not isinstance(z, Tensor) or not z.requires_grad or x.shape[0] != n:
                return None
            if isinstance(m, nn.Conv2d):
                if x.dim() != 4:
                    return None
                padding = m.padding
                assert not isinstance(padding, str)  # _kfac_layer admits numeric padding only
                a = nn.functional.unfold(x.detach(), m.kernel_size, dilation=m.dilation, padding=padding,
                                         stride=m.stride).transpose(1, 2)  # (N, T, I)
                if m.bias is not None:
                    a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
            else:
                if x.dim() != 2:
                    return None
                a = x.detach()
                if m.bias is not None:
                    a = torch.cat([a, a.new_ones(n, 1)], dim=1)
            acts.append(a)
            zs.append(z)
        f = output.reshape(n, -1)
        if f.is_floating_point() and not bool(torch.isfinite(f).all()):
            raise NonFiniteError(f"model output must be finite; it has {int((~torch.isfinite(f)).sum())} NaN or "
                                 "infinite entries (check the model's parameters and inputs)")
        lik = get_likelihood(self._hp("likelihood"), self._hp("sigma"))
        rng = self._rng_state(f.device)  # restored if the separate pass takes over: it draws the same targets
        cot = lik.output_factors(f.detach(), "mc", None, self._hp("n_samples"), self.generator).permute(2, 0, 1)
        with torch.enable_grad():
            if cot.shape[0] == 1:
                raw = [None if b is None else b.unsqueeze(0) for b in torch.autograd.grad(
                    f, zs, grad_outputs=cot[0], retain_graph=True, allow_unused=True)]
            else:
                raw = list(torch.autograd.grad(f, zs, grad_outputs=cot.contiguous(), is_grads_batched=True,
                                               retain_graph=True, allow_unused=True))
        if any(b is None for b in raw):  # a layer output the graph does not reach (checkpointing, unused layer)
            rng()
            return None
        factors = []
        for a, b in zip(acts, raw):
            assert b is not None  # checked above
            b = b.detach()
            af = a.reshape(-1, a.shape[-1])
            if a.dim() == 3:  # conv: b is (C, N, O, H', W'); G averages the T positions
                per = b.flatten(3).reshape(-1, b.shape[2], a.shape[1])  # (C N, O, T)
                factors.append((af.T @ af / n, torch.bmm(per, per.transpose(1, 2)).sum(0) / (n * a.shape[1])))
            else:
                bf = b.reshape(-1, b.shape[-1])
                factors.append((af.T @ af / n, bf.T @ bf / n))
        return factors

    def _mc_statistics(self, args: tuple, output: Any,
                       records: dict[_Layer, list[tuple[Tensor, Tensor]]] | None = None) -> None:
        """Sampled-target factors of the batch in ``args``: from the training pass's own graph when
        it allows (:meth:`_forward_statistics`), else from a separate pass of the curvature engine."""
        from ..curvature import fisher  # optim depends on curvature, never the reverse

        pos = next((k for k, x in enumerate(args) if isinstance(x, Tensor) and x.dim() > 0), None)
        if pos is None:
            raise ArgumentTypeError(
                "KFAC's sampled-target statistics (fisher_type='mc', with or without factor_subset) need the "
                "model to take a Tensor of examples (along dim 0) as a positional argument, got "
                f"{', '.join(type(x).__name__ for x in args) or 'no arguments'}; use fisher_type='empirical'")
        if not isinstance(output, Tensor):
            raise ArgumentTypeError("KFAC with fisher_type='mc' needs the model to return one Tensor of outputs, "
                                    f"got {type(output).__name__}")
        if output.dim() > 2 and self._hp("likelihood") == "categorical":
            raise UnsupportedError(
                f"KFAC with fisher_type='mc' and likelihood='categorical' needs (N, K) model outputs (one softmax "
                f"per example), got shape {tuple(output.shape)}; use fisher_type='empirical'")
        n = args[pos].shape[0]
        if self._hp("factor_subset") is not None:
            rows = self._subset(n, args[pos].device)
            args = tuple(x[rows] if isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == n else x for x in args)
        view = _LayerView(_unwrap(self.model), [m for _, m in self.layers], args, pos)
        self._suspended = True
        scalings = None
        try:
            reused = self._forward_statistics(records, output) if records and self._reuses_forward() else None
            if reused is not None:
                factors = reused
            elif self._hp("eigenvalue_corrected"):
                from ..curvature import kfac_statistics

                states = [self.state[m.weight] for _, m in self.layers]
                bases = [(st["QA"], st["QG"]) for st in states] if all("QA" in st for st in states) else None
                factors, scalings = kfac_statistics(view, args[pos], likelihood=self._hp("likelihood"), kind="mc",
                                                    n_samples=self._hp("n_samples"), sigma=self._hp("sigma"),
                                                    generator=self.generator, bases=bases)
            else:
                factors = fisher(view, args[pos], likelihood=self._hp("likelihood"), kind="mc",
                                 representation="kfac", n_samples=self._hp("n_samples"), sigma=self._hp("sigma"),
                                 generator=self.generator).factors  # type: ignore[attr-defined]
        except ValueError as err:
            if isinstance(err, NonFiniteError):
                raise NonFiniteError(f"KFAC's sampled-target factor statistics are not finite: {err}") from err
            if isinstance(err, UnsupportedError) and "empirical" in str(err):
                raise
            raise UnsupportedError(
                "KFAC with fisher_type='mc' takes its factors from fisherbook.curvature.fisher(..., "
                "representation='kfac'), which needs each K-FAC layer called once per forward pass on "
                "(N, features) or (N, channels, height, width) inputs; fisher_type='empirical' also takes "
                f"layers applied to more dimensions (rows = all leading dimensions). The engine said: {err}") from err
        finally:
            self._suspended = False
        for k, ((_, m), (a_hat, g_hat)) in enumerate(zip(self.layers, factors)):
            self._fold(m, a_hat, g_hat, int(args[pos].shape[0]))
            if scalings is not None:
                self._fold_scalings(m, scalings[k])
        self._pending.clear()
        self._finish_collection()

    def _fold(self, module: _Layer, a_hat: Tensor, g_hat: Tensor, n: int) -> None:
        """Fold one layer's statistics of ``n`` examples into the running factors (distributed: stash
        them until :meth:`_sync_statistics` averages them over the ranks)."""
        k = self._counters["factor_updates"] + 1
        if self.distributed:
            self._stash.append((module, a_hat, g_hat, n, k))
            return
        self._fold_now(module, a_hat, g_hat, k)

    def _sync_statistics(self) -> None:
        r"""Average the stashed statistics over the ranks, weighted by their examples, and fold them.

        With :math:`n_r` examples on rank :math:`r`, :math:`\hat A = \sum_r n_r \hat A_r / \sum_r n_r`
        (likewise :math:`\hat G`): the statistics of the union of the ranks' batches. One
        ``all_reduce`` carries every layer's two factors and the counts.
        """
        if not self._stash:
            return
        stash, self._stash = self._stash, []
        ref = stash[0][1]
        counts = torch.tensor([float(n) for *_, n, _ in stash], dtype=ref.dtype, device=ref.device)
        pieces = [t * n for _, a, g, n, _ in stash for t in (a, g)] + [counts]
        flat = torch.cat([t.reshape(-1) for t in pieces])
        torch.distributed.all_reduce(flat, group=self.process_group)
        total = flat[-len(stash):]
        start = 0
        for j, (module, a, g, _, k) in enumerate(stash):
            a_sum = flat[start:start + a.numel()].reshape(a.shape)
            start += a.numel()
            g_sum = flat[start:start + g.numel()].reshape(g.shape)
            start += g.numel()
            self._fold_now(module, a_sum / total[j], g_sum / total[j], k)

    def _fold_now(self, module: _Layer, a_hat: Tensor, g_hat: Tensor, k: int) -> None:
        if not bool(torch.isfinite(a_hat).all() & torch.isfinite(g_hat).all()):
            name = next(n for n, m in self.layers if m is module)
            raise NonFiniteError(f"the K-FAC factor statistics of layer {name!r} are not finite: the model's inputs "
                                 "or outputs hold NaN or infinite values")
        st = self.state[module.weight]
        eps = min(1.0 - 1.0 / k, self._group(module)["factor_decay"])
        if "A" not in st:
            st["A"], st["G"] = a_hat.clone(), g_hat.clone()
        else:
            st["A"].mul_(eps).add_(a_hat, alpha=1 - eps)
            st["G"].mul_(eps).add_(g_hat, alpha=1 - eps)

    def _fold_scalings(self, module: _Layer, s_hat: Tensor) -> None:
        """EKFAC: fold one batch's second moments in the current eigenbasis (restarted at each refresh)."""
        st = self.state[module.weight]
        if not bool(torch.isfinite(s_hat).all()):
            raise NonFiniteError("the EKFAC scalings are not finite: the model's inputs or outputs hold NaN or "
                                 "infinite values")
        k = int(st.get("S_count", 0)) + 1
        st["S_count"] = k
        eps = min(1.0 - 1.0 / k, self._group(module)["factor_decay"])
        st["S"].mul_(eps).add_(s_hat, alpha=1 - eps)

    def _finish_collection(self) -> None:
        self._counters["factor_updates"] += 1
        self._counters["collect"] = False

    # ------------------------------------------------------------------ preconditioning
    def _refresh_inverses(self) -> None:
        if self.distributed and self.inverse_placement == "round_robin":
            self._refresh_round_robin()
            return
        for _, m in self.layers:
            self._eigen_layer(m)

    def _refresh_round_robin(self) -> None:
        r"""Layer :math:`i` is eigendecomposed on rank :math:`i \bmod W` and broadcast to the others.

        KAISA's trade-off (Pauloski et al. 2021): each rank computes about :math:`1/W` of the
        eigendecompositions, and the ranks exchange :math:`\sum_l (I_l^2 + I_l + O_l^2 + O_l + 1)`
        numbers per refresh instead of nothing (``"redundant"``).
        """
        dist = torch.distributed
        group = self.process_group
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        works, buffers = [], []
        live = [m for _, m in self.layers if "A" in self.state[m.weight]]
        for i, m in enumerate(live):
            st = self.state[m.weight]
            owner = i % world
            di, do = st["A"].shape[0], st["G"].shape[0]
            if owner == rank:
                self._eigen_layer(m)
                buf = torch.cat([st["eA"], st["QA"].reshape(-1), st["eG"], st["QG"].reshape(-1),
                                 st["pi"].to(st["A"]).reshape(1)])
            else:
                buf = st["A"].new_empty(di + di * di + do + do * do + 1)
            src = owner if group is None else dist.get_global_rank(group, owner)
            works.append(dist.broadcast(buf, src=src, group=group, async_op=True))
            buffers.append((m, buf, di, do))
        for work in works:
            work.wait()
        for m, buf, di, do in buffers:
            st = self.state[m.weight]
            parts = torch.split(buf, [di, di * di, do, do * do, 1])
            st["eA"], st["QA"] = parts[0].clone(), parts[1].reshape(di, di).clone()
            st["eG"], st["QG"] = parts[2].clone(), parts[3].reshape(do, do).clone()
            st["pi"] = torch.tensor(float(parts[4]))

    def _eigen_layer(self, m: _Layer) -> None:
        st = self.state[m.weight]
        if "A" not in st:
            return
        ea, qa = torch.linalg.eigh(st["A"])
        eg, qg = torch.linalg.eigh(st["G"])
        st["eA"], st["QA"], st["eG"], st["QG"] = ea.clamp_min(0), qa, eg.clamp_min(0), qg
        if self._hp("eigenvalue_corrected"):  # K-FAC's eigenvalues until a batch is projected on the new basis
            st["S"] = torch.outer(st["eG"], st["eA"])
            st["S_count"] = 0
        ta = float(st["A"].trace()) / st["A"].shape[0]
        tg = float(st["G"].trace()) / st["G"].shape[0]
        st["pi"] = torch.tensor(math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0)

    @staticmethod
    def _layer_grad(m: _Layer) -> Tensor | None:
        """The gradient as the matrix :math:`[\\nabla W, \\nabla b]` of shape (O, I + 1)."""
        if m.weight.grad is None:
            return None
        g = m.weight.grad.reshape(m.weight.shape[0], -1)
        if m.bias is not None:
            gb = m.bias.grad if m.bias.grad is not None else torch.zeros_like(m.bias)
            g = torch.cat([g, gb.unsqueeze(1)], dim=1)
        return g

    def _precondition_layer(self, m: _Layer, v: Tensor, group: dict[str, Any]) -> Tensor:
        st = self.state[m.weight]
        qa, qg, ea, eg = st["QA"], st["QG"], st["eA"], st["eG"]
        damping, weight_decay = group["damping"], group["weight_decay"]
        if "S" in st and self._hp("eigenvalue_corrected"):
            denom = st["S"] + (damping + weight_decay)
        elif group["factored_damping"]:
            pi = float(st["pi"])
            gamma = math.sqrt(damping + weight_decay)
            denom = (eg + gamma / pi).unsqueeze(1) * (ea + pi * gamma).unsqueeze(0)
        else:
            denom = eg.unsqueeze(1) * ea.unsqueeze(0) + (damping + weight_decay)
        return qg @ ((qg.T @ v @ qa) / denom) @ qa.T

    def _check_gradients(self) -> None:
        grads = [(p, p.grad) for group in self.param_groups for p in group["params"] if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for _, g in grads]).all()):
            names = {id(p): n for n, p in self.model.named_parameters()}
            bad = [names.get(id(p), "a parameter outside the model") for p, g in grads
                   if not bool(torch.isfinite(g).all())]
            raise NonFiniteError(f"the gradient has NaN or infinite entries (in {', '.join(bad)}); check the loss "
                                 "and the step size")

    @torch.no_grad()
    def precondition(self) -> dict[Tensor, Tensor]:
        r"""Replace the gradients of the K-FAC layers by their preconditioned versions.

        Adds weight decay to every gradient, advances the step counter, recomputes the
        eigendecompositions when due, and applies KL clipping. Use it to put K-FAC in front of
        any torch optimiser: ``loss.backward(); kfac.precondition(); other.step()``. Layers
        whose statistics are not gathered yet keep their gradient.

        Returns
        -------
        dict
            The original gradients (weight decay included), keyed by parameter, for the
            parameters whose ``.grad`` was replaced.

        Raises
        ------
        NonFiniteError
            If a gradient holds NaN or infinite values.
        """
        if self._pending:  # statistics of a forward pass whose backward never came (empirical)
            self._pending.clear()
        if self.distributed:
            self._sync_statistics()
        self._check_gradients()
        step = self._counters["step"]
        if step % self._hp("inverse_every") == 0 or any(
                "QA" not in self.state[m.weight] and "A" in self.state[m.weight] for _, m in self.layers):
            self._refresh_inverses()
        for group in self.param_groups:
            wd = group["weight_decay"]
            if wd:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.add_(p, alpha=wd)
        originals: dict[Tensor, Tensor] = {}
        updates: list[tuple[_Layer, Tensor, Tensor]] = []
        for _, m in self.layers:
            if not m.weight.requires_grad or (m.bias is not None and not m.bias.requires_grad):
                continue  # frozen since construction: its trainable part gets the plain gradient
            v = self._layer_grad(m)
            if v is None or "QA" not in self.state[m.weight]:
                continue
            updates.append((m, v, self._precondition_layer(m, v, self._group(m))))
        nu = 1.0
        kl_clip = self._hp("kl_clip")
        if kl_clip is not None and updates:
            vg = 0.0
            for k, group in enumerate(self.param_groups):
                part = [float((u * v).sum()) for m, v, u in updates if self._layer_group[m] == k]
                if part:
                    vg += sum(part) * group["lr"] ** 2
            if vg > 0:
                nu = min(1.0, math.sqrt(kl_clip / vg))
        for m, _, u in updates:
            u = u * nu
            wgrad = m.weight.grad
            assert wgrad is not None  # _layer_grad returned None otherwise
            originals[m.weight] = wgrad.clone()
            if m.bias is not None:
                if m.bias.grad is None:
                    m.bias.grad = torch.zeros_like(m.bias)
                originals[m.bias] = m.bias.grad.clone()
                wgrad.copy_(u[:, :-1].reshape(m.weight.shape))
                m.bias.grad.copy_(u[:, -1])
            else:
                wgrad.copy_(u.reshape(m.weight.shape))
        self._counters["step"] = step + 1
        self._counters["collect"] = self._counters["step"] % self._hp("factor_every") == 0
        return originals

    # ------------------------------------------------------------------ the optimiser step
    def _quadratic_model(self, delta: dict[Tensor, Tensor], grads: dict[Tensor, Tensor],
                         damping: dict[int, float]) -> float:
        """g·δ + ½ δᵀ(F̃ + λI)δ with F̃ the Kronecker-factored Fisher of the running factors."""
        lin = 0.0
        quad = 0.0
        for p, d in delta.items():
            lin += float((grads[p] * d).sum())
            quad += damping[id(p)] * float(d.square().sum())
        for _, m in self.layers:
            st = self.state[m.weight]
            if "A" not in st or m.weight not in delta:
                continue
            d = delta[m.weight].reshape(m.weight.shape[0], -1)
            if m.bias is not None:
                d = torch.cat([d, delta[m.bias].unsqueeze(1)], dim=1)
            if "S" in st and self._hp("eigenvalue_corrected"):
                quad += float((st["S"] * (st["QG"].T @ d @ st["QA"]).square()).sum())
            else:
                quad += float((d * (st["G"] @ d @ st["A"])).sum())
        return lin + 0.5 * quad

    @torch.no_grad()
    def _apply_update(self, record: bool) -> dict[Tensor, Tensor]:
        """Momentum and the parameter update; returns the steps δ when ``record``."""
        delta: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                d = p.grad
                if mu:
                    st = self.state[p]
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = d.clone()
                    else:
                        st["momentum_buffer"].mul_(mu).add_(d)
                    d = st["momentum_buffer"]
                p.add_(d, alpha=-lr)
                if record:
                    delta[p] = -lr * d
        return delta

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        r"""One K-FAC step: precondition, clip, momentum, update (and adapt the damping when due).

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model: zeroes the gradients, computes the loss, calls ``backward``
            and returns the loss. Required with ``adapt_damping=True``.

        Returns
        -------
        Tensor or None
            The closure's loss before the step.
        """
        adapting = self._hp("adapt_damping")
        adapt = adapting and (self._counters["step"] + 1) % self._hp("adapt_every") == 0
        if adapting and closure is None:
            raise InvalidArgumentError("adapt_damping=True needs step(closure) to re-evaluate the loss")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"]]
        raw = {p: p.grad.clone() for p in params if p.grad is not None} if adapt else {}
        self.precondition()
        if adapt:
            for group in self.param_groups:
                if group["weight_decay"]:
                    for p in group["params"]:
                        if p in raw:
                            raw[p].add_(p.detach(), alpha=group["weight_decay"])
        delta = self._apply_update(adapt)
        if adapt and loss is not None and closure is not None:
            self._adapt(closure, float(loss.detach()), delta, raw)
        return loss

    def _adapt(self, closure: Callable[[], Tensor], h0: float, delta: dict[Tensor, Tensor],
               raw: dict[Tensor, Tensor]) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        grads = {p: g.clone() for p, g in ((p, p.grad) for p in params) if g is not None}
        self._suspended = True
        try:
            with torch.enable_grad():
                h1 = float(closure().detach())
        finally:
            self._suspended = False
            for p in params:
                p.grad = grads.get(p)
        if self.distributed:  # the loss of the union of the ranks' batches (equal batch sizes, as under DDP)
            both = torch.tensor([h0, h1], dtype=torch.float64, device=params[0].device)
            torch.distributed.all_reduce(both, group=self.process_group)
            both /= torch.distributed.get_world_size(self.process_group)
            h0, h1 = float(both[0]), float(both[1])
        damping = {id(p): group["damping"] for group in self.param_groups for p in group["params"]}
        model_red = self._quadratic_model(delta, raw, damping)
        rho = (h1 - h0) / model_red if model_red < 0 else -math.inf
        self.last_rho = rho
        omega = (19 / 20) ** self._hp("adapt_every")
        for group in self.param_groups:
            lam = group["damping"]
            if rho > 0.75:
                lam *= omega
            elif rho < 0.25:
                lam /= omega
            group["damping"] = min(max(lam, group["min_damping"]), group["max_damping"])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The optimiser state: param groups (every hyper-parameter), factors, eigendecompositions,
        momentum, counters."""
        out = super().state_dict()
        out["kfac"] = {"step": self._counters["step"], "factor_updates": self._counters["factor_updates"],
                       "collect": self._counters["collect"], "last_rho": self.last_rho}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` of a KFAC over the same model structure.

        As for any torch optimiser the hyper-parameters of the saved state (all of them live in
        ``param_groups``) win over the constructor's.
        """
        state_dict = dict(state_dict)
        extra = dict(state_dict.pop("kfac", {}))
        groups = [dict(g) for g in state_dict["param_groups"]]
        legacy = groups[0] if groups else {}
        for key in ("step", "factor_updates"):  # earlier versions kept the counters in the first group
            if key in legacy:
                extra.setdefault(key, legacy[key])
            for g in groups:
                g.pop(key, None)
        for g in groups:  # ... and the model-wide settings as attributes
            for key, value in extra.get("config", {}).items():
                if key in _MODEL_WIDE:
                    g.setdefault(key, value)
            for key in _PER_GROUP + _MODEL_WIDE:
                g.setdefault(key, self.defaults[key])
            _check_group(g)
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
        self._counters = {"step": int(extra.get("step", 0)), "factor_updates": int(extra.get("factor_updates", 0)),
                          "collect": bool(extra.get("collect", True))}
        self.last_rho = extra.get("last_rho")
        self._discover()
