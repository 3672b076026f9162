r"""Spectra of curvature matrices through their matrix-vector products.

Every function here takes ``M`` as one of

- a :class:`~fisherbook.curvature.representations.CurvatureMatrix` (any representation: only
  ``mv`` is used, so a ``"matrix_free"`` Fisher never forms the matrix);
- a square symmetric ``torch.Tensor``;
- a callable ``v -> M v`` on vectors of shape ``(P,)``, together with ``size=P``.

and never needs more than products :math:`v \mapsto Mv`:

- :func:`lanczos`: the Lanczos tridiagonalisation with full reorthogonalisation;
- :func:`top_eigenpairs`: the largest eigenpairs from the Ritz pairs of Lanczos;
- :func:`spectral_density`: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; the method
  PyHessian uses for the Hessian, Yao et al. 2020), a spectral measure as nodes and weights;
- :func:`hutchinson_trace`: the Hutchinson trace estimate with its standard error;
- :func:`as_linear_operator`: a ``scipy.sparse.linalg.LinearOperator`` for ``eigsh``, ``cg``, ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from .._validate import check_int, check_option, check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeError
from .representations import CurvatureMatrix

__all__ = [
    "Operator", "as_operator", "as_linear_operator", "Lanczos", "lanczos", "Eigenpairs", "top_eigenpairs",
    "SpectralDensity", "spectral_density", "TraceEstimate", "hutchinson_trace",
]

@dataclass
class Operator:
    """A symmetric linear map given by its product ``mv`` on vectors of shape ``(size,)``."""

    mv: Callable[[Tensor], Tensor]
    size: int
    dtype: torch.dtype
    device: torch.device


MatrixLike = CurvatureMatrix | Tensor | Callable[[Tensor], Tensor] | Operator


def as_operator(M: MatrixLike, size: int | None = None, dtype: torch.dtype = torch.float64) -> Operator:
    """Wrap a curvature matrix, a square tensor or a callable ``v -> Mv`` as an :class:`Operator`.

    ``size`` is required for a callable (and checked against the others); ``dtype`` is the dtype of
    the probe vectors a callable receives.

    Examples
    --------
    >>> import torch
    >>> op = as_operator(lambda v: 2 * v, size=3)
    >>> op.mv(torch.ones(3, dtype=torch.float64))
    tensor([2., 2., 2.], dtype=torch.float64)
    """
    if isinstance(M, Operator):
        op = M
    elif isinstance(M, CurvatureMatrix):
        op = Operator(M.mv, M.num_params, M.dtype, M.device)
    elif isinstance(M, Tensor):
        if M.dim() != 2 or M.shape[0] != M.shape[1]:
            raise ShapeError(f"M must be a square matrix, got shape {tuple(M.shape)}")
        if not M.is_floating_point():
            raise ArgumentTypeError(f"M must be a floating-point tensor, got {M.dtype}")
        mat = M
        op = Operator(lambda v: mat @ v, M.shape[0], M.dtype, M.device)
    elif callable(M):
        if size is None:
            raise ArgumentTypeError("size is required when M is a callable v -> Mv")
        op = Operator(M, check_int(size, "size"), dtype, torch.device("cpu"))
    else:
        raise ArgumentTypeError(f"M must be a CurvatureMatrix, a square torch.Tensor or a callable v -> Mv, "
                                f"got {type(M).__name__}")
    if size is not None and check_int(size, "size") != op.size:
        raise ShapeError(f"size={size} does not match the matrix size {op.size}")
    return op


def as_linear_operator(M: MatrixLike, size: int | None = None,
                       dtype: torch.dtype = torch.float64) -> LinearOperator:
    """A ``scipy.sparse.linalg.LinearOperator`` computing ``M @ x`` (float64 NumPy in and out).

    Examples
    --------
    >>> import torch
    >>> from scipy.sparse.linalg import eigsh
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> vals = eigsh(as_linear_operator(A), k=2, which="LA", return_eigenvectors=False)
    >>> sorted(vals.round(6).tolist())
    [9.0, 10.0]
    """
    op = as_operator(M, size, dtype)

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), dtype=op.dtype, device=op.device)
        return op.mv(v).detach().to("cpu", torch.float64).numpy()

    return LinearOperator((op.size, op.size), matvec=matvec, rmatvec=matvec, dtype=np.float64)


@dataclass
class Lanczos:
    r"""The Lanczos decomposition :math:`M Q \approx Q T` with :math:`T` tridiagonal.

    ``alpha`` (length :math:`m`) is the diagonal of :math:`T` and ``beta`` (length :math:`m-1`) its
    off-diagonal; ``basis`` is :math:`Q`, shape ``(P, m)``, with orthonormal columns and first
    column the normalised start vector. A zero in ``beta`` marks an invariant subspace that was
    found (and, with ``restart=True``, a fresh start vector orthogonal to it).
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor

    def tridiagonal(self) -> Tensor:
        """:math:`T` as a dense ``(m, m)`` tensor."""
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)


def _start(op: Operator, v0: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if v0 is None:
        v = torch.randn(op.size, generator=generator, dtype=op.dtype)
    else:
        if not isinstance(v0, Tensor):
            raise ArgumentTypeError(f"v0 must be a torch.Tensor, got {type(v0).__name__}")
        if v0.shape != (op.size,):
            raise ShapeError(f"v0 must have shape ({op.size},), got {tuple(v0.shape)}")
        v = v0.detach().to(op.dtype)
    norm = float(v.norm())
    if not (math.isfinite(norm) and norm > 0):
        raise InvalidArgumentError("v0 must be a finite, non-zero vector")
    return (v / norm).to(op.device)


def lanczos(M: MatrixLike, n_iter: int, v0: Tensor | None = None, size: int | None = None,
            generator: torch.Generator | None = None, restart: bool = False) -> Lanczos:
    r"""Lanczos tridiagonalisation of a symmetric ``M`` with full reorthogonalisation.

    From a unit start vector :math:`q_1` the recurrence
    :math:`\beta_j q_{j+1} = M q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}` builds an orthonormal basis
    :math:`Q_m` of the Krylov space :math:`\mathcal K_m(M, q_1)` in which :math:`Q_m^\top M Q_m = T_m`
    is tridiagonal. Each new vector is re-orthogonalised against all earlier ones (twice, Gram–Schmidt),
    so the basis stays orthonormal to rounding error and no spurious copies of eigenvalues appear
    (Golub & Van Loan, *Matrix Computations*, §10.3). The iteration stops early when
    :math:`\beta_j` falls to rounding level (the Krylov space is invariant): then, with
    ``restart=True``, it continues from a random vector orthogonal to the basis (a zero is stored
    in ``beta``), else it returns the shorter decomposition.

    Parameters
    ----------
    M : CurvatureMatrix, Tensor or callable
        The symmetric matrix, through its products (see the module docstring).
    n_iter : int
        Number of Lanczos vectors :math:`m`, at most the size :math:`P`.
    v0 : Tensor, optional
        Start vector, shape ``(P,)``; a standard normal vector from ``generator`` by default.
    size : int, optional
        :math:`P`, required when ``M`` is a callable.
    generator : torch.Generator, optional
        For the start vector and restarts.
    restart : bool
        Continue past an invariant subspace (for eigenvalues) rather than stop (for quadrature).

    Examples
    --------
    >>> import torch
    >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> lz = lanczos(A, 3, v0=torch.ones(3, dtype=torch.float64))
    >>> torch.linalg.eigvalsh(lz.tridiagonal()).round(decimals=10)
    tensor([1., 2., 3.], dtype=torch.float64)
    """
    op = as_operator(M, size)
    m = check_int(n_iter, "n_iter", minimum=1, maximum=op.size)
    q = _start(op, v0, generator)
    basis = torch.zeros(op.size, m, dtype=op.dtype, device=op.device)
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0
    for j in range(m):
        basis[:, j] = q
        w = op.mv(q).detach().to(op.dtype)
        a = float(q @ w)
        alpha.append(a)
        for _ in range(2):  # full reorthogonalisation, twice is enough (Kahan-Parlett)
            w = w - basis[:, :j + 1] @ (basis[:, :j + 1].T @ w)
        b = float(w.norm())
        scale = max(scale, abs(a), b)
        if j == m - 1:
            break
        tol = 1e3 * torch.finfo(op.dtype).eps * max(scale, torch.finfo(op.dtype).tiny)
        if b <= tol:
            if not restart:
                basis = basis[:, :j + 1]
                break
            r = torch.randn(op.size, generator=generator, dtype=op.dtype).to(op.device)
            for _ in range(2):
                r = r - basis[:, :j + 1] @ (basis[:, :j + 1].T @ r)
            beta.append(0.0)
            q = r / r.norm()
        else:
            beta.append(b)
            q = w / b
    k = len(alpha)
    return Lanczos(torch.tensor(alpha, dtype=op.dtype), torch.tensor(beta[:k - 1], dtype=op.dtype), basis)


@dataclass
class Eigenpairs:
    """Eigenvalues in decreasing order and the matching unit eigenvectors (columns, shape ``(P, k)``)."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor


def top_eigenpairs(M: MatrixLike, k: int, n_iter: int | None = None, size: int | None = None,
                   generator: torch.Generator | None = None) -> Eigenpairs:
    r"""The ``k`` largest eigenvalues of a symmetric ``M`` and their eigenvectors, by Lanczos.

    The Ritz pairs :math:`(\theta_i, Q_m s_i)` of :func:`lanczos` (with restarts) approximate the
    extreme eigenpairs first; with :math:`m = P` they are exact. ``residuals`` holds
    :math:`\|M x_i - \theta_i x_i\|`, which bounds the distance from :math:`\theta_i` to the spectrum
    (Golub & Van Loan, Thm. 8.1.15), so a caller can check convergence.

    Parameters
    ----------
    k : int
        Number of eigenpairs, ``1 <= k <= P``.
    n_iter : int, optional
        Lanczos steps, default ``min(P, max(2k + 20, 40))``.

    Examples
    --------
    >>> import torch
    >>> A = torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))
    >>> [round(v, 3) for v in top_eigenpairs(A, 3, generator=torch.Generator().manual_seed(0)).values.tolist()]
    [50.0, 49.0, 48.0]
    """
    op = as_operator(M, size)
    k = check_int(k, "k", minimum=1, maximum=op.size)
    m = min(op.size, max(2 * k + 20, 40)) if n_iter is None else check_int(n_iter, "n_iter", minimum=k,
                                                                          maximum=op.size)
    lz = lanczos(op, m, generator=generator, restart=True)
    theta, s = torch.linalg.eigh(lz.tridiagonal())
    order = torch.argsort(theta, descending=True)[:k]
    values = theta[order]
    vectors = lz.basis @ s[:, order].to(lz.basis.device)
    resid = torch.stack([(op.mv(vectors[:, i]).detach() - values[i] * vectors[:, i]).norm() for i in range(k)])
    return Eigenpairs(values, vectors, resid)


@dataclass
class SpectralDensity:
    r"""A spectral measure from stochastic Lanczos quadrature.

    ``nodes[l]`` and ``weights[l]`` are the Gauss quadrature nodes and weights of probe :math:`l`
    (each weight vector sums to one); the estimated spectral measure is
    :math:`\hat\mu = \frac1L \sum_l \sum_j w_{lj} \delta_{\theta_{lj}}`, an estimate of
    :math:`\mu = \frac1P \sum_i \delta_{\lambda_i}`.
    """

    nodes: list[Tensor]
    weights: list[Tensor]
    size: int

    def moment(self, power: int) -> float:
        r"""Estimate of :math:`\operatorname{tr}(M^k) / P`, i.e. :math:`\int \lambda^k d\mu`."""
        k = check_int(power, "power", minimum=0)
        return float(np.mean([float((w * t**k).sum()) for t, w in zip(self.nodes, self.weights)]))

    def trace(self, fn: Callable[[Tensor], Tensor]) -> float:
        r"""Estimate of :math:`\operatorname{tr} f(M) = P \int f\, d\mu` for a function applied elementwise."""
        return self.size * float(np.mean([float((w * fn(t)).sum()) for t, w in zip(self.nodes, self.weights)]))

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        r"""The measure smoothed by a Gaussian kernel of width ``sigma``, evaluated on ``grid``.

        :math:`\hat\phi(t) = \frac1L \sum_{l,j} w_{lj}\, \mathcal N(t; \theta_{lj}, \sigma^2)`, a density
        that integrates to one (PyHessian's plot of the Hessian density).
        """
        s = check_real(sigma, "sigma", low=0.0, open_low=True)
        out = torch.zeros_like(grid, dtype=torch.float64)
        g = grid.to(torch.float64)
        for t, w in zip(self.nodes, self.weights):
            z = (g.unsqueeze(1) - t.to(torch.float64).unsqueeze(0)) / s
            out += (w.to(torch.float64) * torch.exp(-0.5 * z**2)).sum(1) / (s * math.sqrt(2 * math.pi))
        return out / len(self.nodes)


def spectral_density(M: MatrixLike, n_iter: int, n_probes: int, size: int | None = None,
                     generator: torch.Generator | None = None) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature of the spectral measure of a symmetric ``M``.

    For a probe :math:`v` with independent Rademacher entries, :math:`\operatorname E[v^\top f(M) v] =
    \operatorname{tr} f(M)`. Lanczos from :math:`q_1 = v/\|v\|` for :math:`m` steps gives
    :math:`T_m = S \Theta S^\top`, and :math:`q_1^\top f(M) q_1 \approx \sum_j \tau_j^2 f(\theta_j)`
    with :math:`\tau_j = S_{1j}`: Gauss quadrature for the measure
    :math:`\sum_i (u_i^\top q_1)^2 \delta_{\lambda_i}`, exact for polynomials :math:`f` of degree
    at most :math:`2m - 1` (Golub & Meurant 2010; Ubaru, Chen & Saad 2017). Averaging over
    ``n_probes`` probes estimates :math:`\frac1P\operatorname{tr} f(M)`.

    Examples
    --------
    >>> import torch
    >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
    >>> sd = spectral_density(A, n_iter=10, n_probes=4, generator=torch.Generator().manual_seed(0))
    >>> round(sd.moment(1) * 100)  # tr(A); Rademacher probes are exact for a diagonal matrix
    5050
    >>> round(sd.moment(2) * 100)  # tr(A^2) = 338350: Gauss quadrature with 10 nodes is exact up to degree 19
    338350
    """
    op = as_operator(M, size)
    m = check_int(n_iter, "n_iter", minimum=1, maximum=op.size)
    n = check_int(n_probes, "n_probes", minimum=1)
    nodes, weights = [], []
    for _ in range(n):
        v = torch.randint(0, 2, (op.size,), generator=generator).to(op.dtype) * 2 - 1
        lz = lanczos(op, m, v0=v.to(op.device))
        theta, s = torch.linalg.eigh(lz.tridiagonal())
        nodes.append(theta.cpu())
        weights.append((s[0] ** 2).cpu())
    return SpectralDensity(nodes, weights, op.size)


@dataclass
class TraceEstimate:
    """Hutchinson estimate of a trace, its standard error and the probe values."""

    estimate: float
    stderr: float
    samples: Tensor


def hutchinson_trace(M: MatrixLike, n_probes: int, size: int | None = None, distribution: str = "rademacher",
                     generator: torch.Generator | None = None) -> TraceEstimate:
    r"""Hutchinson's estimate :math:`\widehat{\operatorname{tr}} M = \frac1L \sum_l v_l^\top M v_l`.

    Probes with :math:`\operatorname E[v v^\top] = I` make each :math:`v_l^\top M v_l` unbiased for
    :math:`\operatorname{tr} M` (Hutchinson 1990). Rademacher probes have the smallest variance,
    :math:`2(\|M\|_F^2 - \sum_i M_{ii}^2)`, Gaussian ones :math:`2\|M\|_F^2`; the standard error
    reported is the sample standard deviation of the probe values over :math:`\sqrt L`.

    Parameters
    ----------
    n_probes : int
        Number of probes :math:`L \ge 2` (two are needed for a standard error).
    distribution : {"rademacher", "gaussian"}
        Probe entries: independent signs or standard normals.

    Examples
    --------
    >>> import torch
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> est = hutchinson_trace(A, n_probes=10, generator=torch.Generator().manual_seed(0))
    >>> est.estimate, est.stderr  # Rademacher probes are exact for a diagonal matrix
    (55.0, 0.0)
    """
    op = as_operator(M, size)
    n = check_int(n_probes, "n_probes", minimum=2)
    dist = check_option(distribution, "distribution", ("rademacher", "gaussian"))
    values = []
    for _ in range(n):
        if dist == "rademacher":
            v = torch.randint(0, 2, (op.size,), generator=generator).to(op.dtype) * 2 - 1
        else:
            v = torch.randn(op.size, generator=generator, dtype=op.dtype)
        v = v.to(op.device)
        values.append(float(v @ op.mv(v).detach()))
    samples = torch.tensor(values, dtype=torch.float64)
    return TraceEstimate(float(samples.mean()), float(samples.std() / math.sqrt(n)), samples)
