r"""Lazy combinations of curvature matrices: sums, scalar multiples and damped inverses.

They arise from the operator algebra of :class:`~fisherbook.curvature.CurvatureMatrix` where the
result has no structured representation of its own (``K + D`` for a K-FAC and a diagonal matrix,
``-K``, the exact damped inverse of a K-FAC matrix) and answer the same interface. Each stores
its terms and computes on demand; exact rules are used where they exist
(:math:`(cF + \lambda I)^{-1} = c^{-1} (F + (\lambda/c) I)^{-1}` for :math:`c > 0`), conjugate
gradient otherwise.

Examples
--------
>>> import torch
>>> import fisherbook as fb
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
>>> X = torch.randn(30, 3, dtype=torch.float64)
>>> K = fb.curvature.fisher(model, X, representation="kfac")
>>> D = fb.curvature.fisher(model, X, representation="diagonal")
>>> S = K + 0.5 * D
>>> type(S).__name__
'Sum'
>>> torch.allclose(S.to_dense(), K.to_dense() + 0.5 * D.to_dense())
True
>>> v = torch.randn(S.num_params, dtype=torch.float64)
>>> x = S.solve(v, damping=0.1)
>>> torch.allclose(S @ x + 0.1 * x, v)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidArgumentError, NotPositiveDefiniteError, UnsupportedError
from .representations import CurvatureMatrix, Dense, _check_damping, cg_solve

__all__ = ["Sum", "Scaled", "Inverse"]


class Sum(CurvatureMatrix):
    r"""The lazy sum :math:`\sum_i F_i` of curvature matrices of one shape.

    Products, diagonal, dense form, trace and quadratic forms add the terms'; ``solve`` runs
    conjugate gradient (the sum must be positive semi-definite, as a sum of Fishers is);
    ``frobenius_norm`` goes through the dense matrix.
    """

    def __init__(self, terms: Sequence[CurvatureMatrix]) -> None:
        flat: list[CurvatureMatrix] = []
        for t in terms:
            if isinstance(t, Sum):
                flat.extend(t.terms)
            else:
                flat.append(t)
        if not flat:
            raise InvalidArgumentError("Sum needs at least one term")
        super().__init__(flat[0].layout)
        for t in flat[1:]:
            self._check_same_shape(t)
        self.terms: list[CurvatureMatrix] = flat

    def _mv(self, v: Tensor) -> Tensor:
        out = self.terms[0]._mv(v)
        for t in self.terms[1:]:
            out = out + t._mv(v)
        return out

    def diag(self) -> Tensor:
        return torch.stack([t.diag() for t in self.terms]).sum(0)

    def to_dense(self) -> Tensor:
        return torch.stack([t.to_dense() for t in self.terms]).sum(0)

    def trace(self) -> Tensor:
        return torch.stack([t.trace() for t in self.terms]).sum()

    def solve(self, v: Tensor, damping: float = 0.0, *, tol: float | None = None,
              max_iter: int | None = None) -> Tensor:
        r"""Conjugate gradient on :math:`(\sum_i F_i + \lambda I) x = v`; ``tol`` and ``max_iter`` are
        keyword-only options as in :meth:`MatrixFree.solve <fisherbook.curvature.MatrixFree.solve>`."""
        return cg_solve(self, v, damping, tol=tol, max_iter=max_iter)

    def _add(self, other: CurvatureMatrix) -> Sum:
        return Sum([*self.terms, other])

    def _scale(self, c: float) -> Sum:
        return Sum([c * t for t in self.terms])

    def __repr__(self) -> str:
        return f"Sum({', '.join(type(t).__name__ for t in self.terms)}; num_params={self.num_params})"


class Scaled(CurvatureMatrix):
    r"""The lazy multiple :math:`c F` of a curvature matrix by a real scalar :math:`c`.

    For :math:`c > 0` ``solve``, ``inverse`` and ``logdet`` use the exact rules
    :math:`(cF + \lambda I)^{-1} = c^{-1}(F + (\lambda / c) I)^{-1}` and
    :math:`\log\det(cF + \lambda I) = P \log c + \log\det(F + (\lambda/c) I)`, with any
    keyword options passed on to ``F``'s own method. For :math:`c \le 0` the matrix is not positive
    semi-definite (unless zero): ``solve`` is exact for :math:`c = 0` and raises
    :class:`~fisherbook.errors.UnsupportedError` for :math:`c < 0`.
    """

    def __init__(self, base: CurvatureMatrix, c: float) -> None:
        super().__init__(base.layout)
        if isinstance(base, Scaled):
            c = c * base.c
            base = base.base
        self.base: CurvatureMatrix = base
        self.c: float = float(c)

    def _mv(self, v: Tensor) -> Tensor:
        return self.c * self.base._mv(v)

    def diag(self) -> Tensor:
        return self.c * self.base.diag()

    def to_dense(self) -> Tensor:
        return self.c * self.base.to_dense()

    def trace(self) -> Tensor:
        return self.c * self.base.trace()

    def frobenius_norm(self) -> Tensor:
        return abs(self.c) * self.base.frobenius_norm()

    def _positive(self, what: str) -> None:
        if self.c < 0:
            raise UnsupportedError(f"{what} of a negative multiple (c={self.c}) of a curvature matrix is not "
                                   "supported: the matrix is negative semi-definite")

    def solve(self, v: Tensor, damping: float = 0.0, **options: Any) -> Tensor:
        r"""Solve :math:`(cF + \lambda I) x = v` through ``F.solve(v, damping=λ/c, **options) / c`` (:math:`c > 0`)."""
        lam = _check_damping(damping)
        self._positive("solve")
        if self.c == 0.0:
            if lam == 0.0:
                raise NotPositiveDefiniteError("the zero matrix is singular; use damping > 0")
            v2, flat = self._check_vec(v)
            return v2[:, 0] / lam if flat else v2 / lam
        return self.base.solve(v, damping=lam / self.c, **options) / self.c

    def inverse(self, damping: float = 0.0, **options: Any) -> CurvatureMatrix:
        lam = _check_damping(damping)
        self._positive("inverse")
        if self.c == 0.0:
            raise UnsupportedError("inverse of the zero matrix: use solve(v, damping) with damping > 0")
        return (1.0 / self.c) * self.base.inverse(lam / self.c, **options)

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        self._positive("logdet")
        if self.c == 0.0:
            if lam == 0.0:
                raise NotPositiveDefiniteError("the zero matrix is singular; use damping > 0")
            return torch.tensor(self.num_params * math.log(lam), dtype=self.dtype, device=self.device)
        return self.num_params * math.log(self.c) + self.base.logdet(lam / self.c)

    def _scale(self, c: float) -> CurvatureMatrix:
        return Scaled(self.base, c * self.c)

    def __repr__(self) -> str:
        return f"Scaled({self.c:g} * {type(self.base).__name__}; num_params={self.num_params})"


class Inverse(CurvatureMatrix):
    r"""The damped inverse :math:`(F + \lambda I)^{-1}` of a curvature matrix, applied through ``F.solve``.

    ``diag_fn`` and ``logdet`` may supply closed forms (K-FAC does, from its eigenbases); otherwise
    :meth:`diag` goes through the dense matrix. ``solve(v)`` without damping is exact:
    :math:`((F + \lambda I)^{-1})^{-1} v = F v + \lambda v`.
    """

    def __init__(self, base: CurvatureMatrix, damping: float, *, diag_fn: Callable[[], Tensor] | None = None,
                 logdet: Tensor | None = None, **options: Any) -> None:
        super().__init__(base.layout)
        self.base = base
        self.damping = _check_damping(damping)
        self._options = options
        self._diag_fn = diag_fn
        self._logdet = logdet

    def _mv(self, v: Tensor) -> Tensor:
        return self.base.solve(v, damping=self.damping, **self._options)

    def diag(self) -> Tensor:
        if self._diag_fn is not None:
            return self._diag_fn()
        return self.to_dense().diagonal().clone()

    def to_dense(self) -> Tensor:
        eye = torch.eye(self.num_params, dtype=self.dtype, device=self.device)
        out = self._mv(eye)
        return 0.5 * (out + out.T)

    def solve(self, v: Tensor, damping: float = 0.0) -> Tensor:
        r"""Solve :math:`((F + \lambda_0 I)^{-1} + \lambda I) x = v`: exact for :math:`\lambda = 0`, else dense."""
        lam = _check_damping(damping)
        v2, flat = self._check_vec(v)
        if lam == 0.0:
            out = self.base._mv(v2) + self.damping * v2
        else:
            out = Dense(self.to_dense(), self.layout).solve(v2, damping=lam)
        return out[:, 0] if flat else out

    def inverse(self, damping: float = 0.0) -> CurvatureMatrix:
        if _check_damping(damping) != 0.0:
            return Dense(self.to_dense(), self.layout).inverse(damping)
        from .representations import Diagonal

        identity = Diagonal(torch.full((self.num_params,), self.damping, dtype=self.dtype, device=self.device),
                            self.layout)
        return self.base + identity

    def logdet(self, damping: float = 0.0) -> Tensor:
        lam = _check_damping(damping)
        if lam == 0.0 and self._logdet is not None:
            return self._logdet
        if lam == 0.0:
            return -self.base.logdet(self.damping)
        return Dense(self.to_dense(), self.layout).logdet(lam)

    def __repr__(self) -> str:
        return f"Inverse({type(self.base).__name__}, damping={self.damping:g}; num_params={self.num_params})"
