"""Speed of fisherbook.curvature against a naive loop, torch.func and the peer libraries.

Task (issue 5): scikit-learn ``load_digits`` (N = 1797, standardised), MLP 64-128-64-10 tanh
(P = 17,226), softmax cross-entropy, 1 thread, float32 and float64; the dense Fisher on 64-32-10
(P = 2,410). Quantities: empirical-Fisher diagonal, exact (true) Fisher diagonal, KFAC factors
(exact and empirical), dense exact Fisher, Fisher-vector product (exact Fisher).

Baselines, run side by side in the same process: a naive per-example (and per-class) loop with
``torch.autograd.grad``; ``torch.func`` (``vmap`` of ``grad``/``jacrev``, ``jvp``/``vjp``); BackPACK,
curvlinops and nngeometry when importable (optional extra ``bench``; install them with
``pip install --no-deps`` so that they do not pull torchvision or a CUDA torch).

Every result is compared with the float64 naive loop (the reference): float64 results must agree
to 1e-10 (absolute, on quantities of order 1e-3 to 1), float32 ones are reported as relative error.

Run: ``.venv/bin/python benchmarks/curvature.py [--quick] [--out benchmarks/curvature_report.md]``.
Least CPU time of several runs; the naive loop runs once per dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap

import fisherbook as fb

warnings.filterwarnings("ignore")
torch.set_num_threads(1)  # CPU time is then the cost of one core, robust to other processes

QUANTITIES = {
    "emp_diag": "empirical-Fisher diagonal",
    "true_diag": "exact-Fisher diagonal",
    "kfac_true": "KFAC factors, exact",
    "kfac_emp": "KFAC factors, empirical",
    "dense_true": "dense exact Fisher (64-32-10)",
    "fvp_scratch": "Fisher-vector product, from scratch",
    "fvp_repeat": "Fisher-vector product, each further one",
}
METHODS = ("fisherbook", "naive loop", "torch.func", "BackPACK", "curvlinops", "nngeometry")
PEERS = ("BackPACK", "curvlinops", "nngeometry")


# -- data and models ---------------------------------------------------------------------------------

def digits(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    sd = x.std(0)
    x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    return torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=torch.long)


def make_model(widths: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(dtype)


def flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


# -- fisherbook ------------------------------------------------------------------------------------

def fb_methods(model, x, y, v, small):
    C = fb.curvature
    out = {
        "emp_diag": lambda: C.fisher(model, x, kind="empirical", targets=y, representation="diagonal").values,
        "true_diag": lambda: C.fisher(model, x, representation="diagonal").values,
        "kfac_true": lambda: C.fisher(model, x, representation="kfac").factors,
        "kfac_emp": lambda: C.fisher(model, x, kind="empirical", targets=y, representation="kfac").factors,
        "dense_true": lambda: C.fisher(small, x, representation="dense").matrix,
        "fvp_scratch": lambda: C.fisher(model, x, representation="matrix_free").mv(v),
    }
    fvp_op = C.fisher(model, x, representation="matrix_free")
    out["fvp_repeat"] = lambda: fvp_op.mv(v)
    return out


# -- naive per-example loop ----------------------------------------------------------------------------

def _naive_grads(model, x, y, kind):
    """Yield (weight, per-example-per-class gradient) pairs by a Python loop."""
    params = list(model.parameters())
    for n in range(x.shape[0]):
        logp = torch.log_softmax(model(x[n:n + 1])[0], -1)
        if kind == "empirical":
            yield 1.0, flat(torch.autograd.grad(logp[y[n]], params))
        else:
            p = logp.detach().exp()
            for c in range(logp.shape[0]):
                yield p[c], flat(torch.autograd.grad(logp[c], params, retain_graph=c < logp.shape[0] - 1))


def naive_diag(model, x, y, kind):
    acc = 0
    for w, g in _naive_grads(model, x, y, kind):
        acc = acc + w * g.square()
    return acc / x.shape[0]


def naive_fvp(model, x, v):
    acc = 0
    for w, g in _naive_grads(model, x, None, "true"):
        acc = acc + (w * (g @ v)) * g
    return acc / x.shape[0]


def naive_dense(model, x):
    p = sum(q.numel() for q in model.parameters())
    out = torch.zeros(p, p, dtype=x.dtype)
    rows = []
    for w, g in _naive_grads(model, x, None, "true"):
        rows.append(w.sqrt() * g)
        if len(rows) == 1000:
            m = torch.stack(rows)
            out += m.T @ m
            rows = []
    if rows:
        m = torch.stack(rows)
        out += m.T @ m
    return out / x.shape[0]


def naive_kfac(model, x, y, kind):
    lins = linears(model)
    rec = {}
    hooks = [m.register_forward_hook(lambda m, a, o: rec.__setitem__(m, (a[0], o))) for m in lins]
    a_acc = [0] * len(lins)
    g_acc = [0] * len(lins)
    try:
        for n in range(x.shape[0]):
            logp = torch.log_softmax(model(x[n:n + 1])[0], -1)
            zs = [rec[m][1] for m in lins]
            for i, m in enumerate(lins):
                a = torch.cat([rec[m][0][0].detach(), torch.ones(1, dtype=x.dtype)])
                a_acc[i] = a_acc[i] + torch.outer(a, a)
            if kind == "empirical":
                cs, ws = [int(y[n])], {int(y[n]): 1.0}
            else:
                cs, ws = range(logp.shape[0]), logp.detach().exp()
            for c in cs:
                bs = torch.autograd.grad(logp[c], zs, retain_graph=True)
                for i, b in enumerate(bs):
                    g_acc[i] = g_acc[i] + ws[c] * torch.outer(b[0], b[0])
    finally:
        for h in hooks:
            h.remove()
    n = x.shape[0]
    return [(a / n, g / n) for a, g in zip(a_acc, g_acc)]


def naive_methods(model, x, y, v, small):
    return {
        "emp_diag": lambda: naive_diag(model, x, y, "empirical"),
        "true_diag": lambda: naive_diag(model, x, y, "true"),
        "kfac_true": lambda: naive_kfac(model, x, y, "true"),
        "kfac_emp": lambda: naive_kfac(model, x, y, "empirical"),
        "dense_true": lambda: naive_dense(small, x),
        "fvp_scratch": lambda: naive_fvp(model, x, v),
    }


# -- torch.func --------------------------------------------------------------------------------------

def func_methods(model, x, y, v, small):
    def setup(m):
        params = {k: p.detach() for k, p in m.named_parameters()}
        names = list(params)

        def single(p, xi):
            return functional_call(m, p, (xi.unsqueeze(0),))[0]
        return params, names, single

    def emp_diag():
        params, names, single = setup(model)

        def logp(p, xi, yi):
            return torch.log_softmax(single(p, xi), -1).gather(0, yi.unsqueeze(0))[0]
        acc = 0
        for s in range(0, x.shape[0], 512):
            g = vmap(grad(logp), in_dims=(None, 0, 0))(params, x[s:s + 512], y[s:s + 512])
            acc = acc + flat(g[k].square().sum(0) for k in names)
        return acc / x.shape[0]

    def pseudo_grads(m, chunk=128):
        params, names, single = setup(m)
        for s in range(0, x.shape[0], chunk):
            xs = x[s:s + chunk]
            j = vmap(jacrev(single), in_dims=(None, 0))(params, xs)
            jf = torch.cat([j[k].reshape(xs.shape[0], 10, -1) for k in names], -1)  # (n, K, P)
            p = torch.softmax(vmap(single, in_dims=(None, 0))(params, xs), -1)
            sq = torch.diag_embed(p.sqrt()) - p.unsqueeze(-1) * p.sqrt().unsqueeze(-2)
            yield torch.einsum("nkc,nkp->ncp", sq, jf)

    def true_diag():
        return sum(g.square().sum((0, 1)) for g in pseudo_grads(model)) / x.shape[0]

    def dense_true():
        out = 0
        for g in pseudo_grads(small, 512):
            g = g.reshape(-1, g.shape[-1])
            out = out + g.T @ g
        return out / x.shape[0]

    def fvp():
        params, names, _ = setup(model)

        def f(p):
            return functional_call(model, p, (x,))
        sizes = [params[k].shape for k in names]
        chunks = torch.split(v, [s.numel() for s in sizes])
        tangent = {k: c.reshape(s) for k, c, s in zip(names, chunks, sizes)}
        out, jv = jvp(f, (params,), (tangent,))
        p = torch.softmax(out, -1)
        w = (p * jv - p * (p * jv).sum(-1, keepdim=True)) / x.shape[0]
        _, back = vjp(f, params)
        g = back(w)[0]
        return flat(g[k] for k in names)

    return {"emp_diag": emp_diag, "true_diag": true_diag, "dense_true": dense_true, "fvp_scratch": fvp}


# -- peers ------------------------------------------------------------------------------------------------

def backpack_methods(model, x, y, v, small):
    from backpack import backpack, extend
    from backpack.extensions import KFLR, DiagGGNExact, SqrtGGNExact, SumGradSquared
    from backpack.hessianfree.ggnvp import ggn_vector_product_from_plist

    bmodel = extend(model)
    bsmall = extend(small)
    lsum = extend(nn.CrossEntropyLoss(reduction="sum"))
    lmean = extend(nn.CrossEntropyLoss(reduction="mean"))
    params = list(bmodel.parameters())

    def run(m, loss_fn, ext, attr):
        m.zero_grad()
        loss = loss_fn(m(x), y)
        with backpack(ext):
            loss.backward()
        return [getattr(p, attr) for p in m.parameters()]

    def emp_diag():
        return flat(run(bmodel, lsum, SumGradSquared(), "sum_grad_squared")) / x.shape[0]

    def true_diag():
        return flat(run(bmodel, lmean, DiagGGNExact(), "diag_ggn_exact"))

    def kfac_true():
        facs = run(bmodel, lmean, KFLR(), "kflr")
        out = []
        for i in range(0, len(facs), 2):  # weight: [G, A]; bias: [G]
            g, a = facs[i]
            out.append((a, g))
        return out

    def dense_true():
        sq = run(bsmall, lmean, SqrtGGNExact(), "sqrt_ggn_exact")  # (C, N, *shape)
        g = torch.cat([s.reshape(s.shape[0] * s.shape[1], -1) for s in sq], 1)
        return g.T @ g

    def fvp_parts():
        out = bmodel(x)
        loss = lmean(out, y)
        return loss, out

    def fvp_scratch():
        loss, out = fvp_parts()
        vs = list(torch.split(v, [p.numel() for p in params]))
        vs = [c.reshape(p.shape) for c, p in zip(vs, params)]
        return flat(ggn_vector_product_from_plist(loss, out, params, vs))

    state = {}

    def fvp_repeat():
        if "graph" not in state:
            state["graph"] = fvp_parts()
        loss, out = state["graph"]
        vs = [c.reshape(p.shape) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]
        return flat(ggn_vector_product_from_plist(loss, out, params, vs))

    return {"emp_diag": emp_diag, "true_diag": true_diag, "kfac_true": kfac_true, "dense_true": dense_true,
            "fvp_scratch": fvp_scratch, "fvp_repeat": fvp_repeat}


def curvlinops_methods(model, x, y, v, small):
    from curvlinops import GGNLinearOperator, KFACLinearOperator

    loss = nn.CrossEntropyLoss(reduction="mean")
    params = list(model.parameters())
    data = [(x, y)]

    def kfac(kind):
        def run():
            op = KFACLinearOperator(model, loss, params, data, check_deterministic=False, fisher_type=kind,
                                    separate_weight_and_bias=False)
            op.compute_kronecker_factors()
            out = []
            for name in [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
                out.append((op._input_covariances[name], op._gradient_covariances[name]))
            return out
        return run

    def dense_true():
        op = GGNLinearOperator(small, loss, list(small.parameters()), data, check_deterministic=False)
        n = sum(p.numel() for p in small.parameters())
        return op @ torch.eye(n, dtype=x.dtype)

    op = GGNLinearOperator(model, loss, params, data, check_deterministic=False)

    def fvp_scratch():
        return GGNLinearOperator(model, loss, params, data, check_deterministic=False) @ v

    return {"kfac_true": kfac("type-2"), "kfac_emp": kfac("empirical"), "dense_true": dense_true,
            "fvp_scratch": fvp_scratch, "fvp_repeat": lambda: op @ v}


def nngeometry_methods(model, x, y, v, small):
    from nngeometry.metrics import FIM
    from nngeometry.object import PMatDense, PMatDiag, PMatImplicit, PMatKFAC, PVector
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=x.shape[0])

    def emp_function(xb, yb):  # per-example log-likelihood: its "regression" Fisher is the empirical one
        return torch.log_softmax(model(xb), -1).gather(1, yb.unsqueeze(1))

    def diag(kind):
        def run():
            if kind == "true":
                m = FIM(model, loader, PMatDiag, variant="classif_logits")
            else:
                m = FIM(model, loader, PMatDiag, variant="regression", function=emp_function)
            return m.get_diag()
        return run

    def kfac(kind):
        def run():
            if kind == "true":
                m = FIM(model, loader, PMatKFAC, variant="classif_logits")
            else:
                m = FIM(model, loader, PMatKFAC, variant="regression", function=emp_function)
            return m
        return run

    def dense_true():
        sl = DataLoader(TensorDataset(x, y), batch_size=x.shape[0])
        return FIM(small, sl, PMatDense, variant="classif_logits").to_torch()

    def fvp_scratch():
        m = FIM(model, loader, PMatImplicit, variant="classif_logits")
        return m.mv(PVector(m.generator.layer_collection, vector_repr=v)).to_torch()

    op = FIM(model, loader, PMatImplicit, variant="classif_logits")

    def fvp_repeat():
        return op.mv(PVector(op.generator.layer_collection, vector_repr=v)).to_torch()

    return {"emp_diag": diag("empirical"), "true_diag": diag("true"), "kfac_true": kfac("true"),
            "kfac_emp": kfac("empirical"), "dense_true": dense_true, "fvp_scratch": fvp_scratch,
            "fvp_repeat": fvp_repeat}


# -- harness ---------------------------------------------------------------------------------------------------

def timed(fn: Callable, repeat: int) -> tuple[float, object]:
    """Least CPU time of ``repeat`` runs after a warm-up (3 runs when the warm-up took over a second).

    CPU time of this process (``time.process_time``) with one intra-op thread, and the minimum
    over runs: what other processes on a shared machine do inflates wall time, not this.
    """
    start = time.process_time()
    result = fn()  # warm-up (and the result to check)
    if time.process_time() - start > 1.0:
        repeat = min(repeat, 3)
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times), result


def _split(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kronecker factors are defined up to a scalar (A, G) ~ (sA, G/s): fix tr(G) = dim G."""
    s = g.trace() / g.shape[0]
    return a * s, g / s


def canonical(q: str, method: str, result, model) -> torch.Tensor:
    """Bring every result to one flat comparable tensor (KFAC: A with the bias column, G, scale fixed)."""
    if q.startswith("kfac"):
        if method == "nngeometry":  # PMatKFAC: dict layer -> (a, g), the bias as last column of a
            result = list(result.data.values())
        return torch.cat([t.reshape(-1) for a, g in result for t in _split(a, g)])
    if isinstance(result, torch.Tensor):
        return result.reshape(-1)
    raise TypeError(type(result))


def kfac_weight_part(result: list) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for a, g in result for t in _split(a[:-1, :-1], g)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip the naive loop")
    ap.add_argument("--out", default=None, help="write the markdown report here")
    args = ap.parse_args()
    repeat = 3 if args.quick else 7

    available = {}
    for peer, mod in (("BackPACK", "backpack"), ("curvlinops", "curvlinops"), ("nngeometry", "nngeometry")):
        try:
            m = __import__(mod)
            from importlib.metadata import version
            dist = {"BackPACK": "backpack-for-pytorch", "curvlinops": "curvlinops-for-pytorch"}.get(peer, mod)
            available[peer] = version(dist)
            del m
        except Exception as exc:  # noqa: BLE001 - report any import failure
            available[peer] = f"not importable ({type(exc).__name__}: {exc})"

    rows = {}
    notes: list[str] = []
    for dtype in (torch.float32, torch.float64):
        x, y = digits(dtype)
        model = make_model((64, 128, 64, 10), dtype)
        small = make_model((64, 32, 10), dtype)
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(sum(p.numel() for p in model.parameters()), generator=gen, dtype=torch.float64).to(dtype)
        builders = {"fisherbook": fb_methods(model, x, y, v, small), "torch.func": func_methods(model, x, y, v, small)}
        if not args.quick:
            builders["naive loop"] = naive_methods(model, x, y, v, small)
        for peer, builder in (("BackPACK", backpack_methods), ("curvlinops", curvlinops_methods),
                              ("nngeometry", nngeometry_methods)):
            if available[peer][0].isdigit():
                try:
                    # fresh copies: BackPACK's extend() and hooks must not touch the other methods' models
                    m2 = make_model((64, 128, 64, 10), dtype)
                    s2 = make_model((64, 32, 10), dtype)
                    with contextlib.redirect_stderr(io.StringIO()):
                        builders[peer] = builder(m2, x, y, v, s2)
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{peer}, {dtype}: setup failed: {exc!r}")
        for q in QUANTITIES:
            for method, fns in builders.items():
                if q not in fns:
                    continue
                try:
                    with contextlib.redirect_stderr(io.StringIO()):
                        t, res = _once(fns[q]) if method == "naive loop" else timed(fns[q], repeat)
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{method}, {QUANTITIES[q]}, {str(dtype).replace('torch.', '')}: "
                                 f"failed with {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                rows[(q, dtype, method)] = (t, res)
                print(f"{QUANTITIES[q]:40s} {str(dtype):14s} {method:11s} {1e3 * t:10.2f} ms", flush=True)
    report(rows, available, args.out, args.quick, notes)


def _once(fn):
    start = time.perf_counter()
    res = fn()
    return time.perf_counter() - start, res


def report(rows, available, out, quick, notes) -> None:
    # reference: naive float64 (fisherbook float64 when --quick)
    lines = []
    ref_method = "fisherbook" if quick else "naive loop"
    for dtype in (torch.float32, torch.float64):
        lines.append(f"\n### {str(dtype).replace('torch.', '')}\n")
        lines.append("| quantity | " + " | ".join(METHODS) + " | fisherbook / fastest other | fastest peer lib |")
        lines.append("|---" * (len(METHODS) + 3) + "|")
        for q, label in QUANTITIES.items():
            cells = []
            ref = rows.get((q if q != "fvp_repeat" else "fvp_scratch", torch.float64, ref_method))
            for method in METHODS:
                r = rows.get((q, dtype, method))
                if r is None:
                    cells.append("—")
                    continue
                t, res = r
                err = _error(q, method, res, ref, dtype)
                cells.append(f"{1e3 * t:.1f} ms ({err})")
            fbt = rows.get((q, dtype, "fisherbook"), (None,))[0]
            others = [rows[(q, dtype, m)][0] for m in METHODS[1:] if (q, dtype, m) in rows]
            peers = [(rows[(q, dtype, m)][0], m) for m in PEERS if (q, dtype, m) in rows]
            ratio = f"{fbt / min(others):.2f}×" if fbt and others else "—"
            best_peer = f"{min(peers)[1]} {1e3 * min(peers)[0]:.1f} ms" if peers else "—"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} | {best_peer} |")
    if notes:
        lines.append("\nFailures (shown as — above):\n")
        lines += [f"- {n}" for n in notes]
    text = "\n".join(lines)
    print(text)
    if out:
        env = (f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {_cpu()}, "
               f"python {platform.python_version()}; peers: " +
               ", ".join(f"{k} {v}" for k, v in available.items()))
        with open(out, "w") as fh:
            fh.write(REPORT_HEAD.format(env=env) + text + "\n")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _error(q, method, res, ref, dtype) -> str:
    if ref is None:
        return "?"
    ref_res = ref[1]
    if q.startswith("kfac"):
        if method == "BackPACK":  # KFLR's A factor has no bias row/column
            a = torch.cat([t.reshape(-1) for fa, fg in res for t in _split(fa, fg)])
            b = kfac_weight_part(ref_res)
        else:
            a = canonical(q, method, res, None)
            b = canonical(q, "ref", ref_res, None)
    else:
        a, b = canonical(q, method, res, None), canonical(q, "ref", ref_res, None)
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)}≠{tuple(b.shape)}"
    d = (a.double() - b.double()).abs().max().item()
    if dtype == torch.float64:
        return f"Δ {d:.0e}"
    return f"rel {d / b.abs().max().item():.0e}"


REPORT_HEAD = """# Curvature benchmark (`benchmarks/curvature.py`)

Environment: {env}.

Cells: the least CPU time of the process over several runs, one thread (the naive loop: a single
run; CPU time, unlike wall time, does not grow with the load of a shared machine), then the
deviation from the float64 naive per-example loop (float64: max absolute difference Δ; float32: max
difference relative to the largest entry). "fisherbook / fastest other" divides fisherbook's time by the fastest of all the
other columns. "—": the method does not offer the quantity (BackPACK has no empirical KFAC;
torch.func no KFAC; curvlinops no exact diagonal, only Hutchinson estimates).
KFAC factors are compared after fixing the free scalar of a Kronecker product, (A, G) ~ (sA, G/s),
by tr G = dim G (nngeometry splits it differently); BackPACK's KFLR keeps the bias out of A, so its
weight part is compared. "From scratch" FVP = build the operator and apply it once; "each further
one" = one more product on the same operator (fisherbook then uses cached layer statistics, BackPACK
its retained graph, curvlinops recomputes). fisherbook is timed end to end through
`fb.curvature.fisher(...)` (argument checks included).

"""


if __name__ == "__main__":
    main()
