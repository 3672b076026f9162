"""Shampoo (fisherbook.optim.Shampoo) against its closed form: the step L^{-1/4} G R^{-1/4} with
fractional matrix powers from scipy, the Kronecker identity (L ⊗ R)^{-1/4} vec G, diagonal AdaGrad
for vectors, the exponential moving averages, stale roots, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError
from fisherbook.optim import Shampoo

DT = torch.float64


def frac(m: torch.Tensor, p: float) -> torch.Tensor:
    return torch.from_numpy(np.real(scipy.linalg.fractional_matrix_power(m.numpy(), p)))


def test_two_steps_match_scipy_fractional_powers_and_the_kronecker_form():
    torch.manual_seed(0)
    W = nn.Parameter(torch.randn(3, 4, dtype=DT))
    w0 = W.detach().clone()
    eps = 1e-3
    opt = Shampoo([W], lr=0.5, epsilon=eps)
    grads = [torch.randn(3, 4, dtype=DT) for _ in range(2)]
    L, R = eps * torch.eye(3, dtype=DT), eps * torch.eye(4, dtype=DT)
    expected = w0.clone()
    for g in grads:
        W.grad = g.clone()
        opt.step()
        L, R = L + g @ g.T, R + g.T @ g
        step = frac(L, -0.25) @ g @ frac(R, -0.25)
        kron = (frac(torch.kron(L, R), -0.25) @ g.reshape(-1)).reshape(3, 4)  # row-major vec
        torch.testing.assert_close(step, kron)
        expected = expected - 0.5 * step
    torch.testing.assert_close(W.detach(), expected)


def test_vectors_get_diagonal_adagrad_and_ema_and_momentum():
    b = nn.Parameter(torch.zeros(5, dtype=DT))
    opt = Shampoo([b], lr=1.0, epsilon=1e-2, beta2=0.9, momentum=0.5)
    g1, g2 = torch.randn(5, dtype=DT), torch.randn(5, dtype=DT)
    b.grad = g1.clone()
    opt.step()
    h = 0.9 * 1e-2 + 0.1 * g1**2
    u1 = g1 / h.sqrt()
    torch.testing.assert_close(b.detach(), -u1)
    b.grad = g2.clone()
    opt.step()
    h = 0.9 * h + 0.1 * g2**2
    torch.testing.assert_close(b.detach(), -u1 - (0.5 * u1 + g2 / h.sqrt()))


def test_conv_weights_are_matrices_and_roots_go_stale():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 2).to(DT)
    opt = Shampoo([conv.weight], lr=1.0, epsilon=1e-2, inverse_every=2)
    g1, g2 = torch.randn(3, 2, 2, 2, dtype=DT), torch.randn(3, 2, 2, 2, dtype=DT)
    w0 = conv.weight.detach().clone()
    conv.weight.grad = g1.clone()
    opt.step()
    conv.weight.grad = g2.clone()
    opt.step()
    m1, m2 = g1.reshape(3, 8), g2.reshape(3, 8)
    L1, R1 = 1e-2 * torch.eye(3, dtype=DT) + m1 @ m1.T, 1e-2 * torch.eye(8, dtype=DT) + m1.T @ m1
    # second step: the roots of the first (stale), applied to the second gradient
    expected = w0 - (frac(L1, -0.25) @ m1 @ frac(R1, -0.25)).reshape(g1.shape) \
        - (frac(L1, -0.25) @ m2 @ frac(R1, -0.25)).reshape(g1.shape)
    torch.testing.assert_close(conv.weight.detach(), expected)


def test_trains_a_regression_and_round_trips_state():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).to(DT)
    X = torch.randn(64, 4, dtype=DT)
    y = X[:, :1] - X[:, 1:2] ** 2
    opt = Shampoo(model.parameters(), lr=0.05, momentum=0.9, epsilon=1e-4)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    opt2 = Shampoo(model.parameters(), lr=0.05, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    p = next(model.parameters())
    torch.testing.assert_close(opt2.state[p]["L"], opt.state[p]["L"])


@pytest.mark.parametrize("kw, error, word", [
    (dict(lr=0.0), InvalidArgumentError, "lr"),
    (dict(epsilon=-1.0), InvalidArgumentError, "epsilon"),
    (dict(beta2=1.5), InvalidArgumentError, "beta2"),
    (dict(beta2=0.0), InvalidArgumentError, "beta2"),
    (dict(inverse_every=0), InvalidArgumentError, "inverse_every"),
    (dict(momentum="0.9"), ArgumentTypeError, "momentum"),
])
def test_bad_hyper_parameters(kw, error, word):
    with pytest.raises(error, match=word):
        Shampoo([nn.Parameter(torch.zeros(2, 2))], **kw)


def test_non_finite_gradient():
    W = nn.Parameter(torch.zeros(2, 2))
    opt = Shampoo([W])
    W.grad = torch.full((2, 2), float("nan"))
    with pytest.raises(NonFiniteError, match="gradient"):
        opt.step()
