r"""Influence functions of training points (Koh & Liang 2017), with a leave-one-out reference.

A model with parameters :math:`\theta` (all trainable parameters of a ``torch.nn.Module``,
flattened in ``model.parameters()`` order) is fitted by minimising the regularised total loss

.. math::

   J(\theta) = \sum_{i=1}^n \ell(f(x_i; \theta), y_i) + \tfrac{\lambda}{2} \lVert\theta\rVert^2 .

Removing training point :math:`i` changes the minimiser to :math:`\hat\theta_{-i}`, the
minimiser of :math:`J - \ell_i`. One Newton step from :math:`\hat\theta` predicts
:math:`\hat\theta_{-i} - \hat\theta \approx H^{-1} \nabla\ell_i(\hat\theta)` with
:math:`H = \nabla^2 J(\hat\theta)`, so a test loss :math:`L_{\text{test}}` changes by

.. math::

   \Delta_i \approx \nabla L_{\text{test}}(\hat\theta)^\top H^{-1} \nabla \ell_i(\hat\theta),

which is :math:`-\tfrac1n` times Koh and Liang's :math:`\mathcal I_{\text{up,loss}}` when
their loss is the mean. :func:`influence_scores` computes :math:`\Delta_i` for every training point with
the exact Hessian, the generalised Gauss–Newton matrix (the Fisher information for the
``"categorical"``, ``"bernoulli"`` and ``"gaussian"`` losses) or the empirical Fisher in place of
:math:`H`; :func:`leave_one_out` computes the actual change by retraining, warm-started Newton
iterations from :math:`\hat\theta` run to convergence, which is cheap for small convex models.

All computations follow the dtype and device of the model; use float64 for the leave-one-out
comparison, since the differences of interest are small.

The named losses are the negative log-likelihoods of ``fisherbook.curvature.likelihoods``, the
generalised Gauss–Newton matrix and the per-example gradients come from
:func:`fisherbook.curvature.fisher` and :func:`fisherbook.curvature.per_example_grads` (a loss
given as a callable enters them through a private likelihood adapter), and the parameters are
flattened by ``fisherbook.curvature.per_example.ParamLayout``. Bad arguments raise the
:mod:`fisherbook.errors` classes; a model in training mode with dropout gets a
:class:`~fisherbook.errors.ModelModeWarning`, one with batch normalisation in training mode is
refused (:class:`~fisherbook.errors.UnsupportedError`): call ``model.eval()`` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, vmap
from torch.nn.utils import parameters_to_vector

from .. import curvature as _curvature_core
from .._numerics import chord_newton, newton
from .._validate import check_finite, check_int, check_option, check_real
from ..curvature.batches import as_batches
from ..curvature.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from ..curvature.per_example import ParamLayout
from ..errors import (
    ArgumentTypeError,
    ConvergenceError,
    InvalidArgumentError,
    NotPositiveDefiniteError,
    ShapeError,
)
from ._checks import check_model, check_model_mode, check_outputs, check_pair, check_targets

__all__ = [
    "per_example_loss",
    "objective_curvature",
    "fit_newton",
    "influence_scores",
    "leave_one_out",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
_CURVATURES = ("hessian", "ggn", "empirical")


class _NamedLoss:
    """Per-example negative log-likelihood of a ``fisherbook.curvature.likelihoods`` likelihood.

    Shape checks only (they are static, so the loss can run under ``torch.func.vmap``); target
    values are checked once by the public functions, before any transform.
    """

    def __init__(self, likelihood: Likelihood) -> None:
        self.likelihood = likelihood
        self.name = likelihood.name
        # the Gaussian's normalising constant per output, dropped so the loss is 1/2 ||f - y||^2
        sigma = getattr(likelihood, "sigma", 1.0)
        self._log_norm = math.log(sigma) + 0.5 * math.log(2 * math.pi)

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if not isinstance(outputs, Tensor) or not isinstance(targets, Tensor):
            raise ArgumentTypeError("outputs and targets must be torch tensors")
        if outputs.ndim == 0:
            raise ShapeError("outputs must have the examples along dim 0, got a 0-dimensional tensor")
        n = outputs.shape[0]
        f = outputs.reshape(n, -1)
        if self.name == "categorical":
            if targets.numel() != n:
                raise ShapeError(f"targets for loss 'categorical' must hold one class index per example ({n}), "
                                 f"got shape {tuple(targets.shape)}")
            t = targets.reshape(n)
        else:
            if targets.numel() != f.numel():
                raise ShapeError(f"targets for loss {self.name!r} must have the outputs' shape {tuple(outputs.shape)}, "
                                 f"got {tuple(targets.shape)}")
            t = targets.reshape(f.shape).to(f.dtype)
        nll = -self.likelihood.log_prob(f, t)
        if self.name == "gaussian":
            nll = nll - f.shape[1] * self._log_norm
        return nll


def per_example_loss(name: str) -> LossFn:
    r"""The per-example negative log-likelihood for a named likelihood.

    ``"categorical"``: :math:`-\log\operatorname{softmax}(f)_y` (cross-entropy on logits,
    integer targets); ``"bernoulli"``: binary cross-entropy on each logit, targets in
    :math:`\{0, 1\}` shaped like the outputs; ``"gaussian"``: :math:`\tfrac12 \lVert f - y\rVert^2`
    (unit noise, constant dropped). Each returns one loss per example, shape ``(n,)``; each is
    :math:`-\log p(y \mid f)` of the likelihood of the same name in
    ``fisherbook.curvature.likelihoods`` (less the Gaussian's constant).

    Parameters
    ----------
    name : str
        One of ``"categorical"``, ``"bernoulli"``, ``"gaussian"``.

    Returns
    -------
    Callable
        ``loss(outputs, targets) -> Tensor`` of shape ``(n,)``.

    Raises
    ------
    InvalidArgumentError
        If ``name`` is not one of the three.

    Examples
    --------
    >>> import torch
    >>> loss = per_example_loss("categorical")
    >>> loss(torch.zeros(2, 4), torch.tensor([0, 3]))
    tensor([1.3863, 1.3863])
    """
    name = check_option(name, "loss", LIKELIHOODS)
    return _NamedLoss(get_likelihood(name))


class _CallableLoss(Likelihood):
    r"""A loss given as a callable, seen by the curvature core as a likelihood :math:`p \propto e^{-\ell}`.

    Its output-space score is :math:`-\nabla_f \ell` and its "Fisher" factor is a square root of
    the output Hessian :math:`\nabla_f^2 \ell` (so the core's ``kind="true"`` Fisher is the
    generalised Gauss–Newton matrix of the loss). Only what the core calls is implemented.
    """

    name = "callable loss"

    def __init__(self, loss: LossFn, targets: Tensor, output_shape: tuple[int, ...]) -> None:
        self.loss, self.targets, self.output_shape = loss, targets, output_shape

    def _single(self, o: Tensor, t: Tensor) -> Tensor:
        return self.loss(o.reshape((1, *self.output_shape)), t.unsqueeze(0)).sum()

    def check_targets(self, f: Tensor, targets: Tensor) -> Tensor:
        return targets

    def score(self, f: Tensor, y: Tensor) -> Tensor:
        return -vmap(grad(self._single))(f, y[0]).unsqueeze(0)

    def sqrt_fisher(self, f: Tensor) -> Tensor:
        h = vmap(hessian(self._single))(f, self.targets)  # (N, K, K)
        h = 0.5 * (h + h.transpose(1, 2))
        evals, evecs = torch.linalg.eigh(h)
        scale = evals.abs().amax().clamp_min(torch.finfo(h.dtype).tiny)
        if float(evals.min()) < -1e-8 * float(scale):
            raise NotPositiveDefiniteError(
                "kind='ggn' needs a loss that is convex in the model outputs (a positive semi-definite output "
                f"Hessian); the loss's output Hessian has eigenvalue {float(evals.min()):.3g}. Use kind='hessian'")
        return evecs * evals.clamp_min(0).sqrt().unsqueeze(1)


class _Problem:
    """A model and a loss as functions of the flat vector of the model's trainable parameters."""

    def __init__(self, model: Any, loss: Any) -> None:
        check_model(model)
        self.likelihood: str | None
        if isinstance(loss, str):
            self.loss: LossFn = per_example_loss(loss)
            self.likelihood = loss
        elif callable(loss):
            self.loss, self.likelihood = loss, None
        else:
            raise ArgumentTypeError(f"loss must be one of {LIKELIHOODS} or a callable loss(outputs, targets), got "
                                    f"{type(loss).__name__}")
        self.model = model
        self.params = list(model.parameters())
        self.trainable = [p.requires_grad for p in self.params]
        if not any(self.trainable):
            raise InvalidArgumentError("model has no trainable parameters (all have requires_grad=False)")
        try:
            self.layout = ParamLayout.from_model(model)
        except TypeError as err:
            raise ArgumentTypeError(str(err)) from None
        self.buffers = dict(model.named_buffers())
        full = parameters_to_vector([p.detach() for p in self.params])
        self.index: Tensor | None = None
        if all(self.trainable):
            self.theta0 = full
        else:
            mask = torch.cat([torch.full((p.numel(),), t, dtype=torch.bool)
                              for p, t in zip(self.params, self.trainable)])
            self.index = mask.nonzero().squeeze(1).to(full.device)
            self.base = full
            self.theta0 = full[self.index]
        check_finite(self.theta0, "model parameters")

    # -- the parameter vector -------------------------------------------------------------------
    def full(self, theta: Tensor) -> Tensor:
        """All parameters (frozen ones at their values) as one flat vector."""
        return theta if self.index is None else self.base.index_put((self.index,), theta)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        out = dict(zip(self.layout.names, self.layout.unflatten(self.full(theta))))
        out.update(self.buffers)
        return out

    def select(self, mat: Tensor, dims: Sequence[int]) -> Tensor:
        """Restrict a matrix over all parameters to the trainable ones along ``dims``."""
        if self.index is None:
            return mat
        for d in dims:
            mat = mat.index_select(d, self.index)
        return mat

    def load(self, theta: Tensor) -> None:
        with torch.no_grad():
            for p, t, trainable in zip(self.params, self.layout.unflatten(self.full(theta)), self.trainable):
                if trainable:
                    p.copy_(t)

    # -- data ----------------------------------------------------------------------------------
    def data(self, pair: Any, name: str) -> tuple[Tensor, Tensor]:
        """Checked ``(inputs, targets)`` on the model's device (inputs in its dtype)."""
        x, y = check_pair(pair, name)
        if x.is_floating_point():
            x = x.to(dtype=self.theta0.dtype, device=self.theta0.device)
        else:
            x = x.to(device=self.theta0.device)
        y = y.to(device=self.theta0.device)
        with torch.no_grad():
            out = check_outputs(self.outputs(self.theta0, x), x.shape[0])
        if self.likelihood is not None:
            check_targets(self.likelihood, out, y, f"{name} targets")
        return x, y

    def batches(self, data: Any, name: str) -> Callable[[], Iterator[tuple[Tensor, Tensor]]]:
        """A re-iterable source of checked ``(inputs, targets)`` batches.

        ``data`` is a pair ``(inputs, targets)`` of tensors (one batch), or a ``DataLoader`` or any
        iterable of such pairs (a one-shot iterator is stored on its first pass, since the callers
        read the data more than once). Each call of the returned function starts a new pass.
        """
        if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], Tensor):
            pair = self.data(data, name)
            return lambda: iter([pair])
        if isinstance(data, Tensor):
            raise ArgumentTypeError(f"{name} must be a pair (inputs, targets) of tensors or an iterable of such "
                                    "batches, got a single tensor")
        source = as_batches(data, None, store=True, progress=False)

        def passes() -> Iterator[tuple[Tensor, Tensor]]:
            for index, (x, y) in enumerate(source):
                where = f"batch {index} of {name}"
                if y is None:
                    raise ShapeError(f"{where} has no targets: batches must be (inputs, targets) pairs")
                yield self.data((x, y), where)

        return passes

    # -- losses and their derivatives ----------------------------------------------------------
    def outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self.unflatten(theta), (x,))

    def losses(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self.outputs(theta, x), y)

    def single_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.losses(theta, x.unsqueeze(0), y.unsqueeze(0)).sum()

    def _core_likelihood(self, x: Tensor, y: Tensor) -> str | Likelihood:
        if self.likelihood is not None:
            return self.likelihood
        with torch.no_grad():
            shape = tuple(self.model(x[:1]).shape[1:])
        return _CallableLoss(self.loss, y, shape)

    def loss_grads(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Per-example loss gradients :math:`\nabla_\theta \ell_i` at the model's parameters, ``(n, P)``."""
        G = _curvature_core.per_example_grads(self.model, x, y, likelihood=self._core_likelihood(x, y))
        return -self.select(G.detach(), (1,))

    def ggn(self, x: Tensor, y: Tensor) -> Tensor:
        r""":math:`\sum_i J_i^\top \nabla_f^2 \ell_i J_i` at the model's parameters: :math:`n` times the
        core's true Fisher (for a callable loss, of the adapter whose factor is the output Hessian's root)."""
        F = _curvature_core.fisher(self.model, x, likelihood=self._core_likelihood(x, y), kind="true",
                                   representation="dense")
        return x.shape[0] * self.select(F.to_dense().detach(), (0, 1))

    def curvature(self, theta: Tensor, x: Tensor, y: Tensor, kind: str, l2: float) -> Tensor:
        P = theta.numel()
        eye = torch.eye(P, dtype=theta.dtype, device=theta.device)
        if kind == "hessian":
            H = _hessian(lambda t: self.losses(t, x, y).sum())(theta)
        elif kind == "ggn":
            H = self.ggn(x, y)  # only ever asked at the model's own parameters
        else:
            G = self.loss_grads(x, y)
            H = G.T @ G
        H = 0.5 * (H + H.T)
        return H.detach() + l2 * eye


def _objective_grad(
    prob: _Problem, x: Tensor, y: Tensor, l2: float, drop: int | None = None
) -> Callable[[Tensor], Tensor]:
    """Gradient of J (or of J - l_drop) by one reverse-mode pass of plain autograd."""
    weights = torch.ones(x.shape[0], dtype=prob.theta0.dtype, device=prob.theta0.device)
    if drop is not None:
        weights[drop] = 0.0

    def g(theta: Tensor) -> Tensor:
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            J = (weights * prob.losses(t, x, y)).sum() + 0.5 * l2 * (t * t).sum()
            return torch.autograd.grad(J, t)[0].detach()

    return g


def _check_kind(kind: Any) -> str:
    return check_option(kind, "kind", _CURVATURES)


def objective_curvature(
    model: nn.Module,
    loss: str | LossFn,
    inputs: Any,
    targets: Tensor | None = None,
    *,
    kind: str = "hessian",
    l2: float = 0.0,
) -> Tensor:
    r"""Curvature of the regularised total loss :math:`J` at the model's current parameters.

    ``kind="hessian"``: :math:`\nabla^2 J = \sum_i \nabla^2\ell_i + \lambda I`;
    ``kind="ggn"``: the generalised Gauss–Newton matrix
    :math:`\sum_i J_i^\top \nabla_f^2 \ell_i\, J_i + \lambda I` with :math:`J_i = \partial f(x_i)/\partial\theta`,
    which for the named likelihoods is :math:`n` times the Fisher information (computed as such by
    :func:`fisherbook.curvature.fisher`; a callable loss must be convex in the outputs);
    ``kind="empirical"``: :math:`\sum_i \nabla\ell_i \nabla\ell_i^\top + \lambda I` (the empirical Fisher
    times :math:`n`). For a generalised linear model with canonical link the first two coincide.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its trainable parameters, flattened in ``parameters()`` order, are :math:`\theta`.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    inputs : Tensor, torch.utils.data.DataLoader or iterable of batches
        The training inputs, ``n >= 1`` rows, finite; or a ``DataLoader`` (any iterable) of
        ``(inputs, targets)`` batches, whose curvatures are summed one batch at a time.
    targets : Tensor or None
        The targets, as the likelihood needs them; ``None`` when ``inputs`` yields batches.
    kind : str
        Which curvature: ``"hessian"``, ``"ggn"`` or ``"empirical"``.
    l2 : float
        Ridge coefficient :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor
        Symmetric ``(P, P)`` matrix in the model's dtype.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(3, 4).double()
    >>> x = torch.randn(20, 3, dtype=torch.float64); y = torch.randint(0, 4, (20,))
    >>> H = objective_curvature(model, "categorical", x, y, kind="hessian")
    >>> G = objective_curvature(model, "categorical", x, y, kind="ggn")
    >>> torch.allclose(H, G)  # canonical link: observed = expected information
    True
    """
    prob = _Problem(model, loss)
    kind = _check_kind(kind)
    l2 = check_real(l2, "l2", low=0.0)
    check_model_mode(model, "the curvature", per_example=True)
    return _summed_curvature(prob, _source(prob, inputs, targets, "inputs/targets"), kind, l2)


def _source(prob: _Problem, inputs: Any, targets: Any, name: str) -> Callable[[], Iterator[tuple[Tensor, Tensor]]]:
    """Batches from ``inputs, targets`` (tensors) or from ``inputs`` alone (a loader; targets None)."""
    if isinstance(inputs, Tensor) or targets is not None:
        return prob.batches((inputs, targets), name)
    return prob.batches(inputs, "inputs")


def _summed_curvature(prob: _Problem, batches: Callable[[], Iterator[tuple[Tensor, Tensor]]], kind: str,
                      l2: float, theta: Tensor | None = None) -> Tensor:
    r""":math:`\sum_b C_b + \lambda I` over the batches (each ``C_b`` a sum over its examples)."""
    t = prob.theta0 if theta is None else theta
    total: Tensor | None = None
    for x, y in batches():
        part = prob.curvature(t, x, y, kind, 0.0)
        total = part if total is None else total + part
        del part
    assert total is not None  # a source holds at least one batch
    return total + l2 * torch.eye(t.numel(), dtype=t.dtype, device=t.device)


def _hessian(f: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``torch.func.hessian`` (forward over reverse) that tolerates a model left in training mode
    with dropout: every tangent direction sees the same random mask (``randomness="same"``), so
    the result is the Hessian of one realisation of the loss (the mode check has warned)."""
    return jacfwd(jacrev(f), randomness="same")


def _minimise(
    prob: _Problem,
    batches: Callable[[], Iterator[tuple[Tensor, Tensor]]],
    l2: float,
    theta0: Tensor,
    tol: float,
    max_steps: int,
    drop: int | None = None,
) -> tuple[Tensor, int]:
    r"""Minimise :math:`J` (or :math:`J - \ell_{\text{drop}}`) by the shared damped Newton solver.

    The objective, its gradient and its Hessian are sums over the batches (``drop`` indexes the
    one batch of a tensor pair). :func:`fisherbook._numerics.newton` stops on the largest gradient
    component; asking it for ``tol / sqrt(P)`` makes the stopping rule
    :math:`\lVert\nabla J\rVert_2 \le` ``tol`` that :func:`fit_newton` documents hold at the
    returned point.
    """

    def weights(x: Tensor) -> Tensor:
        w = torch.ones(x.shape[0], dtype=theta0.dtype, device=theta0.device)
        if drop is not None:
            w[drop] = 0.0
        return w

    def value(theta: Tensor) -> Tensor:
        total = sum(((weights(x) * prob.losses(theta, x, y)).sum().detach() for x, y in batches()),
                    torch.zeros((), dtype=theta0.dtype, device=theta0.device))
        return total + 0.5 * l2 * (theta * theta).sum()

    def gradient(theta: Tensor) -> Tensor:
        total = torch.zeros_like(theta0)
        for x, y in batches():
            total = total + _objective_grad(prob, x, y, 0.0, drop=drop)(theta)
        return total + l2 * theta

    def fun(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        H = _summed_curvature(prob, batches, "hessian", l2, theta)
        if drop is not None:
            ((x, y),) = list(batches())
            H = H - _hessian(prob.single_loss)(theta, x[drop], y[drop]).detach()
        return value(theta), gradient(theta), H

    if float(torch.linalg.vector_norm(gradient(theta0))) <= tol:  # the start already meets the tolerance
        return theta0, 0
    res = newton(fun, value, theta0, tol=tol / math.sqrt(theta0.numel()), max_iter=max_steps, criterion="gradient")
    gnorm = float(torch.linalg.vector_norm(res.grad))
    if not bool(res.converged) or gnorm > tol:
        raise ConvergenceError(
            f"Newton iterations did not reach gradient norm {tol:g} in {max_steps} steps "
            f"(last {gnorm:.3g}); raise max_steps or tol, or l2 if the objective is not strictly convex"
        )
    return res.x, res.n_iter


def _check_tol(tol: Any, max_steps: Any) -> tuple[float, int]:
    return check_real(tol, "tol", low=0.0, open_low=True), check_int(max_steps, "max_steps", minimum=1)


def fit_newton(
    model: nn.Module,
    loss: str | LossFn,
    inputs: Any,
    targets: Tensor | None = None,
    *,
    l2: float = 0.0,
    tol: float = 1e-9,
    max_steps: int = 100,
) -> int:
    r"""Minimise :math:`J(\theta) = \sum_i \ell_i(\theta) + \tfrac{\lambda}{2}\lVert\theta\rVert^2` by Newton, in place.

    Exact Hessian and the package's one damped Newton solver (Levenberg–Marquardt damping that
    is shifted past any negative curvature, steps that raise :math:`J` rejected); meant for small
    convex models (linear, logistic, softmax regression), whose minimiser :func:`influence_scores`
    and :func:`leave_one_out` need to high accuracy. Stops when
    :math:`\lVert\nabla J\rVert_2 \le` ``tol`` at a point where the Hessian is positive definite.

    Parameters
    ----------
    model : torch.nn.Module
        Model whose trainable parameters are overwritten with the minimiser.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    inputs : Tensor, torch.utils.data.DataLoader or iterable of batches
        The training inputs, ``n >= 1`` rows, finite; or a ``DataLoader`` (any iterable) of
        ``(inputs, targets)`` batches: the objective, gradient and Hessian of each Newton step are
        sums over them, one batch at a time (a one-shot iterator is stored on its first pass).
    targets : Tensor or None
        The targets; ``None`` when ``inputs`` yields batches.
    l2 : float
        Ridge coefficient :math:`\lambda \ge 0`.
    tol : float
        Gradient-norm tolerance, > 0.
    max_steps : int
        Maximum number of Newton steps, >= 1.

    Returns
    -------
    int
        The number of Newton steps taken.

    Raises
    ------
    ConvergenceError
        If the tolerance is not reached in ``max_steps`` steps, or only where the Hessian is not
        positive definite (a ``RuntimeError``; increase ``max_steps``, or ``l2``).

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(1)
    >>> model = torch.nn.Linear(1, 1).double()
    >>> steps = fit_newton(model, "gaussian", x, 3 * x + 1)
    >>> round(model.weight.item(), 6), round(model.bias.item(), 6)
    (3.0, 1.0)
    """
    prob = _Problem(model, loss)
    l2 = check_real(l2, "l2", low=0.0)
    tol, max_steps = _check_tol(tol, max_steps)
    check_model_mode(model, "the objective", per_example=True)
    theta, steps = _minimise(prob, _source(prob, inputs, targets, "inputs/targets"), l2, prob.theta0.clone(), tol,
                             max_steps)
    prob.load(theta)
    return steps


def influence_scores(
    model: nn.Module,
    loss: str | LossFn,
    train: Any,
    test: Any,
    *,
    l2: float = 0.0,
    curvature: str | Tensor = "hessian",
    damping: float = 0.0,
) -> Tensor:
    r"""Predicted change in the test loss when each training point is removed.

    .. math::

       \Delta_i = \nabla L_{\text{test}}(\hat\theta)^\top (C + \delta I)^{-1} \nabla\ell_i(\hat\theta),
       \qquad L_{\text{test}} = \frac{1}{m} \sum_{j=1}^m \ell(f(x^{\text{test}}_j; \hat\theta), y^{\text{test}}_j),

    where :math:`C` is the Hessian of :math:`J` (exact influence function), the generalised
    Gauss–Newton / Fisher matrix, or the empirical Fisher (see :func:`objective_curvature`), or
    a matrix passed in; :math:`\delta` is ``damping``. A positive :math:`\Delta_i` means the test
    loss would rise without point :math:`i` (the point is helpful). The model must be at the
    minimiser :math:`\hat\theta` of :math:`J` (for example after :func:`fit_newton`).

    Parameters
    ----------
    model : torch.nn.Module
        The fitted model.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    train, test : tuple of Tensor, torch.utils.data.DataLoader or iterable of batches
        ``(inputs, targets)`` pairs, each with at least one row, finite; or ``DataLoader`` s (any
        iterables) of such batches. The curvature is summed and the per-example training
        gradients are formed one batch at a time; the scores follow the training batches' order.
    l2 : float
        Ridge coefficient :math:`\lambda \ge 0` used in fitting.
    curvature : str or Tensor
        Which matrix :math:`C`: ``"hessian"``, ``"ggn"`` or ``"empirical"``; a tensor must be a
        finite ``(P, P)`` matrix (e.g. from the curvature engine, already including the ridge term).
    damping : float
        :math:`\delta \ge 0` added to the diagonal.

    Returns
    -------
    Tensor
        :math:`\Delta`, shape ``(n_train,)``, in the model's dtype.

    Raises
    ------
    NotPositiveDefiniteError
        If :math:`C + \delta I` is not positive definite (increase ``l2`` or ``damping``).

    Examples
    --------
    For least squares the exact influence equals leave-one-out retraining up to the leverage
    factor :math:`1/(1-h_{ii})`; the one-step prediction is close for small leverage.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(50, 2, generator=g, dtype=torch.float64); y = x @ torch.tensor([1.0, -2.0], dtype=torch.float64)
    >>> model = torch.nn.Linear(2, 1, bias=False).double()
    >>> noise = 0.1 * torch.randn(50, 1, generator=g, dtype=torch.float64)
    >>> _ = fit_newton(model, "gaussian", x, y.unsqueeze(1) + noise)
    >>> data = (x, y.unsqueeze(1))
    >>> pred = influence_scores(model, "gaussian", data, data)
    >>> pred.shape
    torch.Size([50])
    """
    prob = _Problem(model, loss)
    l2 = check_real(l2, "l2", low=0.0)
    damping = check_real(damping, "damping", low=0.0)
    if not isinstance(curvature, str | Tensor):
        raise ArgumentTypeError(f"curvature must be one of {_CURVATURES} or a tensor, got {type(curvature).__name__}")
    if isinstance(curvature, str):
        curvature = check_option(curvature, "curvature", _CURVATURES)
    check_model_mode(model, "the influence scores", per_example=True)
    train_batches = prob.batches(train, "train")
    test_batches = prob.batches(test, "test")
    theta = prob.theta0
    P = theta.numel()
    if isinstance(curvature, Tensor):
        if curvature.shape != (P, P):
            raise ShapeError(f"curvature tensor must have shape ({P}, {P}) (the trainable parameters), got "
                             f"{tuple(curvature.shape)}")
        C = check_finite(curvature.detach().to(dtype=theta.dtype, device=theta.device), "curvature")
    else:
        C = _summed_curvature(prob, train_batches, curvature, l2)
    C = C + damping * torch.eye(P, dtype=theta.dtype, device=theta.device)
    chol, info = torch.linalg.cholesky_ex(0.5 * (C + C.T))
    if int(info) != 0:
        raise NotPositiveDefiniteError("curvature (+ damping) is not positive definite; increase l2 or damping")
    # the test loss is the mean over all test examples: add each batch's summed gradient, divide once
    g_test, m = torch.zeros_like(theta), 0
    for xte, yte in test_batches():
        g_test = g_test + grad(lambda t, x=xte, y=yte: prob.losses(t, x, y).sum())(theta).detach()
        m += xte.shape[0]
    s_test = torch.cholesky_solve((g_test / m).unsqueeze(1), chol).squeeze(1)
    # one batch of per-example gradients at a time
    return torch.cat([prob.loss_grads(xtr, ytr) @ s_test for xtr, ytr in train_batches()])


def _check_indices(indices: Any, n: int) -> list[int]:
    if isinstance(indices, str | bytes):
        raise ArgumentTypeError(f"indices must be integers in [0, {n}), got {type(indices).__name__}")
    try:
        idx = torch.as_tensor(indices).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"indices must be integers in [0, {n}), got {type(indices).__name__}") from None
    if idx.numel() == 0:
        raise ShapeError("indices must not be empty")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ArgumentTypeError(f"indices must be integers in [0, {n}), got dtype {idx.dtype}")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise InvalidArgumentError(f"indices must lie in [0, {n}), got values in [{int(idx.min())}, {int(idx.max())}]")
    return [int(i) for i in idx.tolist()]


def leave_one_out(
    model: nn.Module,
    loss: str | LossFn,
    train: Sequence[Tensor],
    test: Sequence[Tensor],
    indices: Sequence[int] | Tensor,
    *,
    l2: float = 0.0,
    tol: float = 1e-10,
    max_steps: int = 50,
) -> Tensor:
    r"""Actual change in the test loss when each listed training point is removed and the model retrained.

    For each index :math:`i` the minimiser of :math:`J - \ell_i` is found by Newton iterations
    warm-started at :math:`\hat\theta`, using the exact Hessian :math:`\nabla^2 J - \nabla^2\ell_i`
    at :math:`\hat\theta` (refreshed every 25 steps) and the exact gradient, until the gradient
    norm is below ``tol``; the reference :math:`\hat\theta` itself is first refined by Newton's
    method.
    Returns :math:`L_{\text{test}}(\hat\theta_{-i}) - L_{\text{test}}(\hat\theta)`, the quantity
    :func:`influence_scores` predicts. The model is left unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        The fitted (small, convex) model.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    train, test : tuple of Tensor
        ``(inputs, targets)`` pairs, each with at least one row, finite. Tensors only: removing
        point ``i`` needs random access to the training set, which a ``DataLoader`` does not give.
    indices : Sequence or Tensor
        Training points to remove, one at a time; integers in ``[0, n_train)``, at least one.
    l2 : float
        Ridge coefficient :math:`\lambda \ge 0`.
    tol : float
        Gradient-norm tolerance, > 0.
    max_steps : int
        Maximum Newton steps per retraining, >= 1.

    Returns
    -------
    Tensor
        Shape ``(len(indices),)``, in the model's dtype.

    Raises
    ------
    ConvergenceError
        If a retraining does not converge (a ``RuntimeError``).

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    >>> y = torch.tensor([[0.1], [0.9], [2.2], [2.8]], dtype=torch.float64)
    >>> model = torch.nn.Linear(1, 1).double()
    >>> _ = fit_newton(model, "gaussian", x, y)
    >>> leave_one_out(model, "gaussian", (x, y), (x[:1], y[:1]), [3]).shape
    torch.Size([1])
    """
    prob = _Problem(model, loss)
    l2 = check_real(l2, "l2", low=0.0)
    tol, max_steps = _check_tol(tol, max_steps)
    check_model_mode(model, "the retrained losses", per_example=True)
    xtr, ytr = prob.data(train, "train")
    xte, yte = prob.data(test, "test")
    idx = _check_indices(indices, xtr.shape[0])

    one = prob.batches((xtr, ytr), "train")
    theta_hat, _ = _minimise(prob, one, l2, prob.theta0.clone(), tol, max_steps)
    H_hat = prob.curvature(theta_hat, xtr, ytr, "hessian", l2)

    def test_loss(t: Tensor) -> Tensor:
        return prob.losses(t, xte, yte).mean().detach()

    base = test_loss(theta_hat)
    single_hess = _hessian(prob.single_loss)
    out = []
    for i in idx:
        # Removing one point moves the minimiser little, so the chord method with the Hessian of
        # J - l_i at theta_hat converges in a few cheap iterations; the damped Newton solver takes
        # over if it does not (or if that Hessian is not positive definite).
        H_minus = H_hat - single_hess(theta_hat, xtr[i], ytr[i]).detach()
        grad_minus = _objective_grad(prob, xtr, ytr, l2, drop=i)
        try:
            theta_i, _, ok = chord_newton(grad_minus, theta_hat, H_minus, tol=tol, max_iter=max_steps)
        except NotPositiveDefiniteError:
            theta_i, ok = theta_hat, False
        if not ok:
            theta_i, _ = _minimise(prob, one, l2, theta_i, tol, max_steps, drop=i)
        out.append(test_loss(theta_i) - base)
    return torch.stack(out)
