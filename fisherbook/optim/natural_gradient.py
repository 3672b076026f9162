r"""Natural gradient descent: steepest descent when distance is measured by the KL divergence.

The natural-gradient step preconditions the gradient :math:`g = \nabla_\theta L(\theta)` with
the (damped) Fisher information :math:`F(\theta)` of the model's predictive distribution,

.. math::

    \Delta\theta = -\eta\, (F(\theta) + \lambda I)^{-1} g,

which to first order minimises :math:`L(\theta + \Delta\theta)` among steps with a fixed
:math:`\operatorname{KL}(p_\theta \,\Vert\, p_{\theta+\Delta\theta}) \approx \tfrac12 \Delta\theta^\top
F \Delta\theta` (Amari 1998). Because :math:`F` transforms as a metric, the undamped step is
invariant under reparameterisation to first order in :math:`\eta` (exactly so under affine
reparameterisations).

:class:`NaturalGradient` follows the :class:`torch.optim.Optimizer` protocol; :func:`natural_gradient_path`
iterates the same update on a plain parameter vector, for the small models of Chapter 4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from .._validate import check_int, check_option, check_real, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedError
from ..linalg import conjugate_gradient
from ._groups import check_model_wide

__all__ = ["NaturalGradient", "natural_gradient_path"]

_LIKELIHOODS = ("categorical", "bernoulli", "gaussian")
_KINDS = ("true", "mc", "empirical")
_SOLVERS = ("auto", "dense", "cg", "solve")
#: settings of the whole optimiser (one solve couples all groups): every group holds the first's value
_MODEL_WIDE = ("solver", "max_kl", "update_every", "cg_max_iter", "cg_tol", "dense_max", "adapt_damping", "lm_factor")


def _check_nonneg(name: str, value: Any, allow_zero: bool = True) -> float:
    return check_real(value, name, low=0.0, open_low=not allow_zero)


def _check_group(group: dict[str, Any]) -> None:
    """Validate (and normalise in place) the hyper-parameters of one param group."""
    group["lr"] = _check_nonneg("lr", group["lr"])
    group["damping"] = _check_nonneg("damping", group["damping"])
    check_option(group["solver"], "solver", _SOLVERS)
    if group["max_kl"] is not None:
        group["max_kl"] = _check_nonneg("max_kl", group["max_kl"], allow_zero=False)
    for name in ("update_every", "cg_max_iter", "dense_max"):
        group[name] = check_int(group[name], name, minimum=1)
    group["cg_tol"] = _check_nonneg("cg_tol", group["cg_tol"])
    if not isinstance(group["adapt_damping"], bool):
        raise ArgumentTypeError(f"adapt_damping must be True or False, got {type(group['adapt_damping']).__name__}")
    group["lm_factor"] = check_real(group["lm_factor"], "lm_factor", low=1.0, open_low=True)
    if group["adapt_damping"] and group["damping"] == 0.0:
        raise InvalidArgumentError("adapt_damping=True multiplies the damping up and down: it needs damping > 0, got 0")


def _data(value: Any, name: str, *, reusable: bool = False) -> Any:
    """A tensor batch (checked as by :func:`_batch`), or a ``DataLoader`` / iterable of batches,
    passed on to :func:`fisherbook.curvature.fisher`, which checks each batch as it streams.
    ``reusable``: the data are read at every refresh, so a one-shot iterator is refused."""
    if isinstance(value, Tensor):
        return _batch(value, name)
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor with examples along dim 0, a DataLoader or an "
                                f"iterable of batches, got {type(value).__name__}")
    if isinstance(value, torch.utils.data.Dataset) and not isinstance(value, torch.utils.data.IterableDataset):
        raise ArgumentTypeError(f"{name} is a {type(value).__name__} (a Dataset of single examples); wrap it in "
                                "torch.utils.data.DataLoader(dataset, batch_size=...) to pass batches")
    if reusable and iter(value) is value:
        raise InvalidArgumentError(f"{name} given to the constructor is read at every curvature refresh, but it is a "
                                   "one-shot iterator; pass a DataLoader or a list of batches (or give the "
                                   "iterator to step(inputs=...))")
    return value


def _batch(value: Any, name: str) -> Tensor:
    """A batch of examples along dim 0: a non-empty tensor with finite (floating) entries."""
    if not isinstance(value, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor with examples along dim 0, got {type(value).__name__}")
    if value.dim() == 0 or value.shape[0] == 0:
        raise ShapeError(f"{name} must hold at least one example along dim 0, got shape {tuple(value.shape)}")
    return check_tensor(value, name)


class _Block:
    """The block of a curvature over a subset ``idx`` of its ``n`` coordinates (frozen or
    unoptimised parameters left out): :math:`F_{SS}` with products, dense form and solves."""

    def __init__(self, inner: Any, idx: Tensor, n: int, params: list[int], layout: Any) -> None:
        self.inner, self.idx, self.n = inner, idx, n
        self._params = set(params)  # positions (in the curvature's parameter order) of the kept parameters
        self._layout = layout

    def _pad(self, v: Tensor) -> Tensor:
        out = v.new_zeros(self.n)
        out[self.idx] = v
        return out

    def mv(self, v: Tensor) -> Tensor:
        return self.inner.mv(self._pad(v))[self.idx]

    def to_dense(self) -> Tensor:
        dense = self.inner if isinstance(self.inner, Tensor) else self.inner.to_dense()
        return dense[self.idx.unsqueeze(1), self.idx.unsqueeze(0)]

    def _separable(self) -> bool:
        """Whether no block of the representation mixes kept and left-out coordinates (then the
        solve of the whole matrix, restricted, is the solve of the block)."""
        from ..curvature import KFAC, BlockDiagonal, Diagonal

        if isinstance(self.inner, Diagonal):
            return True
        if isinstance(self.inner, KFAC):
            for layer in self.inner.layers:
                own = {layer.weight_index} | ({layer.bias_index} if layer.bias_index is not None else set())
                if 0 < len(own & self._params) < len(own):
                    return False
            return True
        if isinstance(self.inner, BlockDiagonal):
            mask = torch.zeros(self.n, dtype=torch.bool, device=self.idx.device)
            mask[self.idx] = True
            return all(bool(mask[i].all()) or not bool(mask[i].any()) for i in self.inner.index)
        return False

    def solve(self, v: Tensor, damping: float) -> Tensor:
        if not self._separable():
            raise UnsupportedError(
                f'solver="solve" with a {type(self.inner).__name__} curvature needs every block (layer) entirely '
                'optimised or entirely frozen; use solver="dense" or solver="cg", which handle any subset')
        return self.inner.solve(self._pad(v), damping)[self.idx]


class NaturalGradient(torch.optim.Optimizer):
    r"""Natural-gradient optimiser with Tikhonov damping and an optional KL trust region.

    Each :meth:`step` computes the gradient :math:`g` (from ``closure`` or the parameters'
    ``.grad``), the Fisher :math:`F` of the model (refreshed every ``update_every`` steps), the
    damped natural-gradient direction :math:`d = (F + \lambda I)^{-1} g`, and moves each
    parameter group by :math:`\Delta = -\eta\, d` restricted to that group, with :math:`\eta` the
    group's ``lr`` and :math:`\lambda` its ``damping`` (so the damping matrix is diagonal, constant
    within a group). With ``max_kl`` set :math:`\delta`, the step is scaled down so that the
    predicted divergence :math:`\tfrac12 \Delta^\top F \Delta \le \delta`.

    The Fisher comes either from ``curvature_fn`` or from
    ``fisherbook.curvature.fisher(model, inputs, likelihood, kind, ...)`` on the batch given to
    :meth:`step` (``step(closure, inputs=X, targets=y)``), or, without one, on the ``inputs`` given
    to the constructor. Only the optimised parameters that require gradients move, and the Fisher
    is the block over them, :math:`F_{SS}` (the other rows and columns are dropped, not solved
    for): on a partly frozen model pass only the trainable parameters (or all; frozen ones are
    skipped). Vectors are flattened in the curvature's order: that of ``model.parameters()`` when
    ``model`` is given, the order of the parameter groups when ``curvature_fn`` is.

    Parameters
    ----------
    params : iterable
        Parameters or parameter-group dicts, as for any :class:`torch.optim.Optimizer`; with
        ``model``, parameters of that model.
    lr : float
        Step size :math:`\eta \ge 0` (default 1, the Newton-like step of the natural gradient).
    damping : float
        Tikhonov damping :math:`\lambda \ge 0` added to the Fisher's diagonal.
    model : torch.nn.Module, optional
        The model whose Fisher preconditions the step; needs ``likelihood``.
    inputs : Tensor, DataLoader or iterable of batches, optional
        Default data at which the Fisher is computed (mean over examples), used by steps that
        are not given ``inputs``: one tensor, or a ``torch.utils.data.DataLoader`` or a list of
        input batches or ``(inputs, targets)`` pairs, over which the curvature engine streams the
        exact mean (each batch weighted by its size; targets from the pairs, for
        ``kind="empirical"``). It is read at every refresh, so a one-shot iterator is refused here
        (give it to :meth:`step` instead).
    likelihood : {"categorical", "bernoulli", "gaussian"}, optional
        Output likelihood of ``model``.
    kind : {"true", "mc", "empirical"}
        Fisher kind passed to the curvature engine; ``"empirical"`` needs ``targets``.
    targets : Tensor, optional
        Default targets for the empirical Fisher.
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    sigma : float
        Noise scale of the Gaussian likelihood.
    generator : torch.Generator, optional
        Random generator for ``kind="mc"``.
    representation : str, optional
        Curvature representation requested from the engine. Defaults to ``"dense"`` for the dense
        solver and ``"matrix_free"`` for conjugate gradient; ``solver="solve"`` uses the
        representation's own ``solve`` (for example ``"diagonal"`` or ``"kfac"``).
    curvature_fn : callable, optional
        Alternative to ``model``: ``curvature_fn()`` returns the Fisher at the current parameters
        over all the optimiser's parameters (in group order), either as a dense ``(P, P)`` tensor
        or as an object with ``mv(v)`` (and ``to_dense()`` for the dense solver,
        ``solve(v, damping)`` for ``solver="solve"``).
    solver : {"auto", "dense", "cg", "solve"}
        ``"dense"``: Cholesky solve of the damped dense Fisher; ``"cg"``: conjugate gradient on
        Fisher-vector products; ``"solve"``: the curvature object's ``solve(v, damping)``;
        ``"auto"``: dense when :math:`P \le` ``dense_max``, otherwise CG.
    max_kl : float, optional
        Trust-region radius :math:`\delta > 0` on the predicted KL divergence of a step.
    update_every : int
        Recompute the Fisher every this many steps (1 = every step).
    cg_max_iter : int
        Conjugate-gradient iteration cap.
    cg_tol : float
        Conjugate-gradient relative residual tolerance.
    dense_max : int
        Largest parameter count for which ``solver="auto"`` forms the dense Fisher.
    adapt_damping : bool
        Levenberg–Marquardt adaptation of the damping (Martens 2010): after each step the
        closure is evaluated again and the reduction ratio
        :math:`\rho = (L(\theta + \Delta) - L(\theta)) / q(\Delta)`, with the quadratic model
        :math:`q(\Delta) = g^\top \Delta + \tfrac12 \Delta^\top F \Delta`, rescales every group's
        damping: divided by ``lm_factor`` when :math:`\rho > 3/4` (the model is trusted), multiplied
        by it when :math:`\rho < 1/4`; a step with :math:`\rho \le 0` (the loss rose, or became
        non-finite) is undone, as in a trust-region method. Needs ``damping > 0`` and a closure at
        every step; ``state`` records ``rho``, ``accepted`` and ``loss_after`` (the loss at the
        trial point).
    lm_factor : float
        The factor :math:`\omega > 1` of the rule (default 3/2).
    distributed : bool, optional
        The Fisher of the union of the ranks' batches (``model`` mode): each rank passes its own
        ``inputs`` and :func:`fisherbook.curvature.distributed.fisher` reduces the result over
        ``process_group`` (dense, diagonal, block and K-FAC matrices once per refresh, every
        Fisher-vector product of conjugate gradient per call, so all ranks run the same CG
        iterations). ``None`` (default): on exactly when ``model`` is a
        ``DistributedDataParallel``, which averages the gradients. Ranks must step in lockstep.
    process_group : ProcessGroup, optional
        The ranks that train together (default: the world).

    Raises
    ------
    InvalidArgumentError
        For a negative ``lr`` or ``damping``, a non-positive ``max_kl``, an unknown ``solver``,
        ``likelihood`` or ``kind``, both or neither of ``model`` and ``curvature_fn``, ``params``
        that are not parameters of ``model``, and (at :meth:`step`) a Fisher whose shape does not
        match the number of parameters or a missing batch.
    ArgumentTypeError
        For hyper-parameters or batches of the wrong type.
    ShapeError, NonFiniteError
        At :meth:`step`, for an empty batch, or NaN or infinite inputs, targets or gradients.

    Notes
    -----
    All hyper-parameters live in ``param_groups`` (and ``defaults``). ``lr`` and ``damping`` are
    per group; the others are settings of the whole optimiser, one value in every group (a group
    added with :meth:`add_param_group` that sets another raises).

    ``state_dict()`` holds the step counter and, for the dense solver, the cached dense Fisher,
    so a restored optimiser continues exactly. Other curvature objects are not serialised: after
    :meth:`load_state_dict` the next step recomputes the curvature.

    Examples
    --------
    A least-squares fit of a Gaussian linear model: with :math:`\sigma = 1` the Fisher is
    :math:`X^\top X / N`, the Hessian of half the mean squared error, so one undamped step of
    size 1 from anywhere lands on the least-squares solution.

    >>> import torch
    >>> X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    >>> w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    >>> opt = NaturalGradient([w], lr=1.0, damping=0.0, curvature_fn=lambda: X.T @ X / 3)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = 0.5 * ((X @ w - y) ** 2).mean()
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> torch.allclose(w, torch.tensor([1.0, 2.0], dtype=torch.float64))
    True

    A model trained on mini-batches: each step's Fisher is that of its own batch.

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Linear(4, 3).double()
    >>> opt = NaturalGradient(net.parameters(), lr=0.5, damping=1e-2, model=net, likelihood="categorical")
    >>> for _ in range(3):
    ...     xb, yb = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(net(xb), yb).backward()
    ...     _ = opt.step(inputs=xb)
    >>> opt.state[net.weight]["step"]
    3
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        damping: float = 1e-3,
        *,
        model: nn.Module | None = None,
        inputs: Tensor | None = None,
        likelihood: str | None = None,
        kind: str = "true",
        targets: Tensor | None = None,
        n_samples: int = 1,
        sigma: float = 1.0,
        generator: torch.Generator | None = None,
        representation: str | None = None,
        curvature_fn: Callable[[], Any] | None = None,
        solver: str = "auto",
        max_kl: float | None = None,
        update_every: int = 1,
        cg_max_iter: int = 50,
        cg_tol: float = 1e-10,
        dense_max: int = 4096,
        adapt_damping: bool = False,
        lm_factor: float = 1.5,
        distributed: bool | None = None,
        process_group: Any = None,
    ) -> None:
        defaults = dict(lr=lr, damping=damping, solver=solver, max_kl=max_kl, update_every=update_every,
                        cg_max_iter=cg_max_iter, cg_tol=cg_tol, dense_max=dense_max,
                        adapt_damping=adapt_damping, lm_factor=lm_factor)
        _check_group(dict(defaults))  # name a bad argument before torch's own checks
        super().__init__(params, defaults)

        if (model is None) == (curvature_fn is None):
            raise InvalidArgumentError("give exactly one of model (with inputs and likelihood) or curvature_fn")
        self._model = model
        self._curvature_fn = curvature_fn
        if curvature_fn is not None:
            if not callable(curvature_fn):
                raise ArgumentTypeError(f"curvature_fn must be callable, got {type(curvature_fn).__name__}")
        else:
            if not isinstance(model, nn.Module):
                raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            check_option(likelihood, "likelihood", _LIKELIHOODS)
            check_option(kind, "kind", _KINDS)
            n_samples = check_int(n_samples, "n_samples", minimum=1)
            sigma = check_real(sigma, "sigma", low=0.0, open_low=True)
            if generator is not None and not isinstance(generator, torch.Generator):
                raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
            if representation is not None:
                representation = check_option(representation, "representation",
                                              ("dense", "diagonal", "block_diagonal", "kfac", "matrix_free"))
            elif solver == "solve":
                raise InvalidArgumentError('solver="solve" needs a representation, e.g. "diagonal" or "kfac"')
            self._check_params_in_model()
        self._inputs = None if inputs is None else _data(inputs, "inputs", reusable=True)
        self._targets = None if targets is None else _batch(targets, "targets")
        if self._targets is not None and self._inputs is not None and not isinstance(self._inputs, Tensor):
            raise InvalidArgumentError("targets must be None when inputs is a DataLoader or an iterable of batches; "
                                       "let each batch be an (inputs, targets) pair instead")
        if (kind == "empirical" and isinstance(self._inputs, Tensor) and self._targets is None):
            raise InvalidArgumentError('kind="empirical" needs targets with the default inputs (or pass both to step)')
        self._likelihood = likelihood
        if distributed is not None and not isinstance(distributed, bool):
            raise ArgumentTypeError(f"distributed must be True, False or None, got {type(distributed).__name__}")
        if distributed is None:
            distributed = isinstance(model, nn.parallel.DistributedDataParallel)
        if distributed and model is None:
            raise InvalidArgumentError("distributed=True reduces the Fisher of model over the ranks; with "
                                       "curvature_fn, reduce inside curvature_fn (fisherbook.curvature.distributed."
                                       "reduce_fisher) and leave distributed off")
        self.distributed = distributed
        self.process_group = process_group
        if distributed:
            from ..curvature.distributed import check_process_group, check_same_parameters

            check_process_group(process_group, "NaturalGradient(distributed=True)")
            assert model is not None
            check_same_parameters(model, process_group)
        self._kind = kind
        self._n_samples = n_samples
        self._sigma = sigma
        self._generator = generator
        self._representation = representation
        self._curvature: Any = None
        self._factor: tuple[Any, Tensor] | None = None
        self._factor_is_chol = True

    # -- groups and coordinates ----------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (torch.optim protocol); its parameters join the next solve.

        ``lr`` and ``damping`` may differ from the other groups'; the other settings must equal the
        first group's.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_group(group)
            check_model_wide(self.param_groups, _MODEL_WIDE, "NaturalGradient optimiser")
            if getattr(self, "_model", None) is not None:
                self._check_params_in_model()
        except Exception:
            self.param_groups.pop()  # a refused group leaves the optimiser as it was
            raise
        self._curvature = None
        self._factor = None

    def _check_params_in_model(self) -> None:
        assert self._model is not None
        model_ids = {id(p) for p in self._model.parameters()}
        foreign = [p for g in self.param_groups for p in g["params"] if id(p) not in model_ids]
        if foreign:
            raise InvalidArgumentError(
                f"params must be parameters of model (its Fisher preconditions them); got {len(foreign)} tensor(s) "
                f"of {sum(p.numel() for p in foreign)} elements that are not among model.parameters()")

    def _hp(self, key: str) -> Any:
        return self.param_groups[0][key]

    solver = property(lambda self: self._hp("solver"), doc="The linear solver (a model-wide setting).")
    max_kl = property(lambda self: self._hp("max_kl"), doc="Trust-region radius, or None.")
    update_every = property(lambda self: self._hp("update_every"), doc="Period of the curvature refresh.")
    cg_max_iter = property(lambda self: self._hp("cg_max_iter"), doc="Conjugate-gradient iteration cap.")
    cg_tol = property(lambda self: self._hp("cg_tol"), doc="Conjugate-gradient tolerance.")
    dense_max = property(lambda self: self._hp("dense_max"), doc="Largest P for the automatic dense solver.")
    adapt_damping = property(lambda self: self._hp("adapt_damping"), doc="Whether the LM rule adapts the damping.")
    lm_factor = property(lambda self: self._hp("lm_factor"), doc="Factor of the LM damping rule.")

    def _coordinates(self) -> tuple[list[Tensor], list[Tensor], list[int]]:
        """(the curvature's parameters in its order, the parameters that move, their positions)."""
        mine = {id(p) for g in self.param_groups for p in g["params"]}
        if self._model is not None:
            full: list[Tensor] = list(self._model.parameters())
        else:
            full = [p for g in self.param_groups for p in g["params"]]
        positions = [k for k, p in enumerate(full) if id(p) in mine and p.requires_grad]
        return full, [full[k] for k in positions], positions

    @property
    def numel(self) -> int:
        """Number of parameter elements that move (optimised and requiring gradients)."""
        return sum(p.numel() for p in self._coordinates()[1])

    @property
    def _anchor(self) -> Tensor:
        """The parameter whose ``state`` entry holds the optimiser's global state."""
        return self.param_groups[0]["params"][0]

    def _resolved_solver(self, numel: int | None = None) -> str:
        solver = self._hp("solver")
        numel = self.numel if numel is None else numel
        if solver != "auto":
            return solver
        return "dense" if numel <= self._hp("dense_max") else "cg"

    @staticmethod
    def _flat_grad(params: list[Tensor]) -> Tensor:
        grads = []
        for p in params:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            if g.is_sparse:
                raise UnsupportedError("NaturalGradient does not support sparse gradients")
            grads.append(g)
        g = parameters_to_vector(grads)
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError("the gradient has non-finite entries (NaN or inf); check the loss")
        return g

    def _per_element(self, key: str, params: list[Tensor], like: Tensor) -> Tensor:
        by_param = {id(p): group[key] for group in self.param_groups for p in group["params"]}
        return torch.cat([torch.full((p.numel(),), by_param[id(p)], dtype=like.dtype, device=like.device)
                          for p in params])

    def _damping_vector(self, params: list[Tensor], like: Tensor) -> Tensor | float:
        """Per-element damping in curvature order (a float when all groups agree)."""
        values = {group["damping"] for group in self.param_groups}
        if len(values) == 1:
            return float(values.pop())
        return self._per_element("damping", params, like)

    # -- the curvature -------------------------------------------------------------------------
    def _fetch_curvature(self, full: list[Tensor], positions: list[int], like: Tensor, solver: str,
                         inputs: Tensor | None, targets: Tensor | None) -> Any:
        n_full = sum(p.numel() for p in full)
        if self._curvature_fn is not None:
            curvature = self._curvature_fn()
            layout = None
        else:
            curvature, layout = self._model_curvature(solver, n_full, inputs, targets)
        if isinstance(curvature, Tensor):
            if curvature.shape != (n_full, n_full):
                raise ShapeError(
                    f"the Fisher must be a ({n_full}, {n_full}) matrix for {n_full} parameters, "
                    f"got shape {tuple(curvature.shape)}"
                )
            curvature = curvature.to(dtype=like.dtype, device=like.device)
        elif not hasattr(curvature, "mv"):
            raise ArgumentTypeError(f"curvature must be a tensor or have an mv method, got {type(curvature).__name__}")
        if len(positions) == len(full):
            return curvature
        offsets = [0]
        for p in full:
            offsets.append(offsets[-1] + p.numel())
        idx = torch.cat([torch.arange(offsets[k], offsets[k + 1]) for k in positions]).to(like.device)
        block = _Block(curvature, idx, n_full, positions, layout)
        return block.to_dense() if isinstance(curvature, Tensor) else block

    def _model_curvature(self, solver: str, n_full: int, inputs: Tensor | None,
                         targets: Tensor | None) -> tuple[Any, Any]:
        from ..curvature import fisher  # optim depends on curvature, never the reverse

        x = inputs if inputs is not None else self._inputs
        if x is None:
            raise InvalidArgumentError("NaturalGradient(model=...) needs a batch for the Fisher: pass inputs= to "
                                       "step() (or a default inputs= to the constructor)")
        batched = not isinstance(x, Tensor)
        y = targets if targets is not None else (None if batched else self._targets)
        if batched and y is not None:
            raise InvalidArgumentError("targets must be None when inputs is a DataLoader or an iterable of batches; "
                                       "let each batch be an (inputs, targets) pair instead")
        if self._kind == "empirical" and y is None and not batched:
            raise InvalidArgumentError('kind="empirical" needs targets: pass targets= to step() or the constructor')
        representation = self._representation
        if representation is None:
            representation = "dense" if solver == "dense" else "matrix_free"
        assert self._model is not None
        assert self._likelihood is not None  # checked in the constructor
        if self.distributed:
            from ..curvature.distributed import fisher as distributed_fisher

            curvature = distributed_fisher(self._model, x, likelihood=self._likelihood, kind=self._kind, targets=y,
                                           representation=representation, n_samples=self._n_samples,
                                           sigma=self._sigma, generator=self._generator, group=self.process_group)
        else:
            curvature = fisher(self._model, x, likelihood=self._likelihood, kind=self._kind, targets=y,
                               representation=representation, n_samples=self._n_samples, sigma=self._sigma,
                               generator=self._generator)
        return curvature, curvature.layout

    def _mv(self, curvature: Any, v: Tensor) -> Tensor:
        if isinstance(curvature, Tensor):
            out = curvature @ v
        else:  # a matrix-free product may differentiate through the model: step() runs under no_grad
            with torch.enable_grad():
                out = curvature.mv(v)
            out = out.detach()
        if out.shape != v.shape:
            raise ShapeError(
                f"the Fisher-vector product has shape {tuple(out.shape)}, expected ({v.numel()},): "
                "the curvature does not match the optimiser's parameters"
            )
        return out

    def _dense(self, curvature: Any, like: Tensor) -> Tensor:
        dense = curvature if isinstance(curvature, Tensor) else curvature.to_dense()
        n = like.numel()
        if dense.shape != (n, n):
            raise ShapeError(
                f"the Fisher must be a ({n}, {n}) matrix for {n} parameters, got shape {tuple(dense.shape)}"
            )
        return dense.to(dtype=like.dtype, device=like.device)

    def _dense_solve(self, fisher: Tensor, g: Tensor, damping: Tensor | float, stamp: Any) -> Tensor:
        key = (stamp, damping if isinstance(damping, float) else tuple(damping.tolist()))
        if self._factor is None or self._factor[0] != key:
            lam = torch.broadcast_to(torch.as_tensor(damping, dtype=g.dtype, device=g.device), g.shape)
            a = fisher + torch.diag(lam)
            a = 0.5 * (a + a.T)
            undamped = damping == 0.0 if isinstance(damping, float) else not bool(damping.any())
            chol, info = torch.linalg.cholesky_ex(a)
            # An undamped Fisher is singular whenever the model has redundant directions (softmax
            # shift, more parameters than N(K-1)); Cholesky may still "succeed" on round-off
            # pivots, so without damping use the pseudo-inverse (minimum-norm direction).
            self._factor_is_chol = int(info) == 0 and not undamped
            self._factor = (key, chol if self._factor_is_chol else torch.linalg.pinv(a, hermitian=True))
        factor = self._factor[1]
        if self._factor_is_chol:
            return torch.cholesky_solve(g.unsqueeze(1), factor).squeeze(1)
        return factor @ g  # singular undamped Fisher: minimum-norm (pseudo-inverse) direction

    # -- torch.optim protocol ------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the optimiser; cached non-dense curvature is dropped and recomputed next step.

        The hyper-parameters of the saved ``param_groups`` win over the constructor's, as for any
        torch optimiser; a state saved before they lived in the groups takes the constructor's.
        """
        state_dict = dict(state_dict)
        groups = [dict(g) for g in state_dict["param_groups"]]
        for g in groups:
            for key in _MODEL_WIDE:
                g.setdefault(key, self.defaults[key])
            _check_group(g)
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
        self._curvature = None
        self._factor = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, inputs: Any = None,
             targets: Tensor | None = None) -> Any:
        """Take one natural-gradient step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model, calls ``backward`` and returns the loss (it should zero the
            gradients first). Without it the parameters' current ``.grad`` is used.
        inputs : Tensor, DataLoader or iterable of batches, optional
            The batch at which the model's Fisher is computed on this step (``model`` mode; the
            constructor's ``inputs`` when omitted), or a ``DataLoader`` / iterable of input batches
            or ``(inputs, targets)`` pairs, over which :func:`fisherbook.curvature.fisher` streams
            the exact mean. Used on the steps that refresh the curvature (every
            ``update_every``-th).
        targets : Tensor, optional
            The batch's targets, for ``kind="empirical"``.

        Returns
        -------
        Any
            The closure's loss, or ``None``.
        """
        if inputs is not None:
            if self._model is None:
                raise InvalidArgumentError("inputs= is for NaturalGradient(model=...); curvature_fn takes no batch")
            inputs = _data(inputs, "inputs")
        if targets is not None:
            targets = _batch(targets, "targets")
        adapt = self._hp("adapt_damping")
        if adapt and closure is None:
            raise InvalidArgumentError("adapt_damping=True compares the loss before and after the step: pass a closure "
                                       "to step()")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        full, active, positions = self._coordinates()
        if not active:
            return loss
        g = self._flat_grad(active)
        state = self.state[self._anchor]
        step = int(state.get("step", 0))
        solver = self._resolved_solver(g.numel())

        refresh = (step % self._hp("update_every") == 0 or "curvature_step" not in state
                   or state.get("coordinates") != positions)
        if solver == "dense":
            if refresh or "fisher" not in state:
                with torch.enable_grad():
                    curvature = self._fetch_curvature(full, positions, g, solver, inputs, targets)
                    state["fisher"] = self._dense(curvature, g)
                state["curvature_step"] = step
            curvature = state["fisher"]
        else:
            if refresh or self._curvature is None:
                with torch.enable_grad():
                    self._curvature = self._fetch_curvature(full, positions, g, solver, inputs, targets)
                state["curvature_step"] = step
            curvature = self._curvature
        state["coordinates"] = positions

        damping = self._damping_vector(active, g)
        if solver == "dense":
            direction = self._dense_solve(curvature, g, damping, (state["curvature_step"], tuple(positions)))
        elif solver == "cg":
            result = conjugate_gradient(
                lambda v: self._mv(curvature, v), g, damping=damping, max_iter=self._hp("cg_max_iter"),
                tol=self._hp("cg_tol"),
            )
            direction = result.solution
            state["cg_iterations"] = result.iterations
            state["cg_relative_residual"] = result.residual_norms[-1] / max(result.residual_norms[0], 1e-300)
        else:  # "solve"
            if not isinstance(damping, float):
                raise InvalidArgumentError('solver="solve" needs the same damping in every parameter group')
            if isinstance(curvature, Tensor):
                direction = self._dense_solve(curvature, g, damping, (state["curvature_step"], tuple(positions)))
            else:
                if not hasattr(curvature, "solve"):
                    raise ArgumentTypeError(
                        f'solver="solve" needs a curvature with a solve method, got {type(curvature).__name__}')
                with torch.enable_grad():
                    direction = curvature.solve(g, damping).detach()
                if direction.shape != g.shape:
                    raise ShapeError(
                        f"curvature.solve returned shape {tuple(direction.shape)}, expected ({g.numel()},)"
                    )

        delta = -self._per_element("lr", active, g) * direction
        scale = 1.0
        max_kl = self._hp("max_kl")
        if max_kl is not None:
            kl = 0.5 * float(torch.dot(delta, self._mv(curvature, delta)))
            if kl > max_kl:
                scale = math.sqrt(max_kl / kl)
                delta = delta * scale
            state["kl"] = kl * scale**2
        state["scale"] = scale

        for p, d in zip(active, torch.split(delta, [p.numel() for p in active])):
            p.add_(d.view_as(p))
        state["step"] = step + 1
        if adapt and not self._levenberg_marquardt(closure, loss, g, delta, curvature, state):
            for p, d in zip(active, torch.split(delta, [p.numel() for p in active])):
                p.sub_(d.view_as(p))  # a step that raised the loss is undone (the trust region shrinks)
        return loss

    def _levenberg_marquardt(self, closure: Any, loss: Any, g: Tensor, delta: Tensor, curvature: Any,
                             state: dict[str, Any]) -> bool:
        r"""The reduction-ratio rule: compare the loss change with the quadratic model's prediction
        :math:`q(\Delta) = g^\top\Delta + \frac12\Delta^\top F\Delta` and rescale every group's damping."""
        if not isinstance(loss, Tensor | float | int):
            raise ArgumentTypeError(f"adapt_damping=True needs a closure returning the loss, got {type(loss).__name__}")
        with torch.enable_grad():
            after = closure()
        predicted = float(torch.dot(g, delta)) + 0.5 * float(torch.dot(delta, self._mv(curvature, delta)))
        value = lambda v: float(v.detach()) if isinstance(v, Tensor) else float(v)  # noqa: E731
        actual = value(after) - value(loss)
        state["loss_after"] = value(after)
        if not predicted < 0.0:  # a zero gradient: no prediction to test
            state["rho"] = float("nan")
            state["accepted"] = True
            return True
        rho = actual / predicted if math.isfinite(actual) else -math.inf
        state["rho"] = rho
        factor = self._hp("lm_factor")
        scale = 1.0 / factor if rho > 0.75 else factor if rho < 0.25 else 1.0
        if scale != 1.0:
            for group in self.param_groups:
                group["damping"] = group["damping"] * scale
            self._factor = None
        state["accepted"] = rho > 0.0
        return state["accepted"]


def natural_gradient_path(
    loss: Callable[[Tensor], Tensor],
    theta0: Tensor,
    *,
    lr: float,
    n_steps: int,
    fisher: Callable[[Tensor], Tensor] | None = None,
    damping: float = 0.0,
) -> Tensor:
    r"""Iterates of (natural) gradient descent on a parameter vector.

    With ``fisher`` given the update is
    :math:`\theta_{t+1} = \theta_t - \eta\, (F(\theta_t) + \lambda I)^{-1} \nabla L(\theta_t)`;
    without it, plain gradient descent :math:`\theta_{t+1} = \theta_t - \eta \nabla L(\theta_t)`.
    Gradients come from :func:`torch.func.grad`, so ``loss`` must be a torch function of a 1-D
    tensor returning a scalar.

    Parameters
    ----------
    loss : callable
        :math:`L(\theta)`, a scalar tensor.
    theta0 : Tensor
        Starting point, 1-D floating point.
    lr : float
        Step size :math:`\eta > 0`.
    n_steps : int
        Number of updates (>= 0).
    fisher : callable, optional
        :math:`F(\theta)`, a ``(k, k)`` tensor for ``theta`` of length ``k``.
    damping : float
        Tikhonov damping :math:`\lambda \ge 0` (natural gradient only).

    Returns
    -------
    Tensor
        The path, shape ``(n_steps + 1, k)``, starting at ``theta0``.

    Raises
    ------
    ValueError
        If ``theta0`` is not 1-D, ``lr`` is not positive, ``n_steps`` is negative, ``damping`` is
        negative, ``fisher`` returns the wrong shape, or an iterate becomes non-finite.
    TypeError
        If ``theta0`` is not a floating-point tensor.

    Examples
    --------
    Fitting a Bernoulli probability to a sample mean of 0.8 in the logit parameterisation: the
    gradient at logit 0 is :math:`0.5 - 0.8` and the Fisher of the logit is :math:`p(1-p) = 1/4`,
    so one unit natural-gradient step goes to logit :math:`0.3 / 0.25 = 1.2`.

    >>> import torch
    >>> loss = lambda z: -(0.8 * torch.nn.functional.logsigmoid(z) + 0.2 * torch.nn.functional.logsigmoid(-z)).sum()
    >>> fisher = lambda z: torch.diag(torch.sigmoid(z) * torch.sigmoid(-z))
    >>> path = natural_gradient_path(loss, torch.zeros(1, dtype=torch.float64), lr=1.0, n_steps=1, fisher=fisher)
    >>> path[1]
    tensor([1.2000], dtype=torch.float64)
    """
    if not isinstance(theta0, Tensor) or not theta0.is_floating_point():
        raise TypeError(f"theta0 must be a floating-point torch.Tensor, got {type(theta0).__name__}")
    if theta0.dim() != 1:
        raise ValueError(f"theta0 must be 1-D, got shape {tuple(theta0.shape)}")
    lr = _check_nonneg("lr", lr, allow_zero=False)
    damping = _check_nonneg("damping", damping)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    grad = torch.func.grad(loss)
    k = theta0.numel()
    eye = torch.eye(k, dtype=theta0.dtype, device=theta0.device)
    path = [theta0.detach().clone()]
    theta = path[0]
    for _ in range(n_steps):
        g = grad(theta)
        if fisher is not None:
            f = fisher(theta)
            if f.shape != (k, k):
                raise ValueError(f"fisher must return a ({k}, {k}) matrix, got shape {tuple(f.shape)}")
            g = torch.linalg.solve(f + damping * eye, g)
        theta = theta - lr * g
        if not bool(torch.isfinite(theta).all()):
            raise ValueError("the iterates became non-finite; reduce lr or add damping")
        path.append(theta.detach())
    return torch.stack(path)
