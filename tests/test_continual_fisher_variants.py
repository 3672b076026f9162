"""The Fisher variants EWC implementations use (van de Ven 2025), against independent computations.

- Monte-Carlo Fisher: its mean squared error against the exact diagonal equals the exact
  per-entry variance of one sampled label divided by the number of samples (computed here from
  per-example, per-class gradients), so it falls like 1/S to the exact Fisher.
- Batched empirical Fisher (Avalanche's): equal to the mean over batches of squared means of
  per-example gradients taken one example at a time; one batch of everything is the squared
  full-data gradient; averaged over random partitions it is the sampling-without-replacement
  formula gbar^2 + sigma^2 (N - B) / (B (N - 1)).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fisherbook.continual import EWC, batched_empirical_fisher, diagonal_fisher, make_mlp
from fisherbook.data import Task

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def _setup(n=20, d=3, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=D)
    y = torch.randint(0, k, (n,), generator=g)
    return make_mlp(d, (4,), k, seed=seed, dtype=D), X, y


def _flat(F):
    return torch.cat([f.reshape(-1) for f in F])


def _per_example_class_grads(net, X, k):
    """(n, k, P) gradients of log p(y = c | x_n) for every example and class, one backward pass each."""
    params = list(net.parameters())
    out = torch.empty(X.shape[0], k, sum(p.numel() for p in params), dtype=D)
    for n in range(X.shape[0]):
        logp = torch.log_softmax(net(X[n:n + 1]), -1)[0]
        for c in range(k):
            gs = torch.autograd.grad(logp[c], params, retain_graph=True)
            out[n, c] = torch.cat([gg.reshape(-1) for gg in gs])
    return out


def _per_example_loss_grads(net, X, y):
    params = list(net.parameters())
    rows = []
    for n in range(X.shape[0]):
        loss = torch.nn.functional.cross_entropy(net(X[n:n + 1]), y[n:n + 1])
        rows.append(torch.cat([gg.reshape(-1) for gg in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


@pytest.mark.parametrize("n_samples", [1, 8])
def test_mc_fisher_mean_squared_error_is_the_exact_variance_over_samples(n_samples):
    net, X, _ = _setup()
    k = 3
    G2 = _per_example_class_grads(net, X, k) ** 2                    # (n, k, P)
    with torch.no_grad():
        p = torch.softmax(net(X), -1)                                  # (n, k)
    m1 = (p[:, :, None] * G2).sum(1)                                   # E_y g^2 per example
    m2 = (p[:, :, None] * G2 ** 2).sum(1)                              # E_y g^4 per example
    exact = m1.mean(0)
    assert torch.allclose(_flat(diagonal_fisher(net, X, kind="true")), exact, rtol=1e-10, atol=1e-14)
    # one label per example and sample, all independent: Var = sum_n Var_y(g^2) / (n^2 S) per entry
    mse_theory = float(((m2 - m1 ** 2).sum(0) / X.shape[0] ** 2).sum()) / n_samples
    gen = torch.Generator().manual_seed(11)
    errs = torch.tensor([float(((_flat(diagonal_fisher(net, X, kind="mc", n_samples=n_samples, generator=gen))
                                 - exact) ** 2).sum()) for _ in range(300)])
    se = float(errs.std()) / 300 ** 0.5
    # the average squared error of 300 independent estimates, within 4 of its standard errors of the theory
    assert abs(float(errs.mean()) - mse_theory) < 4 * se
    assert se < 0.2 * mse_theory   # and the check has power: the standard error is small against the target


def test_mc_fisher_error_falls_like_one_over_the_number_of_samples():
    net, X, _ = _setup(seed=3)
    exact = _flat(diagonal_fisher(net, X, kind="true"))
    gen = torch.Generator().manual_seed(5)

    def mse(s, r=200):
        return sum(float(((_flat(diagonal_fisher(net, X, kind="mc", n_samples=s, generator=gen)) - exact) ** 2).sum())
                   for _ in range(r)) / r

    ratio = mse(16) * 16 / mse(1)
    # exactly 1 in expectation; each mean of 200 heavy-tailed squared errors is good to about 10-15 %
    assert 0.6 < ratio < 1.6


def test_batched_empirical_equals_squared_means_of_per_example_gradients():
    net, X, y = _setup(n=21)
    Gl = _per_example_loss_grads(net, X, y)                          # (n, P), one example at a time
    for bs in (1, 4, 7, 21):
        want = torch.stack([Gl[s:s + bs].mean(0) ** 2 for s in range(0, 21, bs)]).mean(0)
        got = _flat(batched_empirical_fisher(net, X, y, batch_size=bs))
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-15), bs
    # one batch of everything: the squared full-data mean gradient; batches of one: the empirical Fisher
    assert torch.allclose(_flat(batched_empirical_fisher(net, X, y, batch_size=21)), Gl.mean(0) ** 2, rtol=1e-10)
    assert torch.allclose(_flat(batched_empirical_fisher(net, X, y, batch_size=1)),
                          _flat(diagonal_fisher(net, X, kind="empirical", targets=y)), rtol=1e-10, atol=1e-15)


def test_batched_empirical_over_random_partitions_is_the_without_replacement_formula():
    net, X, y = _setup(n=24, seed=2)
    N, B = 24, 6
    Gl = _per_example_loss_grads(net, X, y)
    gbar, var = Gl.mean(0), Gl.var(0, unbiased=False)
    expected = gbar ** 2 + var * (N - B) / (B * (N - 1))              # E over random B-subsets of (batch mean)^2
    loader = DataLoader(TensorDataset(X, y), batch_size=B, shuffle=True, generator=torch.Generator().manual_seed(0))
    draws = torch.stack([_flat(batched_empirical_fisher(net, loader)) for _ in range(400)])
    mean, se = draws.mean(0), draws.std(0) / 400 ** 0.5
    assert ((mean - expected).abs() <= 5 * se + 1e-12 * expected.max()).all()
    # about 1/B of the empirical Fisher when the mean gradient is small against the spread
    emp = _flat(diagonal_fisher(net, X, kind="empirical", targets=y))
    assert torch.allclose(emp, gbar ** 2 + var, rtol=1e-10)


def test_ewc_mc_kind_with_several_samples_consolidates_that_estimate():
    net, X, y = _setup()
    ewc = EWC(1.0, kind="mc", n_samples=10, generator=torch.Generator().manual_seed(4))
    ewc.after_task(net, Task("A", X, y, X, y))
    ref = diagonal_fisher(net, X, kind="mc", n_samples=10, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(ewc.fishers[0], ref))
