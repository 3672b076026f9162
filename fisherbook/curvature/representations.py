r"""Representations of a curvature matrix sharing one interface.

Every representation answers ``mv``, ``solve(v, damping)``, ``diag``, ``to_dense``, ``trace``,
``vTMv``, ``frobenius_norm``, ``to_scipy`` and ``unflatten``; ``inverse(damping)`` and
``logdet(damping)`` where they are cheap. Vectors are flat parameter vectors in
``torch.nn.utils.parameters_to_vector(model.parameters())`` order, of shape ``(P,)`` or
``(P, k)`` (``k`` vectors as columns). ``solve(v, damping)`` solves
:math:`(F + \lambda I) x = v` with Tikhonov damping :math:`\lambda \ge 0`; options that only
one representation has are keyword-only (``KFAC.solve(..., factored=True)``,
``MatrixFree.solve(..., tol=..., max_iter=...)``).

Operator algebra (the matrices are symmetric, so ``F.T`` is ``F``):

- ``F @ v`` and ``v @ F`` for ``v`` of shape ``(P,)``; ``F @ V`` for ``V`` of shape ``(P, k)`` and
  ``W @ F`` for ``W`` of shape ``(k, P)``;
- ``F + G`` keeps the structure where it survives (dense + anything is dense, diagonal + diagonal
  is diagonal, diagonal + block diagonal is block diagonal) and is otherwise a lazy
  :class:`~fisherbook.curvature.operators.Sum`; ``sum([F, G])`` works (``0 + F`` is ``F``);
- ``c * F``, ``F * c``, ``F / c``, ``-F``, ``F - G`` for real scalars ``c`` (a lazy
  :class:`~fisherbook.curvature.operators.Scaled` where the representation cannot absorb ``c``);
- ``F.to_scipy()`` is a ``scipy.sparse.linalg.LinearOperator`` for ``eigsh``, ``lobpcg``, ``cg``.

Examples
--------
>>> import torch, scipy.sparse.linalg as sla
>>> import fisherbook as fb
>>> model = torch.nn.Linear(3, 2).double()
>>> X = torch.randn(20, 3, dtype=torch.float64)
>>> F = fb.curvature.fisher(model, X)
>>> K = fb.curvature.fisher(model, X, representation="kfac")
>>> D = fb.curvature.fisher(model, X, representation="diagonal")
>>> v = torch.randn(8, dtype=torch.float64)
>>> torch.allclose(v @ F, F @ v) and torch.allclose((2 * K + D) @ v, 2 * (K @ v) + D @ v)
True
>>> top = sla.eigsh(F.to_scipy(), k=1, which="LA", return_eigenvectors=False)
>>> bool(abs(top[0] - torch.linalg.eigvalsh(F.to_dense())[-1]) < 1e-10)
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..errors import ArgumentTypeError, ConvergenceError, InvalidArgumentError, NotPositiveDefiniteError, ShapeError
from ..linalg import conjugate_gradient
from .per_example import LinearLayer, ParamLayout

__all__ = ["CurvatureMatrix", "Dense", "Diagonal", "BlockDiagonal", "KFAC", "MatrixFree", "cg_solve"]


def _check_damping(damping: float) -> float:
    if isinstance(damping, Tensor) and damping.numel() == 1:
        damping = float(damping)
    if isinstance(damping, bool) or not isinstance(damping, (int, float)):
        raise ArgumentTypeError(f"damping must be a non-negative float, got {type(damping).__name__}")
    if not (math.isfinite(damping) and damping >= 0):
        raise InvalidArgumentError(f"damping must be a finite float >= 0, got {damping}")
    return float(damping)


def _scalar(c: Any) -> float | None:
    """A real scalar (Python, NumPy or one-element tensor) as float, else None."""
    if isinstance(c, Tensor):
        if c.numel() != 1 or c.is_complex():
            return None
        c = c.item()
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        return None
    c = float(c)
    if not math.isfinite(c):
        raise InvalidArgumentError(f"a curvature matrix can only be scaled by a finite number, got {c}")
    return c


_NUMPY_DTYPES = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16"}


class CurvatureMatrix:
    """Common interface of the curvature representations (a symmetric PSD :math:`P \\times P` matrix)."""

    def __init__(self, layout: ParamLayout) -> None:
        self.layout = layout

    # -- shape and vectors -------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        """Number of parameters :math:`P`."""
        return self.layout.numel

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, P)``."""
        return (self.layout.numel, self.layout.numel)

    @property
    def dtype(self) -> torch.dtype:
        """The model's parameter dtype."""
        return self.layout.dtype

    @property
    def device(self) -> torch.device:
        """The model's device."""
        return self.layout.device

    def unflatten(self, vec: Tensor) -> list[Tensor]:
        """Split a flat parameter vector into tensors shaped like ``model.parameters()``."""
        return self.layout.unflatten(vec)

    def _check_vec(self, v: Tensor, name: str = "v") -> tuple[Tensor, bool]:
        if not isinstance(v, Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
        p = self.layout.numel
        if v.dim() == 1 and v.shape[0] == p:
            return v.to(dtype=self.dtype, device=self.device).unsqueeze(1), True
        if v.dim() == 2 and v.shape[0] == p:
            return v.to(dtype=self.dtype, device=self.device), False
        raise ShapeError(f"{name} must have shape ({p},) or ({p}, k) (flat parameter vectors), got {tuple(v.shape)}")

    def _check_same_shape(self, other: CurvatureMatrix) -> None:
        if other.shape != self.shape:
            raise ShapeError(f"cannot combine curvature matrices of shapes {self.shape} and {other.shape}")

    # -- interface ---------------------------------------------------------------------------
    def mv(self, v: Tensor) -> Tensor:
        """Matrix-vector product :math:`F v` for ``v`` of shape ``(P,)`` or ``(P, k)``."""
        v2, flat = self._check_vec(v)
        out = self._mv(v2)
        return out[:, 0] if flat else out

    # -- operator algebra ----------------------------------------------------------------------
    def __matmul__(self, v: Any) -> Tensor:
        """``F @ v``: ``v`` of shape ``(P,)`` or ``(P, k)``."""
        if not isinstance(v, Tensor):
            return NotImplemented
        return self.mv(v)

    def __rmatmul__(self, v: Any) -> Tensor:
        """``v @ F``: ``v`` of shape ``(P,)`` or ``(k, P)`` (rows); ``F`` is symmetric."""
        if not isinstance(v, Tensor):
            return NotImplemented
        if v.dim() == 2:
            return self.mv(v.T).T
        return self.mv(v)

    @property
    def T(self) -> CurvatureMatrix:  # noqa: N802 - the numpy / scipy name
        """The transpose: the matrix itself (every representation is symmetric)."""
        return self

    def adjoint(self) -> CurvatureMatrix:
        """The adjoint (conjugate transpose): the matrix itself."""
        return self

    def __add__(self, other: Any) -> CurvatureMatrix:
        if _scalar(other) == 0.0:
            return self
        if not isinstance(other, CurvatureMatrix):
            return NotImplemented
        self._check_same_shape(other)
        if isinstance(other, Dense) and not isinstance(self, Dense):
            return other._add(self)
        out = self._add(other)
        if out is NotImplemented:
            out = other._add(self)
        if out is NotImplemented:
            from .operators import Sum

            out = Sum([self, other])
        return out

    def __radd__(self, other: Any) -> CurvatureMatrix:
        if _scalar(other) == 0.0:  # sum([F, G]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: Any) -> CurvatureMatrix:
        if not isinstance(other, CurvatureMatrix):
            return NotImplemented
        return self + (-1.0) * other

    def __mul__(self, c: Any) -> CurvatureMatrix:
        value = _scalar(c)
        if value is None:
            return NotImplemented
        return self._scale(value)

    __rmul__ = __mul__

    def __truediv__(self, c: Any) -> CurvatureMatrix:
        value = _scalar(c)
        if value is None:
            return NotImplemented
        if value == 0.0:
            raise InvalidArgumentError("cannot divide a curvature matrix by zero")
        return self._scale(1.0 / value)

    def __neg__(self) -> CurvatureMatrix:
        return self._scale(-1.0)

    def _add(self, other: CurvatureMatrix) -> Any:
        """``self + other`` in a structured representation, or ``NotImplemented``."""
        return NotImplemented

    def _scale(self, c: float) -> CurvatureMatrix:
        from .operators import Scaled

        return Scaled(self, c)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` of shape ``(P, P)`` computing ``F @ x`` on NumPy arrays.

        Products convert to the matrix's dtype and device and back; the operator is symmetric
        (``rmatvec`` is ``matvec``), so ``eigsh``, ``lobpcg``, ``cg`` and ``minres`` apply.
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        p = self.num_params
        dtype = np.dtype(_NUMPY_DTYPES.get(self.dtype, "float64"))

        def matmat(x):
            t = torch.as_tensor(np.asarray(x).reshape(p, -1)).to(device=self.device, dtype=self.dtype)
            return self.mv(t).detach().cpu().numpy().astype(dtype, copy=False)

        def matvec(x):
            return matmat(x).reshape(-1)

        return LinearOperator((p, p), matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat, dtype=dtype)

    def vTMv(self, v: Tensor) -> Tensor:  # noqa: N802 - nngeometry's name
        r""":math:`v^\top F v`: a 0-d tensor for ``v`` of shape ``(P,)``, shape ``(k,)`` for ``(P, k)`` columns."""
        v2, flat = self._check_vec(v)
        out = (v2 * self._mv(v2)).sum(0)
        return out[0] if flat else out

    def frobenius_norm(self) -> Tensor:
        r"""Frobenius norm :math:`\lVert F \rVert_F = (\sum_{ij} F_{ij}^2)^{1/2}` (a 0-d tensor)."""
        return torch.linalg.matrix_norm(self.to_dense())

    def solve(self, v: Tensor, damping: float = 0.0) -> Tensor:
        r"""Solve :math:`(F + \lambda I) x = v` for ``v`` of shape ``(P,)`` or ``(P, k)``."""
        lam = _check_damping(damping)
        v2, flat = self._check_vec(v)
        out = self._solve(v2, lam)
        return out[:, 0] if flat else out

    def diag(self) -> Tensor:
        """The diagonal, shape ``(P,)``."""
        raise NotImplementedError

    def to_dense(self) -> Tensor:
        """The matrix as a dense ``(P, P)`` tensor."""
        raise NotImplementedError

    def trace(self) -> Tensor:
        """The trace (a 0-d tensor)."""
        return self.diag().sum()

    def inverse(self, damping: float = 0.0) -> CurvatureMatrix:
        r""":math:`(F + \lambda I)^{-1}` in the same representation (where that is cheap)."""
        raise NotImplementedError(f"{type(self).__name__} has no cheap inverse; use solve(v, damping)")

    def logdet(self, damping: float = 0.0) -> Tensor:
        r""":math:`\log\det(F + \lambda I)` (where that is cheap)."""
        raise NotImplementedError(f"{type(self).__name__} has no cheap log-determinant")

    def _mv(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _solve(self, v: Tensor, damping: float) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params}, dtype={self.dtype}, device={self.device})"


def _cholesky(m: Tensor, damping: float) -> Tensor:
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    chol, info = torch.linalg.cholesky_ex(m + damping * eye)
    if bool((info != 0).any()):
        raise NotPositiveDefiniteError(f"F + damping*I is not positive definite (damping={damping}); "
                                       "use a larger damping > 0")
    return chol


class Dense(CurvatureMatrix):
    """A dense :math:`P \\times P` matrix."""

    def __init__(self, matrix: Tensor, layout: ParamLayout) -> None:
        super().__init__(layout)
        if matrix.shape != (layout.numel, layout.numel):
            raise ShapeError(f"matrix must have shape ({layout.numel}, {layout.numel}), got {tuple(matrix.shape)}")
        self.matrix = matrix

    def _mv(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def _solve(self, v: Tensor, damping: float) -> Tensor:
        return torch.cholesky_solve(v, _cholesky(self.matrix, damping))

    def diag(self) -> Tensor:
        return self.matrix.diagonal().clone()

    def to_dense(self) -> Tensor:
        return self.matrix.clone()

    def trace(self) -> Tensor:
        return self.matrix.trace()

    def inverse(self, damping: float = 0.0) -> Dense:
        lam = _check_damping(damping)
        return Dense(torch.cholesky_inverse(_cholesky(self.matrix, lam)), self.layout)

    def frobenius_norm(self) -> Tensor:
        return torch.linalg.matrix_norm(self.matrix)

    def _add(self, other: CurvatureMatrix) -> Dense:
        return Dense(self.matrix + other.to_dense(), self.layout)

    def _scale(self, c: float) -> Dense:
        return Dense(c * self.matrix, self.layout)

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        return 2 * _cholesky(self.matrix, lam).diagonal().log().sum()


class Diagonal(CurvatureMatrix):
    """A diagonal matrix, stored as its ``(P,)`` diagonal."""

    def __init__(self, values: Tensor, layout: ParamLayout) -> None:
        super().__init__(layout)
        if values.shape != (layout.numel,):
            raise ShapeError(f"values must have shape ({layout.numel},), got {tuple(values.shape)}")
        self.values = values

    def _mv(self, v: Tensor) -> Tensor:
        return self.values.unsqueeze(1) * v

    def _positive(self, damping: float) -> Tensor:
        d = self.values + damping
        if bool((d <= 0).any()):
            raise NotPositiveDefiniteError(f"F + damping*I is singular (a zero diagonal entry, damping={damping}); "
                                           "use damping > 0")
        return d

    def _solve(self, v: Tensor, damping: float) -> Tensor:
        return v / self._positive(damping).unsqueeze(1)

    def diag(self) -> Tensor:
        return self.values.clone()

    def to_dense(self) -> Tensor:
        return torch.diag(self.values)

    def inverse(self, damping: float = 0.0) -> Diagonal:
        return Diagonal(1 / self._positive(_check_damping(damping)), self.layout)

    def logdet(self, damping: float = 0.0) -> Tensor:
        return self._positive(_check_damping(damping)).log().sum()

    def trace(self) -> Tensor:
        return self.values.sum()

    def frobenius_norm(self) -> Tensor:
        return torch.linalg.vector_norm(self.values)

    def _add(self, other: CurvatureMatrix) -> Any:
        if isinstance(other, Diagonal):
            return Diagonal(self.values + other.values, self.layout)
        if isinstance(other, BlockDiagonal):
            blocks = [b + torch.diag(self.values[idx]) for b, idx in zip(other.blocks, other.index)]
            return BlockDiagonal(blocks, other.index, self.layout)
        return NotImplemented

    def _scale(self, c: float) -> Diagonal:
        return Diagonal(c * self.values, self.layout)


class BlockDiagonal(CurvatureMatrix):
    """Dense blocks on the diagonal, one per layer (the parameters a module owns directly).

    ``index[b]`` holds the flat parameter positions of block ``b``; ``blocks[b]`` is its dense matrix.
    """

    def __init__(self, blocks: list[Tensor], index: list[Tensor], layout: ParamLayout) -> None:
        super().__init__(layout)
        if len(blocks) != len(index):
            raise ShapeError("blocks and index must have the same length")
        covered = torch.cat(index).sort().values if index else torch.empty(0, dtype=torch.long)
        if covered.numel() != layout.numel or not torch.equal(covered.cpu(), torch.arange(layout.numel)):
            raise ShapeError("index must partition the flat parameter positions 0..P-1")
        self.blocks = blocks
        self.index = [i.to(layout.device) for i in index]

    def _mv(self, v: Tensor) -> Tensor:
        out = torch.empty_like(v)
        for blk, idx in zip(self.blocks, self.index):
            out[idx] = blk @ v[idx]
        return out

    def _solve(self, v: Tensor, damping: float) -> Tensor:
        out = torch.empty_like(v)
        for blk, idx in zip(self.blocks, self.index):
            out[idx] = torch.cholesky_solve(v[idx], _cholesky(blk, damping))
        return out

    def diag(self) -> Tensor:
        out = torch.empty(self.num_params, dtype=self.dtype, device=self.device)
        for blk, idx in zip(self.blocks, self.index):
            out[idx] = blk.diagonal()
        return out

    def to_dense(self) -> Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        for blk, idx in zip(self.blocks, self.index):
            out[idx.unsqueeze(1), idx.unsqueeze(0)] = blk
        return out

    def inverse(self, damping: float = 0.0) -> BlockDiagonal:
        lam = _check_damping(damping)
        return BlockDiagonal([torch.cholesky_inverse(_cholesky(b, lam)) for b in self.blocks], self.index,
                             self.layout)

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        return sum(2 * _cholesky(b, lam).diagonal().log().sum() for b in self.blocks)  # type: ignore[return-value]  # a sum of 0-d tensors is a tensor

    def trace(self) -> Tensor:
        return sum(b.trace() for b in self.blocks)  # type: ignore[return-value]  # a sum of 0-d tensors is a tensor

    def frobenius_norm(self) -> Tensor:
        return torch.stack([torch.linalg.matrix_norm(b) for b in self.blocks]).square().sum().sqrt()

    def _same_blocks(self, other: BlockDiagonal) -> bool:
        return len(self.index) == len(other.index) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(self.index, other.index))

    def _add(self, other: CurvatureMatrix) -> Any:
        if isinstance(other, BlockDiagonal) and self._same_blocks(other):
            return BlockDiagonal([a + b for a, b in zip(self.blocks, other.blocks)], self.index, self.layout)
        return NotImplemented

    def _scale(self, c: float) -> BlockDiagonal:
        return BlockDiagonal([c * b for b in self.blocks], self.index, self.layout)


def _kfac_index(layer: LinearLayer, layout: ParamLayout) -> Tensor:
    """Flat positions of the augmented weight [W, b] (row-major, shape (O, I)) of a Linear layer."""
    o = layer.out_features
    i_w = layer.weight_in
    w = layout.offsets[layer.weight_index] + torch.arange(o * i_w).reshape(o, i_w)
    if layer.bias_index is not None:
        b = layout.offsets[layer.bias_index] + torch.arange(o).reshape(o, 1)
        w = torch.cat([w, b], dim=1)
    return w.reshape(-1)


class KFAC(CurvatureMatrix):
    r"""Kronecker-factored blocks, one per ``nn.Linear`` layer (Martens & Grosse 2015).

    For a layer with augmented weight :math:`\bar W = [W, b]` (the bias as an extra input column),
    the block over :math:`\operatorname{vec}(\bar W)` (row-major) is :math:`G \otimes A`, where

    .. math::

        A = \frac1N \sum_n \bar a_n \bar a_n^\top, \qquad
        G = \frac1N \sum_{n, c} b_{nc} b_{nc}^\top,

    :math:`\bar a_n` is the layer input with a ones-column appended and :math:`b_{nc}` the
    back-propagated output factor (see ``fisherbook.curvature.per_example``). Off-diagonal
    (between-layer) blocks are zero. ``factors`` is the list of ``(A, G)`` pairs, in the order of
    ``modules``.

    An ``nn.Conv2d`` layer (KFC, Grosse & Martens 2016) uses the weight as an
    :math:`O \times (I k_h k_w)` matrix on unfolded input patches :math:`\bar a_{n,t}` at the
    :math:`T` output positions: :math:`A = \frac1N \sum_{n,t} \bar a_{n,t} \bar a_{n,t}^\top`,
    :math:`G = \frac{1}{NT} \sum_{n,c,t} b_{nc,t} b_{nc,t}^\top`.

    ``solve(v, damping)`` is exact for :math:`G \otimes A + \lambda I` through the eigendecompositions
    of the factors; ``solve(v, damping, factored=True)`` uses the factored Tikhonov damping
    :math:`(A + \pi \sqrt\lambda I) \otimes (G + \sqrt\lambda / \pi\, I)` with
    :math:`\pi = \sqrt{(\operatorname{tr} A / \dim A) / (\operatorname{tr} G / \dim G)}`
    (Martens & Grosse 2015, §6.3).
    """

    def __init__(self, factors: list[tuple[Tensor, Tensor]], layers: list[LinearLayer], layout: ParamLayout) -> None:
        super().__init__(layout)
        if len(factors) != len(layers):
            raise ShapeError(f"factors must hold one (A, G) pair per nn.Linear layer ({len(layers)}), "
                             f"got {len(factors)}")
        for k, ((a, g), layer) in enumerate(zip(factors, layers)):
            if a.shape != (layer.in_features, layer.in_features) or g.shape != (layer.out_features,
                                                                                 layer.out_features):
                raise ShapeError(f"factors[{k}] must have A of shape {(layer.in_features,) * 2} and G of shape "
                                 f"{(layer.out_features,) * 2}, got {tuple(a.shape)} and {tuple(g.shape)}")
        self.factors = list(factors)
        self.layers = layers
        self._index = [_kfac_index(layer, layout).to(layout.device) for layer in layers]
        self._eig: list[tuple[Tensor, Tensor, Tensor, Tensor]] | None = None

    @classmethod
    def from_factors(cls, model: torch.nn.Module, factors: list[tuple[Tensor, Tensor]]) -> KFAC:
        """A KFAC matrix for ``model`` from given ``(A, G)`` factors (e.g. running averages in an optimiser)."""
        from .per_example import linear_layout

        layout = ParamLayout.from_model(model)
        return cls(factors, linear_layout(model, layout, "kfac", allow_conv=True), layout)

    @property
    def modules(self) -> list[torch.nn.Linear | torch.nn.Conv2d]:
        """The ``nn.Linear`` / ``nn.Conv2d`` modules, in the order of ``factors``."""
        return [layer.module for layer in self.layers]

    def _eigens(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        if self._eig is None:
            self._eig = []
            for a, g in self.factors:
                ea, qa = torch.linalg.eigh(a)
                eg, qg = torch.linalg.eigh(g)
                self._eig.append((ea.clamp_min(0), qa, eg.clamp_min(0), qg))
        return self._eig

    def _blocks_of(self, v: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        # v: (P, k) -> per layer (k, O, I)
        for (a, g), idx, layer in zip(self.factors, self._index, self.layers):
            yield a, g, idx, v[idx].T.reshape(v.shape[1], layer.out_features, layer.in_features)

    def _mv(self, v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        for a, g, idx, vb in self._blocks_of(v):
            out[idx] = (g @ vb @ a).reshape(v.shape[1], -1).T
        return out

    def solve(self, v: Tensor, damping: float = 0.0, *, factored: bool = False) -> Tensor:
        r"""Solve :math:`(G \otimes A + \lambda I) x = v` blockwise.

        ``factored=True`` (keyword only, K-FAC's own option) solves with the factored damping
        :math:`(G + \sqrt\lambda / \pi\, I) \otimes (A + \pi \sqrt\lambda I)` instead.
        """
        lam = _check_damping(damping)
        v2, flat = self._check_vec(v)
        out = torch.zeros_like(v2)
        for (ea, qa, eg, qg), (a, g, idx, vb) in zip(self._eigens(), self._blocks_of(v2)):
            if factored:
                pi = self._pi(a, g)
                denom = (eg + math.sqrt(lam) / pi).unsqueeze(1) * (ea + pi * math.sqrt(lam)).unsqueeze(0)
            else:
                denom = eg.unsqueeze(1) * ea.unsqueeze(0) + lam
            if bool((denom <= 0).any()):
                raise NotPositiveDefiniteError(f"the KFAC block is singular (damping={damping}); use damping > 0")
            x = qg @ ((qg.T @ vb @ qa) / denom) @ qa.T
            out[idx] = x.reshape(v2.shape[1], -1).T
        return out[:, 0] if flat else out

    @staticmethod
    def _pi(a: Tensor, g: Tensor) -> float:
        ta = float(a.trace()) / a.shape[0]
        tg = float(g.trace()) / g.shape[0]
        if ta <= 0 or tg <= 0:
            return 1.0
        return math.sqrt(ta / tg)

    def diag(self) -> Tensor:
        out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        for (a, g), idx in zip(self.factors, self._index):
            out[idx] = (g.diagonal().unsqueeze(1) * a.diagonal().unsqueeze(0)).reshape(-1)
        return out

    def to_dense(self) -> Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        for (a, g), idx in zip(self.factors, self._index):
            out[idx.unsqueeze(1), idx.unsqueeze(0)] = torch.kron(g, a)
        return out

    def trace(self) -> Tensor:
        return sum(a.trace() * g.trace() for a, g in self.factors)  # type: ignore[return-value]  # 0-d tensors

    def frobenius_norm(self) -> Tensor:
        r""":math:`(\sum_l \lVert A_l \rVert_F^2 \lVert G_l \rVert_F^2)^{1/2}` (the norm of a Kronecker
        product is the product of the norms)."""
        sq = [torch.linalg.matrix_norm(a).square() * torch.linalg.matrix_norm(g).square() for a, g in self.factors]
        return torch.stack(sq).sum().sqrt()

    def _scale(self, c: float) -> CurvatureMatrix:
        if c < 0:
            return super()._scale(c)
        return KFAC([(a, c * g) for a, g in self.factors], self.layers, self.layout)

    def _damped_denominators(self, lam: float, factored: bool) -> list[Tensor]:
        out = []
        for (ea, _, eg, _), (a, g) in zip(self._eigens(), self.factors):
            if factored:
                pi = self._pi(a, g)
                d = (eg + math.sqrt(lam) / pi).unsqueeze(1) * (ea + pi * math.sqrt(lam)).unsqueeze(0)
            else:
                d = eg.unsqueeze(1) * ea.unsqueeze(0) + lam
            if bool((d <= 0).any()):
                raise NotPositiveDefiniteError(f"the KFAC block is singular (damping={lam}); use damping > 0")
            out.append(d)
        return out

    def inverse(self, damping: float = 0.0, *, factored: bool = False) -> CurvatureMatrix:
        r""":math:`(G \otimes A + \lambda I)^{-1}` from the factors' eigendecompositions.

        The exact damped inverse is not Kronecker-factored; it is returned as a
        :class:`~fisherbook.curvature.operators.Inverse` whose products, diagonal and dense form
        come from the eigenbases :math:`Q_G \otimes Q_A`. With ``factored=True`` (keyword only) the
        inverse of the factored damping is a :class:`KFAC` with factors
        :math:`(A + \pi\sqrt\lambda I)^{-1}`, :math:`(G + \sqrt\lambda/\pi\, I)^{-1}`.
        """
        from .operators import Inverse

        lam = _check_damping(damping)
        denominators = self._damped_denominators(lam, factored)
        if factored:
            factors = []
            for (ea, qa, eg, qg), (a, g) in zip(self._eigens(), self.factors):
                pi = self._pi(a, g)
                inv_a = (qa / (ea + pi * math.sqrt(lam))) @ qa.T
                inv_g = (qg / (eg + math.sqrt(lam) / pi)) @ qg.T
                factors.append((inv_a, inv_g))
            return KFAC(factors, self.layers, self.layout)

        def diag() -> Tensor:
            out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
            for (_, qa, _, qg), d, idx in zip(self._eigens(), denominators, self._index):
                out[idx] = ((qg.square() @ (1 / d)) @ qa.square().T).reshape(-1)
            return out

        logdet = -torch.stack([d.log().sum() for d in denominators]).sum()
        return Inverse(self, lam, diag_fn=diag, logdet=logdet)

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        for ea, _, eg, _ in self._eigens():
            d = eg.unsqueeze(1) * ea.unsqueeze(0) + lam
            if bool((d <= 0).any()):
                raise NotPositiveDefiniteError(f"the KFAC block is singular (damping={damping}); use damping > 0")
            total = total + d.log().sum()
        return total


def cg_solve(op: CurvatureMatrix, v: Tensor, damping: float, *, tol: float | None, max_iter: int | None) -> Tensor:
    """Conjugate gradient on ``(op + damping I) x = v`` column by column (``op`` symmetric PSD)."""
    lam = _check_damping(damping)
    v2, flat = op._check_vec(v)
    if tol is None:
        tol = 1e-10 if v2.dtype == torch.float64 else 1e-5
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol > 0):
        raise InvalidArgumentError(f"tol must be a positive float, got {tol}")
    if max_iter is None:
        max_iter = 2 * op.num_params
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InvalidArgumentError(f"max_iter must be a positive int, got {max_iter}")
    cols = []
    for j in range(v2.shape[1]):
        result = conjugate_gradient(lambda x: op._mv(x.unsqueeze(1))[:, 0], v2[:, j],
                                    damping=lam, tol=tol, max_iter=max_iter)
        if not result.converged:
            if result.iterations < max_iter:
                raise NotPositiveDefiniteError("conjugate gradient met a direction of zero curvature: the matrix "
                                               "is singular, use damping > 0")
            raise ConvergenceError(f"conjugate gradient did not reach tol={tol:g} in max_iter={max_iter} iterations")
        cols.append(result.solution)
    out = torch.stack(cols, dim=1)
    return out[:, 0] if flat else out


class MatrixFree(CurvatureMatrix):
    r"""Fisher-vector products without forming the matrix: :math:`F v = \frac1N J^\top S S^\top J v`.

    ``mv`` costs one forward-mode (``torch.func.jvp``) and one reverse-mode pass over the batch;
    ``solve`` runs conjugate gradient on ``mv``; ``diag``/``to_dense`` are computed exactly on first
    use from the same output factors (so they agree with ``mv`` also for ``kind="mc"``).

    Built from a ``DataLoader`` or an iterable of batches, it stores only that source (a one-shot
    iterator: the list of its batches) and streams over it on every ``mv``, ``diag`` and
    ``to_dense``, so memory holds one batch's statistics at a time; ``kind="mc"`` replays the same
    generator state on every pass.
    """

    def __init__(self, mv_fn: Callable[[Tensor], Tensor], dense_fn: Callable[[], Tensor],
                 diag_fn: Callable[[], Tensor], layout: ParamLayout) -> None:
        super().__init__(layout)
        self._mv_fn = mv_fn
        self._dense_fn = dense_fn
        self._diag_fn = diag_fn
        self._diag: Tensor | None = None

    def _mv(self, v: Tensor) -> Tensor:
        # the product differentiates through the model, so it must work inside torch.no_grad()
        # (optimiser steps, evaluation loops); the result carries no graph.
        with torch.enable_grad():
            return self._mv_fn(v).detach()

    def solve(self, v: Tensor, damping: float = 0.0, *, tol: float | None = None,
              max_iter: int | None = None) -> Tensor:
        r"""Conjugate gradient on :math:`(F + \lambda I) x = v` to relative residual ``tol``.

        ``tol`` and ``max_iter`` are keyword only (options of the iterative solve): ``tol``
        defaults to 1e-10 in float64 and 1e-5 in lower precision, ``max_iter`` to twice the number
        of parameters. Raises :class:`~fisherbook.errors.NotPositiveDefiniteError` (a
        ``ValueError``) when CG meets a direction of zero curvature (a singular Fisher without
        damping) and :class:`~fisherbook.errors.ConvergenceError` when it does not reach ``tol``.
        """
        return cg_solve(self, v, damping, tol=tol, max_iter=max_iter)

    def diag(self) -> Tensor:
        if self._diag is None:
            self._diag = self._diag_fn()
        return self._diag.clone()

    def to_dense(self) -> Tensor:
        return self._dense_fn()

    def trace(self) -> Tensor:
        """The exact trace, from :meth:`diag`."""
        return self.diag().sum()
