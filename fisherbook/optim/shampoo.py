r"""Shampoo (Gupta, Koren & Singer 2018): Kronecker-factored full-matrix AdaGrad.

For a parameter matrix :math:`W` (a tensor of order :math:`\ge 2` is read as the matrix
``(shape[0], rest)``) with gradients :math:`G_t`, Shampoo accumulates

.. math::

    L_t = \epsilon I + \sum_{s \le t} G_s G_s^\top, \qquad
    R_t = \epsilon I + \sum_{s \le t} G_s^\top G_s,

and steps :math:`W \leftarrow W - \alpha\, L_t^{-1/4} G_t R_t^{-1/4}`, which is
:math:`\operatorname{vec}(W) \leftarrow \operatorname{vec}(W) - \alpha (L_t \otimes R_t)^{-1/4} \operatorname{vec}(G_t)`
(row-major :math:`\operatorname{vec}`). Gupta et al. (Lemma 8) show
:math:`\sum_s \operatorname{vec}(G_s)\operatorname{vec}(G_s)^\top \preceq r\, L_t^{1/2} \otimes R_t^{1/2}` for
gradients of rank at most :math:`r`, so the preconditioner is the inverse *square root* of a
Kronecker-factored bound on the accumulated outer products of the gradients, as in full-matrix
AdaGrad; K-FAC instead applies the inverse (power :math:`-1`) of a Kronecker-factored Fisher. A
vector parameter (a bias) gets diagonal AdaGrad, :math:`g / (\epsilon + \sum_s g_s^2)^{1/2}`.

With ``beta2`` :math:`\beta < 1` the sums become exponential moving averages,
:math:`L \leftarrow \beta L + (1 - \beta) G G^\top` (the form used with mini-batches in practice);
the roots are recomputed by eigendecomposition every ``inverse_every`` steps (stale in between).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int, check_real
from ..errors import NonFiniteError

__all__ = ["Shampoo"]


def _inverse_root(m: Tensor, power: float) -> Tensor:
    """:math:`M^{-1/p}` of a symmetric positive-definite matrix by eigendecomposition."""
    e, q = torch.linalg.eigh(m)
    return (q * e.clamp_min(torch.finfo(m.dtype).tiny).pow(-1.0 / power)) @ q.T


class Shampoo(torch.optim.Optimizer):
    r"""Shampoo optimiser: :math:`W \leftarrow W - \alpha L^{-1/4} G R^{-1/4}` per parameter matrix.

    Parameters
    ----------
    params : iterable
        Parameters or param-group dicts, as for any torch optimiser.
    lr : float
        Step size :math:`\alpha > 0`.
    momentum : float
        Heavy-ball momentum :math:`\mu \in [0, 1)` on the preconditioned step.
    epsilon : float
        :math:`\epsilon > 0`, the initial value :math:`\epsilon I` of the statistics.
    beta2 : float
        :math:`\beta \in (0, 1]`: 1 (default) accumulates the sums of the paper, :math:`\beta < 1`
        exponential moving averages.
    inverse_every : int
        Recompute the inverse roots every this many steps (>= 1).
    weight_decay : float
        L2 coefficient :math:`\eta \ge 0` added to the gradient.

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        A hyper-parameter of the wrong type or out of range.
    NonFiniteError
        (at a step) a non-finite gradient.

    Examples
    --------
    >>> import torch
    >>> from fisherbook.optim import Shampoo
    >>> W = torch.nn.Parameter(torch.zeros(2, 3))
    >>> opt = Shampoo([W], lr=1.0, epsilon=1e-12)
    >>> W.grad = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    >>> _ = opt.step()
    >>> torch.allclose(W, -torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-5)  # L^{-1/4} G R^{-1/4}
    True
    """

    def __init__(self, params: Any, lr: float = 0.1, momentum: float = 0.0, epsilon: float = 1e-4,
                 beta2: float = 1.0, inverse_every: int = 1, weight_decay: float = 0.0) -> None:
        defaults = dict(lr=check_real(lr, "lr", low=0.0, open_low=True),
                        momentum=check_real(momentum, "momentum", low=0.0, high=1.0, open_high=True),
                        epsilon=check_real(epsilon, "epsilon", low=0.0, open_low=True),
                        beta2=check_real(beta2, "beta2", low=0.0, high=1.0, open_low=True),
                        inverse_every=check_int(inverse_every, "inverse_every", minimum=1),
                        weight_decay=check_real(weight_decay, "weight_decay", low=0.0))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One Shampoo step (``closure`` re-evaluates the loss, as for any torch optimiser)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, eps, beta = group["lr"], group["momentum"], group["epsilon"], group["beta2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not bool(torch.isfinite(p.grad).all()):
                    raise NonFiniteError("the gradient has NaN or infinite entries; check the loss and the step size")
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                st = self.state[p]
                keep, add = (beta, 1.0 - beta) if beta < 1 else (1.0, 1.0)
                if p.dim() >= 2:
                    m = g.reshape(g.shape[0], -1)
                    if not st:
                        st["step"] = 0
                        st["L"] = eps * torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
                        st["R"] = eps * torch.eye(m.shape[1], dtype=m.dtype, device=m.device)
                    st["L"].mul_(keep).add_(m @ m.T, alpha=add)
                    st["R"].mul_(keep).add_(m.T @ m, alpha=add)
                    if st["step"] % group["inverse_every"] == 0:
                        st["L_root"] = _inverse_root(st["L"], 4.0)
                        st["R_root"] = _inverse_root(st["R"], 4.0)
                    u = (st["L_root"] @ m @ st["R_root"]).reshape(p.shape)
                else:
                    if not st:
                        st["step"] = 0
                        st["H"] = torch.full_like(g, eps)
                    st["H"].mul_(keep).addcmul_(g, g, value=add)
                    u = g / st["H"].sqrt()
                st["step"] += 1
                if mu:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = u.clone()
                    else:
                        st["momentum_buffer"].mul_(mu).add_(u)
                    u = st["momentum_buffer"]
                p.add_(u, alpha=-lr)
        return loss
