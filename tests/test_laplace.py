"""Tests for fisherbook.bayes.laplace: last-layer Laplace, predictive approximations, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fisherbook.bayes.influence import fit_newton, objective_curvature
from fisherbook.bayes.laplace import LastLayerLaplace, calibration_curve, expected_calibration_error
from fisherbook.bayes.selection import laplace_log_evidence

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed=0, out=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, out)).double()


def _data(n=80, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=D)
    y = (torch.atan2(x[:, 1], x[:, 0]) + math.pi).mul(classes / (2 * math.pi)).long().clamp_max(classes - 1)
    return x, y


def test_softmax_regression_evidence_matches_autodiff_laplace():
    # A linear softmax model is its own last layer. Fit its MAP under prior precision tau with
    # Newton; then the class's evidence (dense Fisher, canonical link so N F = Hessian) must equal
    # the generic Laplace evidence of selection.laplace_log_evidence (autodiff Hessian) minus
    # nothing: both are log p(D|theta) + log p(theta) + P/2 log 2pi - 1/2 logdet A.
    x, y = _data(n=60)
    tau = 0.7
    model = nn.Linear(2, 3).double()
    fit_newton(model, "categorical", x, y, l2=tau)
    la = LastLayerLaplace(model, representation="dense", prior_precision=tau).fit(x, y)
    theta = la.theta_map

    def log_joint(t):
        W, b = t[:6].reshape(3, 2), t[6:]
        lik = -nn.functional.cross_entropy(x @ W.T + b, y, reduction="sum")
        prior = -0.5 * tau * (t @ t) + 0.5 * t.numel() * math.log(tau / (2 * math.pi))
        return lik + prior

    ref = laplace_log_evidence(log_joint, theta)
    assert la.log_marginal_likelihood().item() == pytest.approx(ref.item(), abs=1e-8)
    # Posterior precision N F + tau I equals the autodiff Hessian of the negative log joint.
    H = objective_curvature(model, "categorical", x, y, kind="hessian", l2=tau)
    assert torch.allclose(la.n_data * la.fisher.to_dense() + tau * torch.eye(9, dtype=D), H, atol=1e-10)


def test_logit_covariance_equals_J_sigma_Jt():
    x, y = _data()
    net = _net()
    la = LastLayerLaplace(net, representation="dense", prior_precision=2.0).fit(x, y)
    xt = x[:4] * 2
    mean, cov = la.logit_distribution(xt)
    assert torch.allclose(mean, net(xt).detach())
    # Independent construction: features by slicing the Sequential; J = [phi^T (x) I_C, I_C] for W
    # row-major then b; Sigma from the dense Fisher by explicit inversion.
    phi = net[:-1](xt).detach()
    Sigma = torch.linalg.inv(la.n_data * la.fisher.to_dense() + 2.0 * torch.eye(21, dtype=D))
    for i in range(4):
        J = torch.cat([torch.kron(torch.eye(3, dtype=D), phi[i].unsqueeze(0)), torch.eye(3, dtype=D)], 1)
        assert torch.allclose(cov[i], J @ Sigma @ J.T, atol=1e-12)
    # Posterior covariances are PSD.
    assert torch.linalg.eigvalsh(cov).min() > -1e-12


@pytest.mark.parametrize("rep", ["kfac", "diagonal", "block_diagonal"])
def test_representations_and_prior_limits(rep):
    x, y = _data()
    net = _net()
    la = LastLayerLaplace(net, representation=rep, prior_precision=1.0).fit(x, y)
    p_map = la.predict(x[:10], method="map")
    # A very strong prior collapses the posterior onto the MAP: predictive -> MAP softmax.
    la.prior_precision = 1e8
    assert torch.allclose(la.predict(x[:10]), p_map, atol=1e-5)
    # A weaker prior widens the logit distribution, and the probit predictive is less confident.
    la.prior_precision = 1e-2
    p = la.predict(x[:10])
    assert torch.allclose(p.sum(1), torch.ones(10, dtype=D))
    assert (p.max(1).values < p_map.max(1).values + 1e-12).float().mean() > 0.8
    # The evidence has an interior maximum over the grid, and optimisation stores it.
    grid = torch.logspace(-3, 3, 25, dtype=D)
    values = torch.stack([la.log_marginal_likelihood(float(t)) for t in grid])
    best = la.optimize_prior_precision(grid)
    assert best == pytest.approx(float(grid[values.argmax()]))
    assert 0 < int(values.argmax()) < 24


def test_kfac_last_layer_logdet_matches_dense_of_kfac():
    x, y = _data()
    la = LastLayerLaplace(_net(), representation="kfac", prior_precision=0.5).fit(x, y)
    Fd = la.fisher.to_dense()
    n, P = la.n_data, la.num_params
    dense_ev = (
        la._map_loglik - 0.25 * (la.theta_map @ la.theta_map) + 0.5 * P * math.log(0.5)
        - 0.5 * torch.linalg.slogdet(n * Fd + 0.5 * torch.eye(P, dtype=D)).logabsdet
    )
    assert la.log_marginal_likelihood().item() == pytest.approx(dense_ev.item(), abs=1e-8)


def test_mc_predictive_converges_to_probit_and_quadrature_binary():
    # Binary case: E[sigmoid(f)], f ~ N(m, s^2), by Gauss–Hermite quadrature is the exact
    # predictive; MC agrees within 4 standard errors and probit within 0.02 (its known accuracy).
    x, _ = _data(n=100)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    la = LastLayerLaplace(net, likelihood="bernoulli", representation="dense", prior_precision=0.05).fit(x, y)
    xt = torch.tensor([[0.1, 0.2], [2.0, -1.0], [-3.0, 0.5]], dtype=D)
    mean, cov = la.logit_distribution(xt)
    m, s = mean[:, 0].numpy(), cov[:, 0, 0].sqrt().numpy()
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    exact = np.array([(weights * (1 / (1 + np.exp(-(mi + si * nodes))))).sum() / weights.sum() for mi, si in zip(m, s)])
    assert s.max() > 0.5  # the test exercises a genuinely wide logit distribution
    n_mc = 20000
    p_mc = la.predict(xt, method="mc", n_samples=n_mc, generator=torch.Generator().manual_seed(0)).numpy()
    se = np.sqrt(exact * (1 - exact) / n_mc) + 1e-4
    assert np.all(np.abs(p_mc - exact) < 4 * se)
    p_probit = la.predict(xt, method="probit").numpy()
    assert np.all(np.abs(p_probit - exact) < 0.02)
    assert p_probit.shape == (3,)


def test_ece_values():
    probs = torch.tensor([[0.9, 0.1]] * 10, dtype=D)
    targets = torch.tensor([0] * 6 + [1] * 4)
    assert expected_calibration_error(probs, targets).item() == pytest.approx(0.3)
    # Binary probabilities of class 1 are accepted and mean the same thing.
    assert expected_calibration_error(torch.full((10,), 0.1, dtype=D), targets).item() == pytest.approx(0.3)
    # Perfectly calibrated by construction: labels drawn with the stated probability.
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(20000, generator=g, dtype=D)
    labels = (torch.rand(20000, generator=g, dtype=D) < p1).long()
    assert expected_calibration_error(p1, labels, n_bins=10).item() < 0.02
    # ECE equals the count-weighted |conf - acc| of the calibration curve.
    conf, acc, cnt = calibration_curve(p1, labels, n_bins=10)
    mask = cnt > 0
    ece = ((cnt[mask].to(D) / cnt.sum()) * (conf[mask] - acc[mask]).abs()).sum()
    assert ece.item() == pytest.approx(expected_calibration_error(p1, labels, n_bins=10).item())
    assert int(cnt.sum()) == 20000


def test_bad_input():
    x, y = _data()
    net = _net()
    with pytest.raises(TypeError, match="model"):
        LastLayerLaplace("net")
    with pytest.raises(ValueError, match="likelihood"):
        LastLayerLaplace(net, likelihood="poisson")
    with pytest.raises(ValueError, match="prior_precision"):
        LastLayerLaplace(net, prior_precision=0.0)
    with pytest.raises(ValueError, match="nn.Linear"):
        LastLayerLaplace(nn.Tanh())
    with pytest.raises(ValueError, match="matrix_free"):
        LastLayerLaplace(net, representation="matrix_free")
    la = LastLayerLaplace(net)
    with pytest.raises(RuntimeError, match="fit"):
        la.predict(x)
    with pytest.raises(ValueError, match="targets"):
        la.fit(x, y[:3])
    with pytest.raises(ValueError, match="targets"):
        la.fit(x, y + 5)
    la.fit(x, y)
    with pytest.raises(ValueError, match="method"):
        la.predict(x, method="exact")
    with pytest.raises(ValueError, match="n_samples"):
        la.predict(x, method="mc", n_samples=0)
    with pytest.raises(ValueError, match="grid"):
        la.optimize_prior_precision(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="prior_precision"):
        la.log_marginal_likelihood(-2.0)
    # Output is not the last Linear of the features (softmax after it).
    with pytest.raises(ValueError, match="last nn.Linear"):
        LastLayerLaplace(nn.Sequential(net, nn.Softmax(-1))).fit(x, y)
    with pytest.raises(ValueError, match="bernoulli"):
        LastLayerLaplace(net, likelihood="bernoulli").fit(x, y)
    with pytest.raises(ValueError, match="probs"):
        expected_calibration_error(torch.tensor([[0.7, 0.7]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="targets"):
        expected_calibration_error(torch.tensor([[0.3, 0.7]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.tensor([[0.3, 0.7]]), torch.tensor([1]), n_bins=0)
    with pytest.raises(ValueError, match="targets"):
        calibration_curve(torch.tensor([[0.3, 0.7]]), torch.tensor([1, 0]))


def test_map_log_likelihood_is_the_core_likelihood():
    # the MAP log-likelihood now comes from fisherbook.curvature.likelihoods; it equals torch's losses
    x, y = _data()
    net = _net()
    la = LastLayerLaplace(net).fit(x, y)
    with torch.no_grad():
        ref = -nn.functional.cross_entropy(net(x), y, reduction="sum")
    assert la._map_loglik.item() == pytest.approx(ref.item(), rel=1e-14)
    yb = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    netb = nn.Sequential(nn.Linear(x.shape[1], 6), nn.Tanh(), nn.Linear(6, 1)).double()
    lab = LastLayerLaplace(netb, likelihood="bernoulli").fit(x, yb)
    with torch.no_grad():
        refb = -nn.functional.binary_cross_entropy_with_logits(netb(x)[:, 0], yb.double(), reduction="sum")
    assert lab._map_loglik.item() == pytest.approx(refb.item(), rel=1e-14)


def test_calibration_metrics_are_importable_from_where_they_were():
    import fisherbook as fb
    import fisherbook.bayes.calibration as calibration
    import fisherbook.bayes.laplace as laplace

    assert laplace.calibration_curve is calibration.calibration_curve is fb.calibration_curve
    assert laplace.expected_calibration_error is calibration.expected_calibration_error is fb.expected_calibration_error


@pytest.mark.parametrize("representation", ["dense", "diagonal", "kfac", "block_diagonal"])
def test_fit_on_batches_matches_fit_on_one_tensor(representation):
    # a DataLoader, a list of batches and a one-shot generator give the exact mean Fisher, the same
    # log-likelihood and so the same evidence and predictions as the whole tensor, to round-off
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4)).double()
    X = torch.randn(53, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (53,))
    whole = LastLayerLaplace(net, representation=representation, prior_precision=0.7).fit(X, y)
    sources = {
        "loader": DataLoader(TensorDataset(X, y), batch_size=10),  # uneven: the last batch has 3
        "list": [(X[:30], y[:30]), (X[30:], y[30:])],
        "generator": ((X[i:i + 17], y[i:i + 17]) for i in range(0, 53, 17)),
    }
    for name, data in sources.items():
        part = LastLayerLaplace(net, representation=representation, prior_precision=0.7).fit(data)
        assert part.n_data == 53, name
        assert torch.allclose(part.fisher.to_dense(), whole.fisher.to_dense(), rtol=1e-12, atol=1e-14), name
        assert torch.allclose(part.log_marginal_likelihood(), whole.log_marginal_likelihood(), rtol=1e-12), name
        assert torch.allclose(part.predict(X[:5]), whole.predict(X[:5]), rtol=1e-12), name
