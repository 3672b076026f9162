r"""Linear algebra shared by the curvature engine and the optimisers: conjugate gradient for
damped curvature systems given only matrix-vector products.

The natural-gradient direction solves :math:`(F + \lambda I)\, d = g`. For a model with many
parameters the Fisher :math:`F` is never formed: conjugate gradient needs only the products
:math:`v \mapsto F v`, which the curvature engine computes in about the cost of two
back-propagations (a Fisher-vector product). After :math:`k` iterations CG has minimised the
quadratic :math:`\tfrac12 d^\top (F + \lambda I) d - g^\top d` over the Krylov space spanned by
:math:`g, (F+\lambda I) g, \dots, (F+\lambda I)^{k-1} g`, so a few iterations already capture the
directions of largest curvature; damping bounds the condition number and so the iterations
needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ._validate import check_finite, check_int, check_real
from .errors import ArgumentTypeError, InvalidArgumentError, ShapeError

__all__ = ["CGResult", "conjugate_gradient"]


class CGResult(NamedTuple):
    """Outcome of :func:`conjugate_gradient`: solution, iteration count, residual norms, convergence."""

    #: The approximate solution :math:`x`.
    solution: Tensor
    #: Number of matrix-vector products used (iterations run).
    iterations: int
    #: Euclidean norm of the residual :math:`b - (A + \lambda I) x` before the first iteration and
    #: after every iteration (length ``iterations + 1``).
    residual_norms: list[float]
    #: Whether the relative residual fell to ``tol`` or below.
    converged: bool


def conjugate_gradient(
    mv: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    damping: float | Tensor = 0.0,
    max_iter: int | None = None,
    tol: float = 1e-10,
    x0: Tensor | None = None,
    preconditioner: Callable[[Tensor], Tensor] | None = None,
) -> CGResult:
    r"""Solve :math:`(A + \lambda I)\, x = b` for symmetric positive semi-definite :math:`A`.

    Only the product :math:`v \mapsto A v` is used. With a preconditioner :math:`M^{-1}` the
    iteration is preconditioned CG; :math:`M` should approximate :math:`A + \lambda I` and be
    symmetric positive definite (a damped diagonal Fisher is the usual choice).

    Parameters
    ----------
    mv : callable
        ``mv(v)`` returns :math:`A v` for a 1-D tensor ``v`` shaped like ``b``.
    b : Tensor
        Right-hand side, a 1-D floating-point tensor.
    damping : float or Tensor
        Tikhonov damping :math:`\lambda \ge 0`: a scalar, or a 1-D tensor shaped like ``b`` for a
        diagonal damping :math:`\operatorname{diag}(\lambda)`.
    max_iter : int, optional
        Iteration cap; defaults to ``b.numel()`` (exact arithmetic converges within that).
    tol : float
        Stop when :math:`\lVert r_k \rVert \le \mathrm{tol}\, \lVert b \rVert`; must be >= 0.
    x0 : Tensor, optional
        Starting point (zeros by default).
    preconditioner : callable, optional
        ``preconditioner(r)`` returns :math:`M^{-1} r`.

    Returns
    -------
    CGResult
        Solution, iteration count, residual norms and convergence flag.

    Raises
    ------
    ShapeError
        If ``b`` is not 1-D, ``damping`` or ``x0`` is not shaped like ``b``, or ``mv`` returns a
        tensor of the wrong shape.
    NonFiniteError
        If ``b``, ``damping`` or ``x0`` holds NaN or infinite values.
    InvalidArgumentError
        If ``damping``, ``max_iter`` or ``tol`` is negative.
    ArgumentTypeError
        If ``b`` is not a floating-point tensor, or a number is given as another type.

    Examples
    --------
    >>> import torch
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> result = conjugate_gradient(lambda v: A @ v, b, damping=0.5)
    >>> result.iterations
    2
    >>> torch.allclose(result.solution, torch.linalg.solve(A + 0.5 * torch.eye(2, dtype=torch.float64), b))
    True
    """
    if not isinstance(b, Tensor) or not b.is_floating_point():
        raise ArgumentTypeError(f"b must be a floating-point torch.Tensor, got {type(b).__name__}")
    if b.dim() != 1:
        raise ShapeError(f"b must be a 1-D tensor, got shape {tuple(b.shape)}")
    check_finite(b, "b")
    if isinstance(damping, Tensor):
        if damping.shape not in (torch.Size([]), b.shape):
            raise ShapeError(f"damping must be a scalar or shaped like b {tuple(b.shape)}, got {tuple(damping.shape)}")
        check_finite(damping, "damping")
        if bool((damping < 0).any()):
            raise InvalidArgumentError("damping must be >= 0 everywhere")
        damping = damping.to(dtype=b.dtype, device=b.device)
    else:
        damping = check_real(damping, "damping", low=0.0)
    max_iter = b.numel() if max_iter is None else check_int(max_iter, "max_iter", minimum=0)
    tol = check_real(tol, "tol", low=0.0)
    if x0 is not None:
        if not isinstance(x0, Tensor):
            raise ArgumentTypeError(f"x0 must be a torch.Tensor shaped like b, got {type(x0).__name__}")
        check_finite(x0, "x0")

    def apply(v: Tensor) -> Tensor:
        out = mv(v)
        if not isinstance(out, Tensor) or out.shape != v.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"mv must return a tensor shaped like its input {tuple(v.shape)}, got {shape}")
        return out + damping * v

    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        if x0.shape != b.shape:
            raise ShapeError(f"x0 must be shaped like b {tuple(b.shape)}, got {tuple(x0.shape)}")
        x = x0.to(dtype=b.dtype, device=b.device).clone()
        r = b - apply(x)
    b_norm = float(torch.linalg.vector_norm(b))
    threshold = tol * b_norm
    r_norm = float(torch.linalg.vector_norm(r))
    norms = [r_norm]
    if r_norm <= threshold or b_norm == 0.0:
        return CGResult(x, 0, norms, True)
    z = preconditioner(r) if preconditioner is not None else r
    p = z.clone()
    rz = torch.dot(r, z)
    iterations = 0
    converged = False
    while iterations < max_iter:
        ap = apply(p)
        curvature = torch.dot(p, ap)
        if not float(curvature) > 0:  # p lies in the null space of an undamped singular A
            break
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * ap
        iterations += 1
        r_norm = float(torch.linalg.vector_norm(r))
        norms.append(r_norm)
        if r_norm <= threshold:
            converged = True
            break
        z = preconditioner(r) if preconditioner is not None else r
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return CGResult(x, iterations, norms, converged)
