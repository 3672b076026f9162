r"""``fisher``: the Fisher information matrix of a torch model in a chosen representation."""

from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from .likelihoods import KINDS, LIKELIHOODS, Likelihood, get_likelihood
from .per_example import (ParamLayout, UnstructuredError, _chunks, generic_pseudo_grads, linear_layout,
                          linear_stats, model_outputs, prepare_inputs, structured_pseudo_grads)
from .per_example import _as_2d as _as_2d_out
from .representations import KFAC, BlockDiagonal, CurvatureMatrix, Dense, Diagonal, MatrixFree, _kfac_index

__all__ = ["fisher", "REPRESENTATIONS"]

REPRESENTATIONS = ("dense", "diagonal", "block_diagonal", "kfac", "matrix_free")


def _check_args(model, likelihood, kind, representation, n_samples, generator):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(likelihood, (str, Likelihood)):
        raise TypeError(f"likelihood must be one of {LIKELIHOODS}, got {type(likelihood).__name__}")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(representation, str) or representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int):
        raise TypeError(f"n_samples must be a positive int, got {type(n_samples).__name__}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


class _Engine:
    """Per-example factors of one (model, inputs, likelihood, kind) with both code paths."""

    def __init__(self, model: nn.Module, x: Tensor, layout: ParamLayout, factors_fn, layers, strict: bool,
                 true_vp=None):
        self.model, self.x, self.layout = model, x, layout
        self.n = x.shape[0]
        self._factors_fn = factors_fn
        self.factors: Tensor | None = None
        self.stats = None
        self.layers = layers
        self._strict = strict
        self._aug_index: list[Tensor] | None = None
        self._true_vp = true_vp

    def output_vp(self, f: Tensor, u: Tensor) -> Tensor:
        r""":math:`\Lambda_n u_n` in output space: closed form for the true Fisher, else :math:`S S^\top u`."""
        if self._true_vp is not None:
            return self._true_vp(f, u)
        s = self._fixed(f)
        return torch.einsum("nkc,nc->nk", s, torch.einsum("nkc,nk->nc", s, u))

    def _fixed(self, f: Tensor) -> Tensor:
        if self.factors is None:
            self.factors = self._factors_fn(f)
        return self.factors

    def structured(self) -> bool:
        """Compute the nn.Linear statistics once; False when the model needs the generic path."""
        if self.layers is not None and self.stats is None:
            try:
                self.stats = linear_stats(self.model, self.x, self.layers, self._fixed)
            except UnstructuredError:
                if self._strict:
                    raise
                self.layers = None
        return self.layers is not None

    def linear(self):
        self.structured()
        return self.stats

    def chunks(self):
        if self.structured():
            return structured_pseudo_grads(self.linear(), self.layout)
        factors = self._fixed(model_outputs(self.model, self.x))
        return generic_pseudo_grads(self.model, self.x, factors, self.layout)

    def _pair(self, i: int, j: int) -> Tensor:
        r"""Exact block between Linear layers i and j over the augmented weights (row-major).

        :math:`F_{(o,a),(p,b)} = \frac1N \sum_n \bar a^i_{n,a} \bar a^j_{n,b} \sum_c b^i_{nc,o} b^j_{nc,p}`:
        one GEMM of size (I_i I_j) x N x (O_i O_j), a factor C cheaper than forming the
        per-example pseudo-gradients.
        """
        st = self.stats
        ai, aj, bi, bj = st.a[i], st.a[j], st.b[i], st.b[j]
        ii, ij, oi, oj = ai.shape[1], aj.shape[1], bi.shape[2], bj.shape[2]
        out = torch.zeros(ii * ij, oi * oj, dtype=ai.dtype, device=ai.device)
        per = ii * ij + oi * oj * (1 + bi.shape[0])
        for sl in _chunks(self.n, per):
            xa = (ai[sl].unsqueeze(2) * aj[sl].unsqueeze(1)).reshape(-1, ii * ij)
            mb = torch.einsum("cno,cnp->nop", bi[:, sl], bj[:, sl]).reshape(-1, oi * oj)
            out.addmm_(xa.T, mb)
        out = out.reshape(ii, ij, oi, oj).permute(2, 0, 3, 1).reshape(oi * ii, oj * ij)
        return out / self.n

    def _use_pairs(self) -> bool:
        return self.structured() and self.stats.b[0].shape[0] > 1

    def dense(self) -> Tensor:
        p = self.layout.numel
        out = torch.zeros(p, p, dtype=self.layout.dtype, device=self.layout.device)
        if self._use_pairs():
            idx = [_kfac_index(layer, self.layout).to(self.layout.device) for layer in self.layers]
            for i in range(len(idx)):
                for j in range(i, len(idx)):
                    blk = self._pair(i, j)
                    out[idx[i].unsqueeze(1), idx[j].unsqueeze(0)] = blk
                    if j != i:
                        out[idx[j].unsqueeze(1), idx[i].unsqueeze(0)] = blk.T
            return out
        for g in self.chunks():
            g = g.reshape(-1, p)
            out.addmm_(g.T, g)
        return out / self.n

    def diag(self) -> Tensor:
        if self.structured():
            stats = self.linear()
            pieces: list[Tensor | None] = [None] * len(self.layout.names)
            for layer, a, b in zip(stats.layers, stats.a, stats.b):
                d = (b.square().sum(0)).T @ a.square() / self.n  # (O, I)
                if layer.bias_index is None:
                    pieces[layer.weight_index] = d.reshape(-1)
                else:
                    pieces[layer.weight_index] = d[:, :-1].reshape(-1)
                    pieces[layer.bias_index] = d[:, -1]
            return torch.cat(pieces)  # type: ignore[arg-type]
        out = torch.zeros(self.layout.numel, dtype=self.layout.dtype, device=self.layout.device)
        for g in self.chunks():
            out += g.square().sum((0, 1))
        return out / self.n

    def block_index(self) -> list[Tensor]:
        index = {id(p): i for i, p in enumerate(self.model.parameters())}
        groups: list[list[int]] = []
        seen: set[int] = set()
        for module in self.model.modules():
            ids = [index[id(p)] for p in module.parameters(recurse=False) if index[id(p)] not in seen]
            if ids:
                seen.update(ids)
                groups.append(sorted(ids))
        for i in range(len(index)):
            if i not in seen:
                groups.append([i])
        lay = self.layout
        return [torch.cat([torch.arange(lay.offsets[i], lay.offsets[i] + lay.shapes[i].numel()) for i in grp])
                for grp in groups]

    def blocks(self) -> tuple[list[Tensor], list[Tensor]]:
        if self._use_pairs():
            index = [_kfac_index(layer, self.layout) for layer in self.layers]
            return [self._pair(i, i) for i in range(len(index))], index
        index = self.block_index()
        dev = self.layout.device
        blocks = [torch.zeros(len(i), len(i), dtype=self.layout.dtype, device=dev) for i in index]
        idx_dev = [i.to(dev) for i in index]
        for g in self.chunks():
            g = g.reshape(-1, self.layout.numel)
            for blk, idx in zip(blocks, idx_dev):
                gb = g[:, idx]
                blk.addmm_(gb.T, gb)
        return [b / self.n for b in blocks], index

    def kfac(self) -> list[tuple[Tensor, Tensor]]:
        r"""(A, G) per layer. Conv2d (KFC, Grosse & Martens 2016): :math:`A` sums the patch outer
        products over the :math:`T` output positions, :math:`G` averages over them, so that
        :math:`A \otimes G` is exact for a single example and a single position."""
        stats = self.linear()
        out = []
        for a, b in zip(stats.a, stats.b):
            af = a.reshape(-1, a.shape[-1])
            bf = b.reshape(-1, b.shape[-1])
            positions = a.shape[1] if a.dim() == 3 else 1
            out.append((af.T @ af / self.n, bf.T @ bf / (self.n * positions)))
        return out

    def _structured_mv(self, v: Tensor) -> Tensor:
        r""":math:`Fv = \frac1N \sum_{nc} g_{nc} g_{nc}^\top v` from cached layer statistics (no new passes)."""
        st, n, k = self.stats, self.n, v.shape[1]
        vt = v.T  # (k, P)
        u = None
        for layer, idx, a, b in zip(st.layers, self._aug_index, st.a, st.b):
            vb = vt[:, idx].reshape(k, layer.out_features, layer.in_features)
            t = torch.einsum("ni,koi->kno", a, vb)  # (k, N, O): layer's contribution to J v
            contrib = torch.einsum("kno,cno->kcn", t, b)
            u = contrib if u is None else u + contrib  # (k, C, N) = g_nc^T v
        out = torch.empty_like(vt)
        for layer, idx, a, b in zip(st.layers, self._aug_index, st.a, st.b):
            w = torch.einsum("kcn,cno->kno", u, b)
            out[:, idx] = torch.einsum("kno,ni->koi", w, a).reshape(k, -1)
        return (out / n).T

    def matrix_free(self) -> MatrixFree:
        """Products by jvp then vjp; for nn.Linear stacks the second and later products (and any
        product with several vectors) switch to the cached layer statistics, which cost one forward
        and one batched backward pass once and then about two small GEMMs per layer per product."""
        model, x, layout = self.model, self.x, self.layout
        names = layout.names
        leaves = {k: v.detach().requires_grad_(True) for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        n = self.n

        def functional_mv(v: Tensor) -> Tensor:
            # one forward pass carrying tangents (forward-mode AD) that also records the reverse graph,
            # then one backward pass: J v, Lambda J v, J^T Lambda J v
            cols = []
            for j in range(v.shape[1]):
                tangent = layout.unflatten(v[:, j])
                with warnings.catch_warnings():  # torch's forward-AD decompositions still call torch.jit.script
                    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                    with torch.enable_grad(), fwAD.dual_level():
                        dual = {k: fwAD.make_dual(leaves[k], t) for k, t in zip(names, tangent)}
                        primal, jv = fwAD.unpack_dual(functional_call(model, (dual, buffers), (x,)))
                out = _as_2d_out(primal, n)
                jv = torch.zeros_like(out) if jv is None else jv.reshape(n, -1)
                w = self.output_vp(out.detach(), jv) / n
                grads = torch.autograd.grad(out, [leaves[k] for k in names], w, allow_unused=True)
                cols.append(torch.cat([torch.zeros_like(leaves[k]).reshape(-1) if g is None else g.reshape(-1)
                                       for k, g in zip(names, grads)]))
            return torch.stack(cols, dim=1)

        calls = [0]

        def mv(v: Tensor) -> Tensor:
            calls[0] += 1
            if self.layers is not None and (calls[0] > 1 or v.shape[1] > 1 or self.stats is not None):
                if self.structured():
                    if self._aug_index is None:
                        self._aug_index = [_kfac_index(layer, layout).to(layout.device) for layer in self.layers]
                    return self._structured_mv(v)
            return functional_mv(v)

        return MatrixFree(mv, self.dense, self.diag, layout)


def fisher(
    model: nn.Module,
    inputs: Tensor,
    likelihood: str | Likelihood = "categorical",
    kind: str = "true",
    targets: Tensor | None = None,
    representation: str = "dense",
    n_samples: int = 1,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
) -> CurvatureMatrix:
    r"""Fisher information matrix of a torch model, in one of five representations.

    With outputs :math:`f_n = f(x_n; \theta) \in \mathbb{R}^K` and likelihood :math:`p(y \mid f)`,

    .. math::

        F = \frac{1}{N} \sum_{n=1}^{N} \mathbb{E}_{y \sim p(y \mid f_n)}
            \left[\nabla_\theta \log p(y \mid f_n)\, \nabla_\theta \log p(y \mid f_n)^\top\right]
          = \frac{1}{N} \sum_{n=1}^{N} J_n^\top \Lambda_n J_n ,

    the *mean* over examples (multiply by :math:`N` for the Fisher of the whole data set).
    :math:`J_n` is the Jacobian of :math:`f_n` and :math:`\Lambda_n` the output-space Fisher
    (:math:`\operatorname{diag}(p) - p p^\top` for softmax, :math:`\sigma(1-\sigma)` for sigmoid,
    :math:`I/\sigma^2` for the Gaussian). For these canonical links the true Fisher equals the
    generalised Gauss–Newton matrix.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``inputs`` to outputs with the examples along dim 0 (trailing dimensions are
        flattened to :math:`K`); examples must be processed independently (use ``model.eval()``
        for dropout and batch norm). Any module works for ``"dense"``, ``"diagonal"``,
        ``"block_diagonal"`` and ``"matrix_free"``; ``"kfac"`` needs every parameter in an
        ``nn.Linear`` or ``nn.Conv2d`` (``groups=1``) layer. Linear stacks also take a fast
        structured path for the others.
    inputs : Tensor
        Examples along dim 0; floating-point inputs are moved to the model's dtype and device.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        Softmax cross-entropy over :math:`K` classes; independent sigmoid outputs;
        :math:`\mathcal N(f, \sigma^2 I)`.
    kind : {"true", "mc", "empirical"}
        ``"true"``: the exact expectation over the model's predictive (closed form, no sampling);
        ``"mc"``: ``n_samples`` targets sampled from the model per example;
        ``"empirical"``: the given ``targets``.
    targets : Tensor, optional
        Required for ``kind="empirical"`` (class indices for ``"categorical"``, 0/1 or real values
        shaped like the outputs otherwise); ignored by the other kinds.
    representation : {"dense", "diagonal", "block_diagonal", "kfac", "matrix_free"}
        How the matrix is stored; all share ``mv``, ``solve``, ``diag``, ``to_dense``, ``trace``.
        Blocks of ``"block_diagonal"`` are the parameters each module owns (weight and bias of a layer).
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    sigma : float
        Noise standard deviation of the ``"gaussian"`` likelihood.
    generator : torch.Generator, optional
        Random generator for ``kind="mc"``.

    Returns
    -------
    CurvatureMatrix
        :class:`Dense`, :class:`Diagonal`, :class:`BlockDiagonal`, :class:`KFAC` or :class:`MatrixFree`,
        in the model's dtype and on its device.

    Examples
    --------
    >>> import torch
    >>> import fisherbook as fb
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> X = torch.randn(20, 4, dtype=torch.float64)
    >>> F = fb.curvature.fisher(model, X, likelihood="categorical", kind="true")
    >>> F.shape
    (67, 67)
    >>> D = fb.curvature.fisher(model, X, representation="diagonal")
    >>> torch.allclose(D.diag(), F.diag())
    True
    >>> v = torch.randn(67, dtype=torch.float64)
    >>> torch.allclose(F.mv(F.solve(v, damping=1e-3)) + 1e-3 * F.solve(v, damping=1e-3), v)
    True
    """
    _check_args(model, likelihood, kind, representation, n_samples, generator)
    lik = get_likelihood(likelihood, sigma)
    layout = ParamLayout.from_model(model)
    x = prepare_inputs(inputs, layout)
    if kind == "empirical" and targets is None:
        raise ValueError("targets is required for kind='empirical' (one target per example)")

    def factors_fn(f: Tensor) -> Tensor:
        return lik.output_factors(f, kind, targets, n_samples, generator)

    layers = linear_layout(model, layout, "kfac" if representation == "kfac" else None,
                           allow_conv=representation == "kfac")
    engine = _Engine(model, x, layout, factors_fn, layers, strict=representation == "kfac",
                     true_vp=lik.fisher_vp if kind == "true" else None)
    if representation == "dense":
        return Dense(engine.dense(), layout)
    if representation == "diagonal":
        return Diagonal(engine.diag(), layout)
    if representation == "block_diagonal":
        blocks, index = engine.blocks()
        return BlockDiagonal(blocks, index, layout)
    if representation == "kfac":
        return KFAC(engine.kfac(), layers, layout)
    return engine.matrix_free()
