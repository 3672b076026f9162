"""Tests for fisherbook.bayes.influence: influence functions against leave-one-out retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fisherbook.bayes.influence import (
    fit_newton,
    influence_scores,
    leave_one_out,
    objective_curvature,
    per_example_loss,
)

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _softmax_problem(n=120, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D)
    W = torch.randn(d, c, generator=g, dtype=D)
    y = torch.distributions.Categorical(logits=x @ W).sample()
    torch.manual_seed(seed)
    model = nn.Linear(d, c).double()
    return model, x, y


def _linreg(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=D)
    y = (x @ torch.tensor([1.5, -0.5], dtype=D) + 0.3 + 0.4 * torch.randn(n, generator=g, dtype=D)).unsqueeze(1)
    torch.manual_seed(seed)
    return nn.Linear(2, 1).double(), x, y


def test_fit_newton_reaches_ridge_solution():
    # Gaussian loss with l2: J = 1/2||y - Xw||^2 + l2/2 ||w||^2 has a closed-form minimiser.
    model, x, y = _linreg()
    fit_newton(model, "gaussian", x, y, l2=0.7)
    X1 = torch.cat([x, torch.ones(len(x), 1, dtype=D)], 1)
    w = torch.linalg.solve(X1.T @ X1 + 0.7 * torch.eye(3, dtype=D), X1.T @ y).squeeze(1)
    got = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    assert torch.allclose(got, w, atol=1e-10)


def test_leave_one_out_matches_closed_form_least_squares():
    # Exact LOO refit of ridge regression by the Sherman–Morrison formula, vs Newton retraining.
    model, x, y = _linreg()
    l2 = 0.5
    fit_newton(model, "gaussian", x, y, l2=l2)
    X1 = torch.cat([x, torch.ones(len(x), 1, dtype=D)], 1)
    test = (x[:3] + 0.1, y[:3])
    Xt = torch.cat([test[0], torch.ones(3, 1, dtype=D)], 1)
    A = X1.T @ X1 + l2 * torch.eye(3, dtype=D)
    w = torch.linalg.solve(A, X1.T @ y)
    idx = [0, 7, 19]
    expected = []
    for i in idx:
        keep = torch.arange(len(x)) != i
        wi = torch.linalg.solve(X1[keep].T @ X1[keep] + l2 * torch.eye(3, dtype=D), X1[keep].T @ y[keep])
        loss = lambda ww: (0.5 * (Xt @ ww - test[1]) ** 2).mean()  # noqa: E731
        expected.append((loss(wi) - loss(w)).item())
    got = leave_one_out(model, "gaussian", (x, y), test, idx, l2=l2)
    assert np.allclose(got.numpy(), expected, atol=1e-10)


def test_influence_least_squares_is_loo_without_leverage_factor():
    # For ridge regression, exact LOO (Sherman–Morrison): theta_{-i} - theta = -A^{-1} x_i r_i / (1 - h_ii).
    # The influence function is the same expression without 1/(1 - h_ii), so for a test "loss"
    # linear in theta (the prediction at a probe point) pred_i = (1 - h_ii) * actual_i exactly.
    model, x, y = _linreg()
    l2 = 0.1
    fit_newton(model, "gaussian", x, y, l2=l2)
    X1 = torch.cat([x, torch.ones(len(x), 1, dtype=D)], 1)
    A = X1.T @ X1 + l2 * torch.eye(3, dtype=D)
    assert torch.allclose(objective_curvature(model, "gaussian", x, y, l2=l2), A, atol=1e-10)
    h = torch.einsum("ij,jk,ik->i", X1, torch.linalg.inv(A), X1)

    # targets (value, flag): flag 0 -> squared error on training points, flag 1 -> the output itself.
    def mixed(out, t):
        return t[:, 1] * out[:, 0] + (1 - t[:, 1]) * 0.5 * (out[:, 0] - t[:, 0]) ** 2

    train = (x, torch.cat([y, torch.zeros_like(y)], 1))
    probe = (torch.tensor([[0.3, -1.0]], dtype=D), torch.tensor([[0.0, 1.0]], dtype=D))
    pred = influence_scores(model, mixed, train, probe, l2=l2)
    actual = leave_one_out(model, mixed, train, probe, list(range(10)), l2=l2)
    g_test = torch.tensor([0.3, -1.0, 1.0], dtype=D)
    r = (y - X1 @ torch.linalg.solve(A, X1.T @ y)).reshape(-1)
    assert torch.allclose(pred, -(X1 @ torch.linalg.solve(A, g_test)) * r, atol=1e-10)
    assert torch.allclose(pred[:10], (1 - h[:10]) * actual, atol=1e-10)
    assert not torch.allclose(pred[:10], actual, atol=1e-4)  # the leverage factor is visible


def test_influence_predicts_loo_for_logistic_regression():
    # Koh & Liang's check: predicted vs retrained change in a test loss, high correlation.
    model, x, y = _softmax_problem()
    l2 = 1.0
    fit_newton(model, "categorical", x, y, l2=l2)
    test = (x[:1] * 1.5, (y[:1] + 1) % 3)  # a poorly fitted test point: large gradients
    pred = influence_scores(model, "categorical", (x, y), test, l2=l2)
    top = pred.abs().argsort(descending=True)[:25]
    actual = leave_one_out(model, "categorical", (x, y), test, top, l2=l2)
    r = np.corrcoef(pred[top].numpy(), actual.numpy())[0, 1]
    assert r > 0.95
    # Signs agree for the strongest points and magnitudes within a factor of two.
    assert torch.all(torch.sign(pred[top[:10]]) == torch.sign(actual[:10]))
    ratio = actual[:10] / pred[top[:10]]
    assert torch.all((ratio > 0.5) & (ratio < 2.0))


def test_curvatures_hessian_ggn_empirical():
    model, x, y = _softmax_problem(n=60)
    fit_newton(model, "categorical", x, y, l2=0.5)
    H = objective_curvature(model, "categorical", x, y, kind="hessian", l2=0.5)
    G = objective_curvature(model, "categorical", x, y, kind="ggn", l2=0.5)
    E = objective_curvature(model, "categorical", x, y, kind="empirical", l2=0.5)
    # Canonical link: GGN (= n * Fisher) equals the Hessian for any parameter value.
    assert torch.allclose(H, G, atol=1e-10)
    # Empirical Fisher from per-example gradients, computed independently with autograd.
    logits = model(x)
    grads = []
    for i in range(len(x)):
        gi = torch.autograd.grad(nn.functional.cross_entropy(logits[i : i + 1], y[i : i + 1]), list(model.parameters()), retain_graph=True)
        grads.append(torch.cat([t.reshape(-1) for t in gi]))
    Gm = torch.stack(grads)
    assert torch.allclose(E, Gm.T @ Gm + 0.5 * torch.eye(Gm.shape[1], dtype=D), atol=1e-10)
    assert not torch.allclose(E, H, atol=1e-2)


def test_ggn_differs_from_hessian_for_nonlinear_model():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(30, 2, dtype=D)
    y = torch.sin(x[:, :1])
    H = objective_curvature(model, "gaussian", x, y, kind="hessian")
    G = objective_curvature(model, "gaussian", x, y, kind="ggn")
    # GGN is PSD; the Hessian of a non-linear model away from the optimum is not the GGN.
    assert torch.linalg.eigvalsh(G).min() > -1e-10
    assert not torch.allclose(H, G, atol=1e-3)
    # GGN = J^T J for the unit-variance Gaussian loss, with J from autograd.
    J = torch.autograd.functional.jacobian(
        lambda *ps: torch.func.functional_call(
            model, {k: p for (k, _), p in zip(model.named_parameters(), ps)}, (x,)
        ).reshape(-1),
        tuple(p.detach() for p in model.parameters()),
    )
    J = torch.cat([j.reshape(30, -1) for j in J], 1)
    assert torch.allclose(G, J.T @ J, atol=1e-10)


def test_influence_accepts_curvature_tensor_and_damping():
    model, x, y = _softmax_problem(n=50)
    fit_newton(model, "categorical", x, y, l2=1.0)
    test = (x[:2], y[:2])
    H = objective_curvature(model, "categorical", x, y, l2=1.0)
    a = influence_scores(model, "categorical", (x, y), test, l2=1.0)
    b = influence_scores(model, "categorical", (x, y), test, curvature=H)
    assert torch.allclose(a, b, atol=1e-12)
    # Damping shrinks the predicted effects toward zero.
    c = influence_scores(model, "categorical", (x, y), test, l2=1.0, damping=100.0)
    assert c.abs().sum() < a.abs().sum()


def test_per_example_loss_values():
    out = torch.tensor([[0.0], [2.0]], dtype=D)
    assert torch.allclose(per_example_loss("gaussian")(out, torch.tensor([[1.0], [0.0]], dtype=D)), torch.tensor([0.5, 2.0], dtype=D))
    p = torch.sigmoid(torch.tensor(2.0, dtype=D))
    got = per_example_loss("bernoulli")(out, torch.tensor([1.0, 0.0], dtype=D))
    assert torch.allclose(got, torch.stack([torch.log(torch.tensor(2.0, dtype=D)), -torch.log1p(-p)]))


def test_bad_input():
    model, x, y = _softmax_problem(n=20)
    with pytest.raises(ValueError, match="loss"):
        per_example_loss("poisson")
    with pytest.raises(TypeError, match="model"):
        influence_scores("not a model", "categorical", (x, y), (x, y))
    with pytest.raises(TypeError, match="train"):
        influence_scores(model, "categorical", x, (x, y))
    with pytest.raises(ValueError, match="test"):
        influence_scores(model, "categorical", (x, y), (x[:3], y[:2]))
    with pytest.raises(ValueError, match="l2"):
        influence_scores(model, "categorical", (x, y), (x, y), l2=-1.0)
    with pytest.raises(ValueError, match="damping"):
        influence_scores(model, "categorical", (x, y), (x, y), damping=-1.0)
    with pytest.raises(ValueError, match="curvature"):
        influence_scores(model, "categorical", (x, y), (x, y), curvature="fisherish")
    with pytest.raises(ValueError, match="curvature"):
        influence_scores(model, "categorical", (x, y), (x, y), curvature=torch.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        influence_scores(model, "categorical", (x, y), (x, y), curvature=-torch.eye(18, dtype=D))
    with pytest.raises(ValueError, match="indices"):
        leave_one_out(model, "categorical", (x, y), (x, y), [20], l2=1.0)
    with pytest.raises(TypeError, match="indices"):
        leave_one_out(model, "categorical", (x, y), (x, y), [0.5], l2=1.0)
    with pytest.raises(ValueError, match="tol"):
        fit_newton(model, "categorical", x, y, tol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        fit_newton(model, "categorical", x, y, max_steps=0)
    with pytest.raises(RuntimeError, match="did not reach"):
        fit_newton(model, "categorical", x, y, l2=1.0, max_steps=1, tol=1e-14)


# --------------------------------------------------------------------------- one core (issue 13)
def _jacobian_and_output_hessian(model, loss, x, y):
    """J_i (n, K, P) and the output Hessians of the loss (n, K, K), by torch.func, independently of the core."""
    names = [k for k, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())

    def out(ps, xi):
        return torch.func.functional_call(model, dict(zip(names, ps)), (xi.unsqueeze(0),)).reshape(-1)

    J = torch.func.vmap(torch.func.jacrev(out), in_dims=(None, 0))(params, x)
    J = torch.cat([j.reshape(x.shape[0], j.shape[1], -1) for j in J], dim=-1)
    f = model(x).detach()
    Hout = torch.func.vmap(torch.func.hessian(lambda o, t: loss(o.unsqueeze(0), t.unsqueeze(0)).sum()))(f, y)
    return J, Hout


@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli", "gaussian"])
def test_per_example_loss_is_the_core_negative_log_likelihood(likelihood):
    from fisherbook.curvature.likelihoods import get_likelihood

    g = torch.Generator().manual_seed(3)
    f = torch.randn(7, 1 if likelihood == "bernoulli" else 4, generator=g, dtype=D)
    if likelihood == "categorical":
        y = torch.randint(0, 4, (7,), generator=g)
        ref = nn.functional.cross_entropy(f, y, reduction="none")
    elif likelihood == "bernoulli":
        y = torch.randint(0, 2, (7, 1), generator=g).double()
        ref = nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none").sum(1)
    else:
        y = torch.randn(7, 4, generator=g, dtype=D)
        ref = 0.5 * ((f - y) ** 2).sum(1)  # unit noise, constant dropped
    got = per_example_loss(likelihood)(f, y)
    torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)
    # ... and it is -log p of the core likelihood (the Gaussian's normalising constant aside)
    const = 4 * 0.5 * np.log(2 * np.pi) if likelihood == "gaussian" else 0.0
    core = -get_likelihood(likelihood).log_prob(f, y) - const
    torch.testing.assert_close(got, core, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name, loss", [
    ("categorical", lambda o, t: nn.functional.cross_entropy(o, t, reduction="none")),
    ("gaussian", lambda o, t: 0.5 * ((o - t) ** 2).sum(1)),
])
def test_ggn_from_the_core_equals_J_H_J_and_callable_equals_named(name, loss):
    # The GGN is now n * curvature.fisher(kind="true"): check it against sum_i J_i^T H_i J_i built
    # here with torch.func, and check that the same loss given as a callable (through the adapter
    # whose factor is the root of the output Hessian) gives the same matrix.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(25, 3, generator=g, dtype=D)
    y = torch.randint(0, 3, (25,), generator=g) if name == "categorical" else torch.randn(25, 3, generator=g, dtype=D)
    J, Hout = _jacobian_and_output_hessian(model, loss, x, y)
    ref = torch.einsum("ncp,ncd,ndq->pq", J, Hout, J) + 0.3 * torch.eye(J.shape[-1], dtype=D)
    named = objective_curvature(model, name, x, y, kind="ggn", l2=0.3)
    custom = objective_curvature(model, loss, x, y, kind="ggn", l2=0.3)
    torch.testing.assert_close(named, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(custom, ref, rtol=1e-12, atol=1e-12)
    # empirical Fisher and influence gradients: named (core per-example gradients) = callable
    torch.testing.assert_close(objective_curvature(model, name, x, y, kind="empirical"),
                               objective_curvature(model, loss, x, y, kind="empirical"), rtol=1e-12, atol=1e-12)


def test_frozen_parameters_are_held_fixed_and_left_out():
    # theta is the trainable parameters only: with the bias frozen, every result equals that of the
    # same model without a bias whose outputs are shifted by the frozen bias
    model, x, y = _softmax_problem(n=40)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=D))
    model.bias.requires_grad_(False)
    fit_newton(model, "categorical", x, y, l2=0.5)

    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3, bias=False).double()

        def forward(self, z):
            return self.lin(z) + torch.tensor([0.3, -0.2, 0.1], dtype=D)

    ref = Shifted()
    with torch.no_grad():
        ref.lin.weight.copy_(model.weight)
    assert torch.equal(model.bias, torch.tensor([0.3, -0.2, 0.1], dtype=D))  # fit_newton left it alone
    for kind in ("hessian", "ggn", "empirical"):
        a = objective_curvature(model, "categorical", x, y, kind=kind, l2=0.5)
        b = objective_curvature(ref, "categorical", x, y, kind=kind, l2=0.5)
        assert a.shape == (15, 15)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    test = (x[:3], y[:3])
    torch.testing.assert_close(influence_scores(model, "categorical", (x, y), test, l2=0.5, curvature="ggn"),
                               influence_scores(ref, "categorical", (x, y), test, l2=0.5, curvature="ggn"),
                               rtol=1e-12, atol=1e-14)


def test_chord_newton_converges_linearly_to_newtons_root_and_reports_failure():
    # the chord iteration with a fixed matrix near the Hessian reaches the same root as Newton
    # on a smooth strictly convex objective (ridge-logistic), and says so when it runs out of steps
    from fisherbook._numerics import chord_newton, newton

    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = (torch.rand(40, generator=g, dtype=torch.float64) < torch.sigmoid(X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))).double()

    def value(w):
        return torch.nn.functional.softplus(X @ w).sum() - (y * (X @ w)).sum() + 0.5 * (w * w).sum()

    def fun(w):
        p = torch.sigmoid(X @ w)
        return value(w), X.T @ (p - y) + w, X.T @ (X * (p * (1 - p))[:, None]) + torch.eye(3, dtype=torch.float64)

    w0 = torch.zeros(3, dtype=torch.float64)
    exact = newton(fun, value, w0, tol=1e-13, max_iter=50, criterion="gradient")
    assert bool(exact.converged)
    M = fun(w0)[2]  # the Hessian at the start, not at the root
    w, iters, ok = chord_newton(lambda w: fun(w)[1], w0, M, tol=1e-11, max_iter=200)
    assert ok and iters > 3  # linear, not quadratic, convergence: more steps than Newton's
    assert torch.allclose(w, exact.x, atol=1e-9)
    _, _, ok1 = chord_newton(lambda w: fun(w)[1], w0, M, tol=1e-11, max_iter=1)
    assert not ok1


def test_fit_newton_from_a_nonconvex_start_reaches_a_minimum():
    # a tanh network starts where the Hessian is indefinite; the damped solver still stops at a
    # point with a small gradient and a positive-definite Hessian
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    x = torch.randn(30, 2, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + x[:, 1:] ** 2
    fit_newton(net, "gaussian", x, y, l2=0.1, tol=1e-8, max_steps=200)
    theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach()

    def J(t):
        w1, b1, w2, b2 = t[:6].view(3, 2), t[6:9], t[9:12].view(1, 3), t[12:]
        out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
        return 0.5 * ((out - y) ** 2).sum() + 0.05 * (t * t).sum()

    grad = torch.func.grad(J)(theta)
    H = torch.func.hessian(J)(theta)
    assert float(grad.norm()) <= 1e-8
    assert float(torch.linalg.eigvalsh(H)[0]) > 0


def _loader_problem():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(37, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (37,), generator=g)
    torch.manual_seed(5)
    return torch.nn.Linear(3, 3).double(), x, y


def test_objective_curvature_over_batches_equals_the_whole_tensor():
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = _loader_problem()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # uneven last batch
    for kind in ("hessian", "ggn", "empirical"):
        whole = objective_curvature(model, "categorical", x, y, kind=kind, l2=0.3)
        for data in (loader, [(x[:20], y[:20]), (x[20:], y[20:])], ((x[i:i + 9], y[i:i + 9]) for i in range(0, 37, 9))):
            parts = objective_curvature(model, "categorical", data, kind=kind, l2=0.3)
            assert torch.allclose(parts, whole, rtol=1e-12, atol=1e-12), kind


def test_fit_newton_and_influence_over_batches_equal_the_whole_tensor():
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = _loader_problem()
    twin = torch.nn.Linear(3, 3).double()
    twin.load_state_dict(model.state_dict())
    fit_newton(model, "categorical", x, y, l2=0.5, tol=1e-11)
    fit_newton(twin, "categorical", DataLoader(TensorDataset(x, y), batch_size=10), l2=0.5, tol=1e-11)
    assert torch.allclose(model.weight, twin.weight, atol=1e-10) and torch.allclose(model.bias, twin.bias, atol=1e-10)
    test = (x[:6] + 0.1, y[:6])
    for curvature in ("hessian", "ggn"):
        whole = influence_scores(model, "categorical", (x, y), test, l2=0.5, curvature=curvature)
        parts = influence_scores(model, "categorical", DataLoader(TensorDataset(x, y), batch_size=10),
                                 [(test[0][:4], test[1][:4]), (test[0][4:], test[1][4:])], l2=0.5, curvature=curvature)
        assert parts.shape == (37,)
        assert torch.allclose(parts, whole, rtol=1e-10, atol=1e-13), curvature


def test_batches_without_targets_and_loaders_for_leave_one_out_are_refused():
    from torch.utils.data import DataLoader, TensorDataset

    from fisherbook.errors import ArgumentTypeError, ShapeError

    model, x, y = _loader_problem()
    with pytest.raises(ShapeError, match="batch 0 of inputs has no targets"):
        objective_curvature(model, "categorical", [x[:5], x[5:20], x[20:]])  # (two tensors would read as a pair)
    with pytest.raises(ArgumentTypeError, match="pair"):
        objective_curvature(model, "categorical", x)  # a tensor needs its targets
    with pytest.raises(ArgumentTypeError, match="pair"):
        leave_one_out(model, "categorical", DataLoader(TensorDataset(x, y), batch_size=10), (x, y), [0], l2=1.0)
