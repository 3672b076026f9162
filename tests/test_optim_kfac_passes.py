"""KFAC's running factors change only on the training passes (issue 20 defect list): a user's
``fisherbook.curvature`` call, an evaluation pass and a pass inside ``KFAC.no_statistics()`` leave
them, the statistics schedule and the engine's own results as they were."""

from __future__ import annotations

import math

import pytest
import torch
from kfac_models import data, mlp  # tests/kfac_models.py (pytest puts tests/ on sys.path)
from torch import nn

import fisherbook as fb
from fisherbook.optim import KFAC

DT = torch.float64


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


# ---------------------------------------------------------------- statistics from the training forward pass
class Counted(nn.Module):
    """A model that counts its forward passes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


class TinyCNN(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1).to(DT)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2).to(DT)
        self.head = nn.Linear(4 * 3 * 3, 5).to(DT)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.head):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=DT) / math.sqrt(m.weight[0].numel()))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g, dtype=DT))

    def forward(self, x):
        return self.head(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))).flatten(1))


def nets_and_batches(kind: str):
    g = torch.Generator().manual_seed(5)
    if kind == "mlp":
        return (lambda: mlp(sizes=(5, 7, 6, 4))), torch.randn(30, 5, generator=g, dtype=DT), \
            torch.randint(0, 4, (30,), generator=g)
    return (lambda: TinyCNN(2)), torch.randn(20, 1, 8, 8, generator=g, dtype=DT), torch.randint(0, 5, (20,), generator=g)


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize(("likelihood", "n_samples"), [("categorical", 1), ("categorical", 3), ("bernoulli", 2),
                                                       ("gaussian", 1)])
def test_statistics_reuse_the_training_forward_and_equal_the_separate_pass(monkeypatch, net, likelihood, n_samples):
    """One forward pass per statistics step (the sampled targets need a second backward only), and the
    factors of a five-step run equal those of the same run with the engine's separate pass."""
    make, X, y = nets_and_batches(net)
    targets = {"categorical": y, "bernoulli": (torch.rand(X.shape[0], 4 if net == "mlp" else 5,
                                                          generator=torch.Generator().manual_seed(1)) < 0.5).to(DT),
               "gaussian": torch.zeros(X.shape[0], 4 if net == "mlp" else 5, dtype=DT)}[likelihood]
    loss_fn = {"categorical": nn.functional.cross_entropy, "bernoulli": nn.functional.binary_cross_entropy_with_logits,
               "gaussian": nn.functional.mse_loss}[likelihood]

    def run():
        model = Counted(make())
        opt = KFAC(model, lr=0.05, damping=1e-2, inverse_every=2, likelihood=likelihood, n_samples=n_samples,
                   sigma=0.8, generator=torch.Generator().manual_seed(3))
        for _ in range(5):
            opt.zero_grad()
            loss_fn(model(X), targets).backward()
            opt.step()
        return model, opt

    model, opt = run()
    assert model.calls == 5 and opt.factor_updates == 5  # no second forward
    monkeypatch.setattr(KFAC, "_reuses_forward", lambda self: False)  # the engine's separate pass
    ref_model, ref = run()
    assert ref_model.calls == 10 and ref.factor_updates == 5
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors()):
        torch.testing.assert_close(a, ra, rtol=1e-12, atol=1e-15)  # float64: the same operations, round-off
        torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-15)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)


def test_training_gradient_is_untouched_by_the_reused_graph():
    """The statistics' backward keeps the training graph: the user's backward still gives the plain
    gradient of the loss."""
    X, y = data()
    model, twin = mlp(), mlp()
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    loss = nn.functional.cross_entropy(model(X), y)
    assert opt.factor_updates == 1
    loss.backward()
    nn.functional.cross_entropy(twin(X), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-15)


def test_layer_called_twice_falls_back_to_the_engine_pass():
    """A layer applied twice per pass is not the structured case: the separate pass (and its error)."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 5).to(DT)

        def forward(self, x):
            return self.lin(torch.tanh(self.lin(x)))

    model = Twice()
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    with pytest.raises(fb.errors.UnsupportedError, match="exactly once|called 2 times"):
        model(data()[0])
    assert opt.factor_updates == 0


def test_layer_outside_the_output_graph_takes_the_engine_pass():
    """A layer whose output does not reach the model's output: the engine's pass (and its zero G),
    not zeros made up by the optimiser; one extra forward."""
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(5, 4).to(DT), nn.Linear(5, 3).to(DT)

        def forward(self, x):
            self.unused(x)  # computed, never used
            return self.used(x)

    X, _ = data()
    model = Counted(Branch())
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    model(X)
    assert model.calls == 2 and opt.factor_updates == 1
    ref = fb.curvature.fisher(model.net, X, likelihood="categorical", kind="mc", representation="kfac",
                              generator=torch.Generator().manual_seed(0))
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors):
        torch.testing.assert_close(a, ra, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(g, rg, rtol=1e-12, atol=1e-15)
    assert float(opt.factors()[1][1].abs().max()) == 0.0


def test_a_layer_called_alone_before_the_pass_does_not_spoil_the_reuse():
    X, _ = data()
    model = Counted(mlp())
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    model.net[0](X)  # a submodule on its own: no pass of the model
    model(X)
    assert model.calls == 1 and opt.factor_updates == 1  # the training pass's own graph, no second forward


def test_fisher_built_on_the_engine_is_not_gathered():
    """EWC's diagonal Fisher goes through the curvature engine: its passes are not the training pass."""
    from fisherbook.continual import diagonal_fisher

    X, y = data()
    model = mlp()
    opt = KFAC(model, generator=torch.Generator().manual_seed(0))
    train_step(opt, model, X, y)
    before = snapshot(opt)
    diagonal_fisher(model, 2 * X, kind="mc", generator=torch.Generator().manual_seed(1))
    assert_same_factors(opt.factors(), before)
    assert opt.factor_updates == 1
