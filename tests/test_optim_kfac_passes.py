"""KFAC's running factors change only on the training passes (issue 20 defect list): a user's
``fisherbook.curvature`` call, an evaluation pass and a pass inside ``KFAC.no_statistics()`` leave
them, the statistics schedule and the engine's own results as they were."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fisherbook as fb
from fisherbook.optim import KFAC

DT = torch.float64


def mlp(seed: int = 0, sizes=(5, 7, 4)) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b).to(DT)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=DT) / math.sqrt(a))
            lin.bias.copy_(0.1 * torch.randn(b, generator=g, dtype=DT))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def data(n: int = 40, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=DT), torch.randint(0, 4, (n,), generator=g)


def snapshot(opt: KFAC) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(a.clone(), g.clone()) for a, g in opt.factors()]


def assert_same_factors(got, expected) -> None:
    assert len(got) == len(expected)
    for (a, g), (ra, rg) in zip(got, expected):
        assert torch.equal(a, ra) and torch.equal(g, rg)  # bit for bit: nothing was folded in


def train_step(opt: KFAC, model: nn.Module, X, y) -> None:
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    opt.step()


def engine_call(model: nn.Module, X, y, representation: str, kind: str):
    kw = {"targets": y} if kind == "empirical" else {}
    if kind == "mc":
        kw["generator"] = torch.Generator().manual_seed(7)
    F = fb.curvature.fisher(model, X, likelihood="categorical", kind=kind, representation=representation, **kw)
    if representation == "kfac":
        return [t for pair in F.factors for t in pair]
    return [F.to_dense()]


@pytest.mark.parametrize("fisher_type", ["mc", "empirical"])
@pytest.mark.parametrize(("representation", "kind"), [("kfac", "mc"), ("kfac", "true"), ("diagonal", "true"),
                                                      ("dense", "empirical"), ("matrix_free", "mc")])
def test_curvature_engine_call_leaves_the_factors_and_gets_the_hook_free_result(fisher_type, representation,
                                                                                kind):
    X, y = data()
    Xe, ye = 3 * X[:12], y[:12]  # other examples: folding them in would change the factors
    model = mlp()
    opt = KFAC(model, fisher_type=fisher_type, lr=0.1, damping=1e-2, generator=torch.Generator().manual_seed(0))
    train_step(opt, model, X, y)
    before, updates = snapshot(opt), opt.factor_updates
    got = engine_call(model, Xe, ye, representation, kind)
    assert_same_factors(opt.factors(), before)
    assert opt.factor_updates == updates
    # the engine sees the model as if no optimiser were attached
    twin = mlp()
    twin.load_state_dict(model.state_dict())
    for t, r in zip(got, engine_call(twin, Xe, ye, representation, kind)):
        torch.testing.assert_close(t, r, rtol=1e-12, atol=1e-14)  # same float64 computation


@pytest.mark.parametrize("fisher_type", ["mc", "empirical"])
def test_eval_passes_and_engine_calls_do_not_consume_the_statistics_step(fisher_type):
    """A training run with evaluation passes and curvature calls between (and inside) its steps has
    the factors and parameters of the same run without them."""
    X, y = data()
    Xv, yv = data(n=25, seed=9)

    def run(interleave: bool):
        model = mlp()
        opt = KFAC(model, fisher_type=fisher_type, lr=0.2, damping=1e-2, inverse_every=2,
                   generator=torch.Generator().manual_seed(0))
        for _ in range(4):
            if interleave:
                model.eval()
                model(Xv)  # evaluation mode, gradients on
                model.train()
                with torch.no_grad():
                    nn.functional.cross_entropy(model(Xv), yv)  # training mode, no gradients
                fb.curvature.fisher(model, Xv, likelihood="categorical", kind="empirical", targets=yv,
                                    representation="kfac")
                with opt.no_statistics():  # an unrelated training-mode forward and backward
                    model.zero_grad()
                    nn.functional.cross_entropy(model(Xv), yv).backward()
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X), y)
            if interleave:  # between the training forward and its backward
                fb.curvature.fisher(model, Xv, likelihood="categorical", kind="true", representation="diagonal")
            loss.backward()
            opt.step()
        return opt, model

    (opt, model), (ref, ref_model) = run(True), run(False)
    assert opt.factor_updates == ref.factor_updates == 4
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors()):
        torch.testing.assert_close(a, ra, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-14)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_no_statistics_restores_collection_after_the_block_and_on_error():
    X, y = data()
    model = mlp()
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="boom"), opt.no_statistics():
        model(X)
        raise RuntimeError("boom")
    assert opt.factor_updates == 0
    model(X)  # a training pass after the block: gathered
    assert opt.factor_updates == 1
