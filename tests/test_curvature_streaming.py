"""fisherbook.curvature.fisher over batches: a DataLoader or any iterable of batches gives the
one-tensor result (the exact mean over all examples) for every representation and kind."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fisherbook as fb
from fisherbook.curvature import fisher
from fisherbook.errors import ArgumentTypeError, InvalidArgumentError, ShapeError, UnsupportedError

pytestmark = pytest.mark.usefixtures("one_thread")

REPS = fb.curvature.REPRESENTATIONS
KINDS = ("true", "empirical", "mc")
TOL = 1e-12  # float64 round-off of sums over <= 13 examples of O(1) terms


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)).double()


def layernorm_net() -> nn.Module:  # takes the generic torch.func path
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).double()


MODELS = {"mlp": (mlp, (4,)), "cnn": (cnn, (1, 5, 5)), "generic": (layernorm_net, (4,))}


def dataset(shape, n: int = 13):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def assert_same(F1, F2, v):
    assert type(F1) is type(F2)
    assert torch.allclose(F1.to_dense(), F2.to_dense(), atol=TOL, rtol=0)
    assert torch.allclose(F1.mv(v), F2.mv(v), atol=TOL, rtol=0)
    assert torch.allclose(F1.diag(), F2.diag(), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("rep", REPS)
@pytest.mark.parametrize("kind", KINDS)
def test_loader_equals_one_tensor(name, rep, kind):
    """Uneven batches (5, 5, 3): the mean is weighted by batch size, not a mean of batch means.
    For "categorical" the MC targets drawn batch by batch continue one generator stream, which
    torch.multinomial consumes row by row, so even kind="mc" matches the one-tensor call."""
    if name == "generic" and rep == "kfac":
        pytest.skip("kfac needs Linear/Conv2d layers")
    make, shape = MODELS[name]
    model = make()
    X, y = dataset(shape)
    one = fisher(model, X, kind=kind, targets=y if kind == "empirical" else None, representation=rep,
                 generator=torch.Generator().manual_seed(3))
    loader = DataLoader(TensorDataset(X, y), batch_size=5)
    streamed = fisher(model, loader, kind=kind, representation=rep, generator=torch.Generator().manual_seed(3))
    v = torch.randn(one.num_params, 2, dtype=torch.float64)
    assert_same(one, streamed, v)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("rep", ["dense", "kfac", "matrix_free"])
def test_mc_draws_batch_by_batch(likelihood, rep):
    """Documented sampling rule: each batch draws its targets from the generator in turn, so the
    streamed MC Fisher is the size-weighted mean of one-tensor calls on the batches with one
    generator passed along (for these likelihoods torch draws samples-major, so the one-tensor
    call on all examples at once consumes the stream in another order)."""
    model = mlp()
    X, _ = dataset((4,))
    g = torch.Generator().manual_seed(5)
    parts = [fisher(model, X[s], likelihood, "mc", representation=rep, generator=g, n_samples=2)
             for s in (slice(0, 6), slice(6, 13))]
    g = torch.Generator().manual_seed(5)
    streamed = fisher(model, [X[:6], X[6:]], likelihood, "mc", representation=rep, generator=g, n_samples=2)
    if rep == "kfac":  # the factors are the size-weighted means (their Kronecker product is not)
        for k, (a, gg) in enumerate(streamed.factors):
            (a0, g0), (a1, g1) = parts[0].factors[k], parts[1].factors[k]
            assert torch.allclose(a, (6 * a0 + 7 * a1) / 13, atol=TOL, rtol=0)
            assert torch.allclose(gg, (6 * g0 + 7 * g1) / 13, atol=TOL, rtol=0)
    else:
        expected = (6 * parts[0].to_dense() + 7 * parts[1].to_dense()) / 13
        assert torch.allclose(streamed.to_dense(), expected, atol=TOL, rtol=0)


def test_matrix_free_mc_replays_the_same_targets():
    """Every product of a streamed matrix-free MC Fisher uses the same sampled targets, and the
    caller's generator is left untouched."""
    model = mlp()
    X, y = dataset((4,))
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    F = fisher(model, DataLoader(TensorDataset(X, y), batch_size=4), kind="mc", representation="matrix_free",
               generator=g)
    v = torch.randn(F.num_params, dtype=torch.float64)
    first = F @ v
    assert torch.equal(F @ v, first)
    assert torch.allclose(F.to_dense() @ v, first, atol=TOL, rtol=0)
    assert torch.equal(g.get_state(), state)


def test_matrix_free_mc_refuses_a_shuffling_loader():
    X, y = dataset((4,))
    with pytest.raises(UnsupportedError, match="shuffle"):
        fisher(mlp(), DataLoader(TensorDataset(X, y), batch_size=4, shuffle=True), kind="mc",
               representation="matrix_free")


def test_shuffled_loader_true_fisher_is_order_invariant():
    X, y = dataset((4,))
    torch.manual_seed(11)
    loader = DataLoader(TensorDataset(X, y), batch_size=4, shuffle=True)
    assert torch.allclose(fisher(mlp(), loader).to_dense(), fisher(mlp(), X).to_dense(), atol=TOL, rtol=0)


def test_iterables_of_tensors_and_pairs_and_generators():
    model = mlp()
    X, y = dataset((4,))
    ref = fisher(model, X, kind="empirical", targets=y).to_dense()
    as_pairs = [(X[:7], y[:7]), [X[7:], y[7:], "ignored extra"]]
    assert torch.allclose(fisher(model, as_pairs, kind="empirical").to_dense(), ref, atol=TOL, rtol=0)
    gen = ((X[i:i + 3], y[i:i + 3]) for i in range(0, 13, 3))
    assert torch.allclose(fisher(model, gen, kind="empirical").to_dense(), ref, atol=TOL, rtol=0)
    ref_true = fisher(model, X).to_dense()
    tensors = [X[:2], X[2:]]
    assert torch.allclose(fisher(model, tensors).to_dense(), ref_true, atol=TOL, rtol=0)


def test_matrix_free_stores_a_one_shot_iterator():
    """A generator can be read once: the matrix-free representation keeps its batches."""
    model = mlp()
    X, _ = dataset((4,))
    F = fisher(model, (X[i:i + 4] for i in range(0, 13, 4)), representation="matrix_free")
    ref = fisher(model, X)
    v = torch.randn(F.num_params, dtype=torch.float64)
    assert torch.allclose(F @ v, ref @ v, atol=TOL, rtol=0)
    assert torch.allclose(F @ v, ref @ v, atol=TOL, rtol=0)  # second pass over the stored batches


def test_progress_bar_is_optional_and_silent_by_default(capsys, monkeypatch):
    import functools

    import tqdm.auto

    # the Makefile exports TQDM_DISABLE=1 (for the notebooks), which tqdm reads at import: force the bar on
    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, disable=False))
    X, _ = dataset((4,))
    fisher(mlp(), [X[:5], X[5:]], representation="diagonal")
    assert capsys.readouterr().err == ""
    fisher(mlp(), [X[:5], X[5:]], representation="diagonal", progress=True)
    assert "fisher" in capsys.readouterr().err
    with pytest.raises(ArgumentTypeError, match="progress"):
        fisher(mlp(), X, progress="yes")


@pytest.mark.parametrize("rep", REPS)
def test_empty_loader_is_a_named_error(rep):
    empty = DataLoader(TensorDataset(torch.empty(0, 4, dtype=torch.float64)), batch_size=4)
    with pytest.raises(ShapeError, match="no batches"):
        F = fisher(mlp(), empty, representation=rep)
        F @ torch.zeros(F.num_params, dtype=torch.float64)
    with pytest.raises(ShapeError, match="no batches"):
        fisher(mlp(), [], representation="dense")


def test_batch_errors_name_the_batch():
    X, y = dataset((4,))
    with pytest.raises(ShapeError, match="batch 1"):
        fisher(mlp(), [X[:3], X[3:3]])
    with pytest.raises(InvalidArgumentError, match="targets is required"):
        fisher(mlp(), [X[:3]], kind="empirical")
    with pytest.raises(InvalidArgumentError, match="targets must be None"):
        fisher(mlp(), [X[:3]], kind="empirical", targets=y[:3])
    with pytest.raises(ArgumentTypeError, match="batch 0"):
        fisher(mlp(), [{"x": X}])
    with pytest.raises(ArgumentTypeError, match="inputs must be"):
        fisher(mlp(), 3.0)
    with pytest.raises(ArgumentTypeError, match="DataLoader"):
        fisher(mlp(), TensorDataset(X, y))
    with pytest.raises(ShapeError, match="batch 0 of inputs"):
        fisher(mlp(), [torch.randn(3, 5, dtype=torch.float64)])


def test_streaming_holds_one_batch_statistics():
    """Memory: the structured statistics of a batch are released before the next one is read
    (the accumulator is the only tensor that survives), checked through weak references."""
    import weakref

    model = mlp()
    X, _ = dataset((4,), n=40)
    seen = []

    def batches():
        for i in range(0, 40, 10):
            x = X[i:i + 10].clone()
            seen.append(weakref.ref(x))
            alive = sum(r() is not None for r in seen)
            assert alive <= 2  # the batch being yielded and at most the one the engine is finishing
            yield x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fisher(model, batches(), representation="kfac")
