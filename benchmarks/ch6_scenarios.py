"""Chapter 6 scenarios sweep: task-, domain- and class-incremental split digits, every method tuned.

Run once; the chapter reads the JSON this writes (``benchmarks/ch6_scenarios.json``) and the
report (``benchmarks/ch6_scenarios_report.md``)::

    .venv/bin/python benchmarks/ch6_scenarios.py            # 3 seeds, about 8 min on one core

Setting: the ten digit classes split into five two-class tasks (0/1, 2/3, ..., 8/9) and learned as
the three scenarios of van de Ven, Tuytelaars & Tolias (2022) (``fisherbook.continual.
split_digits_scenario``): task-incremental (a ten-way network, each task on its own two output
units), domain-incremental (a shared two-way head), class-incremental (a ten-way head). An MLP
with two hidden layers of 100 ReLU units, 20 epochs of Adam (lr 1e-3, batch 128) per task,
float64, one thread; each seed draws a new split, initialisation and mini-batch order.

Methods: fine-tuning; EWC (true Fisher), SI (xi = 0.1) and the K-FAC Laplace penalty (true
Fisher), each over the same four-decade lambda grid (all use lambda/2 * Omega-weighted squared
displacements); MAS over the same four decades shifted down by 1000 (its importances, squared-output
gradients, are larger); replay of 5 stored examples per class (no tuned knob: the buffer is the
budget).
Selection: for each scenario and method, the lambda with the best mean over seeds of the average
accuracy A after the five tasks; the chapter asserts it lies strictly inside the grid.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fisherbook.continual import (
    EWC,
    MAS,
    SI,
    FineTuning,
    KFACLaplace,
    Replay,
    make_mlp,
    split_digits_scenario,
    train_sequence,
)

HIDDEN, EPOCHS, LR, BATCH, PER_CLASS = (100, 100), 20, 1e-3, 128, 5
SCENARIOS = ("task", "domain", "class")
LAMS = [10.0, 100.0, 1000.0, 10000.0]
MAS_LAMS = [0.01, 0.1, 1.0, 10.0]   # the same four decades, shifted: MAS's importances are larger
METHODS = {
    "EWC": (lambda lam: EWC(lam, kind="true"), LAMS),
    "SI": (lambda lam: SI(lam, xi=0.1), LAMS),
    "MAS": (lambda lam: MAS(lam), MAS_LAMS),
    "K-FAC Laplace": (lambda lam: KFACLaplace(lam, kind="true"), LAMS),
}
HERE = Path(__file__).resolve().parent


def run(strategy, seed: int, scenario) -> dict:
    model = make_mlp(scenario.tasks[0].n_features, HIDDEN, scenario.n_out, seed=seed, dtype=torch.float64)
    res = train_sequence(model, scenario.tasks, strategy, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=seed)
    return {"A": float(res.average_accuracy), "forgetting": float(res.forgetting),
            "learning": float(res.R.diagonal().mean()), "R": res.R.tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, default=HERE / "ch6_scenarios.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch6_scenarios_report.md")
    parser.add_argument("--methods", nargs="+", default=None, help="run only these (plus nothing else)")
    parser.add_argument("--only-lams", type=float, nargs="+", default=None, help="run only these lambdas")
    parser.add_argument("--skip", type=Path, nargs="+", default=[], help="part files whose runs are not repeated")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine part files (written by runs with --out) into --out and --report")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.report)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    done = {(r["seed"], r["scenario"], r["method"], r["lam"]) for f in args.skip for r in json.loads(f.read_text())["runs"]}
    for seed in args.seeds:
        for scen in args.scenarios:
            sc = split_digits_scenario(scen, seed=seed, dtype=torch.float64)
            if args.methods is None and (seed, scen, "fine-tuning", 0.0) not in done:
                rows.append({"seed": seed, "scenario": scen, "method": "fine-tuning", "lam": 0.0,
                             **run(FineTuning(), seed, sc)})
            if args.methods is None and (seed, scen, "replay", 0.0) not in done:
                rows.append({"seed": seed, "scenario": scen, "method": "replay", "lam": 0.0,
                             **run(Replay(PER_CLASS, seed=seed), seed, sc)})
            for name, (make, lams) in METHODS.items():
                if args.methods is not None and name not in args.methods:
                    continue
                for lam in lams:
                    if (args.only_lams is not None and lam not in args.only_lams) or (seed, scen, name, lam) in done:
                        continue
                    rows.append({"seed": seed, "scenario": scen, "method": name, "lam": float(lam),
                                 **run(make(lam), seed, sc)})
                    print(f"seed {seed} {scen:6s} {name:14s} lam {lam:<8g} A {rows[-1]['A']:.3f}", flush=True)
                    partial = {"config": {"total_seconds": round(time.perf_counter() - start)}, "runs": rows}
                    args.out.with_suffix(".partial.json").write_text(json.dumps(partial))
    total = time.perf_counter() - start
    out = {"config": {"hidden": list(HIDDEN), "epochs": EPOCHS, "lr": LR, "batch": BATCH, "tasks": 5,
                      "per_class": PER_CLASS, "seeds": args.seeds, "scenarios": args.scenarios,
                      "grids": {n: [float(x) for x in lams] for n, (_, lams) in METHODS.items()},
                      "torch": torch.__version__, "machine": platform.machine(), "threads": 1,
                      "total_seconds": round(total)},
           "runs": rows}
    args.out.write_text(json.dumps(out, indent=1))
    if args.methods is None and args.only_lams is None and set(args.scenarios) == set(SCENARIOS):
        args.report.write_text(report(out))
    print(f"wrote {args.out} in {total:.0f} s")
    return 0


def merge(parts: list[Path], out_path: Path, report_path: Path) -> int:
    """Combine part files: keep, for every (seed, scenario, method, lambda) of the configured grids, one run.

    Every (scenario, seed) present must be complete (fine-tuning, replay and every method at every
    lambda of its grid); the config records which seeds each scenario has.
    """
    runs: dict = {}
    seconds = 0
    names: list[str] = []
    for part in parts:
        data = json.loads(part.read_text())
        seconds += data["config"]["total_seconds"]
        names += data["config"].get("parts", [part.name])  # a merged file passed again keeps its parts' names
        for r in data["runs"]:
            grid = [0.0] if r["method"] in ("fine-tuning", "replay") else METHODS.get(r["method"], (None, []))[1]
            if r["lam"] in grid:
                runs.setdefault((r["seed"], r["scenario"], r["method"], r["lam"]), r)
    per_cell = 2 + sum(len(g) for _, g in METHODS.values())
    seeds_of: dict = {}
    for scen in SCENARIOS:
        for seed in sorted({k[0] for k in runs if k[1] == scen}):
            n = sum(1 for k in runs if k[:2] == (seed, scen))
            if n != per_cell:
                raise SystemExit(f"{scen}-incremental, seed {seed}: the parts hold {n} of its {per_cell} runs")
            seeds_of.setdefault(scen, []).append(seed)
    order = {n: i for i, n in enumerate(["fine-tuning", "replay", *METHODS])}
    rows = [runs[k] for k in sorted(runs, key=lambda k: (k[0], SCENARIOS.index(k[1]), order[k[2]], k[3]))]
    out = {"config": {"hidden": list(HIDDEN), "epochs": EPOCHS, "lr": LR, "batch": BATCH, "tasks": 5,
                      "per_class": PER_CLASS, "seeds": sorted({k[0] for k in runs}),
                      "scenarios": [s for s in SCENARIOS if s in seeds_of], "seeds_by_scenario": seeds_of,
                      "grids": {n: [float(x) for x in lams] for n, (_, lams) in METHODS.items()},
                      "torch": torch.__version__, "machine": platform.machine(), "threads": 1,
                      "total_seconds": seconds, "parts": names},
           "runs": rows}
    out_path.write_text(json.dumps(out, indent=1))
    report_path.write_text(report(out))
    print(f"merged {len(parts)} parts ({len(rows)} runs) into {out_path} and {report_path}")
    return 0


def table(out: dict) -> dict:
    """(scenario, method, lam) -> array of A over the seeds, in seed order."""
    acc: dict = {}
    for r in out["runs"]:
        acc.setdefault((r["scenario"], r["method"], r["lam"]), []).append(r["A"])
    return {k: np.array(v) for k, v in acc.items()}


def report(out: dict) -> str:
    cfg, acc = out["config"], table(out)
    seeds_of = cfg.get("seeds_by_scenario", {scen: cfg["seeds"] for scen in cfg["scenarios"]})
    seeds = cfg["seeds"]
    lines = ["# Chapter 6 scenarios sweep (`benchmarks/ch6_scenarios.py`)", "",
             f"Generated by `.venv/bin/python benchmarks/ch6_scenarios.py --seeds {' '.join(map(str, seeds))}`"
             + (f" (run in {len(cfg['parts'])} parts on a shared machine, combined with `--merge`)" if "parts" in cfg
                else "") + "; "
             f"torch {cfg['torch']}, {cfg['machine']}, one thread, float64; {cfg['total_seconds']} s in all (budget: "
             f"one run per scenario, method, lambda and seed; {len(out['runs'])} runs).", "",
             "Split digits, five two-class tasks, as task-, domain- and class-incremental learning; MLP "
             "64-100-100-K (ReLU), 20 epochs of Adam (lr 1e-3, batch 128) per task; replay keeps "
             f"{cfg['per_class']} examples per class. Entry: average accuracy A after the five tasks.", ""]
    for scen in cfg["scenarios"]:
        seeds = seeds_of[scen]
        lines += [f"## {scen}-incremental (seeds {', '.join(map(str, seeds))})", ""]
        for name, grid in cfg["grids"].items():
            lines += [f"### {name}", "", "| lambda | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                      "| ---: | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
            for lam in grid:
                a = acc[scen, name, lam]
                lines.append(f"| {lam:g} | " + " | ".join(f"{x:.3f}" for x in a) + f" | {a.mean():.3f} |")
            best = max(grid, key=lambda lam: acc[scen, name, lam].mean())
            lines += ["", f"Best lambda for the mean: {best:g} (grid {grid[0]:g} to {grid[-1]:g}).", ""]
        lines += ["### Each method at its lambda chosen on the mean", "",
                  "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
        for name in ("fine-tuning", "replay"):
            a = acc[scen, name, 0.0]
            lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in a) + f" | {a.mean():.3f} |")
        for name, grid in cfg["grids"].items():
            best = max(grid, key=lambda lam: acc[scen, name, lam].mean())
            a = acc[scen, name, best]
            lines.append(f"| {name} (lambda {best:g}) | " + " | ".join(f"{x:.3f}" for x in a) + f" | {a.mean():.3f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
