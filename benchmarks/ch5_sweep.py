"""Chapter 5 sweep: step sizes of every optimiser on the digits autoencoder, over several seeds.

Run once; the chapter reads the JSON this writes (``benchmarks/ch5_sweep.json``) and the script
also writes a report (``benchmarks/ch5_sweep_report.md``)::

    .venv/bin/python benchmarks/ch5_sweep.py                 # 3 seeds, a few minutes on one core

Setting (the chapter's): the 1797 digits, pixels in [0, 1], through the 64-32-8-32-64 tanh
autoencoder, Bernoulli cross-entropy on the 64 output logits, full batch, 300 steps, float32, one
thread. Each seed gives a new initialisation (and new sampled targets for K-FAC's statistics); the
data are the same. Every optimiser gets a step-size grid of its own, spaced by factors of about 2-3,
wide enough that its best value lies strictly inside. K-FAC's damping (1e-2), KL clip (1e-3 with
momentum 0.9, 1e-2 without) and inverse interval (20) are fixed, not tuned. Score of a run: the
lowest loss it reaches within the 300 steps (robust to a late spike). The chosen step size of a
method is the smallest one whose mean score over the seeds is within ``TIE`` (0.5 %) of the best
mean score: the first-order methods have a clear minimum, but with the KL clip active K-FAC's
update length is set by the clip, and its score flattens out at large step sizes instead of
rising again; the rule then takes the start of the plateau.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import fisherbook as fb
from fisherbook.experiments.kfac import make_optimizer, mlp, train_full_batch

WIDTHS, STEPS = (64, 32, 8, 32, 64), 300
KFAC_KW = dict(damping=1e-2, inverse_every=20, likelihood="bernoulli")
#: name -> (optimiser, momentum, extra keyword arguments, step-size grid)
METHODS = {
    "K-FAC + momentum": ("kfac", 0.9, dict(KFAC_KW, kl_clip=1e-3), [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]),
    "K-FAC, no momentum": ("kfac", 0.0, dict(KFAC_KW, kl_clip=1e-2), [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]),
    "SGD + Nesterov": ("sgd", 0.9, {}, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
    "SGD": ("sgd", 0.0, {}, [2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
    "Adam": ("adam", 0.9, {}, [0.003, 0.01, 0.03, 0.1, 0.3]),
}
HERE = Path(__file__).resolve().parent
TIE = 0.005


def data() -> tuple[torch.Tensor, float]:
    X, _ = fb.data.load_digits_tensors()
    X64 = X.double()
    floor = float(-(torch.special.xlogy(X64, X64) + torch.special.xlogy(1 - X64, 1 - X64)).mean())
    return X, floor


def run(name: str, lr: float, seed: int, X: torch.Tensor) -> list[float]:
    kind, momentum, kw, _ = METHODS[name]
    if kind == "kfac":
        kw = dict(kw, generator=torch.Generator().manual_seed(seed))
    model = mlp(WIDTHS, seed=seed)
    opt = make_optimizer(kind, model, lr, momentum, **kw)
    hist = train_full_batch(model, X, X, torch.nn.functional.binary_cross_entropy_with_logits, opt, STEPS, name)
    return hist.losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "ch5_sweep.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch5_sweep_report.md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out")
    args = parser.parse_args(argv)
    if args.report_only:
        args.report.write_text(report(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(1)
    X, floor = data()
    start = time.perf_counter()
    rows = []
    for seed in args.seeds:
        for name, (_, _, _, grid) in METHODS.items():
            for lr in grid:
                losses = run(name, lr, seed, X)
                finite = [v for v in losses if np.isfinite(v)]
                rows.append({"seed": seed, "method": name, "lr": lr, "losses": [round(v, 6) for v in losses],
                             "best": min(finite) if finite else float("inf"), "diverged": len(finite) < STEPS + 1})
                print(f"seed {seed} {name:20s} lr {lr:<6g} best {rows[-1]['best']:.4f}", flush=True)
    total = time.perf_counter() - start
    out = {"config": {"widths": list(WIDTHS), "steps": STEPS, "floor": floor, "seeds": args.seeds,
                      "grids": {n: m[3] for n, m in METHODS.items()}, "torch": torch.__version__,
                      "machine": platform.machine(), "threads": 1, "total_seconds": round(total)},
           "runs": rows}
    args.out.write_text(json.dumps(out))
    args.report.write_text(report(out))
    print(f"wrote {args.out} and {args.report} in {total:.0f} s")
    return 0


def summarise(out: dict) -> dict:
    """Chosen step size per method, per-seed targets and iterations to them (what the chapter shows)."""
    cfg = out["config"]
    seeds = cfg["seeds"]
    by = {(r["method"], r["lr"], r["seed"]): r for r in out["runs"]}
    chosen = {}
    for name, grid in cfg["grids"].items():
        mean_best = {lr: float(np.mean([by[name, lr, s]["best"] for s in seeds])) for lr in grid}
        top = min(mean_best.values())
        chosen[name] = min(lr for lr in grid if mean_best[lr] <= top * (1 + TIE))
    # the target: SGD + Nesterov's lowest (stored, rounded) loss, so that it reaches it itself
    target = {s: min(by["SGD + Nesterov", chosen["SGD + Nesterov"], s]["losses"]) for s in seeds}
    iters = {}
    for name in cfg["grids"]:
        for s in seeds:
            losses = by[name, chosen[name], s]["losses"]
            hit = next((k for k, v in enumerate(losses) if v <= target[s]), None)
            iters[name, s] = hit
    return {"chosen": chosen, "target": target, "iters": iters, "by": by}


def report(out: dict) -> str:
    cfg, summ = out["config"], summarise(out)
    seeds, by = cfg["seeds"], summ["by"]
    lines = ["# Chapter 5 sweep (`benchmarks/ch5_sweep.py`)", "",
             f"Generated by `.venv/bin/python benchmarks/ch5_sweep.py --seeds {' '.join(map(str, seeds))}`; torch {cfg['torch']}, "
             f"{cfg['machine']}, one thread, float32; {cfg['total_seconds']} s in all ({len(out['runs'])} runs of "
             f"{cfg['steps']} full-batch steps: one per optimiser, step size and seed).", "",
             "Digits autoencoder 64-32-8-32-64 (tanh), Bernoulli cross-entropy, full batch. Entry: the lowest "
             f"excess loss (over the floor {cfg['floor']:.4f}, the mean pixel entropy) reached within "
             f"{cfg['steps']} steps; 'div.' marks a run that diverged. The chosen step size (bold) is the "
             f"smallest step size whose mean score is within {100 * TIE:.1f} % of the best mean score.", ""]
    for name, grid in cfg["grids"].items():
        lines += [f"## {name}", "", "| lr | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "| ---: | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
        for lr in grid:
            vals = [by[name, lr, s]["best"] - cfg["floor"] for s in seeds]
            cells = [("div." if by[name, lr, s]["diverged"] and not np.isfinite(v) else f"{v:.4f}") for s, v in zip(seeds, vals)]
            lab = f"**{lr:g}**" if lr == summ["chosen"][name] else f"{lr:g}"
            lines.append(f"| {lab} | " + " | ".join(cells) + f" | {np.mean(vals):.4f} |")
        spread = np.mean([np.std([by[name, lr, s]["best"] for s in seeds], ddof=1) for lr in grid])
        lines += ["", f"Seed-to-seed standard deviation of the score, averaged over the grid: {spread:.4f}.", ""]
    lines += ["## Iterations to SGD + Nesterov's lowest loss (at its chosen step size), per seed", "",
              "| optimiser (chosen lr) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "| --- | " + " | ".join("---:" for _ in seeds) + " |"]
    for name in cfg["grids"]:
        cells = [str(summ["iters"][name, s]) if summ["iters"][name, s] is not None else f"> {cfg['steps']}" for s in seeds]
        lines.append(f"| {name} ({summ['chosen'][name]:g}) | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
