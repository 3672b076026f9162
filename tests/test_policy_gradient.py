"""Exact policy gradient, the policy Fisher, natural policy gradient and TRPO on tabular MDPs, each
against an independent computation (autodiff, finite differences, Monte Carlo, value iteration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import hessian, jacrev

import fisherbook as fb
from fisherbook.optim import policy_gradient as pgm

D = torch.float64


def _mdp(seed: int = 0, S: int = 4, A: int = 3, gamma: float = 0.9) -> pgm.TabularMDP:
    return pgm.random_mdp(S, A, gamma=gamma, generator=torch.Generator().manual_seed(seed))


def _theta(seed: int, S: int = 4, A: int = 3, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(S, A, generator=torch.Generator().manual_seed(100 + seed), dtype=D)


def _value_iteration(mdp: pgm.TabularMDP, n: int = 2000) -> torch.Tensor:
    V = torch.zeros(mdp.n_states, dtype=D)
    for _ in range(n):
        V = (mdp.rewards + mdp.gamma * mdp.transitions @ V).max(-1).values
    return V


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), gamma=st.floats(0.0, 0.99), scale=st.floats(0.0, 5.0))
def test_exact_gradient_against_autodiff_and_finite_differences(seed, gamma, scale):
    mdp, theta = _mdp(seed, gamma=gamma), _theta(seed, scale=scale)
    g = pgm.exact_policy_gradient(mdp, theta)
    auto = torch.func.grad(lambda t: pgm.expected_return(mdp, t))(theta)
    assert torch.allclose(g, auto, atol=1e-10 / (1 - gamma))
    # central differences of the exact return (error O(h^2) ~ 1e-10 with h = 1e-5)
    h, fd = 1e-5, torch.zeros_like(theta)
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            e = torch.zeros_like(theta)
            e[s, a] = h
            fd[s, a] = (pgm.expected_return(mdp, theta + e) - pgm.expected_return(mdp, theta - e)) / (2 * h)
    assert torch.allclose(g, fd, atol=1e-7 / (1 - gamma) ** 2)


def test_values_against_monte_carlo_rollouts():
    mdp, theta = _mdp(1, S=3, A=2, gamma=0.5), _theta(1, S=3, A=2)
    V, _ = pgm.policy_values(mdp, theta)
    pi = pgm.softmax_policy(theta)
    g = torch.Generator().manual_seed(0)
    n, T = 20_000, 40  # gamma^40 ~ 1e-12: truncation negligible
    s = torch.multinomial(mdp.start, n, replacement=True, generator=g)
    ret, disc = torch.zeros(n, dtype=D), 1.0
    for _ in range(T):
        a = torch.multinomial(pi[s], 1, generator=g)[:, 0]
        ret += disc * mdp.rewards[s, a]
        s = torch.multinomial(mdp.transitions[s, a], 1, generator=g)[:, 0]
        disc *= mdp.gamma
    se = float(ret.std()) / n**0.5
    assert abs(float(ret.mean()) - float(pgm.expected_return(mdp, theta))) < 5 * se  # 5 standard errors
    assert torch.allclose(mdp.start @ V, pgm.expected_return(mdp, theta))


def test_optimal_values_satisfy_bellman_and_match_value_iteration():
    mdp = _mdp(2, S=6, A=3, gamma=0.95)
    V, act = pgm.optimal_values(mdp)
    assert torch.allclose(V, _value_iteration(mdp), atol=1e-10)
    Q = mdp.rewards + mdp.gamma * mdp.transitions @ V
    assert torch.allclose(V, Q.max(-1).values, atol=1e-12)
    assert torch.equal(act, Q.argmax(-1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_fisher_against_autodiff_score_outer_products_and_kl_hessian(seed):
    mdp, theta = _mdp(seed), _theta(seed, scale=2.0)
    F = pgm.policy_fisher(mdp, theta)
    d = pgm.state_visitation(mdp, theta)
    pi = pgm.softmax_policy(theta)
    # E_{s ~ d, a ~ pi}[score score^T] from the autodiff Jacobian of log pi
    J = jacrev(lambda t: torch.log_softmax(t, -1))(theta).reshape(mdp.n_states * mdp.n_actions, -1)
    w = (d[:, None] * pi).reshape(-1)
    assert torch.allclose(F, (J * w[:, None]).T @ J, atol=1e-13)
    # and the Hessian of the mean KL at theta
    H = hessian(lambda t: pgm.policy_kl(mdp, theta, t))(theta).reshape(F.shape)
    assert torch.allclose(F, H, atol=1e-12)
    # the visitation: a fixed point of d = (1 - gamma) rho0 + gamma d P_pi
    P_pi = torch.einsum("sa,sat->st", pi, mdp.transitions)
    assert torch.allclose(d, (1 - mdp.gamma) * mdp.start + mdp.gamma * d @ P_pi, atol=1e-14)
    assert int(torch.linalg.matrix_rank(F)) == mdp.n_states * (mdp.n_actions - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_npg_equals_pinv_and_the_soft_policy_iteration_closed_form(seed):
    mdp, theta = _mdp(seed), _theta(seed)
    nat = pgm.natural_policy_gradient(mdp, theta)
    pinv = torch.linalg.pinv(pgm.policy_fisher(mdp, theta), hermitian=True) @ pgm.exact_policy_gradient(mdp, theta).reshape(-1)
    assert torch.allclose(nat.reshape(-1), pinv, atol=1e-9)
    # one NPG step: pi' proportional to pi exp(eta A / (1 - gamma))  (Agarwal et al. 2021)
    eta = 0.7
    V, Q = pgm.policy_values(mdp, theta)
    closed = pgm.softmax_policy(theta) * torch.exp(eta * (Q - V[:, None]) / (1 - mdp.gamma))
    closed /= closed.sum(-1, keepdim=True)
    _, new = pgm.policy_optimization_path(mdp, theta, method="npg", step_size=eta, n_iter=1)
    assert torch.allclose(pgm.softmax_policy(new), closed, atol=1e-13)


def test_npg_with_a_huge_step_is_policy_iteration_and_reaches_the_optimum():
    mdp = _mdp(3, S=6, A=3, gamma=0.9)
    V_star, act = pgm.optimal_values(mdp)
    J, theta = pgm.policy_optimization_path(mdp, torch.zeros(6, 3, dtype=D), method="npg", step_size=1e4, n_iter=10)
    assert abs(float(J[-1]) - float(mdp.start @ V_star)) < 1e-9
    assert torch.equal(pgm.softmax_policy(theta).argmax(-1), act)
    assert np.all(np.diff(J.numpy()) > -1e-12)  # NPG improves the return at every step


@pytest.mark.parametrize("max_kl", [1e-3, 0.05, 1.0])
def test_trpo_step_satisfies_the_kl_constraint_and_improves(max_kl):
    mdp, theta = _mdp(4), _theta(4, scale=2.0)
    step = pgm.trpo_step(mdp, theta, max_kl=max_kl)
    assert step.accepted and step.improvement > 0
    kl = float(pgm.policy_kl(mdp, theta, step.theta))
    assert kl <= max_kl and abs(kl - step.kl) < 1e-15
    # the direction is natural; for a small budget the quadratic model is accurate and nothing is shrunk
    direction = (step.theta - theta).reshape(-1)
    nat = pgm.natural_policy_gradient(mdp, theta).reshape(-1)
    assert torch.allclose(direction / direction.norm(), nat / nat.norm(), atol=1e-12)
    # the full step's length makes the quadratic model of the KL equal the budget; the true KL differs at third order
    g = pgm.exact_policy_gradient(mdp, theta).reshape(-1)
    beta = (2 * max_kl / float(g @ nat)) ** 0.5
    full_kl = float(pgm.policy_kl(mdp, theta, theta + beta * nat.reshape(theta.shape)))
    assert abs(0.5 * beta**2 * float(nat @ pgm.policy_fisher(mdp, theta) @ nat) / max_kl - 1) < 1e-10
    if max_kl == 1e-3:
        assert abs(full_kl / max_kl - 1) < 0.1  # third-order term: O(sqrt(delta)) relative
        assert step.n_backtracks <= 1


def test_trpo_backtracks_when_the_quadratic_model_is_wrong():
    mdp, theta = _mdp(5), _theta(5, scale=3.0)
    step = pgm.trpo_step(mdp, theta, max_kl=5.0)
    assert step.accepted and step.kl <= 5.0
    # at a stationary point (the optimum of a one-state bandit) there is nothing to do
    bandit = pgm.TabularMDP(torch.ones(1, 2, 1, dtype=D), torch.tensor([[0.0, 1.0]], dtype=D), 0.5, torch.ones(1, dtype=D))
    still = pgm.trpo_step(bandit, torch.tensor([[0.0, 0.0]], dtype=D), max_kl=0.1)
    assert still.accepted
    flat = pgm.TabularMDP(torch.ones(1, 2, 1, dtype=D), torch.ones(1, 2, dtype=D), 0.5, torch.ones(1, dtype=D))
    none = pgm.trpo_step(flat, torch.zeros(1, 2, dtype=D), max_kl=0.1)
    assert not none.accepted and torch.equal(none.theta, torch.zeros(1, 2, dtype=D))


def test_vanilla_pg_plateaus_near_a_deterministic_wrong_policy_where_npg_does_not():
    # a two-armed bandit started near the wrong arm: the PG step is proportional to pi(good) ~ e^{-c}
    bandit = pgm.TabularMDP(torch.ones(1, 2, 1, dtype=D), torch.tensor([[1.0, 0.0]], dtype=D), 0.0, torch.ones(1, dtype=D))
    theta0 = torch.tensor([[0.0, 10.0]], dtype=D)
    J_pg, _ = pgm.policy_optimization_path(bandit, theta0, method="pg", step_size=1.0, n_iter=200)
    J_npg, _ = pgm.policy_optimization_path(bandit, theta0, method="npg", step_size=1.0, n_iter=30)
    assert float(J_pg[-1]) < 0.05  # still stuck after 200 steps
    assert float(J_npg[-1]) > 0.99  # NPG: logits move by ~1 per step whatever pi is


def test_mdp_validation():
    with pytest.raises(fb.errors.InvalidArgumentError, match="summing to 1"):
        pgm.TabularMDP(torch.ones(2, 2, 2, dtype=D), torch.zeros(2, 2, dtype=D), 0.9, torch.full((2,), 0.5, dtype=D))
    with pytest.raises(fb.errors.InvalidArgumentError, match="gamma"):
        pgm.TabularMDP(torch.full((2, 2, 2), 0.5, dtype=D), torch.zeros(2, 2, dtype=D), 1.0, torch.full((2,), 0.5, dtype=D))
