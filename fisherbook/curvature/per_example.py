r"""Per-example quantities: Jacobian-factor products and nn.Linear layer statistics.

Two engines produce the same objects.

*Generic* (any ``nn.Module`` whose examples are processed independently): per-example
Jacobians :math:`J_n` by ``torch.func.vmap(jacrev(...))`` over chunks of examples, turned into
*pseudo-gradients* :math:`g_{nc} = J_n^\top S_{n,:,c}` (one per example and factor column).

*Structured* (every parameter belongs to an ``nn.Linear`` called once on 2-D input or an
``nn.Conv2d`` with ``groups=1`` called once on 4-D input): one forward
pass records each layer's input :math:`a_n` (with a ones-column appended when the layer has a bias,
:math:`\bar a_n`), and one batched backward pass pushes all :math:`C` factor columns back to each
layer's output at once (``torch.autograd.grad(..., is_grads_batched=True)``), giving
:math:`b_{nc} = (\partial f_n / \partial z_n)^\top S_{n,:,c}`. The pseudo-gradient of the layer's
weight and bias is then :math:`b_{nc} \bar a_n^\top`, with no Python loop over examples or classes.
An ``nn.Conv2d`` weight acts as a matrix on the unfolded input patches :math:`\bar a_{n,t}` at its
:math:`T` output positions (im2col), and its pseudo-gradient is
:math:`\sum_t b_{nc,t} \bar a_{n,t}^\top`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .._validate import check_finite
from ..errors import ArgumentTypeError, ShapeError, UnsupportedError
from .likelihoods import Likelihood

__all__ = ["ParamLayout", "LinearStats", "model_outputs", "generic_pseudo_grads", "linear_layout", "linear_stats",
           "per_example_grads", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS = ("nn.Linear", "nn.Conv2d (groups=1, zero or numeric padding)")
KFAC_LAYERS = ("nn.Linear", "nn.Conv2d (groups=1, zero or numeric padding)")
_CHUNK_ELEMENTS = 2**23  # per-chunk budget for (examples x columns x parameters) tensors


@dataclass
class ParamLayout:
    """Names, shapes and flat offsets of a model's parameters in ``model.parameters()`` order."""

    names: list[str]
    shapes: list[torch.Size]
    offsets: list[int]
    numel: int
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def from_model(cls, model: nn.Module) -> ParamLayout:
        named = list(model.named_parameters())
        if not named:
            raise UnsupportedError("model has no parameters: there is no Fisher matrix to compute")
        names = [n for n, _ in named]
        shapes = [p.shape for _, p in named]
        offsets, total = [], 0
        for p in (p for _, p in named):
            offsets.append(total)
            total += p.numel()
        dtypes = {p.dtype for _, p in named}
        devices = {p.device for _, p in named}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ArgumentTypeError(f"all model parameters must share one dtype and device, got {dtypes} and {devices}")
        dtype = dtypes.pop()
        if not dtype.is_floating_point:
            raise ArgumentTypeError(f"model parameters must be floating point, got {dtype}")
        return cls(names, shapes, offsets, total, dtype, devices.pop())

    def unflatten(self, vec: Tensor) -> list[Tensor]:
        """Split a flat vector (last dimension ``numel``) into tensors shaped like the parameters."""
        if not isinstance(vec, Tensor):
            raise ArgumentTypeError(f"vec must be a torch.Tensor, got {type(vec).__name__}")
        if vec.shape[-1:] != (self.numel,):
            raise ShapeError(f"vec must have last dimension {self.numel} (the number of parameters), "
                             f"got shape {tuple(vec.shape)}")
        lead = vec.shape[:-1]
        return [vec[..., o:o + s.numel()].reshape(*lead, *s) for o, s in zip(self.offsets, self.shapes)]


def prepare_inputs(inputs: Tensor, layout: ParamLayout, name: str = "inputs") -> Tensor:
    """Check ``inputs`` (a non-empty, finite tensor) and move floating-point inputs to the model's
    dtype and device; ``name`` is the argument named in error messages."""
    if not isinstance(inputs, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor with examples along dim 0, got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ShapeError(f"{name} must have at least one example along dim 0, got shape {tuple(inputs.shape)}")
    check_finite(inputs, name)
    if inputs.is_floating_point():
        return inputs.to(device=layout.device, dtype=layout.dtype)
    return inputs.to(device=layout.device)


def _as_2d(out: Tensor, n: int) -> Tensor:
    if out.dim() == 0 or out.shape[0] != n:
        raise ShapeError(f"model output must have the {n} examples along dim 0, got shape {tuple(out.shape)}")
    return out.reshape(n, -1)


def model_outputs(model: nn.Module, inputs: Tensor) -> Tensor:
    """Model outputs as ``(N, K)`` without gradient tracking."""
    with torch.no_grad():
        return _as_2d(model(inputs), inputs.shape[0])


def _chunks(n: int, per_example: int) -> Iterator[slice]:
    size = max(1, _CHUNK_ELEMENTS // max(1, per_example))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def generic_pseudo_grads(model: nn.Module, inputs: Tensor, factors: Tensor, layout: ParamLayout) -> Iterator[Tensor]:
    r"""Yield chunks of pseudo-gradients :math:`g_{nc} = J_n^\top S_{n,:,c}`, shape ``(n, C, P)``.

    Uses ``torch.func``: ``vmap`` over examples of ``jacrev`` of the single-example output.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    names = layout.names

    def single(p, x):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return out.reshape(-1)

    jac = vmap(jacrev(single), in_dims=(None, 0))
    n, k, c = factors.shape
    for sl in _chunks(n, k * layout.numel + c * layout.numel):
        j = jac(params, inputs[sl])
        jflat = torch.cat([j[name].reshape(j[name].shape[0], k, -1) for name in names], dim=-1)  # (n, K, P)
        yield torch.einsum("nkc,nkp->ncp", factors[sl], jflat)


@dataclass
class LinearLayer:
    """An nn.Linear (or, for KFAC, nn.Conv2d) layer and where its weight and bias sit in the flat vector.

    A Conv2d weight of shape ``(O, I, kh, kw)`` is treated as the matrix ``(O, I*kh*kw)`` acting on
    unfolded input patches.
    """

    module: nn.Linear | nn.Conv2d
    weight_index: int
    bias_index: int | None

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    @property
    def weight_in(self) -> int:
        """Columns of the weight matrix (without the bias column)."""
        w = self.module.weight
        return w[0].numel()

    @property
    def in_features(self) -> int:
        return self.weight_in + (1 if self.bias_index is not None else 0)

    @property
    def out_features(self) -> int:
        return self.module.weight.shape[0]


def _conv_ok(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def linear_layout(model: nn.Module, layout: ParamLayout, representation: str | None = None,
                  allow_conv: bool = False) -> list[LinearLayer]:
    """The model's nn.Linear (and with ``allow_conv`` nn.Conv2d) layers, or
    :class:`~fisherbook.errors.UnsupportedError` if some parameter lives elsewhere.

    ``representation`` is named in the error message (``None``: return ``None`` instead of raising).
    """
    index = {id(p): i for i, p in enumerate(model.parameters())}
    layers: list[LinearLayer] = []
    seen: set[int] = set()
    offending: list[str] = []
    for mname, module in model.named_modules():
        direct = list(module.named_parameters(recurse=False))
        if not direct:
            continue
        if type(module) is nn.Linear or (allow_conv and _conv_ok(module)):
            w = module.weight
            b = module.bias
            if id(w) in seen or (b is not None and id(b) in seen):
                offending.append(f"{mname or 'model'} (shared parameters)")
                continue
            seen.add(id(w))
            if b is not None:
                seen.add(id(b))
            layers.append(LinearLayer(module, index[id(w)], None if b is None else index[id(b)]))
        else:
            offending.append(f"{mname or 'model'} ({type(module).__name__})")
    if not offending and len(seen) != len(index):
        offending.append("parameters not registered to any module")
    if offending:
        if representation is None:
            return None  # type: ignore[return-value]  # the documented 'no fast path' answer when no representation was asked
        raise UnsupportedError(
            f"representation={representation!r} supports models whose parameters all belong to "
            f"{', '.join(KFAC_LAYERS if allow_conv else SUPPORTED_LAYERS)} layers (each called once per "
            f"forward pass); unsupported: "
            f"{', '.join(offending)}. Use representation='dense', 'diagonal', 'block_diagonal' or "
            f"'matrix_free', which work for any nn.Module through torch.func.")
    return layers


class UnstructuredError(UnsupportedError):
    """The model does not fit the structured nn.Linear path (a layer reused, or non-2-D layer input)."""


@dataclass
class LinearStats:
    r"""Per-example statistics of nn.Linear layers.

    ``a[l]``: layer inputs :math:`\bar a_n` with a ones-column when the layer has a bias, ``(N, I)``;
    ``b[l]``: back-propagated output factors :math:`b_{nc}`, ``(C, N, O)``. For an ``nn.Conv2d``
    layer (KFAC only) the unfolded patches ``(N, T, I)`` and factors ``(C, N, T, O)`` over the
    :math:`T` output positions.
    """

    layers: list[LinearLayer]
    a: list[Tensor]
    b: list[Tensor]
    n: int


def linear_stats(model: nn.Module, inputs: Tensor, layers: list[LinearLayer],
                 factors_fn: Callable[[Tensor], Tensor]) -> LinearStats:
    """One forward pass with hooks and one batched backward pass (all factor columns at once).

    ``factors_fn`` maps the detached outputs ``(N, K)`` to output factors ``(N, K, C)``.
    """
    records: dict[int, list[tuple[Tensor, Tensor]]] = {id(layer.module): [] for layer in layers}

    def hook(module, args, output):
        records[id(module)].append((args[0], output))

    handles = [layer.module.register_forward_hook(hook) for layer in layers]
    try:
        with torch.enable_grad():
            x = inputs.detach()
            if x.is_floating_point():
                x = x.requires_grad_(True)
            out = _as_2d(model(x), inputs.shape[0])
    finally:
        for h in handles:
            h.remove()
    n = inputs.shape[0]
    zs, acts = [], []
    for layer in layers:
        rec = records[id(layer.module)]
        if len(rec) != 1:
            raise UnstructuredError(
                f"layer {layer.module} was called {len(rec)} times in one forward pass; the structured path "
                "needs each layer called exactly once. Use representation='dense', 'diagonal', "
                "'block_diagonal' or 'matrix_free'.")
        a, z = rec[0]
        if not z.requires_grad:
            raise UnsupportedError(f"output of {layer.module} does not depend on the parameters through autograd")
        if layer.is_conv:
            m = layer.module
            assert isinstance(m, nn.Conv2d)  # is_conv
            if a.dim() != 4 or a.shape[0] != n:
                raise UnstructuredError(f"nn.Conv2d layer {m} received input of shape {tuple(a.shape)}; KFAC needs "
                                        f"({n}, channels, height, width). Use representation='dense', 'diagonal', "
                                        "'block_diagonal' or 'matrix_free'.")
            a = torch.nn.functional.unfold(a.detach(), m.kernel_size, dilation=m.dilation,
                                           padding=m.padding,  # type: ignore[arg-type]  # _conv_ok excludes str
                                           stride=m.stride).transpose(1, 2)  # (N, T, I*kh*kw)
            if layer.bias_index is not None:
                a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
            acts.append(a)
            zs.append(z)
            continue
        if a.dim() != 2 or a.shape[0] != n:
            raise UnstructuredError(
                f"nn.Linear layer {layer.module} received input of shape {tuple(a.shape)}; the structured "
                f"path needs ({n}, features). Use representation='dense', 'diagonal', 'block_diagonal' or "
                "'matrix_free'.")
        a = a.detach()
        if layer.bias_index is not None:
            a = torch.cat([a, a.new_ones(n, 1)], dim=1)
        acts.append(a)
        zs.append(z)
    factors = factors_fn(out.detach())  # (N, K, C)
    cot = factors.permute(2, 0, 1)  # (C, N, K)
    raw: list[Tensor | None]
    if cot.shape[0] == 1:
        grads = torch.autograd.grad(out, zs, grad_outputs=cot[0], allow_unused=True)
        raw = [None if b is None else b.unsqueeze(0) for b in grads]
    else:
        raw = list(torch.autograd.grad(out, zs, grad_outputs=cot.contiguous(), is_grads_batched=True,
                                       allow_unused=True))
    bs = [torch.zeros(cot.shape[0], *z.shape, dtype=out.dtype, device=out.device) if b is None
          else b.detach() for b, z in zip(raw, zs)]
    # Conv2d: (C, N, O, H', W') -> (C, N, T, O), positions in the order of unfold
    bs = [b.flatten(3).transpose(2, 3) if layer.is_conv else b for b, layer in zip(bs, layers)]
    return LinearStats(layers, acts, bs, n)


def layer_grads(layer: LinearLayer, a: Tensor, b: Tensor) -> Tensor:
    r"""Pseudo-gradients of one layer's augmented weight, ``(n, C, O, I)``: :math:`b_{nc} \bar a_n^\top`
    for nn.Linear, :math:`\sum_t b_{nc,t} \bar a_{n,t}^\top` for nn.Conv2d."""
    if layer.is_conv:
        return torch.einsum("cnto,nti->ncoi", b, a)
    return torch.einsum("cno,ni->ncoi", b, a)


def structured_pseudo_grads(stats: LinearStats, layout: ParamLayout,
                            chunk_per_example: int | None = None) -> Iterator[Tensor]:
    r"""Yield chunks of pseudo-gradients ``(n, C, P)`` assembled from :math:`b_{nc} \bar a_n^\top`."""
    c = stats.b[0].shape[0]
    for sl in _chunks(stats.n, c * layout.numel):
        pieces: list[Tensor | None] = [None] * len(layout.names)
        for layer, a, b in zip(stats.layers, stats.a, stats.b):
            g = layer_grads(layer, a[sl], b[:, sl])  # (n, C, O, I)
            if layer.bias_index is None:
                pieces[layer.weight_index] = g.reshape(g.shape[0], c, -1)
            else:
                pieces[layer.weight_index] = g[..., :-1].reshape(g.shape[0], c, -1)
                pieces[layer.bias_index] = g[..., -1]
        yield torch.cat(pieces, dim=-1)  # type: ignore[arg-type]  # every slot is filled: the layers cover all parameters


def per_example_grads(model: nn.Module, inputs: Tensor, targets: Tensor, likelihood: str | Likelihood = "categorical",
                      sigma: float = 1.0) -> Tensor:
    r"""Per-example gradients of the log-likelihood, :math:`\nabla_\theta \log p(y_n \mid x_n, \theta)`.

    Parameters
    ----------
    model : nn.Module
        Any module mapping a batch of inputs to outputs, processing examples independently.
    inputs : Tensor
        Examples along dim 0.
    targets : Tensor
        One target per example (class indices for ``"categorical"``).
    likelihood : {"categorical", "bernoulli", "gaussian"}
        The output likelihood.
    sigma : float
        Noise standard deviation of the ``"gaussian"`` likelihood.

    Returns
    -------
    Tensor
        Shape ``(N, P)``, columns in ``parameters_to_vector(model.parameters())`` order.
        The empirical Fisher is ``G.T @ G / N``.

    Examples
    --------
    >>> import torch
    >>> from fisherbook.curvature import per_example_grads
    >>> model = torch.nn.Linear(3, 2)
    >>> G = per_example_grads(model, torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1]))
    >>> G.shape
    torch.Size([5, 8])
    """
    from .likelihoods import get_likelihood

    lik = get_likelihood(likelihood, sigma)
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layout = ParamLayout.from_model(model)
    x = prepare_inputs(inputs, layout)
    def factors_fn(f):
        return lik.output_factors(f, "empirical", targets)

    layers = linear_layout(model, layout, None, allow_conv=True)
    stats = None
    if layers is not None:
        try:
            stats = linear_stats(model, x, layers, factors_fn)
        except UnstructuredError:
            stats = None
    if stats is not None:
        chunks = structured_pseudo_grads(stats, layout)
    else:
        chunks = generic_pseudo_grads(model, x, factors_fn(model_outputs(model, x)), layout)
    return torch.cat([g[:, 0] for g in chunks], dim=0)
