"""Chapter 4: natural-gradient VI (the Bayesian learning rule) against Adam on the ELBO.

Run once; the chapter reads the JSON this writes (``benchmarks/ch4_ngvi.json``) and the script also
writes a report (``benchmarks/ch4_ngvi_report.md``)::

    .venv/bin/python benchmarks/ch4_ngvi.py     # 3 seeds, about 5 minutes of CPU on one thread

Two models, each with a full-covariance Gaussian :math:`q` started at the prior
:math:`\\mathcal N(0, I)` (precision 1), 32-point Gauss-Hermite expectations, float64, one thread:

- *conjugate*: Bayesian linear regression, :math:`n = 50`, :math:`d = 3` (intercept and two standard
  normal features), noise :math:`\\sigma = 0.5`, true weights from the prior; the optimum is the exact
  posterior, whose ELBO is the log evidence;
- *logistic*: Bayesian logistic regression, :math:`n = 200`, :math:`d = 4`, true weights from the prior;
  the optimum is the end of 200 NGVI steps with :math:`\\rho = 1` (its ELBO gradient, by autodiff, is
  recorded).

Methods: ``fisherbook.bayes.natural_gradient_vi`` (step :math:`\\rho`) and ``fisherbook.bayes.gradient_vi`` with Adam
(learning rate on :math:`(m, L)`, :math:`\\Sigma = LL^\\top`, log-diagonal), both on the same grid
0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 1, 1.3, 1.6, 2 (the two smallest values were added
after a first run chose Adam's 0.01, then the grid's end; ``--merge`` keeps the earlier runs). A run's score is the first step from which the
ELBO is within :math:`10^{-6}` nats of the optimum to the end of its budget (NGVI 200 steps, Adam
2000; not reached or diverged: twice the budget). Each method's value minimises the mean score
over the seeds (ties: the smallest value) and must lie strictly inside the grid (asserted). Budget:
2 models x 2 methods x 12 values x 3 seeds = 144 runs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fisherbook.bayes.ngvi import gaussian_elbo, gaussian_linear_posterior, gradient_vi, natural_gradient_vi
from fisherbook.errors import ConvergenceError

HERE = Path(__file__).resolve().parent
D = torch.float64
GRID = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0]
EPS = 1e-6
BUDGET = {"ngvi": 200, "adam": 2000}
NOISE = 0.5


def make_data(model: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * (model == "logistic") + seed)
    n, d = (50, 3) if model == "conjugate" else (200, 4)
    X = torch.cat([torch.ones(n, 1, dtype=D), torch.randn(n, d - 1, generator=g, dtype=D)], 1)
    theta = torch.randn(d, generator=g, dtype=D)
    if model == "conjugate":
        return X, X @ theta + NOISE * torch.randn(n, generator=g, dtype=D)
    return X, (torch.rand(n, generator=g, dtype=D) < torch.sigmoid(X @ theta)).to(D)


def kwargs(model: str) -> dict[str, Any]:
    return dict(prior_precision=1.0, likelihood="gaussian" if model == "conjugate" else "bernoulli", noise_scale=NOISE)


def optimum(model: str, X: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    kw = kwargs(model)
    if model == "conjugate":
        m, P = gaussian_linear_posterior(X, y, noise_scale=NOISE, prior_precision=1.0)
    else:
        res = natural_gradient_vi(X, y, rho=1.0, n_steps=200, **kw)
        m, P = res.mean, res.precision
    mean = m.clone().requires_grad_(True)
    cov = torch.linalg.inv(P).clone().requires_grad_(True)
    elbo = gaussian_elbo(X, y, mean, cov, **kw)
    gm, gc = torch.autograd.grad(elbo, (mean, cov))
    return dict(elbo=float(elbo.detach()), grad_norm=float(torch.cat([gm, gc.reshape(-1)]).norm()), mean=m.tolist())


def score(elbo: np.ndarray, best: float, budget: int) -> int:
    bad = np.nonzero(~(best - elbo <= EPS))[0]
    if len(bad) == 0:
        return 0
    return int(bad[-1] + 1) if bad[-1] + 1 < len(elbo) else 2 * budget


def run(seeds: list[int], old: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    kept = {(r["model"], r["seed"], r["method"], r["value"]): r for r in (old or [])}
    runs, optima = [], {}
    for model in ("conjugate", "logistic"):
        for seed in seeds:
            X, y = make_data(model, seed)
            opt = optimum(model, X, y)
            optima[f"{model}-{seed}"] = opt
            for value in GRID:
                for method in ("ngvi", "adam"):
                    if (model, seed, method, value) in kept:
                        runs.append(kept[model, seed, method, value])
                        continue
                    t0 = time.process_time()
                    try:
                        if method == "ngvi":
                            res = natural_gradient_vi(X, y, rho=value, n_steps=BUDGET[method], **kwargs(model))
                        else:
                            res = gradient_vi(X, y, lr=value, n_steps=BUDGET[method], **kwargs(model))
                        path = res.elbo.numpy()
                        dist = float((res.mean - torch.tensor(opt["mean"], dtype=D)).norm())
                    except ConvergenceError:
                        path, dist = np.array([np.nan]), math.nan
                    runs.append(dict(model=model, seed=seed, method=method, value=value,
                                     score=score(path, opt["elbo"], BUDGET[method]), cpu_s=time.process_time() - t0,
                                     final_gap=float(opt["elbo"] - path[-1]), mean_distance=dist,
                                     first_gap=float(opt["elbo"] - path[1]) if len(path) > 1 else math.nan))
            print(f"{model} seed {seed}: done", flush=True)
    return dict(runs=runs, optima=optima)


def choose(res: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for model in ("conjugate", "logistic"):
        for method in ("ngvi", "adam"):
            mean = {v: float(np.mean([r["score"] for r in res["runs"] if r["model"] == model
                                      and r["method"] == method and r["value"] == v])) for v in GRID}
            best = min(v for v in GRID if mean[v] <= min(mean.values()))
            scores = [r["score"] for r in res["runs"] if r["model"] == model and r["method"] == method
                      and r["value"] == best]
            chosen[f"{model}-{method}"] = dict(value=best, mean_score=mean[best], scores=scores,
                                               mean_by_value=[mean[v] for v in GRID],
                                               inside=bool(GRID[0] < best < GRID[-1]))
    return chosen


def report(res: dict[str, Any]) -> str:
    cfg = res["config"]
    lines = [
        "# Chapter 4: natural-gradient VI against Adam on the ELBO",
        "",
        f"`benchmarks/ch4_ngvi.py`: seeds {cfg['seeds']}; grid {cfg['grid']} for both NGVI's rho and Adam's learning "
        f"rate; score = first step from which the ELBO is within {cfg['eps']:g} nats of the optimum to the end of the "
        f"budget (NGVI {cfg['budget']['ngvi']}, Adam {cfg['budget']['adam']} steps; not reached: twice the budget). "
        f"{cfg['platform']}; CPU time {res['cpu_s']:.0f} s.",
        "",
        "| model | method | chosen value | steps to 1e-6 nats (per seed) | mean |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, c in res["chosen"].items():
        model, method = key.split("-")
        lines.append(f"| {model} | {method} | {c['value']:g} | {', '.join(map(str, c['scores']))} | "
                     f"{c['mean_score']:.1f} |")
    lines += ["", "Optima: ELBO and the norm of its autodiff gradient in (m, Sigma):", ""]
    for key, o in res["optima"].items():
        lines.append(f"- {key}: ELBO {o['elbo']:.6f}, gradient norm {o['grad_norm']:.1e}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "ch4_ngvi.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch4_ngvi_report.md")
    parser.add_argument("--merge", action="store_true", help="keep the runs of an earlier JSON, add the missing ones")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    old = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    res = run(args.seeds, old["runs"] if old else None)
    res["chosen"] = choose(res, args.seeds)
    res["cpu_s"] = time.process_time() - t0 + (old["cpu_s"] if old else 0.0)
    res["config"] = dict(seeds=args.seeds, grid=GRID, eps=EPS, budget=BUDGET, noise=NOISE,
                         platform=platform.platform(terse=True), torch=torch.__version__)
    args.out.write_text(json.dumps(res, indent=0))
    args.report.write_text(report(res))
    print(report(res))
    for key, c in res["chosen"].items():
        assert c["inside"], f"{key}: the chosen value {c['value']} is not strictly inside the grid"


if __name__ == "__main__":
    main()
