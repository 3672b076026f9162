"""Chapter 6 sweep: every continual-learning method on its own lambda grid, over several seeds.

Run once; the chapter reads the JSON this writes (``benchmarks/ch6_sweep.json``) and this script
also writes a report (``benchmarks/ch6_sweep_report.md``)::

    .venv/bin/python benchmarks/ch6_sweep.py                 # 3 seeds, every method: 303 runs, ~40 min on one core

Setting (the chapter's): five permuted-digit tasks (``fb.data.permuted_digits``), an MLP with two
hidden layers of 100 ReLU units, 20 epochs of Adam (lr 1e-3, batch 128) per task, float64, one
thread. Each seed draws a new train/test split, new permutations, a new initialisation and a new
mini-batch order. Methods: fine-tuning; EWC with the true Fisher; EWC with the empirical Fisher;
online EWC (true Fisher, gamma = 1); the L2 anchor. The EWC variants share one grid; L2 has its own,
since its lambda lives on another scale. Selection: the lambda with the best average accuracy A
after the five tasks, per seed, and for the mean of A over the seeds.

Added later (van de Ven 2025's comparison of Fishers, Schwarz et al. 2018's decay, Ritter et al.
2018's Kronecker-factored Laplace), on the EWC grid widened to 3000 (the first three EWC variants
were run at 3000 too, so that every EWC variant and the K-FAC penalty share one grid; the five Fishers
compared with each other also at the geometric midpoints 17, 55 and 173, where their optima lie): EWC with the Monte-Carlo Fisher (one sampled label per example, and ten); EWC with
Avalanche's batched empirical Fisher (squared gradients of the mean loss of each mini-batch of 128,
averaged over batches) multiplied by the batch size 128, which puts it on the per-example scale of
the other Fishers so that one grid serves all (at an anchor where the mean gradient is near zero the
square of a batch mean is about 1/128 of the per-example empirical Fisher); online EWC with
gamma = 0.8 and 0.5; the K-FAC Laplace penalty (true Fisher) and, as its ablation, online EWC with
only the diagonal of the K-FAC matrices (``KFACDiagonal``). Run them without recomputing the old
runs, in parts, and combine::

    .venv/bin/python benchmarks/ch6_sweep.py --methods "EWC, MC Fisher (1 sample)" --out part1.json
    .venv/bin/python benchmarks/ch6_sweep.py --merge benchmarks/ch6_sweep.json part1.json ...
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
from fisherbook.continual.ewc import EWC, L2, FineTuning, KFACLaplace, make_mlp, train_sequence

HIDDEN, EPOCHS, LR, BATCH = (100, 100), 20, 1e-3, 128
EWC_LAMS = [1, 3, 10, 30, 100, 300, 1000]
WIDE_LAMS = [*EWC_LAMS, 3000]
FINE_LAMS = sorted([*WIDE_LAMS, 17, 55, 173])   # the comparison of Fishers: geometric midpoints near the optima
L2_LAMS = [0.01, 0.03, 0.1, 0.3, 1.0]


class KFACDiagonal(EWC):
    """Ablation of the K-FAC Laplace penalty: only the diagonal of each task's K-FAC matrix,
    diag(G) (x) diag(A), summed over tasks at the latest anchor (online EWC with gamma = 1 and this
    diagonal in place of the Fisher's). It separates what the K-FAC penalty gains from the
    within-layer correlations from what it gains from the different diagonal (a product of means,
    not the mean of products)."""

    def __init__(self, lam: float) -> None:
        super().__init__(lam, kind="true", online=True, gamma=1.0)
        self.name = "online EWC, K-FAC diagonal"

    def after_task(self, model: torch.nn.Module, task) -> None:
        p = next(model.parameters())
        K = fb.curvature.fisher(model, task.X_train.to(device=p.device, dtype=p.dtype), kind="true",
                                representation="kfac")
        self._store(model, [f.detach() for f in K.unflatten(K.diag())])


def _mc(n: int):
    return lambda lam, seed: EWC(lam, kind="mc", n_samples=n, generator=torch.Generator().manual_seed(1000 + seed))


# name -> (strategy from (lambda, seed), lambda grid)
METHODS = {
    "EWC, true Fisher": (lambda lam, seed: EWC(lam, kind="true"), FINE_LAMS),
    "EWC, empirical Fisher": (lambda lam, seed: EWC(lam, kind="empirical"), FINE_LAMS),
    "online EWC, true Fisher": (lambda lam, seed: EWC(lam, kind="true", online=True, gamma=1.0), WIDE_LAMS),
    "L2 anchor": (lambda lam, seed: L2(lam), L2_LAMS),
    "EWC, MC Fisher (1 sample)": (_mc(1), FINE_LAMS),
    "EWC, MC Fisher (10 samples)": (_mc(10), FINE_LAMS),
    "EWC, batched empirical Fisher": (lambda lam, seed: EWC(lam * BATCH, kind="batched_empirical",
                                                            batch_size=BATCH), FINE_LAMS),
    "online EWC, true Fisher, gamma 0.8": (lambda lam, seed: EWC(lam, kind="true", online=True, gamma=0.8),
                                           WIDE_LAMS),
    "online EWC, true Fisher, gamma 0.5": (lambda lam, seed: EWC(lam, kind="true", online=True, gamma=0.5),
                                           WIDE_LAMS),
    "K-FAC Laplace, true Fisher": (lambda lam, seed: KFACLaplace(lam, kind="true"), WIDE_LAMS),
    "online EWC, diagonal of K-FAC": (lambda lam, seed: KFACDiagonal(lam), WIDE_LAMS),
}
HERE = Path(__file__).resolve().parent


def run(strategy, seed: int, tasks) -> dict:
    model = make_mlp(tasks[0].n_features, HIDDEN, 10, seed=seed, dtype=torch.float64)
    res = train_sequence(model, tasks, strategy, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=seed)
    return {"A": float(res.average_accuracy), "forgetting": float(res.forgetting),
            "learning": float(res.R.diagonal().mean()), "R": res.R.tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "ch6_sweep.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch6_sweep_report.md")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="run only these methods (no fine-tuning); write --out only, no report")
    parser.add_argument("--only-lams", type=float, nargs="+", default=None, help="run only these lambdas")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine part files (the committed JSON and runs with --out) into --out and --report")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.report)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    methods = list(METHODS) if args.methods is None else args.methods
    for seed in args.seeds:
        tasks = fb.data.permuted_digits(n_tasks=5, seed=seed, dtype=torch.float64)
        if args.methods is None:
            rows.append({"seed": seed, "method": "fine-tuning", "lam": 0.0, **run(FineTuning(), seed, tasks)})
        for name in methods:
            make, lams = METHODS[name]
            for lam in lams:
                if args.only_lams is not None and lam not in args.only_lams:
                    continue
                t = time.perf_counter()
                rows.append({"seed": seed, "method": name, "lam": float(lam), **run(make(lam, seed), seed, tasks)})
                print(f"seed {seed} {name:36s} lam {lam:<6g} A {rows[-1]['A']:.3f}  ({time.perf_counter() - t:.1f} s)",
                      flush=True)
                partial = {"config": {"total_seconds": round(time.perf_counter() - start)}, "runs": rows}
                args.out.with_suffix(".partial.json").write_text(json.dumps(partial))
    total = time.perf_counter() - start
    out = {"config": config(args.seeds, {n: METHODS[n][1] for n in methods}, round(total)), "runs": rows}
    args.out.write_text(json.dumps(out, indent=1))
    if args.methods is None and args.only_lams is None:
        args.report.write_text(report(out))
    print(f"wrote {args.out} in {total:.0f} s")
    return 0


def config(seeds: list[int], grids: dict, seconds: int, parts: list[str] | None = None) -> dict:
    cfg = {"hidden": list(HIDDEN), "epochs": EPOCHS, "lr": LR, "batch": BATCH, "tasks": 5, "seeds": seeds,
           "grids": {n: [float(x) for x in lams] for n, lams in grids.items()},
           "torch": torch.__version__, "machine": platform.machine(), "threads": 1, "total_seconds": seconds}
    if parts is not None:
        cfg["parts"] = parts
    return cfg


def merge(parts: list[Path], out_path: Path, report_path: Path) -> int:
    """Combine part files: one run per (seed, method, lambda) of the configured grids.

    A method enters the merged file only if it is complete (every lambda of its grid for every
    seed of fine-tuning); the first part holding a run wins, so the committed JSON, passed first,
    is never overwritten.
    """
    runs: dict = {}
    seconds = 0
    names: list[str] = []
    for part in parts:
        data = json.loads(part.read_text())
        seconds += data["config"]["total_seconds"]
        names += data["config"].get("parts", [part.name])
        for r in data["runs"]:
            grid = [0.0] if r["method"] == "fine-tuning" else METHODS.get(r["method"], (None, []))[1]
            if r["lam"] in grid:
                runs.setdefault((r["seed"], r["method"], r["lam"]), r)
    seeds = sorted({k[0] for k in runs if k[1] == "fine-tuning"})
    complete = [n for n, (_, lams) in METHODS.items()
                if all((s, n, float(lam)) in runs for s in seeds for lam in lams)]
    for n in METHODS:
        if n not in complete and any(k[1] == n for k in runs):
            print(f"left out (incomplete): {n}")
    order = {n: i for i, n in enumerate(["fine-tuning", *complete])}
    rows = [runs[k] for k in sorted((k for k in runs if k[1] in order and k[0] in seeds),
                                    key=lambda k: (k[0], order[k[1]], k[2]))]
    out = {"config": config(seeds, {n: METHODS[n][1] for n in complete}, seconds, names), "runs": rows}
    out_path.write_text(json.dumps(out, indent=1))
    report_path.write_text(report(out))
    print(f"merged {len(parts)} parts ({len(rows)} runs) into {out_path} and {report_path}")
    return 0


def table(out: dict) -> dict:
    """(method, lam) -> array of A over the seeds, in seed order."""
    acc: dict = {}
    for r in out["runs"]:
        acc.setdefault((r["method"], r["lam"]), []).append(r["A"])
    return {k: np.array(v) for k, v in acc.items()}


def report(out: dict) -> str:
    cfg, acc = out["config"], table(out)
    seeds = cfg["seeds"]
    lines = ["# Chapter 6 sweep (`benchmarks/ch6_sweep.py`)", "",
             f"Generated by `.venv/bin/python benchmarks/ch6_sweep.py --seeds {' '.join(map(str, seeds))}`"
             + (f" (run in {len(cfg['parts'])} parts on a shared machine, combined with `--merge`)" if "parts" in cfg
                else "") + f"; torch {cfg['torch']}, "
             f"{cfg['machine']}, one thread, float64; {cfg['total_seconds']} s in all (budget: one run per method, "
             f"lambda and seed; {len(out['runs'])} runs).", "",
             "Five permuted-digit tasks, MLP 64-100-100-10 (ReLU), 20 epochs of Adam (lr 1e-3, batch 128) per task. "
             "Each seed: new split, permutations, initialisation and mini-batch order. Entry: average accuracy A "
             "after the five tasks.", "",
             "Fishers: *true* is the exact expectation over the model's labels; *MC* samples 1 or 10 labels per "
             "example; *empirical* uses the observed labels; *batched empirical* is Avalanche's estimator (squared "
             "gradients of each mini-batch's mean loss, batches of 128, averaged over batches) multiplied by 128, "
             "so that its lambda is on the per-example scale of the others. Online EWC keeps one running Fisher "
             "F <- gamma F + F_new and the latest anchor. The K-FAC Laplace penalty (Ritter et al. 2018) keeps each "
             "layer's Kronecker-factored true-Fisher block, summed over tasks, at the latest anchor; its ablation "
             "'online EWC, diagonal of K-FAC' keeps only diag(G) (x) diag(A) of the same matrices, with the same "
             "recursion. All EWC variants and K-FAC share one lambda grid (the five Fishers compared with each other "
             "also at 17, 55 and 173); L2 has its own.", ""]
    for name, grid in cfg["grids"].items():
        lines += [f"## {name}", "", "| lambda | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "| ---: | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
        for lam in grid:
            a = acc[name, lam]
            lines.append(f"| {lam:g} | " + " | ".join(f"{x:.3f}" for x in a) + f" | {a.mean():.3f} |")
        best = max(grid, key=lambda lam: acc[name, lam].mean())
        per_seed = [max(grid, key=lambda lam: acc[name, lam][i]) for i in range(len(seeds))]
        lines += ["", f"Best lambda for the mean: {best:g} (grid {grid[0]:g} to {grid[-1]:g}); per seed: "
                  + ", ".join(f"{x:g}" for x in per_seed) + ".", ""]
    ft = acc["fine-tuning", 0.0]
    lines += ["## Each method at its best lambda, per seed", "",
              "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
              "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |",
              "| fine-tuning | " + " | ".join(f"{x:.3f}" for x in ft) + f" | {ft.mean():.3f} |"]
    for name, grid in cfg["grids"].items():
        b = [max(acc[name, lam][i] for lam in grid) for i in range(len(seeds))]
        lines.append(f"| {name} (per-seed best) | " + " | ".join(f"{x:.3f}" for x in b) + f" | {np.mean(b):.3f} |")
    lines += ["", "## Each method at its lambda chosen on the mean over seeds", "",
              "| method | lambda | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
              "| --- | ---: | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
    for name, grid in cfg["grids"].items():
        best = max(grid, key=lambda lam: acc[name, lam].mean())
        a = acc[name, best]
        lines.append(f"| {name} | {best:g} | " + " | ".join(f"{x:.3f}" for x in a) + f" | {a.mean():.3f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
