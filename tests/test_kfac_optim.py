"""Tests for fisherbook.optim.KFAC: factors, preconditioning, schedules, state, training."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import fisherbook as fb
from fisherbook.experiments.kfac import (
    TrainHistory,
    iterations_to,
    kronecker_comparison,
    make_optimizer,
    train_full_batch,
)
from fisherbook.experiments.kfac import mlp as make_mlp
from fisherbook.optim import KFAC

DT = torch.float64


def mlp(seed: int = 0, sizes=(5, 7, 4), bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(DT)


def data(n: int = 40, d: int = 5, k: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randint(0, k, (n,), generator=g)


def train_step(opt: KFAC, model: nn.Module, X, y, loss_fn=nn.functional.cross_entropy):
    opt.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    opt.step()
    return loss.item()


def quiet(**kw) -> dict:
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return kw


# ---------------------------------------------------------------- factor statistics
def test_empirical_factors_equal_curvature_engine():
    model, (X, y) = mlp(), data()
    opt = KFAC(model, fisher_type="empirical")
    loss = nn.functional.cross_entropy(model(X), y)
    loss.backward()
    ref = fb.curvature.fisher(model, X, likelihood="categorical", kind="empirical", targets=y,
                              representation="kfac")
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors):
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(g, rg)
    assert opt.factor_updates == 1


@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli", "gaussian"])
def test_sampled_factors_approach_true_fisher(likelihood):
    model, (X, _) = mlp(sizes=(5, 6, 3)), data(n=60)
    S = 400
    opt = KFAC(model, likelihood=likelihood, n_samples=S, sigma=0.7,
               generator=torch.Generator().manual_seed(3))
    model(X)
    ref = fb.curvature.fisher(model, X, likelihood=likelihood, kind="true", representation="kfac", sigma=0.7)
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors):
        torch.testing.assert_close(a, ra)  # A uses only the inputs: exact
        # G is an average of 60·400 sampled outer products; Monte-Carlo relative error ~ 1/sqrt(24000)
        # per entry times a few for the heavier tails: 8 % in Frobenius norm is a ~10-sigma margin
        assert torch.linalg.norm(g - rg) / torch.linalg.norm(rg) < 0.08


def test_no_statistics_in_eval_mode_or_no_grad():
    model, (X, _) = mlp(), data()
    opt = KFAC(model)
    model.eval()
    model(X)
    model.train()
    with torch.no_grad():
        model(X)
    assert opt.factor_updates == 0
    with pytest.raises(RuntimeError, match="no factor statistics"):
        opt.factors()


def test_factors_follow_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = KFAC(model)
    model(torch.randn(10, 3))
    assert all(a.dtype == torch.float32 and g.dtype == torch.float32 for a, g in opt.factors())


# ---------------------------------------------------------------- preconditioning vs dense reference
def dense_reference(opt: KFAC, model: nn.Module, factored: bool) -> list[torch.Tensor]:
    group = opt.param_groups[0]
    lam, wd = group["damping"], group["weight_decay"]
    out = []
    for (a, g), (_, m) in zip(opt.factors(), opt.layers):
        v = torch.cat([m.weight.grad, m.bias.grad.unsqueeze(1)], 1) + wd * torch.cat(
            [m.weight, m.bias.unsqueeze(1)], 1).detach()
        ia, ig = torch.eye(a.shape[0], dtype=DT), torch.eye(g.shape[0], dtype=DT)
        if factored:
            pi = math.sqrt((a.trace() / a.shape[0]) / (g.trace() / g.shape[0]))
            gam = math.sqrt(lam + wd)
            M = torch.kron(g + gam / pi * ig, a + pi * gam * ia)
        else:
            M = torch.kron(g, a) + (lam + wd) * torch.eye(a.shape[0] * g.shape[0], dtype=DT)
        out.append(torch.linalg.solve(M, v.reshape(-1)).reshape(v.shape))
    return out


@pytest.mark.parametrize("factored", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_preconditioned_gradient_equals_dense_reference(factored, wd):
    model, (X, y) = mlp(), data()
    opt = KFAC(model, damping=0.05, weight_decay=wd, factored_damping=factored, **quiet())
    nn.functional.cross_entropy(model(X), y).backward()
    expected = dense_reference(opt, model, factored)
    opt.precondition()
    for u, (_, m) in zip(expected, opt.layers):
        torch.testing.assert_close(m.weight.grad, u[:, :-1])
        torch.testing.assert_close(m.bias.grad, u[:, -1])


def test_preconditioned_gradient_matches_curvature_kfac_solve():
    model, (X, y) = mlp(bias=False), data()
    opt = KFAC(model, damping=0.03, fisher_type="empirical")
    nn.functional.cross_entropy(model(X), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    K = fb.curvature.KFAC.from_factors(model, opt.factors())
    ref = K.solve(g, damping=0.03, factored=True)
    opt.precondition()
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, ref)


def test_precondition_in_front_of_sgd_equals_standalone_step():
    X, y = data()
    m1, m2 = mlp(), mlp()
    k1 = KFAC(m1, lr=0.2, damping=0.01, inverse_every=2, **quiet())
    k2 = KFAC(m2, lr=0.2, damping=0.01, inverse_every=2, **quiet())
    sgd = torch.optim.SGD(m2.parameters(), lr=0.2)
    for _ in range(4):
        train_step(k1, m1, X, y)
        sgd.zero_grad()
        nn.functional.cross_entropy(m2(X), y).backward()
        k2.precondition()
        sgd.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2)


def test_kl_clip_scales_update():
    X, y = data()
    ref_model, clip_model = mlp(), mlp()
    ref = KFAC(ref_model, lr=0.5, **quiet())
    kappa = 1e-6
    clip = KFAC(clip_model, lr=0.5, kl_clip=kappa, **quiet())
    for model in (ref_model, clip_model):
        nn.functional.cross_entropy(model(X), y).backward()
    raw = {id(p): p.grad.clone() for p in ref_model.parameters()}
    ref.precondition()
    clip.precondition()
    vg = sum(float((p.grad * raw[id(p)]).sum()) for p in ref_model.parameters()) * 0.5**2
    nu = math.sqrt(kappa / vg)
    assert nu < 1
    for p, q in zip(ref_model.parameters(), clip_model.parameters()):
        torch.testing.assert_close(q.grad, nu * p.grad)


# ---------------------------------------------------------------- statistics on a subset of the batch
@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli"])
def test_mc_factor_subset_equals_full_statistics_of_the_drawn_rows(likelihood):
    model, (X, y) = mlp(), data(n=40)
    opt = KFAC(model, likelihood=likelihood, factor_subset=9, generator=torch.Generator().manual_seed(3))
    loss = nn.functional.cross_entropy(model(X), y)
    loss.backward()
    assert opt.factor_updates == 1
    # the same draws by hand: the rows first, then the sampled targets on those rows
    gen = torch.Generator().manual_seed(3)
    rows = torch.randperm(40, generator=gen)[:9]
    ref_model = mlp()  # same seed, same weights (a deep copy would copy the hooks)
    ref = KFAC(ref_model, likelihood=likelihood, generator=gen)
    ref_model(X[rows])
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors()):
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(g, rg)
    # the training gradient is the full-batch one, untouched by the second (subset) forward pass
    model2 = mlp()
    nn.functional.cross_entropy(model2(X), y).backward()
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_empirical_factor_subset_uses_the_same_rows_in_every_layer():
    model, (X, y) = mlp(sizes=(5, 7, 6, 4)), data(n=40)
    opt = KFAC(model, fisher_type="empirical", factor_subset=11, generator=torch.Generator().manual_seed(4))
    nn.functional.cross_entropy(model(X), y).backward()
    rows = torch.randperm(40, generator=torch.Generator().manual_seed(4))[:11]
    # per-example gradients do not depend on the batch, so the empirical factors of the subset
    # equal those of a full pass over the drawn rows alone
    ref_model = mlp(sizes=(5, 7, 6, 4))
    ref = KFAC(ref_model, fisher_type="empirical")
    nn.functional.cross_entropy(ref_model(X[rows]), y[rows]).backward()
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors()):
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(g, rg)


@pytest.mark.parametrize("fisher_type", ["mc", "empirical"])
def test_factor_subset_covering_the_batch_gives_full_batch_a(fisher_type):
    X, y = data(n=30)
    full = KFAC(mlp(), fisher_type=fisher_type, **quiet())
    sub_model = mlp()
    sub = KFAC(sub_model, fisher_type=fisher_type, factor_subset=30, **quiet())
    nn.functional.cross_entropy(full.model(X), y).backward()
    nn.functional.cross_entropy(sub_model(X), y).backward()
    for (a, _), (ra, _) in zip(sub.factors(), full.factors()):
        torch.testing.assert_close(a, ra)  # a permutation of the rows


def test_factor_subset_training_is_deterministic_and_round_trips():
    def run_subset(seed):
        X, y = data(n=80)
        model = mlp(seed=0, sizes=(5, 16, 4))
        opt = KFAC(model, lr=0.3, damping=1e-2, inverse_every=5, factor_subset=16,
                   generator=torch.Generator().manual_seed(seed))
        return [train_step(opt, model, X, y) for _ in range(25)], opt
    (a, opt), (b, _) = run_subset(0), run_subset(0)
    assert a == b and a[-1] < 0.6 * a[0]
    assert opt.factor_updates == 25
    opt2 = KFAC(mlp(sizes=(5, 16, 4)), **quiet())
    opt2.load_state_dict(opt.state_dict())
    assert opt2.factor_subset == 16
    assert KFAC(mlp()).factor_subset is None


def test_factor_subset_needs_a_tensor_of_examples():
    class ListInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 4).to(DT)

        def forward(self, xs):
            return self.lin(xs[0])

    model = ListInput()
    opt = KFAC(model, factor_subset=3, **quiet())  # kept alive: the hooks go with the optimiser
    with pytest.raises(TypeError, match="factor_subset"):
        model([data()[0]])
    assert opt.factor_updates == 0


# ---------------------------------------------------------------- schedules
def test_ema_of_factors():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).to(DT)
    opt = KFAC(model, factor_decay=0.6, fisher_type="empirical", lr=1e-3)
    g = torch.Generator().manual_seed(0)
    expected = None
    for k in range(1, 6):
        X = torch.randn(20, 3, generator=g, dtype=DT) * k
        y = torch.randint(0, 2, (20,), generator=g)
        Xb = torch.cat([X, torch.ones(20, 1, dtype=DT)], 1)
        a_hat = Xb.T @ Xb / 20
        eps = min(1 - 1 / k, 0.6)
        expected = a_hat if expected is None else eps * expected + (1 - eps) * a_hat
        train_step(opt, model, X, y)
        torch.testing.assert_close(opt.factors()[0][0], expected)
    assert opt.factor_updates == 5


def test_factor_and_inverse_periods():
    model, (X, y) = mlp(), data()
    opt = KFAC(model, factor_every=2, inverse_every=3, lr=1e-2, **quiet())
    w = opt.layers[0][1].weight
    seen = []
    for _ in range(7):
        train_step(opt, model, X, y)
        seen.append(opt.state[w]["QG"].clone())  # A of layer 0 sees fixed inputs; G moves
    # factors gathered at steps 0, 2, 4, 6; eigendecompositions refreshed at steps 0, 3, 6
    assert opt.factor_updates == 4
    changed = [not torch.equal(seen[i], seen[i - 1]) for i in range(1, 7)]
    assert changed == [False, False, True, False, False, True]
    assert opt.steps == 7


# ---------------------------------------------------------------- state, determinism, training
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_state_dict_round_trip(momentum):
    X, y = data()
    model = mlp()
    gen = torch.Generator().manual_seed(5)
    opt = KFAC(model, lr=0.1, momentum=momentum, inverse_every=3, adapt_damping=False, generator=gen)
    for _ in range(4):
        train_step(opt, model, X, y)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    gen_state = gen.get_state()
    tail = [train_step(opt, model, X, y) for _ in range(4)]

    model2 = mlp(seed=9)
    model2.load_state_dict(saved_model)
    gen2 = torch.Generator()
    gen2.set_state(gen_state)
    opt2 = KFAC(model2, lr=0.7, generator=gen2)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.steps == 4
    tail2 = [train_step(opt2, model2, X, y) for _ in range(4)]
    assert tail == tail2
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def run(seed: int, momentum: float = 0.0, steps: int = 25) -> list[float]:
    X, y = data(n=80)
    model = mlp(seed=seed, sizes=(5, 16, 4))
    opt = KFAC(model, lr=0.3, damping=1e-2, momentum=momentum, inverse_every=5,
               generator=torch.Generator().manual_seed(seed))
    return [train_step(opt, model, X, y) for _ in range(steps)]


def test_seeded_run_lowers_loss_deterministically():
    a, b = run(0), run(0)
    assert a == b
    assert a[-1] < 0.6 * a[0]
    c = run(0, momentum=0.5)
    assert c[-1] < 0.6 * c[0]


def test_kfac_beats_sgd_on_ill_conditioned_regression():
    """Inputs scaled over three orders of magnitude: the A factor whitens them, SGD crawls."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 4, generator=g, dtype=DT) * torch.tensor([1e-2, 1e-1, 1.0, 3.0], dtype=DT)
    w = torch.tensor([[1.0, -2.0, 0.5, 1.0]], dtype=DT) * 50
    Y = X @ w.T
    mse = nn.functional.mse_loss
    torch.manual_seed(0)
    m1 = nn.Linear(4, 1).to(DT)
    m2 = copy.deepcopy(m1)
    kf = KFAC(m1, lr=0.5, damping=1e-6, likelihood="gaussian", **quiet())  # mse = Gaussian NLL, σ² = 1/2, up to scale
    sgd = torch.optim.SGD(m2.parameters(), lr=0.05)  # near SGD's stability limit 2/λmax
    for _ in range(30):
        lk = train_step(kf, m1, X, Y, mse)
        sgd.zero_grad()
        ls = mse(m2(X), Y)
        ls.backward()
        sgd.step()
    assert lk < 1e-3 * ls.item()


def test_levenberg_marquardt_adaptation():
    X, y = data(n=80)
    model = mlp(sizes=(5, 16, 4))
    opt = KFAC(model, lr=0.1, damping=1.0, adapt_damping=True, adapt_every=2, **quiet())

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    lams = []
    for _ in range(6):
        opt.step(closure)
        lams.append(opt.param_groups[0]["damping"])
    # heavy damping -> tiny steps on which the quadratic model is accurate: rho ≈ 1 -> damping shrinks
    assert opt.last_rho is not None and 0.75 < opt.last_rho < 1.5
    omega = (19 / 20) ** 2
    assert lams == pytest.approx([1.0, omega, omega, omega**2, omega**2, omega**3])
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_damping_grows_when_steps_are_too_long():
    X, y = data(n=80)
    model = mlp(sizes=(5, 16, 4))
    opt = KFAC(model, lr=20.0, damping=1e-4, adapt_damping=True, adapt_every=1, **quiet())

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    opt.step(closure)
    assert opt.last_rho < 0.25
    assert opt.param_groups[0]["damping"] == pytest.approx(1e-4 / 0.95)


# ---------------------------------------------------------------- coverage of modules, errors
def test_unpreconditioned_parameters_are_listed_and_updated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 4)).to(DT)
    with pytest.warns(UserWarning, match="1.weight, 1.bias"):
        opt = KFAC(model, lr=0.1, **quiet())
    assert opt.unpreconditioned == ["1.weight", "1.bias"]
    assert [n for n, _ in opt.layers] == ["0", "3"]
    before = model[1].weight.detach().clone()
    X, y = data()
    train_step(opt, model, X, y)
    assert not torch.equal(before, model[1].weight)


def test_fully_covered_model_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KFAC(mlp())


@pytest.mark.parametrize("kw, match", [
    (dict(damping=0.0), "damping"), (dict(damping=-1.0), "damping"),
    (dict(factor_decay=1.0), "factor_decay"), (dict(factor_decay=-0.1), "factor_decay"),
    (dict(momentum=1.0), "momentum"), (dict(lr=0.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(inverse_every=0), "inverse_every"), (dict(factor_every=0), "factor_every"),
    (dict(adapt_every=0), "adapt_every"), (dict(n_samples=0), "n_samples"),
    (dict(kl_clip=0.0), "kl_clip"), (dict(weight_decay=-1.0), "weight_decay"),
    (dict(likelihood="poisson"), "likelihood"), (dict(fisher_type="true"), "fisher_type"),
    (dict(sigma=0.0), "sigma"), (dict(min_damping=1.0, max_damping=0.1), "min_damping"),
    (dict(damping=1e5), "damping"), (dict(factor_subset=0), "factor_subset"),
])
def test_bad_hyper_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        KFAC(mlp(), **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(inverse_every=2.0), "inverse_every"), (dict(damping="1"), "damping"),
    (dict(generator=0), "generator"), (dict(factor_subset=2.0), "factor_subset"),
])
def test_bad_types(kw, match):
    with pytest.raises(TypeError, match=match):
        KFAC(mlp(), **kw)
    with pytest.raises(TypeError, match="model"):
        KFAC([torch.zeros(2, requires_grad=True)])  # type: ignore[arg-type]


# ---------------------------------------------------------------- chapter 5 / benchmark helpers


def test_kronecker_comparison_exact_for_one_example_and_consistent():
    net = make_mlp((3, 4, 2), dtype=DT)
    x1 = torch.randn(1, 3, dtype=DT)
    one = kronecker_comparison(net[:1], x1, damping=1e-2)
    assert one.block_error[0] < 1e-12 and one.inverse_error[0] < 1e-10  # the theorem of Chapter 5
    cmp = kronecker_comparison(net, torch.randn(30, 3, dtype=DT), damping=1e-2)
    K = fb.curvature.fisher(net, torch.randn(1, 3, dtype=DT), representation="kfac")  # layer order reference
    assert [s.stop - s.start for s in cmp.slices] == [16, 10] and len(K.factors) == 2
    # off-diagonal (between-layer) blocks of the Kronecker approximation are zero; diagonal blocks are not
    s0, s1 = cmp.slices
    assert torch.count_nonzero(cmp.kron[s0, s1]) == 0 and torch.count_nonzero(cmp.kron[s0, s0]) > 0
    eye = torch.eye(26, dtype=DT)
    torch.testing.assert_close(cmp.kron_inv @ (cmp.kron + 1e-2 * eye), eye)
    assert all(0 < e < 1 for e in cmp.block_error)
    with pytest.raises(ValueError, match="damping"):
        kronecker_comparison(net, x1, damping=0.0)


def test_kronecker_comparison_drops_dead_inputs():
    net = make_mlp((3, 4, 2), dtype=DT)
    x = torch.randn(20, 3, dtype=DT)
    x[:, 1] = 0.0  # an input that is zero for every example, like the blank digits pixels
    cmp = kronecker_comparison(net, x, damping=1e-3)
    assert int((~cmp.kept).sum()) == 4  # one weight per hidden unit
    assert torch.count_nonzero(cmp.exact_inv[~cmp.kept]) == 0


def test_train_full_batch_and_iterations_to():
    X, y = data(n=60)
    net = make_mlp((5, 8, 4), dtype=DT)
    h = train_full_batch(net, X, y, nn.functional.cross_entropy,
                         make_optimizer("sgd", net, 0.5, 0.9), steps=30, name="sgd")
    assert len(h.losses) == len(h.times) == 31 and h.times[0] == 0.0
    assert all(b >= a for a, b in zip(h.times, h.times[1:]))
    assert h.losses[0] == pytest.approx(nn.functional.cross_entropy(make_mlp((5, 8, 4), dtype=DT)(X), y).item())
    k = iterations_to(h, h.losses[0] * 0.8)
    assert k is not None and h.losses[k] <= 0.8 * h.losses[0] and all(v > 0.8 * h.losses[0] for v in h.losses[:k])
    assert iterations_to(TrainHistory("x", [1.0, 0.5]), 0.1) is None
    kf = make_optimizer("kfac", make_mlp((5, 8, 4), dtype=DT), 0.1, 0.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(kf, KFAC) and isinstance(make_optimizer("adam", net, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="name"):
        make_optimizer("lbfgs", net, 0.1)
    with pytest.raises(ValueError, match="steps"):
        train_full_batch(net, X, y, nn.functional.cross_entropy, kf, steps=-1)


def test_mlp_validation():
    net = make_mlp((4, 3, 2), activation="relu")
    assert isinstance(net[1], nn.ReLU) and len(net) == 3
    with pytest.raises(ValueError, match="widths"):
        make_mlp((4,))
    with pytest.raises(ValueError, match="activation"):
        make_mlp((4, 2), activation="gelu")
