r"""K-FAC: Kronecker-factored approximate curvature as a torch optimiser and preconditioner.

For an ``nn.Linear`` layer :math:`s = \bar W \bar a` with augmented weight :math:`\bar W = [W, b]`
and input :math:`\bar a = [a; 1]`, the Fisher block over :math:`\operatorname{vec}(\bar W)`
(row-major) is approximated by a Kronecker product (Martens & Grosse 2015),

.. math::

    F_{\bar W} \approx G \otimes A, \qquad
    A = \mathbb{E}[\bar a \bar a^\top], \qquad G = \mathbb{E}[\mathcal{D}s\, \mathcal{D}s^\top],

where :math:`\mathcal{D}s = \nabla_s \log p(\hat y \mid x)` is the gradient with respect to the
layer's output of the log-likelihood of a target :math:`\hat y` *sampled from the model's
predictive distribution* (or the observed target, for the empirical variant). Because
:math:`(G \otimes A)^{-1} = G^{-1} \otimes A^{-1}`, the preconditioned gradient of a layer costs two
small matrix products, :math:`G^{-1} \nabla_{\bar W} h\, A^{-1}`.

``KFAC`` gathers :math:`A` and :math:`G` with module hooks during the ordinary training
forward pass, keeps exponential moving averages, refreshes eigendecompositions every few steps
and applies factored Tikhonov damping with the :math:`\pi` correction. It is a standalone
optimiser (``KFAC.step``) and a preconditioner in front of any torch optimiser
(``KFAC.precondition``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["KFAC"]

_LIKELIHOODS = ("categorical", "bernoulli", "gaussian")
_FISHER_TYPES = ("mc", "empirical")
_TIMERS = ("factors", "inverses", "precondition", "update")
_CONFIG = ("factor_every", "inverse_every", "adapt_every", "n_samples", "likelihood", "fisher_type", "sigma",
           "factored_damping", "adapt_damping", "min_damping", "max_damping", "factor_subset")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _nonneg(name: str, value: Any) -> float:
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _unit_interval(name: str, value: Any) -> float:
    value = _real(name, value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return value


def _period(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class KFAC(torch.optim.Optimizer):
    r"""K-FAC optimiser for the ``nn.Linear`` layers of a model (Martens & Grosse 2015).

    Statistics are gathered by hooks while the model runs its training forward pass, so a
    training loop does not change::

        opt = KFAC(model, lr=0.1, likelihood="categorical")
        for X, y in batches:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            opt.step()

    On steps that refresh the factors (every ``factor_every`` steps), the forward pass of
    ``model`` in training mode with gradients enabled records each layer's input :math:`\bar a`
    (a ones-column appended for the bias) and, for ``fisher_type="mc"``, draws targets
    :math:`\hat y \sim p(y \mid f(x))` from the model's output and back-propagates
    :math:`\sum_n \log p(\hat y_n \mid f_n)` to the layer outputs (``torch.autograd.grad``,
    parameters' ``.grad`` untouched). For ``fisher_type="empirical"`` the gradients of the
    training loss itself are used, multiplied by the number of rows (the loss must be a *mean*
    over examples). With :math:`N` rows,

    .. math::

        \hat A = \frac1N \sum_n \bar a_n \bar a_n^\top, \qquad
        \hat G = \frac1N \sum_n \mathcal{D}s_n \mathcal{D}s_n^\top,

    With ``factor_subset`` :math:`m`, the statistics of a step use only a random subset
    :math:`S` of :math:`\min(m, N)` examples drawn without replacement (Martens & Grosse §8 compute
    them on a fraction of the mini-batch): :math:`\hat A = |S|^{-1} \sum_{n \in S} \bar a_n \bar a_n^\top`
    and likewise :math:`\hat G`, unbiased estimates of the full-batch statistics. For
    ``fisher_type="mc"`` the model is called a second time, on the rows of its positional input
    tensors indexed by :math:`S` (inside the training forward, from a forward hook), and the
    sampled-target backward pass runs through that small graph only, so the extra cost of a
    statistics step shrinks by :math:`|S|/N`; modules with running buffers (batch norm) see that
    second call too. For ``fisher_type="empirical"`` the rows :math:`S` of the training pass are
    used (the same rows in every layer), :math:`\hat G = N^2 |S|^{-1} \sum_{n \in S} g_n g_n^\top`
    with :math:`g_n` the gradient of the mean loss (only the outer products get cheaper).

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
    of all layers are scaled by :math:`\nu = \min(1, \sqrt{\kappa / (\alpha^2 \sum \langle U, V \rangle)})`
    (:math:`\alpha` = ``lr``). ``step`` then applies heavy-ball momentum :math:`\mu`,
    :math:`m \leftarrow \mu m + U`, :math:`\theta \leftarrow \theta - \alpha m`. Parameters outside
    ``nn.Linear`` layers get the same momentum update with their plain gradient; they are listed
    in ``unpreconditioned`` and announced by a warning at construction.

    With ``adapt_damping=True``, every ``adapt_every`` steps ``step`` re-evaluates the
    closure after the update :math:`\delta` and compares the reduction with the quadratic model
    :math:`M(\delta) = g^\top \delta + \tfrac12 \delta^\top (\tilde F + \lambda I)\delta`
    (:math:`\tilde F` the Kronecker-factored Fisher from the running factors): with
    :math:`\rho = (h(\theta+\delta) - h(\theta)) / M(\delta)`, the damping becomes
    :math:`\omega\lambda` if :math:`\rho > 3/4` and :math:`\lambda/\omega` if :math:`\rho < 1/4`,
    :math:`\omega = (19/20)^{T}` with :math:`T` = ``adapt_every`` (the Levenberg–Marquardt rule of
    Martens & Grosse §6.5).

    Parameters
    ----------
    model : nn.Module
        The model; its ``nn.Linear`` layers (weight and optional bias, each layer called once per
        forward) are preconditioned. All parameters requiring gradients are optimised.
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
        Bound :math:`\kappa > 0` on :math:`\alpha^2 \sum \langle U, V\rangle`; ``None`` disables it.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        The model's predictive distribution given its output :math:`f`: softmax over the last
        dimension, independent sigmoids, or :math:`\mathcal N(f, \sigma^2 I)`.
    fisher_type : {"mc", "empirical"}
        Targets sampled from the model (Martens & Grosse §5), or the training targets.
    n_samples : int
        Sampled targets per example for ``fisher_type="mc"``.
    factor_subset : int, optional
        Number :math:`m \ge 1` of examples, drawn at random (with ``generator``) on every
        statistics step, from which the factors are estimated; ``None`` (default) uses the whole
        batch. With ``fisher_type="mc"`` the model's examples are the rows (dim 0) of its
        positional input tensors.
    sigma : float
        Noise scale :math:`\sigma > 0` of the Gaussian likelihood.
    factored_damping : bool
        Factored Tikhonov damping with :math:`\pi` (default) or the exact damped Kronecker inverse.
    adapt_damping : bool
        Levenberg–Marquardt adaptation of ``damping`` (needs a closure in ``step``).
    adapt_every : int
        Adaptation period :math:`T` (>= 1; default 5).
    min_damping, max_damping : float
        Range that the adapted damping is clipped to (``0 < min_damping <= max_damping``).
    generator : torch.Generator, optional
        Random generator for the sampled targets.
    profile : bool
        Synchronise CUDA around the timed sections so that ``timings`` is exact on a GPU.

    Attributes
    ----------
    layers : list of (str, nn.Linear)
        The preconditioned layers, in module order.
    unpreconditioned : list of str
        Names of parameters that receive plain (momentum) gradient updates.
    timings : dict
        Seconds spent in ``"factors"``, ``"inverses"``, ``"precondition"`` and ``"update"``.

    Examples
    --------
    >>> import torch
    >>> from fisherbook.optim import KFAC
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> opt = KFAC(model, lr=0.3, damping=1e-2, inverse_every=5, generator=torch.Generator().manual_seed(0))
    >>> losses = []
    >>> for _ in range(20):
    ...     opt.zero_grad()
    ...     loss = torch.nn.functional.cross_entropy(model(X), y)
    ...     loss.backward()
    ...     opt.step()
    ...     losses.append(loss.item())
    >>> losses[-1] < 0.8 * losses[0]
    True
    >>> opt.unpreconditioned
    []
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
        sigma: float = 1.0,
        factored_damping: bool = True,
        adapt_damping: bool = False,
        adapt_every: int = 5,
        min_damping: float = 1e-8,
        max_damping: float = 1e4,
        generator: torch.Generator | None = None,
        profile: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        lr = _positive("lr", lr)
        damping = _positive("damping", damping)
        factor_decay = _unit_interval("factor_decay", factor_decay)
        momentum = _unit_interval("momentum", momentum)
        weight_decay = _nonneg("weight_decay", weight_decay)
        if kl_clip is not None:
            kl_clip = _positive("kl_clip", kl_clip)
        self.factor_every = _period("factor_every", factor_every)
        self.inverse_every = _period("inverse_every", inverse_every)
        self.adapt_every = _period("adapt_every", adapt_every)
        self.n_samples = _period("n_samples", n_samples)
        self.factor_subset = None if factor_subset is None else _period("factor_subset", factor_subset)
        if not isinstance(likelihood, str) or likelihood not in _LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(fisher_type, str) or fisher_type not in _FISHER_TYPES:
            raise ValueError(f"fisher_type must be one of {_FISHER_TYPES}, got {fisher_type!r}")
        self.sigma = _positive("sigma", sigma)
        self.min_damping = _positive("min_damping", min_damping)
        self.max_damping = _positive("max_damping", max_damping)
        if self.min_damping > self.max_damping:
            raise ValueError(f"min_damping ({min_damping}) must be <= max_damping ({max_damping})")
        if not self.min_damping <= damping <= self.max_damping:
            raise ValueError(f"damping must lie in [min_damping, max_damping] = "
                             f"[{self.min_damping}, {self.max_damping}], got {damping}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")

        self.model = model
        self.likelihood = likelihood
        self.fisher_type = fisher_type
        self.factored_damping = bool(factored_damping)
        self.adapt_damping = bool(adapt_damping)
        self.generator = generator
        self.profile = bool(profile)

        names = {id(p): n for n, p in model.named_parameters()}
        self.layers: list[tuple[str, nn.Linear]] = []
        covered: set[int] = set()
        for mname, module in model.named_modules():
            if type(module) is nn.Linear and module.weight.requires_grad:
                if module.bias is not None and not module.bias.requires_grad:
                    continue
                self.layers.append((mname, module))
                covered.add(id(module.weight))
                if module.bias is not None:
                    covered.add(id(module.bias))
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no parameters that require gradients")
        self.unpreconditioned = [names[id(p)] for p in params if id(p) not in covered]
        if self.unpreconditioned:
            warnings.warn(f"KFAC preconditions nn.Linear layers only; these parameters get plain "
                          f"gradient updates: {', '.join(self.unpreconditioned)}", UserWarning, stacklevel=2)
        if not self.layers:
            warnings.warn("model has no nn.Linear layer: KFAC reduces to SGD with momentum", UserWarning,
                          stacklevel=2)

        defaults = dict(lr=lr, damping=damping, factor_decay=factor_decay, momentum=momentum,
                        weight_decay=weight_decay, kl_clip=kl_clip)
        super().__init__(params, defaults)
        self.param_groups[0].setdefault("step", 0)
        self.param_groups[0].setdefault("factor_updates", 0)
        self.timings: dict[str, float] = {k: 0.0 for k in _TIMERS}
        self.last_rho: float | None = None
        self._collect = True
        self._suspended = False
        self._in_subset = False
        self._rows: tuple[int, Tensor] | None = None
        self._pending: dict[nn.Linear, dict[str, Any]] = {}
        self._handles = [m.register_forward_hook(self._layer_hook) for _, m in self.layers]
        self._handles.append(model.register_forward_hook(self._model_hook))

    # ------------------------------------------------------------------ bookkeeping
    @property
    def steps(self) -> int:
        """Number of completed ``precondition`` calls (each ``step`` makes one)."""
        return int(self.param_groups[0]["step"])

    @property
    def factor_updates(self) -> int:
        """Number of factor statistics folded into the running averages."""
        return int(self.param_groups[0]["factor_updates"])

    def remove_hooks(self) -> None:
        """Detach the forward hooks from the model (the optimiser stops gathering statistics)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _sync(self) -> None:
        if self.profile and torch.cuda.is_available():
            torch.cuda.synchronize()

    def _tick(self) -> float:
        self._sync()
        return time.perf_counter()

    def _tock(self, key: str, t0: float) -> None:
        self._sync()
        self.timings[key] += time.perf_counter() - t0

    def reset_timings(self) -> None:
        """Set all ``timings`` back to zero."""
        for k in self.timings:
            self.timings[k] = 0.0

    def factors(self) -> list[tuple[Tensor, Tensor]]:
        r"""The running ``(A, G)`` pair of every preconditioned layer (``A`` includes the bias row)."""
        out = []
        for _, m in self.layers:
            st = self.state[m.weight]
            if "A" not in st:
                raise RuntimeError("no factor statistics yet: run a training forward pass first")
            out.append((st["A"], st["G"]))
        return out

    # ------------------------------------------------------------------ statistics
    def _collecting(self, module: nn.Module) -> bool:
        return (self._collect and not self._suspended and module.training and torch.is_grad_enabled())

    def _layer_hook(self, module: nn.Linear, args: tuple, output: Tensor) -> None:
        if not self._collecting(module):
            return
        if self.factor_subset is not None and self.fisher_type == "mc" and not self._in_subset:
            return  # the model hook re-runs the model on a subset of the examples
        t0 = self._tick()
        a = args[0].detach().reshape(-1, module.in_features)
        rows = None
        if self.factor_subset is not None and self.fisher_type == "empirical" and a.shape[0] > self.factor_subset:
            if self._rows is None or self._rows[0] != a.shape[0]:
                self._rows = (a.shape[0], self._subset(a.shape[0], a.device))  # shared by the layers
            rows = self._rows[1]
            a = a[rows]
        if module.bias is not None:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
        self._pending[module] = {"A": a.T @ a / a.shape[0], "out": output}
        if self.fisher_type == "empirical" and output.requires_grad:
            def grad_hook(grad: Tensor, module: nn.Linear = module, rows: Tensor | None = rows) -> None:
                if module not in self._pending:
                    return
                g = grad.detach().reshape(-1, module.out_features)
                n = g.shape[0]
                if rows is not None:
                    g = g[rows]
                entry = self._pending.pop(module)
                self._fold(module, entry["A"], (g.T @ g) * (n * n / g.shape[0]))
                if not self._pending:
                    self._finish_collection()

            output.register_hook(grad_hook)
        self._tock("factors", t0)

    def _sampled_nll(self, f: Tensor) -> Tensor:
        """Sum over examples of -log p(ŷ | f) with ŷ drawn from the model's predictive."""
        g = self.generator
        fd = f.detach()
        if self.likelihood == "categorical":
            logp = torch.log_softmax(f, dim=-1)
            probs = torch.softmax(fd, dim=-1).reshape(-1, f.shape[-1])
            y = torch.multinomial(probs, 1, generator=g).reshape(f.shape[:-1] + (1,))
            return -logp.gather(-1, y).sum()
        if self.likelihood == "bernoulli":
            y = torch.bernoulli(torch.sigmoid(fd), generator=g)
            return nn.functional.binary_cross_entropy_with_logits(f, y, reduction="sum")
        y = fd + self.sigma * torch.randn(fd.shape, generator=g, dtype=fd.dtype, device=fd.device)
        return 0.5 * (f - y).square().sum() / self.sigma**2

    def _subset(self, n: int, device: torch.device) -> Tensor:
        """Indices of ``min(factor_subset, n)`` of ``n`` rows drawn without replacement."""
        g = self.generator
        perm = torch.randperm(n, generator=g, device=g.device if g is not None else "cpu")
        return perm[: self.factor_subset].to(device)

    def _subset_forward(self, module: nn.Module, args: tuple) -> None:
        """Run ``module`` on a random subset of the examples; its hooks gather the statistics."""
        t0 = time.perf_counter()
        before = self.timings["factors"]
        tensors = [x for x in args if isinstance(x, Tensor) and x.dim() > 0]
        if not tensors:
            raise TypeError("KFAC with factor_subset needs the model to take a Tensor of examples")
        n = tensors[0].shape[0]
        rows = self._subset(n, tensors[0].device)
        sub = tuple(x[rows] if isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == n else x for x in args)
        self._in_subset = True
        try:
            module(*sub)
        finally:
            self._in_subset = False
            self._pending.clear()
        self._sync()
        self.timings["factors"] = before + time.perf_counter() - t0

    def _model_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._rows = None
        if (self.factor_subset is not None and self.fisher_type == "mc" and not self._in_subset
                and self.layers and self._collecting(module)):
            self._subset_forward(module, args)
            return
        if not self._pending or self.fisher_type != "mc":
            return
        if not isinstance(output, Tensor):
            raise TypeError("KFAC with fisher_type='mc' needs the model to return one Tensor of outputs")
        t0 = self._tick()
        mods = [m for m in self._pending if self._pending[m]["out"].requires_grad]
        outs = [self._pending[m]["out"] for m in mods]
        gs: dict[nn.Linear, Tensor] = {}
        for _ in range(self.n_samples):
            grads = torch.autograd.grad(self._sampled_nll(output), outs, retain_graph=True, allow_unused=True)
            for m, gr in zip(mods, grads):
                if gr is None:
                    continue
                gr = gr.detach().reshape(-1, m.out_features)
                gg = gr.T @ gr / (gr.shape[0] * self.n_samples)
                gs[m] = gs[m] + gg if m in gs else gg
        for m in mods:
            if m in gs:
                self._fold(m, self._pending[m]["A"], gs[m])
        self._pending.clear()
        self._finish_collection()
        self._tock("factors", t0)

    def _fold(self, module: nn.Linear, a_hat: Tensor, g_hat: Tensor) -> None:
        group = self.param_groups[0]
        st = self.state[module.weight]
        k = group["factor_updates"] + 1
        eps = min(1.0 - 1.0 / k, group["factor_decay"])
        if "A" not in st:
            st["A"], st["G"] = a_hat.clone(), g_hat.clone()
        else:
            st["A"].mul_(eps).add_(a_hat, alpha=1 - eps)
            st["G"].mul_(eps).add_(g_hat, alpha=1 - eps)

    def _finish_collection(self) -> None:
        self.param_groups[0]["factor_updates"] += 1
        self._collect = False

    # ------------------------------------------------------------------ preconditioning
    def _refresh_inverses(self) -> None:
        for _, m in self.layers:
            st = self.state[m.weight]
            if "A" not in st:
                continue
            ea, qa = torch.linalg.eigh(st["A"])
            eg, qg = torch.linalg.eigh(st["G"])
            st["eA"], st["QA"], st["eG"], st["QG"] = ea.clamp_min(0), qa, eg.clamp_min(0), qg
            ta = float(st["A"].trace()) / st["A"].shape[0]
            tg = float(st["G"].trace()) / st["G"].shape[0]
            st["pi"] = torch.tensor(math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0)

    @staticmethod
    def _layer_grad(m: nn.Linear) -> Tensor | None:
        if m.weight.grad is None:
            return None
        g = m.weight.grad
        if m.bias is not None:
            gb = m.bias.grad if m.bias.grad is not None else torch.zeros_like(m.bias)
            g = torch.cat([g, gb.unsqueeze(1)], dim=1)
        return g

    def _precondition_layer(self, m: nn.Linear, v: Tensor, damping: float, weight_decay: float) -> Tensor:
        st = self.state[m.weight]
        qa, qg, ea, eg = st["QA"], st["QG"], st["eA"], st["eG"]
        if self.factored_damping:
            pi = float(st["pi"])
            gamma = math.sqrt(damping + weight_decay)
            denom = (eg + gamma / pi).unsqueeze(1) * (ea + pi * gamma).unsqueeze(0)
        else:
            denom = eg.unsqueeze(1) * ea.unsqueeze(0) + (damping + weight_decay)
        return qg @ ((qg.T @ v @ qa) / denom) @ qa.T

    @torch.no_grad()
    def precondition(self) -> dict[Tensor, Tensor]:
        r"""Replace the gradients of the ``nn.Linear`` layers by their K-FAC preconditioned versions.

        Adds weight decay to every gradient, advances the step counter, recomputes the
        eigendecompositions when due, and applies KL clipping. Use it to put K-FAC in front of
        any torch optimiser: ``loss.backward(); kfac.precondition(); other.step()``. Layers
        whose statistics are not gathered yet keep their gradient.

        Returns
        -------
        dict
            The original gradients (weight decay included), keyed by parameter, for the
            parameters whose ``.grad`` was replaced.
        """
        group = self.param_groups[0]
        if self._pending:  # statistics of a forward pass whose backward never came (empirical)
            self._pending.clear()
        step = group["step"]
        if step % self.inverse_every == 0 or any("QA" not in self.state[m.weight] and "A" in self.state[m.weight]
                                                  for _, m in self.layers):
            t0 = self._tick()
            self._refresh_inverses()
            self._tock("inverses", t0)
        t0 = self._tick()
        wd = group["weight_decay"]
        if wd:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.add_(p, alpha=wd)
        originals: dict[Tensor, Tensor] = {}
        updates: list[tuple[nn.Linear, Tensor, Tensor]] = []
        for _, m in self.layers:
            v = self._layer_grad(m)
            if v is None or "QA" not in self.state[m.weight]:
                continue
            u = self._precondition_layer(m, v, group["damping"], wd)
            updates.append((m, v, u))
        nu = 1.0
        if group["kl_clip"] is not None and updates:
            vg = sum(float((u * v).sum()) for _, v, u in updates) * group["lr"] ** 2
            if vg > 0:
                nu = min(1.0, math.sqrt(group["kl_clip"] / vg))
        for m, v, u in updates:
            u = u * nu
            originals[m.weight] = m.weight.grad.clone()
            if m.bias is not None:
                if m.bias.grad is None:
                    m.bias.grad = torch.zeros_like(m.bias)
                originals[m.bias] = m.bias.grad.clone()
                m.weight.grad.copy_(u[:, :-1])
                m.bias.grad.copy_(u[:, -1])
            else:
                m.weight.grad.copy_(u)
        group["step"] = step + 1
        self._collect = group["step"] % self.factor_every == 0
        self._tock("precondition", t0)
        return originals

    # ------------------------------------------------------------------ the optimiser step
    def _quadratic_model(self, delta: dict[Tensor, Tensor], grads: dict[Tensor, Tensor], damping: float) -> float:
        """g·δ + ½ δᵀ(F̃ + λI)δ with F̃ the Kronecker-factored Fisher of the running factors."""
        lin = 0.0
        quad = 0.0
        for p, d in delta.items():
            lin += float((grads[p] * d).sum())
            quad += damping * float(d.square().sum())
        for _, m in self.layers:
            st = self.state[m.weight]
            if "A" not in st or m.weight not in delta:
                continue
            d = delta[m.weight]
            if m.bias is not None:
                d = torch.cat([d, delta[m.bias].unsqueeze(1)], dim=1)
            quad += float((d * (st["G"] @ d @ st["A"])).sum())
        return lin + 0.5 * quad

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
        group = self.param_groups[0]
        adapt = self.adapt_damping and (group["step"] + 1) % self.adapt_every == 0
        if self.adapt_damping and closure is None:
            raise ValueError("adapt_damping=True needs step(closure) to re-evaluate the loss")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        raw = {p: p.grad.clone() for p in group["params"] if p.grad is not None} if adapt else {}
        self.precondition()
        if adapt and group["weight_decay"]:
            for p in raw:
                raw[p].add_(p.detach(), alpha=group["weight_decay"])
        t0 = self._tick()
        lr, mu = group["lr"], group["momentum"]
        delta: dict[Tensor, Tensor] = {}
        with torch.no_grad():
            for p in group["params"]:
                if p.grad is None:
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
                if adapt:
                    delta[p] = -lr * d
        self._tock("update", t0)
        if adapt and loss is not None:
            self._adapt(closure, float(loss.detach()), delta, raw)  # type: ignore[arg-type]
        return loss

    def _adapt(self, closure: Callable[[], Tensor], h0: float, delta: dict[Tensor, Tensor],
               raw: dict[Tensor, Tensor]) -> None:
        group = self.param_groups[0]
        grads = {p: g.clone() for p, g in ((p, p.grad) for p in group["params"]) if g is not None}
        self._suspended = True
        try:
            with torch.enable_grad():
                h1 = float(closure().detach())
        finally:
            self._suspended = False
            for p in group["params"]:
                p.grad = grads.get(p)
        model_red = self._quadratic_model(delta, raw, group["damping"])
        rho = (h1 - h0) / model_red if model_red < 0 else -math.inf
        self.last_rho = rho
        omega = (19 / 20) ** self.adapt_every
        lam = group["damping"]
        if rho > 0.75:
            lam *= omega
        elif rho < 0.25:
            lam /= omega
        group["damping"] = min(max(lam, self.min_damping), self.max_damping)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The optimiser state (factors, eigendecompositions, momentum, counters, damping)."""
        out = super().state_dict()
        config = {k: getattr(self, k) for k in _CONFIG}
        out["kfac"] = {"collect": self._collect, "timings": dict(self.timings), "last_rho": self.last_rho,
                       "config": config}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` of a KFAC over the same model structure.

        As for any torch optimiser the hyper-parameters of the saved state win over the
        constructor's: ``lr``, ``damping``, ``momentum`` … (in ``param_groups``) and the schedules
        and options (``inverse_every``, ``factor_every``, ``likelihood``, ``fisher_type`` …).
        """
        state_dict = dict(state_dict)
        extra = state_dict.pop("kfac", {})
        super().load_state_dict(state_dict)
        for k, v in extra.get("config", {}).items():
            if k in _CONFIG:
                setattr(self, k, v)
        self._collect = bool(extra.get("collect", True))
        self.last_rho = extra.get("last_rho")
        self.timings.update(extra.get("timings", {}))
