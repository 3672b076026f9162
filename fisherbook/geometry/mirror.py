r"""Natural gradient as mirror descent in the dual coordinates of an exponential family.

For an exponential family with log-partition :math:`\psi`, natural parameters :math:`\theta` and
expectation parameters :math:`\eta = \nabla\psi(\theta)`, the dual potential
:math:`\varphi = \psi^*` has :math:`\nabla\varphi(\eta) = \theta`. **Mirror descent** on a loss
:math:`f(\eta)` of the mean parameters, with mirror map :math:`\varphi`,

.. math::

    \nabla\varphi(\eta_{t+1}) = \nabla\varphi(\eta_t) - \alpha\, \nabla_\eta f(\eta_t),

is, written in :math:`\theta = \nabla\varphi(\eta)`, the **natural-gradient** iteration in the
natural parameters,

.. math::

    \theta_{t+1} = \theta_t - \alpha\, I(\theta_t)^{-1} \nabla_\theta (f\circ\nabla\psi)(\theta_t),
    \qquad I(\theta) = \nabla^2\psi(\theta),

because the chain rule gives :math:`\nabla_\theta (f\circ\nabla\psi) = \nabla^2\psi(\theta)\,
\nabla_\eta f` (Raskutti & Mukherjee 2015). The two are the same sequence, not only to first order
in :math:`\alpha`.

:func:`mirror_descent` runs the first iteration with the closed-form coordinate maps of
:mod:`~fisherbook.geometry.dualflat`; :func:`natural_gradient_descent` runs the second with the
Fisher and the chain rule from automatic differentiation of :func:`~fisherbook.geometry.dualflat.log_partition`,
so the agreement of the two checks the theorem with two independent computations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validate import check_callable, check_int, check_real, check_tensor
from ..errors import OffManifoldError, ShapeError
from .dualflat import expectation_parameters, from_expectation, from_natural, log_partition, natural_parameters

__all__ = ["mirror_descent", "natural_gradient_descent"]

DTYPE = torch.float64


def _check(loss: Any, start: Any, name: str, lr: Any, n_steps: Any) -> tuple[Tensor, float, int]:
    check_callable(loss, "loss")
    start = check_tensor(start, name, dtype=DTYPE)
    if start.dim() != 1 or start.numel() == 0:
        raise ShapeError(f"{name} must be a non-empty 1-D tensor of parameters, got shape {tuple(start.shape)}")
    lr = check_real(lr, "lr", low=0.0, open_low=True)
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    return start, lr, n_steps


def _grad(loss: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    g = torch.func.grad(lambda z: torch.as_tensor(loss(z), dtype=DTYPE).reshape(()))(x)
    if not bool(torch.isfinite(g).all()):
        raise OffManifoldError(f"the gradient of loss is not finite at {x.tolist()}: the iterate left the "
                               "family's domain")
    return g


def mirror_descent(family: Any, loss: Callable[[Tensor], Tensor], eta0: Any, *, lr: float, n_steps: int) -> Tensor:
    r"""Mirror descent on the expectation parameters with the dual potential as mirror map.

    .. math::

        \theta_t = \nabla\varphi(\eta_t), \qquad \theta_{t+1} = \theta_t - \alpha \nabla_\eta f(\eta_t),
        \qquad \eta_{t+1} = \nabla\psi(\theta_{t+1}),

    with the maps :math:`\eta \mapsto \theta` and :math:`\theta \mapsto \eta` in closed form
    (:func:`~fisherbook.geometry.dualflat.from_expectation`,
    :func:`~fisherbook.geometry.dualflat.expectation_parameters`).
    Equivalently :math:`\eta_{t+1} = \arg\min_\eta\, \alpha \nabla f(\eta_t)^\top \eta + B_\varphi(\eta, \eta_t)`,
    the linearised loss plus the Bregman divergence of :math:`\varphi`, which is the KL divergence
    :math:`\operatorname{KL}(p_{\eta} \,\Vert\, p_{\eta_t})`.

    Parameters
    ----------
    family : Distribution or type
        An exponential family of :mod:`~fisherbook.geometry.dualflat` (an instance for Binomial /
        Multinomial, which fixes ``total_count``).
    loss : callable
        :math:`f(\eta)`, a torch function of the 1-D expectation parameters returning a scalar.
    eta0 : Tensor
        Starting expectation parameters, shape ``(k,)``.
    lr : float
        Step size :math:`\alpha > 0`.
    n_steps : int
        Number of updates (>= 0).

    Returns
    -------
    Tensor
        The path :math:`\eta_0, \dots, \eta_n`, shape ``(n_steps + 1, k)``, float64.

    Raises
    ------
    OffManifoldError
        If an iterate leaves the natural parameter space (too large a step) or the gradient is not finite.

    Examples
    --------
    A Bernoulli fitted to a sample mean 0.8 by its negative log-likelihood
    :math:`f(\eta) = -0.8 \log\eta - 0.2\log(1-\eta)`: the mirror step adds
    :math:`-\alpha f'(\eta)` to the logit.

    >>> import torch
    >>> from torch.distributions import Bernoulli
    >>> nll = lambda e: -(0.8 * e[0].log() + 0.2 * (1 - e[0]).log())
    >>> path = mirror_descent(Bernoulli, nll, torch.tensor([0.5]), lr=0.25, n_steps=1)
    >>> round(float(torch.logit(path[1, 0])), 6)   # 0 - 0.25 * f'(0.5) = 0.25 * 1.2
    0.3
    """
    eta, lr, n_steps = _check(loss, eta0, "eta0", lr, n_steps)
    k = eta.numel()
    path = [eta]
    for _ in range(n_steps):
        theta = natural_parameters(from_expectation(family, eta))
        if theta.shape != (k,):
            raise ShapeError(f"eta0 has {k} entries but the family's natural parameters have shape "
                             f"{tuple(theta.shape)}")
        theta = theta - lr * _grad(loss, eta)
        eta = expectation_parameters(from_natural(family, theta)).reshape(k)
        path.append(eta)
    return torch.stack(path)


def natural_gradient_descent(
    family: Any, loss: Callable[[Tensor], Tensor], theta0: Any, *, lr: float, n_steps: int
) -> Tensor:
    r"""Natural-gradient descent in the natural parameters on a loss of the expectation parameters.

    .. math::

        \theta_{t+1} = \theta_t - \alpha\, I(\theta_t)^{-1} \nabla_\theta\, f\bigl(\nabla\psi(\theta_t)\bigr),

    with the Fisher :math:`I = \nabla^2\psi` and the map :math:`\nabla\psi` both by automatic
    differentiation of :func:`~fisherbook.geometry.dualflat.log_partition` (none of the closed forms that
    :func:`mirror_descent` uses), so that comparing the two paths tests the equivalence theorem.

    Parameters
    ----------
    family : Distribution or type
        As for :func:`mirror_descent`.
    loss : callable
        :math:`f(\eta)`, a torch function of the expectation parameters returning a scalar.
    theta0 : Tensor
        Starting natural parameters, shape ``(k,)``.
    lr : float
        Step size :math:`\alpha > 0`.
    n_steps : int
        Number of updates (>= 0).

    Returns
    -------
    Tensor
        The path :math:`\theta_0, \dots, \theta_n`, shape ``(n_steps + 1, k)``, float64.

    Raises
    ------
    OffManifoldError
        If an iterate leaves the natural parameter space or the loss's gradient is not finite.

    Examples
    --------
    The Bernoulli example of :func:`mirror_descent`, in the logit: the same step.

    >>> import torch
    >>> from torch.distributions import Bernoulli
    >>> nll = lambda e: -(0.8 * e[0].log() + 0.2 * (1 - e[0]).log())
    >>> path = natural_gradient_descent(Bernoulli, nll, torch.tensor([0.0]), lr=0.25, n_steps=1)
    >>> round(float(path[1, 0]), 6)
    0.3
    """
    theta, lr, n_steps = _check(loss, theta0, "theta0", lr, n_steps)
    psi = lambda t: log_partition(family, t)  # noqa: E731
    grad_psi = torch.func.grad(psi)
    path = [theta]
    for _ in range(n_steps):
        if not bool(torch.isfinite(psi(theta))):
            raise OffManifoldError(f"theta = {theta.tolist()} is outside the family's natural parameter space")
        fisher = torch.func.hessian(psi)(theta)
        g = _grad(lambda t: loss(grad_psi(t)), theta)
        theta = theta - lr * torch.linalg.solve(fisher, g)
        if not bool(torch.isfinite(theta).all()) or not bool(torch.isfinite(psi(theta))):
            raise OffManifoldError(f"the step left the natural parameter space (theta = {theta.tolist()}); reduce lr")
        path.append(theta)
    return torch.stack(path)
