"""Tests for fisherbook.overparam: Fisher/NTK duality, function-space natural gradient, Fisher-Rao norm,
pruning and merging, against dense computations and hand calculations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import fisherbook as fb
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, ShapeError
from fisherbook.overparam import (
    average_merge,
    fisher_factor,
    fisher_merge,
    fisher_rao_norm,
    function_space_natural_gradient,
    jacobian,
    magnitude_saliency,
    obd_saliency,
    prune,
)

D = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _net(seed=0, d=3, h=12, k=4, act=nn.Tanh, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h, bias=bias), act(), nn.Linear(h, k, bias=bias)).double()


def _x(n, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


def _vec(net):
    return nn.utils.parameters_to_vector(net.parameters()).detach()


def test_jacobian_matches_finite_differences():
    net, x = _net(), _x(5)
    jac = jacobian(net, x)
    theta = _vec(net)
    eps = 1e-6
    for j in (0, 7, 40, theta.numel() - 1):
        e = torch.zeros_like(theta)
        e[j] = eps
        nn.utils.vector_to_parameters(theta + e, net.parameters())
        up = net(x).detach()
        nn.utils.vector_to_parameters(theta - e, net.parameters())
        dn = net(x).detach()
        assert torch.allclose(jac[:, :, j], (up - dn) / (2 * eps), atol=1e-8)
    nn.utils.vector_to_parameters(theta, net.parameters())


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian", "bernoulli"])
def test_factor_gives_the_engine_fisher(likelihood):
    net, x = _net(k=1 if likelihood == "bernoulli" else 4), _x(9)
    fac = fisher_factor(net, x, likelihood, sigma=0.5)
    F = fb.curvature.fisher(net, x, likelihood=likelihood, sigma=0.5).to_dense()
    assert torch.allclose(fac.fisher(), F, rtol=1e-10, atol=1e-12)


@given(seed=st.integers(0, 1000), n=st.integers(1, 12))
@SETTINGS
def test_fisher_and_gram_share_the_nonzero_spectrum(seed, n):
    net, x = _net(seed), _x(n, seed=seed)
    fac = fisher_factor(net, x)
    ef = torch.linalg.eigvalsh(fb.curvature.fisher(net, x).to_dense()).flip(0)  # the engine's own Fisher
    eg = torch.linalg.eigvalsh(fac.gram()).flip(0)
    r = eg.numel()  # N (K - 1) rows <= P = 100
    assert r == n * 3 and r < ef.numel()
    assert torch.allclose(ef[:r], eg, rtol=1e-8, atol=1e-10 * float(ef[0]))
    assert bool((ef[r:].abs() <= 1e-10 * float(ef[0])).all())  # the rest of the Fisher's spectrum is 0


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_function_space_natural_gradient_equals_the_dense_solve(likelihood):
    net, x = _net(1, h=30), _x(10, seed=1)  # P = 244 >> N C
    y = torch.randint(0, 4, (10,), generator=torch.Generator().manual_seed(0)) if likelihood == "categorical" \
        else torch.randn(10, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    out = net(x)
    if likelihood == "categorical":
        loss = nn.functional.cross_entropy(out, y)
    else:
        loss = 0.5 * ((out - y) ** 2).sum(1).mean() / 0.7**2
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(net.parameters()))])
    fac = fisher_factor(net, x, likelihood, sigma=0.7)
    assert torch.allclose(fac.matrix.T @ fac.loss_residual(y) / 10, g, atol=1e-12)  # g = A'r/N
    F = fb.curvature.fisher(net, x, likelihood=likelihood, sigma=0.7)
    for lam in (1e-1, 1e-4):
        d = function_space_natural_gradient(net, x, y, likelihood, damping=lam, sigma=0.7)
        assert torch.allclose(d, F.solve(g, damping=lam), rtol=1e-7, atol=1e-10)
    with pytest.raises(InvalidArgumentError):
        fac.natural_gradient(fac.loss_residual(y), 0.0)
    with pytest.raises(ShapeError):
        fac.natural_gradient(torch.zeros(3, dtype=D), 1.0)


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_fisher_rao_norm_matches_dense_and_the_homogeneity_identity(likelihood):
    net, x = _net(2, bias=False, act=nn.ReLU), _x(25, seed=2)
    theta = _vec(net)
    F = fb.curvature.fisher(net, x, likelihood=likelihood).to_dense()
    fr = fisher_rao_norm(net, x, likelihood)
    assert torch.allclose(fr, theta @ F @ theta, rtol=1e-10)
    # two bias-free ReLU layers: J theta = 2 f (Euler), so theta'F theta = 4 mean f' Lambda f
    f = net(x).detach()
    lam_f = fb.curvature.likelihoods.get_likelihood(likelihood).fisher_vp(f, f)
    assert torch.allclose(fr, 4 * (f * lam_f).sum(1).mean(), rtol=1e-10)
    with pytest.raises(ArgumentTypeError):
        fisher_rao_norm("net", x)


def test_fisher_rao_norm_is_invariant_to_relu_rescaling():
    net, x = _net(3, act=nn.ReLU, bias=False), _x(20, seed=3)
    before = fisher_rao_norm(net, x)
    c = torch.linspace(0.3, 3.0, 12, dtype=D)
    with torch.no_grad():
        net[0].weight.mul_(c.unsqueeze(1))
        net[2].weight.div_(c.unsqueeze(0))
    assert torch.allclose(fisher_rao_norm(net, x), before, rtol=1e-10)  # the function is unchanged


def test_obd_and_magnitude_pruning_by_hand():
    theta = torch.tensor([0.5, -2.0, 1.0, 3.0, -0.1], dtype=D)
    fdiag = torch.tensor([10.0, 0.01, 1.0, 0.0, 100.0], dtype=D)
    s = obd_saliency(theta, fdiag)
    assert torch.allclose(s, torch.tensor([1.25, 0.02, 0.5, 0.0, 0.5], dtype=D))
    pruned, keep = prune(theta, s, 0.4)  # drop 2 of 5: saliencies 0.0 (index 3) and 0.02 (index 1)
    assert keep.tolist() == [True, False, True, False, True]
    assert torch.equal(pruned, torch.tensor([0.5, 0.0, 1.0, 0.0, -0.1], dtype=D))
    pruned_m, keep_m = prune(theta, magnitude_saliency(theta), 0.4)  # magnitude drops -0.1 and 0.5
    assert keep_m.tolist() == [False, True, True, True, False]
    only = torch.tensor([True, True, False, False, True])
    _, keep_o = prune(theta, s, 0.34, prunable=only)  # round(0.34 * 3) = 1 of the three candidates
    assert keep_o.tolist() == [True, False, True, True, True]
    assert prune(theta, s, 0.0)[1].all() and not prune(theta, s, 1.0)[1].any()
    with pytest.raises(InvalidArgumentError):
        obd_saliency(theta, -fdiag)
    with pytest.raises(ShapeError):
        obd_saliency(theta, fdiag[:3])
    with pytest.raises(InvalidArgumentError):
        prune(theta, s, 1.5)


def test_obd_saliency_predicts_the_loss_increase_of_a_quadratic():
    # for a quadratic loss with diagonal Hessian H = F at its minimum, OBD is exact
    h = torch.tensor([2.0, 0.5, 3.0], dtype=D)
    theta = torch.tensor([1.0, -1.0, 0.2], dtype=D)
    loss = lambda t: 0.5 * ((t - theta) ** 2 * h).sum()  # noqa: E731
    s = obd_saliency(theta, h)
    for i in range(3):
        t = theta.clone()
        t[i] = 0
        assert torch.isclose(loss(t), s[i])


def test_merging_by_hand_and_limits():
    t1, t2 = torch.tensor([0.0, 2.0, 4.0], dtype=D), torch.tensor([2.0, 4.0, 0.0], dtype=D)
    f1, f2 = torch.tensor([3.0, 1.0, 0.0], dtype=D), torch.tensor([1.0, 1.0, 0.0], dtype=D)
    assert torch.allclose(average_merge([t1, t2]), torch.tensor([1.0, 3.0, 2.0], dtype=D))
    assert torch.allclose(average_merge([t1, t2], weights=[3, 1]), torch.tensor([0.5, 2.5, 3.0], dtype=D))
    m = fisher_merge([t1, t2], [f1, f2], eps=1e-12)
    # coordinate 0: (3*0 + 1*2)/4; coordinate 1: equal Fishers -> average; coordinate 2: no Fisher -> average
    assert torch.allclose(m, torch.tensor([0.5, 3.0, 2.0], dtype=D))
    m_w = fisher_merge([t1, t2], [f1, f2], weights=[1, 3], eps=1e-12)
    assert torch.allclose(m_w[0], torch.tensor(6.0 / 6.0, dtype=D))  # (1*3*0 + 3*1*2) / (3 + 3)
    assert torch.allclose(fisher_merge([t1, t2], [f1, f1]), average_merge([t1, t2]))
    with pytest.raises(ShapeError):
        fisher_merge([t1, t2], [f1])
    with pytest.raises(InvalidArgumentError):
        fisher_merge([t1, t2], [f1, -f2])
    with pytest.raises(InvalidArgumentError, match="empty"):  # a list (the accepted type) with no value
        average_merge([])
    with pytest.raises(InvalidArgumentError):
        average_merge([t1, t2], weights=[0, 0])


def test_fisher_merge_is_the_mode_of_the_product_of_diagonal_gaussians():
    g = torch.Generator().manual_seed(0)
    thetas = [torch.randn(6, generator=g, dtype=D) for _ in range(3)]
    fishers = [torch.rand(6, generator=g, dtype=D) + 0.1 for _ in range(3)]
    merged = fisher_merge(thetas, fishers, eps=1e-12).requires_grad_(True)
    log_prod = -0.5 * sum(((merged - t) ** 2 * f).sum() for t, f in zip(thetas, fishers))
    (grad,) = torch.autograd.grad(log_prod, merged)
    assert grad.abs().max() < 1e-10  # stationary point of a concave quadratic: the mode
