"""Tests for the continual-learning methods beyond EWC's diagonal: loaders for the Fisher, the
batched empirical Fisher, MAS and SI importances (against hand computations), the K-FAC Laplace
penalty (against the dense form), scenarios with heads, and replay."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fisherbook as fb
from fisherbook.continual import (
    EWC,
    MAS,
    SI,
    HeadTask,
    HeadView,
    KFACLaplace,
    Replay,
    batched_empirical_fisher,
    diagonal_fisher,
    evaluate,
    kfac_penalty,
    make_mlp,
    mas_importance,
    si_importance,
    split_digits_scenario,
    train_sequence,
)
from fisherbook.data import Task

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def _data(n=23, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D), torch.randint(0, k, (n,), generator=g)


def _net(d=5, k=3, hidden=(4,), seed=0):
    return make_mlp(d, hidden, k, seed=seed, dtype=D)


def _close(a, b, tol=1e-12):
    return all(torch.allclose(p, q, rtol=0, atol=tol) for p, q in zip(a, b)) and len(a) == len(b)


# --------------------------------------------------------------------------- Fisher from loaders (#16)
@pytest.mark.parametrize("kind", ["true", "empirical"])
@pytest.mark.parametrize("batch_size", [1, 5, 100])
def test_diagonal_fisher_from_a_loader_equals_the_one_tensor_result(kind, batch_size):
    X, y = _data()
    net = _net()
    ref = diagonal_fisher(net, X, kind=kind, targets=y if kind == "empirical" else None)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(1))  # order does not matter for a mean
    assert _close(diagonal_fisher(net, loader, kind=kind), ref)
    if kind == "true":  # plain input batches, uneven sizes: each weighted by its size
        assert _close(diagonal_fisher(net, [X[:2], X[2:19], X[19:]], kind=kind), ref)


def test_mc_fisher_from_batches_uses_the_same_draws():
    X, _ = _data()
    net = _net()
    a = diagonal_fisher(net, X, kind="mc", n_samples=3, generator=torch.Generator().manual_seed(0))
    b = diagonal_fisher(net, [X[:10], X[10:]], kind="mc", n_samples=3, generator=torch.Generator().manual_seed(0))
    assert _close(a, b)


def test_ewc_consolidate_from_a_loader_equals_after_task():
    X, y = _data()
    net = _net()
    for kind in ("true", "empirical"):
        a, b = EWC(1.0, kind=kind), EWC(1.0, kind=kind)
        a.after_task(net, Task("A", X, y, X, y))
        b.consolidate(net, DataLoader(TensorDataset(X, y), batch_size=4))
        assert _close(a.fishers[0], b.fishers[0])
        assert _close(a.anchors[0], b.anchors[0], tol=0)


def test_ewc_consolidate_refuses_what_it_cannot_use():
    X, y = _data()
    net = _net()
    with pytest.raises(fb.errors.ArgumentTypeError, match="targets"):
        EWC(1.0, kind="empirical").consolidate(net, X)
    with pytest.raises(fb.errors.ArgumentTypeError, match="Task"):
        EWC(1.0, kind="true").consolidate(net, Task("A", X, y, X, y))
    with pytest.raises(fb.errors.ArgumentTypeError, match="DataLoader"):
        diagonal_fisher(net, TensorDataset(X), kind="true")


# --------------------------------------------------------------------------- batched empirical Fisher
def test_batched_empirical_fisher_by_hand_on_a_linear_softmax():
    # the gradient of the mean cross-entropy of a linear softmax model is mean_n (p_n - e_{y_n}) [x_n, 1]^T
    X, y = _data(n=10, d=3, k=3)
    net = nn.Linear(3, 3).double()
    got = batched_empirical_fisher(net, X, y, batch_size=4)   # batches of 4, 4 and 2: unweighted mean
    want_w, want_b = torch.zeros(3, 3, dtype=D), torch.zeros(3, dtype=D)
    with torch.no_grad():
        for s in range(0, 10, 4):
            xb, yb = X[s:s + 4], y[s:s + 4]
            r = torch.softmax(net(xb), -1) - torch.nn.functional.one_hot(yb, 3).double()
            want_w += (r.T @ xb / len(yb)) ** 2
            want_b += r.mean(0) ** 2
    assert _close(got, [want_w / 3, want_b / 3])
    loader = [(X[s:s + 4], y[s:s + 4]) for s in range(0, 10, 4)]
    assert _close(batched_empirical_fisher(net, loader), got)


def test_ewc_batched_empirical_kind_uses_the_estimator():
    X, y = _data(n=30)
    net = _net()
    ewc = EWC(1.0, kind="batched_empirical", batch_size=8)
    ewc.after_task(net, Task("A", X, y, X, y))
    assert _close(ewc.fishers[0], batched_empirical_fisher(net, X, y, batch_size=8))
    # at B = 1 it is the per-example empirical Fisher; with B = 8 it is smaller (squares of means)
    emp = diagonal_fisher(net, X, kind="empirical", targets=y)
    assert sum(float(f.sum()) for f in ewc.fishers[0]) < sum(float(f.sum()) for f in emp)


# --------------------------------------------------------------------------- MAS
def test_mas_importance_by_hand_on_a_linear_model():
    X, _ = _data(n=7, d=4)
    net = nn.Linear(4, 3).double()
    with torch.no_grad():
        f = net(X)
    want_w = (2 * f[:, :, None] * X[:, None, :]).abs().mean(0)   # d||Wx+b||^2/dW = 2 f x^T
    want_b = (2 * f).abs().mean(0)
    got = mas_importance(net, X)
    assert _close(got, [want_w, want_b])
    assert _close(mas_importance(net, DataLoader(TensorDataset(X), batch_size=3)), got)


def test_mas_importance_of_an_mlp_matches_a_per_example_loop():
    X, _ = _data(n=6)
    net = _net(hidden=(4, 3))
    want = [torch.zeros_like(p) for p in net.parameters()]
    for x in X:
        gs = torch.autograd.grad((net(x[None]) ** 2).sum(), list(net.parameters()))
        for w, g in zip(want, gs):
            w += g.abs() / len(X)
    assert _close(mas_importance(net, X), want)


def test_mas_strategy_sums_importances_and_anchors_at_the_latest_task():
    X, y = _data()
    net = _net()
    mas = MAS(2.0)
    mas.after_task(net, Task("A", X, y, X, y))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    mas.after_task(net, Task("B", X[:10], y[:10], X, y))
    assert _close(mas.importance, [a + b for a, b in zip(*mas.importances)])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2)
    want = 0.5 * 2.0 * sum(float((w * 0.04).sum()) for w in mas.importance)
    assert abs(float(mas.penalty(net).detach()) - want) < 1e-10


# --------------------------------------------------------------------------- SI
def test_si_importance_formula_and_clipping():
    out = si_importance([torch.tensor([2.0, -1.0, 0.0])], [torch.tensor([1.0, 3.0, 0.0])], xi=0.5)
    assert torch.allclose(out[0], torch.tensor([2.0 / 1.5, 0.0, 0.0]))


def test_si_path_integral_by_hand_for_gradient_descent_on_a_quadratic():
    # loss 1/2 a th^2, gradient descent th <- th - eta a th: omega = sum_t eta (a th_t)^2
    a, eta, th0, steps, xi = 2.0, 0.1, 1.5, 6, 0.1
    p = nn.Parameter(torch.tensor([th0], dtype=D))
    model = nn.Module()
    model.p = p
    si = SI(1.0, xi=xi)
    omega, th = 0.0, th0
    for _ in range(steps):
        p.grad = None
        (0.5 * a * p ** 2).sum().backward()
        si.before_step(model)
        with torch.no_grad():
            p -= eta * p.grad
        si.after_step(model)
        omega += eta * (a * th) ** 2
        th -= eta * a * th
    si.after_task(model, None)
    want = omega / ((th - th0) ** 2 + xi)
    assert abs(float(si.importance[0]) - want) < 1e-12


def test_si_path_integral_sums_to_the_loss_decrease_for_small_steps():
    # the path integral of -grad . dtheta along the trajectory is the loss drop; gradient descent's
    # Riemann sum overestimates it by O(eta) (each step uses the gradient at its start)
    X, y = _data(n=20)
    net = _net()
    loss_fn = nn.CrossEntropyLoss()
    si = SI(1.0)
    with torch.no_grad():
        start = float(loss_fn(net(X), y))
    for _ in range(200):
        net.zero_grad()
        loss_fn(net(X), y).backward()
        si.before_step(net)
        with torch.no_grad():
            for q in net.parameters():
                q -= 0.01 * q.grad
        si.after_step(net)
    with torch.no_grad():
        drop = start - float(loss_fn(net(X), y))
    omega = sum(float(w.sum()) for w in si._omega)
    assert drop > 0.05 and 0 < omega - drop < 0.02 * drop


def test_si_in_train_sequence_gives_nonnegative_importances_and_zero_penalty_at_the_anchor():
    sc = split_digits_scenario("domain", n_tasks=2, seed=0, dtype=D)
    net = make_mlp(64, (8,), 2, seed=0, dtype=D)
    si = SI(1.0)
    train_sequence(net, sc.tasks, si, epochs=1, seed=0)
    assert len(si.importances) == 2 and all(bool((w >= 0).all()) for w in si.importance)
    assert sum(float(w.sum()) for w in si.importances[0]) > 0
    assert float(si.penalty(net)) == 0.0


# --------------------------------------------------------------------------- K-FAC Laplace
def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), lam=st.floats(0.0, 100.0), bias=st.booleans())
def test_kfac_penalty_value_and_gradient_equal_the_dense_form(seed, lam, bias):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3)).double()
    X, y = _data(n=9, d=4, seed=seed)
    Ks = [fb.curvature.fisher(net, X, kind="true", representation="kfac"),
          fb.curvature.fisher(net, X[:4], kind="empirical", targets=y[:4], representation="kfac")]
    anchor = [p.detach() + 0.3 * torch.randn_like(p) for p in net.parameters()]
    dense = sum(K.to_dense() for K in Ks)
    d = _flat([p - a for p, a in zip(net.parameters(), anchor)])
    value = kfac_penalty(net.parameters(), anchor, Ks, lam)
    grads = torch.autograd.grad(value, list(net.parameters()))
    assert abs(float(value) - float(0.5 * lam * d @ dense @ d)) < 1e-10 * (1 + abs(float(value)))
    assert torch.allclose(_flat(grads), lam * dense @ d.detach(), atol=1e-10)


def test_kfac_laplace_strategy_sums_task_precisions_at_the_latest_anchor():
    X, y = _data(n=15)
    net = _net(hidden=(4,))
    s = KFACLaplace(3.0, kind="true")
    s.after_task(net, Task("A", X, y, X, y))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.1)
    s.after_task(net, Task("B", X[5:], y[5:], X, y))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05)
    assert abs(float(s.penalty(net)) - float(kfac_penalty(net.parameters(), s.anchor, s.fishers, 3.0))) < 1e-12
    assert float(s.penalty(net)) > 0


def test_kfac_penalty_is_exact_where_kfac_is_exact():
    # a linear model with a Gaussian likelihood: the back-propagated factors are constant, so the
    # Fisher is I (x) mean(a a^T) exactly, and the K-FAC penalty is the full Laplace penalty
    X, _ = _data(n=12, d=3)
    net = nn.Linear(3, 2).double()
    K = fb.curvature.fisher(net, X, likelihood="gaussian", representation="kfac")
    F = fb.curvature.fisher(net, X, likelihood="gaussian", representation="dense").to_dense()
    anchor = [torch.zeros_like(p) for p in net.parameters()]
    d = _flat([p.detach() for p in net.parameters()])
    assert abs(float(kfac_penalty(net.parameters(), anchor, K, 1.0)) - float(0.5 * d @ F @ d)) < 1e-12
    # while the diagonal penalty is not (the input features are correlated with the bias column)
    diag = float(0.5 * (torch.diagonal(F) * d ** 2).sum())
    assert abs(diag - float(0.5 * d @ F @ d)) > 1e-3


# --------------------------------------------------------------------------- scenarios and heads
def test_scenarios_labels_heads_and_outputs():
    task, dom, cls = (split_digits_scenario(s, seed=1, dtype=D) for s in ("task", "domain", "class"))
    assert (task.n_out, dom.n_out, cls.n_out) == (10, 2, 10)
    for t, (a, b, c) in enumerate(zip(task.tasks, dom.tasks, cls.tasks)):
        assert a.head == (2 * t, 2 * t + 1)
        assert set(a.y_train.tolist()) == set(b.y_train.tolist()) == {0, 1}
        assert set(c.y_train.tolist()) == {2 * t, 2 * t + 1}
        assert torch.equal(a.X_train, c.X_train) and torch.equal(c.y_train - 2 * t, b.y_train)


def test_evaluate_takes_the_argmax_within_the_head():
    X = torch.zeros(4, 2, dtype=D)
    net = nn.Linear(2, 4).double()
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([5.0, 0.0, 1.0, 2.0], dtype=D))   # unit 0 wins overall, unit 3 in head (2, 3)
    y = torch.ones(4, dtype=torch.int64)
    with_head = HeadTask("2/3", X, y, X, y, head=(2, 3))
    plain = Task("0-3", X, 3 * y, X, 3 * y)
    assert evaluate(net, [with_head, plain]).tolist() == [1.0, 0.0]


def test_task_incremental_training_leaves_other_heads_untouched_and_fisher_sees_the_head():
    sc = split_digits_scenario("task", n_tasks=2, seed=0, dtype=D)
    net = make_mlp(64, (8,), 10, seed=0, dtype=D)
    w0 = net[-1].weight.detach().clone()
    ewc = EWC(1.0, kind="true")
    train_sequence(net, sc.tasks[:1], ewc, epochs=1, seed=0)
    moved = (net[-1].weight.detach() - w0).abs().sum(1) > 0
    assert moved.tolist() == [True, True] + [False] * 8     # only task 0/1's output rows are trained
    F_out = ewc.fishers[0][-2]                                # the output layer's weight Fisher
    assert bool((F_out[2:] == 0).all()) and bool((F_out[:2] > 0).all())
    view = HeadView(net, (0, 1))
    assert [n for n, _ in view.named_parameters()] == [f"model.{n}" for n, _ in net.named_parameters()]


# --------------------------------------------------------------------------- replay
def test_replay_memory_and_loss_by_hand():
    sc = split_digits_scenario("class", n_tasks=2, seed=0, dtype=D)
    net = make_mlp(64, (8,), 10, seed=0, dtype=D)
    r = Replay(per_class=3, weight=0.5, seed=0)
    assert r.penalty(net) is None
    for t in sc.tasks:
        r.after_task(net, t)
    X = torch.cat([m[0] for m in r.memory])
    y = torch.cat([m[1] for m in r.memory])
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    want = 0.5 * torch.nn.functional.cross_entropy(net(X), y)
    assert torch.allclose(r.penalty(net), want)
    # stored examples are training examples of their class
    for (Xm, ym, _), t in zip(r.memory, sc.tasks):
        for x, c in zip(Xm, ym):
            assert bool(((t.X_train == x).all(1) & (t.y_train == c)).any())


def test_replay_with_heads_uses_each_memory_through_its_head():
    sc = split_digits_scenario("task", n_tasks=2, seed=0, dtype=D)
    net = make_mlp(64, (8,), 10, seed=0, dtype=D)
    r = Replay(per_class=2)
    r.after_task(HeadView(net, sc.tasks[1].head), sc.tasks[1])
    Xm, ym, head = r.memory[0]
    assert head == (2, 3)
    assert torch.allclose(r.penalty(net), torch.nn.functional.cross_entropy(net(Xm)[:, [2, 3]], ym))


@pytest.mark.slow
def test_replay_beats_ewc_in_class_incremental_learning():
    # the scenario's lesson, in the chapter's setting (seed 0; margins 0.6 and 0.2 in the sweep's seeds)
    sc = split_digits_scenario("class", seed=0, dtype=D)
    res = {}
    for name, s in (("ewc", EWC(100.0, kind="true")), ("replay", Replay(5))):
        res[name] = train_sequence(make_mlp(64, (100, 100), 10, seed=0, dtype=D), sc.tasks, s, epochs=20, seed=0)
    assert res["replay"].average_accuracy > res["ewc"].average_accuracy + 0.3
    assert float(res["ewc"].R[-1, :3].max()) < 0.5 < float(res["replay"].R[-1, :3].min())
