r"""The Fisher–Rao norm :math:`\|\theta\|_{\mathrm{fr}}^2 = \theta^\top F(\theta)\, \theta`.

Liang, Poggio, Rakhlin & Stokes (2019) proposed it as a capacity measure of neural networks.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ..curvature.likelihoods import Likelihood, get_likelihood
from ..curvature.per_example import ParamLayout, prepare_inputs
from ..errors import ArgumentTypeError

__all__ = ["fisher_rao_norm"]


def fisher_rao_norm(model: nn.Module, inputs: Tensor, likelihood: str | Likelihood = "categorical",
                    sigma: float = 1.0) -> Tensor:
    r"""The squared Fisher–Rao norm :math:`\theta^\top F(\theta)\, \theta` of a model's own parameters.

    With :math:`F = \frac1N \sum_n J_n^\top \Lambda_n J_n` (the true Fisher, mean over ``inputs``),

    .. math::

        \theta^\top F \theta = \frac1N \sum_n (J_n\theta)^\top \Lambda_n (J_n \theta),

    computed with one forward-mode pass (:math:`J\theta` by ``torch.func.jvp``), no matrix. For a
    network of :math:`L` bias-free layers with positively homogeneous activations (ReLU),
    :math:`J_n\theta = L f_n` (Euler's theorem), so the norm is
    :math:`\frac{L^2}{N}\sum_n f_n^\top \Lambda_n f_n`: Liang et al.'s Lemma 2.1 with the model's
    predictive in place of the labels.

    Examples
    --------
    >>> import torch
    >>> import fisherbook as fb
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    >>> X = torch.randn(30, 4, dtype=torch.float64)
    >>> theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    >>> F = fb.curvature.fisher(net, X)
    >>> torch.allclose(fisher_rao_norm(net, X), theta @ F.mv(theta))
    True
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lik = get_likelihood(likelihood, sigma)
    layout = ParamLayout.from_model(model)
    x = prepare_inputs(inputs, layout)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f(p: dict[str, Tensor]) -> Tensor:
        return functional_call(model, (p, buffers), (x,)).reshape(x.shape[0], -1)

    with torch.no_grad(), warnings.catch_warnings():  # torch's forward-AD decompositions call torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        res = jvp(f, (params,), (params,))
    out, jt = res[0], res[1]
    return (jt * lik.fisher_vp(out, jt)).sum(1).mean()
