"""NaturalGradient and the torch.optim protocol (issue 16), frozen parameters and bad input (issue 15)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fisherbook as fb
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError, UnsupportedError
from fisherbook.optim import NaturalGradient

DT = torch.float64


def mlp(seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.5)
    return model


def batch(n: int = 30, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


def backward(model, x, y):
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


def dense_fisher(model, x):
    return fb.curvature.fisher(model, x, likelihood="categorical", representation="dense").to_dense()


# ---------------------------------------------------------------- per-step batches
def test_each_step_uses_its_own_batch():
    model = mlp()
    lam, lr = 1e-2, 0.7
    opt = NaturalGradient(model.parameters(), lr=lr, damping=lam, model=model, likelihood="categorical")
    for seed in (1, 2, 3):
        x, y = batch(seed=seed)
        backward(model, x, y)
        g = flat(p.grad for p in model.parameters())
        F = dense_fisher(model, x)  # the Fisher of this batch, at the current parameters
        expected = flat(model.parameters()) - lr * torch.linalg.solve(F + lam * torch.eye(len(g), dtype=DT), g)
        opt.step(inputs=x)
        torch.testing.assert_close(flat(model.parameters()), expected)
    # a batch at step 3 differs from the default of the constructor: the direction differs too
    x1, _ = batch(seed=1)
    x4, y4 = batch(seed=4)
    outs = []
    for kw in ({}, {"inputs": x4}):
        m = mlp()
        o = NaturalGradient(m.parameters(), lr=lr, damping=lam, model=m, inputs=x1, likelihood="categorical")
        backward(m, x4, y4)
        o.step(**kw)
        outs.append(flat(m.parameters()))
    assert not torch.allclose(outs[0], outs[1])


def test_empirical_kind_takes_per_step_targets():
    model = mlp()
    opt = NaturalGradient(model.parameters(), lr=0.5, damping=0.1, model=model, likelihood="categorical",
                          kind="empirical")
    x, y = batch()
    backward(model, x, y)
    g = flat(p.grad for p in model.parameters())
    F = fb.curvature.fisher(model, x, likelihood="categorical", kind="empirical", targets=y).to_dense()
    expected = flat(model.parameters()) - 0.5 * torch.linalg.solve(F + 0.1 * torch.eye(len(g), dtype=DT), g)
    with pytest.raises(InvalidArgumentError, match="targets"):
        opt.step(inputs=x)
    opt.step(inputs=x, targets=y)
    torch.testing.assert_close(flat(model.parameters()), expected)


# ---------------------------------------------------------------- param groups and hyper-parameters
def test_add_param_group_equals_groups_given_at_construction():
    x, y = batch()
    a, b = mlp(), mlp()
    opt_a = NaturalGradient([{"params": a[0].parameters()}, {"params": a[2].parameters(), "lr": 0.2}],
                            lr=0.9, damping=0.05, model=a, inputs=x, likelihood="categorical")
    opt_b = NaturalGradient(b[0].parameters(), lr=0.9, damping=0.05, model=b, inputs=x, likelihood="categorical")
    opt_b.add_param_group({"params": b[2].parameters(), "lr": 0.2})
    for model, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(2):
            backward(model, x, y)
            opt.step()
    torch.testing.assert_close(flat(a.parameters()), flat(b.parameters()))
    assert not torch.equal(flat(b[2].parameters()), flat(mlp()[2].parameters()))  # the added group moved


def test_hyper_parameters_live_in_the_groups_and_must_agree():
    model = mlp()
    x, _ = batch()
    opt = NaturalGradient(model[0].parameters(), model=model, inputs=x, likelihood="categorical", solver="cg",
                          cg_max_iter=7, max_kl=0.1)
    g = opt.param_groups[0]
    assert (g["solver"], g["cg_max_iter"], g["max_kl"]) == ("cg", 7, 0.1) and opt.defaults["update_every"] == 1
    assert opt.solver == "cg" and not any(k in vars(opt) for k in ("solver", "max_kl", "cg_max_iter"))
    with pytest.raises(InvalidArgumentError, match="cg_max_iter"):
        opt.add_param_group({"params": model[2].parameters(), "cg_max_iter": 3})
    assert len(opt.param_groups) == 1  # the refused group is not kept
    opt.add_param_group({"params": model[2].parameters()})
    assert len(opt.param_groups) == 2


def test_state_dict_round_trip_with_groups_and_batches():
    x1, y1 = batch(seed=1)
    x2, y2 = batch(seed=2)
    kw = dict(damping=0.05, likelihood="categorical", update_every=2)
    model = mlp()
    opt = NaturalGradient([{"params": model[0].parameters(), "lr": 0.3}, {"params": model[2].parameters()}],
                          lr=0.8, model=model, **kw)
    for _ in range(3):
        backward(model, x1, y1)
        opt.step(inputs=x1)
    saved_m, saved_o = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    backward(model, x2, y2)
    opt.step(inputs=x2)  # step 3: not a refresh step, the cached Fisher of x1 is used
    after = flat(model.parameters())
    m2 = mlp(seed=7)
    m2.load_state_dict(saved_m)
    o2 = NaturalGradient([{"params": m2[0].parameters()}, {"params": m2[2].parameters()}], lr=0.1, model=m2, **kw)
    o2.load_state_dict(saved_o)
    assert [g["lr"] for g in o2.param_groups] == [0.3, 0.8]
    backward(m2, x2, y2)
    o2.step(inputs=x2)
    torch.testing.assert_close(flat(m2.parameters()), after, rtol=0, atol=0)


# ---------------------------------------------------------------- frozen parameters
@pytest.mark.parametrize("solver", ["dense", "cg"])
@pytest.mark.parametrize("pass_all", [True, False])
def test_frozen_parameters_never_move_and_the_fisher_is_the_trainable_block(solver, pass_all):
    x, y = batch()
    model = mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    params = model.parameters() if pass_all else [p for p in model.parameters() if p.requires_grad]
    lam, lr = 0.03, 0.6
    opt = NaturalGradient(params, lr=lr, damping=lam, model=model, inputs=x, likelihood="categorical", solver=solver,
                          cg_max_iter=200, cg_tol=1e-14)
    backward(model, x, y)
    trainable = [p for p in model.parameters() if p.requires_grad]
    g = flat(p.grad for p in trainable)
    F = dense_fisher(model, x)
    keep = torch.arange(model[0].weight.numel(), F.shape[0])  # the frozen weight comes first
    F_ss = F[keep][:, keep]
    expected = flat(trainable) - lr * torch.linalg.solve(F_ss + lam * torch.eye(len(keep), dtype=DT), g)
    opt.step()
    assert torch.equal(model[0].weight, frozen)
    torch.testing.assert_close(flat(trainable), expected, rtol=1e-9, atol=1e-10)


def test_frozen_parameter_with_curvature_fn_is_not_moved():
    w = torch.tensor([1.0, -1.0], dtype=DT, requires_grad=True)
    v = torch.tensor([0.5], dtype=DT, requires_grad=False)
    A = torch.tensor([[2.0, 0.5, 0.3], [0.5, 1.0, 0.2], [0.3, 0.2, 1.5]], dtype=DT)
    opt = NaturalGradient([w, v], lr=1.0, damping=0.0, curvature_fn=lambda: A)
    w.grad = torch.tensor([1.0, 2.0], dtype=DT)
    v.grad = torch.tensor([3.0], dtype=DT)  # present, but v is frozen
    opt.step()
    assert float(v) == 0.5
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -1.0], dtype=DT) - torch.linalg.solve(A[:2, :2], w.grad))


def test_solve_solver_on_a_partly_frozen_model():
    x, y = batch()
    lam = 0.05
    # a whole layer frozen: the block-diagonal K-FAC solve restricts exactly
    model = mlp()
    model[0].requires_grad_(False)
    opt = NaturalGradient(model.parameters(), lr=1.0, damping=lam, model=model, inputs=x, likelihood="categorical",
                          solver="solve", representation="kfac")
    backward(model, x, y)
    K = fb.curvature.fisher(model, x, likelihood="categorical", representation="kfac")
    g_full = torch.cat([torch.zeros(model[0].weight.numel() + 5, dtype=DT), flat(p.grad for p in model[2].parameters())])
    expected = flat(model[2].parameters()) - K.solve(g_full, damping=lam)[25:]
    opt.step()
    torch.testing.assert_close(flat(model[2].parameters()), expected)
    # the diagonal restricts for any subset
    model = mlp()
    model[0].weight.requires_grad_(False)
    opt = NaturalGradient(model.parameters(), lr=1.0, damping=lam, model=model, inputs=x, likelihood="categorical",
                          solver="solve", representation="diagonal")
    backward(model, x, y)
    d = fb.curvature.fisher(model, x, likelihood="categorical", representation="diagonal").diag()[20:]
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = flat(trainable) - flat(p.grad for p in trainable) / (d + lam)
    opt.step()
    torch.testing.assert_close(flat(trainable), expected)
    # half a layer frozen: a K-FAC block would be cut, which its solve cannot do
    opt = NaturalGradient(model.parameters(), lr=1.0, damping=lam, model=model, inputs=x, likelihood="categorical",
                          solver="solve", representation="kfac")
    backward(model, x, y)
    with pytest.raises(UnsupportedError, match="dense"):
        opt.step()


# ---------------------------------------------------------------- bad input
def _model_opt(**kw):
    model = mlp()
    return model, NaturalGradient(model.parameters(), model=model, likelihood="categorical", **kw)


_NAN = torch.full((4, 4), float("nan"), dtype=DT)
_BAD_STEP = [
    (dict(inputs=_NAN), NonFiniteError, "inputs must be finite"),
    (dict(inputs=torch.zeros(0, 4, dtype=DT)), ShapeError, "at least one example"),
    (dict(inputs=torch.tensor(1.0, dtype=DT)), ShapeError, "inputs"),
    (dict(inputs=[[0.0] * 4]), ArgumentTypeError, "batch 0 of inputs must start with an input tensor"),  # a list is read as batches
    (dict(inputs=torch.zeros(2, 4, dtype=DT), targets=torch.tensor([0.0, float("inf")])), NonFiniteError, "targets"),
]


@pytest.mark.parametrize("kw, error, words", _BAD_STEP)
def test_bad_batches_at_step(kw, error, words):
    model, opt = _model_opt()
    x, y = batch()
    backward(model, x, y)
    before = flat(model.parameters())
    with pytest.raises(error, match=words):
        opt.step(**kw)
    assert torch.equal(flat(model.parameters()), before)  # nothing moved


def test_non_finite_gradient_and_misplaced_batches():
    model, opt = _model_opt()
    x, y = batch()
    backward(model, x, y)
    model[2].bias.grad[1] = float("inf")
    with pytest.raises(NonFiniteError, match="non-finite"):
        opt.step(inputs=x)
    w = torch.zeros(2, dtype=DT, requires_grad=True)
    fn_opt = NaturalGradient([w], curvature_fn=lambda: torch.eye(2, dtype=DT))
    with pytest.raises(InvalidArgumentError, match="curvature_fn"):
        fn_opt.step(inputs=x)


@pytest.mark.parametrize("kw, error, words", [
    (dict(lr=-1.0), InvalidArgumentError, "lr"),
    (dict(lr="1"), ArgumentTypeError, "lr"),
    (dict(damping=float("nan")), NonFiniteError, "damping"),
    (dict(solver="lu"), InvalidArgumentError, "solver"),
    (dict(update_every=1.5), ArgumentTypeError, "update_every"),
    (dict(cg_max_iter=0), InvalidArgumentError, "cg_max_iter"),
    (dict(cg_tol=-1e-3), InvalidArgumentError, "cg_tol"),
    (dict(max_kl=0.0), InvalidArgumentError, "max_kl"),
    (dict(max_kl=math.inf), NonFiniteError, "max_kl"),
    (dict(likelihood=3), ArgumentTypeError, "likelihood"),
    (dict(n_samples=0), InvalidArgumentError, "n_samples"),
    (dict(sigma=-1.0), InvalidArgumentError, "sigma"),
    (dict(generator="seed"), ArgumentTypeError, "generator"),
    (dict(representation="sparse"), InvalidArgumentError, "representation"),
    (dict(kind="empirical", inputs=torch.zeros(3, 4, dtype=DT)), InvalidArgumentError, "targets"),
    (dict(inputs=torch.zeros(0, 4, dtype=DT)), ShapeError, "inputs"),
])
def test_bad_constructor_arguments_raise_named_errors(kw, error, words):
    model = mlp()
    kw = dict({"likelihood": "categorical"}, **kw)
    with pytest.raises(error, match=words):
        NaturalGradient(model.parameters(), model=model, **kw)


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(mask=st.lists(st.booleans(), min_size=4, max_size=4).filter(any),
       lam=st.floats(1e-6, 1e3), lr=st.floats(1e-3, 2.0), seed=st.integers(0, 2**16))
def test_any_frozen_subset_moves_by_the_block_formula(mask, lam, lr, seed):
    """For every choice of frozen tensors, damping and step size: frozen tensors stay put and the
    others move by −η (F_SS + λI)⁻¹ g_S, F_SS the block of the exact dense Fisher."""
    model = mlp(seed)
    x, y = batch(seed=seed + 1)
    for p, trainable in zip(model.parameters(), mask):
        p.requires_grad_(trainable)
    opt = NaturalGradient(model.parameters(), lr=lr, damping=lam, model=model, inputs=x, likelihood="categorical")
    backward(model, x, y)
    F = dense_fisher(model, x)
    sizes = [p.numel() for p in model.parameters()]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    keep = torch.cat([torch.arange(s, s + n) for s, n, m in zip(starts, sizes, mask) if m])
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p.detach().clone() for p in model.parameters() if not p.requires_grad]
    g = flat(p.grad for p in trainable)
    expected = flat(trainable) - lr * torch.linalg.solve(F[keep][:, keep] + lam * torch.eye(len(keep), dtype=DT), g)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, [p for p in model.parameters() if not p.requires_grad]))
    torch.testing.assert_close(flat(trainable), expected, rtol=1e-7, atol=1e-9)
