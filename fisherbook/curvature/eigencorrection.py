r"""Eigenvalue-corrected K-FAC (EKFAC, George et al. 2018).

K-FAC approximates the Fisher block of a layer by :math:`G \otimes A`. With the eigendecompositions
:math:`A = Q_A \Lambda_A Q_A^\top` and :math:`G = Q_G \Lambda_G Q_G^\top` that is

.. math::

    G \otimes A = (Q_G \otimes Q_A)\,(\Lambda_G \otimes \Lambda_A)\,(Q_G \otimes Q_A)^\top ,

a matrix that is diagonal in the *Kronecker eigenbasis* :math:`Q = Q_G \otimes Q_A`, with the
products of the factors' eigenvalues on its diagonal. EKFAC keeps the basis and replaces those
products by the second moments of the per-example (pseudo-)gradients projected on it,

.. math::

    S_{oi} = \frac1N \sum_{n, c} \bigl(Q_G^\top g_{nc} Q_A\bigr)_{oi}^2 ,
    \qquad
    F_{\bar W} \approx Q \operatorname{diag}(\operatorname{vec} S)\, Q^\top ,

where :math:`g_{nc}` is the :math:`O \times I` pseudo-gradient of the augmented weight (for an
``nn.Linear`` layer :math:`b_{nc} \bar a_n^\top`, for an ``nn.Conv2d`` layer
:math:`\sum_t b_{nc,t} \bar a_{n,t}^\top`, summed over the output positions) and
:math:`F_{\bar W} = \frac1N \sum_{n,c} \operatorname{vec}(g_{nc}) \operatorname{vec}(g_{nc})^\top` the exact
block. Then :math:`\operatorname{vec} S = \operatorname{diag}(Q^\top F_{\bar W} Q)`, which is the diagonal
:math:`D` minimising :math:`\lVert F_{\bar W} - Q D Q^\top \rVert_F` (the Frobenius norm does not change
under the orthogonal :math:`Q`, and :math:`Q^\top F_{\bar W} Q - D` has its off-diagonal part fixed). K-FAC
is one such :math:`Q D Q^\top`, so EKFAC's block error is never larger than K-FAC's.

For a linear layer the projection factorises: :math:`(Q_G^\top b\, \bar a^\top Q_A)_{oi} =
(Q_G^\top b)_o (Q_A^\top \bar a)_i`, so :math:`S` costs two small matrix products per example; a
convolution needs the sum over positions before squaring.

Examples
--------
>>> import torch
>>> import fisherbook as fb
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
>>> X = torch.randn(40, 3, dtype=torch.float64)
>>> E = fb.curvature.ekfac(model, X)
>>> K = fb.curvature.fisher(model, X, representation="kfac")
>>> F = fb.curvature.fisher(model, X).to_dense()
>>> bool(torch.linalg.matrix_norm(F - E.to_dense()) <= torch.linalg.matrix_norm(F - K.to_dense()))
True
>>> v = torch.randn(E.num_params, dtype=torch.float64)
>>> torch.allclose(E @ E.solve(v, damping=0.1) + 0.1 * E.solve(v, damping=0.1), v)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ArgumentTypeError, InvalidArgumentError, NotPositiveDefiniteError, ShapeError
from .batches import as_batches
from .checks import check_model
from .likelihoods import KINDS, LIKELIHOODS, Likelihood, get_likelihood
from .per_example import LinearLayer, LinearStats, ParamLayout, _chunks, layer_grads, linear_layout, linear_stats
from .per_example import prepare_inputs as _prepare
from .representations import CurvatureMatrix, _check_damping, _kfac_index

__all__ = ["EKFAC", "ekfac", "kfac_statistics"]

_Basis = tuple[Tensor, Tensor]  # (Q_A, Q_G)


def _basis_of(a: Tensor, g: Tensor) -> _Basis:
    return torch.linalg.eigh(a)[1], torch.linalg.eigh(g)[1]


class EKFAC(CurvatureMatrix):
    r"""Eigenvalue-corrected Kronecker-factored blocks, one per ``nn.Linear`` / ``nn.Conv2d`` layer.

    Block :math:`l` over the augmented weight :math:`\operatorname{vec}(\bar W_l)` (row-major, as
    :class:`~fisherbook.curvature.KFAC`) is :math:`(Q_G \otimes Q_A) \operatorname{diag}(\operatorname{vec} S)
    (Q_G \otimes Q_A)^\top`; ``bases[l]`` is :math:`(Q_A, Q_G)` and ``scalings[l]`` the
    :math:`O \times I` matrix :math:`S`. Every operation works in the eigenbasis:
    ``F @ v`` is :math:`Q_G [S \odot (Q_G^\top V Q_A)] Q_A^\top`, ``solve(v, damping)`` divides by
    :math:`S + \lambda` (exact), ``inverse(damping)`` is the EKFAC matrix with scalings
    :math:`1/(S + \lambda)`, ``logdet`` is :math:`\sum \log(S + \lambda)`, ``trace`` is
    :math:`\sum S` and ``frobenius_norm`` is :math:`\lVert S \rVert_F`.

    Build it with :func:`ekfac`; ``factors`` keeps the K-FAC ``(A, G)`` pairs whose eigenbases
    were used (``None`` for given bases); ``index[l]`` holds the flat parameter positions of layer
    :math:`l`'s :math:`\operatorname{vec}(\bar W_l)`, so that
    ``F_block = F[index[l]][:, index[l]]`` of a dense Fisher is in the order of
    ``torch.kron(Q_G, Q_A)``.
    """

    def __init__(self, bases: list[_Basis], scalings: list[Tensor], layers: list[LinearLayer], layout: ParamLayout,
                 factors: list[tuple[Tensor, Tensor]] | None = None) -> None:
        super().__init__(layout)
        if not (len(bases) == len(scalings) == len(layers)):
            raise ShapeError(f"bases and scalings must hold one entry per layer ({len(layers)}), got "
                             f"{len(bases)} and {len(scalings)}")
        for k, ((qa, qg), s, layer) in enumerate(zip(bases, scalings, layers)):
            o, i = layer.out_features, layer.in_features
            if qa.shape != (i, i) or qg.shape != (o, o) or s.shape != (o, i):
                raise ShapeError(f"layer {k}: Q_A must be {(i, i)}, Q_G {(o, o)} and the scalings {(o, i)}, got "
                                 f"{tuple(qa.shape)}, {tuple(qg.shape)} and {tuple(s.shape)}")
        self.bases = list(bases)
        self.scalings = list(scalings)
        self.layers = layers
        self.factors = factors
        self._index = [_kfac_index(layer, layout).to(layout.device) for layer in layers]
        self.index = self._index

    @property
    def modules(self) -> list[nn.Linear | nn.Conv2d]:
        """The ``nn.Linear`` / ``nn.Conv2d`` modules, in the order of ``scalings``."""
        return [layer.module for layer in self.layers]

    def _blocks(self, v: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        for (qa, qg), s, idx, layer in zip(self.bases, self.scalings, self._index, self.layers):
            yield qa, qg, s, idx, v[idx].T.reshape(v.shape[1], layer.out_features, layer.in_features)

    def _apply(self, v: Tensor, scale: Callable[[Tensor], Tensor]) -> Tensor:
        out = torch.zeros_like(v)
        for qa, qg, s, idx, vb in self._blocks(v):
            out[idx] = (qg @ ((qg.T @ vb @ qa) * scale(s)) @ qa.T).reshape(v.shape[1], -1).T
        return out

    def _mv(self, v: Tensor) -> Tensor:
        return self._apply(v, lambda s: s)

    def _positive(self, damping: float) -> list[Tensor]:
        out = [s + damping for s in self.scalings]
        if any(bool((d <= 0).any()) for d in out):
            raise NotPositiveDefiniteError(f"the EKFAC matrix is singular (a zero scaling, damping={damping}); "
                                           "use damping > 0")
        return out

    def _solve(self, v: Tensor, damping: float) -> Tensor:
        denom = iter(self._positive(damping))
        return self._apply(v, lambda s: 1 / next(denom))

    def diag(self) -> Tensor:
        out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        for (qa, qg), s, idx in zip(self.bases, self.scalings, self._index):
            out[idx] = (qg.square() @ s @ qa.square().T).reshape(-1)
        return out

    def to_dense(self) -> Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        for (qa, qg), s, idx in zip(self.bases, self.scalings, self._index):
            q = torch.kron(qg, qa)
            out[idx.unsqueeze(1), idx.unsqueeze(0)] = (q * s.reshape(-1)) @ q.T
        return out

    def trace(self) -> Tensor:
        return torch.stack([s.sum() for s in self.scalings]).sum()

    def frobenius_norm(self) -> Tensor:
        return torch.stack([s.square().sum() for s in self.scalings]).sum().sqrt()

    def inverse(self, damping: float = 0.0) -> EKFAC:
        r""":math:`(F + \lambda I)^{-1}`: the EKFAC matrix with the same bases and scalings :math:`1/(S + \lambda)`."""
        lam = _check_damping(damping)
        return EKFAC(self.bases, [1 / d for d in self._positive(lam)], self.layers, self.layout, self.factors)

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        return torch.stack([d.log().sum() for d in self._positive(lam)]).sum()

    def _scale(self, c: float) -> CurvatureMatrix:
        if c < 0:
            return super()._scale(c)
        return EKFAC(self.bases, [c * s for s in self.scalings], self.layers, self.layout, self.factors)

    def _add(self, other: CurvatureMatrix) -> Any:
        if isinstance(other, EKFAC) and len(other.bases) == len(self.bases) and all(
                torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(self.bases, other.bases)):
            return EKFAC(self.bases, [s + t for s, t in zip(self.scalings, other.scalings)], self.layers,
                         self.layout)
        return NotImplemented


def _projected_sum(layer: LinearLayer, a: Tensor, b: Tensor, basis: _Basis) -> Tensor:
    r""":math:`\sum_{n,c} (Q_G^\top g_{nc} Q_A)^2` of one batch, shape (O, I)."""
    qa, qg = basis
    if not layer.is_conv:  # (Q_G^T b a^T Q_A)_{oi} = (Q_G^T b)_o (Q_A^T a)_i
        return torch.einsum("cno,ni->oi", (b @ qg).square(), (a @ qa).square())
    out = torch.zeros(qg.shape[0], qa.shape[0], dtype=a.dtype, device=a.device)
    per = b.shape[0] * b.shape[-1] * a.shape[-1] + a[0].numel() + b[:, 0].numel()
    for sl in _chunks(a.shape[0], per):
        out += layer_grads(layer, a[sl] @ qa, b[:, sl] @ qg).square().sum((0, 1))
    return out


def _factor_sums(stats: LinearStats) -> list[tuple[Tensor, Tensor, int]]:
    """Per layer the sums of a a^T and b b^T over the batch (and positions), and the positions T."""
    out = []
    for a, b in zip(stats.a, stats.b):
        af = a.reshape(-1, a.shape[-1])
        bf = b.reshape(-1, b.shape[-1])
        out.append((af.T @ af, bf.T @ bf, a.shape[1] if a.dim() == 3 else 1))
    return out


def kfac_statistics(model: nn.Module, inputs: Tensor, likelihood: str | Likelihood = "categorical",
                    kind: str = "mc", targets: Tensor | None = None, n_samples: int = 1, sigma: float = 1.0,
                    generator: torch.Generator | None = None,
                    bases: list[_Basis] | None = None) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor] | None]:
    r"""One batch's K-FAC factors and, given eigenbases, EKFAC scalings, from one pass over the model.

    Returns the means :math:`\hat A = \frac1N \sum_{n,t} \bar a_{nt} \bar a_{nt}^\top`,
    :math:`\hat G = \frac{1}{NT} \sum_{n,c,t} b_{nct} b_{nct}^\top` of every layer (those of
    ``fisher(..., representation="kfac")``) and, when ``bases`` (one ``(Q_A, Q_G)`` per layer) is
    given, :math:`\hat S = \frac1N \sum_{n,c} (Q_G^\top g_{nc} Q_A)^2` in those bases (else ``None``).
    Both come from the same forward pass and sampled targets: an optimiser's statistics step
    (:class:`fisherbook.optim.KFAC` with ``eigenvalue_corrected=True``) costs one pass.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(3, 2).double()
    >>> X = torch.randn(10, 3, dtype=torch.float64)
    >>> (A, G), = kfac_statistics(model, X, kind="true")[0]
    >>> A.shape, G.shape
    (torch.Size([4, 4]), torch.Size([2, 2]))
    """
    layout, layers, lik = _setup(model, likelihood, kind, n_samples, generator, sigma)
    if not isinstance(inputs, Tensor):
        raise ArgumentTypeError(f"inputs must be a torch.Tensor with examples along dim 0, got {type(inputs).__name__}")
    x = _prepare(inputs, layout)
    if bases is not None:
        _check_bases(bases, layers)
    stats = _stats(model, x, targets, layers, lik, kind, n_samples, generator)
    n = stats.n
    factors = [(a / n, g / (n * t)) for a, g, t in _factor_sums(stats)]
    scalings = None
    if bases is not None:
        scalings = [_projected_sum(layer, a, b, basis) / n
                    for layer, a, b, basis in zip(stats.layers, stats.a, stats.b, bases)]
    return factors, scalings


def _setup(model: Any, likelihood: Any, kind: Any, n_samples: Any, generator: Any,
           sigma: float) -> tuple[ParamLayout, list[LinearLayer], Likelihood]:
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(likelihood, (str, Likelihood)):
        raise ArgumentTypeError(f"likelihood must be one of {LIKELIHOODS}, got {type(likelihood).__name__}")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int):
        raise ArgumentTypeError(f"n_samples must be a positive int, got {type(n_samples).__name__}")
    if n_samples < 1:
        raise InvalidArgumentError(f"n_samples must be >= 1, got {n_samples}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    lik = get_likelihood(likelihood, sigma)
    layout = ParamLayout.from_model(model)
    check_model(model)
    layers = linear_layout(model, layout, "ekfac", allow_conv=True)
    return layout, layers, lik


def _check_bases(bases: Any, layers: list[LinearLayer]) -> None:
    if not isinstance(bases, (list, tuple)) or len(bases) != len(layers):
        raise ShapeError(f"bases must be a list of one (Q_A, Q_G) pair per layer ({len(layers)})")
    for k, (basis, layer) in enumerate(zip(bases, layers)):
        if not (isinstance(basis, (list, tuple)) and len(basis) == 2 and all(isinstance(q, Tensor) for q in basis)):
            raise ArgumentTypeError(f"bases[{k}] must be a pair (Q_A, Q_G) of tensors")
        i, o = layer.in_features, layer.out_features
        if basis[0].shape != (i, i) or basis[1].shape != (o, o):
            raise ShapeError(f"bases[{k}] must hold Q_A of shape {(i, i)} and Q_G of shape {(o, o)}, got "
                             f"{tuple(basis[0].shape)} and {tuple(basis[1].shape)}")


def _stats(model: nn.Module, x: Tensor, y: Tensor | None, layers: list[LinearLayer], lik: Likelihood, kind: str,
           n_samples: int, generator: torch.Generator | None) -> LinearStats:
    if kind == "empirical" and y is None:
        raise InvalidArgumentError("targets is required for kind='empirical' (one target per example)")

    def factors_fn(f: Tensor) -> Tensor:
        if not bool(torch.isfinite(f).all()):
            from ..errors import NonFiniteError

            raise NonFiniteError("model output must be finite; check the model's parameters and inputs")
        return lik.output_factors(f, kind, y, n_samples, generator)

    return linear_stats(model, x, layers, factors_fn)


def ekfac(model: nn.Module, inputs: Any, likelihood: str | Likelihood = "categorical", kind: str = "true",
          targets: Tensor | None = None, n_samples: int = 1, sigma: float = 1.0,
          generator: torch.Generator | None = None, *, bases: list[_Basis] | None = None,
          progress: bool = False) -> EKFAC:
    r"""The eigenvalue-corrected K-FAC approximation of a model's Fisher (George et al. 2018).

    The K-FAC factors :math:`A, G` of every ``nn.Linear`` / ``nn.Conv2d`` layer (as in
    ``fisher(..., representation="kfac")``), their eigenbases :math:`Q_A, Q_G`, and the second
    moments :math:`S = \frac1N \sum_{n,c} (Q_G^\top g_{nc} Q_A)^2` of the per-example
    pseudo-gradients in the Kronecker eigenbasis. :math:`\operatorname{vec} S` is the diagonal of the
    exact Fisher block in that basis, :math:`\operatorname{diag}(Q^\top F_{\bar W} Q)` with
    :math:`Q = Q_G \otimes Q_A`: the diagonal :math:`D` that minimises
    :math:`\lVert F_{\bar W} - Q D Q^\top \rVert_F`, so EKFAC's block is never farther from the exact one
    than K-FAC's :math:`G \otimes A = Q (\Lambda_G \otimes \Lambda_A) Q^\top` (see :class:`EKFAC`).

    Parameters
    ----------
    model : nn.Module
        Every parameter in an ``nn.Linear`` or ``nn.Conv2d`` (``groups=1``) layer, each layer called
        once per forward pass.
    inputs : Tensor, DataLoader or iterable of batches
        As for :func:`~fisherbook.curvature.fisher`. A tensor takes one pass (factors, bases and
        scalings from the same per-example statistics); batches take two, the first for the factors
        and the second for the scalings (for ``kind="mc"`` the second draws its own targets,
        continuing ``generator``'s stream).
    likelihood, kind, targets, n_samples, sigma, generator
        As for :func:`~fisherbook.curvature.fisher`.
    bases : list of (Tensor, Tensor), optional
        Given eigenbases :math:`(Q_A, Q_G)` per layer (keyword only): the scalings are computed in
        them and the factors are not (``factors`` is then ``None``); an optimiser that refreshes
        its bases rarely uses this.
    progress : bool
        A tqdm progress bar over the batches (keyword only).

    Returns
    -------
    EKFAC

    Raises
    ------
    UnsupportedError
        A parameter outside ``nn.Linear`` / ``nn.Conv2d``.
    ShapeError
        Empty inputs; ``bases`` of the wrong length or shapes.

    Examples
    --------
    >>> import torch
    >>> import fisherbook as fb
    >>> model = torch.nn.Linear(3, 2).double()
    >>> x = torch.randn(1, 3, dtype=torch.float64)  # one example: K-FAC and EKFAC are exact
    >>> E = fb.curvature.ekfac(model, x)
    >>> E.scalings[0].shape
    torch.Size([2, 4])
    >>> torch.allclose(E.to_dense(), fb.curvature.fisher(model, x).to_dense())
    True
    """
    layout, layers, lik = _setup(model, likelihood, kind, n_samples, generator, sigma)
    if bases is not None:
        _check_bases(bases, layers)
    if not isinstance(progress, bool):
        raise ArgumentTypeError(f"progress must be True or False, got {type(progress).__name__}")
    if isinstance(inputs, Tensor):
        x = _prepare(inputs, layout)
        stats = _stats(model, x, targets, layers, lik, kind, n_samples, generator)
        factors = None
        if bases is None:
            factors = [(a / stats.n, g / (stats.n * t)) for a, g, t in _factor_sums(stats)]
            bases = [_basis_of(a, g) for a, g in factors]
        scalings = [_projected_sum(layer, a, b, basis) / stats.n
                    for layer, a, b, basis in zip(stats.layers, stats.a, stats.b, bases)]
        return EKFAC(bases, scalings, layers, layout, factors)
    source = as_batches(inputs, targets, store=True, progress=progress)

    def passes() -> Iterator[LinearStats]:
        for index, (xb, yb) in enumerate(source):
            yield _stats(model, _prepare(xb, layout, name=f"batch {index} of inputs"), yb, layers, lik, kind,
                         n_samples, generator)

    factors = None
    if bases is None:
        total, acc = 0, None
        for st in passes():
            total += st.n
            part = _factor_sums(st)
            acc = part if acc is None else [(a + pa, g + pg, t) for (a, g, t), (pa, pg, _) in zip(acc, part)]
        assert acc is not None  # Batches raises on an empty source
        factors = [(a / total, g / (total * t)) for a, g, t in acc]
        bases = [_basis_of(a, g) for a, g in factors]
    total, sums = 0, None
    for st in passes():
        total += st.n
        part2 = [_projected_sum(layer, a, b, basis) for layer, a, b, basis in zip(st.layers, st.a, st.b, bases)]
        sums = part2 if sums is None else [s + p for s, p in zip(sums, part2)]
    assert sums is not None
    return EKFAC(bases, [s / total for s in sums], layers, layout, factors)
