"""Chapter 5, mini-batch regime: a small CNN on the digits with K-FAC, EKFAC, Shampoo, Adam and SGD+Nesterov.

Run once; the chapter reads the JSON this writes (``benchmarks/ch5_minibatch.json``) and the script
also writes a report (``benchmarks/ch5_minibatch_report.md``)::

    .venv/bin/python benchmarks/ch5_minibatch.py          # 3 seeds, about 10 minutes on one busy core
    .venv/bin/python benchmarks/ch5_minibatch.py --timing-only   # only the step times (about a minute)

Setting: the 1797 digits as 8×8 images, the CNN ``fisherbook.experiments.kfac.DigitsCNN`` (Conv2d
1→8 3×3 pad 1, tanh, Conv2d 8→8 3×3 stride 2, tanh, Linear 72→10; 1394 parameters), softmax
cross-entropy, mini-batches of 128 drawn without replacement within each epoch, float32, one
thread. Every 10 iterations the training loss over all 1797 images is evaluated (not timed); a run
stops when it reaches the target (0.02 nats), after 400 iterations, or when the loss exceeds twice
its initial value. Each seed gives a new initialisation, a new batch order and new sampled targets.

As practitioners run K-FAC with mini-batches: factor statistics (sampled targets) on every batch,
exponential moving averages with decay 0.95, eigendecompositions every 10 steps (stale in
between), Tikhonov damping 0.1 (factored for K-FAC, added to the scalings for EKFAC), momentum 0.9,
no KL clip. Shampoo: momentum 0.9, EMA statistics (beta2 0.95), epsilon 1e-4, roots every 10 steps.
SGD with Nesterov momentum 0.9; Adam with (0.9, 0.999). Only the step size is tuned: every method
gets a grid of five values spaced by factors of 2, the same number of runs (``--merge`` keeps the runs
of an earlier JSON and adds missing ones, for a grid extended after the fact). Score of a run: the
iterations to the target (not reached: twice the budget, 800); a method's chosen step size
minimises the mean score over the seeds and must lie strictly inside its grid (asserted). Budget:
5 methods × 5 step sizes × 3 seeds = 75 runs of at most 400 iterations. K-FAC's damping (0.1) was set
after a trial run in which EKFAC diverged with 1e-2; it is not tuned.

Time: the runs' own clocks (``seconds``, ``times``) are wall clocks of one run at a time on a shared
machine and do not compare the methods. The comparison in time uses a separate timing pass
(:func:`step_times`): CPU time per step of every method at its chosen step size, measured side by
side in one process and one thread, interleaved over several rounds, the least of the rounds; the
time to the target is the iterations times that step time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import fisherbook as fb
from fisherbook.experiments.kfac import DigitsCNN, train_minibatch
from fisherbook.optim import KFAC, Shampoo

HERE = Path(__file__).resolve().parent
BATCH, MAX_STEPS, TARGET, EVAL_EVERY = 128, 400, 0.02, 10
UNREACHED = 2 * MAX_STEPS
KFAC_KW = dict(damping=0.1, momentum=0.9, factor_decay=0.95, inverse_every=10, kl_clip=None)
#: name -> step-size grid (factors of 2)
GRIDS = {
    "SGD + Nesterov": [0.1, 0.2, 0.4, 0.8, 1.6],
    "Adam": [0.005, 0.01, 0.02, 0.04, 0.08],
    "Shampoo": [0.002, 0.004, 0.008, 0.016, 0.032],
    "K-FAC": [0.025, 0.05, 0.1, 0.2, 0.4],
    "EKFAC": [0.025, 0.05, 0.1, 0.2, 0.4],
}


def make(name: str, lr: float, model: torch.nn.Module, seed: int) -> torch.optim.Optimizer:
    if name == "SGD + Nesterov":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    if name == "Adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "Shampoo":
        return Shampoo(model.parameters(), lr=lr, momentum=0.9, beta2=0.95, epsilon=1e-4, inverse_every=10)
    return KFAC(model, lr=lr, eigenvalue_corrected=name == "EKFAC", generator=torch.Generator().manual_seed(seed),
                **KFAC_KW)  # type: ignore[arg-type]


def data() -> tuple[torch.Tensor, torch.Tensor]:
    X, y = fb.data.load_digits_tensors()
    return X.reshape(-1, 1, 8, 8), y


def run(name: str, lr: float, seed: int, X: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    model = DigitsCNN(seed)
    h = train_minibatch(model, X, y, make(name, lr, model, seed), MAX_STEPS, BATCH, TARGET, seed=seed,
                        eval_every=EVAL_EVERY, name=name)
    steps_done = h.steps[-1]
    return dict(method=name, lr=lr, seed=seed, reached=h.reached, seconds=h.seconds_to_target, steps=h.steps,
                losses=h.losses, times=h.times,
                ms_per_step=1e3 * h.times[-1] / steps_done if steps_done else None)


def step_times(chosen: dict[str, dict[str, Any]], X: torch.Tensor, y: torch.Tensor, repeats: int = 7,
               steps: int = 30, warmup: int = 5) -> dict[str, Any]:
    """CPU milliseconds per training step of each method at its chosen step size, measured side by side.

    One process, one thread, the same ``warmup + steps`` batches for every method. Each of the
    ``repeats`` rounds builds every method's model and optimiser afresh and runs them one after the
    other, in an order rotated from round to round (so no method always runs first or last); a step
    is ``zero_grad``, forward, backward and ``step``, timed with ``time.process_time`` (CPU time of
    this process, which other jobs on a shared machine slow far less than they slow a wall clock)
    over the ``steps`` steps after the warm-up. The ``steps`` include the stale-inverse schedule:
    with inverses every 10 steps, 3 refreshes in 30 steps. A method's step time is the least over
    the rounds (the run least disturbed), and all rounds are kept.
    """
    names = list(chosen)
    per: dict[str, list[float]] = {m: [] for m in names}
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(X.shape[0], generator=gen)[:BATCH] for _ in range(warmup + steps)]
    for r in range(repeats):
        for m in names[r % len(names):] + names[: r % len(names)]:
            model = DigitsCNN(0)
            opt = make(m, chosen[m]["lr"], model, 0)
            t0 = 0.0
            for k, idx in enumerate(batches):
                if k == warmup:
                    t0 = time.process_time()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
            per[m].append(1e3 * (time.process_time() - t0) / steps)
    return dict(step_ms={m: min(v) for m, v in per.items()},
                timing=dict(clock="time.process_time", threads=torch.get_num_threads(), repeats=repeats,
                            steps=steps, warmup=warmup, statistic="least over the repeats",
                            all_ms=per, torch=torch.__version__, machine=platform.machine()))


def choose(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    by = {(r["method"], r["lr"], r["seed"]): r for r in runs}
    out = {}
    for m, grid in GRIDS.items():
        score = {lr: statistics.mean(by[m, lr, s]["reached"] or UNREACHED for s in seeds) for lr in grid}
        best = min(grid, key=lambda lr: (score[lr], lr))
        its = [by[m, best, s]["reached"] for s in seeds]
        secs = [by[m, best, s]["seconds"] for s in seeds]
        ms = [by[m, best, s]["ms_per_step"] for s in seeds]
        out[m] = dict(lr=best, score=score, inside=grid[0] < best < grid[-1], iterations=its, seconds=secs,
                      ms_per_step=ms)
    return out


def report(res: dict[str, Any]) -> str:
    cfg, chosen = res["config"], res["chosen"]
    width = max(len(g) for g in cfg["grids"].values())
    ref = chosen["SGD + Nesterov"]
    lines = [
        "# Chapter 5: the mini-batch regime (`benchmarks/ch5_minibatch.py`)",
        "",
        f"Generated by `.venv/bin/python benchmarks/ch5_minibatch.py`; torch {cfg['torch']}, {cfg['machine']}, one CPU "
        f"thread, float32; {len(res['runs'])} runs in {cfg['total_seconds'] / 60:.1f} minutes. The machine (2 cores) "
        "was shared with other jobs: wall times are noisy (they are training seconds, evaluations excluded).",
        "",
        f"Setting: the digits CNN (1394 parameters) on all 1797 images, mini-batches of {cfg['batch']}, target "
        f"training loss {cfg['target']} nats, at most {cfg['max_steps']} iterations, loss evaluated every "
        f"{cfg['eval_every']} iterations; seeds {cfg['seeds']}. K-FAC and EKFAC: {cfg['kfac']}; statistics on "
        "every batch (sampled targets), EMA 0.95, inverses every 10 steps. Only the step size is tuned, "
        "on five values per method; the score is the mean iterations to the target over the seeds "
        f"(not reached: {UNREACHED}).",
        "",
        "## Mean iterations to the target per step size",
        "",
        "| method | " + " | ".join(f"lr {i + 1}" for i in range(width)) + " | chosen |",
        "| --- | " + " | ".join("---:" for _ in range(width)) + " | ---: |",
    ]
    for m, c in chosen.items():
        grid = cfg["grids"][m]
        cells = [f"{lr:g}: {c['score'][str(lr)]:.0f}" for lr in grid] + [""] * (width - len(grid))
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {c['lr']:g} |")
    lines += [
        "",
        "## Each method at its chosen step size",
        "",
        "| method | lr | iterations per seed | median | SGD+Nesterov ÷ this | median s to target (run clock) | "
        "SGD+Nesterov ÷ this (run clock) | ms / step (run clock) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ref_it = statistics.median(i or UNREACHED for i in ref["iterations"])
    ref_s = statistics.median(s or float("inf") for s in ref["seconds"])
    for m, c in chosen.items():
        it = statistics.median(i or UNREACHED for i in c["iterations"])
        sec = statistics.median(s or float("inf") for s in c["seconds"])
        ms = statistics.median(x for x in c["ms_per_step"] if x is not None)
        lines.append(f"| {m} | {c['lr']:g} | {c['iterations']} | {it:.0f} | {ref_it / it:.2f} | {sec:.2f} | "
                     f"{ref_s / sec:.2f} | {ms:.1f} |")
    if "step_ms" in res:
        sms, tm = res["step_ms"], res.get("timing", {})
        lines += [
            "",
            "## Step times (side by side) and iterations × step time",
            "",
            "The wall times and ms / step above come from the single runs' clocks on a shared machine, read at "
            "different moments of its load: they do not compare the methods fairly. The step times here were "
            f"measured side by side in one process ({tm.get('threads', 1)} thread): {tm.get('repeats', '?')} rounds, "
            "each building every method afresh at its chosen step size and running it on the same batches in an "
            f"order rotated between rounds, {tm.get('warmup', '?')} warm-up steps then {tm.get('steps', '?')} timed "
            f"steps (zero_grad, forward, backward, step) with `{tm.get('clock', '?')}` (CPU time); a method's step "
            "time is the least over the rounds. The time to the target is the median iterations times that step "
            "time. The machine was shared with other jobs while they were measured.",
            "",
            "| method | CPU ms / step (least) | all rounds | ÷ SGD+Nesterov | est. s to target | "
            "SGD+Nesterov ÷ this (time) |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        ref_est = statistics.median(i or UNREACHED for i in ref["iterations"]) * sms["SGD + Nesterov"] / 1e3
        for m, c in chosen.items():
            est = statistics.median(i or UNREACHED for i in c["iterations"]) * sms[m] / 1e3
            rounds = ", ".join(f"{x:.1f}" for x in tm.get("all_ms", {}).get(m, []))
            lines.append(f"| {m} | {sms[m]:.1f} | {rounds} | {sms[m] / sms['SGD + Nesterov']:.2f} | {est:.2f} | "
                         f"{ref_est / est:.2f} |")
    inside = all(c["inside"] for c in chosen.values())
    lines += ["", f"Every chosen step size strictly inside its grid: {'yes' if inside else 'NO'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "ch5_minibatch.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch5_minibatch_report.md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out")
    parser.add_argument("--timing-only", action="store_true",
                        help="run only the timing pass (step times of --out's chosen step sizes, side by side) "
                             "and merge it into --out, then rewrite the report")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs already in --out and run only the missing (method, lr, seed)")
    args = parser.parse_args(argv)
    if args.report_only:
        args.report.write_text(report(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(1)
    X, y = data()
    if args.timing_only:
        res = json.loads(args.out.read_text())  # the sweep's runs stay; only the timing pass is new
        res.update(step_times(res["chosen"], X, y))
        args.out.write_text(json.dumps(res, indent=1))
        args.report.write_text(report(res))
        return 0
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    earlier = 0.0
    if args.merge:
        old = json.loads(args.out.read_text())
        runs = [r for r in old["runs"] if r["lr"] in GRIDS[r["method"]] and r["seed"] in args.seeds]
        earlier = old["config"]["total_seconds"]
    done = {(r["method"], r["lr"], r["seed"]) for r in runs}
    for seed in args.seeds:  # interleaved: every method sees the same load on the shared machine
        for lr_index in range(max(len(g) for g in GRIDS.values())):
            for m, grid in GRIDS.items():
                if lr_index >= len(grid) or (m, grid[lr_index], seed) in done:
                    continue
                r = run(m, grid[lr_index], seed, X, y)
                runs.append(r)
                print(f"seed {seed} {m:16s} lr {r['lr']:<6g} reached {r['reached']}", flush=True)
    total = earlier + time.perf_counter() - start
    chosen = choose(runs, args.seeds)
    res = dict(config=dict(seeds=args.seeds, batch=BATCH, max_steps=MAX_STEPS, target=TARGET, eval_every=EVAL_EVERY,
                           grids=GRIDS, kfac={k: v for k, v in KFAC_KW.items()}, total_seconds=total,
                           torch=torch.__version__, machine=platform.machine()),
               runs=runs, chosen=chosen)
    res.update(step_times(chosen, X, y))
    args.out.write_text(json.dumps(res, indent=1))
    args.report.write_text(report(json.loads(args.out.read_text())))
    return 0 if all(c["inside"] for c in chosen.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
