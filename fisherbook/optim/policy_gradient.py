r"""Exact policy gradients, the policy's Fisher, natural policy gradient and TRPO on tabular MDPs.

A finite MDP has transition probabilities :math:`P(s' \mid s, a)`, rewards :math:`r(s, a)`, a
discount :math:`\gamma \in [0, 1)` and a start distribution :math:`\rho_0`. The tabular softmax
policy :math:`\pi_\theta(a \mid s) \propto \exp\theta_{sa}` has return
:math:`J(\theta) = \rho_0^\top V^{\pi}` with :math:`V^\pi = (I - \gamma P_\pi)^{-1} r_\pi`, discounted
state visitation :math:`d^\pi = (1-\gamma)\,\rho_0^\top (I - \gamma P_\pi)^{-1}` and, by the policy
gradient theorem (Sutton et al. 2000),

.. math::

   \frac{\partial J}{\partial\theta_{sa}} = \frac{1}{1-\gamma}\, d^\pi(s)\, \pi(a \mid s)\, A^\pi(s, a),

with the advantage :math:`A^\pi = Q^\pi - V^\pi`. The Fisher of the policy, weighted by the visitation
(Kakade 2001), is block diagonal:

.. math::

   F(\theta) = \operatorname E_{s \sim d^\pi,\, a \sim \pi}
   \bigl[\nabla\log\pi(a\mid s)\,\nabla\log\pi(a\mid s)^\top\bigr]
   = \operatorname{blockdiag}_s\, d^\pi(s)\bigl(\operatorname{diag}\pi_s - \pi_s\pi_s^\top\bigr).

It is singular (each block annihilates the constant vector); the natural gradient is its
pseudo-inverse applied to the gradient, and for the tabular softmax it is the advantage itself,
:math:`F^{+}\nabla J = (A^\pi - \bar A^\pi)/(1-\gamma)` with :math:`\bar A^\pi(s)` the plain mean over
actions, so that a natural step :math:`\theta \leftarrow \theta + \eta F^{+}\nabla J` is the
multiplicative update :math:`\pi \leftarrow \pi\exp(\eta A^\pi/(1-\gamma))`, normalised (Agarwal et al.
2021). TRPO (Schulman et al. 2015) takes the natural direction with the step length that makes the
quadratic model of the mean KL equal to a budget :math:`\delta` and backtracks until the true mean KL
:math:`\operatorname E_{s\sim d^\pi}\operatorname{KL}(\pi_{\text{old}}(\cdot\mid s)
\,\Vert\,\pi_{\text{new}}(\cdot\mid s))` is at most :math:`\delta` and the return has improved.

Everything is exact (linear solves, no sampling), in float64 and differentiable by ``torch.func``.
Bad arguments raise the :mod:`fisherbook.errors` classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int, check_option, check_real, check_tensor
from ..errors import ArgumentTypeError, ConvergenceError, InvalidArgumentError, ShapeError

__all__ = [
    "TabularMDP",
    "TRPOStep",
    "random_mdp",
    "softmax_policy",
    "policy_values",
    "optimal_values",
    "expected_return",
    "state_visitation",
    "exact_policy_gradient",
    "policy_fisher",
    "natural_policy_gradient",
    "policy_kl",
    "trpo_step",
    "policy_optimization_path",
]

_D = torch.float64


@dataclass(frozen=True)
class TabularMDP:
    r"""A finite discounted MDP.

    Parameters
    ----------
    transitions : Tensor
        :math:`P(s' \mid s, a)`, shape ``(S, A, S)``, non-negative, each ``transitions[s, a]`` summing to 1.
    rewards : Tensor
        :math:`r(s, a)`, shape ``(S, A)``, finite.
    gamma : float
        Discount, in ``[0, 1)``.
    start : Tensor
        :math:`\rho_0`, shape ``(S,)``, positive entries summing to 1 (positive so that every state is
        visited and the Fisher's blocks are all weighted).

    Examples
    --------
    >>> import torch
    >>> mdp = TabularMDP(torch.ones(1, 2, 1), torch.tensor([[0.0, 1.0]]), 0.5, torch.ones(1))
    >>> mdp.n_states, mdp.n_actions
    (1, 2)
    """

    transitions: Tensor
    rewards: Tensor
    gamma: float
    start: Tensor

    def __post_init__(self) -> None:
        P = check_tensor(self.transitions, "transitions", ndim=3, dtype=_D)
        S, A = P.shape[0], P.shape[1]
        if P.shape[2] != S:
            raise ShapeError(f"transitions must have shape (S, A, S), got {tuple(P.shape)}")
        if bool((P < 0).any()) or not torch.allclose(P.sum(-1), torch.ones(S, A, dtype=_D), atol=1e-10):
            raise InvalidArgumentError("transitions must be non-negative with transitions[s, a] summing to 1")
        r = check_tensor(self.rewards, "rewards", ndim=2, dtype=_D)
        if r.shape != (S, A):
            raise ShapeError(f"rewards must have shape ({S}, {A}), got {tuple(r.shape)}")
        gamma = check_real(self.gamma, "gamma", low=0.0, high=1.0, open_high=True)
        rho = check_tensor(self.start, "start", ndim=1, dtype=_D)
        if rho.shape != (S,):
            raise ShapeError(f"start must have shape ({S},), got {tuple(rho.shape)}")
        if bool((rho <= 0).any()) or abs(float(rho.sum()) - 1) > 1e-10:
            raise InvalidArgumentError("start must have positive entries summing to 1")
        object.__setattr__(self, "transitions", P)
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "start", rho)

    @property
    def n_states(self) -> int:
        """The number of states ``S``."""
        return int(self.rewards.shape[0])

    @property
    def n_actions(self) -> int:
        """The number of actions ``A``."""
        return int(self.rewards.shape[1])


def _mdp(mdp: Any) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise ArgumentTypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    return mdp


def _theta(mdp: TabularMDP, theta: Any, name: str = "theta") -> Tensor:
    theta = check_tensor(theta, name, ndim=2, dtype=_D)
    if theta.shape != (mdp.n_states, mdp.n_actions):
        raise ShapeError(f"{name} must have shape ({mdp.n_states}, {mdp.n_actions}), got {tuple(theta.shape)}")
    return theta


def random_mdp(
    n_states: int, n_actions: int, *, gamma: float = 0.9, generator: torch.Generator | None = None
) -> TabularMDP:
    r"""A random MDP: flat-Dirichlet transitions, uniform(0, 1) rewards, uniform start.

    Parameters
    ----------
    n_states, n_actions : int
        ``S >= 1`` and ``A >= 2``.
    gamma : float
        Discount in ``[0, 1)``.
    generator : torch.Generator or None
        Source of randomness.

    Returns
    -------
    TabularMDP

    Examples
    --------
    >>> import torch
    >>> random_mdp(4, 3, generator=torch.Generator().manual_seed(0)).transitions.shape
    torch.Size([4, 3, 4])
    """
    S = check_int(n_states, "n_states", minimum=1)
    A = check_int(n_actions, "n_actions", minimum=2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = -torch.rand(S, A, S, generator=generator, dtype=_D).clamp_min(1e-300).log()  # Exp(1) draws
    P = g / g.sum(-1, keepdim=True)  # normalised Exp(1) draws are flat-Dirichlet
    r = torch.rand(S, A, generator=generator, dtype=_D)
    return TabularMDP(P, r, gamma, torch.full((S,), 1.0 / S, dtype=_D))


def softmax_policy(theta: Any) -> Tensor:
    r"""The tabular softmax policy :math:`\pi(a \mid s) = e^{\theta_{sa}} / \sum_b e^{\theta_{sb}}`.

    Parameters
    ----------
    theta : Tensor
        Logits, shape ``(S, A)``, finite.

    Returns
    -------
    Tensor
        ``(S, A)``, rows summing to 1.

    Examples
    --------
    >>> import torch
    >>> softmax_policy(torch.zeros(1, 4))
    tensor([[0.2500, 0.2500, 0.2500, 0.2500]], dtype=torch.float64)
    """
    return torch.softmax(check_tensor(theta, "theta", ndim=2, dtype=_D), dim=-1)


def _values(mdp: TabularMDP, pi: Tensor) -> tuple[Tensor, Tensor]:
    S = mdp.n_states
    P_pi = torch.einsum("sa,sat->st", pi, mdp.transitions)
    r_pi = (pi * mdp.rewards).sum(-1)
    V = torch.linalg.solve(torch.eye(S, dtype=_D) - mdp.gamma * P_pi, r_pi)
    Q = mdp.rewards + mdp.gamma * mdp.transitions @ V
    return V, Q


def policy_values(mdp: TabularMDP, theta: Any) -> tuple[Tensor, Tensor]:
    r"""Exact :math:`V^\pi` and :math:`Q^\pi` of the softmax policy, by one linear solve.

    :math:`V^\pi = (I - \gamma P_\pi)^{-1} r_\pi` and
    :math:`Q^\pi(s, a) = r(s, a) + \gamma\sum_{s'} P(s'\mid s,a) V^\pi(s')`.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    (Tensor, Tensor)
        ``V`` ``(S,)`` and ``Q`` ``(S, A)``.

    Examples
    --------
    One state, reward 1 for either action, :math:`\gamma = 1/2`: :math:`V = 2`.

    >>> import torch
    >>> mdp = TabularMDP(torch.ones(1, 2, 1), torch.ones(1, 2), 0.5, torch.ones(1))
    >>> float(policy_values(mdp, torch.zeros(1, 2))[0][0])
    2.0
    """
    mdp = _mdp(mdp)
    return _values(mdp, torch.softmax(_theta(mdp, theta), -1))


def optimal_values(mdp: TabularMDP, *, max_iter: int = 1000) -> tuple[Tensor, Tensor]:
    r"""The optimal values :math:`V^\star` and a deterministic optimal policy, by policy iteration.

    Policy iteration (exact evaluation by a linear solve, greedy improvement) ends in finitely many
    steps at a policy whose values satisfy the Bellman optimality equation
    :math:`V^\star(s) = \max_a r(s,a) + \gamma\sum_{s'}P(s'\mid s,a)V^\star(s')`.

    Parameters
    ----------
    mdp : TabularMDP
    max_iter : int
        Cap on the number of improvements (``>= 1``).

    Returns
    -------
    (Tensor, Tensor)
        :math:`V^\star` ``(S,)`` and the optimal action of each state ``(S,)`` (int64).

    Raises
    ------
    ConvergenceError
        If the policy still changes after ``max_iter`` improvements.

    Examples
    --------
    >>> import torch
    >>> mdp = TabularMDP(torch.ones(1, 2, 1), torch.tensor([[0.0, 1.0]]), 0.5, torch.ones(1))
    >>> V, act = optimal_values(mdp)
    >>> float(V[0]), int(act[0])
    (2.0, 1)
    """
    mdp = _mdp(mdp)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    act = torch.zeros(mdp.n_states, dtype=torch.long)
    for _ in range(max_iter):
        pi = torch.nn.functional.one_hot(act, mdp.n_actions).to(_D)
        V, Q = _values(mdp, pi)
        best = Q.max(-1).values
        # keep the current action unless another is better by more than round-off (no cycling on ties)
        current = Q.gather(1, act[:, None])[:, 0]
        new = torch.where(best > current + 1e-12 * (1 + best.abs()), Q.argmax(-1), act)
        if bool((new == act).all()):
            return V, act
        act = new
    raise ConvergenceError(f"policy iteration did not settle in {max_iter} improvements")


def expected_return(mdp: TabularMDP, theta: Any) -> Tensor:
    r"""The exact return :math:`J(\theta) = \rho_0^\top V^{\pi_\theta}` (differentiable in ``theta``).

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        A float64 scalar.

    Examples
    --------
    >>> import torch
    >>> mdp = TabularMDP(torch.ones(1, 2, 1), torch.tensor([[0.0, 1.0]]), 0.5, torch.ones(1))
    >>> float(expected_return(mdp, torch.zeros(1, 2)))
    1.0
    """
    mdp = _mdp(mdp)
    return mdp.start @ _values(mdp, torch.softmax(_theta(mdp, theta), -1))[0]


def _visitation(mdp: TabularMDP, pi: Tensor) -> Tensor:
    P_pi = torch.einsum("sa,sat->st", pi, mdp.transitions)
    eye = torch.eye(mdp.n_states, dtype=_D)
    return (1 - mdp.gamma) * torch.linalg.solve((eye - mdp.gamma * P_pi).T, mdp.start)


def state_visitation(mdp: TabularMDP, theta: Any) -> Tensor:
    r"""The normalised discounted state visitation :math:`d^\pi = (1-\gamma)\rho_0^\top(I - \gamma P_\pi)^{-1}`.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        ``(S,)``, positive, summing to 1.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(3, 2, generator=torch.Generator().manual_seed(1))
    >>> round(float(state_visitation(mdp, torch.zeros(3, 2)).sum()), 12)
    1.0
    """
    mdp = _mdp(mdp)
    return _visitation(mdp, torch.softmax(_theta(mdp, theta), -1))


def exact_policy_gradient(mdp: TabularMDP, theta: Any) -> Tensor:
    r"""The exact gradient :math:`\partial J/\partial\theta_{sa} = d^\pi(s)\pi(a\mid s)A^\pi(s,a)/(1-\gamma)`.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        ``(S, A)``.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(3, 2, generator=torch.Generator().manual_seed(1))
    >>> th = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    >>> auto = torch.autograd.grad(expected_return(mdp, th), th)[0]
    >>> bool(torch.allclose(exact_policy_gradient(mdp, th.detach()), auto, atol=1e-12))
    True
    """
    mdp = _mdp(mdp)
    pi = torch.softmax(_theta(mdp, theta), -1)
    V, Q = _values(mdp, pi)
    d = _visitation(mdp, pi)
    return d[:, None] * pi * (Q - V[:, None]) / (1 - mdp.gamma)


def policy_fisher(mdp: TabularMDP, theta: Any) -> Tensor:
    r"""The visitation-weighted Fisher of the softmax policy, ``(S*A, S*A)`` in row-major order of ``theta``.

    :math:`F = \sum_s d^\pi(s)\,\operatorname E_{a\sim\pi(\cdot\mid s)}
    [\nabla\log\pi(a\mid s)\nabla\log\pi(a\mid s)^\top]`, block diagonal with blocks
    :math:`d^\pi(s)(\operatorname{diag}\pi_s - \pi_s\pi_s^\top)`.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        The symmetric positive semi-definite ``(S*A, S*A)`` Fisher, of rank ``S*(A-1)``.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(2, 3, generator=torch.Generator().manual_seed(0))
    >>> F = policy_fisher(mdp, torch.zeros(2, 3))
    >>> F.shape, int(torch.linalg.matrix_rank(F))
    (torch.Size([6, 6]), 4)
    """
    mdp = _mdp(mdp)
    pi = torch.softmax(_theta(mdp, theta), -1)
    d = _visitation(mdp, pi)
    blocks = d[:, None, None] * (torch.diag_embed(pi) - pi[:, :, None] * pi[:, None, :])
    return torch.block_diag(*blocks)


def natural_policy_gradient(mdp: TabularMDP, theta: Any) -> Tensor:
    r"""The natural gradient :math:`F^{+}\nabla J` of the tabular softmax policy, in closed form.

    It equals :math:`(A^\pi - \bar A^\pi)/(1-\gamma)`, the advantage centred over actions in each
    state (Kakade 2001; Agarwal et al. 2021), computed so, which stays exact near deterministic
    policies where the Fisher's small eigenvalues defeat a numerical pseudo-inverse; the tests check
    it against ``torch.linalg.pinv`` of :func:`policy_fisher` applied to :func:`exact_policy_gradient`.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        ``(S, A)``.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(3, 2, generator=torch.Generator().manual_seed(1))
    >>> th = torch.zeros(3, 2, dtype=torch.float64)
    >>> V, Q = policy_values(mdp, th); A = Q - V[:, None]
    >>> closed = (A - A.mean(1, keepdim=True)) / (1 - mdp.gamma)
    >>> bool(torch.allclose(natural_policy_gradient(mdp, th), closed, atol=1e-9))
    True
    """
    mdp = _mdp(mdp)
    V, Q = _values(mdp, torch.softmax(_theta(mdp, theta), -1))
    adv = Q - V[:, None]
    return (adv - adv.mean(-1, keepdim=True)) / (1 - mdp.gamma)


def policy_kl(mdp: TabularMDP, theta_old: Any, theta_new: Any) -> Tensor:
    r"""The mean KL between two policies, weighted by the old policy's visitation.

    :math:`\sum_s d^{\pi_{\text{old}}}(s)\operatorname{KL}(\pi_{\text{old}}(\cdot\mid s)\,\Vert\,
    \pi_{\text{new}}(\cdot\mid s))`.

    Its Hessian in ``theta_new`` at ``theta_old`` is :func:`policy_fisher`.

    Parameters
    ----------
    mdp : TabularMDP
    theta_old, theta_new : Tensor
        Logits ``(S, A)``.

    Returns
    -------
    Tensor
        A non-negative float64 scalar.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(2, 2, generator=torch.Generator().manual_seed(0))
    >>> float(policy_kl(mdp, torch.zeros(2, 2), torch.zeros(2, 2)))
    0.0
    """
    mdp = _mdp(mdp)
    old = _theta(mdp, theta_old, "theta_old")
    new = _theta(mdp, theta_new, "theta_new")
    log_old, log_new = torch.log_softmax(old, -1), torch.log_softmax(new, -1)
    d = _visitation(mdp, log_old.exp())
    return d @ (log_old.exp() * (log_old - log_new)).sum(-1)


@dataclass
class TRPOStep:
    """The outcome of one :func:`trpo_step`.

    Attributes
    ----------
    theta : Tensor
        The new logits.
    kl : float
        The true mean KL of the accepted step (at most ``max_kl``).
    improvement : float
        :math:`J(\\theta_{\\text{new}}) - J(\\theta)` (positive, or 0 if every trial was rejected).
    n_backtracks : int
        The number of halvings before acceptance.
    accepted : bool
        Whether a step was accepted (else ``theta`` is unchanged).
    """

    theta: Tensor
    kl: float
    improvement: float
    n_backtracks: int
    accepted: bool


def trpo_step(
    mdp: TabularMDP, theta: Any, *, max_kl: float = 0.01, backtrack: float = 0.5, max_backtracks: int = 30
) -> TRPOStep:
    r"""One TRPO step: natural direction, length from the KL budget, backtracking on the true KL and return.

    With :math:`g = \nabla J` and :math:`x = F^{+}g`, the step :math:`\beta x` with
    :math:`\beta = \sqrt{2\delta / g^\top x}` makes the quadratic model :math:`\tfrac12\beta^2x^\top Fx`
    of the mean KL equal to :math:`\delta`; the step is shrunk by ``backtrack`` until the true mean KL
    (:func:`policy_kl`) is at most :math:`\delta` and :math:`J` has increased.

    Parameters
    ----------
    mdp : TabularMDP
    theta : Tensor
        Logits ``(S, A)``.
    max_kl : float
        The budget :math:`\delta > 0`.
    backtrack : float
        Shrink factor in ``(0, 1)``.
    max_backtracks : int
        Number of shrinks tried (``>= 0``); if none is accepted, ``theta`` is returned unchanged.

    Returns
    -------
    TRPOStep

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(3, 2, generator=torch.Generator().manual_seed(1))
    >>> step = trpo_step(mdp, torch.zeros(3, 2), max_kl=0.01)
    >>> step.accepted, step.kl <= 0.01, step.improvement > 0
    (True, True, True)
    """
    mdp = _mdp(mdp)
    theta = _theta(mdp, theta)
    delta = check_real(max_kl, "max_kl", low=0.0, open_low=True)
    shrink = check_real(backtrack, "backtrack", low=0.0, high=1.0, open_low=True, open_high=True)
    max_backtracks = check_int(max_backtracks, "max_backtracks", minimum=0)
    g = exact_policy_gradient(mdp, theta)
    x = natural_policy_gradient(mdp, theta)
    gx = float((g * x).sum())
    if not gx > 0:  # at a stationary point: nothing to do
        return TRPOStep(theta.clone(), 0.0, 0.0, 0, False)
    beta = math.sqrt(2 * delta / gx)
    j0 = float(expected_return(mdp, theta))
    for k in range(max_backtracks + 1):
        new = theta + beta * shrink**k * x
        kl = float(policy_kl(mdp, theta, new))
        gain = float(expected_return(mdp, new)) - j0
        if kl <= delta and gain > 0:
            return TRPOStep(new, kl, gain, k, True)
    return TRPOStep(theta.clone(), 0.0, 0.0, max_backtracks, False)


def policy_optimization_path(
    mdp: TabularMDP, theta0: Any, *, method: str, step_size: float, n_iter: int
) -> tuple[Tensor, Tensor]:
    r"""Run vanilla policy gradient, natural policy gradient or TRPO from ``theta0``; return the returns.

    ``"pg"``: :math:`\theta \leftarrow \theta + \eta\nabla J`; ``"npg"``: :math:`\theta \leftarrow
    \theta + \eta F^{+}\nabla J`; ``"trpo"``: :func:`trpo_step` with ``max_kl = step_size``.

    Parameters
    ----------
    mdp : TabularMDP
    theta0 : Tensor
        Starting logits ``(S, A)``.
    method : str
        ``"pg"``, ``"npg"`` or ``"trpo"``.
    step_size : float
        :math:`\eta > 0` (the KL budget for ``"trpo"``).
    n_iter : int
        Number of iterations, ``>= 1``.

    Returns
    -------
    (Tensor, Tensor)
        The returns :math:`J(\theta_0), \dots, J(\theta_{n})` ``(n_iter + 1,)`` and the final logits.

    Examples
    --------
    >>> import torch
    >>> mdp = random_mdp(3, 2, generator=torch.Generator().manual_seed(1))
    >>> J, _ = policy_optimization_path(mdp, torch.zeros(3, 2), method="npg", step_size=1.0, n_iter=30)
    >>> V_star, _ = optimal_values(mdp)
    >>> bool(abs(float(J[-1] - mdp.start @ V_star)) < 1e-8)
    True
    """
    mdp = _mdp(mdp)
    theta = _theta(mdp, theta0, "theta0").clone()
    method = check_option(method, "method", ("pg", "npg", "trpo"))
    eta = check_real(step_size, "step_size", low=0.0, open_low=True)
    n_iter = check_int(n_iter, "n_iter", minimum=1)
    returns = [float(expected_return(mdp, theta))]
    for _ in range(n_iter):
        if method == "pg":
            theta = theta + eta * exact_policy_gradient(mdp, theta)
        elif method == "npg":
            theta = theta + eta * natural_policy_gradient(mdp, theta)
        else:
            theta = trpo_step(mdp, theta, max_kl=eta).theta
        returns.append(float(expected_return(mdp, theta)))
    return torch.tensor(returns, dtype=_D), theta
