r"""Beyond the diagonal: a Kronecker-factored Laplace penalty (Ritter, Botev & Barber 2018).

EWC keeps only the diagonal of the old task's Fisher. K-FAC keeps, for every layer with augmented
weight :math:`\bar W = [W, b]` (shape :math:`O \times I`), the block :math:`G \otimes A` over its
row-major :math:`\operatorname{vec}(\bar W)` (:class:`fisherbook.curvature.KFAC`), so the Laplace
penalty becomes

.. math::

    \frac{\lambda}{2} \sum_{\text{layers}} \operatorname{vec}(\Delta\bar W)^\top (G \otimes A)
    \operatorname{vec}(\Delta\bar W)
    = \frac{\lambda}{2} \sum_{\text{layers}} \operatorname{tr}\bigl(\Delta\bar W^\top G\, \Delta\bar W A\bigr),

with :math:`\Delta\bar W = \bar W - \bar W^*`: :math:`O^2 + I^2` numbers per layer instead of
:math:`(OI)^2`, and one matrix product per layer to evaluate. Between-layer blocks are dropped,
within-layer correlations kept. :func:`kfac_penalty` evaluates it; :class:`KFACLaplace` is the
strategy of Ritter et al.: the precisions of all finished tasks summed (each kept as its own
Kronecker product, since a sum of Kronecker products is not one) and anchored at the latest
parameters, the recursion of online EWC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import curvature
from .._validate import check_int, check_option
from ..curvature import KFAC
from ..data import Task
from ..errors import ArgumentTypeError, ShapeError
from ._checks import FISHER_KINDS, as_tensor_list, check_lam, check_like, check_model, check_model_mode
from .strategies import Strategy, _params_matching

__all__ = ["kfac_penalty", "KFACLaplace"]

_Block = tuple[int, int | None, Tensor, Tensor]  # weight index, bias index, A, G


def _blocks(kfac: KFAC) -> list[_Block]:
    return [(layer.weight_index, layer.bias_index, a.detach(), g.detach())
            for layer, (a, g) in zip(kfac.layers, kfac.factors)]


def _value(params: Sequence[Tensor], anchor: Sequence[Tensor], blocks: Iterable[_Block]) -> Tensor:
    total = params[0].new_zeros(())
    for wi, bi, a, g in blocks:
        d = (params[wi] - anchor[wi].to(params[wi])).reshape(params[wi].shape[0], -1)
        if bi is not None:
            d = torch.cat([d, (params[bi] - anchor[bi].to(params[bi])).reshape(-1, 1)], dim=1)
        total = total + (d * (g.to(d) @ d @ a.to(d))).sum()
    return total


def kfac_penalty(params: Iterable[Tensor], anchor: Sequence[Tensor], fisher: KFAC | Sequence[KFAC],
                 lam: float) -> Tensor:
    r"""The K-FAC Laplace penalty, a sum over layers of Kronecker-factored quadratic forms.

    .. math::

        \frac{\lambda}{2}\sum_{\text{layers}} \operatorname{tr}(\Delta\bar W^\top G\, \Delta\bar W A)

    Equal to :math:`\frac{\lambda}{2} (\theta - \theta^*)^\top K (\theta - \theta^*)` with
    :math:`K` the dense form of the K-FAC matrix (``fisher.to_dense()``), without ever forming it;
    its gradient is :math:`\lambda K (\theta - \theta^*)`. Several K-FAC matrices (a list) are
    summed, :math:`K = \sum_s K_s`.

    Parameters
    ----------
    params : Iterable of Tensor
        Current parameters, in the order of the model the Fisher was computed for
        (``model.parameters()``).
    anchor : Sequence of Tensor
        Anchor :math:`\theta^*`, shaped like ``params``.
    fisher : fisherbook.curvature.KFAC or Sequence of them
        From ``fisherbook.curvature.fisher(model, ..., representation="kfac")``.
    lam : float
        Strength :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor
        A scalar, differentiable with respect to ``params``.

    Examples
    --------
    >>> import fisherbook as fb
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Linear(3, 2).double()
    >>> K = fb.curvature.fisher(net, torch.randn(10, 3, dtype=torch.float64), representation="kfac")
    >>> anchor = [p.detach() + 0.1 for p in net.parameters()]
    >>> d = torch.cat([(p - a).reshape(-1) for p, a in zip(net.parameters(), anchor)])
    >>> bool(torch.isclose(kfac_penalty(net.parameters(), anchor, K, 2.0), d @ K.to_dense() @ d))
    True
    """
    lam = check_lam(lam)
    params = as_tensor_list("params", params)
    anchor = as_tensor_list("anchor", anchor)
    kfacs = [fisher] if isinstance(fisher, KFAC) else fisher
    if isinstance(kfacs, str | bytes | Tensor) or not isinstance(kfacs, Sequence) or not kfacs or not all(
            isinstance(k, KFAC) for k in kfacs):
        raise ArgumentTypeError("fisher must be a fisherbook.curvature.KFAC (fisher(..., representation='kfac')) or "
                                f"a non-empty sequence of them, got {type(fisher).__name__}")
    check_like("anchor", anchor, params, what="params has")
    for k, K in enumerate(kfacs):
        if len(K.layout.shapes) != len(params) or any(tuple(s) != tuple(p.shape)
                                                         for s, p in zip(K.layout.shapes, params)):
            raise ShapeError(f"fisher[{k}] was computed for parameters of shapes "
                             f"{[tuple(s) for s in K.layout.shapes]}, but params has "
                             f"{[tuple(p.shape) for p in params]}")
    return 0.5 * lam * sum((_value(params, anchor, _blocks(K)) for K in kfacs), params[0].new_zeros(()))


class KFACLaplace(Strategy):
    r"""Online structured Laplace with Kronecker-factored blocks (Ritter, Botev & Barber 2018).

    When task :math:`s` ends, the K-FAC Fisher :math:`K_s` of the task is computed at the
    parameters reached (``fisherbook.curvature.fisher(..., representation="kfac")``), and training
    on later tasks adds

    .. math::

        \frac{\lambda}{2} (\theta - \theta^*)^\top \Bigl(\sum_{s} K_s\Bigr) (\theta - \theta^*)

    with :math:`\theta^*` the latest anchor (:func:`kfac_penalty`). It is online EWC with K-FAC
    blocks in place of the diagonal; every parameter must sit in an ``nn.Linear`` or
    ``nn.Conv2d`` layer.

    Parameters
    ----------
    lam : float
        Strength :math:`\lambda \ge 0`.
    kind : str
        ``"true"``, ``"mc"`` or ``"empirical"``: which Fisher the factors estimate (no default).
    n_samples : int
        Sampled targets per example for ``kind="mc"``.
    max_examples : int, optional
        Use the first ``max_examples`` training examples only.
    generator : torch.Generator, optional
        Randomness for ``kind="mc"``.

    Attributes
    ----------
    fishers : list of fisherbook.curvature.KFAC
        One per finished task.
    anchor : list of Tensor or None
        The parameters after the latest task.

    Examples
    --------
    >>> from fisherbook.continual import make_mlp
    >>> net = make_mlp(4, (3,), 2, seed=0)
    >>> X, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    >>> s = KFACLaplace(lam=1.0, kind="true"); s.after_task(net, Task("A", X, y, X, y))
    >>> s.penalty(net).item()   # zero at the anchor
    0.0
    """

    def __init__(self, lam: float, kind: str, n_samples: int = 1, max_examples: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.lam = check_lam(lam)
        self.kind = check_option(kind, "kind", FISHER_KINDS)
        self.n_samples = check_int(n_samples, "n_samples", minimum=1)
        self.max_examples = None if max_examples is None else check_int(max_examples, "max_examples", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self.fishers: list[KFAC] = []
        self._blocks: list[_Block] = []
        self.anchor: list[Tensor] | None = None
        self.anchor_names: list[str] = []
        self.name = f"K-FAC Laplace ({self.kind})"

    def penalty(self, model: nn.Module) -> Tensor | None:
        if self.anchor is None:
            return None
        params = _params_matching(model, self.anchor, self.anchor_names)
        return 0.5 * self.lam * _value(params, self.anchor, self._blocks)

    def after_task(self, model: nn.Module, task: Any) -> None:
        check_model(model)
        if not isinstance(task, Task):
            raise ArgumentTypeError(f"task must be a fisherbook.data.Task, got {type(task).__name__}")
        check_model_mode(model, "the Fisher", per_example=True)
        p = next(model.parameters())
        m = task.n_train if self.max_examples is None else min(self.max_examples, task.n_train)
        X = task.X_train[:m].to(device=p.device, dtype=p.dtype)
        y = task.y_train[:m].to(p.device)
        K = curvature.fisher(model, X, kind=self.kind, targets=y if self.kind == "empirical" else None,
                             representation="kfac", n_samples=self.n_samples, generator=self.generator)
        assert isinstance(K, KFAC)
        self.fishers.append(K)
        self._blocks.extend(_blocks(K))
        self.anchor_names = [n for n, _ in model.named_parameters()]
        self.anchor = [q.detach().clone() for q in model.parameters()]
