"""Tests for fisherbook.optim: conjugate gradient, NaturalGradient, natural_gradient_path.

References are built here independently of the curvature engine: the Fisher of a categorical
(softmax) model is J^T (diag p - p p^T) J averaged over examples, with J the Jacobian of the
logits from torch.func.jacrev, and its matrix-free products come from jvp/vjp.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp

from fisherbook.errors import ArgumentTypeError, NonFiniteError
from fisherbook.optim import NaturalGradient, conjugate_gradient, natural_gradient_path

DT = torch.float64
# torch's forward-mode AD (jvp in the matrix-free reference) loads decompositions via torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------
def _mlp(seed: int = 0, sizes=(3, 5, 4)) -> nn.Module:
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(DT)


def _data(n: int = 12, d: int = 3, k: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def _flat_fn(model: nn.Module, x: torch.Tensor):
    """logits(theta_flat) for the model's trainable parameters in model.parameters() order."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for _, p in model.named_parameters() if p.requires_grad]

    def f(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = math.prod(shape)
            params[name] = theta[offset : offset + size].view(shape)
            offset += size
        return functional_call(model, params, (x,))

    return f


def _theta(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def categorical_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Dense true Fisher (mean over examples) of a softmax model, from the logit Jacobian."""
    f = _flat_fn(model, x)
    theta = _theta(model)
    jac = jacrev(f)(theta)  # (N, K, P)
    p = torch.softmax(f(theta), dim=-1).detach()
    lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (N, K, K)
    return torch.einsum("nkp,nkl,nlq->pq", jac, lam, jac) / x.shape[0]


class MatrixFree:
    """Fisher-vector products J^T Lambda J v / N by jvp and vjp, never forming F."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.f = _flat_fn(model, x)
        self.theta = _theta(model)
        self.n = x.shape[0]
        self.p = torch.softmax(self.f(self.theta), dim=-1).detach()
        self.calls = 0

    def mv(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        _, jv = jvp(self.f, (self.theta,), (v,))
        lam_jv = self.p * jv - self.p * (self.p * jv).sum(-1, keepdim=True)
        _, pullback = vjp(self.f, self.theta)
        return pullback(lam_jv)[0] / self.n


def _closure(opt, model, x, y):
    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def _grad(model, x, y) -> torch.Tensor:
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    return g


# ---------------------------------------------------------------------------------------------
# conjugate gradient
# ---------------------------------------------------------------------------------------------
def _spd(n: int, seed: int, cond: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    eig = torch.logspace(0, math.log10(cond), n, dtype=DT)
    return q @ torch.diag(eig) @ q.T


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 10_000), damping=st.floats(0.0, 10.0))
def test_cg_matches_direct_solve(n, seed, damping):
    a = _spd(n, seed)
    b = torch.randn(n, generator=torch.Generator().manual_seed(seed + 1), dtype=DT)
    result = conjugate_gradient(lambda v: a @ v, b, damping=damping, max_iter=3 * n, tol=1e-13)
    expected = torch.linalg.solve(a + damping * torch.eye(n, dtype=DT), b)
    assert result.converged
    assert torch.allclose(result.solution, expected, rtol=1e-9, atol=1e-11)
    assert len(result.residual_norms) == result.iterations + 1


def test_cg_converges_in_as_many_iterations_as_distinct_eigenvalues():
    # Krylov theory: with k distinct eigenvalues the minimal polynomial has degree k.
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=torch.Generator().manual_seed(3), dtype=DT))
    eig = torch.tensor([1.0, 5.0, 30.0], dtype=DT).repeat_interleave(torch.tensor([10, 20, 10]))
    a = q @ torch.diag(eig) @ q.T
    b = torch.randn(40, dtype=DT, generator=torch.Generator().manual_seed(4))
    result = conjugate_gradient(lambda v: a @ v, b, tol=1e-10)
    assert result.converged and result.iterations == 3


def test_cg_damping_and_preconditioning_reduce_iterations():
    a = _spd(60, seed=5, cond=1e6)
    b = torch.randn(60, dtype=DT, generator=torch.Generator().manual_seed(6))
    plain = conjugate_gradient(lambda v: a @ v, b, tol=1e-8, max_iter=500)
    damped = conjugate_gradient(lambda v: a @ v, b, damping=10.0, tol=1e-8, max_iter=500)
    assert damped.iterations < plain.iterations
    # Jacobi preconditioning of a badly scaled matrix: D A D with D spanning 4 decades
    d = torch.logspace(-2, 2, 60, dtype=DT)
    scaled = d[:, None] * _spd(60, seed=7, cond=10.0) * d[None, :]
    diag = torch.diagonal(scaled)
    jacobi = conjugate_gradient(lambda v: scaled @ v, b, tol=1e-8, max_iter=500, preconditioner=lambda r: r / diag)
    unprec = conjugate_gradient(lambda v: scaled @ v, b, tol=1e-8, max_iter=500)
    assert jacobi.converged and jacobi.iterations < unprec.iterations / 2
    assert torch.allclose(jacobi.solution, torch.linalg.solve(scaled, b), rtol=1e-6)


def test_cg_vector_damping_and_warm_start():
    a = _spd(8, seed=8)
    b = torch.randn(8, dtype=DT, generator=torch.Generator().manual_seed(9))
    lam = torch.linspace(0.1, 2.0, 8, dtype=DT)
    expected = torch.linalg.solve(a + torch.diag(lam), b)
    result = conjugate_gradient(lambda v: a @ v, b, damping=lam, tol=1e-13)
    assert torch.allclose(result.solution, expected, rtol=1e-10)
    warm = conjugate_gradient(lambda v: a @ v, b, damping=lam, x0=expected, tol=1e-10)
    assert warm.iterations == 0 and warm.converged


def test_cg_bad_input():
    a = torch.eye(3, dtype=DT)
    b = torch.ones(3, dtype=DT)
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(lambda v: a @ v, b, damping=-1.0)
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(lambda v: a @ v, b, damping=torch.ones(2, dtype=DT))
    with pytest.raises(ValueError, match="b must be a 1-D"):
        conjugate_gradient(lambda v: a @ v, torch.ones(3, 1, dtype=DT))
    with pytest.raises(TypeError, match="floating-point"):
        conjugate_gradient(lambda v: a @ v, torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(lambda v: a @ v, b, max_iter=-1)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(lambda v: a @ v, b, tol=-1e-3)
    with pytest.raises(ValueError, match="x0"):
        conjugate_gradient(lambda v: a @ v, b, x0=torch.zeros(4, dtype=DT))
    with pytest.raises(ValueError, match="mv must return"):
        conjugate_gradient(lambda v: v[:2], b)
    # non-finite data are named, not iterated on (CG would return NaN silently)
    with pytest.raises(NonFiniteError, match="b must be finite"):
        conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, float("nan"), 0.0], dtype=DT))
    with pytest.raises(NonFiniteError, match="damping"):
        conjugate_gradient(lambda v: a @ v, b, damping=torch.tensor([1.0, float("inf"), 0.0], dtype=DT))
    with pytest.raises(NonFiniteError, match="x0"):
        conjugate_gradient(lambda v: a @ v, b, x0=torch.full((3,), float("nan"), dtype=DT))
    with pytest.raises(ArgumentTypeError, match="max_iter"):
        conjugate_gradient(lambda v: a @ v, b, max_iter=2.5)


# ---------------------------------------------------------------------------------------------
# NaturalGradient: agreement with the dense formula
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr, damping", [(1.0, 1e-3), (0.3, 1e-2), (2.0, 1.0)])
def test_step_equals_damped_natural_gradient(lr, damping):
    model = _mlp()
    x, y = _data()
    theta0, g = _theta(model), _grad(model, x, y)
    fisher = categorical_fisher(model, x)
    eye = torch.eye(theta0.numel(), dtype=DT)
    expected = theta0 - lr * torch.linalg.solve(fisher + damping * eye, g)
    loss0 = nn.functional.cross_entropy(model(x), y).item()
    opt = NaturalGradient(model.parameters(), lr=lr, damping=damping, curvature_fn=lambda: categorical_fisher(model, x))
    loss = opt.step(_closure(opt, model, x, y))
    assert loss.item() == loss0  # the closure's loss, at the parameters before the step
    assert torch.allclose(_theta(model), expected, rtol=1e-9, atol=1e-10)


def test_cg_solver_equals_dense_solver():
    x, y = _data(n=20)
    dense_model, cg_model = _mlp(), _mlp()
    dense = NaturalGradient(
        dense_model.parameters(), lr=0.5, damping=1e-2, solver="dense", curvature_fn=lambda: categorical_fisher(dense_model, x)
    )
    cg = NaturalGradient(
        cg_model.parameters(), lr=0.5, damping=1e-2, solver="cg", cg_max_iter=200, cg_tol=1e-13,
        curvature_fn=lambda: MatrixFree(cg_model, x),
    )
    for _ in range(3):
        dense.step(_closure(dense, dense_model, x, y))
        cg.step(_closure(cg, cg_model, x, y))
        assert cg.state[cg._anchor]["cg_relative_residual"] <= 1e-13
    assert torch.allclose(_theta(cg_model), _theta(dense_model), rtol=1e-8, atol=1e-10)


def test_auto_solver_switches_on_size():
    model = _mlp()
    x, _ = _data()
    small = NaturalGradient(model.parameters(), curvature_fn=lambda: categorical_fisher(model, x))
    large = NaturalGradient(model.parameters(), curvature_fn=lambda: categorical_fisher(model, x), dense_max=5)
    assert small._resolved_solver() == "dense" and large._resolved_solver() == "cg"


def test_solve_solver_uses_representation_solve():
    model = _mlp()
    x, y = _data()
    fisher = categorical_fisher(model, x)
    diag = torch.diagonal(fisher).clone()

    class Diagonal:
        def mv(self, v):
            return diag * v

        def solve(self, v, damping):
            return v / (diag + damping)

    theta0, g = _theta(model), _grad(model, x, y)
    opt = NaturalGradient(model.parameters(), lr=0.7, damping=0.1, solver="solve", curvature_fn=Diagonal)
    opt.step(_closure(opt, model, x, y))
    assert torch.allclose(_theta(model), theta0 - 0.7 * g / (diag + 0.1), rtol=1e-12)


def test_param_groups_get_their_own_lr_and_damping():
    model = _mlp()
    x, y = _data()
    theta0, g = _theta(model), _grad(model, x, y)
    fisher = categorical_fisher(model, x)
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    n_first = sum(p.numel() for p in first)
    opt = NaturalGradient(
        [{"params": first, "lr": 0.2, "damping": 0.5}, {"params": rest}],
        lr=1.0, damping=0.05, curvature_fn=lambda: categorical_fisher(model, x),
    )
    opt.step(_closure(opt, model, x, y))
    lam = torch.full_like(theta0, 0.05)
    lam[:n_first] = 0.5
    lr = torch.ones_like(theta0)
    lr[:n_first] = 0.2
    expected = theta0 - lr * torch.linalg.solve(fisher + torch.diag(lam), g)
    assert torch.allclose(_theta(model), expected, rtol=1e-10, atol=1e-12)


def test_step_without_closure_uses_existing_grad():
    model = _mlp()
    x, y = _data()
    theta0 = _theta(model)
    fisher = categorical_fisher(model, x)
    opt = NaturalGradient(model.parameters(), lr=0.5, damping=0.1, curvature_fn=lambda: fisher)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert opt.step() is None
    expected = theta0 - 0.5 * torch.linalg.solve(fisher + 0.1 * torch.eye(len(g), dtype=DT), g)
    assert torch.allclose(_theta(model), expected, rtol=1e-10)


def test_singular_fisher_without_damping_gives_minimum_norm_direction():
    w = torch.zeros(2, dtype=DT, requires_grad=True)
    fisher = torch.diag(torch.tensor([2.0, 0.0], dtype=DT))
    opt = NaturalGradient([w], lr=1.0, damping=0.0, curvature_fn=lambda: fisher)
    w.grad = torch.tensor([1.0, 1.0], dtype=DT)
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([-0.5, 0.0], dtype=DT))


def test_float32_model_stays_float32():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(10, 3)
    y = torch.randint(0, 2, (10,))
    opt = NaturalGradient(model.parameters(), lr=1.0, damping=1e-2, curvature_fn=lambda: categorical_fisher(model, x).float())
    before = nn.functional.cross_entropy(model(x), y).item()
    opt.step(_closure(opt, model, x, y))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert nn.functional.cross_entropy(model(x), y).item() < before


# ---------------------------------------------------------------------------------------------
# trust region, refresh schedule, state
# ---------------------------------------------------------------------------------------------
def test_kl_trust_region_scales_step_to_radius():
    x, y = _data(n=15)
    free_model, tr_model = _mlp(), _mlp()
    theta0 = _theta(free_model)
    fisher = categorical_fisher(free_model, x)
    free = NaturalGradient(free_model.parameters(), lr=1.0, damping=0.1, curvature_fn=lambda: fisher)
    free.step(_closure(free, free_model, x, y))
    step_free = _theta(free_model) - theta0
    kl_free = 0.5 * step_free @ fisher @ step_free
    radius = float(kl_free) / 10
    tr = NaturalGradient(tr_model.parameters(), lr=1.0, damping=0.1, max_kl=radius, curvature_fn=lambda: fisher)
    tr.step(_closure(tr, tr_model, x, y))
    step_tr = _theta(tr_model) - theta0
    assert math.isclose(0.5 * float(step_tr @ fisher @ step_tr), radius, rel_tol=1e-10)
    assert torch.allclose(step_tr, step_free * math.sqrt(0.1), rtol=1e-10)  # same direction, scaled
    state = tr.state[tr._anchor]
    assert math.isclose(state["kl"], radius, rel_tol=1e-10) and math.isclose(state["scale"], math.sqrt(0.1))
    # a radius larger than the step leaves it alone
    loose_model = _mlp()
    loose = NaturalGradient(loose_model.parameters(), lr=1.0, damping=0.1, max_kl=10 * float(kl_free), curvature_fn=lambda: fisher)
    loose.step(_closure(loose, loose_model, x, y))
    assert torch.allclose(_theta(loose_model) - theta0, step_free, rtol=1e-12)


def test_curvature_refreshed_every_k_steps():
    model = _mlp()
    x, y = _data()
    calls = []

    def curvature():
        calls.append(_theta(model))
        return categorical_fisher(model, x)

    opt = NaturalGradient(model.parameters(), lr=0.5, damping=0.1, update_every=3, curvature_fn=curvature)
    thetas = []
    for _ in range(7):
        thetas.append(_theta(model))
        opt.step(_closure(opt, model, x, y))
    assert len(calls) == 3  # steps 0, 3, 6
    for k, t in zip((0, 3, 6), calls):
        assert torch.equal(t, thetas[k])
    # step 4 used the Fisher from step 3
    model2 = _mlp()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(thetas[4], model2.parameters())
    g = _grad(model2, x, y)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(thetas[3], model2.parameters())
    stale = categorical_fisher(model2, x)
    expected = thetas[4] - 0.5 * torch.linalg.solve(stale + 0.1 * torch.eye(len(g), dtype=DT), g)
    assert torch.allclose(thetas[5], expected, rtol=1e-10)


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_state_dict_round_trip(solver):
    x, y = _data(n=16)
    factory = (lambda m: (lambda: categorical_fisher(m, x))) if solver == "dense" else (lambda m: (lambda: MatrixFree(m, x)))
    kwargs = dict(lr=0.4, damping=0.05, solver=solver, update_every=2, cg_max_iter=300, cg_tol=1e-13)
    model_a = _mlp()
    opt_a = NaturalGradient(model_a.parameters(), curvature_fn=factory(model_a), **kwargs)
    for _ in range(3):
        opt_a.step(_closure(opt_a, model_a, x, y))
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    model_b = copy.deepcopy(model_a)
    calls = []
    inner = factory(model_b)

    def counted():
        calls.append(1)
        return inner()

    # lr and damping come back from the state dict; constructor-only options are passed again
    kwargs.update(lr=1.0, damping=1.0)
    opt_b = NaturalGradient(model_b.parameters(), curvature_fn=counted, **kwargs)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    assert opt_b.param_groups[0]["lr"] == 0.4 and opt_b.param_groups[0]["damping"] == 0.05
    assert opt_b.state[opt_b._anchor]["step"] == 3
    for _ in range(3):
        opt_a.step(_closure(opt_a, model_a, x, y))
        opt_b.step(_closure(opt_b, model_b, x, y))
    if solver == "dense":  # the cached Fisher travels with the state: identical continuation
        assert torch.equal(_theta(model_a), _theta(model_b))
        assert len(calls) == 1  # only the scheduled refresh at step 4
    else:  # matrix-free curvature is recomputed after loading (step 3) and at step 4
        assert len(calls) == 2
        assert not torch.equal(_theta(model_a), _theta(model_b))


def test_deterministic_monotone_loss_decrease():
    x, y = _data(n=40, k=4, seed=11)

    def run():
        model = _mlp(seed=2)
        opt = NaturalGradient(model.parameters(), lr=0.5, damping=1e-2, curvature_fn=lambda: categorical_fisher(model, x))
        losses = [opt.step(_closure(opt, model, x, y)).item() for _ in range(8)]
        losses.append(nn.functional.cross_entropy(model(x), y).item())
        return losses, _theta(model)

    losses, theta = run()
    losses2, theta2 = run()
    assert losses == losses2 and torch.equal(theta, theta2)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.7 * losses[0]


def test_natural_gradient_beats_gradient_descent_on_ill_conditioned_logistic_regression():
    # Features on scales 1 and 100: GD's step is limited by the large scale, NG's is not.
    g = torch.Generator().manual_seed(12)
    x = torch.randn(200, 2, generator=g, dtype=DT) * torch.tensor([1.0, 100.0], dtype=DT)
    y = (x[:, 0] + 0.01 * x[:, 1] + 0.5 * torch.randn(200, generator=g, dtype=DT) > 0).long()

    def train(make_opt):
        model = nn.Linear(2, 2).to(DT)
        with torch.no_grad():  # start at zero: a saturated random start has a near-zero Fisher
            for p in model.parameters():
                p.zero_()
        opt = make_opt(model)
        for _ in range(10):
            opt.step(_closure(opt, model, x, y))
        return nn.functional.cross_entropy(model(x), y).item(), _grad(model, x, y)

    ng, ng_grad = train(lambda m: NaturalGradient(m.parameters(), lr=1.0, damping=1e-4, curvature_fn=lambda: categorical_fisher(m, x)))
    for lr in (1e-3, 3e-4, 1e-4):  # the stable range of GD's step is set by the feature of scale 100
        gd, _ = train(lambda m: torch.optim.SGD(m.parameters(), lr=lr))
        assert ng < 0.5 * gd
    assert torch.linalg.vector_norm(ng_grad) < 1e-6  # NG (Newton for the canonical link) has converged


# ---------------------------------------------------------------------------------------------
# reparameterisation invariance
# ---------------------------------------------------------------------------------------------
class Reparameterised(nn.Module):
    """Logistic regression whose weight matrix is A @ u: the same model family, other coordinates."""

    def __init__(self, a: torch.Tensor, base: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.u = nn.Parameter(torch.linalg.solve(a, base.weight.detach().reshape(-1)))
        self.bias = nn.Parameter(base.bias.detach().clone())
        self.shape = base.weight.shape

    def forward(self, x):
        return x @ (self.a @ self.u).view(self.shape).T + self.bias


def test_affine_reparameterisation_invariance_is_exact():
    x, y = _data(n=30, d=3, k=3, seed=13)
    torch.manual_seed(3)
    base = nn.Linear(3, 3).to(DT)
    a = torch.randn(9, 9, generator=torch.Generator().manual_seed(14), dtype=DT) + 3 * torch.eye(9, dtype=DT)
    twin = Reparameterised(a, base)
    gd_base, gd_twin = copy.deepcopy(base), copy.deepcopy(twin)
    ng_b = NaturalGradient(base.parameters(), lr=0.8, damping=0.0, curvature_fn=lambda: categorical_fisher(base, x))
    ng_t = NaturalGradient(twin.parameters(), lr=0.8, damping=0.0, curvature_fn=lambda: categorical_fisher(twin, x))
    sgd_b = torch.optim.SGD(gd_base.parameters(), lr=0.8)
    sgd_t = torch.optim.SGD(gd_twin.parameters(), lr=0.8)
    for _ in range(4):
        for opt, m in ((ng_b, base), (ng_t, twin), (sgd_b, gd_base), (sgd_t, gd_twin)):
            opt.step(_closure(opt, m, x, y))
    # softmax logits are shift invariant, so compare predictions (the Fisher's null space)
    assert torch.allclose(torch.softmax(base(x), -1), torch.softmax(twin(x), -1), atol=1e-9)
    assert (torch.softmax(gd_base(x), -1) - torch.softmax(gd_twin(x), -1)).abs().max() > 1e-2


def _bernoulli_paths(h: float, t_end: float = 1.0):
    """NG and GD paths for the Bernoulli NLL with sample mean 0.9, in p and in logit z."""
    mean = 0.9
    def nll_p(th):
        return -(mean * torch.log(th[0]) + (1 - mean) * torch.log1p(-th[0]))
    def nll_z(th):
        return -(mean * nn.functional.logsigmoid(th[0]) + (1 - mean) * nn.functional.logsigmoid(-th[0]))
    def fisher_p(th):
        return (1 / (th * (1 - th))).diag()
    def fisher_z(th):
        return (torch.sigmoid(th) * torch.sigmoid(-th)).diag()
    n = round(t_end / h)
    p0 = torch.tensor([0.2], dtype=DT)
    z0 = torch.logit(p0)
    out = {}
    for name, fisher_pair in (("ng", (fisher_p, fisher_z)), ("gd", (None, None))):
        lr = h if name == "ng" else h / 10  # GD in p needs a small step to stay inside (0, 1)
        steps = n if name == "ng" else 10 * n
        path_p = natural_gradient_path(nll_p, p0, lr=lr, n_steps=steps, fisher=fisher_pair[0])
        path_z = natural_gradient_path(nll_z, z0, lr=lr, n_steps=steps, fisher=fisher_pair[1])
        out[name] = (path_p[-1, 0], torch.sigmoid(path_z[-1, 0]))
    return out


def test_natural_gradient_paths_coincide_as_step_shrinks():
    gaps = []
    for h in (0.1, 0.05, 0.025):
        paths = _bernoulli_paths(h)
        gaps.append(abs(float(paths["ng"][0] - paths["ng"][1])))
        # GD: different flows in p and z, the gap stays at O(1) whatever the step
        assert abs(float(paths["gd"][0] - paths["gd"][1])) > 0.05
    assert gaps[-1] < 0.01
    # first-order method: the gap halves with the step
    for big, small in zip(gaps, gaps[1:]):
        assert 1.7 < big / small < 2.3
    # exact continuous-time NG flow in p: p(t) = mean + (p0 - mean) e^{-t}
    exact = 0.9 + (0.2 - 0.9) * math.exp(-1.0)
    nll_z = lambda th: -(0.9 * nn.functional.logsigmoid(th[0]) + 0.1 * nn.functional.logsigmoid(-th[0]))  # noqa: E731
    fisher_z = lambda th: (torch.sigmoid(th) * torch.sigmoid(-th)).diag()  # noqa: E731
    z_end = natural_gradient_path(nll_z, torch.logit(torch.tensor([0.2], dtype=DT)), lr=0.002, n_steps=500, fisher=fisher_z)[-1]
    assert abs(float(torch.sigmoid(z_end)) - exact) < 2e-3  # Euler error O(h)


def test_normal_location_scale_vs_log_scale_small_step():
    x = torch.tensor([0.3, -1.2, 2.5, 0.8, 1.9, -0.4], dtype=DT)
    def nll_sigma(th):
        return -torch.distributions.Normal(th[0], th[1]).log_prob(x).mean()
    def nll_log(th):
        return -torch.distributions.Normal(th[0], th[1].exp()).log_prob(x).mean()
    def fisher_sigma(th):
        return torch.diag(torch.stack([1 / th[1] ** 2, 2 / th[1] ** 2]))
    def fisher_log(th):
        return torch.diag(torch.stack([torch.exp(-2 * th[1]), torch.tensor(2.0, dtype=DT)]))
    start = torch.tensor([-1.0, 3.0], dtype=DT)
    gaps = []
    for h in (0.02, 0.01):
        a = natural_gradient_path(nll_sigma, start, lr=h, n_steps=round(1 / h), fisher=fisher_sigma)[-1]
        b = natural_gradient_path(nll_log, torch.stack([start[0], start[1].log()]), lr=h, n_steps=round(1 / h), fisher=fisher_log)[-1]
        gaps.append(float(torch.linalg.vector_norm(a - torch.stack([b[0], b[1].exp()]))))
    assert gaps[1] < 0.01 and 1.7 < gaps[0] / gaps[1] < 2.3


def test_natural_gradient_path_one_step_formula_and_gd():
    a = _spd(3, seed=15)
    target = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    def loss(th):
        return 0.5 * (th - target) @ a @ (th - target)
    theta0 = torch.zeros(3, dtype=DT)
    ng = natural_gradient_path(loss, theta0, lr=1.0, n_steps=1, fisher=lambda th: a)
    assert torch.allclose(ng[1], target, rtol=1e-10)  # Newton = NG for a quadratic with F = A
    gd = natural_gradient_path(loss, theta0, lr=0.1, n_steps=2)
    g0 = a @ (theta0 - target)
    assert torch.allclose(gd[1], theta0 - 0.1 * g0) and gd.shape == (3, 3)
    damped = natural_gradient_path(loss, theta0, lr=0.5, n_steps=1, fisher=lambda th: a, damping=2.0)
    assert torch.allclose(damped[1], -0.5 * torch.linalg.solve(a + 2 * torch.eye(3, dtype=DT), g0))


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_constructor_arguments():
    model = _mlp()
    x, _ = _data()
    fn = lambda: categorical_fisher(model, x)  # noqa: E731
    params = list(model.parameters())
    with pytest.raises(ValueError, match="damping"):
        NaturalGradient(params, damping=-1e-3, curvature_fn=fn)
    with pytest.raises(ValueError, match="lr"):
        NaturalGradient(params, lr=-0.1, curvature_fn=fn)
    with pytest.raises(ValueError, match="damping"):
        NaturalGradient([{"params": params, "damping": -1.0}], curvature_fn=fn)
    with pytest.raises(ValueError, match="max_kl"):
        NaturalGradient(params, max_kl=0.0, curvature_fn=fn)
    with pytest.raises(ValueError, match="update_every"):
        NaturalGradient(params, update_every=0, curvature_fn=fn)
    with pytest.raises(ValueError, match="solver"):
        NaturalGradient(params, solver="lu", curvature_fn=fn)
    with pytest.raises(ValueError, match="exactly one"):
        NaturalGradient(params)
    with pytest.raises(ValueError, match="exactly one"):
        NaturalGradient(params, curvature_fn=fn, model=model, inputs=x, likelihood="categorical")
    with pytest.raises(ValueError, match="likelihood"):
        NaturalGradient(params, model=model, inputs=x, likelihood="poisson")
    with pytest.raises(ValueError, match="kind"):
        NaturalGradient(params, model=model, inputs=x, likelihood="categorical", kind="observed")
    with pytest.raises(ValueError, match="targets"):
        NaturalGradient(params, model=model, inputs=x, likelihood="categorical", kind="empirical")
    no_batch = NaturalGradient(params, model=model, likelihood="categorical")  # batches come with step()
    with pytest.raises(ValueError, match="inputs"):
        no_batch.step(_closure(no_batch, model, x, _data()[1]))
    with pytest.raises(ValueError, match="parameters of model"):
        NaturalGradient(params[:2] + [torch.zeros(3, requires_grad=True)], model=model, inputs=x,
                        likelihood="categorical")
    with pytest.raises(TypeError, match="damping"):
        NaturalGradient(params, damping="0.1", curvature_fn=fn)


def test_mismatched_curvature_shapes_are_named():
    model = _mlp()
    x, y = _data()
    opt = NaturalGradient(model.parameters(), curvature_fn=lambda: torch.eye(7, dtype=DT))
    with pytest.raises(ValueError, match=r"\(44, 44\) matrix for 44 parameters"):
        opt.step(_closure(opt, model, x, y))

    class Short:
        def mv(self, v):
            return v[:-1]

    opt = NaturalGradient(model.parameters(), solver="cg", curvature_fn=Short)
    with pytest.raises(ValueError, match="does not match the optimiser's parameters"):
        opt.step(_closure(opt, model, x, y))


def test_non_finite_gradient_is_an_error():
    w = torch.zeros(2, dtype=DT, requires_grad=True)
    opt = NaturalGradient([w], curvature_fn=lambda: torch.eye(2, dtype=DT))
    w.grad = torch.tensor([1.0, float("nan")], dtype=DT)
    with pytest.raises(ValueError, match="non-finite"):
        opt.step()


def test_natural_gradient_path_bad_input():
    loss = lambda th: (th**2).sum()  # noqa: E731
    with pytest.raises(ValueError, match="lr"):
        natural_gradient_path(loss, torch.zeros(2, dtype=DT), lr=0.0, n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        natural_gradient_path(loss, torch.zeros(2, dtype=DT), lr=0.1, n_steps=-1)
    with pytest.raises(ValueError, match="theta0"):
        natural_gradient_path(loss, torch.zeros(2, 2, dtype=DT), lr=0.1, n_steps=1)
    with pytest.raises(ValueError, match=r"\(2, 2\) matrix"):
        natural_gradient_path(loss, torch.zeros(2, dtype=DT), lr=0.1, n_steps=1, fisher=lambda th: torch.eye(3, dtype=DT))
    with pytest.raises(ValueError, match="non-finite"):
        natural_gradient_path(lambda th: (th**4).sum(), torch.ones(1, dtype=DT), lr=10.0, n_steps=10)


# ---------------------------------------------------------------------------------------------
# with the curvature engine (fb.curvature.fisher built from model, inputs, likelihood)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "solver, representation", [("dense", None), ("cg", None), ("auto", None), ("solve", "diagonal")]
)
def test_model_constructor_uses_the_curvature_engine(solver, representation):
    x, y = _data(n=15)
    ref_model, model = _mlp(), _mlp()
    fisher = categorical_fisher(ref_model, x)
    theta0, g = _theta(ref_model), _grad(ref_model, x, y)
    if solver == "solve":
        expected = theta0 - 0.5 * g / (torch.diagonal(fisher) + 0.05)
    else:
        expected = theta0 - 0.5 * torch.linalg.solve(fisher + 0.05 * torch.eye(len(g), dtype=DT), g)
    opt = NaturalGradient(
        model.parameters(), lr=0.5, damping=0.05, model=model, inputs=x, likelihood="categorical",
        solver=solver, representation=representation, cg_max_iter=200, cg_tol=1e-13,
    )
    opt.step(_closure(opt, model, x, y))
    assert torch.allclose(_theta(model), expected, rtol=1e-8, atol=1e-10)


def test_model_constructor_empirical_and_mc_kinds():
    x, y = _data(n=15)
    model = _mlp()
    theta0, g = _theta(model), _grad(model, x, y)
    # empirical Fisher: mean of per-example gradient outer products, from a per-example loop
    rows = []
    for i in range(len(x)):
        rows.append(_grad(model, x[i : i + 1], y[i : i + 1]))
    emp = torch.stack(rows).T @ torch.stack(rows) / len(x)
    opt = NaturalGradient(
        model.parameters(), lr=1.0, damping=0.1, model=model, inputs=x, likelihood="categorical",
        kind="empirical", targets=y,
    )
    opt.step(_closure(opt, model, x, y))
    expected = theta0 - torch.linalg.solve(emp + 0.1 * torch.eye(len(g), dtype=DT), g)
    assert torch.allclose(_theta(model), expected, rtol=1e-8, atol=1e-10)
    # Monte-Carlo Fisher: reproducible with a seeded generator
    thetas = []
    for _ in range(2):
        m = _mlp()
        o = NaturalGradient(
            m.parameters(), lr=1.0, damping=0.1, model=m, inputs=x, likelihood="categorical", kind="mc",
            n_samples=4, generator=torch.Generator().manual_seed(5),
        )
        o.step(_closure(o, m, x, y))
        thetas.append(_theta(m))
    assert torch.equal(thetas[0], thetas[1]) and not torch.allclose(thetas[0], _theta(model))
