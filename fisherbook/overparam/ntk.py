r"""The Fisher of a model as :math:`A^\top A / N` and its dual, the NTK-shaped Gram matrix :math:`A A^\top / N`.

For outputs :math:`f_n \in \mathbb R^K` with Jacobians :math:`J_n` (:math:`K \times P`) and output-space
Fisher :math:`\Lambda_n = S_n S_n^\top` (:math:`S_n` of size :math:`K \times C`), stacking the rows
:math:`S_n^\top J_n` into :math:`A` (:math:`NC \times P`) gives

.. math::

    F = \frac1N \sum_n J_n^\top \Lambda_n J_n = \frac1N A^\top A, \qquad
    G = \frac1N A A^\top = \frac1N \big[S_n^\top J_n J_m^\top S_m\big]_{nm},

and :math:`G` is the neural tangent kernel :math:`J J^\top` (Jacot, Gabriel & Hongler 2018) weighted by
:math:`\Lambda^{1/2}` on both sides. :math:`F` and :math:`G` share their non-zero eigenvalues, so
when :math:`P \gg NC` every Fisher computation can be done on the small :math:`NC \times NC` side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .._validate import check_real
from ..curvature.likelihoods import Likelihood, get_likelihood
from ..curvature.per_example import ParamLayout, prepare_inputs
from ..errors import ArgumentTypeError, ShapeError

__all__ = ["jacobian", "FisherFactor", "fisher_factor", "function_space_natural_gradient"]


def _check_model(model: nn.Module) -> ParamLayout:
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return ParamLayout.from_model(model)


def jacobian(model: nn.Module, inputs: Tensor) -> Tensor:
    r"""Per-example Jacobians :math:`J_n = \partial f(x_n) / \partial \theta`, shape ``(N, K, P)``.

    Columns follow ``parameters_to_vector(model.parameters())``; computed with ``torch.func``
    (``vmap`` of ``jacrev``), so examples must be processed independently.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 1, bias=False).double()
    >>> X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    >>> jacobian(lin, X)[:, 0, :]  # the Jacobian of a linear model is its input
    tensor([[1., 2.],
            [3., 4.]], dtype=torch.float64)
    """
    layout = _check_model(model)
    x = prepare_inputs(inputs, layout)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def single(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(single), in_dims=(None, 0))(params, x)
    return torch.cat([jac[k].reshape(x.shape[0], jac[k].shape[1], -1) for k in layout.names], dim=2)


@dataclass
class FisherFactor:
    r"""A factor :math:`A` (rows :math:`S_n^\top J_n`, shape ``(N*C, P)``) with :math:`F = A^\top A / N`.

    ``outputs`` are the model outputs :math:`f_n` (``(N, K)``) and ``sqrt_lambda`` the factors
    :math:`S_n` (``(N, K, C)``) of the output-space Fisher, at the parameters it was computed at.
    """

    matrix: Tensor
    outputs: Tensor
    sqrt_lambda: Tensor
    likelihood: Likelihood

    @property
    def n(self) -> int:
        """Number of examples :math:`N`."""
        return self.outputs.shape[0]

    def fisher(self) -> Tensor:
        r"""The Fisher :math:`F = A^\top A / N`, ``(P, P)``."""
        return self.matrix.T @ self.matrix / self.n

    def gram(self) -> Tensor:
        r"""The dual Gram matrix :math:`G = A A^\top / N`, ``(NC, NC)``: the :math:`\Lambda^{1/2}`-weighted NTK."""
        return self.matrix @ self.matrix.T / self.n

    def natural_gradient(self, residual: Tensor, damping: float) -> Tensor:
        r"""The damped natural gradient of a gradient :math:`g = A^\top r / N`, computed in function space.

        By the push-through identity
        :math:`(A^\top A/N + \lambda I)^{-1} A^\top = A^\top (A A^\top / N + \lambda I)^{-1}`,

        .. math::

            (F + \lambda I)^{-1} g = \frac1N A^\top (G + \lambda I)^{-1} r,

        one :math:`NC \times NC` solve instead of a :math:`P \times P` one. ``residual`` is
        :math:`r` with shape ``(N*C,)``; ``damping`` :math:`\lambda > 0`.
        """
        lam = check_real(damping, "damping", low=0.0, open_low=True)
        if not isinstance(residual, Tensor) or residual.shape != (self.matrix.shape[0],):
            raise ShapeError(f"residual must be a tensor of shape ({self.matrix.shape[0]},), got "
                             f"{tuple(residual.shape) if isinstance(residual, Tensor) else type(residual).__name__}")
        g = self.gram()
        eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
        return self.matrix.T @ torch.linalg.solve(g + lam * eye, residual.to(g.dtype)) / self.n

    def loss_residual(self, targets: Tensor) -> Tensor:
        r"""The :math:`r` with :math:`A^\top r / N = \nabla_\theta \frac1N \sum_n -\log p(y_n \mid f_n)`.

        The output gradient :math:`e_n = -\nabla_f \log p(y_n \mid f_n)` lies in the range of
        :math:`\Lambda_n` for the three likelihoods (for softmax its entries sum to zero), so
        :math:`r_n = S_n^+ e_n` solves :math:`S_n r_n = e_n`.
        """
        y = self.likelihood.check_targets(self.outputs, targets)
        e = -self.likelihood.score(self.outputs, y.unsqueeze(0))[0]  # (N, K)
        r = torch.linalg.lstsq(self.sqrt_lambda, e.unsqueeze(2)).solution[..., 0]  # (N, C)
        return r.reshape(-1)


def fisher_factor(model: nn.Module, inputs: Tensor, likelihood: str | Likelihood = "categorical",
                  sigma: float = 1.0) -> FisherFactor:
    r"""The factor :math:`A` of the true Fisher :math:`F = A^\top A / N` of ``model`` on ``inputs``.

    Parameters
    ----------
    model : nn.Module
        Maps a batch to outputs ``(N, K)``.
    inputs : Tensor
        Examples along dim 0.
    likelihood : {"categorical", "bernoulli", "gaussian"}
        As in :func:`fisherbook.curvature.fisher`.
    sigma : float
        Noise standard deviation of the Gaussian likelihood.

    Examples
    --------
    >>> import torch
    >>> import fisherbook as fb
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 20), torch.nn.Tanh(), torch.nn.Linear(20, 4)).double()
    >>> X = torch.randn(5, 3, dtype=torch.float64)
    >>> fac = fisher_factor(net, X)
    >>> fac.matrix.shape  # N (K - 1) = 15 rows, P = 164 columns
    torch.Size([15, 164])
    >>> torch.allclose(fac.fisher(), fb.curvature.fisher(net, X).to_dense())
    True
    """
    lik = get_likelihood(likelihood, sigma)
    jac = jacobian(model, inputs)  # (N, K, P)
    layout = ParamLayout.from_model(model)
    with torch.no_grad():
        out = model(prepare_inputs(inputs, layout)).reshape(jac.shape[0], -1)
    s = lik.sqrt_fisher(out)  # (N, K, C)
    a = torch.einsum("nkc,nkp->ncp", s, jac).reshape(-1, jac.shape[2])
    return FisherFactor(a, out, s, lik)


def function_space_natural_gradient(model: nn.Module, inputs: Tensor, targets: Tensor,
                                    likelihood: str | Likelihood = "categorical", damping: float = 1e-6,
                                    sigma: float = 1.0) -> Tensor:
    r"""The damped natural-gradient direction :math:`(F + \lambda I)^{-1} \nabla_\theta L` from the :math:`NC`-side.

    :math:`L = \frac1N\sum_n -\log p(y_n \mid f(x_n))` is the mean negative log-likelihood and
    :math:`F` the true Fisher. The cost is one Jacobian and an :math:`NC \times NC` solve (see
    :meth:`FisherFactor.natural_gradient`), which for :math:`P \gg NC` is far below the
    :math:`O(P^3)` of a dense solve. A step is ``theta - lr * direction``.

    Examples
    --------
    >>> import torch
    >>> import fisherbook as fb
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 50), torch.nn.Tanh(), torch.nn.Linear(50, 1)).double()
    >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    >>> d = function_space_natural_gradient(net, X, y, likelihood="gaussian", damping=1e-3)
    >>> F = fb.curvature.fisher(net, X, likelihood="gaussian")
    >>> g = torch.autograd.grad(0.5 * ((net(X) - y) ** 2).sum(1).mean(), list(net.parameters()))
    >>> g = torch.cat([t.reshape(-1) for t in g])
    >>> torch.allclose(d, F.solve(g, damping=1e-3))
    True
    """
    fac = fisher_factor(model, inputs, likelihood, sigma)
    return fac.natural_gradient(fac.loss_residual(targets), damping)
