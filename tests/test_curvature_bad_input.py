"""Bad and extreme inputs to fisherbook.curvature: each case names the call, the error type and
words the message must contain (issue 15). No case may return a number silently."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fisherbook as fb
from fisherbook.curvature import fisher
from fisherbook.curvature.per_example import UnstructuredError
from fisherbook.errors import (
    ArgumentTypeError,
    FisherbookError,
    InvalidArgumentError,
    ModelModeWarning,
    NonFiniteError,
    ShapeError,
    UnsupportedError,
)

pytestmark = pytest.mark.usefixtures("one_thread")
DT = torch.float64


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def x(n=5, d=4):
    return torch.randn(n, d, dtype=DT)


def with_nan():
    v = x()
    v[2, 1] = float("nan")
    return v


def with_inf():
    v = x()
    v[0, 0] = float("inf")
    return v


def nan_params():
    m = mlp()
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    return m


def lstm_model():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 3, batch_first=True)

        def forward(self, z):
            return self.rnn(z)[0][:, -1]

    return Seq().double()


def bn_train():
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).double().train()


CASES = {
    # name: (call, error type, words in the message)
    "nan inputs": (lambda rep: fisher(mlp(), with_nan(), representation=rep), NonFiniteError, ["inputs", "NaN"]),
    "inf inputs": (lambda rep: fisher(mlp(), with_inf(), representation=rep), NonFiniteError, ["inputs", "finite"]),
    "nan in a batch": (lambda rep: fisher(mlp(), [x(), with_nan()], representation=rep), NonFiniteError,
                       ["batch 1 of inputs"]),
    "empty inputs": (lambda rep: fisher(mlp(), torch.empty(0, 4, dtype=DT), representation=rep), ShapeError,
                     ["inputs", "at least one example"]),
    "scalar inputs": (lambda rep: fisher(mlp(), torch.tensor(1.0, dtype=DT), representation=rep), ShapeError,
                      ["inputs", "dim 0"]),
    "empty loader": (lambda rep: fisher(mlp(), [], representation=rep).diag(), ShapeError, ["no batches"]),
    "wrong feature count": (lambda rep: fisher(mlp(), x(5, 3), representation=rep).diag(), ShapeError,
                            ["inputs of shape (5, 3)", "do not fit the model"]),
    "nan parameters": (lambda rep: fisher(nan_params(), x(), representation=rep).diag(), NonFiniteError,
                       ["model output", "finite"]),
    "lstm": (lambda rep: fisher(lstm_model(), torch.randn(3, 2, 4, dtype=DT), representation=rep), UnsupportedError,
             ["nn.LSTM", "rnn", "recurrent", "supported"]),
    "train-mode batch norm": (lambda rep: fisher(bn_train(), x(), representation=rep), UnsupportedError,
                              ["BatchNorm1d", "training mode", "model.eval()"]),
    "targets wrong shape": (lambda rep: fisher(mlp(), x(), kind="empirical", targets=torch.zeros(4, dtype=torch.long),
                                               representation=rep).diag(), ShapeError, ["targets", "(5,)"]),
    "nan gaussian targets": (lambda rep: fisher(mlp(), x(), "gaussian", kind="empirical",
                                                targets=torch.full((5, 3), float("nan"), dtype=DT),
                                                representation=rep).diag(), NonFiniteError, ["targets", "finite"]),
    "bad kind": (lambda rep: fisher(mlp(), x(), kind="exact", representation=rep), InvalidArgumentError, ["kind"]),
    "bad representation": (lambda rep: fisher(mlp(), x(), representation="full"), InvalidArgumentError,
                           ["representation", "dense"]),
    "model not a module": (lambda rep: fisher(lambda z: z, x(), representation=rep), ArgumentTypeError,
                           ["model", "nn.Module"]),
    "inputs a string": (lambda rep: fisher(mlp(), "data.csv", representation=rep), ArgumentTypeError,
                        ["inputs", "DataLoader"]),
    "sigma zero": (lambda rep: fisher(mlp(), x(), "gaussian", sigma=0.0, representation=rep), InvalidArgumentError,
                   ["sigma"]),
    "n_samples zero": (lambda rep: fisher(mlp(), x(), kind="mc", n_samples=0, representation=rep),
                       InvalidArgumentError, ["n_samples"]),
}


@pytest.mark.parametrize("rep", fb.curvature.REPRESENTATIONS)
@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_a_named_error(case, rep):
    call, error, words = CASES[case]
    with pytest.raises(error) as info:
        result = call(rep)
        result.diag()  # matrix-free defers its work: force it
    assert isinstance(info.value, FisherbookError)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_unsupported_kfac_layer_names_module_and_alternatives():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 3)).double()
    with pytest.raises(UnsupportedError, match=r"1 \(LayerNorm\).*'dense'"):
        fisher(model, x(), representation="kfac")
    assert issubclass(UnstructuredError, UnsupportedError) and issubclass(UnstructuredError, ValueError)


def test_train_mode_dropout_warns_and_eval_does_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3)).double()
    with pytest.warns(ModelModeWarning, match=r"1 \(nn.Dropout, p=0.5\).*model.eval\(\)"):
        fisher(model, x(), representation="diagonal")
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fisher(model, x(), representation="diagonal")
    with warnings.catch_warnings():  # p=0 is deterministic: no warning
        warnings.simplefilter("error")
        fisher(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.0)).double().train(), x())


def test_eval_mode_batch_norm_is_supported_and_exact():
    """Batch norm in eval() is an affine map per example: supported, and two independent engines
    agree (per-example Jacobians by vmap(jacrev) for the dense matrix, jvp then vjp for the
    matrix-free products)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    model(torch.randn(20, 4, dtype=DT))  # update running statistics
    model.eval()
    X = x(7)
    F = fisher(model, X).to_dense()
    v = torch.randn(F.shape[0], dtype=DT)
    assert torch.allclose(fisher(model, X, representation="matrix_free") @ v, F @ v, atol=1e-12, rtol=0)
    D = fisher(model, X, representation="diagonal").diag()
    assert torch.allclose(D, F.diagonal(), atol=1e-12, rtol=0)


def test_matrix_vector_argument_errors():
    F = fisher(mlp(), x())
    with pytest.raises(ShapeError, match="v must have shape"):
        F.mv(torch.ones(3, dtype=DT))
    with pytest.raises(ArgumentTypeError, match="v must be"):
        F.solve([1.0], damping=0.1)
    with pytest.raises(InvalidArgumentError, match="damping"):
        F.solve(torch.ones(F.num_params, dtype=DT), damping=float("nan"))
