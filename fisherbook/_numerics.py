r"""Numerical kernels shared by :mod:`fisherbook.stats`, :mod:`fisherbook.geometry` and :mod:`fisherbook.bayes`.

One of each, each tested once in ``tests/test_inference.py`` (and :func:`chord_newton` in
``tests/test_influence.py``):

- :func:`newton` — a batched, Levenberg–Marquardt damped Newton minimiser (used by
  :func:`~fisherbook.stats.mle.mle`, :func:`~fisherbook.geometry.dualflat.from_expectation`,
  :func:`~fisherbook.geometry.dualflat.m_projection` and
  :func:`~fisherbook.bayes.influence.fit_newton`);
- :func:`chord_newton` — Newton's iteration with the matrix held fixed (the chord or simplified
  Newton method), for a minimiser that moves little from a point whose Hessian is known (the
  leave-one-out retrainings of :func:`~fisherbook.bayes.influence.leave_one_out`);
- :func:`bisect` — a vectorised bisection on a predicate, for NumPy arrays or torch tensors
  (used by the likelihood-ratio intervals of :mod:`fisherbook.stats.intervals` and the
  test-inversion intervals of :mod:`fisherbook.stats.likelihood_intervals`);
- :func:`two_sided_z` — :math:`z_{1-\alpha/2}` for a confidence level, accurate for levels
  very close to 1;
- :func:`spd_inverse` — the inverse of a batch of symmetric positive-definite matrices, refusing
  a non-symmetric or singular one instead of symmetrising it silently.

Private: the public functions call these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ._validate import check_level, check_symmetric_psd
from .errors import NotPositiveDefiniteError

__all__ = ["NewtonResult", "bisect", "bisect_bracket", "chord_newton", "newton", "spd_inverse", "two_sided_z"]

Array = TypeVar("Array", np.ndarray, Tensor)


def two_sided_z(level: Any) -> float:
    r"""The two-sided normal quantile :math:`z = \Phi^{-1}(1 - \alpha/2)`, :math:`\alpha = 1 - \text{level}`.

    Computed as ``norm.isf(alpha / 2)``, which stays finite and accurate for levels as close to 1
    as a double allows (``ndtri(0.5 + level / 2)`` rounds its argument to 1 and returns inf).

    >>> round(two_sided_z(0.95), 6)
    1.959964
    >>> round(two_sided_z(1 - 1e-15), 3)
    8.027
    """
    level = check_level(level)
    return float(stats.norm.isf((1.0 - level) / 2.0))


def spd_inverse(matrix: Tensor, name: str) -> Tensor:
    """Inverse of a (batch of) symmetric positive-definite matrices.

    A matrix that is not symmetric to round-off raises
    :class:`~fisherbook.errors.NotPositiveDefiniteError` (it is never symmetrised silently);
    one whose Cholesky factorisation fails is reported as singular or indefinite.

    >>> spd_inverse(torch.tensor([[4.0, 0.0], [0.0, 0.5]], dtype=torch.float64), "fisher").diagonal()
    tensor([0.2500, 2.0000], dtype=torch.float64)
    """
    check_symmetric_psd(matrix, name, rtol=1e-10, check_eigenvalues=False)
    sym = 0.5 * (matrix + matrix.transpose(-1, -2))  # removes round-off asymmetry only
    chol, info = torch.linalg.cholesky_ex(sym)
    if bool((info != 0).any()):
        raise NotPositiveDefiniteError(
            f"{name} is singular or not positive definite (Cholesky failed); "
            "the parameter is not identifiable from this information"
        )
    return torch.cholesky_inverse(chol)


def bisect_bracket(on_low_side: Callable[[Array], Any], lo: Array, hi: Array, n_iter: int = 64) -> tuple[Array, Array]:
    """The final bracket ``(lo, hi)`` of :func:`bisect`: ``on_low_side`` is True at ``lo``, False at ``hi``."""
    where = torch.where if isinstance(lo, Tensor) else np.where
    lo, hi = lo + 0 * hi, hi + 0 * lo  # broadcast copies
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        low = on_low_side(mid)
        lo = where(low, mid, lo)
        hi = where(low, hi, mid)
    return lo, hi


def bisect(on_low_side: Callable[[Array], Any], lo: Array, hi: Array, n_iter: int = 64) -> Array:
    """Elementwise bisection: shrink ``[lo, hi]`` around the point where ``on_low_side`` flips.

    ``on_low_side(x)`` returns a boolean array, True where ``x`` lies on the ``lo`` side of the
    crossing (for a root of an increasing ``f``: ``f(x) < 0``). Works on NumPy arrays and torch
    tensors alike, fully vectorised; returns the midpoint of the final bracket, whose width is
    ``(hi - lo) / 2**n_iter``.

    >>> import numpy as np
    >>> r = bisect(lambda x: x**2 < 2.0, np.array([0.0]), np.array([2.0]))
    >>> bool(abs(r[0] - 2**0.5) < 1e-15)
    True
    """
    lo, hi = bisect_bracket(on_low_side, lo, hi, n_iter)
    return 0.5 * (lo + hi)


@dataclass
class NewtonResult:
    """Output of :func:`newton`: the minimiser, the objective, its derivatives there, and flags."""

    x: Tensor
    value: Tensor
    grad: Tensor
    hess: Tensor
    converged: Tensor
    n_iter: int


def newton(
    fun: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]],
    value: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    tol: float,
    max_iter: int,
    criterion: str = "decrement",
    max_step: float = 1e6,
) -> NewtonResult:
    r"""Minimise a batch of smooth functions by damped (Levenberg–Marquardt) Newton steps.

    ``fun(x)`` returns the objective ``(*batch)``, its gradient ``(*batch, k)`` and Hessian
    ``(*batch, k, k)`` at ``x`` of shape ``(*batch, k)``; ``value(x)`` the objective alone (inf or
    NaN outside the domain). Each step solves :math:`(H + \lambda I)\delta = -g` with
    :math:`\lambda` shifted past the most negative eigenvalue of :math:`H`; a step that raises the
    objective (beyond round-off) or leaves the domain is rejected and :math:`\lambda` grows
    tenfold, an accepted one divides it by ten. Batch elements are independent.

    A batch element has converged when :math:`H` is positive definite and, for
    ``criterion="decrement"``, the Newton decrement :math:`g^\top H^{-1} g` is below ``tol``, or,
    for ``criterion="gradient"``, :math:`\lVert g\rVert_\infty` is below ``tol``. It then takes one
    last undamped Newton step (whose error is negligible by quadratic convergence) and is frozen.

    Returns a :class:`NewtonResult`; ``converged`` flags each batch element, and the caller
    decides how to report those that did not.
    """
    if criterion not in ("decrement", "gradient"):
        raise ValueError(f"criterion must be 'decrement' or 'gradient', got {criterion!r}")
    x = x0.detach().clone()
    batch, k = x.shape[:-1], x.shape[-1]
    dtype = x.dtype
    eye = torch.eye(k, dtype=dtype)
    lam = torch.zeros(batch, dtype=dtype)
    done = torch.zeros(batch, dtype=torch.bool)
    val, g, H = fun(x)
    it = 0
    for _ in range(max_iter):
        it += 1
        eig_min = torch.linalg.eigvalsh(H)[..., 0]
        diag_scale = H.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
        pd = eig_min > 1e-12 * diag_scale
        if criterion == "decrement":
            safe = torch.where(pd[..., None, None], H, eye)
            dec = (g.unsqueeze(-2) @ torch.linalg.solve(safe, g.unsqueeze(-1))).reshape(batch)
            small = torch.where(pd, dec, torch.full(batch, math.inf, dtype=dtype)) < tol
        else:
            small = g.abs().amax(-1) < tol
        if bool(done.all()):
            break
        newly = pd & small & ~done
        shift = lam + (-eig_min).clamp_min(0) * 1.01 + torch.where(pd, 0.0, 1e-6)
        shift = torch.where(newly, 0.0, shift)
        step = -torch.linalg.solve(H + shift[..., None, None] * eye, g.unsqueeze(-1)).squeeze(-1)
        norm = step.norm(dim=-1, keepdim=True)  # an overflow guard only; the damping does the rest
        step = torch.where(norm > max_step, step * max_step / norm, step)
        step = torch.where(done.unsqueeze(-1), 0.0, step)
        x_new = x + step
        with torch.no_grad():
            val_new = value(x_new)
        ok = torch.isfinite(val_new) & ~done & (newly | (val_new <= val + 1e-12 * val.abs().clamp_min(1.0)))
        done = done | newly
        x = torch.where(ok.unsqueeze(-1), x_new, x)
        lam = torch.where(ok, lam / 10, torch.where(lam > 0, lam * 10, 1e-3 * diag_scale))
        val, g, H = fun(x)
    return NewtonResult(x=x, value=val, grad=g, hess=H, converged=done, n_iter=it)


def chord_newton(
    grad: Callable[[Tensor], Tensor],
    x0: Tensor,
    matrix: Tensor,
    *,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, int, bool]:
    r"""Solve :math:`\nabla J(x) = 0` by the chord method :math:`x_{t+1} = x_t - M^{-1}\nabla J(x_t)`.

    ``matrix`` :math:`M` is a fixed symmetric positive-definite approximation of the Hessian
    (factored once by Cholesky), so each iteration costs one gradient and two triangular solves.
    The iteration converges linearly, at rate :math:`\rho(I - M^{-1}H)` near the root, which is
    small when :math:`M` is the Hessian at a nearby point; it is Newton's method when :math:`M`
    is refreshed every step (:func:`newton`). Stops when :math:`\lVert\nabla J\rVert_2 \le`
    ``tol``.

    Returns ``(x, iterations, converged)``; the caller decides how to report non-convergence
    (for instance by falling back to :func:`newton`).

    >>> A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> x, it, ok = chord_newton(lambda x: A @ x - b, torch.zeros(2, dtype=torch.float64),
    ...                          A + 0.1 * torch.eye(2, dtype=torch.float64), tol=1e-12, max_iter=100)
    >>> ok, bool(torch.allclose(x, torch.linalg.solve(A, b)))
    (True, True)
    """
    chol, info = torch.linalg.cholesky_ex(0.5 * (matrix + matrix.transpose(-1, -2)))
    if int(info) != 0:
        raise NotPositiveDefiniteError("the chord matrix is not positive definite (Cholesky failed)")
    x = x0.detach().clone()
    for it in range(max_iter + 1):
        g = grad(x)
        if float(torch.linalg.vector_norm(g)) <= tol:
            return x, it, True
        if it == max_iter:
            break
        x = x - torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)
    return x, max_iter, False
