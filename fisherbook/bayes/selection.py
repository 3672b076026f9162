r"""Model selection with Fisher information: BIC, the Laplace evidence, exact Gaussian evidences.

The marginal likelihood (evidence) of a model :math:`M` with parameters :math:`\theta \in
\mathbb{R}^k`, :math:`p(D \mid M) = \int p(D \mid \theta)\, p(\theta)\, d\theta`, is the
quantity Bayesian model selection compares. Its Laplace approximation expands the log joint
to second order around the mode :math:`\hat\theta`,

.. math::

   \log p(D) \approx \log p(D \mid \hat\theta) + \log p(\hat\theta)
   + \tfrac{k}{2} \log 2\pi - \tfrac12 \log\det A,
   \qquad A = -\nabla^2_\theta \log p(D, \theta) \big|_{\hat\theta},

and :math:`A` may be replaced by :math:`n\,I(\hat\theta)` plus the prior precision (the
Fisher information instead of the observed information). Keeping only the terms that grow
with :math:`n` gives Schwarz's criterion :math:`\mathrm{BIC} = k \ln n - 2 \ln \hat L`,
with :math:`-\mathrm{BIC}/2 = \log p(D) + O(1)`. For the Gaussian linear model the evidence
is available in closed form (:func:`gaussian_linear_log_evidence` with known noise,
:func:`nig_linear_log_evidence` with a normal-inverse-gamma prior on weights and noise), which
is the exact reference the chapter and the tests compare against.

Everything here computes in float64. Bad arguments raise the :mod:`fisherbook.errors` classes
(NumPy scalars are accepted where Python numbers are).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validate import check_finite, check_int, check_real, check_square
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    NonFiniteError,
    NotPositiveDefiniteError,
    ShapeError,
    SizeLimitError,
)

__all__ = [
    "bic",
    "laplace_log_evidence",
    "gaussian_linear_log_evidence",
    "nig_linear_log_evidence",
    "polynomial_design",
]

_DTYPE = torch.float64
_MAX_DESIGN_ENTRIES = 10**8  # polynomial_design: 800 MB of float64


def _as_scalar(value: Any, name: str) -> Tensor:
    """A finite real scalar (Python or NumPy number, or a one-element tensor) as a float64 tensor."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ShapeError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must be a real number, got a tensor of dtype {value.dtype}")
        t = value.detach().to(_DTYPE).reshape(())
        if not bool(torch.isfinite(t)):
            raise NonFiniteError(f"{name} must be finite, got {t.item()}")
        return t
    return torch.tensor(check_real(value, name), dtype=_DTYPE)


def _logdet_pd(matrix: Tensor, name: str) -> Tensor:
    """log det of a symmetric positive-definite matrix via Cholesky; named errors otherwise.

    Symmetry is checked (to 1e-8 relative to the largest entry), never imposed: the mean with the
    transpose only removes round-off.
    """
    if matrix.ndim != 2:
        raise ShapeError(f"{name} must be a square matrix, got shape {tuple(matrix.shape)}")
    check_square(matrix, name)
    check_finite(matrix, name)
    scale = float(matrix.abs().max()) if matrix.numel() else 0.0
    if scale > 0 and float((matrix - matrix.T).abs().max()) > 1e-8 * scale:
        raise NotPositiveDefiniteError(f"{name} must be symmetric; its largest relative asymmetry is "
                                       f"{float((matrix - matrix.T).abs().max()) / scale:.3g}")
    sym = 0.5 * (matrix + matrix.T)
    chol, info = torch.linalg.cholesky_ex(sym)
    if int(info) != 0:
        raise NotPositiveDefiniteError(f"{name} must be symmetric positive definite (Cholesky failed)")
    return 2.0 * torch.log(torch.diagonal(chol)).sum()


def bic(log_likelihood: float | Tensor, n_params: int, n_obs: int) -> Tensor:
    r"""Bayesian information criterion of Schwarz (1978).

    .. math::

       \mathrm{BIC} = k \ln n - 2 \ln \hat L,

    where :math:`\hat L` is the maximised likelihood, :math:`k` the number of free parameters
    and :math:`n` the number of observations. Smaller is better; :math:`-\mathrm{BIC}/2`
    approximates the log evidence up to a term that stays bounded as :math:`n \to \infty`.

    Parameters
    ----------
    log_likelihood : float or Tensor
        The maximised log-likelihood :math:`\ln \hat L` (a finite scalar).
    n_params : int
        Number of free parameters :math:`k \ge 0`.
    n_obs : int
        Number of observations :math:`n \ge 1`.

    Returns
    -------
    Tensor
        The criterion, a float64 scalar.

    Examples
    --------
    >>> import math
    >>> round(bic(-10.0, n_params=2, n_obs=100).item(), 4) == round(2 * math.log(100) + 20, 4)
    True
    """
    ll = _as_scalar(log_likelihood, "log_likelihood")
    n_params = check_int(n_params, "n_params", minimum=0)
    n_obs = check_int(n_obs, "n_obs", minimum=1)
    return n_params * math.log(n_obs) - 2.0 * ll


def laplace_log_evidence(
    log_joint: Callable[[Tensor], Tensor],
    mode: Tensor,
    *,
    precision: Tensor | None = None,
) -> Tensor:
    r"""Laplace approximation of the log evidence :math:`\log \int p(D, \theta)\, d\theta`.

    .. math::

       \log p(D) \approx \log p(D, \hat\theta) + \tfrac{k}{2}\log 2\pi - \tfrac12 \log\det A,

    with :math:`A = -\nabla^2_\theta \log p(D, \theta)` at the mode :math:`\hat\theta` (the
    observed information plus the prior precision), computed by automatic differentiation
    unless ``precision`` is given. Passing ``precision`` replaces :math:`A`, for example by
    :math:`n I(\hat\theta) + \Lambda_0` (Fisher information plus prior precision). The
    approximation is exact when the log joint is quadratic in :math:`\theta`.

    Parameters
    ----------
    log_joint : Callable
        Maps a 1-D float64 parameter tensor to the scalar :math:`\log p(D \mid \theta) +
        \log p(\theta)`; must be twice differentiable by ``torch.func``.
    mode : Tensor
        The maximiser :math:`\hat\theta` of ``log_joint``, shape ``(k,)``.
    precision : Tensor, optional
        Symmetric positive-definite ``(k, k)`` matrix used in place of the negative Hessian.

    Returns
    -------
    Tensor
        The approximate log evidence, a float64 scalar.

    Raises
    ------
    ValueError
        If ``mode`` is not a finite 1-D tensor, if ``precision`` has the wrong shape, or if the
        curvature is not positive definite (``mode`` is then not a maximum).

    Examples
    --------
    A Gaussian integral is reproduced exactly:
    :math:`\int e^{-\theta^2/2}\,d\theta = \sqrt{2\pi}`.

    >>> import math, torch
    >>> z = laplace_log_evidence(lambda t: -0.5 * (t ** 2).sum(), torch.zeros(1))
    >>> abs(z.item() - 0.5 * math.log(2 * math.pi)) < 1e-12
    True
    """
    if not callable(log_joint):
        raise ArgumentTypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
    if not isinstance(mode, Tensor):
        raise ArgumentTypeError(f"mode must be a torch.Tensor, got {type(mode).__name__}")
    if mode.ndim != 1 or mode.numel() == 0:
        raise ShapeError(f"mode must be a non-empty 1-D tensor, got shape {tuple(mode.shape)}")
    if mode.is_complex() or mode.dtype == torch.bool:
        raise ArgumentTypeError(f"mode must be a real tensor, got dtype {mode.dtype}")
    mode = mode.detach().to(_DTYPE)
    check_finite(mode, "mode")
    k = mode.numel()
    value = torch.as_tensor(log_joint(mode), dtype=_DTYPE).detach()
    if value.numel() != 1:
        raise ShapeError(f"log_joint(mode) must be a scalar, got shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"log_joint(mode) must be finite, got {value.reshape(-1)[0].item()}")
    if precision is None:
        hess = torch.func.hessian(lambda t: log_joint(t).reshape(()))(mode).detach()
        A = -hess.to(_DTYPE)
        name = "the negative Hessian of log_joint at mode"
    else:
        if not isinstance(precision, Tensor):
            raise ArgumentTypeError(f"precision must be a torch.Tensor, got {type(precision).__name__}")
        if precision.shape != (k, k):
            raise ShapeError(f"precision must have shape ({k}, {k}), got {tuple(precision.shape)}")
        A = precision.detach().to(_DTYPE)
        name = "precision"
    return value.reshape(()) + 0.5 * k * math.log(2 * math.pi) - 0.5 * _logdet_pd(A, name)


def _check_design(X: Any, y: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ArgumentTypeError(f"X and y must be torch tensors, got {type(X).__name__} and {type(y).__name__}")
    if X.ndim != 2:
        raise ShapeError(f"X must be 2-D (n, k), got shape {tuple(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ShapeError(f"y must be 1-D with X.shape[0] = {X.shape[0]} entries, got shape {tuple(y.shape)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ShapeError(f"X must have at least one row and one column, got shape {tuple(X.shape)}")
    for t, name in ((X, "X"), (y, "y")):
        if t.is_complex() or t.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must be a real tensor, got dtype {t.dtype}")
    X, y = X.to(_DTYPE), y.to(_DTYPE)
    check_finite(X, "X")
    check_finite(y, "y")
    return X, y


def _prior_precision_vector(prior_precision: Any, k: int) -> Tensor:
    if isinstance(prior_precision, Tensor):
        alpha = prior_precision.detach().to(_DTYPE)
    else:
        alpha = torch.tensor(check_real(prior_precision, "prior_precision", low=0.0, open_low=True), dtype=_DTYPE)
    if alpha.ndim == 0:
        alpha = alpha.expand(k).clone()
    if alpha.shape != (k,):
        raise ShapeError(f"prior_precision must be a scalar or have shape ({k},), got {tuple(alpha.shape)}")
    check_finite(alpha, "prior_precision")
    if not bool((alpha > 0).all()):
        raise InvalidArgumentError("prior_precision must be finite and > 0")
    return alpha


def gaussian_linear_log_evidence(
    X: Tensor, y: Tensor, *, prior_precision: float | Tensor, noise_scale: float
) -> Tensor:
    r"""Exact log evidence of the Gaussian linear model with known noise.

    Model: :math:`w \sim \mathcal N(0, \operatorname{diag}(\alpha)^{-1})`,
    :math:`y \mid w \sim \mathcal N(Xw, \sigma^2 I_n)`, so that
    :math:`y \sim \mathcal N(0, \sigma^2 I + X \operatorname{diag}(\alpha)^{-1} X^\top)`.
    Computed in weight space with :math:`\Lambda = \operatorname{diag}(\alpha) + X^\top X/\sigma^2`
    and :math:`m = \Lambda^{-1} X^\top y / \sigma^2`:

    .. math::

       \log p(y) = -\tfrac n2 \log 2\pi - n \log\sigma + \tfrac12 \sum_j \log\alpha_j
       - \tfrac12 \log\det\Lambda
       - \tfrac12\Big(\frac{\lVert y - Xm\rVert^2}{\sigma^2} + m^\top \operatorname{diag}(\alpha)\, m\Big).

    The log joint is quadratic in :math:`w`, so :func:`laplace_log_evidence` reproduces this
    value exactly.

    Parameters
    ----------
    X : Tensor
        Design matrix, shape ``(n, k)``.
    y : Tensor
        Responses, shape ``(n,)``.
    prior_precision : float or Tensor
        :math:`\alpha > 0`, a scalar or one value per column of ``X``.
    noise_scale : float
        Noise standard deviation :math:`\sigma > 0`.

    Returns
    -------
    Tensor
        :math:`\log p(y \mid X)`, a float64 scalar.

    Examples
    --------
    One observation :math:`y = 0` of :math:`w + \varepsilon` with :math:`w, \varepsilon \sim
    \mathcal N(0, 1)` has evidence :math:`\mathcal N(0; 0, 2)`:

    >>> import math, torch
    >>> X = torch.ones(1, 1, dtype=torch.float64); y = torch.zeros(1, dtype=torch.float64)
    >>> ev = gaussian_linear_log_evidence(X, y, prior_precision=1.0, noise_scale=1.0)
    >>> abs(ev.item() + 0.5 * math.log(2 * math.pi * 2)) < 1e-12
    True
    """
    X, y = _check_design(X, y)
    n, k = X.shape
    alpha = _prior_precision_vector(prior_precision, k)
    sigma = _as_scalar(noise_scale, "noise_scale")
    if sigma <= 0:
        raise InvalidArgumentError(f"noise_scale must be > 0, got {sigma.item()}")
    s2 = sigma**2
    Lam = torch.diag(alpha) + X.T @ X / s2
    logdet = _logdet_pd(Lam, "posterior precision")
    m = torch.linalg.solve(Lam, X.T @ y / s2)
    resid = y - X @ m
    quad = resid @ resid / s2 + m @ (alpha * m)
    return (
        -0.5 * n * math.log(2 * math.pi)
        - n * torch.log(sigma)
        + 0.5 * torch.log(alpha).sum()
        - 0.5 * logdet
        - 0.5 * quad
    )


def nig_linear_log_evidence(
    X: Tensor,
    y: Tensor,
    *,
    prior_precision: float | Tensor,
    concentration: float,
    rate: float,
) -> Tensor:
    r"""Exact log evidence of the Gaussian linear model with unknown noise (normal-inverse-gamma prior).

    Model: :math:`\sigma^2 \sim \text{Inv-Gamma}(a_0, b_0)` (``concentration``, ``rate``),
    :math:`w \mid \sigma^2 \sim \mathcal N(0, \sigma^2 \Lambda_0^{-1})` with
    :math:`\Lambda_0 = \operatorname{diag}(\alpha)`, :math:`y \mid w, \sigma^2 \sim \mathcal N(Xw, \sigma^2 I_n)`.
    With :math:`\Lambda_n = \Lambda_0 + X^\top X`, :math:`m_n = \Lambda_n^{-1} X^\top y`,
    :math:`a_n = a_0 + n/2` and :math:`b_n = b_0 + \tfrac12 (y^\top y - m_n^\top \Lambda_n m_n)`,

    .. math::

       \log p(y) = -\tfrac n2 \log 2\pi + \tfrac12 \log\det\Lambda_0 - \tfrac12 \log\det\Lambda_n
       + a_0 \log b_0 - a_n \log b_n + \log\Gamma(a_n) - \log\Gamma(a_0).

    Equivalently :math:`y` is multivariate Student-t with :math:`2a_0` degrees of freedom and
    scale matrix :math:`(b_0/a_0)(I + X\Lambda_0^{-1}X^\top)`. Unlike the known-noise case,
    the Laplace approximation of this evidence is not exact.

    Parameters
    ----------
    X : Tensor
        Design matrix, shape ``(n, k)``.
    y : Tensor
        Responses, shape ``(n,)``.
    prior_precision : float or Tensor
        :math:`\alpha > 0` (relative to :math:`\sigma^2`), a scalar or one value per column.
    concentration : float
        :math:`a_0 > 0`.
    rate : float
        :math:`b_0 > 0`.

    Returns
    -------
    Tensor
        :math:`\log p(y \mid X)`, a float64 scalar.

    Examples
    --------
    >>> import torch
    >>> X = torch.ones(3, 1, dtype=torch.float64); y = torch.tensor([0.1, -0.4, 0.3], dtype=torch.float64)
    >>> ev = nig_linear_log_evidence(X, y, prior_precision=1.0, concentration=2.0, rate=1.0)
    >>> round(ev.item(), 4)
    -2.6768
    """
    X, y = _check_design(X, y)
    n, k = X.shape
    alpha = _prior_precision_vector(prior_precision, k)
    a0 = _as_scalar(concentration, "concentration")
    b0 = _as_scalar(rate, "rate")
    if a0 <= 0:
        raise InvalidArgumentError(f"concentration must be > 0, got {a0.item()}")
    if b0 <= 0:
        raise InvalidArgumentError(f"rate must be > 0, got {b0.item()}")
    Lam_n = torch.diag(alpha) + X.T @ X
    logdet_n = _logdet_pd(Lam_n, "posterior precision")
    m_n = torch.linalg.solve(Lam_n, X.T @ y)
    a_n = a0 + 0.5 * n
    # y'y - m' Lam_n m = ||y - X m||^2 + m' Lam_0 m, computed in the stable form.
    resid = y - X @ m_n
    b_n = b0 + 0.5 * (resid @ resid + m_n @ (alpha * m_n))
    return (
        -0.5 * n * math.log(2 * math.pi)
        + 0.5 * torch.log(alpha).sum()
        - 0.5 * logdet_n
        + a0 * torch.log(b0)
        - a_n * torch.log(b_n)
        + torch.lgamma(a_n)
        - torch.lgamma(a0)
    )


def polynomial_design(x: Tensor, degree: int) -> Tensor:
    r"""Vandermonde design matrix :math:`[1, x, x^2, \dots, x^d]` for polynomial regression.

    Parameters
    ----------
    x : Tensor
        Inputs, shape ``(n,)``.
    degree : int
        Polynomial degree :math:`d \ge 0`; the matrix has :math:`d + 1` columns (at most
        :math:`10^8` entries in all, else :class:`~fisherbook.errors.SizeLimitError`).

    Returns
    -------
    Tensor
        Float64 matrix of shape ``(n, degree + 1)``.

    Examples
    --------
    >>> import torch
    >>> polynomial_design(torch.tensor([2.0]), 3)
    tensor([[1., 2., 4., 8.]], dtype=torch.float64)
    """
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 1 or x.numel() == 0:
        raise ShapeError(f"x must be 1-D and non-empty, got shape {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise ArgumentTypeError(f"x must be a real tensor, got dtype {x.dtype}")
    degree = check_int(degree, "degree", minimum=0)
    if x.numel() * (degree + 1) > _MAX_DESIGN_ENTRIES:
        raise SizeLimitError(f"polynomial_design would allocate {x.numel()} x {degree + 1} entries, more than the "
                             f"limit of {_MAX_DESIGN_ENTRIES:.0e}; use a smaller degree or fewer points")
    x = x.to(_DTYPE)
    check_finite(x, "x")
    return x.unsqueeze(1) ** torch.arange(degree + 1, dtype=_DTYPE)
