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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

__all__ = [
    "per_example_loss",
    "objective_curvature",
    "fit_newton",
    "influence_scores",
    "leave_one_out",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
_CURVATURES = ("hessian", "ggn", "empirical")


def per_example_loss(name: str) -> LossFn:
    r"""The per-example negative log-likelihood for a named likelihood.

    ``"categorical"``: :math:`-\log\operatorname{softmax}(f)_y` (cross-entropy on logits,
    integer targets); ``"bernoulli"``: binary cross-entropy on one logit per example, targets in
    :math:`\{0, 1\}`; ``"gaussian"``: :math:`\tfrac12 \lVert f - y\rVert^2` (unit noise, constant
    dropped). Each returns one loss per example, shape ``(n,)``.

    Parameters
    ----------
    name : str
        One of ``"categorical"``, ``"bernoulli"``, ``"gaussian"``.

    Returns
    -------
    Callable
        ``loss(outputs, targets) -> Tensor`` of shape ``(n,)``.

    Examples
    --------
    >>> import torch
    >>> loss = per_example_loss("categorical")
    >>> loss(torch.zeros(2, 4), torch.tensor([0, 3]))
    tensor([1.3863, 1.3863])
    """
    if name == "categorical":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    if name == "bernoulli":
        return lambda out, y: F.binary_cross_entropy_with_logits(
            out.reshape(out.shape[0]), y.reshape(y.shape[0]).to(out.dtype), reduction="none"
        )
    if name == "gaussian":
        return lambda out, y: 0.5 * (out - y.reshape(out.shape).to(out.dtype)).pow(2).reshape(out.shape[0], -1).sum(1)
    raise ValueError(f"loss must be 'categorical', 'bernoulli', 'gaussian' or a callable, got {name!r}")


class _Flat:
    """A module's trainable parameters as one flat vector, and the loss as a function of it."""

    def __init__(self, model: nn.Module, loss: str | LossFn) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(loss, str):
            loss = per_example_loss(loss)
        elif not callable(loss):
            raise TypeError(f"loss must be a likelihood name or a callable, got {type(loss).__name__}")
        self.model = model
        self.loss = loss
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters")
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.buffers = dict(model.named_buffers())
        self.theta0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        chunks = torch.split(theta, self.sizes)
        out = {k: c.reshape(s) for k, c, s in zip(self.names, chunks, self.shapes)}
        out.update(self.buffers)
        return out

    def outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self.unflatten(theta), (x,))

    def losses(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self.outputs(theta, x), y)

    def single_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.losses(theta, x.unsqueeze(0), y.unsqueeze(0)).sum()

    def per_example_grads(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return vmap(grad(self.single_loss), in_dims=(None, 0, 0))(theta, x, y)

    def load(self, theta: Tensor) -> None:
        with torch.no_grad():
            for p, c in zip(
                (p for p in self.model.parameters() if p.requires_grad), torch.split(theta, self.sizes)
            ):
                p.copy_(c.reshape(p.shape))


def _check_data(data: Sequence[Tensor], name: str, like: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (inputs, targets) of tensors")
    x, y = data
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a pair (inputs, targets) of tensors")
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: inputs and targets must have the same, non-zero number of rows, "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    if x.is_floating_point():
        x = x.to(dtype=like.dtype, device=like.device)
    return x, y.to(device=like.device)


def _check_l2(l2: float) -> float:
    l2 = float(l2)
    if not (l2 >= 0.0) or l2 == float("inf"):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    return l2


def _objective(flat: _Flat, x: Tensor, y: Tensor, l2: float) -> Callable[[Tensor], Tensor]:
    return lambda theta: flat.losses(theta, x, y).sum() + 0.5 * l2 * (theta * theta).sum()


def _objective_grad(
    flat: _Flat, x: Tensor, y: Tensor, l2: float, drop: int | None = None
) -> Callable[[Tensor], Tensor]:
    """Gradient of J (or of J - l_drop) by one reverse-mode pass of plain autograd."""
    weights = torch.ones(x.shape[0], dtype=flat.theta0.dtype, device=flat.theta0.device)
    if drop is not None:
        weights[drop] = 0.0

    def g(theta: Tensor) -> Tensor:
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            J = (weights * flat.losses(t, x, y)).sum() + 0.5 * l2 * (t * t).sum()
            return torch.autograd.grad(J, t)[0].detach()

    return g


def _curvature(flat: _Flat, theta: Tensor, x: Tensor, y: Tensor, kind: str, l2: float) -> Tensor:
    P = theta.numel()
    eye = torch.eye(P, dtype=theta.dtype, device=theta.device)
    if kind == "hessian":
        H = hessian(lambda t: flat.losses(t, x, y).sum())(theta)
    elif kind == "ggn":
        out_single = lambda t, xi: flat.outputs(t, xi.unsqueeze(0)).reshape(-1)  # noqa: E731
        J = vmap(jacrev(out_single), in_dims=(None, 0))(theta, x)  # (n, C, P)
        full = flat.outputs(theta, x).detach()
        out_shape = (1,) + tuple(full.shape[1:])
        outs = full.reshape(x.shape[0], -1)

        def loss_of_output(o: Tensor, yi: Tensor) -> Tensor:
            return flat.loss(o.reshape(out_shape), yi.unsqueeze(0)).sum()

        Hout = vmap(hessian(loss_of_output), in_dims=(0, 0))(outs, y)  # (n, C, C)
        H = torch.einsum("ncp,ncd,ndq->pq", J, Hout, J)
    elif kind == "empirical":
        G = flat.per_example_grads(theta, x, y)
        H = G.T @ G
    else:
        raise ValueError(f"curvature must be one of {_CURVATURES} or a (P, P) tensor, got {kind!r}")
    H = 0.5 * (H + H.T)
    return H.detach() + l2 * eye


def objective_curvature(
    model: nn.Module,
    loss: str | LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    kind: str = "hessian",
    l2: float = 0.0,
) -> Tensor:
    r"""Curvature of the regularised total loss :math:`J` at the model's current parameters.

    ``kind="hessian"``: :math:`\nabla^2 J = \sum_i \nabla^2\ell_i + \lambda I`;
    ``kind="ggn"``: the generalised Gauss–Newton matrix
    :math:`\sum_i J_i^\top \nabla_f^2 \ell_i\, J_i + \lambda I` with :math:`J_i = \partial f(x_i)/\partial\theta`,
    which for the named likelihoods is :math:`n` times the Fisher information;
    ``kind="empirical"``: :math:`\sum_i \nabla\ell_i \nabla\ell_i^\top + \lambda I` (the empirical Fisher
    times :math:`n`). For a generalised linear model with canonical link the first two coincide.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its trainable parameters, flattened in ``parameters()`` order, are :math:`\theta`.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    inputs, targets : Tensor
        The training data, ``n`` rows each.
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
    flat = _Flat(model, loss)
    x, y = _check_data((inputs, targets), "inputs/targets", flat.theta0)
    if not isinstance(kind, str):
        raise TypeError(f"kind must be one of {_CURVATURES}, got {type(kind).__name__}")
    return _curvature(flat, flat.theta0, x, y, kind, _check_l2(l2))


def _newton(
    grad_fn: Callable[[Tensor], Tensor],
    theta: Tensor,
    hess_fn: Callable[[Tensor], Tensor],
    obj_fn: Callable[[Tensor], Tensor] | None,
    tol: float,
    max_steps: int,
    refresh: int,
) -> tuple[Tensor, int]:
    """Newton iterations with the Hessian refreshed every ``refresh`` steps (and a backtracking
    line search when ``obj_fn`` is given); stops when the gradient norm falls below ``tol``."""
    chol = None
    for step in range(max_steps + 1):
        g = grad_fn(theta)
        if torch.linalg.vector_norm(g) <= tol:
            return theta, step
        if step == max_steps:
            break
        if chol is None or step % refresh == 0:
            H = hess_fn(theta)
            chol, info = torch.linalg.cholesky_ex(H)
            if int(info) != 0:
                raise ValueError("the curvature is not positive definite; increase l2")
        d = torch.cholesky_solve(g.unsqueeze(1), chol).squeeze(1)
        if obj_fn is None:
            theta = theta - d
        else:
            f0, t = obj_fn(theta), 1.0
            slope = (g * d).sum()
            while t > 1e-10 and obj_fn(theta - t * d) > f0 - 1e-4 * t * slope:
                t *= 0.5
            theta = theta - t * d
    raise RuntimeError(
        f"Newton iterations did not reach gradient norm {tol:g} in {max_steps} steps "
        f"(last {float(torch.linalg.vector_norm(g)):.3g})"
    )


def _check_tol(tol: float, max_steps: int) -> None:
    if not (float(tol) > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")


def fit_newton(
    model: nn.Module,
    loss: str | LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    l2: float = 0.0,
    tol: float = 1e-9,
    max_steps: int = 100,
) -> int:
    r"""Minimise :math:`J(\theta) = \sum_i \ell_i(\theta) + \tfrac{\lambda}{2}\lVert\theta\rVert^2` by Newton's method, in place.

    Exact Hessian, Cholesky solve, backtracking (Armijo) line search; meant for small convex
    models (linear, logistic, softmax regression), whose minimiser :func:`influence_scores` and
    :func:`leave_one_out` need to high accuracy. Stops when
    :math:`\lVert\nabla J\rVert \le` ``tol``.

    Parameters
    ----------
    model : torch.nn.Module
        Model whose trainable parameters are overwritten with the minimiser.
    loss : str or Callable
        A likelihood name (see :func:`per_example_loss`) or ``loss(outputs, targets) -> (n,)``.
    inputs, targets : Tensor
        The training data.
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
    RuntimeError
        If the tolerance is not reached in ``max_steps`` steps.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(1)
    >>> model = torch.nn.Linear(1, 1).double()
    >>> steps = fit_newton(model, "gaussian", x, 3 * x + 1)
    >>> round(model.weight.item(), 6), round(model.bias.item(), 6)
    (3.0, 1.0)
    """
    flat = _Flat(model, loss)
    x, y = _check_data((inputs, targets), "inputs/targets", flat.theta0)
    l2 = _check_l2(l2)
    _check_tol(tol, max_steps)
    obj = _objective(flat, x, y, l2)
    theta, steps = _newton(
        _objective_grad(flat, x, y, l2),
        flat.theta0.clone(),
        lambda t: _curvature(flat, t, x, y, "hessian", l2),
        lambda t: obj(t).detach(),
        tol,
        max_steps,
        refresh=1,
    )
    flat.load(theta)
    return steps


def influence_scores(
    model: nn.Module,
    loss: str | LossFn,
    train: Sequence[Tensor],
    test: Sequence[Tensor],
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
    train, test : tuple of Tensor
        ``(inputs, targets)`` pairs.
    l2 : float
        Ridge coefficient :math:`\lambda \ge 0` used in fitting.
    curvature : str or Tensor
        Which matrix :math:`C`: ``"hessian"``, ``"ggn"`` or ``"empirical"``; a tensor must be ``(P, P)`` (e.g. from the curvature engine,
        already including the ridge term).
    damping : float
        :math:`\delta \ge 0` added to the diagonal.

    Returns
    -------
    Tensor
        :math:`\Delta`, shape ``(n_train,)``, in the model's dtype.

    Examples
    --------
    For least squares the exact influence equals leave-one-out retraining up to the leverage
    factor :math:`1/(1-h_{ii})`; the one-step prediction is close for small leverage.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(50, 2, generator=g, dtype=torch.float64); y = x @ torch.tensor([1.0, -2.0], dtype=torch.float64)
    >>> model = torch.nn.Linear(2, 1, bias=False).double()
    >>> _ = fit_newton(model, "gaussian", x, y.unsqueeze(1) + 0.1 * torch.randn(50, 1, generator=g, dtype=torch.float64))
    >>> data = (x, y.unsqueeze(1))
    >>> pred = influence_scores(model, "gaussian", data, data)
    >>> pred.shape
    torch.Size([50])
    """
    flat = _Flat(model, loss)
    xtr, ytr = _check_data(train, "train", flat.theta0)
    xte, yte = _check_data(test, "test", flat.theta0)
    l2 = _check_l2(l2)
    damping = float(damping)
    if not damping >= 0 or damping == float("inf"):
        raise ValueError(f"damping must be a finite number >= 0, got {damping}")
    theta = flat.theta0
    P = theta.numel()
    if isinstance(curvature, Tensor):
        if curvature.shape != (P, P):
            raise ValueError(f"curvature tensor must have shape ({P}, {P}), got {tuple(curvature.shape)}")
        C = curvature.detach().to(dtype=theta.dtype, device=theta.device)
    elif isinstance(curvature, str):
        C = _curvature(flat, theta, xtr, ytr, curvature, l2)
    else:
        raise TypeError(f"curvature must be one of {_CURVATURES} or a tensor, got {type(curvature).__name__}")
    C = C + damping * torch.eye(P, dtype=theta.dtype, device=theta.device)
    chol, info = torch.linalg.cholesky_ex(0.5 * (C + C.T))
    if int(info) != 0:
        raise ValueError("curvature (+ damping) is not positive definite; increase l2 or damping")
    g_test = grad(lambda t: flat.losses(t, xte, yte).mean())(theta).detach()
    s_test = torch.cholesky_solve(g_test.unsqueeze(1), chol).squeeze(1)
    G = flat.per_example_grads(theta, xtr, ytr).detach()
    return G @ s_test


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
        ``(inputs, targets)`` pairs.
    indices : Sequence or Tensor
        Training points to remove, one at a time; each in ``[0, n_train)``.
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
    RuntimeError
        If a retraining does not converge.

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
    flat = _Flat(model, loss)
    xtr, ytr = _check_data(train, "train", flat.theta0)
    xte, yte = _check_data(test, "test", flat.theta0)
    l2 = _check_l2(l2)
    _check_tol(tol, max_steps)
    n = xtr.shape[0]
    idx = torch.as_tensor(indices).reshape(-1)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError("indices must be integers")
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(f"indices must be non-empty and lie in [0, {n}), got {idx.tolist()[:5]}...")

    hess_full = lambda t: _curvature(flat, t, xtr, ytr, "hessian", l2)  # noqa: E731
    theta_hat, _ = _newton(
        _objective_grad(flat, xtr, ytr, l2), flat.theta0.clone(), hess_full, None, tol, max_steps, refresh=1
    )
    H_hat = hess_full(theta_hat)
    test_loss = lambda t: flat.losses(t, xte, yte).mean().detach()  # noqa: E731
    base = test_loss(theta_hat)
    single_hess = hessian(flat.single_loss)
    out = []
    for i in idx.tolist():
        xi, yi = xtr[i], ytr[i]
        H_i = single_hess(theta_hat, xi, yi).detach()

        def hess_minus(t: Tensor, xi: Tensor = xi, yi: Tensor = yi, H_i: Tensor = H_i) -> Tensor:
            if t is theta_hat:
                return H_hat - H_i
            return hess_full(t) - single_hess(t, xi, yi).detach()

        theta_i, _ = _newton(
            _objective_grad(flat, xtr, ytr, l2, drop=i),
            theta_hat,
            hess_minus,
            None,
            tol,
            max_steps,
            refresh=25,
        )
        out.append(test_loss(theta_i) - base)
    return torch.stack(out)
