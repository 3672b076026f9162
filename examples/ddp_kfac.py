"""Train a small classifier with DistributedDataParallel + K-FAC on several processes.

Run (two CPU processes, gloo; two GPUs with nccl when CUDA is present — the same code)::

    torchrun --nproc-per-node 2 examples/ddp_kfac.py

Without ``torchrun`` it runs as a single process (world size 1). Each rank trains on its shard of
scikit-learn's bundled digits (``DistributedSampler``); DDP averages the gradients, K-FAC
averages its factor statistics over the ranks (``distributed`` is on because the model is a DDP
module) and eigendecomposes the layers round-robin. At the end every rank computes the K-FAC
Fisher of the *whole* training set from its own shard with
``fisherbook.curvature.distributed.fisher`` and checks that all ranks hold the same parameters.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fisherbook.curvature import distributed
from fisherbook.optim import KFAC


def _single_process_defaults() -> None:
    """Environment for a plain ``python examples/ddp_kfac.py`` (what torchrun would set)."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="examples per rank and step")
    parser.add_argument("--placement", choices=("redundant", "round_robin"), default="round_robin")
    args = parser.parse_args()

    _single_process_defaults()
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    n_train = 1500
    train = TensorDataset(X[:n_train], y[:n_train])
    sampler = DistributedSampler(train, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    torch.manual_seed(0)  # the same initial model everywhere (DDP also broadcasts rank 0's)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)).to(device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    opt = KFAC(ddp, lr=0.3, damping=1e-2, inverse_every=10, kl_clip=1e-2, inverse_placement=args.placement,
               generator=torch.Generator(device=device).manual_seed(1000 + rank))  # per-rank sampled targets

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = torch.zeros(2, device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(xb), yb)
            loss.backward()
            opt.step()
            total += torch.stack([loss.detach() * len(yb), torch.tensor(float(len(yb)), device=device)])
        dist.all_reduce(total)
        with torch.no_grad():
            acc = (model(X[n_train:].to(device)).argmax(1) == y[n_train:].to(device)).float().mean()
        if rank == 0:
            print(f"epoch {epoch}: train loss {float(total[0] / total[1]):.4f}  test accuracy {float(acc):.3f}")

    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    spread = flat.clone()
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    assert torch.equal(spread, flat), "the ranks' parameters differ"  # DDP + synchronised K-FAC keep them equal

    shard = DataLoader(train, batch_size=256, sampler=DistributedSampler(train, shuffle=False))
    F = distributed.fisher(model, shard, likelihood="categorical", kind="true", representation="kfac")
    if rank == 0:
        print(f"{world} rank(s): K-FAC Fisher of all {len(shard.sampler) * world} training examples "  # type: ignore[arg-type]
              f"(padded to equal shards), trace {float(F.trace()):.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
