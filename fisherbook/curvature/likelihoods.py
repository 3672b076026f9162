r"""Output-space likelihoods and their Fisher factors.

Every Fisher matrix in :mod:`fisherbook.curvature` is assembled from two pieces: the
Jacobian :math:`J_n = \partial f(x_n) / \partial \theta` of the model output and a set of
*output-space factors* :math:`S_n \in \mathbb{R}^{K \times C}` supplied by the likelihood,

.. math::

    F = \frac{1}{N} \sum_{n=1}^N J_n^\top S_n S_n^\top J_n .

The three kinds of Fisher differ only in :math:`S_n`:

- ``"true"``: :math:`S_n S_n^\top = \Lambda_n = \mathbb{E}_{y \sim p(y \mid f_n)}
  [\nabla_f \log p \, \nabla_f \log p^\top]`, the exact expectation in closed form
  (:math:`C = K` columns, :math:`K - 1` for the softmax);
- ``"mc"``: the columns are :math:`\nabla_f \log p(\tilde y_s \mid f_n) / \sqrt{S}` for
  :math:`S` targets sampled from the model (:math:`C = S`);
- ``"empirical"``: the single column :math:`\nabla_f \log p(y_n \mid f_n)` at the given
  target (:math:`C = 1`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validate import check_real
from ..errors import ArgumentTypeError, InvalidArgumentError, NonFiniteError, ShapeError

__all__ = ["Likelihood", "Categorical", "Bernoulli", "Gaussian", "get_likelihood", "KINDS", "LIKELIHOODS"]

KINDS = ("true", "mc", "empirical")
LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


class Likelihood:
    r"""Base class: a likelihood :math:`p(y \mid f)` on model outputs ``f`` of shape ``(N, K)``."""

    name: str = ""

    def log_prob(self, f: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Per-example log-likelihood, shape ``(N,)``."""
        raise NotImplementedError

    def check_targets(self, f: Tensor, targets: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Validate ``targets`` against outputs ``f`` (shape ``(N, K)``) and return them normalised."""
        raise NotImplementedError

    def score(self, f: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        r"""Output-space score :math:`\nabla_f \log p(y \mid f)`, shape ``(..., N, K)``."""
        raise NotImplementedError

    def sqrt_fisher(self, f: Tensor) -> Tensor:  # pragma: no cover - abstract
        r"""A factor :math:`S_n` with :math:`S_n S_n^\top = \Lambda_n`, shape ``(N, K, C)``."""
        raise NotImplementedError

    def fisher_vp(self, f: Tensor, u: Tensor) -> Tensor:
        r"""Output-space Fisher-vector product :math:`\Lambda_n u_n`, shape ``(N, K)``."""
        s = self.sqrt_fisher(f)
        return torch.einsum("nkc,nc->nk", s, torch.einsum("nkc,nk->nc", s, u))

    def sample(self, f: Tensor, n_samples: int, generator: torch.Generator | None) -> Tensor:  # pragma: no cover
        """Targets drawn from the model's predictive, leading dimension ``n_samples``."""
        raise NotImplementedError

    def output_factors(
        self,
        f: Tensor,
        kind: str,
        targets: Tensor | None = None,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Output-space factors :math:`S` of shape ``(N, K, C)`` for the requested ``kind``.

        Parameters
        ----------
        f : Tensor
            Model outputs, shape ``(N, K)`` (detached).
        kind : {"true", "mc", "empirical"}
            Which Fisher.
        targets : Tensor, optional
            Observed targets, required for ``kind="empirical"``.
        n_samples : int
            Number of sampled targets per example for ``kind="mc"``.
        generator : torch.Generator, optional
            Random generator for ``kind="mc"``.
        """
        f = f.detach()
        if kind == "true":
            return self.sqrt_fisher(f)
        if kind == "mc":
            y = self.sample(f, n_samples, generator)  # (S, N, ...)
            s = self.score(f, y)  # (S, N, K)
            return s.permute(1, 2, 0) / math.sqrt(n_samples)
        if kind == "empirical":
            if targets is None:
                raise InvalidArgumentError("targets is required for kind='empirical' (one target per example)")
            y = self.check_targets(f, targets)
            return self.score(f, y.unsqueeze(0)).permute(1, 2, 0)
        raise InvalidArgumentError(f"kind must be one of {KINDS}, got {kind!r}")


class Categorical(Likelihood):
    r"""Softmax cross-entropy: :math:`p(y = k \mid f) = \operatorname{softmax}(f)_k`.

    The output-space Fisher is :math:`\Lambda = \operatorname{diag}(p) - p p^\top`. A symmetric square
    root would be :math:`\operatorname{diag}(\sqrt p) - p \sqrt p^\top` (column :math:`c` is the score
    :math:`e_c - p` of class :math:`c` weighted by :math:`\sqrt{p_c}`); :meth:`sqrt_fisher` uses the
    exact :math:`K - 1`-column Cholesky factor instead, which saves one back-propagated column.
    """

    name = "categorical"

    def check_targets(self, f: Tensor, targets: Tensor) -> Tensor:
        if not isinstance(targets, Tensor):
            raise ArgumentTypeError(f"targets must be a torch.Tensor of class indices, got {type(targets).__name__}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ArgumentTypeError(f"targets for likelihood='categorical' must be integer class indices, "
                                    f"got {targets.dtype}")
        n, k = f.shape
        if targets.shape != (n,):
            raise ShapeError(f"targets must have shape ({n},) (one class index per example), "
                             f"got {tuple(targets.shape)}")
        if n and (targets.min() < 0 or targets.max() >= k):
            raise InvalidArgumentError(f"targets must be class indices in [0, {k - 1}], got range "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        return targets.to(f.device)

    def log_prob(self, f: Tensor, y: Tensor) -> Tensor:
        return torch.log_softmax(f, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def score(self, f: Tensor, y: Tensor) -> Tensor:
        p = torch.softmax(f, dim=-1)
        onehot = torch.nn.functional.one_hot(y, f.shape[-1]).to(f.dtype)
        return onehot - p

    def sqrt_fisher(self, f: Tensor) -> Tensor:
        r"""Exact factor with :math:`K - 1` columns (:math:`\Lambda` has rank :math:`K - 1`).

        Tanabe & Sagae (1992): :math:`\Lambda = L D L^\top` with unit lower-triangular
        :math:`L_{ik} = -p_i / q_k` (:math:`i > k`), :math:`D_k = p_k q_k / q_{k-1}` and tail sums
        :math:`q_k = \sum_{j > k} p_j`; the factor is :math:`L D^{1/2}` without its zero last column.
        Tail sums are accumulated from the small end, so probabilities near 0 or 1 stay accurate.
        """
        p = torch.softmax(f, dim=-1)
        k = p.shape[-1]
        if k == 1:
            return torch.zeros(*p.shape, 1, dtype=p.dtype, device=p.device)
        tail = p.flip(-1).cumsum(-1).flip(-1)  # tail[:, k] = sum_{j >= k} p_j
        q_prev, q = tail[:, :-1], tail[:, 1:]
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        d = torch.where(q_prev > 0, p[:, :-1] * q / q_prev.clamp_min(torch.finfo(p.dtype).tiny), zero)
        ratio = torch.where(q.unsqueeze(1) > 0, -p.unsqueeze(2) / q.unsqueeze(1).clamp_min(torch.finfo(p.dtype).tiny),
                            zero)  # (N, K, K-1)
        rows = torch.arange(k, device=p.device).unsqueeze(1)
        cols = torch.arange(k - 1, device=p.device).unsqueeze(0)
        lower = torch.where(rows == cols, torch.ones((), dtype=p.dtype, device=p.device),
                            torch.where(rows > cols, ratio, zero))
        return lower * d.sqrt().unsqueeze(1)

    def fisher_vp(self, f: Tensor, u: Tensor) -> Tensor:
        p = torch.softmax(f, dim=-1)
        pu = p * u
        return pu - p * pu.sum(-1, keepdim=True)

    def sample(self, f: Tensor, n_samples: int, generator: torch.Generator | None) -> Tensor:
        p = torch.softmax(f, dim=-1)
        y = torch.multinomial(p, n_samples, replacement=True, generator=generator)  # (N, S)
        return y.T.contiguous()


def _output_shaped(f: Tensor, targets: Tensor, what: str) -> Tensor:
    """``targets`` reshaped to the model output ``f`` (N, K), on its device and dtype, or a named error."""
    if not isinstance(targets, Tensor):
        raise ArgumentTypeError(f"targets must be a torch.Tensor of {what}, got {type(targets).__name__}")
    n, k = f.shape
    if targets.numel() != n * k or targets.shape[:1] != (n,):
        raise ShapeError(f"targets must have the model output's shape ({n} examples, {k} outputs each), "
                         f"got {tuple(targets.shape)}")
    out = targets.reshape(n, k).to(device=f.device, dtype=f.dtype)
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteError(f"targets must be finite; they have {int((~torch.isfinite(out)).sum())} NaN or infinite "
                             "entries")
    return out


class Bernoulli(Likelihood):
    r"""Sigmoid cross-entropy on each output: :math:`p(y_k = 1 \mid f) = \sigma(f_k)`, independently.

    :math:`\Lambda = \operatorname{diag}(\sigma(f)(1 - \sigma(f)))`, factor its elementwise square root.
    """

    name = "bernoulli"

    def check_targets(self, f: Tensor, targets: Tensor) -> Tensor:
        t = _output_shaped(f, targets, "0/1 labels")
        if not bool(((t == 0) | (t == 1)).all()):
            raise InvalidArgumentError("targets for likelihood='bernoulli' must be 0 or 1")
        return t

    def log_prob(self, f: Tensor, y: Tensor) -> Tensor:
        return -torch.nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none").sum(-1)

    def score(self, f: Tensor, y: Tensor) -> Tensor:
        return y - torch.sigmoid(f)

    def sqrt_fisher(self, f: Tensor) -> Tensor:
        p = torch.sigmoid(f)
        return torch.diag_embed((p * (1 - p)).sqrt())

    def fisher_vp(self, f: Tensor, u: Tensor) -> Tensor:
        p = torch.sigmoid(f)
        return p * (1 - p) * u

    def sample(self, f: Tensor, n_samples: int, generator: torch.Generator | None) -> Tensor:
        p = torch.sigmoid(f).expand(n_samples, *f.shape)
        return torch.bernoulli(p, generator=generator)


class Gaussian(Likelihood):
    r"""Gaussian with fixed noise: :math:`p(y \mid f) = \mathcal N(y; f, \sigma^2 I)`.

    :math:`\Lambda = I / \sigma^2`, factor :math:`I / \sigma`; the score is :math:`(y - f)/\sigma^2`.
    """

    name = "gaussian"

    def __init__(self, sigma: float = 1.0) -> None:
        sigma = check_real(sigma, "sigma", low=0.0, open_low=True)  # NumPy scalars accepted
        self.sigma = float(sigma)

    def check_targets(self, f: Tensor, targets: Tensor) -> Tensor:
        t = _output_shaped(f, targets, "real values")
        if not bool(torch.isfinite(t).all()):
            raise NonFiniteError("targets for likelihood='gaussian' must be finite")
        return t

    def log_prob(self, f: Tensor, y: Tensor) -> Tensor:
        k = f.shape[-1]
        return (-0.5 * ((y - f) / self.sigma) ** 2).sum(-1) - k * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def score(self, f: Tensor, y: Tensor) -> Tensor:
        return (y - f) / self.sigma**2

    def sqrt_fisher(self, f: Tensor) -> Tensor:
        n, k = f.shape
        eye = torch.eye(k, dtype=f.dtype, device=f.device) / self.sigma
        return eye.expand(n, k, k)

    def fisher_vp(self, f: Tensor, u: Tensor) -> Tensor:
        return u / self.sigma**2

    def sample(self, f: Tensor, n_samples: int, generator: torch.Generator | None) -> Tensor:
        noise = torch.randn((n_samples, *f.shape), generator=generator, dtype=f.dtype, device=f.device)
        return f + self.sigma * noise


def get_likelihood(likelihood: str | Likelihood, sigma: float = 1.0) -> Likelihood:
    """Return the :class:`Likelihood` named ``likelihood`` (``sigma`` is used by ``"gaussian"``)."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if not isinstance(likelihood, str):
        raise ArgumentTypeError(f"likelihood must be one of {LIKELIHOODS}, got {type(likelihood).__name__}")
    if likelihood == "categorical":
        return Categorical()
    if likelihood == "bernoulli":
        return Bernoulli()
    if likelihood == "gaussian":
        return Gaussian(sigma)
    raise InvalidArgumentError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
