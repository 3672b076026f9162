r"""Parameter importances other than the Fisher: MAS and Synaptic Intelligence.

EWC weights its penalty with the Fisher diagonal. Two widely used alternatives weight it with
other measures of how much each parameter matters for a finished task:

- **MAS** (memory-aware synapses; Aljundi et al. 2018): the mean absolute gradient of the squared
  norm of the network's output, :math:`\Omega_i = \frac1N \sum_n \lvert \partial \lVert f(x_n;
  \theta)\rVert_2^2 / \partial\theta_i \rvert` (:func:`mas_importance`). No labels are needed.
- **SI** (Synaptic Intelligence; Zenke, Poole & Ganguli 2017): the path integral of the loss
  decrease each parameter was responsible for during training,
  :math:`\omega_i = -\sum_{\text{steps}} g_i(t)\, \Delta\theta_i(t)`, normalised by the squared total
  displacement plus a damping :math:`\xi`: :math:`\Omega_i = \omega_i / ((\Delta_i)^2 + \xi)`
  (:func:`si_importance`; the running sum is kept by :class:`~fisherbook.continual.regularisers.SI`).

Both give lists of tensors shaped like ``list(model.parameters())``, the layout of
:func:`~fisherbook.continual.fisher.diagonal_fisher`, so they drop into the same quadratic penalty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .._validate import check_real, check_tensor
from ..errors import ArgumentTypeError, ShapeError
from ._checks import as_tensor_list, check_batches, check_like, check_model, check_model_mode

__all__ = ["mas_importance", "si_importance"]


def _input_batches(inputs: Any) -> Iterable[Tensor]:
    if isinstance(inputs, Tensor):
        if inputs.ndim == 0 or inputs.shape[0] == 0:
            raise ShapeError(f"inputs must hold at least one example along dim 0, got shape {tuple(inputs.shape)}")
        yield inputs
        return
    check_batches(inputs)
    for k, batch in enumerate(inputs):
        x = batch[0] if isinstance(batch, tuple | list) and batch else batch
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"batch {k} of inputs must be a tensor or an (inputs, targets) pair, got "
                                    f"{type(x).__name__}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ShapeError(f"batch {k} of inputs must hold at least one example along dim 0, got shape "
                             f"{tuple(x.shape)}")
        yield x


def mas_importance(model: nn.Module, inputs: Tensor | Iterable[Any]) -> list[Tensor]:
    r"""MAS importances, the mean absolute gradient of the squared output norm.

    .. math::

        \Omega_i = \frac1N \sum_n \bigl\lvert \partial_{\theta_i} \lVert f(x_n; \theta)\rVert_2^2 \bigr\rvert .

    Aljundi et al. (2018, eq. 4) take the gradient of the squared :math:`\ell_2` norm of the
    network's output (here the logits) for each example and average its absolute value: a
    parameter matters if moving it changes the function on the task's inputs. Gradients are
    per example (``torch.func.vmap``), so the absolute value is taken before the mean.

    Parameters
    ----------
    model : nn.Module
        Maps ``(n, ...)`` inputs to ``(n, K)`` outputs; put it in ``eval()`` mode first if it has
        dropout (it then warns) or batch norm.
    inputs : Tensor, DataLoader or iterable of batches
        Examples along dim 0, or batches of them (tensors or ``(inputs, targets)`` pairs; the
        targets are ignored). The mean is over all examples, each batch weighted by its size.

    Returns
    -------
    list of Tensor
        Shaped like ``list(model.parameters())``, non-negative.

    Examples
    --------
    For a linear model :math:`f = Wx + b` the gradient of :math:`\lVert f\rVert^2` in :math:`W` is
    :math:`2 f x^\top`:

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -1.0]]))
    >>> mas_importance(net, torch.tensor([[1.0, 2.0], [3.0, 0.0]]))[0]   # |2f x|: [2, 4] and [18, 0]
    tensor([[10.,  2.]])
    """
    check_model(model)
    check_model_mode(model, "the MAS importance", per_example=True)
    named = dict(model.named_parameters())
    params = {k: v.detach() for k, v in named.items()}

    def sq_norm(p: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, p, (x.unsqueeze(0),))
        return (out ** 2).sum()

    per_example = vmap(grad(sq_norm), in_dims=(None, 0))
    first = next(iter(params.values()))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    n = 0
    for k, x in enumerate(_input_batches(inputs)):
        x = x.to(device=first.device, dtype=first.dtype if x.is_floating_point() else x.dtype)
        check_tensor(x, "inputs" if isinstance(inputs, Tensor) else f"batch {k} of inputs")
        g = per_example(params, x)
        for name, t in total.items():
            t.add_(g[name].abs().sum(0))
        n += x.shape[0]
    if n == 0:
        raise ShapeError("inputs yielded no batches: a DataLoader or iterable of batches must hold at least one "
                         "example")
    return [total[name] / n for name in named]


def si_importance(path_integral: Sequence[Tensor], delta: Sequence[Tensor], xi: float) -> list[Tensor]:
    r"""One task's Synaptic-Intelligence importance :math:`\Omega_i = \max\bigl(0, \omega_i / (\Delta_i^2 + \xi)\bigr)`.

    ``path_integral`` is :math:`\omega_i = -\sum_t g_i(t)\, \Delta\theta_i(t)`, summed over the
    optimiser steps of the task (:math:`g` the gradient used by the step, :math:`\Delta\theta(t)`
    the step's update), ``delta`` the total displacement :math:`\Delta_i` over the task, and the
    damping :math:`\xi > 0` keeps the ratio bounded where a parameter barely moved (Zenke et al.
    2017, eq. 5). A negative :math:`\omega_i` (the parameter's updates raised the loss on balance)
    would make the penalty reward moving it; those entries are set to zero, so the penalty stays a
    convex bowl — a choice of this implementation, not of the paper.

    Parameters
    ----------
    path_integral, delta : Sequence of Tensor
        Tensors of the same shapes, finite.
    xi : float
        Damping, finite and ``> 0``.

    Returns
    -------
    list of Tensor
        Non-negative, shaped like ``delta``.

    Examples
    --------
    >>> si_importance([torch.tensor([2.0, -1.0])], [torch.tensor([1.0, 1.0])], xi=1.0)
    [tensor([1., 0.])]
    """
    omega = as_tensor_list("path_integral", path_integral)
    delta = as_tensor_list("delta", delta)
    xi = check_real(xi, "xi", low=0.0, open_low=True)
    check_like("path_integral", omega, delta, what="delta has")
    for k, (w, d) in enumerate(zip(omega, delta)):
        check_tensor(w, f"path_integral[{k}]")
        check_tensor(d, f"delta[{k}]")
    return [(w / (d ** 2 + xi)).clamp_min(0.0) for w, d in zip(omega, delta)]
