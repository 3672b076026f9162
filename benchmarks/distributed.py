"""Distributed K-FAC: time per step and communication volume, 1 process against 2 (gloo, CPU).

Run: ``.venv/bin/python benchmarks/distributed.py [--steps 30]`` (writes a Markdown table to
stdout; ``benchmarks/distributed_report.md`` holds a run and the scaling argument).

Configurations, all with the same global batch of ``2 b`` examples per step:

- ``1 process``: ``KFAC`` on one process, batch ``2 b``;
- ``2 ranks, redundant``: DDP + ``KFAC`` (factor statistics all-reduced every step, every rank
  eigendecomposes every layer), batch ``b`` per rank;
- ``2 ranks, round_robin``: the same, eigendecompositions spread over the ranks and broadcast.

Communication is measured by wrapping ``torch.distributed.all_reduce`` and ``broadcast`` (the
collectives fisherbook issues) and counting the bytes of their tensors; DDP's own gradient
all-reduce goes through its C++ reducer and is counted from the model's size (one all-reduce of
all gradients per step).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fisherbook.optim import KFAC

WIDTHS = (512, 512, 512, 10)
BATCH = 128  # per rank


def _model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(WIDTHS[:-1], WIDTHS[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class _Meter:
    """Count the bytes and time of fisherbook's collectives (monkeypatched torch.distributed calls)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.seconds = 0.0
        self.calls = 0
        self._all_reduce, self._broadcast = dist.all_reduce, dist.broadcast

    def install(self) -> None:
        def timed(fn: Any) -> Any:
            def run(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                out = fn(tensor, *args, **kwargs)
                self.seconds += time.perf_counter() - t0
                self.bytes += tensor.numel() * tensor.element_size()
                self.calls += 1
                return out
            return run

        dist.all_reduce = timed(self._all_reduce)  # type: ignore[assignment]
        dist.broadcast = timed(self._broadcast)  # type: ignore[assignment]


def _run(rank: int, world: int, placement: str | None, steps: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = _model()
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    kwargs = {"inverse_placement": placement} if placement else {}
    opt = KFAC(net, lr=0.05, damping=1e-2, inverse_every=10, generator=torch.Generator().manual_seed(rank),
               **kwargs)
    g = torch.Generator().manual_seed(100 + rank)
    n = BATCH * (2 // world)
    X, y = torch.randn(n, WIDTHS[0], generator=g), torch.randint(0, WIDTHS[-1], (n,), generator=g)
    meter = _Meter()
    times = []
    for t in range(steps + 5):
        if t == 5:
            meter.install()  # count from the first timed step (steps 0..4 warm up; step 10 refreshes)
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
        if t >= 5:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
                       "bytes_per_step": meter.bytes / steps, "calls_per_step": meter.calls / steps,
                       "comm_s_per_step": meter.seconds / steps}, fh)
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(world: int, placement: str | None, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        if world == 1:
            _run(0, 1, None, steps, 0, out)
        else:
            mp.spawn(_run, args=(world, placement, steps, _free_port(), out), nprocs=world, join=True)
        with open(out) as fh:
            return json.load(fh)


def predicted_bytes(inverse_every: int, placement: str, world: int, itemsize: int = 4) -> float:
    """fisherbook's collectives per step, averaged over an inverse period (the report's formula)."""
    stats = sum((i + 1) ** 2 + o ** 2 + 1 for i, o in zip(WIDTHS[:-1], WIDTHS[1:]))
    inv = sum(i + 1 + (i + 1) ** 2 + o + o ** 2 + 1 for i, o in zip(WIDTHS[:-1], WIDTHS[1:]))
    per_step = stats + (inv / inverse_every if placement == "round_robin" and world > 1 else 0)
    return per_step * itemsize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    grads = sum(p.numel() for p in _model().parameters())
    rows = [("1 process, batch 256", 1, None), ("2 ranks x 128, redundant", 2, "redundant"),
            ("2 ranks x 128, round_robin", 2, "round_robin")]
    results = {name: measure(world, placement, args.steps) for name, world, placement in rows}
    base = results[rows[0][0]]["mean_s"]
    print(f"model {WIDTHS}, {grads} parameters; {args.steps} timed steps; inverse_every=10; float32; gloo on CPU\n")
    print("| configuration | median s/step | mean s/step (with refreshes) | ratio of means to 1 process | fisherbook collectives: MB/step (predicted) "
          "| calls/step | s/step in them | DDP gradient all-reduce MB/step |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, world, placement in rows:
        r = results[name]
        pred = predicted_bytes(10, placement or "redundant", world) / 1e6 if world > 1 else 0.0
        print(f"| {name} | {r['median_s']:.4f} | {r['mean_s']:.4f} | {r['mean_s'] / base:.2f} | {r['bytes_per_step'] / 1e6:.2f} "
              f"({pred:.2f}) | {r['calls_per_step']:.1f} | {r['comm_s_per_step']:.4f} | "
              f"{(4 * grads / 1e6) if world > 1 else 0.0:.2f} |")


if __name__ == "__main__":
    main()
