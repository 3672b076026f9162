r"""``fisher``: the Fisher information matrix of a torch model in a chosen representation."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import (
    ArgumentTypeError,
    FisherbookError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
    UnsupportedError,
)
from .batches import as_batches
from .checks import check_model
from .likelihoods import KINDS, LIKELIHOODS, Likelihood, get_likelihood
from .per_example import (
    LinearLayer,
    LinearStats,
    ParamLayout,
    UnstructuredError,
    _chunks,
    generic_pseudo_grads,
    layer_grads,
    linear_layout,
    linear_stats,
    model_outputs,
    prepare_inputs,
    structured_pseudo_grads,
)
from .per_example import _as_2d as _as_2d_out
from .representations import KFAC, BlockDiagonal, CurvatureMatrix, Dense, Diagonal, MatrixFree, _kfac_index

__all__ = ["fisher", "REPRESENTATIONS"]

T = TypeVar("T")

REPRESENTATIONS = ("dense", "diagonal", "block_diagonal", "kfac", "matrix_free")


def _check_args(model: Any, likelihood: Any, kind: Any, representation: Any, n_samples: Any, generator: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(likelihood, (str, Likelihood)):
        raise ArgumentTypeError(f"likelihood must be one of {LIKELIHOODS}, got {type(likelihood).__name__}")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(representation, str) or representation not in REPRESENTATIONS:
        raise InvalidArgumentError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int):
        raise ArgumentTypeError(f"n_samples must be a positive int, got {type(n_samples).__name__}")
    if n_samples < 1:
        raise InvalidArgumentError(f"n_samples must be >= 1, got {n_samples}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


class _Engine:
    """Per-example factors of one batch (model, inputs, likelihood, kind) with both code paths.

    The ``*_sum`` methods return sums over the batch's examples (not means): the caller adds the
    batches' sums and divides once by the total number of examples.
    """

    def __init__(self, model: nn.Module, x: Tensor, layout: ParamLayout, factors_fn: Callable[[Tensor], Tensor],
                 layers: list[LinearLayer] | None, strict: bool,
                 true_vp: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        self.model, self.x, self.layout = model, x, layout
        self.n = x.shape[0]
        self._factors_fn = factors_fn
        self.factors: Tensor | None = None
        self.stats: LinearStats | None = None
        self.layers = layers
        self._strict = strict
        self._aug_index: list[Tensor] | None = None
        self._true_vp = true_vp
        self._conv_grads: dict[int, Tensor | None] = {}

    def output_vp(self, f: Tensor, u: Tensor) -> Tensor:
        r""":math:`\Lambda_n u_n` in output space: closed form for the true Fisher, else :math:`S S^\top u`."""
        if self._true_vp is not None:
            _check_outputs(f)
            return self._true_vp(f, u)
        s = self._fixed(f)
        return torch.einsum("nkc,nc->nk", s, torch.einsum("nkc,nk->nc", s, u))

    def _fixed(self, f: Tensor) -> Tensor:
        if self.factors is None:
            self.factors = self._factors_fn(f)
        return self.factors

    def structured(self) -> bool:
        """Compute the nn.Linear / nn.Conv2d statistics once; False when the model needs the generic path."""
        if self.layers is not None and self.stats is None:
            try:
                self.stats = linear_stats(self.model, self.x, self.layers, self._fixed)
            except UnstructuredError:
                if self._strict:
                    raise
                self.layers = None
        return self.layers is not None

    def linear(self) -> LinearStats:
        """The layer statistics (only on the structured path)."""
        self.structured()
        if self.stats is None:  # pragma: no cover - callers check structured() first
            raise UnstructuredError("the model has no structured layer statistics")
        return self.stats

    def chunks(self) -> Iterator[Tensor]:
        if self.structured():
            return structured_pseudo_grads(self.linear(), self.layout)
        factors = self._fixed(model_outputs(self.model, self.x))
        return generic_pseudo_grads(self.model, self.x, factors, self.layout)

    def _pair(self, i: int, j: int) -> Tensor:
        r"""Exact block (summed over examples) between Linear layers i and j over the augmented weights.

        :math:`\sum_n \bar a^i_{n,a} \bar a^j_{n,b} \sum_c b^i_{nc,o} b^j_{nc,p}`, row-major: one GEMM
        of size (I_i I_j) x N x (O_i O_j), a factor C cheaper than forming the per-example
        pseudo-gradients.
        """
        st = self.linear()
        ai, aj, bi, bj = st.a[i], st.a[j], st.b[i], st.b[j]
        ii, ij, oi, oj = ai.shape[1], aj.shape[1], bi.shape[2], bj.shape[2]
        out = torch.zeros(ii * ij, oi * oj, dtype=ai.dtype, device=ai.device)
        per = ii * ij + oi * oj * (1 + bi.shape[0])
        for sl in _chunks(self.n, per):
            xa = (ai[sl].unsqueeze(2) * aj[sl].unsqueeze(1)).reshape(-1, ii * ij)
            mb = torch.einsum("cno,cnp->nop", bi[:, sl], bj[:, sl]).reshape(-1, oi * oj)
            out.addmm_(xa.T, mb)
        return out.reshape(ii, ij, oi, oj).permute(2, 0, 3, 1).reshape(oi * ii, oj * ij)

    def _use_pairs(self) -> bool:
        return (self.structured() and self.linear().b[0].shape[0] > 1
                and not any(layer.is_conv for layer in self.linear().layers))

    def pair_index(self) -> list[Tensor]:
        return [_kfac_index(layer, self.layout) for layer in self.linear().layers]

    def dense_sum(self) -> Tensor:
        p = self.layout.numel
        out = torch.zeros(p, p, dtype=self.layout.dtype, device=self.layout.device)
        if self._use_pairs():
            idx = [i.to(self.layout.device) for i in self.pair_index()]
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
        return out

    def diag_sum(self) -> Tensor:
        if self.structured():
            stats = self.linear()
            pieces: list[Tensor | None] = [None] * len(self.layout.names)
            for layer, a, b in zip(stats.layers, stats.a, stats.b):
                if layer.is_conv:  # per-example weight gradients sum over positions: square after summing
                    d = torch.zeros(b.shape[-1], a.shape[-1], dtype=a.dtype, device=a.device)
                    per = b.shape[0] * b.shape[-1] * a.shape[-1] + a[0].numel() + b[:, 0].numel()
                    for sl in _chunks(self.n, per):
                        d += layer_grads(layer, a[sl], b[:, sl]).square().sum((0, 1))
                else:
                    d = (b.square().sum(0)).T @ a.square()  # (O, I)
                if layer.bias_index is None:
                    pieces[layer.weight_index] = d.reshape(-1)
                else:
                    pieces[layer.weight_index] = d[:, :-1].reshape(-1)
                    pieces[layer.bias_index] = d[:, -1]
            return torch.cat(pieces)  # type: ignore[arg-type]  # every slot is filled: layers cover all parameters
        out = torch.zeros(self.layout.numel, dtype=self.layout.dtype, device=self.layout.device)
        for g in self.chunks():
            out += g.square().sum((0, 1))
        return out

    def block_index(self) -> list[Tensor]:
        if self._use_pairs():
            return self.pair_index()
        return module_blocks(self.model, self.layout)

    def blocks_sum(self, index: list[Tensor]) -> list[Tensor]:
        if self._use_pairs():
            return [self._pair(i, i) for i in range(len(index))]
        dev = self.layout.device
        blocks = [torch.zeros(len(i), len(i), dtype=self.layout.dtype, device=dev) for i in index]
        idx_dev = [i.to(dev) for i in index]
        for g in self.chunks():
            g = g.reshape(-1, self.layout.numel)
            for blk, idx in zip(blocks, idx_dev):
                gb = g[:, idx]
                blk.addmm_(gb.T, gb)
        return blocks

    def kfac_sum(self) -> list[tuple[Tensor, Tensor, int]]:
        r"""Per layer :math:`\sum_n \bar a \bar a^\top`, :math:`\sum_{n,c} b b^\top` and the positions :math:`T`.

        Conv2d (KFC, Grosse & Martens 2016): :math:`A` sums the patch outer products over the
        :math:`T` output positions, :math:`G` averages over them, so that :math:`A \otimes G` is exact
        for a single example and a single position."""
        stats = self.linear()
        out = []
        for a, b in zip(stats.a, stats.b):
            af = a.reshape(-1, a.shape[-1])
            if a.dim() == 3:  # conv: b is (C, N, T, O), a transposed view of contiguous (C, N, O, T) storage
                per = b.transpose(2, 3).reshape(-1, b.shape[3], b.shape[2])  # (C N, O, T) without a copy
                out.append((af.T @ af, torch.bmm(per, per.transpose(1, 2)).sum(0), a.shape[1]))
            else:
                bf = b.reshape(-1, b.shape[-1])
                out.append((af.T @ af, bf.T @ bf, 1))
        return out

    def _conv_grad(self, i: int) -> Tensor | None:
        r"""Per-example pseudo-gradients :math:`\sum_t b_{nc,t} \bar a_{n,t}^\top` of conv layer ``i``,
        ``(N C, O I)``, cached for products when no larger than the layer statistics already held
        (then each product is two GEMMs instead of two passes over the per-position statistics)."""
        if i not in self._conv_grads:
            st = self.linear()
            a, b, layer = st.a[i], st.b[i], st.layers[i]
            c, n, t, o = b.shape
            small = c * o * a.shape[-1] <= c * t * o + t * a.shape[-1]
            self._conv_grads[i] = layer_grads(layer, a, b).reshape(n * c, -1) if small else None
        return self._conv_grads[i]

    def _structured_mv(self, v: Tensor) -> Tensor:
        r""":math:`\sum_{nc} g_{nc} g_{nc}^\top v` from cached layer statistics (no new passes)."""
        st, k = self.linear(), v.shape[1]
        if self._aug_index is None:
            self._aug_index = [i.to(self.layout.device) for i in self.pair_index()]
        vt = v.T  # (k, P)
        u = None
        n = st.n
        for i, (layer, idx, a, b) in enumerate(zip(st.layers, self._aug_index, st.a, st.b)):
            vb = vt[:, idx].reshape(k, layer.out_features, layer.in_features)
            g = self._conv_grad(i) if layer.is_conv else None
            if g is not None:
                contrib = (g @ vb.reshape(k, -1).T).reshape(n, -1, k).permute(2, 1, 0)
            elif layer.is_conv:
                t = torch.einsum("nti,koi->knto", a, vb)
                contrib = torch.einsum("knto,cnto->kcn", t, b)
            else:
                t = torch.einsum("ni,koi->kno", a, vb)  # (k, N, O): layer's contribution to J v
                contrib = torch.einsum("kno,cno->kcn", t, b)
            u = contrib if u is None else u + contrib  # (k, C, N) = g_nc^T v
        if u is None:  # pragma: no cover - a structured model has at least one layer
            raise UnstructuredError("the model has no Linear or Conv2d layer")
        out = torch.empty_like(vt)
        for i, (layer, idx, a, b) in enumerate(zip(st.layers, self._aug_index, st.a, st.b)):
            g = self._conv_grads.get(i) if layer.is_conv else None
            if g is not None:
                out[:, idx] = u.permute(0, 2, 1).reshape(k, -1) @ g
            elif layer.is_conv:
                w = torch.einsum("kcn,cnto->knto", u, b)
                out[:, idx] = torch.einsum("knto,nti->koi", w, a).reshape(k, -1)
            else:
                w = torch.einsum("kcn,cno->kno", u, b)
                out[:, idx] = torch.einsum("kno,ni->koi", w, a).reshape(k, -1)
        return out.T

    def functional_mv_sum(self, v: Tensor) -> Tensor:
        r""":math:`\sum_n J_n^\top \Lambda_n J_n v` by forward-mode then reverse-mode AD, column by column."""
        model, x, layout = self.model, self.x, self.layout
        names = layout.names
        leaves = {k: p.detach().requires_grad_(True) for k, p in model.named_parameters()}
        buffers = {k: b.detach() for k, b in model.named_buffers()}
        n = self.n
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
            w = self.output_vp(out.detach(), jv)
            grads = torch.autograd.grad(out, [leaves[k] for k in names], w, allow_unused=True)
            cols.append(torch.cat([torch.zeros_like(leaves[k]).reshape(-1) if g is None else g.reshape(-1)
                                   for k, g in zip(names, grads)]))
        return torch.stack(cols, dim=1)

    def mv_sum(self, v: Tensor) -> Tensor:
        """One batch's product sum: cached structured statistics for several vectors, else jvp/vjp."""
        if self.layers is not None and (v.shape[1] > 1 or self.stats is not None) and self.structured():
            return self._structured_mv(v)
        return self.functional_mv_sum(v)

    def matrix_free(self) -> MatrixFree:
        """Products by jvp then vjp; for nn.Linear / nn.Conv2d stacks the second and later products
        (and any product with several vectors) switch to the cached layer statistics, which cost one
        forward and one batched backward pass once and then about two small GEMMs per layer per product."""
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
                    return self._structured_mv(v) / n
            return functional_mv(v)

        with_shapes = _shape_errors(x)
        return MatrixFree(with_shapes(mv), with_shapes(lambda: self.dense_sum() / n),
                          with_shapes(lambda: self.diag_sum() / n), layout)


def module_blocks(model: nn.Module, layout: ParamLayout) -> list[Tensor]:
    """Flat positions of the parameters each module owns directly (weight and bias of a layer)."""
    index = {id(p): i for i, p in enumerate(model.parameters())}
    groups: list[list[int]] = []
    seen: set[int] = set()
    for module in model.modules():
        ids = [index[id(p)] for p in module.parameters(recurse=False) if index[id(p)] not in seen]
        if ids:
            seen.update(ids)
            groups.append(sorted(ids))
    for i in range(len(index)):
        if i not in seen:
            groups.append([i])
    return [torch.cat([torch.arange(layout.offsets[i], layout.offsets[i] + layout.shapes[i].numel()) for i in grp])
            for grp in groups]


def _check_outputs(f: Tensor) -> None:
    if f.is_floating_point() and not bool(torch.isfinite(f).all()):
        bad = int((~torch.isfinite(f)).sum())
        raise NonFiniteError(f"model output must be finite; it has {bad} NaN or infinite entries (check the "
                             "model's parameters and inputs)")


_SHAPE_WORDS = ("shape", "size", "dimension", "must match", "expected")


def _shape_errors(x: Tensor, name: str = "inputs") -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: torch's shape RuntimeErrors from running the model become a ShapeError naming ``inputs``."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except RuntimeError as err:
                text = str(err).splitlines()[0] if str(err) else type(err).__name__
                if isinstance(err, FisherbookError) or not any(w in text.lower() for w in _SHAPE_WORDS):
                    raise
                raise ShapeError(f"{name} of shape {tuple(x.shape)} do not fit the model: {text}") from err
        return run

    return wrap


def fisher(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    likelihood: str | Likelihood = "categorical",
    kind: str = "true",
    targets: Tensor | None = None,
    representation: str = "dense",
    n_samples: int = 1,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    progress: bool = False,
    distributed: bool = False,
    process_group: Any = None,
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
    inputs : Tensor, torch.utils.data.DataLoader or iterable of batches
        Examples along dim 0 (one tensor), or a ``torch.utils.data.DataLoader`` or any iterable
        of batches, each an input tensor or an ``(inputs, targets)`` pair (further elements are
        ignored). Batches are streamed: the result is the exact mean over all examples (each
        batch weighted by its size), and memory holds one batch's statistics plus the result.
        ``"matrix_free"`` keeps the loader (a one-shot iterator: its batches) and streams over it
        once per product. Floating-point inputs are moved to the model's dtype and device; they
        must be finite and non-empty.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        Softmax cross-entropy over :math:`K` classes; independent sigmoid outputs;
        :math:`\mathcal N(f, \sigma^2 I)`.
    kind : {"true", "mc", "empirical"}
        ``"true"``: the exact expectation over the model's predictive (closed form, no sampling);
        ``"mc"``: ``n_samples`` targets sampled from the model per example;
        ``"empirical"``: the given ``targets``.
    targets : Tensor, optional
        Required for ``kind="empirical"`` with tensor ``inputs`` (class indices for
        ``"categorical"``, 0/1 or real values shaped like the outputs otherwise); ignored by the
        other kinds. With batched ``inputs`` the targets come from the ``(inputs, targets)``
        batches and this argument must be ``None``.
    representation : {"dense", "diagonal", "block_diagonal", "kfac", "matrix_free"}
        How the matrix is stored; all share ``mv``, ``solve``, ``diag``, ``to_dense``, ``trace``.
        Blocks of ``"block_diagonal"`` are the parameters each module owns (weight and bias of a layer).
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    sigma : float
        Noise standard deviation of the ``"gaussian"`` likelihood.
    generator : torch.Generator, optional
        Random generator for ``kind="mc"``. Targets are drawn batch by batch in the order the
        batches arrive, each batch's draw continuing the generator's stream (for
        ``"categorical"`` this gives exactly the draws of the one-tensor call on the concatenated
        inputs). ``"matrix_free"`` over batches replays the generator's state at the time of the
        call on every pass (so every product uses the same targets) and leaves ``generator``
        itself unchanged; it refuses a shuffling DataLoader for ``kind="mc"``.
    progress : bool
        Show a tqdm progress bar over the batches (keyword only; off by default).
    distributed : bool
        Under ``torch.distributed``: every rank passes its own shard (a ``DataLoader`` over a
        ``DistributedSampler``, say) and the partial sums are all-reduced over ``process_group``,
        so every rank holds the Fisher of the union of the shards, equal to one process on all the
        data (matrix-free products are reduced per call). Keyword only; see
        :mod:`fisherbook.curvature.distributed`.
    process_group : torch.distributed.ProcessGroup, optional
        The group to reduce over when ``distributed`` (default: the world).

    Returns
    -------
    CurvatureMatrix
        :class:`Dense`, :class:`Diagonal`, :class:`BlockDiagonal`, :class:`KFAC` or :class:`MatrixFree`,
        in the model's dtype and on its device.

    Raises
    ------
    NonFiniteError
        Inputs (or the model's outputs) hold NaN or inf.
    ShapeError
        Empty inputs or an empty loader; inputs that do not fit the model (naming the batch).
    UnsupportedError
        A module the engine does not cover: batch norm in training mode, recurrent layers, or
        for ``"kfac"`` a parameter outside ``nn.Linear`` / ``nn.Conv2d``.

    Warns
    -----
    ModelModeWarning
        The model is in training mode with active dropout: the Fisher changes from call to call.

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

    The same Fisher streamed over a DataLoader:

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> loader = DataLoader(TensorDataset(X), batch_size=8)
    >>> torch.allclose(fb.curvature.fisher(model, loader).to_dense(), F.to_dense())
    True
    """
    if not isinstance(distributed, bool):
        raise ArgumentTypeError(f"distributed must be True or False, got {type(distributed).__name__}")
    if distributed:
        from .distributed import fisher as _distributed_fisher  # imported late: it imports this module

        return _distributed_fisher(model, inputs, likelihood, kind, targets, representation, n_samples, sigma,
                                   generator, group=process_group, progress=progress)
    _check_args(model, likelihood, kind, representation, n_samples, generator)
    lik = get_likelihood(likelihood, sigma)
    layout = ParamLayout.from_model(model)
    check_model(model)
    if not isinstance(progress, bool):
        raise ArgumentTypeError(f"progress must be True or False, got {type(progress).__name__}")
    layers = linear_layout(model, layout, "kfac" if representation == "kfac" else None, allow_conv=True)
    true_vp = lik.fisher_vp if kind == "true" else None

    def engine_for(x: Tensor, y: Tensor | None, gen: torch.Generator | None) -> _Engine:
        if kind == "empirical" and y is None:
            raise InvalidArgumentError("targets is required for kind='empirical' (one target per example)")

        def factors_fn(f: Tensor) -> Tensor:
            _check_outputs(f)
            return lik.output_factors(f, kind, y, n_samples, gen)

        return _Engine(model, x, layout, factors_fn, layers, strict=representation == "kfac", true_vp=true_vp)

    if isinstance(inputs, Tensor):
        x = prepare_inputs(inputs, layout)
        engine = engine_for(x, targets, generator)
        if representation == "matrix_free":
            return engine.matrix_free()
        with_shapes = _shape_errors(x)
        return with_shapes(_accumulate)([(engine, x.shape[0])], representation, layout, layers)

    source = as_batches(inputs, targets, store=representation == "matrix_free", progress=progress)

    def batches(gen: torch.Generator | None) -> Iterator[tuple[Any, int]]:
        for index, (xb, yb) in enumerate(source):
            name = f"batch {index} of inputs"
            xb = prepare_inputs(xb, layout, name=name)
            yield _BatchEngine(engine_for(xb, yb, gen), xb, name), xb.shape[0]

    if representation != "matrix_free":
        return _accumulate(batches(generator), representation, layout, layers)
    if kind == "mc" and source.shuffled:
        raise UnsupportedError("kind='mc' with representation='matrix_free' replays the same sampled targets on "
                               "every product, which needs the batches in the same order on every pass; the "
                               "DataLoader shuffles. Use shuffle=False, or another representation.")
    return _streamed_matrix_free(batches, kind, generator, layout)


class _BatchEngine:
    """An engine whose torch shape errors name the batch's inputs."""

    def __init__(self, engine: _Engine, x: Tensor, name: str) -> None:
        self._engine = engine
        self._wrap = _shape_errors(x, name)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        return self._wrap(attr) if callable(attr) else attr


def _accumulate(engines: Iterable[tuple[Any, int]], representation: str, layout: ParamLayout,
                layers: list[LinearLayer] | None) -> CurvatureMatrix:
    """Add each batch's sums, then divide once by the total number of examples."""
    total = 0
    acc: Any = None
    index: list[Tensor] | None = None
    for engine, n in engines:
        total += n
        if representation == "dense":
            part: Any = engine.dense_sum()
        elif representation == "diagonal":
            part = engine.diag_sum()
        elif representation == "block_diagonal":
            if index is None:
                index = engine.block_index()
            part = engine.blocks_sum(index)
        else:
            part = engine.kfac_sum()
        acc = part if acc is None else _add(acc, part)
        del engine, part  # one batch's statistics at a time
    if representation == "dense":
        return Dense(acc / total, layout)
    if representation == "diagonal":
        return Diagonal(acc / total, layout)
    if representation == "block_diagonal":
        return BlockDiagonal([b / total for b in acc], index, layout)  # type: ignore[arg-type]  # set with acc
    return KFAC([(a / total, g / (total * t)) for a, g, t in acc], layers, layout)  # type: ignore[arg-type]  # kfac always has layers


def _add(acc: Any, part: Any) -> Any:
    if isinstance(acc, Tensor):
        return acc.add_(part)
    if isinstance(acc[0], Tensor):  # block_diagonal
        return [a.add_(b) for a, b in zip(acc, part)]
    return [(a.add_(pa), g.add_(pg), t) for (a, g, t), (pa, pg, _) in zip(acc, part)]  # kfac


def _streamed_matrix_free(batches: Callable[[torch.Generator | None], Iterator[tuple[Any, int]]], kind: str,
                          generator: torch.Generator | None, layout: ParamLayout) -> MatrixFree:
    """Matrix-free products that stream over the batches once per product (nothing but the batch
    source is stored). ``kind="mc"`` replays one generator state on every pass, so every product,
    ``diag`` and ``to_dense`` see the same sampled targets."""
    replay: torch.Generator | None = None
    if kind == "mc":
        replay = torch.Generator(device=layout.device)
        if generator is None:
            replay.manual_seed(int(torch.randint(0, 2**62, ()).item()))
        else:
            replay.set_state(generator.get_state())
    state = None if replay is None else replay.get_state()

    def fresh() -> torch.Generator | None:
        if state is None:
            return None
        g = torch.Generator(device=layout.device)
        g.set_state(state)
        return g

    def reduce(per_batch: Callable[[Any], Tensor]) -> Tensor:
        total = 0
        acc: Tensor | None = None
        for engine, n in batches(fresh()):
            total += n
            part = per_batch(engine)
            acc = part if acc is None else acc.add_(part)
        if acc is None:  # pragma: no cover - Batches raises on an empty source
            raise ShapeError("inputs yielded no batches")
        return acc / total

    return MatrixFree(lambda v: reduce(lambda e: e.mv_sum(v)), lambda: reduce(lambda e: e.dense_sum()),
                      lambda: reduce(lambda e: e.diag_sum()), layout)
