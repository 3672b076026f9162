"""The structured nn.Conv2d path (per-example weight gradients from unfolded patches) against an
independent torch.func reference, for every representation and a range of convolution settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from fisherbook.curvature import fisher
from fisherbook.curvature.per_example import linear_layout

pytestmark = pytest.mark.usefixtures("one_thread")
DT = torch.float64
TOL = dict(atol=1e-11, rtol=1e-10)  # float64 sums of ~1e3 terms of order 1


def conv_net(stride=1, padding=0, dilation=1, bias=True, second=True):
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation, bias=bias), nn.Tanh()]
    if second:
        layers += [nn.Conv2d(3, 2, 2, bias=not bias), nn.ReLU()]
    layers.append(nn.Flatten())
    net = nn.Sequential(*layers).double()
    n_out = net(torch.zeros(1, 2, 7, 7, dtype=DT)).shape[1]
    return nn.Sequential(*layers, nn.Linear(n_out, 4)).double()


CONFIGS = {
    "plain": {},
    "stride2-pad1": {"stride": 2, "padding": 1},
    "dilation2": {"dilation": 2},
    "no-bias": {"bias": False},
    "one-conv": {"second": False, "padding": (1, 2)},
}


def reference(model, x, y=None):
    """Dense Fisher from per-example Jacobians by torch.func (no layer structure used)."""
    params = {k: p.detach() for k, p in model.named_parameters()}

    def single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(single), in_dims=(None, 0))(params, x)
    J = torch.cat([jac[k].reshape(x.shape[0], 4, -1) for k in params], -1)  # (N, K, P)
    p = torch.softmax(model(x).detach(), -1)
    if y is None:
        lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
        return torch.einsum("nkp,nkl,nlq->pq", J, lam, J) / x.shape[0]
    s = nn.functional.one_hot(y, 4).to(DT) - p  # score of the observed class
    g = torch.einsum("nkp,nk->np", J, s)
    return g.T @ g / x.shape[0]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_conv_structured_path_matches_torch_func(config, kind):
    model = conv_net(**CONFIGS[config])
    from fisherbook.curvature.per_example import ParamLayout

    assert linear_layout(model, ParamLayout.from_model(model), None, allow_conv=True) is not None  # structured
    g = torch.Generator().manual_seed(2)
    x = torch.randn(9, 2, 7, 7, generator=g, dtype=DT)
    y = torch.randint(0, 4, (9,), generator=g)
    targets = y if kind == "empirical" else None
    ref = reference(model, x, targets)
    kw = dict(kind=kind, targets=targets)
    assert torch.allclose(fisher(model, x, **kw).to_dense(), ref, **TOL)
    assert torch.allclose(fisher(model, x, representation="diagonal", **kw).diag(), ref.diagonal(), **TOL)
    B = fisher(model, x, representation="block_diagonal", **kw)
    for blk, idx in zip(B.blocks, B.index):
        assert torch.allclose(blk, ref[idx][:, idx], **TOL)
    M = fisher(model, x, representation="matrix_free", **kw)
    V = torch.randn(ref.shape[0], 3, generator=g, dtype=DT)
    v = V[:, 0]
    assert torch.allclose(M @ v, ref @ v, **TOL)  # first product: jvp/vjp
    assert torch.allclose(M @ V, ref @ V, **TOL)  # cached structured statistics
    assert torch.allclose(M @ v, ref @ v, **TOL)


def test_conv_kfac_single_example_position_exact():
    """K-FAC is exact for one example whose conv layer has one output position (a 3x3 kernel on a
    3x3 image) when that is the only layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten()).double()
    x = torch.randn(1, 2, 3, 3, dtype=DT)
    K = fisher(model, x, representation="kfac")
    D = fisher(model, x)
    assert torch.allclose(K.to_dense(), D.to_dense(), **TOL)
