"""Mirror descent on the mean parameters with mirror map psi* is natural gradient in the natural parameters."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from torch.distributions import Bernoulli, Categorical, Exponential, Normal, Poisson

import fisherbook as fb
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, OffManifoldError, ShapeError
from fisherbook.geometry import mirror_descent, natural_gradient_descent

D = torch.float64
X = torch.tensor([0.3, 1.2, 2.5, -0.4, 1.9], dtype=D)


def normal_nll(e):  # mean negative log-likelihood of X (up to a constant) in (E X, E X^2)
    var = e[1] - e[0] ** 2
    return 0.5 * torch.log(var) + 0.5 * ((X - e[0]) ** 2).mean() / var


FREQ = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=D)


def categorical_nll(e):
    p = torch.cat([e, 1 - e.sum(-1, keepdim=True)])
    return -(FREQ * p.log()).sum()


def poisson_loss(e):  # not a likelihood: a smooth loss of the mean with minimum at 3
    return (e[0] - 3.0) ** 2 / e[0]


def to_theta(family, eta_path):
    return torch.stack([fb.natural_parameters(fb.from_expectation(family, e)) for e in eta_path])


@pytest.mark.parametrize(("family", "loss", "eta0", "lr"), [
    (Normal, normal_nll, [0.0, 1.0], 0.3),
    (Categorical, categorical_nll, [0.25, 0.25, 0.25], 0.5),
    (Poisson, poisson_loss, [1.0], 0.4),
    (Bernoulli, lambda e: -(0.9 * e[0].log() + 0.1 * (1 - e[0]).log()), [0.3], 0.7),
])
def test_mirror_descent_equals_natural_gradient(family, loss, eta0, lr):
    eta0 = torch.tensor(eta0, dtype=D)
    md = mirror_descent(family, loss, eta0, lr=lr, n_steps=25)
    theta0 = fb.natural_parameters(fb.from_expectation(family, eta0))
    ng = natural_gradient_descent(family, loss, theta0, lr=lr, n_steps=25)
    # closed-form coordinate maps vs autodiff Fisher and chain rule: the same sequence up to round-off
    assert torch.allclose(to_theta(family, md), ng, rtol=1e-11, atol=1e-11)
    assert (md[-1] - md[0]).abs().max() > 1e-2  # the iterates did move


def test_natural_gradient_on_the_likelihood_reaches_the_mle():
    md = mirror_descent(Normal, normal_nll, torch.tensor([0.0, 1.0], dtype=D), lr=0.5, n_steps=60)
    assert torch.allclose(md[-1], torch.stack([X.mean(), (X**2).mean()]), atol=1e-10)  # eta* = mean of T(x)
    mdc = mirror_descent(Categorical, categorical_nll, torch.full((3,), 0.25, dtype=D), lr=1.0, n_steps=40)
    assert torch.allclose(mdc[-1], FREQ[:3], atol=1e-10)


def test_one_mirror_step_is_the_kl_proximal_step():
    # eta_{t+1} = argmin_eta  lr * f'(eta_t) * eta + KL(p_eta || p_eta_t), solved numerically (Poisson)
    lr, eta_t = 0.3, 1.5
    step = mirror_descent(Poisson, poisson_loss, torch.tensor([eta_t], dtype=D), lr=lr, n_steps=1)[1, 0]
    g = float(torch.func.grad(lambda e: poisson_loss(e))(torch.tensor([eta_t], dtype=D))[0])
    kl = lambda e: e * math.log(e / eta_t) - e + eta_t  # noqa: E731  KL(Poisson(e) || Poisson(eta_t))
    best = minimize_scalar(lambda e: lr * g * e + kl(e), bounds=(1e-6, 50.0), method="bounded",
                           options={"xatol": 1e-12}).x
    assert float(step) == pytest.approx(best, abs=1e-7)  # bounded Brent's tolerance


@settings(max_examples=25, deadline=None)
@given(st.floats(0.2, 0.8), st.floats(0.01, 0.99), st.floats(0.01, 0.5))  # stable steps: |logit step| < 2
def test_bernoulli_equivalence_over_a_wide_range(p0, ybar, lr):
    loss = lambda e: -(ybar * e[0].log() + (1 - ybar) * torch.log1p(-e[0]))  # noqa: E731
    md = mirror_descent(Bernoulli, loss, torch.tensor([p0], dtype=D), lr=lr, n_steps=5)
    ng = natural_gradient_descent(Bernoulli, loss, torch.logit(torch.tensor([p0], dtype=D)), lr=lr, n_steps=5)
    assert torch.allclose(torch.logit(md[:, 0]), ng[:, 0], rtol=1e-9, atol=1e-9)
    # closed form: the logit moves by lr * (ybar - p) / (p (1 - p)) each step
    p = torch.sigmoid(ng[0, 0])
    assert float(ng[1, 0] - ng[0, 0]) == pytest.approx(float(lr * (ybar - p) / (p * (1 - p))), rel=1e-9)


def test_bad_input_is_named():
    e0 = torch.tensor([1.0], dtype=D)
    with pytest.raises(InvalidArgumentError, match="lr"):
        mirror_descent(Poisson, poisson_loss, e0, lr=0.0, n_steps=1)
    with pytest.raises(InvalidArgumentError, match="n_steps"):
        natural_gradient_descent(Poisson, poisson_loss, e0, lr=0.1, n_steps=-1)
    with pytest.raises(ShapeError, match="eta0"):
        mirror_descent(Poisson, poisson_loss, torch.ones(1, 1, dtype=D), lr=0.1, n_steps=1)
    with pytest.raises(ArgumentTypeError, match="loss"):
        mirror_descent(Poisson, "x^2", e0, lr=0.1, n_steps=1)
    with pytest.raises(ArgumentTypeError):
        mirror_descent("Poisson", poisson_loss, e0, lr=0.1, n_steps=1)
    # Exponential: theta = -rate < 0; a large step overshoots past 0
    far = lambda e: -10.0 * e[0]  # noqa: E731
    with pytest.raises(OffManifoldError):
        mirror_descent(Exponential, far, e0, lr=1.0, n_steps=1)
    with pytest.raises(OffManifoldError):
        natural_gradient_descent(Exponential, far, torch.tensor([-1.0], dtype=D), lr=1.0, n_steps=1)
