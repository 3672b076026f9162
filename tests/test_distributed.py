"""fisherbook under torch.distributed: 2 gloo processes on 127.0.0.1 against one process.

Each test spawns two processes (``torch.multiprocessing.spawn``) that initialise a gloo process
group on a free localhost port, run the distributed computation, compute the one-process
reference on the concatenated data themselves, and compare; a failed assertion in a process fails
the test (spawn re-raises it with the process's traceback). Starting two Python processes that
import torch costs most of each test's time (seconds on an idle machine, tens of seconds on a busy
shared one), so the spawning tests are marked slow.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fisherbook.continual import diagonal_fisher, ewc_penalty
from fisherbook.curvature import KFAC as KFACMatrix
from fisherbook.curvature import REPRESENTATIONS, distributed
from fisherbook.curvature import fisher as local_fisher
from fisherbook.errors import DistributedError
from fisherbook.optim import KFAC, NaturalGradient

WORLD = 2
# float64 throughout: the reductions reorder sums, so results agree to round-off (~1e-15 relative);
# 1e-10 leaves room for the accumulation over a few optimiser steps.
TOL = dict(rtol=1e-10, atol=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn: Callable[[int], None], port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        fn(rank)
    finally:
        dist.destroy_process_group()


def _spawn(fn: Callable[[int], None]) -> None:
    mp.spawn(_entry, args=(fn, _free_port()), nprocs=WORLD, join=True)


def _mlp(seed: int = 0, widths: tuple[int, ...] = (3, 5, 3)) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def _data(n: int = 24, d: int = 3, k: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, k, (n,), generator=g)


def _shard_loader(X: torch.Tensor, y: torch.Tensor, rank: int) -> DataLoader:
    sampler = DistributedSampler(TensorDataset(X, y), num_replicas=WORLD, rank=rank, shuffle=False)
    return DataLoader(TensorDataset(X, y), batch_size=5, sampler=sampler)


def _same(F: Any, R: Any, v: torch.Tensor) -> None:
    torch.testing.assert_close(F.to_dense(), R.to_dense(), **TOL)
    torch.testing.assert_close(F.diag(), R.diag(), **TOL)
    torch.testing.assert_close(F @ v, R @ v, **TOL)


# ------------------------------------------------------------------ distributed fisher
def _fisher_worker(rank: int) -> None:
    model = _mlp()
    X, y = _data()
    loader = _shard_loader(X, y, rank)
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    for representation in REPRESENTATIONS:
        for kind in ("true", "empirical"):
            F = distributed.fisher(model, loader, kind=kind, representation=representation)
            R = local_fisher(model, X, kind=kind, targets=y, representation=representation)
            assert type(F) is type(R), (representation, type(F), type(R))
            _same(F, R, v)
        # mc: rank r samples with its own generator (seed 10 + r); the exact reference is the
        # example-weighted mean of the two shards' one-process results with those generators
        F = distributed.fisher(model, loader, kind="mc", representation=representation,
                               generator=torch.Generator().manual_seed(10 + rank))
        parts = [local_fisher(model, _shard_loader(X, y, r), kind="mc", representation=representation,
                              generator=torch.Generator().manual_seed(10 + r)) for r in range(WORLD)]
        sizes = [len(_shard_loader(X, y, r).sampler) for r in range(WORLD)]  # type: ignore[arg-type]
        if representation == "kfac":  # the factors are means over examples: K-FAC of the union
            mean = [tuple(sum(n * P.factors[k][j] for n, P in zip(sizes, parts)) / sum(sizes) for j in (0, 1))
                    for k in range(len(parts[0].factors))]
            parts = [KFACMatrix(mean, parts[0].layers, parts[0].layout)]
            sizes = [1]
        ref = sum(n * P.to_dense() for n, P in zip(sizes, parts)) / sum(sizes)
        torch.testing.assert_close(F.to_dense(), ref, **TOL)
        ref_v = sum(n * (P @ v) for n, P in zip(sizes, parts)) / sum(sizes)
        torch.testing.assert_close(F @ v, ref_v, **TOL)
    # a tensor shard and EWC's per-parameter diagonal (the union of the shards = all of X)
    half = slice(rank * 12, (rank + 1) * 12)
    torch.testing.assert_close(distributed.fisher(model, X[half]).to_dense(), local_fisher(model, X).to_dense(), **TOL)
    for f, r in zip(distributed.diagonal_fisher(model, loader, kind="empirical"),
                    diagonal_fisher(model, X, kind="empirical", targets=y)):
        torch.testing.assert_close(f, r, **TOL)
    # a DDP-wrapped model is unwrapped: no gradient synchronisation is triggered
    ddp = nn.parallel.DistributedDataParallel(model)
    torch.testing.assert_close(distributed.fisher(ddp, loader, representation="kfac").to_dense(),
                               local_fisher(model, X, representation="kfac").to_dense(), **TOL)


@pytest.mark.slow
def test_distributed_fisher_equals_one_process_for_every_representation_and_kind() -> None:
    _spawn(_fisher_worker)


def test_reduce_fisher_of_two_shards_is_not_the_mean_of_kronecker_products() -> None:
    """Sanity of the reference used above: K-FAC of the union differs from the mean of the
    shards' K-FACs (so the equality test can fail if the factors were reduced as products)."""
    model = _mlp()
    X, y = _data()
    shards = [local_fisher(model, X[:12], representation="kfac"), local_fisher(model, X[12:], representation="kfac")]
    union = local_fisher(model, X, representation="kfac").to_dense()
    mean = (shards[0].to_dense() + shards[1].to_dense()) / 2
    assert not torch.allclose(union, mean, **TOL)


# ------------------------------------------------------------------ DDP + K-FAC
def _train_kfac(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], **options: Any) -> KFAC:
    opt = KFAC(model, lr=0.2, damping=1e-2, inverse_every=2, momentum=0.5, kl_clip=1e-2, **options)
    for xb, yb in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return opt


def _kfac_worker(rank: int) -> None:
    widths = (3, 6, 5, 3)  # three layers on two ranks: round robin gives rank 0 two of them
    X, y = _data(n=64)
    steps = [(X[16 * t:16 * (t + 1)], y[16 * t:16 * (t + 1)]) for t in range(4)]
    mine = [(xb[8 * rank:8 * (rank + 1)], yb[8 * rank:8 * (rank + 1)]) for xb, yb in steps]

    reference = _mlp(widths=widths)
    ref_opt = _train_kfac(reference, steps, fisher_type="empirical")
    results = {}
    for placement in ("redundant", "round_robin"):
        ddp = nn.parallel.DistributedDataParallel(_mlp(widths=widths))
        opt = _train_kfac(ddp, mine, fisher_type="empirical", inverse_placement=placement)
        assert opt.distributed  # on by default for a DDP model
        for p, q in zip(ddp.module.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, **TOL)
        for (a, g), (ra, rg) in zip(opt.factors(), ref_opt.factors()):
            torch.testing.assert_close(a, ra, **TOL)
            torch.testing.assert_close(g, rg, **TOL)
        results[placement] = [p.detach().clone() for p in ddp.module.parameters()]
    for p, q in zip(results["redundant"], results["round_robin"]):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-14)

    # mc: one statistics step; rank r samples with seed 20 + r, so the factors are the
    # example-weighted mean of the two one-process KFACs on the halves with those generators
    ddp = nn.parallel.DistributedDataParallel(_mlp(widths=widths))
    opt = _train_kfac(ddp, mine[:1], generator=torch.Generator().manual_seed(20 + rank))
    halves = [_train_kfac(_mlp(widths=widths), [(steps[0][0][8 * r:8 * (r + 1)], steps[0][1][8 * r:8 * (r + 1)])],
                          generator=torch.Generator().manual_seed(20 + r)) for r in range(WORLD)]
    for k, (a, g) in enumerate(opt.factors()):
        torch.testing.assert_close(a, (halves[0].factors()[k][0] + halves[1].factors()[k][0]) / 2, **TOL)
        torch.testing.assert_close(g, (halves[0].factors()[k][1] + halves[1].factors()[k][1]) / 2, **TOL)


@pytest.mark.slow
def test_ddp_kfac_equals_one_process_with_the_doubled_batch_and_round_robin_equals_redundant() -> None:
    _spawn(_kfac_worker)


# ------------------------------------------------------------------ NaturalGradient
def _ng_worker(rank: int) -> None:
    X, y = _data(n=32)
    for solver, representation in (("dense", None), ("cg", "matrix_free"), ("solve", "kfac")):
        reference = _mlp()
        ddp = nn.parallel.DistributedDataParallel(copy.deepcopy(reference))
        ref_opt = NaturalGradient(reference.parameters(), lr=0.5, damping=1e-2, model=reference,
                                  likelihood="categorical", solver=solver, representation=representation)
        opt = NaturalGradient(ddp.parameters(), lr=0.5, damping=1e-2, model=ddp, likelihood="categorical",
                              solver=solver, representation=representation)
        assert opt.distributed
        for t in range(3):
            xb, yb = X[8 * t:8 * (t + 1)], y[8 * t:8 * (t + 1)]
            mx, my = xb[4 * rank:4 * (rank + 1)], yb[4 * rank:4 * (rank + 1)]
            ref_opt.zero_grad()
            nn.functional.cross_entropy(reference(xb), yb).backward()
            ref_opt.step(inputs=xb)
            opt.zero_grad()
            nn.functional.cross_entropy(ddp(mx), my).backward()
            opt.step(inputs=mx)
        for p, q in zip(ddp.module.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)  # cg stops at tol 1e-10: same on both sides


def _ewc_worker(rank: int) -> None:
    """EWC under DDP: the task's diagonal Fisher from the ranks' shards, then training with the
    penalty on each rank's half batch equals one process on the whole batch (DDP averages the
    gradients of mean loss + penalty, so the penalty counts once, as on one process)."""
    X, y = _data(n=32)
    task = _mlp()
    anchor = [p.detach().clone() for p in task.parameters()]
    F = distributed.diagonal_fisher(task, _shard_loader(X, y, rank), kind="true")
    for f, r in zip(F, diagonal_fisher(task, X, kind="true")):
        torch.testing.assert_close(f, r, **TOL)
    reference = copy.deepcopy(task)
    ddp = nn.parallel.DistributedDataParallel(copy.deepcopy(task))
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (reference, ddp)]
    Xn, yn = _data(n=16, seed=5)  # the next task
    for step in range(3):
        for model, opt, (xb, yb) in ((reference, opts[0], (Xn, yn)),
                                     (ddp, opts[1], (Xn[8 * rank:8 * (rank + 1)], yn[8 * rank:8 * (rank + 1)]))):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb) + ewc_penalty(model.parameters(), anchor, F, 10.0)
            loss.backward()
            opt.step()
    for p, q in zip(ddp.module.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, **TOL)


def _ng_and_ewc_worker(rank: int) -> None:
    _ng_worker(rank)
    _ewc_worker(rank)


@pytest.mark.slow
def test_natural_gradient_with_distributed_fisher_and_ewc_under_ddp_equal_one_process() -> None:
    _spawn(_ng_and_ewc_worker)


# ------------------------------------------------------------------ errors
def test_distributed_options_without_a_process_group_raise() -> None:
    assert not dist.is_initialized()
    model = _mlp()
    X, _ = _data()
    with pytest.raises(DistributedError, match="init_process_group"):
        distributed.fisher(model, X)
    with pytest.raises(DistributedError, match="init_process_group"):
        distributed.reduce_fisher(local_fisher(model, X), 24)
    # the same reducer behind the public entry points of curvature and continual
    with pytest.raises(DistributedError, match="init_process_group"):
        local_fisher(model, X, distributed=True)
    with pytest.raises(DistributedError, match="init_process_group"):
        diagonal_fisher(model, X, kind="true", distributed=True)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        local_fisher(model, X, distributed="yes")
    with pytest.raises(DistributedError, match=r"KFAC\(distributed=True\)"):
        KFAC(model, distributed=True)
    with pytest.raises(DistributedError, match=r"NaturalGradient\(distributed=True\)"):
        NaturalGradient(model.parameters(), model=model, likelihood="categorical", distributed=True)
    assert not KFAC(model).distributed  # off by default for a plain model


def _mismatch_worker(rank: int) -> None:
    model = _mlp(widths=(3, 5 + rank, 3))
    X, _ = _data()
    for call in (lambda: distributed.fisher(model, X), lambda: KFAC(model, distributed=True),
                 lambda: NaturalGradient(model.parameters(), model=model, likelihood="categorical",
                                         distributed=True)):
        with pytest.raises(DistributedError, match=r"rank 0 has '0.weight' of shape \(5, 3\), rank 1 has "
                                                   r"'0.weight' of shape \(6, 3\)"):
            call()


@pytest.mark.slow
def test_ranks_with_different_parameter_shapes_raise() -> None:
    _spawn(_mismatch_worker)
