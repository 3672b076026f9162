"""Chapter 4: vanilla policy gradient, natural policy gradient and TRPO on random tabular MDPs.

Run once; the chapter reads the JSON this writes (``benchmarks/ch4_policy_gradient.json``) and the
script also writes a report (``benchmarks/ch4_policy_gradient_report.md``)::

    .venv/bin/python benchmarks/ch4_policy_gradient.py     # 5 MDPs, about 4 minutes of CPU on one thread

Setting: ``fisherbook.optim.policy_gradient.random_mdp(8, 3, gamma=0.95)`` with seeds 0-4 (flat-Dirichlet
transitions, uniform(0, 1) rewards, uniform start), the tabular softmax policy, exact gradients and
Fisher (no sampling). The optimum :math:`J^*` is computed by policy iteration. Starts: the logits
:math:`\\theta_0 = c\\, e_{a_-(s)}` that put the weight :math:`c \\in \\{0, 3, 6, 9, 12\\}` on the worst action
:math:`a_-(s) = \\arg\\min_a Q^*(s, a)` of each state (``c = 0`` is the uniform policy; ``c = 12`` is
nearly deterministic and wrong everywhere). A run's score is the first iteration from which
:math:`J^* - J(\\theta_t) \\le 10^{-3}` holds to the end of the budget of 2000 iterations (not reached:
4000). Each method has one step size for all 25 problems (5 MDPs x 5 starts), chosen on its grid
(vanilla PG: :math:`\\eta \\in 10^{0}, 10^{0.5}, \\dots, 10^{6}`; NPG: :math:`\\eta \\in 10^{-2}, \\dots,
10^{3}`; TRPO: the KL budget :math:`\\delta \\in 10^{-3}, \\dots, 10^{3}`, half decades; TRPO's grid
first ended at 10, which it chose, and was extended, ``--merge`` keeping the earlier runs) to minimise the
geometric mean of the scores; among equal scores the smallest step is taken. The chosen value must
lie strictly inside its grid (asserted). Budget: (13 + 11 + 13) step sizes x 25 problems = 925 runs of
at most 2000 iterations.
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

from fisherbook.optim.policy_gradient import optimal_values, policy_optimization_path, random_mdp

HERE = Path(__file__).resolve().parent
N_STATES, N_ACTIONS, GAMMA, EPS, BUDGET = 8, 3, 0.95, 1e-3, 2000
UNREACHED = 2 * BUDGET
STARTS = [0.0, 3.0, 6.0, 9.0, 12.0]
GRIDS = {
    "pg": [float(10**k) for k in np.arange(0.0, 6.01, 0.5)],
    "npg": [float(10**k) for k in np.arange(-2.0, 3.01, 0.5)],
    "trpo": [float(10**k) for k in np.arange(-3.0, 3.01, 0.5)],
}
TRACE_AT = sorted({int(v) for v in np.unique(np.geomspace(1, BUDGET + 1, 80).astype(int) - 1)})


def problem(seed: int, c: float) -> tuple[Any, torch.Tensor, float]:
    mdp = random_mdp(N_STATES, N_ACTIONS, gamma=GAMMA, generator=torch.Generator().manual_seed(seed))
    v_star, _ = optimal_values(mdp)
    q_star = mdp.rewards + mdp.gamma * mdp.transitions @ v_star
    theta0 = c * torch.nn.functional.one_hot(q_star.argmin(1), N_ACTIONS).to(torch.float64)
    return mdp, theta0, float(mdp.start @ v_star)


def score(gaps: np.ndarray) -> int:
    bad = np.nonzero(~(gaps <= EPS))[0]  # NaN counts as not reached
    if len(bad) == 0:
        return 0
    return int(bad[-1] + 1) if bad[-1] + 1 < len(gaps) else UNREACHED


def path_gaps(mdp: Any, theta0: torch.Tensor, method: str, step: float, j_star: float) -> np.ndarray:
    """J* - J along the run; NPG and TRPO improve J at every step, so they stop once within EPS (the
    rest of the budget is filled with the last gap); PG, not monotone for large steps, runs the budget."""
    if method == "pg":
        J, _ = policy_optimization_path(mdp, theta0, method=method, step_size=step, n_iter=BUDGET)
        return j_star - J.numpy()
    parts, theta, done = [np.array([j_star - float(policy_optimization_path(mdp, theta0, method=method,
                                                                         step_size=step, n_iter=1)[0][0])])], theta0, 0
    while done < BUDGET and parts[-1][-1] > EPS:
        J, theta = policy_optimization_path(mdp, theta, method=method, step_size=step, n_iter=min(25, BUDGET - done))
        parts.append(j_star - J.numpy()[1:])
        done += len(J) - 1
    gaps = np.concatenate(parts)
    assert np.all(np.diff(gaps) <= 1e-12), f"{method} did not improve monotonically"
    return np.concatenate([gaps, np.full(BUDGET + 1 - len(gaps), gaps[-1])])


def run(seeds: list[int], old: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    kept = {(r["method"], r["step"], r["seed"], r["c"]): r for r in (old or [])}
    runs = []
    for seed in seeds:
        for c in STARTS:
            mdp, theta0, j_star = problem(seed, c)
            for method, grid in GRIDS.items():
                for step in grid:
                    if (method, step, seed, c) in kept:
                        runs.append(kept[method, step, seed, c])
                        continue
                    t0 = time.process_time()
                    gaps = path_gaps(mdp, theta0, method, step, j_star)
                    runs.append(dict(method=method, step=step, seed=seed, c=c, score=score(gaps),
                                     cpu_s=time.process_time() - t0,
                                     trace=[float(max(gaps[i], 0.0)) for i in TRACE_AT] if seed == seeds[0] else None))
            print(f"seed {seed} start {c}: done", flush=True)
    return dict(runs=runs)


def choose(runs: list[dict[str, Any]]) -> dict[str, Any]:
    chosen = {}
    for method, grid in GRIDS.items():
        geo = {}
        for step in grid:
            scores = [max(r["score"], 1) for r in runs if r["method"] == method and r["step"] == step]
            geo[step] = float(math.exp(np.mean(np.log(scores))))
        best_value = min(geo.values())
        best = min(s for s in grid if geo[s] <= best_value * (1 + 1e-12))
        chosen[method] = dict(step=best, geo_mean=geo[best], geo_by_step=[geo[s] for s in grid],
                              inside=bool(grid[0] < best < grid[-1]))
    return chosen


def report(res: dict[str, Any]) -> str:
    cfg, chosen = res["config"], res["chosen"]
    lines = [
        "# Chapter 4: vanilla PG, natural PG and TRPO on random tabular MDPs",
        "",
        f"`benchmarks/ch4_policy_gradient.py`: random MDPs with {cfg['n_states']} states, {cfg['n_actions']} actions, "
        f"gamma = {cfg['gamma']}, seeds {cfg['seeds']}; starts c = {cfg['starts']} on the worst action; score = first "
        f"iteration from which J* - J <= {cfg['eps']} to the end of {cfg['budget']} iterations (not reached: "
        f"{2 * cfg['budget']}); one step size per method, chosen to minimise the geometric mean of the scores over "
        f"the {len(cfg['seeds']) * len(cfg['starts'])} problems (ties: the smallest step), strictly inside its grid. "
        f"{cfg['platform']}; CPU time {res['cpu_s']:.0f} s.",
        "",
        "| method | grid | chosen step | geometric-mean iterations | worst case |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, grid in GRIDS.items():
        worst = max(r["score"] for r in res["runs"] if r["method"] == method and r["step"] == chosen[method]["step"])
        lines.append(f"| {method} | {grid[0]:g} .. {grid[-1]:g} ({len(grid)} values) | {chosen[method]['step']:g} | "
                     f"{chosen[method]['geo_mean']:.1f} | {worst} |")
    lines += ["", "Iterations by start (geometric mean over the MDPs, at the chosen step):", "",
              "| method | " + " | ".join(f"c = {c:g}" for c in cfg["starts"]) + " |",
              "| --- |" + " --- |" * len(cfg["starts"])]
    for method in GRIDS:
        cells = []
        for c in cfg["starts"]:
            s = [max(r["score"], 1) for r in res["runs"]
                 if r["method"] == method and r["step"] == chosen[method]["step"] and r["c"] == c]
            cells.append(f"{math.exp(np.mean(np.log(s))):.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=HERE / "ch4_policy_gradient.json")
    parser.add_argument("--report", type=Path, default=HERE / "ch4_policy_gradient_report.md")
    parser.add_argument("--merge", action="store_true", help="keep the runs of an earlier JSON, add the missing ones")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    old = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    res = run(args.seeds, old["runs"] if old else None)
    res["chosen"] = choose(res["runs"])
    res["cpu_s"] = time.process_time() - t0 + (old["cpu_s"] if old else 0.0)
    res["config"] = dict(n_states=N_STATES, n_actions=N_ACTIONS, gamma=GAMMA, eps=EPS, budget=BUDGET, starts=STARTS,
                         seeds=args.seeds, grids=GRIDS, trace_at=TRACE_AT, platform=platform.platform(terse=True),
                         torch=torch.__version__)
    args.out.write_text(json.dumps(res, indent=0))
    args.report.write_text(report(res))
    print(report(res))
    for method, c in res["chosen"].items():
        assert c["inside"], f"{method}: the chosen step {c['step']} is not strictly inside its grid"


if __name__ == "__main__":
    main()
