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

from ..linalg import conjugate_gradient

__all__ = ["NaturalGradient", "natural_gradient_path"]

_LIKELIHOODS = ("categorical", "bernoulli", "gaussian")
_KINDS = ("true", "mc", "empirical")
_SOLVERS = ("auto", "dense", "cg", "solve")


def _check_nonneg(name: str, value: Any, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or math.isinf(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


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
    ``fisherbook.curvature.fisher(model, inputs, likelihood, kind, ...)``. Parameters are
    flattened in the curvature's order: that of ``model.parameters()`` when ``model`` is
    given, the order of the parameter groups when ``curvature_fn`` is.

    Parameters
    ----------
    params : iterable
        Parameters or parameter-group dicts, as for any :class:`torch.optim.Optimizer`.
    lr : float
        Step size :math:`\eta \ge 0` (default 1, the Newton-like step of the natural gradient).
    damping : float
        Tikhonov damping :math:`\lambda \ge 0` added to the Fisher's diagonal.
    model : torch.nn.Module, optional
        The model whose Fisher preconditions the step; needs ``inputs`` and ``likelihood``.
        Its parameters (``model.parameters()``) must be exactly the optimiser's parameters.
    inputs : Tensor, optional
        Inputs at which the Fisher is computed (mean over examples).
    likelihood : {"categorical", "bernoulli", "gaussian"}, optional
        Output likelihood of ``model``.
    kind : {"true", "mc", "empirical"}
        Fisher kind passed to the curvature engine; ``"empirical"`` needs ``targets``.
    targets : Tensor, optional
        Targets for the empirical Fisher.
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
        Alternative to ``model``: ``curvature_fn()`` returns the Fisher at the current parameters,
        either as a dense ``(P, P)`` tensor or as an object with ``mv(v)`` (and ``to_dense()`` for
        the dense solver, ``solve(v, damping)`` for ``solver="solve"``).
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

    Raises
    ------
    ValueError
        For a negative ``lr`` or ``damping``, a non-positive ``max_kl``, an unknown ``solver``,
        ``likelihood`` or ``kind``, both or neither of ``model`` and ``curvature_fn``, a ``model``
        whose parameters differ from ``params``, and (at :meth:`step`) a Fisher whose
        shape does not match the number of parameters or a non-finite gradient.

    Notes
    -----
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
    ) -> None:
        lr = _check_nonneg("lr", lr)
        damping = _check_nonneg("damping", damping)
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
        if max_kl is not None:
            max_kl = _check_nonneg("max_kl", max_kl, allow_zero=False)
        self.update_every = _check_positive_int("update_every", update_every)
        self.cg_max_iter = _check_positive_int("cg_max_iter", cg_max_iter)
        self.cg_tol = _check_nonneg("cg_tol", cg_tol)
        self.dense_max = _check_positive_int("dense_max", dense_max)
        self.max_kl = max_kl
        super().__init__(params, {"lr": lr, "damping": damping})
        for group in self.param_groups:  # groups given as dicts may override the defaults
            group["lr"] = _check_nonneg("lr", group["lr"])
            group["damping"] = _check_nonneg("damping", group["damping"])
        group_params = [p for group in self.param_groups for p in group["params"]]
        self.numel = sum(p.numel() for p in group_params)

        if (model is None) == (curvature_fn is None):
            raise ValueError("give exactly one of model (with inputs and likelihood) or curvature_fn")
        if curvature_fn is not None:
            if not callable(curvature_fn):
                raise TypeError(f"curvature_fn must be callable, got {type(curvature_fn).__name__}")
            self._order = group_params
            self._curvature_fn: Callable[[], Any] = curvature_fn
        else:
            if not isinstance(model, nn.Module):
                raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            if not isinstance(inputs, Tensor):
                raise ValueError("model needs inputs (a tensor) to compute its Fisher")
            if likelihood not in _LIKELIHOODS:
                raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
            if kind not in _KINDS:
                raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
            if kind == "empirical" and targets is None:
                raise ValueError('kind="empirical" needs targets')
            model_params = list(model.parameters())  # the curvature engine's order and coverage
            if {id(p) for p in model_params} != {id(p) for p in group_params} or len(model_params) != len(
                group_params
            ):
                raise ValueError(
                    "params must be exactly the parameters of model, model.parameters() "
                    f"({len(model_params)} tensors, {sum(p.numel() for p in model_params)} elements); "
                    f"got {len(group_params)} tensors, {self.numel} elements"
                )
            self._order = model_params
            if representation is None:
                dense = solver == "dense" or (solver == "auto" and self.numel <= self.dense_max)
                if solver == "solve":
                    raise ValueError('solver="solve" needs a representation, e.g. "diagonal" or "kfac"')
                representation = "dense" if dense else "matrix_free"

            def from_model() -> Any:
                from ..curvature import fisher  # optim depends on curvature, never the reverse

                return fisher(
                    model,
                    inputs,
                    likelihood=likelihood,
                    kind=kind,
                    targets=targets,
                    representation=representation,
                    n_samples=n_samples,
                    sigma=sigma,
                    generator=generator,
                )

            self._curvature_fn = from_model
        self.solver = solver
        self._curvature: Any = None
        self._factor: tuple[Any, Tensor] | None = None
        self._factor_is_chol = True

    # -- helpers -------------------------------------------------------------------------------
    @property
    def _anchor(self) -> Tensor:
        """The parameter whose ``state`` entry holds the optimiser's global state."""
        return self.param_groups[0]["params"][0]

    def _resolved_solver(self) -> str:
        if self.solver != "auto":
            return self.solver
        return "dense" if self.numel <= self.dense_max else "cg"

    def _flat_grad(self) -> Tensor:
        parts = []
        for p in self._order:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            if g.is_sparse:
                raise ValueError("NaturalGradient does not support sparse gradients")
            parts.append(g.reshape(-1))
        g = torch.cat(parts)
        if not bool(torch.isfinite(g).all()):
            raise ValueError("the gradient has non-finite entries (NaN or inf); check the loss")
        return g

    def _damping_vector(self, like: Tensor) -> Tensor | float:
        """Per-element damping in curvature order (a float when all groups agree)."""
        values = {group["damping"] for group in self.param_groups}
        if len(values) == 1:
            return float(values.pop())
        by_param = {id(p): group["damping"] for group in self.param_groups for p in group["params"]}
        return torch.cat([torch.full((p.numel(),), by_param[id(p)], dtype=like.dtype, device=like.device) for p in self._order])

    def _lr_vector(self, like: Tensor) -> Tensor:
        by_param = {id(p): group["lr"] for group in self.param_groups for p in group["params"]}
        return torch.cat([torch.full((p.numel(),), by_param[id(p)], dtype=like.dtype, device=like.device) for p in self._order])

    def _fetch_curvature(self, like: Tensor) -> Any:
        curvature = self._curvature_fn()
        if isinstance(curvature, Tensor):
            if curvature.shape != (self.numel, self.numel):
                raise ValueError(
                    f"the Fisher must be a ({self.numel}, {self.numel}) matrix for {self.numel} parameters, "
                    f"got shape {tuple(curvature.shape)}"
                )
            return curvature.to(dtype=like.dtype, device=like.device)
        if not hasattr(curvature, "mv"):
            raise TypeError(f"curvature must be a tensor or have an mv method, got {type(curvature).__name__}")
        return curvature

    def _mv(self, curvature: Any, v: Tensor) -> Tensor:
        if isinstance(curvature, Tensor):
            out = curvature @ v
        else:  # a matrix-free product may differentiate through the model: step() runs under no_grad
            with torch.enable_grad():
                out = curvature.mv(v)
            out = out.detach()
        if out.shape != v.shape:
            raise ValueError(
                f"the Fisher-vector product has shape {tuple(out.shape)}, expected ({self.numel},): "
                "the curvature does not match the optimiser's parameters"
            )
        return out

    def _dense(self, curvature: Any, like: Tensor) -> Tensor:
        dense = curvature if isinstance(curvature, Tensor) else curvature.to_dense()
        if dense.shape != (self.numel, self.numel):
            raise ValueError(
                f"the Fisher must be a ({self.numel}, {self.numel}) matrix for {self.numel} parameters, "
                f"got shape {tuple(dense.shape)}"
            )
        return dense.to(dtype=like.dtype, device=like.device)

    def _dense_solve(self, fisher: Tensor, g: Tensor, damping: Tensor | float, stamp: Any) -> Tensor:
        key = (stamp, damping if isinstance(damping, float) else tuple(damping.tolist()))
        if self._factor is None or self._factor[0] != key:
            a = fisher + torch.diag(torch.broadcast_to(torch.as_tensor(damping, dtype=g.dtype, device=g.device), g.shape))
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
        """Restore the optimiser; cached non-dense curvature is dropped and recomputed next step."""
        super().load_state_dict(state_dict)
        self._curvature = None
        self._factor = None
        for group in self.param_groups:
            _check_nonneg("lr", group["lr"])
            _check_nonneg("damping", group["damping"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one natural-gradient step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model, calls ``backward`` and returns the loss (it should zero the
            gradients first). Without it the parameters' current ``.grad`` is used.

        Returns
        -------
        Any
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        g = self._flat_grad()
        state = self.state[self._anchor]
        step = int(state.get("step", 0))
        solver = self._resolved_solver()

        refresh = step % self.update_every == 0 or "curvature_step" not in state
        if solver == "dense":
            if refresh or "fisher" not in state:
                with torch.enable_grad():
                    state["fisher"] = self._dense(self._fetch_curvature(g), g)
                state["curvature_step"] = step
            curvature = state["fisher"]
        else:
            if refresh or self._curvature is None:
                with torch.enable_grad():
                    self._curvature = self._fetch_curvature(g)
                state["curvature_step"] = step
            curvature = self._curvature

        damping = self._damping_vector(g)
        if solver == "dense":
            direction = self._dense_solve(curvature, g, damping, state["curvature_step"])
        elif solver == "cg":
            result = conjugate_gradient(
                lambda v: self._mv(curvature, v), g, damping=damping, max_iter=self.cg_max_iter, tol=self.cg_tol
            )
            direction = result.solution
            state["cg_iterations"] = result.iterations
            state["cg_relative_residual"] = result.residual_norms[-1] / max(result.residual_norms[0], 1e-300)
        else:  # "solve"
            if not isinstance(damping, float):
                raise ValueError('solver="solve" needs the same damping in every parameter group')
            if isinstance(curvature, Tensor):
                direction = self._dense_solve(curvature, g, damping, state["curvature_step"])
            else:
                if not hasattr(curvature, "solve"):
                    raise TypeError(f'solver="solve" needs a curvature with a solve method, got {type(curvature).__name__}')
                with torch.enable_grad():
                    direction = curvature.solve(g, damping).detach()
                if direction.shape != g.shape:
                    raise ValueError(
                        f"curvature.solve returned shape {tuple(direction.shape)}, expected ({self.numel},)"
                    )

        delta = -self._lr_vector(g) * direction
        scale = 1.0
        if self.max_kl is not None:
            kl = 0.5 * float(torch.dot(delta, self._mv(curvature, delta)))
            if kl > self.max_kl:
                scale = math.sqrt(self.max_kl / kl)
                delta = delta * scale
            state["kl"] = kl * scale**2
        state["scale"] = scale

        offset = 0
        for p in self._order:
            n = p.numel()
            p.add_(delta[offset : offset + n].view_as(p))
            offset += n
        state["step"] = step + 1
        return loss


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
