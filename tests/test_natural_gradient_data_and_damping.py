"""NaturalGradient's curvature refresh over DataLoaders (issue 16) and Levenberg–Marquardt damping (issue 19)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, ShapeError
from fisherbook.optim import NaturalGradient

DT = torch.float64


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)


def data(n: int = 30, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


X, Y = data()


def run(inputs=None, n_steps=3, step_inputs=None, **kw):
    model = mlp()
    opt = NaturalGradient(model.parameters(), lr=0.5, damping=1e-2, model=model, likelihood="categorical",
                          inputs=inputs, **kw)
    for _ in range(n_steps):
        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X), Y)
            loss.backward()
            return loss
        opt.step(closure, inputs=step_inputs() if callable(step_inputs) else step_inputs)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt


# ---------------------------------------------------------------- loaders
@pytest.mark.parametrize(("make", "solver"), [
    (lambda: DataLoader(TensorDataset(X, Y), batch_size=7), "dense"),  # uneven last batch
    (lambda: DataLoader(TensorDataset(X, Y), batch_size=7), "cg"),  # matrix-free products stream over it
    (lambda: DataLoader(TensorDataset(X), batch_size=10), "dense"),
    (lambda: [X[:11], X[11:]], "dense"),
    (lambda: [(X[:4], Y[:4]), (X[4:], Y[4:])], "dense"),
])
def test_loader_gives_the_one_tensor_steps(make, solver):
    ref, _ = run(X, solver=solver)
    got, _ = run(make(), solver=solver)
    # the same exact mean: round-off only (CG stops at relative residual 1e-10, so its steps agree to that)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 if solver == "dense" else 1e-9)


def test_step_accepts_a_loader_and_a_one_shot_generator():
    ref, _ = run(step_inputs=X)
    got, _ = run(step_inputs=lambda: DataLoader(TensorDataset(X, Y), batch_size=8))
    gen, _ = run(step_inputs=lambda: (X[i:i + 9] for i in range(0, 30, 9)))
    assert torch.allclose(got, ref, atol=1e-12) and torch.allclose(gen, ref, atol=1e-12)


def test_loader_empirical_fisher_takes_the_targets_of_the_pairs():
    ref, _ = run(X, kind="empirical", targets=Y)
    got, _ = run(DataLoader(TensorDataset(X, Y), batch_size=6), kind="empirical")
    assert torch.allclose(got, ref, atol=1e-12)
    # and it differs from the true Fisher's steps (the two kinds are not the same matrix here)
    true, _ = run(X)
    assert (got - true).abs().max() > 1e-4


def test_loader_bad_input_is_named():
    model = mlp()
    make = lambda **kw: NaturalGradient(model.parameters(), model=model, likelihood="categorical", **kw)  # noqa: E731
    with pytest.raises(ArgumentTypeError, match="inputs"):
        make(inputs="data.csv")
    with pytest.raises(ArgumentTypeError, match="DataLoader"):
        make(inputs=TensorDataset(X))
    with pytest.raises(InvalidArgumentError, match="one-shot"):
        make(inputs=(x for x in [X]))
    with pytest.raises(InvalidArgumentError, match="targets must be None"):
        make(inputs=[X], targets=Y)
    opt = make()
    nn.functional.cross_entropy(model(X), Y).backward()
    with pytest.raises(ShapeError, match="no batches"):
        opt.step(inputs=[])
    with pytest.raises(ArgumentTypeError, match="batch 0"):
        opt.step(inputs=[[1.0, 2.0]])
    with pytest.raises(InvalidArgumentError, match="targets must be None"):
        opt.step(inputs=[X], targets=Y)


# ---------------------------------------------------------------- Levenberg–Marquardt damping
def quadratic_problem():
    # L(w) = 1/2 (w - w*)^T A (w - w*): the quadratic model with F = A is exact, so rho = 1
    g = torch.Generator().manual_seed(3)
    B = torch.randn(5, 5, generator=g, dtype=DT)
    A = B @ B.T + 0.1 * torch.eye(5, dtype=DT)
    w_star = torch.randn(5, generator=g, dtype=DT)
    return A, w_star


def lm_run(A, w_star, curvature, damping=1.0, factor=1.5, n=4):
    w = torch.zeros(5, dtype=DT, requires_grad=True)
    opt = NaturalGradient([w], lr=1.0, damping=damping, curvature_fn=lambda: curvature, adapt_damping=True,
                          lm_factor=factor)
    rhos, dampings = [], []

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w - w_star) @ A @ (w - w_star)
        loss.backward()
        return loss
    for _ in range(n):
        opt.step(closure)
        rhos.append(opt.state[w]["rho"])
        dampings.append(opt.param_groups[0]["damping"])
    return rhos, dampings, w


def test_lm_rule_exact_model_gives_rho_one_and_lowers_damping():
    A, w_star = quadratic_problem()
    rhos, dampings, _ = lm_run(A, w_star, A)
    assert all(abs(r - 1) < 1e-10 for r in rhos)  # exact quadratic: actual = predicted
    assert dampings == pytest.approx([1.0 / 1.5**k for k in range(1, 5)], rel=1e-12)


def test_lm_rule_raises_damping_when_the_model_is_too_optimistic():
    # the curvature under-estimates A tenfold: steps overshoot, the loss rises (rho < 0), damping goes up
    A, w_star = quadratic_problem()
    rhos, dampings, _ = lm_run(A, w_star, 0.1 * A, damping=1e-3, factor=2.0, n=3)
    assert rhos[0] < 0.25 and dampings[0] == pytest.approx(2e-3)
    assert all(b >= a for a, b in zip(dampings, dampings[1:]))


def test_lm_rho_matches_a_hand_computation():
    A, w_star = quadratic_problem()
    C = 0.5 * A + 0.2 * torch.eye(5, dtype=DT)
    lam = 0.3
    rhos, _, _ = lm_run(A, w_star, C, damping=lam, n=1)
    g = -A @ w_star  # gradient at w = 0
    d = -torch.linalg.solve(C + lam * torch.eye(5, dtype=DT), g)
    loss = lambda w: 0.5 * (w - w_star) @ A @ (w - w_star)  # noqa: E731
    predicted = g @ d + 0.5 * d @ C @ d
    assert rhos[0] == pytest.approx(float((loss(d) - loss(torch.zeros(5, dtype=DT))) / predicted), rel=1e-10)


def test_lm_damping_is_saved_and_restored():
    A, w_star = quadratic_problem()
    _, dampings, w = lm_run(A, w_star, A, n=2)
    opt = NaturalGradient([w], lr=1.0, damping=1.0, curvature_fn=lambda: A, adapt_damping=True)
    opt.param_groups[0]["damping"] = dampings[-1]
    state = opt.state_dict()
    other = NaturalGradient([w], lr=1.0, damping=1.0, curvature_fn=lambda: A, adapt_damping=True)
    other.load_state_dict(state)
    assert other.param_groups[0]["damping"] == dampings[-1] and other.defaults["lm_factor"] == 1.5


def test_lm_bad_input_is_named():
    w = torch.zeros(2, dtype=DT, requires_grad=True)
    eye = torch.eye(2, dtype=DT)
    with pytest.raises(InvalidArgumentError, match="damping > 0"):
        NaturalGradient([w], damping=0.0, curvature_fn=lambda: eye, adapt_damping=True)
    with pytest.raises(InvalidArgumentError, match="lm_factor"):
        NaturalGradient([w], curvature_fn=lambda: eye, adapt_damping=True, lm_factor=1.0)
    with pytest.raises(ArgumentTypeError, match="adapt_damping"):
        NaturalGradient([w], curvature_fn=lambda: eye, adapt_damping="yes")
    opt = NaturalGradient([w], curvature_fn=lambda: eye, adapt_damping=True)
    (w**2).sum().backward()
    with pytest.raises(InvalidArgumentError, match="closure"):
        opt.step()


def test_lm_step_that_raises_the_loss_is_undone():
    # a curvature 100 times too small: the first step overshoots far, rho < 0, the step is undone
    A, w_star = quadratic_problem()
    w = torch.zeros(5, dtype=DT, requires_grad=True)
    opt = NaturalGradient([w], lr=1.0, damping=1e-3, curvature_fn=lambda: 0.01 * A, adapt_damping=True, lm_factor=10.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w - w_star) @ A @ (w - w_star)
        loss.backward()
        return loss
    losses = [float(opt.step(closure))]
    assert opt.state[w]["rho"] < 0 and not opt.state[w]["accepted"]
    assert torch.equal(w.detach(), torch.zeros(5, dtype=DT))  # back where it was
    for _ in range(8):
        losses.append(float(opt.step(closure)))
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # rejected steps never raise the loss
    assert losses[-1] < 0.5 * losses[0] and opt.param_groups[0]["damping"] > 1e-3
