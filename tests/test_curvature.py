"""Tests for fisherbook.curvature: every representation against an independent dense reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parameters_to_vector

import fisherbook as fb
from fisherbook.curvature import KFAC, fisher, per_example_grads

C = fb.curvature
REPS = ("dense", "diagonal", "block_diagonal", "kfac", "matrix_free")
GENERIC_REPS = ("dense", "diagonal", "block_diagonal", "matrix_free")
TOL = 1e-10


# -- models and an independent reference --------------------------------------------------------

def mlp(k_out: int = 3, seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6, bias=bias), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(),
                         nn.Linear(5, k_out)).double()


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).double()


def data(n: int = 12, shape=(4,), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def reference_fisher(model: nn.Module, x: torch.Tensor, likelihood: str, sigma: float = 1.0,
                     targets: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loop with torch.autograd: enumerate classes / outputs; no factor trick."""
    params = list(model.parameters())
    p = sum(q.numel() for q in params)
    out = torch.zeros(p, p, dtype=torch.float64)

    def grad(scalar):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(scalar, params, retain_graph=True)])

    for n in range(x.shape[0]):
        f = model(x[n:n + 1]).reshape(-1)
        if targets is not None:  # empirical
            if likelihood == "categorical":
                g = grad(torch.log_softmax(f, -1)[targets[n]])
            elif likelihood == "bernoulli":
                g = grad(-nn.functional.binary_cross_entropy_with_logits(f, targets[n].reshape(-1), reduction="sum"))
            else:
                g = grad(-0.5 * ((targets[n].reshape(-1) - f) ** 2).sum() / sigma**2)
            out += torch.outer(g, g)
        elif likelihood == "categorical":
            logp = torch.log_softmax(f, -1)
            for c in range(f.numel()):  # exact expectation by enumerating the classes
                g = grad(logp[c])
                out += logp[c].exp().detach() * torch.outer(g, g)
        else:
            jac = torch.stack([grad(f[k]) for k in range(f.numel())])  # (K, P)
            if likelihood == "bernoulli":
                s = torch.sigmoid(f).detach()
                lam = s * (1 - s)
            else:
                lam = torch.full((f.numel(),), 1 / sigma**2, dtype=torch.float64)
            out += jac.T @ (lam[:, None] * jac)
    return out / x.shape[0]


def expected_neg_hessian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Categorical Fisher as E_y[-Hessian of log p(y|x)] (a second, independent method)."""
    theta0 = parameters_to_vector(model.parameters()).detach()
    shapes = [q.shape for q in model.parameters()]
    names = [k for k, _ in model.named_parameters()]

    def logp_all(theta):
        chunks, o = {}, 0
        for name, s in zip(names, shapes):
            chunks[name] = theta[o:o + s.numel()].reshape(s)
            o += s.numel()
        return torch.log_softmax(torch.func.functional_call(model, chunks, (x,)), -1)  # (N, K)

    probs = logp_all(theta0).exp().detach()
    k = probs.shape[1]
    total = 0
    for c in range(k):
        h = torch.autograd.functional.hessian(lambda t: (probs[:, c] * logp_all(t)[:, c]).sum(), theta0)
        total = total - h
    return total / x.shape[0]


@pytest.fixture(scope="module")
def setups():
    """(name, model, inputs, likelihood, targets, reference) for the MLP and CNN cases."""
    out = []
    x = data()
    for lik, k in (("categorical", 3), ("bernoulli", 2), ("gaussian", 2)):
        model = mlp(k)
        out.append((f"mlp-{lik}", model, x, lik, reference_fisher(model, x, lik, sigma=0.7 if lik == "gaussian"
                                                                           else 1.0)))
    xc = data(6, (1, 5, 5))
    model = cnn()
    out.append(("cnn-categorical", model, xc, "categorical", reference_fisher(model, xc, "categorical")))
    return out


def _sigma(lik: str) -> float:
    return 0.7 if lik == "gaussian" else 1.0


# -- agreement with the dense reference -------------------------------------------------------------

def test_reference_equals_expected_negative_hessian():
    model, x = mlp(3), data(8)
    assert torch.allclose(reference_fisher(model, x, "categorical"), expected_neg_hessian(model, x),
                          atol=TOL, rtol=0)


@pytest.mark.parametrize("rep", GENERIC_REPS)
def test_representations_match_dense_reference(setups, rep):
    """Dense, diagonal, block-diagonal and matrix-free are exact (KFAC is an approximation: tested below)."""
    for name, model, x, lik, ref in setups:
        F = fisher(model, x, likelihood=lik, kind="true", representation=rep, sigma=_sigma(lik))
        assert F.shape == ref.shape and F.dtype == torch.float64
        assert torch.allclose(F.diag(), ref.diagonal(), atol=TOL, rtol=0), (name, rep)
        if rep in ("dense", "matrix_free"):
            assert torch.allclose(F.to_dense(), ref, atol=TOL, rtol=0), (name, rep)
        if rep == "block_diagonal":
            dense = F.to_dense()
            mask = dense != 0
            assert torch.allclose(dense[mask], ref[mask], atol=TOL, rtol=0), name
            assert mask.sum() < ref.numel()  # blocks, not the full matrix
        assert torch.allclose(F.trace(), ref.trace(), atol=TOL, rtol=0)


def test_structured_and_generic_paths_agree():
    """A Linear stack wrapped with a non-Linear parameter goes through torch.func; the blocks agree."""

    class Scaled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.scale = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def forward(self, x):
            return self.inner(x) * self.scale

    model, x = mlp(3), data()
    wrapped = Scaled(model)
    for kind in ("true", "empirical"):
        y = torch.arange(x.shape[0]) % 3
        a = fisher(model, x, kind=kind, targets=y).to_dense()
        b = fisher(wrapped, x, kind=kind, targets=y).to_dense()
        assert torch.allclose(b[1:, 1:], a, atol=TOL, rtol=0)  # the wrapper's own parameter comes first
        assert not torch.allclose(a, torch.zeros_like(a))


@pytest.mark.parametrize("lik", ["categorical", "bernoulli", "gaussian"])
def test_empirical_fisher_matches_loop(lik):
    model, x = mlp(3 if lik == "categorical" else 2), data()
    g = torch.Generator().manual_seed(3)
    if lik == "categorical":
        y = torch.randint(0, 3, (x.shape[0],), generator=g)
    elif lik == "bernoulli":
        y = torch.randint(0, 2, (x.shape[0], 2), generator=g).double()
    else:
        y = torch.randn(x.shape[0], 2, generator=g, dtype=torch.float64)
    ref = reference_fisher(model, x, lik, sigma=_sigma(lik), targets=y)
    for rep in GENERIC_REPS:
        F = fisher(model, x, likelihood=lik, kind="empirical", targets=y, representation=rep, sigma=_sigma(lik))
        assert torch.allclose(F.diag(), ref.diagonal(), atol=TOL, rtol=0), rep
    G = per_example_grads(model, x, y, likelihood=lik, sigma=_sigma(lik))
    assert torch.allclose(G.T @ G / x.shape[0], ref, atol=TOL, rtol=0)


def test_per_example_grads_generic_cnn():
    model, x = cnn(), data(5, (1, 5, 5))
    y = torch.tensor([0, 1, 2, 1, 0])
    G = per_example_grads(model, x, y)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    total = torch.autograd.grad(-loss, list(model.parameters()))
    assert torch.allclose(G.sum(0), torch.cat([t.reshape(-1) for t in total]), atol=TOL, rtol=0)


# -- KFAC ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lik", ["categorical", "bernoulli", "gaussian"])
def test_kfac_exact_for_one_example_one_layer(lik, bias):
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=bias).double()
    x = data(1)
    K = fisher(model, x, likelihood=lik, representation="kfac", sigma=_sigma(lik))
    D = fisher(model, x, likelihood=lik, representation="dense", sigma=_sigma(lik))
    assert torch.allclose(K.to_dense(), D.to_dense(), atol=TOL, rtol=0)
    assert torch.allclose(K.to_dense(), reference_fisher(model, x, lik, sigma=_sigma(lik)), atol=TOL, rtol=0)
    a, g = K.factors[0]
    assert a.shape == ((5, 5) if bias else (4, 4)) and g.shape == (3, 3)
    if bias:  # the bias enters A as a ones-column
        assert torch.allclose(a[-1, -1], torch.tensor(1.0, dtype=torch.float64))


def test_kfac_is_an_approximation_for_many_examples():
    model, x = mlp(3), data()
    K = fisher(model, x, representation="kfac").to_dense()
    D = fisher(model, x, representation="block_diagonal").to_dense()
    assert (K - D).abs().max() > 1e-4
    assert torch.equal(K != 0, D != 0)  # same block pattern


def test_kfac_solve_and_logdet_exact():
    model, x = mlp(3), data()
    K = fisher(model, x, representation="kfac")
    dense = K.to_dense()
    eye = torch.eye(K.num_params, dtype=torch.float64)
    v = torch.randn(K.num_params, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for lam in (1e-3, 0.5):
        assert torch.allclose(K.solve(v, lam), torch.linalg.solve(dense + lam * eye, v), atol=1e-8, rtol=1e-8)
        assert torch.allclose(K.logdet(lam), torch.linalg.slogdet(dense + lam * eye)[1], atol=1e-8, rtol=0)
    assert torch.allclose(K.trace(), dense.trace(), atol=TOL, rtol=0)


def test_kfac_factored_damping():
    model, x = mlp(3), data()
    K = fisher(model, x, representation="kfac")
    lam = 0.1
    v = torch.randn(K.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    blocks = []
    for (a, g) in K.factors:
        pi = math.sqrt((a.trace() / a.shape[0]) / (g.trace() / g.shape[0]))
        ad = a + pi * math.sqrt(lam) * torch.eye(a.shape[0], dtype=a.dtype)
        gd = g + math.sqrt(lam) / pi * torch.eye(g.shape[0], dtype=g.dtype)
        blocks.append((ad, gd))
    damped = KFAC.from_factors(model, blocks).to_dense()
    assert torch.allclose(K.solve(v, lam, factored=True), torch.linalg.solve(damped, v), atol=1e-8, rtol=1e-8)


def test_kfac_from_factors_roundtrip():
    model, x = mlp(3), data()
    K = fisher(model, x, representation="kfac")
    K2 = KFAC.from_factors(model, K.factors)
    assert torch.equal(K2.to_dense(), K.to_dense())
    assert K2.modules == [m for m in model if isinstance(m, nn.Linear)]
    with pytest.raises(ValueError, match="factors"):
        KFAC.from_factors(model, K.factors[:-1])


def test_kfac_unsupported_layer_error():
    torch.manual_seed(0)
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(18, 3)).double()
    with pytest.raises(ValueError, match=r"nn\.Linear, nn\.Conv2d.*unsupported: 0 \(Conv2d\).*'dense'"):
        fisher(grouped, data(3, (2, 5, 5)), representation="kfac")
    normed = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match=r"unsupported: 1 \(LayerNorm\).*'diagonal'"):
        fisher(normed, data(3), representation="kfac")


def test_kfac_conv_exact_for_one_example_one_position():
    """A Conv2d whose kernel covers the whole input has one output position: KFAC is exact."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 4), nn.Flatten()).double()
    x = data(1, (2, 4, 4))
    K = fisher(model, x, representation="kfac")
    assert torch.allclose(K.to_dense(), reference_fisher(model, x, "categorical"), atol=TOL, rtol=0)


def test_kfac_conv_equals_linear_on_flattened_input():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 3, 4), nn.Flatten(), nn.Tanh(), nn.Linear(3, 3)).double()
    lin = nn.Sequential(nn.Flatten(), nn.Linear(32, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    with torch.no_grad():
        lin[1].weight.copy_(conv[0].weight.reshape(3, -1))
        lin[1].bias.copy_(conv[0].bias)
        lin[3].load_state_dict(conv[3].state_dict())
    x = data(9, (2, 4, 4))
    for (a1, g1), (a2, g2) in zip(fisher(conv, x, representation="kfac").factors,
                                  fisher(lin, x, representation="kfac").factors):
        assert torch.allclose(a1, a2, atol=TOL, rtol=0) and torch.allclose(g1, g2, atol=TOL, rtol=0)


def test_kfac_conv_factors_by_loop():
    """KFC factors with T > 1 positions against a loop over examples, classes and positions."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(),
                          nn.Linear(2 * 3 * 3, 3)).double()
    x = data(4, (1, 5, 5))
    conv = model[0]
    a_ref = torch.zeros(10, 10, dtype=torch.float64)
    g_ref = torch.zeros(2, 2, dtype=torch.float64)
    t_count = 9
    for n in range(4):
        xn = x[n:n + 1]
        padded = nn.functional.pad(xn, (1, 1, 1, 1))
        z = conv(xn)
        out = model[3](model[2](model[1](z)))[0]
        logp = torch.log_softmax(out, -1)
        for i in range(3):
            for j in range(3):
                patch = torch.cat([padded[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(-1),
                                   torch.ones(1, dtype=torch.float64)])
                a_ref += torch.outer(patch, patch) / 4
        for c in range(3):
            (gz,) = torch.autograd.grad(logp[c], z, retain_graph=True)
            b = gz[0].reshape(2, -1)  # (O, T)
            g_ref += logp[c].exp().detach() * (b @ b.T) / (4 * t_count)
    a, g = fisher(model, x, representation="kfac").factors[0]
    assert torch.allclose(a, a_ref, atol=TOL, rtol=0) and torch.allclose(g, g_ref, atol=TOL, rtol=0)


def test_kfac_conv_interface():
    model, x = cnn(), data(6, (1, 5, 5))
    K = fisher(model, x, representation="kfac")
    dense = K.to_dense()
    v = torch.randn(K.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dense, dense.T) and torch.allclose(K.mv(v), dense @ v, atol=TOL, rtol=0)
    assert torch.allclose(K.diag(), dense.diagonal(), atol=TOL, rtol=0)
    sol = K.solve(v, 0.1)
    assert torch.allclose(K.mv(sol) + 0.1 * sol, v, atol=1e-8, rtol=0)
    assert [m for m in K.modules] == [model[0], model[3]]


def test_kfac_layer_called_twice_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3).double()

        def forward(self, x):
            return self.lin(torch.tanh(self.lin(x)))

    model, x = Twice(), data(4, (3,))
    with pytest.raises(ValueError, match="called 2 times"):
        fisher(model, x, representation="kfac")
    # the generic path handles weight sharing
    ref = reference_fisher(model, x, "categorical")
    assert torch.allclose(fisher(model, x, representation="diagonal").diag(), ref.diagonal(), atol=TOL, rtol=0)


# -- kinds -----------------------------------------------------------------------------------------

def test_mc_converges_to_true():
    model, x = mlp(3), data(6)
    true = fisher(model, x, kind="true").to_dense()
    errs = []
    for s in (10, 1000):
        g = torch.Generator().manual_seed(0)
        mc = fisher(model, x, kind="mc", n_samples=s, generator=g).to_dense()
        errs.append(((mc - true).norm() / true.norm()).item())
    # Monte-Carlo error scales as 1/sqrt(S): 100x samples -> 10x smaller, allow a factor 2 of noise
    assert errs[1] < errs[0] / 5
    assert errs[1] < 0.1


@pytest.mark.parametrize("lik", ["bernoulli", "gaussian"])
def test_mc_converges_other_likelihoods(lik):
    model, x = mlp(2), data(6)
    true = fisher(model, x, likelihood=lik, representation="diagonal", sigma=_sigma(lik)).diag()
    g = torch.Generator().manual_seed(0)
    mc = fisher(model, x, likelihood=lik, kind="mc", n_samples=4000, representation="diagonal", generator=g,
                sigma=_sigma(lik)).diag()
    assert ((mc - true).norm() / true.norm()) < 0.1  # relative MC error ~ sqrt(2/4000) per entry


def test_mc_kfac_converges_to_exact_kfac():
    model, x = mlp(3), data(6)
    exact = fisher(model, x, representation="kfac").factors
    mc = fisher(model, x, kind="mc", n_samples=4000, representation="kfac",
                generator=torch.Generator().manual_seed(0)).factors
    for (a1, g1), (a2, g2) in zip(exact, mc):
        assert torch.equal(a1, a2)  # A does not depend on the targets
        assert (g2 - g1).norm() / g1.norm() < 0.1  # relative MC error ~ sqrt(1/4000) per entry, x a few


def test_one_dimensional_outputs_bernoulli():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1), nn.Flatten(0)).double()
    x = data(10)
    y = (torch.arange(10) % 2).double()
    assert model(x).shape == (10,)
    ref = reference_fisher(model, x, "bernoulli", targets=y.reshape(10, 1))
    for rep in GENERIC_REPS:
        F = fisher(model, x, likelihood="bernoulli", kind="empirical", targets=y, representation=rep)
        assert torch.allclose(F.diag(), ref.diagonal(), atol=TOL, rtol=0), rep


def test_mc_reproducible_with_generator():
    model, x = mlp(3), data()
    a = fisher(model, x, kind="mc", n_samples=3, generator=torch.Generator().manual_seed(5)).to_dense()
    b = fisher(model, x, kind="mc", n_samples=3, generator=torch.Generator().manual_seed(5)).to_dense()
    c = fisher(model, x, kind="mc", n_samples=3, generator=torch.Generator().manual_seed(6)).to_dense()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_empirical_differs_from_true_away_from_optimum():
    model, x = mlp(3), data(40)
    y = torch.zeros(40, dtype=torch.long)  # targets unrelated to the random network's predictions
    emp = fisher(model, x, kind="empirical", targets=y).to_dense()
    true = fisher(model, x, kind="true").to_dense()
    assert (emp - true).norm() / true.norm() > 0.3


def test_empirical_equals_true_in_expectation_gaussian():
    """Gaussian: with y ~ N(f, sigma^2), the empirical Fisher averages to the true one."""
    model, x = mlp(2), data(4)
    f = model(x).detach()
    g = torch.Generator().manual_seed(0)
    reps = 2000
    y = (f.repeat(reps, 1) + 0.7 * torch.randn(reps * 4, 2, generator=g, dtype=torch.float64))
    emp = fisher(model, x.repeat(reps, 1), likelihood="gaussian", kind="empirical", targets=y, sigma=0.7,
                 representation="diagonal").diag()
    true = fisher(model, x, likelihood="gaussian", sigma=0.7, representation="diagonal").diag()
    assert ((emp - true).norm() / true.norm()) < 0.1


# -- products, solves, inverses --------------------------------------------------------------------

@pytest.mark.parametrize("rep", REPS)
def test_fvp_matches_dense(rep):
    model, x = mlp(3), data()
    F = fisher(model, x, representation=rep)
    dense = F.to_dense()
    v = torch.randn(F.num_params, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(F.mv(v), dense @ v, atol=TOL, rtol=0)
    assert torch.allclose(F.mv(v[:, 0]), dense @ v[:, 0], atol=TOL, rtol=0)
    assert torch.allclose(F @ v[:, 1], dense @ v[:, 1], atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["true", "mc", "empirical"])
def test_matrix_free_first_and_later_products_agree(kind):
    """The first product (jvp/vjp) and later ones (cached layer statistics) give the same F v."""
    model, x = mlp(3), data()
    y = torch.arange(x.shape[0]) % 3
    F = fisher(model, x, kind=kind, targets=y, representation="matrix_free", n_samples=2,
               generator=torch.Generator().manual_seed(0))
    v = torch.randn(F.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    first, second = F.mv(v), F.mv(v)
    assert torch.allclose(first, second, atol=TOL, rtol=0)
    assert torch.allclose(first, F.to_dense() @ v, atol=TOL, rtol=0)  # same sampled targets for kind="mc"


def test_categorical_factor():
    lik = C.Categorical()
    f = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    f[0, :2] = -800.0  # probabilities that underflow to 0
    f[1] = 0.0
    f[1, 3] = 60.0  # one probability near 1
    s = lik.sqrt_fisher(f)
    p = torch.softmax(f, -1)
    lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    assert s.shape == (6, 5, 4) and torch.isfinite(s).all()
    assert torch.allclose(s @ s.transpose(1, 2), lam, atol=1e-15, rtol=0)
    assert torch.equal(lik.sqrt_fisher(torch.zeros(3, 1, dtype=torch.float64)), torch.zeros(3, 1, 1,
                                                                                           dtype=torch.float64))


@pytest.mark.parametrize("lik", [C.Categorical(), C.Bernoulli(), C.Gaussian(0.3)])
def test_output_fisher_vp_matches_factor(lik):
    g = torch.Generator().manual_seed(0)
    f = torch.randn(7, 4, dtype=torch.float64, generator=g)
    u = torch.randn(7, 4, dtype=torch.float64, generator=g)
    s = lik.sqrt_fisher(f)
    assert torch.allclose(lik.fisher_vp(f, u), torch.einsum("nkc,nlc,nl->nk", s, s, u), atol=1e-14, rtol=0)


def test_fvp_generic_path_cnn():
    """The torch.func (jvp then vjp) product on a CNN against the exact dense matrix."""
    model, x = cnn(), data(5, (1, 5, 5))
    F = fisher(model, x, representation="matrix_free")
    v = torch.randn(F.num_params, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dense = fisher(model, x, representation="dense").to_dense()
    assert torch.allclose(F.mv(v), dense @ v, atol=TOL, rtol=0)
    sol = F.solve(v[:, 0], damping=0.1)
    assert torch.allclose(F.mv(sol) + 0.1 * sol, v[:, 0], atol=1e-8, rtol=0)


@pytest.mark.parametrize("rep", REPS)
def test_solve(rep):
    model, x = mlp(3), data()
    F = fisher(model, x, representation=rep)
    v = torch.randn(F.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lam = 1e-2
    sol = F.solve(v, damping=lam)
    assert torch.allclose(F.mv(sol) + lam * sol, v, atol=1e-8, rtol=0)


@pytest.mark.parametrize("rep", ["dense", "diagonal", "block_diagonal"])
def test_inverse_and_logdet(rep):
    model, x = mlp(3), data()
    F = fisher(model, x, representation=rep)
    dense = F.to_dense()
    eye = torch.eye(F.num_params, dtype=torch.float64)
    inv = F.inverse(0.1)
    assert type(inv) is type(F)
    assert torch.allclose(inv.to_dense() @ (dense + 0.1 * eye), eye, atol=1e-8, rtol=0)
    assert torch.allclose(F.logdet(0.1), torch.linalg.slogdet(dense + 0.1 * eye)[1], atol=1e-8, rtol=0)


def test_matrix_free_has_no_cheap_inverse():
    F = fisher(mlp(3), data(), representation="matrix_free")
    with pytest.raises(NotImplementedError, match="solve"):
        F.inverse(0.1)


def test_singular_without_damping_raises():
    model, x = mlp(3), data(2)  # 2 examples x 3 classes: rank <= 4 < P
    for rep in ("dense", "block_diagonal"):
        with pytest.raises(ValueError, match="damping"):
            fisher(model, x, representation=rep).solve(torch.ones(fisher(model, x).num_params, dtype=torch.float64))


# -- invariances, dtype, layout --------------------------------------------------------------------

def test_unflatten_matches_parameters():
    model = mlp(3)
    F = fisher(model, data(), representation="diagonal")
    parts = F.unflatten(F.diag())
    assert [p.shape for p in parts] == [p.shape for p in model.parameters()]
    vec = parameters_to_vector(model.parameters()).detach()
    assert all(torch.equal(a, b) for a, b in zip(F.unflatten(vec), model.parameters()))
    with pytest.raises(ValueError, match="last dimension"):
        F.unflatten(vec[:-1])


def test_follows_float32_dtype():
    model = mlp(3)
    x = data()
    m32 = mlp(3).float()
    for rep in REPS:
        ref = fisher(model, x, representation=rep).diag()
        F = fisher(m32, x, representation=rep)  # float64 inputs follow the float32 model
        assert F.dtype == torch.float32 and F.diag().dtype == torch.float32
        assert F.mv(torch.ones(F.num_params, dtype=torch.float64)).dtype == torch.float32
        assert torch.allclose(F.diag().double(), ref, atol=1e-6, rtol=1e-4), rep  # float32 round-off


def test_mean_reduction_invariant_to_duplication():
    """F is a mean over examples: duplicating the data set leaves it unchanged."""
    model, x = mlp(3), data()
    a = fisher(model, x, representation="diagonal").diag()
    b = fisher(model, torch.cat([x, x]), representation="diagonal").diag()
    assert torch.allclose(a, b, atol=TOL, rtol=0)


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.05, 20.0), seed=st.integers(0, 1000))
def test_gaussian_sigma_scaling(scale, seed):
    """Gaussian Fisher is J^T J / sigma^2: exactly proportional to 1/sigma^2."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = data(5, (3,), seed=seed)
    one = fisher(model, x, likelihood="gaussian", sigma=1.0, representation="diagonal").diag()
    scaled = fisher(model, x, likelihood="gaussian", sigma=scale, representation="diagonal").diag()
    assert torch.allclose(scaled * scale**2, one, rtol=1e-10, atol=1e-14)


@settings(max_examples=15, deadline=None)
@given(shift=st.floats(-30.0, 30.0))
def test_categorical_logit_shift_invariance(shift):
    """Adding a constant to every logit changes neither p nor the Fisher (w.r.t. the other parameters)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = data(6, (3,))
    a = fisher(model, x, representation="kfac").factors
    with torch.no_grad():
        model[2].bias += shift
    b = fisher(model, x, representation="kfac").factors
    for (a1, g1), (a2, g2) in zip(a, b):
        assert torch.allclose(a1, a2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-10)


def test_probabilities_near_zero_one_are_finite():
    torch.manual_seed(0)
    model = nn.Linear(3, 4).double()
    with torch.no_grad():
        model.weight.mul_(200.0)
    x = data(5, (3,))
    for lik in ("categorical", "bernoulli"):
        d = fisher(model, x, likelihood=lik, representation="diagonal").diag()
        assert torch.isfinite(d).all() and (d >= 0).all()


# -- bad input ---------------------------------------------------------------------------------------

def test_bad_arguments():
    model, x = mlp(3), data()
    with pytest.raises(TypeError, match="model"):
        fisher(lambda t: t, x)
    with pytest.raises(ValueError, match="kind"):
        fisher(model, x, kind="observed")
    with pytest.raises(ValueError, match="likelihood"):
        fisher(model, x, likelihood="poisson")
    with pytest.raises(ValueError, match="representation"):
        fisher(model, x, representation="full")
    with pytest.raises(ValueError, match="n_samples"):
        fisher(model, x, kind="mc", n_samples=0)
    with pytest.raises(TypeError, match="n_samples"):
        fisher(model, x, kind="mc", n_samples=2.5)
    with pytest.raises(ValueError, match="sigma"):
        fisher(model, x, likelihood="gaussian", sigma=0.0)
    with pytest.raises(TypeError, match="generator"):
        fisher(model, x, kind="mc", generator=0)
    with pytest.raises(TypeError, match="inputs"):
        fisher(model, x.numpy())
    with pytest.raises(ValueError, match="inputs"):
        fisher(model, x[:0])
    with pytest.raises(ValueError, match="no parameters"):
        fisher(nn.Tanh(), x)


def test_bad_targets():
    model, x = mlp(3), data()
    with pytest.raises(ValueError, match="targets is required"):
        fisher(model, x, kind="empirical")
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        fisher(model, x, kind="empirical", targets=torch.full((x.shape[0],), 3))
    with pytest.raises(TypeError, match="integer"):
        fisher(model, x, kind="empirical", targets=torch.zeros(x.shape[0]))
    with pytest.raises(ValueError, match="shape"):
        fisher(model, x, kind="empirical", targets=torch.zeros(x.shape[0] + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="0 or 1"):
        fisher(mlp(2), x, likelihood="bernoulli", kind="empirical", targets=torch.full((x.shape[0], 2), 0.5))


def test_bad_vectors_and_damping():
    F = fisher(mlp(3), data(), representation="diagonal")
    with pytest.raises(ValueError, match=rf"\({F.num_params},\)"):
        F.mv(torch.ones(3))
    with pytest.raises(TypeError, match="v must be"):
        F.mv([1.0] * F.num_params)
    with pytest.raises(ValueError, match="damping"):
        F.solve(torch.ones(F.num_params), damping=-1.0)
    with pytest.raises(TypeError, match="damping"):
        F.solve(torch.ones(F.num_params), damping="a lot")


def test_matrix_free_products_work_under_no_grad() -> None:
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    X = torch.randn(7, 4, dtype=torch.float64)
    F = fb.curvature.fisher(model, X, likelihood="categorical", kind="true", representation="matrix_free")
    v = torch.randn(F.num_params, dtype=torch.float64)
    expected = F.to_dense() @ v
    with torch.no_grad():
        got = F.mv(v)
        solved = F.solve(v, damping=0.1)
    assert not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(F.to_dense() @ solved + 0.1 * solved, v, rtol=1e-8, atol=1e-10)


def test_matrix_free_solve_refuses_a_singular_fisher_without_damping() -> None:
    # More parameters than examples x (classes - 1): the Fisher is singular, CG breaks down.
    torch.manual_seed(4)
    model = torch.nn.Linear(6, 3).double()
    X = torch.randn(2, 6, dtype=torch.float64)
    F = fb.curvature.fisher(model, X, likelihood="categorical", kind="true", representation="matrix_free")
    v = torch.randn(F.num_params, dtype=torch.float64)
    with pytest.raises(ValueError, match="conjugate gradient"):
        F.solve(v, damping=0.0)
    x = F.solve(v, damping=1e-2)
    torch.testing.assert_close(F.to_dense() @ x + 1e-2 * x, v, rtol=1e-8, atol=1e-9)
