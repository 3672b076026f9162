"""KFAC's Conv2d layers against dense matrices, and its EKFAC option (``eigenvalue_corrected=True``)
against the dense eigenbasis form and the curvature engine's EKFAC scalings (issue 20)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fisherbook as fb
from fisherbook.errors import ArgumentTypeError, UnsupportedError
from fisherbook.optim import KFAC

DT = torch.float64


class CNN(nn.Module):
    """Conv2d 1→3 (3×3, padding 1), tanh, Conv2d 3→2 (2×2, stride 2), tanh, Linear → 4 on 4×4 images."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 2, 2, stride=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.conv2(torch.tanh(self.conv(x)))).flatten(1))


def flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def layer_blocks(model, opt):
    """(flat index of [W, b], dense G ⊗ A) per preconditioned layer, in the engine's parameter order."""
    K = fb.curvature.KFAC.from_factors(model, opt.factors())
    return [(idx, torch.kron(g, a)) for idx, (a, g) in zip(K._index, K.factors)]


def test_conv_step_is_the_dense_damped_kronecker_solve():
    """factored_damping=False: each layer's step is (G ⊗ A + λI)^{-1} vec(∇W̄), solved densely."""
    model = CNN(1).to(DT)
    X, y = torch.randn(20, 1, 4, 4, dtype=DT), torch.randint(0, 4, (20,))
    lam = 0.02
    opt = KFAC(model, damping=lam, factored_damping=False, generator=torch.Generator().manual_seed(0))
    assert [n for n, _ in opt.layers] == ["conv", "conv2", "head"]
    nn.functional.cross_entropy(model(X), y).backward()
    g = flat_grad(model)
    opt.precondition()
    u = flat_grad(model)
    for idx, block in layer_blocks(model, opt):
        expected = torch.linalg.solve(block + lam * torch.eye(len(idx), dtype=DT), g[idx])
        torch.testing.assert_close(u[idx], expected)


def test_conv_factors_are_the_exact_block_for_one_example_at_one_position():
    """A 3×3 kernel on a 3×3 image has one output position: with one example K-FAC's G ⊗ A is the
    exact (empirical) Fisher block of the convolution, and of the linear head."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3, 4)).to(DT)
    x, y = torch.randn(1, 2, 3, 3, dtype=DT), torch.tensor([2])
    opt = KFAC(model, fisher_type="empirical")
    nn.functional.cross_entropy(model(x), y).backward()
    F = fb.curvature.fisher(model, x, kind="empirical", targets=y).to_dense()
    for idx, block in layer_blocks(model, opt):
        torch.testing.assert_close(block, F[idx.unsqueeze(1), idx.unsqueeze(0)])


def test_ekfac_first_step_is_kfac_with_exact_damping():
    """Before any batch is projected, EKFAC's scalings are K-FAC's eigenvalue products."""
    X, y = torch.randn(16, 1, 4, 4, dtype=DT), torch.randint(0, 4, (16,))
    steps = {}
    for name, kw in (("ekfac", dict(eigenvalue_corrected=True)), ("kfac", dict(factored_damping=False))):
        model = CNN(2).to(DT)
        opt = KFAC(model, lr=0.1, damping=0.01, generator=torch.Generator().manual_seed(3), **kw)
        nn.functional.cross_entropy(model(X), y).backward()
        opt.precondition()
        steps[name] = flat_grad(model)
    torch.testing.assert_close(steps["ekfac"], steps["kfac"])


def test_ekfac_scalings_are_the_engines_and_the_step_is_the_dense_eigenbasis_solve():
    model = CNN(3).to(DT)
    X1, X2 = torch.randn(16, 1, 4, 4, dtype=DT), torch.randn(24, 1, 4, 4, dtype=DT)
    y1, y2 = torch.randint(0, 4, (16,)), torch.randint(0, 4, (24,))
    lam = 0.03
    opt = KFAC(model, lr=0.05, damping=lam, inverse_every=100, eigenvalue_corrected=True,
               generator=torch.Generator().manual_seed(4))
    opt.zero_grad()
    nn.functional.cross_entropy(model(X1), y1).backward()
    opt.step()  # statistics, eigenbases
    ref_gen = torch.Generator()
    ref_gen.set_state(opt.generator.get_state())
    opt.zero_grad()
    nn.functional.cross_entropy(model(X2), y2).backward()  # statistics projected on the bases
    states = [opt.state[m.weight] for _, m in opt.layers]
    bases = [(st["QA"], st["QG"]) for st in states]
    _, ref = fb.curvature.kfac_statistics(model, X2, kind="mc", generator=ref_gen, bases=bases)
    for st, s in zip(states, ref):
        torch.testing.assert_close(st["S"], s)  # first batch in the basis: taken as is
        assert st["S_count"] == 1
    g = flat_grad(model)
    opt.precondition()
    u = flat_grad(model)
    K = fb.curvature.KFAC.from_factors(model, opt.factors())
    for idx, st in zip(K._index, states):
        q = torch.kron(st["QG"], st["QA"])
        M = (q * st["S"].reshape(-1)) @ q.T
        torch.testing.assert_close(u[idx], torch.linalg.solve(M + lam * torch.eye(len(idx), dtype=DT), g[idx]))


@pytest.mark.slow
def test_ekfac_trains_and_round_trips_its_state():
    X, y = fb.data.load_digits_tensors()
    X, y = X[:256].reshape(-1, 1, 8, 8), y[:256]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(144, 10))
    opt = KFAC(model, lr=0.3, damping=1e-2, kl_clip=1e-2, inverse_every=5, eigenvalue_corrected=True,
               generator=torch.Generator().manual_seed(0))
    first = None
    for _ in range(12):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    last = nn.functional.cross_entropy(model(X), y).item()
    assert math.isfinite(last) and last < 0.5 * first  # seen: 2.3 -> 0.5
    clone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(144, 10))
    clone.load_state_dict(model.state_dict())
    opt2 = KFAC(clone, eigenvalue_corrected=True)
    opt2.load_state_dict(opt.state_dict())
    for (_, m), (_, m2) in zip(opt.layers, opt2.layers):
        torch.testing.assert_close(opt2.state[m2.weight]["S"], opt.state[m.weight]["S"])
    assert opt2.param_groups[0]["eigenvalue_corrected"] is True


def test_ekfac_with_damping_adaptation_uses_its_own_quadratic_model():
    X, y = torch.randn(32, 1, 4, 4), torch.randint(0, 4, (32,))
    model = CNN(5)
    opt = KFAC(model, lr=0.1, damping=0.1, eigenvalue_corrected=True, adapt_damping=True, adapt_every=1,
               inverse_every=2, generator=torch.Generator().manual_seed(0))

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure)
    assert opt.last_rho is not None and math.isfinite(opt.last_rho)


def test_ekfac_bad_input():
    model = CNN(0)
    with pytest.raises(UnsupportedError, match="fisher_type='mc'"):
        KFAC(model, eigenvalue_corrected=True, fisher_type="empirical")
    with pytest.raises(ArgumentTypeError, match="eigenvalue_corrected"):
        KFAC(model, eigenvalue_corrected="yes")
    with pytest.raises(UnsupportedError, match="distributed"):
        KFAC(model, eigenvalue_corrected=True, distributed=True)


# ---------------------------------------------------------------- refresh from a DataLoader (issue 16)
def test_refresh_from_a_loader_is_the_exact_mean_over_all_examples():
    from torch.utils.data import DataLoader, TensorDataset

    model = CNN(6).to(DT)
    X, y = torch.randn(30, 1, 4, 4, dtype=DT), torch.randint(0, 4, (30,))
    loader = DataLoader(TensorDataset(X, y), batch_size=7)  # uneven batches: 7, 7, 7, 7, 2
    # the reference first: the optimiser's hooks gather statistics whenever the model runs in training mode
    ref = fb.curvature.fisher(model, X, kind="empirical", targets=y, representation="kfac")
    opt = KFAC(model, fisher_type="empirical")
    opt.refresh(loader)
    for (a, g), (ra, rg) in zip(opt.factors(), ref.factors):
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(g, rg)
    assert opt.factor_updates == 1 and opt.steps == 0
    # the inverses are ready: the next precondition uses the refreshed factors
    nn.functional.cross_entropy(model(X), y).backward()  # empirical hooks fold this batch in too
    assert all("QA" in opt.state[m.weight] for _, m in opt.layers)
    opt.remove_hooks()
    ref_mc = fb.curvature.fisher(model, [X[:16], X[16:]], kind="mc", representation="kfac",
                                 generator=torch.Generator().manual_seed(2))
    opt_mc = KFAC(model, generator=torch.Generator().manual_seed(2))
    opt_mc.refresh([X[:16], X[16:]])
    for (a, g), (ra, rg) in zip(opt_mc.factors(), ref_mc.factors):
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(g, rg)


def test_refresh_with_eigenvalue_correction_sets_the_engines_scalings():
    model = CNN(7).to(DT)
    X = torch.randn(24, 1, 4, 4, dtype=DT)
    E = fb.curvature.ekfac(model, X, kind="mc", generator=torch.Generator().manual_seed(3))
    opt = KFAC(model, eigenvalue_corrected=True, generator=torch.Generator().manual_seed(3))
    opt.refresh(X)
    for (_, m), s in zip(opt.layers, E.scalings):
        torch.testing.assert_close(opt.state[m.weight]["S"], s)
    with pytest.raises(ArgumentTypeError, match="inputs"):
        opt.refresh("not data")


def test_eigenvalue_corrected_is_a_model_wide_default():
    from fisherbook.errors import InvalidArgumentError

    model = CNN(8)
    opt = KFAC(model, params=[{"params": model.conv.parameters()}], eigenvalue_corrected=True)
    assert opt.defaults["eigenvalue_corrected"] is True and opt.param_groups[0]["eigenvalue_corrected"] is True
    opt.add_param_group({"params": model.head.parameters()})  # inherits the default
    assert [n for n, _ in opt.layers] == ["conv", "head"]
    with pytest.raises(InvalidArgumentError, match="eigenvalue_corrected"):
        opt.add_param_group({"params": model.conv2.parameters(), "eigenvalue_corrected": False})
    opt.remove_hooks()
