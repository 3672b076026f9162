"""Bad input across the public callables of the model half not covered by the other bad-input suites
(curvature functions, the optimisers' free functions, the spectrum tools, chapter 9's overparam and
singular-learning functions): each case is the call, the error class, and words its message must
contain. A public callable without a case fails ``test_every_public_callable_has_a_case``."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import fisherbook as fb
from fisherbook.bayes import singular
from fisherbook.curvature import spectrum
from fisherbook.errors import FisherbookError

D = torch.float64


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(D)


X = torch.randn(6, 3, dtype=D)
Y = torch.tensor([0, 1, 0, 1, 1, 0])
NAN = torch.full((6, 3), float("nan"), dtype=D)
A = torch.eye(4, dtype=D)
_MDP = fb.optim.random_mdp(3, 2, generator=torch.Generator().manual_seed(0))

CASES = {
    # curvature
    "per_example_grads": [
        (lambda: fb.curvature.per_example_grads("not a model", X, Y), TypeError, "model"),
        (lambda: fb.curvature.per_example_grads(_model(), NAN, Y), ValueError, "finite"),
    ],
    "check_model": [
        (lambda: fb.curvature.check_model(nn.LSTM(3, 2)), ValueError, "LSTM"),
    ],
    "fisher": [
        (lambda: fb.curvature.fisher(_model(), X, representation="sparse"), ValueError, "representation"),
    ],
    # optim free functions
    "conjugate_gradient": [
        (lambda: fb.optim.conjugate_gradient(lambda v: v, torch.full((3,), float("nan"), dtype=D)), ValueError, "finite"),
    ],
    "natural_gradient_path": [
        (lambda: fb.optim.natural_gradient_path(lambda t: (t**2).sum(), torch.zeros(2, dtype=D), lr=-1.0, n_steps=3),
         ValueError, "lr"),
    ],
    # spectrum
    "as_operator": [(lambda: spectrum.as_operator("matrix"), TypeError, "")],
    "as_linear_operator": [(lambda: spectrum.as_linear_operator("matrix"), TypeError, "")],
    "lanczos": [(lambda: spectrum.lanczos(A, n_iter=0), ValueError, "n_iter")],
    "top_eigenpairs": [(lambda: spectrum.top_eigenpairs(A, k=0), ValueError, "k")],
    "spectral_density": [(lambda: spectrum.spectral_density(A, n_iter=3, n_probes=0), ValueError, "n_probes")],
    "hutchinson_trace": [
        (lambda: spectrum.hutchinson_trace(A, n_probes=4, distribution="cauchy"), ValueError, "distribution"),
    ],
    # overparam
    "jacobian": [(lambda: fb.overparam.jacobian("net", X), TypeError, "model")],
    "fisher_factor": [(lambda: fb.overparam.fisher_factor(_model(), NAN), ValueError, "finite")],
    "function_space_natural_gradient": [
        (lambda: fb.overparam.function_space_natural_gradient(_model(), X, Y, damping=-1.0), ValueError, "damping"),
    ],
    "fisher_rao_norm": [(lambda: fb.overparam.fisher_rao_norm(_model(), X, likelihood="poisson"), ValueError, "likelihood")],
    "obd_saliency": [(lambda: fb.overparam.obd_saliency(torch.ones(3, dtype=D), -torch.ones(3, dtype=D)), ValueError, "")],
    "magnitude_saliency": [(lambda: fb.overparam.magnitude_saliency(torch.tensor([float("nan")])), ValueError, "finite")],
    "prune": [(lambda: fb.overparam.prune(torch.ones(3), torch.ones(3), sparsity=1.5), ValueError, "sparsity")],
    "average_merge": [(lambda: fb.overparam.average_merge([]), ValueError, "")],
    "fisher_merge": [
        (lambda: fb.overparam.fisher_merge([torch.ones(3)], [torch.ones(2)]), ValueError, "shape"),
    ],
    # singular learning
    "wbic_temperature": [(lambda: singular.wbic_temperature(1), ValueError, "n")],
    "tempered_mean": [(lambda: singular.tempered_mean(torch.ones(3), torch.zeros(3), beta=-1.0), ValueError, "beta")],
    "free_energy": [(lambda: singular.free_energy(torch.ones(3), torch.zeros(2)), ValueError, "")],
    "wbic": [(lambda: singular.wbic(torch.ones(3), torch.zeros(3), n=0), ValueError, "n")],
    "rlct_estimate": [(lambda: singular.rlct_estimate(torch.ones(3), torch.zeros(3), 1.0, 1.0), ValueError, "beta")],
    # EKFAC (chapter 5)
    "ekfac": [
        (lambda: fb.curvature.ekfac(nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2)).to(D), X), ValueError, "ekfac"),
        (lambda: fb.curvature.ekfac(_model(), X, kind="exact"), ValueError, "kind"),
        (lambda: fb.curvature.ekfac(_model(), NAN), ValueError, "finite"),
        (lambda: fb.curvature.ekfac(_model(), X, bases=[(A, A)]), ValueError, "bases"),
        (lambda: fb.curvature.ekfac(_model(), X, progress="yes"), TypeError, "progress"),
    ],
    "kfac_statistics": [
        (lambda: fb.curvature.kfac_statistics(_model(), [X]), TypeError, "inputs"),
        (lambda: fb.curvature.kfac_statistics(_model(), X, n_samples=0), ValueError, "n_samples"),
    ],
    "Shampoo": [
        (lambda: fb.optim.Shampoo(_model().parameters(), lr=-1.0), ValueError, "lr"),
        (lambda: fb.optim.Shampoo(_model().parameters(), beta2=2.0), ValueError, "beta2"),
    ],
    # natural policy gradient and TRPO on tabular MDPs (chapter 4)
    "TabularMDP": [
        (lambda: fb.optim.TabularMDP(torch.ones(2, 2, 2, dtype=D), torch.zeros(2, 2, dtype=D), 0.9,
                                     torch.full((2,), 0.5, dtype=D)), ValueError, "summing to 1"),
        (lambda: fb.optim.TabularMDP(_MDP.transitions, _MDP.rewards, 1.0, _MDP.start), ValueError, "gamma"),
        (lambda: fb.optim.TabularMDP(_MDP.transitions, _MDP.rewards[:1], 0.9, _MDP.start), ValueError, "rewards"),
        (lambda: fb.optim.TabularMDP(_MDP.transitions, _MDP.rewards, 0.9, torch.tensor([1.0, 0.0, 0.0], dtype=D)),
         ValueError, "start"),
    ],
    "random_mdp": [
        (lambda: fb.optim.random_mdp(3, 1), ValueError, "n_actions"),
        (lambda: fb.optim.random_mdp(3, 2, generator=0), TypeError, "generator"),
    ],
    "softmax_policy": [(lambda: fb.optim.softmax_policy(torch.zeros(3, dtype=D)), ValueError, "theta")],
    "policy_values": [(lambda: fb.optim.policy_values("mdp", torch.zeros(3, 2, dtype=D)), TypeError, "mdp")],
    "optimal_values": [(lambda: fb.optim.optimal_values(_MDP, max_iter=0), ValueError, "max_iter")],
    "expected_return": [(lambda: fb.optim.expected_return(_MDP, torch.zeros(2, 2, dtype=D)), ValueError, "theta")],
    "state_visitation": [
        (lambda: fb.optim.state_visitation(_MDP, torch.full((3, 2), float("nan"), dtype=D)), ValueError, "finite"),
    ],
    "exact_policy_gradient": [(lambda: fb.optim.exact_policy_gradient(_MDP, torch.zeros(3, 3, dtype=D)), ValueError, "theta")],
    "policy_fisher": [(lambda: fb.optim.policy_fisher(_MDP, "theta"), TypeError, "theta")],
    "natural_policy_gradient": [
        (lambda: fb.optim.natural_policy_gradient(_MDP, torch.zeros(3, 2, 1, dtype=D)), ValueError, "theta"),
    ],
    "policy_kl": [(lambda: fb.optim.policy_kl(_MDP, torch.zeros(3, 2, dtype=D), torch.zeros(2, 3, dtype=D)),
                   ValueError, "theta_new")],
    "trpo_step": [
        (lambda: fb.optim.trpo_step(_MDP, torch.zeros(3, 2, dtype=D), max_kl=0.0), ValueError, "max_kl"),
        (lambda: fb.optim.trpo_step(_MDP, torch.zeros(3, 2, dtype=D), backtrack=1.0), ValueError, "backtrack"),
    ],
    "policy_optimization_path": [
        (lambda: fb.optim.policy_optimization_path(_MDP, torch.zeros(3, 2, dtype=D), method="ppo", step_size=1.0,
                                                   n_iter=2), ValueError, "method"),
        (lambda: fb.optim.policy_optimization_path(_MDP, torch.zeros(3, 2, dtype=D), method="pg", step_size=-1.0,
                                                   n_iter=2), ValueError, "step_size"),
    ],
}

# classes (constructed by the engine, or plain result containers) and data: no argument checks to test here
EXEMPT = {
    "CGResult", "KFAC", "NaturalGradient",  # optimisers: tests/test_optim_*_protocol.py
    "FisherFactor", "Operator", "Lanczos", "Eigenpairs", "SpectralDensity", "TraceEstimate",  # result containers
    "TRPOStep",  # result container of fb.optim.trpo_step
}


def _public_callables() -> list[str]:
    names = []
    for mod, exported in [(fb.optim, fb.optim.__all__), (fb.overparam, fb.overparam.__all__),
                          (spectrum, spectrum.__all__), (singular, singular.__all__)]:
        names += [n for n in exported if callable(getattr(mod, n))]
    names += ["per_example_grads", "check_model", "fisher"]
    names += ["ekfac", "kfac_statistics"]
    return sorted(set(names) - EXEMPT)


def test_every_public_callable_has_a_case() -> None:
    missing = [n for n in _public_callables() if n not in CASES]
    assert not missing, f"public callables without a bad-input case: {missing}"


@pytest.mark.parametrize(("name", "k"), [(n, k) for n, cs in CASES.items() for k in range(len(cs))])
def test_bad_input_raises_a_named_error(name: str, k: int) -> None:
    call, kind, words = CASES[name][k]
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, FisherbookError), f"{name}: {type(info.value).__name__} is not a FisherbookError"
    assert re.search(words, str(info.value), re.I), f"{name}: message {str(info.value)!r} lacks {words!r}"
