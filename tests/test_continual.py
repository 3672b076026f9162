"""Tests for fisherbook.continual.ewc: EWC penalties, online accumulation, Fisher overlap, training loop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fisherbook.continual.ewc import (
    EWC,
    L2,
    FineTuning,
    Strategy,
    average_accuracy,
    backward_transfer,
    diagonal_fisher,
    evaluate,
    ewc_penalty,
    fisher_overlap,
    forgetting,
    l2_penalty,
    make_mlp,
    online_fisher_update,
    train_sequence,
)
from fisherbook.data import Task, permuted_digits


def _random_like(params, g, positive=False):
    out = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    return [t.abs() for t in out] if positive else out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tasks3():
    return permuted_digits(n_tasks=3, seed=0)


# --------------------------------------------------------------------------- penalties
@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=2), min_size=1, max_size=3),
    lam=st.floats(0.0, 1e3),
    seed=st.integers(0, 2**16),
)
def test_penalty_gradient_is_lam_F_times_displacement(shapes, lam, seed):
    g = torch.Generator().manual_seed(seed)
    theta = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]
    anchor = _random_like(theta, g)
    fisher = _random_like(theta, g, positive=True)
    value = ewc_penalty(theta, anchor, fisher, lam)
    grads = torch.autograd.grad(value, theta)
    for gr, p, a, f in zip(grads, theta, anchor, fisher):
        torch.testing.assert_close(gr, lam * f * (p.detach() - a), rtol=1e-12, atol=1e-12)
    expected = 0.5 * lam * sum(float((f * (p.detach() - a) ** 2).sum()) for p, a, f in zip(theta, anchor, fisher))
    assert value.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_penalty_and_gradient_vanish_at_the_anchor():
    net = make_mlp(5, (4,), 3, seed=1, dtype=torch.float64)
    anchor = [p.detach().clone() for p in net.parameters()]
    fisher = _random_like(anchor, torch.Generator().manual_seed(0), positive=True)
    value = ewc_penalty(net.parameters(), anchor, fisher, lam=123.0)
    assert value.item() == 0.0
    grads = torch.autograd.grad(value, list(net.parameters()))
    assert all(float(gr.abs().max()) == 0.0 for gr in grads)


def test_penalty_follows_model_dtype_and_avalanche_convention():
    theta = [torch.tensor([1.0, -2.0], dtype=torch.float64)]
    anchor, fisher = [torch.zeros(2)], [torch.tensor([3.0, 0.5])]
    value = ewc_penalty(theta, anchor, fisher, lam=2.0)
    assert value.dtype == torch.float64
    # Kirkpatrick's lam/2: lam = 2 here equals Avalanche's sum F (theta - theta*)^2 with lam = 1
    assert float(value) == pytest.approx(float((fisher[0].double() * theta[0] ** 2).sum()))


def test_l2_penalty_is_ewc_with_unit_fisher():
    g = torch.Generator().manual_seed(2)
    theta = [torch.randn(3, 2, generator=g), torch.randn(4, generator=g)]
    anchor = _random_like(theta, g)
    torch.testing.assert_close(
        l2_penalty(theta, anchor, 0.7), ewc_penalty(theta, anchor, [torch.ones_like(t) for t in theta], 0.7)
    )
    expected = 0.35 * sum(float(((t - a) ** 2).sum()) for t, a in zip(theta, anchor))
    assert float(l2_penalty(theta, anchor, 0.7)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("lam", [-1.0, -1e-9, float("nan"), float("inf")])
def test_negative_or_nonfinite_lambda_is_rejected(lam):
    theta = [torch.zeros(2)]
    with pytest.raises(ValueError, match="lam"):
        ewc_penalty(theta, [torch.zeros(2)], [torch.ones(2)], lam)
    with pytest.raises(ValueError, match="lam"):
        EWC(lam, kind="true")
    with pytest.raises(ValueError, match="lam"):
        L2(lam)


def test_lambda_of_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="lam"):
        ewc_penalty([torch.zeros(2)], [torch.zeros(2)], [torch.ones(2)], "1")


def test_fisher_shape_mismatch_is_named():
    net = nn.Linear(3, 2)
    params = list(net.parameters())
    anchor = [p.detach() for p in params]
    with pytest.raises(ValueError, match=r"fisher\[0\] has shape \(3, 2\)"):
        ewc_penalty(params, anchor, [torch.ones(3, 2), torch.ones(2)], 1.0)
    with pytest.raises(ValueError, match="fisher has 1 tensors"):
        ewc_penalty(params, anchor, [torch.ones(2, 3)], 1.0)
    with pytest.raises(ValueError, match="anchor"):
        ewc_penalty(params, [torch.zeros(6), torch.zeros(2)], [torch.ones(2, 3), torch.ones(2)], 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        ewc_penalty(params, anchor, [-torch.ones(2, 3), torch.ones(2)], 1.0)


# --------------------------------------------------------------------------- online EWC
def test_online_update_rule_and_no_mutation():
    g = torch.Generator().manual_seed(0)
    F1 = [torch.rand(2, 3, generator=g), torch.rand(2, generator=g)]
    F2 = [torch.rand(2, 3, generator=g), torch.rand(2, generator=g)]
    F3 = [torch.rand(2, 3, generator=g), torch.rand(2, generator=g)]
    copies = [t.clone() for t in F1 + F2]
    run = online_fisher_update(None, F1, gamma=0.9)
    assert all(torch.equal(a, b) for a, b in zip(run, F1)) and run[0] is not F1[0]
    run = online_fisher_update(run, F2, gamma=0.9)
    run = online_fisher_update(run, F3, gamma=0.9)
    for k in range(2):  # closed form of the recursion: gamma^2 F1 + gamma F2 + F3
        torch.testing.assert_close(run[k], 0.81 * F1[k] + 0.9 * F2[k] + F3[k])
    assert all(torch.equal(a, b) for a, b in zip(copies, F1 + F2))
    gamma0 = online_fisher_update(F1, F2, gamma=0.0)
    assert all(torch.equal(a, b) for a, b in zip(gamma0, F2))


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_online_update_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        online_fisher_update(None, [torch.ones(2)], gamma)
    with pytest.raises(ValueError, match="gamma"):
        EWC(1.0, kind="true", online=True, gamma=gamma)


def test_online_update_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="fisher_new"):
        online_fisher_update([torch.ones(2)], [torch.ones(3)], 1.0)


def _fake_task(g, n=20, d=4, k=3):
    X = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return Task("fake", X, y, X, y)


def test_separate_and_online_penalties_match_their_definitions():
    g = torch.Generator().manual_seed(4)
    net = make_mlp(4, (5,), 3, seed=0)
    sep, onl = EWC(7.0, kind="true"), EWC(7.0, kind="true", online=True, gamma=0.5)
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        task = _fake_task(g)
        sep.after_task(net, task)
        onl.after_task(net, task)
        snapshots.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(sep.fishers, onl.fishers):  # same model, same data: the same Fishers
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    params = list(net.parameters())
    expected_sep = sum(ewc_penalty(params, a, f, 7.0) for a, f in zip(snapshots, sep.fishers))
    torch.testing.assert_close(sep.penalty(net), expected_sep)
    F = sep.fishers
    running = [0.25 * F[0][k] + 0.5 * F[1][k] + F[2][k] for k in range(len(params))]
    torch.testing.assert_close(onl.penalty(net), ewc_penalty(params, snapshots[-1], running, 7.0))
    assert not torch.allclose(sep.penalty(net), onl.penalty(net))


def test_one_task_online_equals_separate():
    g = torch.Generator().manual_seed(5)
    net = make_mlp(4, (5,), 3, seed=0)
    task = _fake_task(g)
    sep, onl = EWC(3.0, kind="true"), EWC(3.0, kind="true", online=True, gamma=0.3)
    sep.after_task(net, task)
    onl.after_task(net, task)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    torch.testing.assert_close(sep.penalty(net), onl.penalty(net))


def test_ewc_requires_an_explicit_valid_kind():
    with pytest.raises(TypeError):
        EWC(1.0)  # the Fisher kind is a modelling choice: no default
    with pytest.raises(ValueError, match="kind"):
        EWC(1.0, kind="exact")
    with pytest.raises(ValueError, match="n_samples"):
        EWC(1.0, kind="mc", n_samples=0)


# --------------------------------------------------------------------------- diagonal Fisher
def _loop_fisher(net, X, y, kind):
    """Diagonal Fisher by an explicit loop over examples and classes (independent of torch.func)."""
    params = list(net.parameters())
    out = [torch.zeros_like(p) for p in params]
    for x, yn in zip(X, y):
        logp = torch.log_softmax(net(x[None]), dim=-1)[0]
        classes = range(logp.shape[0]) if kind == "true" else [int(yn)]
        for c in classes:
            grads = torch.autograd.grad(logp[c], params, retain_graph=True)
            w = logp[c].exp().detach() if kind == "true" else 1.0
            for o, gr in zip(out, grads):
                o += w * gr**2
    return [o / X.shape[0] for o in out]


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_diagonal_fisher_matches_an_explicit_loop(kind):
    g = torch.Generator().manual_seed(0)
    net = make_mlp(4, (6, 5), 3, seed=2, dtype=torch.float64)
    X = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    F = diagonal_fisher(net, X, kind=kind, targets=y)
    ref = _loop_fisher(net, X, y, kind)
    assert [f.shape for f in F] == [p.shape for p in net.parameters()]
    for f, r in zip(F, ref):
        assert f.dtype == torch.float64
        torch.testing.assert_close(f, r, rtol=1e-10, atol=1e-12)


def test_mc_fisher_is_unbiased_for_the_true_fisher():
    g = torch.Generator().manual_seed(1)
    net = make_mlp(3, (4,), 3, seed=0, dtype=torch.float64)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    true = torch.cat([f.flatten() for f in diagonal_fisher(net, X, kind="true")])
    draws = torch.stack(
        [torch.cat([f.flatten() for f in diagonal_fisher(net, X, kind="mc", n_samples=50, generator=g)]) for _ in range(8)]
    )
    mean, se = draws.mean(0), draws.std(0) / 8**0.5
    # each entry within 5 standard errors (plus a floor for entries with tiny variance)
    assert ((mean - true).abs() <= 5 * se + 1e-3 * true.max()).all()


def test_diagonal_fisher_argument_checks():
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="kind"):
        diagonal_fisher(net, torch.zeros(3, 2), kind="ggn")
    with pytest.raises(ValueError, match="targets"):
        diagonal_fisher(net, torch.zeros(3, 2), kind="empirical")


# --------------------------------------------------------------------------- Fisher overlap
def test_overlap_matches_the_dense_frechet_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(7, generator=g, dtype=torch.float64), torch.rand(7, generator=g, dtype=torch.float64)
    A, B = np.diag((a / a.sum()).numpy()), np.diag((b / b.sum()).numpy())
    d2 = 0.5 * np.trace(A + B - 2 * scipy.linalg.sqrtm(A @ B)).real
    assert float(fisher_overlap(a, b)) == pytest.approx(1 - d2, rel=1e-10)


def test_overlap_invariances_and_limits():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(10, generator=g), torch.rand(10, generator=g)
    assert float(fisher_overlap(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(fisher_overlap(a, 5.0 * a)) == pytest.approx(1.0, abs=1e-6)  # scale-free
    assert float(fisher_overlap(a, b)) == pytest.approx(float(fisher_overlap(b, a)), abs=1e-7)
    assert 0.0 < float(fisher_overlap(a, b)) < 1.0
    disjoint = fisher_overlap(torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0, 1.0]))
    assert float(disjoint) == 0.0
    as_lists = fisher_overlap([a[:4].reshape(2, 2), a[4:]], [b[:4].reshape(2, 2), b[4:]])
    assert float(as_lists) == pytest.approx(float(fisher_overlap(a, b)), abs=1e-7)


def test_overlap_rejects_bad_input():
    with pytest.raises(ValueError, match="fisher_a"):
        fisher_overlap(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="fisher_b"):
        fisher_overlap(torch.ones(3), torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="entries"):
        fisher_overlap(torch.ones(3), torch.ones(4))


# --------------------------------------------------------------------------- metrics
def test_metrics_on_a_hand_made_matrix():
    R = torch.tensor([[0.9, 0.2, 0.1], [0.7, 0.8, 0.1], [0.6, 0.5, 0.95]], dtype=torch.float64)
    assert average_accuracy(R) == pytest.approx((0.6 + 0.5 + 0.95) / 3)
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert forgetting(R) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)
    # when an old task improves after it was learned, forgetting counts from its best accuracy
    R2 = R.clone()
    R2[1, 0] = 0.97
    assert forgetting(R2) == pytest.approx(((0.97 - 0.6) + (0.8 - 0.5)) / 2)
    assert backward_transfer(R2) == backward_transfer(R)


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        backward_transfer(torch.ones(1, 1))
    with pytest.raises(ValueError, match="at least 2"):
        forgetting(torch.ones(1, 1))


# --------------------------------------------------------------------------- training loop
def test_accuracy_matrix_bookkeeping(tasks3):
    snapshots = []
    net = make_mlp(64, (32,), 10, seed=0)
    res = train_sequence(
        net, tasks3, FineTuning(), epochs=2, lr=1e-2, seed=0,
        callback=lambda i, m: snapshots.append({k: v.clone() for k, v in m.state_dict().items()}),
    )
    assert res.R.shape == (3, 3) and res.R.dtype == torch.float64 and res.names == ["P1", "P2", "P3"]
    assert len(snapshots) == 3 and len(res.losses) == 3
    probe = make_mlp(64, (32,), 10)
    for i, state in enumerate(snapshots):  # row i is the accuracy of the model after task i
        probe.load_state_dict(state)
        torch.testing.assert_close(res.R[i], evaluate(probe, tasks3))
    # hand count for one entry
    probe.load_state_dict(snapshots[1])
    pred = probe(tasks3[0].X_test).argmax(1)
    assert float(res.R[1, 0]) == pytest.approx(float((pred == tasks3[0].y_test).double().mean()))
    assert res.average_accuracy == pytest.approx(float(res.R[2].mean()))
    assert float(res.R.diagonal().min()) > 0.8  # each task is learned when it is trained


def test_zero_learning_rate_leaves_every_row_equal(tasks3):
    res = train_sequence(make_mlp(64, (16,), 10, seed=0), tasks3, EWC(10.0, kind="true"), epochs=1, lr=0.0)
    assert torch.equal(res.R[0], res.R[1]) and torch.equal(res.R[1], res.R[2])


def test_seeded_runs_are_deterministic(tasks3):
    runs = [
        train_sequence(make_mlp(64, (32,), 10, seed=3), tasks3, EWC(50.0, kind="mc", generator=torch.Generator().manual_seed(0)), epochs=2, seed=7)
        for _ in range(2)
    ]
    assert torch.equal(runs[0].R, runs[1].R) and runs[0].losses == runs[1].losses
    other = train_sequence(make_mlp(64, (32,), 10, seed=3), tasks3, FineTuning(), epochs=2, seed=8)
    assert other.losses != runs[0].losses


def test_ewc_with_zero_lambda_is_fine_tuning(tasks3):
    ft = train_sequence(make_mlp(64, (32,), 10, seed=1), tasks3, FineTuning(), epochs=2, seed=0)
    ewc0 = train_sequence(make_mlp(64, (32,), 10, seed=1), tasks3, EWC(0.0, kind="true"), epochs=2, seed=0)
    l20 = train_sequence(make_mlp(64, (32,), 10, seed=1), tasks3, L2(0.0), epochs=2, seed=0)
    assert torch.equal(ft.R, ewc0.R) and torch.equal(ft.R, l20.R)


def test_ewc_forgets_less_than_fine_tuning(tasks3):
    kw = dict(epochs=10, seed=0)
    ft = train_sequence(make_mlp(64, (64, 64), 10, seed=0), tasks3, FineTuning(), **kw)
    ewc = train_sequence(make_mlp(64, (64, 64), 10, seed=0), tasks3, EWC(100.0, kind="true"), **kw)
    drop_ft, drop_ewc = ft.R[0, 0] - ft.R[2, 0], ewc.R[0, 0] - ewc.R[2, 0]
    assert drop_ft > 0.1  # fine-tuning really forgets the first task after two permuted ones...
    assert drop_ewc < 0.5 * drop_ft  # ...and EWC loses less than half as much (seen: 0.18 vs 0.02)


def test_models_in_float64_train_in_float64(tasks3):
    net = make_mlp(64, (8,), 10, seed=0, dtype=torch.float64)
    ewc = EWC(1.0, kind="empirical")
    train_sequence(net, tasks3[:2], ewc, epochs=1)
    assert all(f.dtype == torch.float64 for f in ewc.fishers[0])
    assert next(net.parameters()).dtype == torch.float64


def test_train_sequence_argument_checks(tasks3):
    net = make_mlp(64, (8,), 10, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        train_sequence(net, tasks3, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        train_sequence(net, tasks3, batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        train_sequence(net, tasks3, lr=-1.0)
    with pytest.raises(ValueError, match="tasks"):  # a list, but an empty one: a wrong value
        train_sequence(net, [])
    with pytest.raises(TypeError, match="tasks"):
        train_sequence(net, [tasks3[0], "P2"])
    with pytest.raises(TypeError, match="strategy"):
        train_sequence(net, tasks3, strategy="ewc")


def test_custom_strategy_is_called_once_per_task(tasks3):
    class Counting(Strategy):
        name = "counting"

        def __init__(self):
            self.seen = []

        def after_task(self, model, task):
            self.seen.append(task.name)

    s = Counting()
    res = train_sequence(make_mlp(64, (8,), 10, seed=0), tasks3, s, epochs=1)
    assert s.seen == ["P1", "P2", "P3"] and res.strategy == "counting"


def test_make_mlp_seeded_and_validated():
    a, b = make_mlp(5, (7, 7), 2, seed=4), make_mlp(5, (7, 7), 2, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert sum(isinstance(m, nn.ReLU) for m in a) == 2
    state = torch.random.get_rng_state()
    make_mlp(5, (7,), 2, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    with pytest.raises(ValueError, match=r"hidden\[0\] must be an integer >= 1"):
        make_mlp(5, (0,), 2)


def test_l2_strategy_penalty_matches_the_function():
    g = torch.Generator().manual_seed(9)
    net = make_mlp(4, (5,), 3, seed=0)
    s = L2(lam=0.4)
    assert s.penalty(net) is None  # nothing to protect before the first task
    s.after_task(net, _fake_task(g))
    anchor = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    torch.testing.assert_close(s.penalty(net), l2_penalty(net.parameters(), anchor, 0.4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_run(tasks3):
    # everything follows the model's device; in float64 the two runs agree to the last printed digit
    results = {}
    for device in ("cpu", "cuda"):
        ewc = EWC(30.0, kind="true")
        model = make_mlp(64, (32, 32), 10, seed=0, dtype=torch.float64).to(device)
        results[device] = train_sequence(model, tasks3, ewc, epochs=3, seed=0).R
        assert all(f.device.type == device for f in ewc.fishers[0])
        assert ewc.penalty(model).device.type == device
    assert (results["cpu"] - results["cuda"]).abs().max() < 0.01


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-300, max_value=300), st.integers(min_value=-300, max_value=300), st.integers(0, 2**16))
def test_overlap_is_scale_free_over_the_whole_float64_range(ea, eb, seed):
    # scaling either Fisher by 10^k (k in [-300, 300], so traces that overflow or go subnormal)
    # leaves the overlap unchanged and inside [0, 1]
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(6, generator=g, dtype=torch.float64) + 0.01
    b = torch.rand(6, generator=g, dtype=torch.float64) + 0.01
    ref = float(fisher_overlap(a, b))
    got = float(fisher_overlap(a * 10.0**ea * 3, b * 10.0**eb))  # *3 so that 6 entries of 1e300 overflow the sum
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("scale", [1e308, 1e-310], ids=["trace overflows", "subnormal entries"])
def test_overlap_at_the_ends_of_the_float64_range(scale):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    assert not torch.isfinite((a / a.max() * 1e308).sum()) or scale < 1  # the naive trace would be inf
    got = float(fisher_overlap(a / a.max() * scale, b))
    assert got == pytest.approx(float(fisher_overlap(a, b)), rel=1e-9)


def test_every_name_is_importable_from_where_it_was():
    # chapter 6 imports from fisherbook.continual.ewc; the code now lives in modules of one idea each
    import fisherbook.continual as c
    import fisherbook.continual.ewc as ewc

    assert set(ewc.__all__) == set(c.__all__)
    assert all(getattr(ewc, name) is getattr(c, name) for name in c.__all__)
    homes = {getattr(c, name).__module__ for name in c.__all__}
    assert homes == {f"fisherbook.continual.{m}" for m in ("penalties", "fisher", "strategies", "metrics", "training",
                                                           "importance", "regularisers", "kfac_laplace", "replay",
                                                           "scenarios")}
