r"""Quadratic penalties that hold a model near the parameters of an old task.

After task :math:`A` is learned at :math:`\theta^*_A`, elastic weight consolidation (EWC;
Kirkpatrick et al. 2017) adds

.. math::

    \frac{\lambda}{2} \sum_i F_i \, (\theta_i - \theta^*_{A,i})^2

to the loss of the next task, with :math:`F` the diagonal of the Fisher information of task
:math:`A` at :math:`\theta^*_A`: the Laplace approximation of the old task's log posterior, with
the Fisher standing in for its precision. :func:`l2_penalty` is the same with :math:`F = 1`, and
:func:`online_fisher_update` is the running Fisher of online EWC (Schwarz et al. 2018).

Parameters, anchors and Fishers are lists of tensors in ``model.parameters()`` order; a list
whose number or shapes of tensors differ from the parameters' is refused with a
:class:`~fisherbook.errors.ShapeError` naming the first mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor

from ..errors import InvalidArgumentError
from ._checks import as_tensor_list, check_fisher_values, check_gamma, check_lam, check_like

__all__ = ["ewc_penalty", "l2_penalty", "online_fisher_update"]


def quadratic(params: Sequence[Tensor], anchor: Sequence[Tensor], fisher: Sequence[Tensor] | None,
              lam: float) -> Tensor:
    """:func:`ewc_penalty` without the checks (the strategies check shapes once per call and values
    once per task). ``fisher=None`` means unit weights (the L2 penalty)."""
    total = params[0].new_zeros(())
    for k, (p, a) in enumerate(zip(params, anchor)):
        sq = (p - a.to(p)) ** 2
        total = total + (sq if fisher is None else fisher[k].to(p) * sq).sum()
    return 0.5 * lam * total


def ewc_penalty(
    params: Iterable[Tensor], anchor: Sequence[Tensor], fisher: Sequence[Tensor], lam: float
) -> Tensor:
    r"""The EWC penalty :math:`\frac{\lambda}{2} \sum_i F_i (\theta_i - \theta^*_i)^2`.

    Its gradient is :math:`\lambda F \odot (\theta - \theta^*)` and it vanishes, with its
    gradient, at the anchor. This is the convention of Kirkpatrick et al. (2017, eq. 3); some
    libraries (Avalanche) drop the factor :math:`\tfrac12`, so their :math:`\lambda` is half ours.

    Parameters
    ----------
    params : Iterable of Tensor
        Current parameters :math:`\theta`, e.g. ``model.parameters()``.
    anchor : Sequence of Tensor
        Anchor :math:`\theta^*`, shaped like ``params``.
    fisher : Sequence of Tensor
        Fisher diagonal :math:`F`, shaped like ``params``, finite and non-negative.
    lam : float
        Strength :math:`\lambda \ge 0` (a Python or NumPy number).

    Returns
    -------
    Tensor
        A scalar, differentiable with respect to ``params``.

    Raises
    ------
    ShapeError
        If ``anchor`` or ``fisher`` has another number of tensors than ``params``, or a tensor of
        another shape (the message names the parameter).
    InvalidArgumentError
        If ``lam`` is negative or not finite, ``fisher`` has a negative or non-finite entry, or
        ``params`` is empty.
    ArgumentTypeError
        If ``lam`` is not a number or an argument is not a sequence of tensors.

    Examples
    --------
    >>> import torch
    >>> theta = [torch.tensor([1.0, 2.0])]
    >>> ewc_penalty(theta, anchor=[torch.zeros(2)], fisher=[torch.tensor([1.0, 0.5])], lam=2.0)
    tensor(3.)
    """
    lam = check_lam(lam)
    params = as_tensor_list("params", params)
    anchor = as_tensor_list("anchor", anchor)
    fisher = as_tensor_list("fisher", fisher)
    if not params:
        raise InvalidArgumentError("params must hold at least one tensor")
    check_like("anchor", anchor, params, what="params has")
    check_like("fisher", fisher, params, what="params has")
    check_fisher_values("fisher", fisher)
    return quadratic(params, anchor, fisher, lam)


def l2_penalty(params: Iterable[Tensor], anchor: Sequence[Tensor], lam: float) -> Tensor:
    r"""The plain L2-to-anchor penalty :math:`\frac{\lambda}{2} \lVert \theta - \theta^* \rVert^2`.

    It is :func:`ewc_penalty` with :math:`F = 1`: every parameter is held equally firmly,
    whatever its importance for the old task.

    Parameters
    ----------
    params : Iterable of Tensor
        Current parameters.
    anchor : Sequence of Tensor
        Anchor, shaped like ``params``.
    lam : float
        Strength :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor
        A scalar.

    Raises
    ------
    ShapeError
        If ``anchor`` does not match ``params`` in number or shapes of tensors.

    Examples
    --------
    >>> import torch
    >>> l2_penalty([torch.tensor([3.0, 4.0])], [torch.zeros(2)], lam=1.0)
    tensor(12.5000)
    """
    lam = check_lam(lam)
    params = as_tensor_list("params", params)
    anchor = as_tensor_list("anchor", anchor)
    if not params:
        raise InvalidArgumentError("params must hold at least one tensor")
    check_like("anchor", anchor, params, what="params has")
    return quadratic(params, anchor, None, lam)


def online_fisher_update(fisher: Sequence[Tensor] | None, fisher_new: Sequence[Tensor], gamma: float) -> list[Tensor]:
    r"""Online-EWC accumulation :math:`F \leftarrow \gamma F + F_{\text{new}}`.

    Schwarz et al. (2018) keep one running Fisher and one anchor instead of a penalty per task;
    :math:`\gamma \in [0, 1]` down-weights older tasks (:math:`\gamma = 1` sums all Fishers,
    :math:`\gamma = 0` keeps only the newest).

    Parameters
    ----------
    fisher : Sequence of Tensor or None
        The running Fisher; ``None`` before the first task.
    fisher_new : Sequence of Tensor
        The Fisher of the task just learned, shaped like ``fisher``; finite and non-negative.
    gamma : float
        Decay in ``[0, 1]``.

    Returns
    -------
    list of Tensor
        New tensors; the inputs are not modified.

    Raises
    ------
    InvalidArgumentError
        If ``gamma`` is outside ``[0, 1]`` or a Fisher has a negative or non-finite entry.
    ShapeError
        If ``fisher_new`` does not match ``fisher``.

    Examples
    --------
    >>> import torch
    >>> online_fisher_update([torch.tensor([1.0, 2.0])], [torch.tensor([0.5, 0.5])], gamma=0.5)
    [tensor([1.0000, 1.5000])]
    """
    gamma = check_gamma(gamma)
    fisher_new = as_tensor_list("fisher_new", fisher_new)
    if not fisher_new:
        raise InvalidArgumentError("fisher_new must hold at least one tensor")
    check_fisher_values("fisher_new", fisher_new)
    if fisher is None:
        return [f.detach().clone() for f in fisher_new]
    fisher = as_tensor_list("fisher", fisher)
    check_like("fisher_new", fisher_new, fisher, what="fisher has")
    check_fisher_values("fisher", fisher)
    return [gamma * f.detach() + g.detach() for f, g in zip(fisher, fisher_new)]
