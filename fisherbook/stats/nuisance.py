r"""The information about some parameters when the others are unknown: the efficient information.

Split :math:`\theta = (\theta_1, \theta_2)` into parameters of interest :math:`\theta_1` and
nuisance parameters :math:`\theta_2`, and the Fisher information into the matching blocks
:math:`I_{11}, I_{12}, I_{21}, I_{22}`. With :math:`\theta_2` known, the information about
:math:`\theta_1` is the block :math:`I_{11}`; with :math:`\theta_2` unknown it is the Schur complement

.. math::

    I_{11\cdot 2} = I_{11} - I_{12}\, I_{22}^{-1}\, I_{21} = \bigl([I^{-1}]_{11}\bigr)^{-1}
    \preceq I_{11},

the information in the part of the score :math:`s_1` that is orthogonal (uncorrelated) to the
nuisance score :math:`s_2`, its residual :math:`s_1 - I_{12} I_{22}^{-1} s_2` (the *efficient
score*). The two agree exactly when :math:`I_{12} = 0`: the parameters are *orthogonal*
(Cox & Reid 1987).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int, check_symmetric_psd, check_tensor
from ..errors import ArgumentTypeError, InvalidArgumentError, NotPositiveDefiniteError

__all__ = ["efficient_information"]

_DTYPE = torch.float64


def _interest_indices(interest: Any, k: int) -> tuple[int, ...]:
    if isinstance(interest, Tensor):
        interest = interest.tolist()
    if isinstance(interest, int | bool) or hasattr(interest, "__index__"):
        items: Sequence[Any] = [interest]
    elif isinstance(interest, Sequence) and not isinstance(interest, str):
        items = interest
    else:
        raise ArgumentTypeError(
            f"interest must be an int or a sequence of ints (indices of the parameters of interest), "
            f"got {type(interest).__name__}"
        )
    idx = tuple(check_int(i, "interest", minimum=-k, maximum=k - 1) % k for i in items)
    if not idx:
        raise InvalidArgumentError("interest must name at least one parameter index, got an empty sequence")
    if len(set(idx)) != len(idx):
        raise InvalidArgumentError(f"interest must not repeat an index, got {list(items)}")
    return idx


def efficient_information(info: Any, interest: int | Sequence[int]) -> Tensor:
    r"""Efficient information about the parameters of interest, the others being unknown.

    .. math::

        I_{11\cdot 2} = I_{11} - I_{12}\, I_{22}^{-1}\, I_{21} = \bigl([I^{-1}]_{11}\bigr)^{-1},

    the Schur complement of the nuisance block :math:`I_{22}` in the Fisher information. Its inverse is
    the asymptotic covariance of the maximum-likelihood estimate of :math:`\theta_1` when
    :math:`\theta_2` is estimated too, and :math:`I_{11\cdot 2} \preceq I_{11}` (Loewner order), with
    equality when :math:`I_{12} = 0`.

    Parameters
    ----------
    info : Tensor
        Fisher information, a symmetric positive semi-definite matrix of shape ``(..., k, k)``
        (batched matrices give batched results).
    interest : int or sequence of int
        Indices of the parameters of interest :math:`\theta_1`, in the order wanted in the result;
        the remaining indices are the nuisance parameters :math:`\theta_2`. Naming every index
        returns the matrix (rearranged) itself.

    Returns
    -------
    Tensor
        float64, shape ``(..., m, m)`` with ``m = len(interest)``.

    Raises
    ------
    ArgumentTypeError
        ``info`` not array-like, ``interest`` not an int or sequence of ints.
    InvalidArgumentError
        An index out of range, repeated, or none given.
    NotPositiveDefiniteError
        ``info`` not symmetric positive semi-definite, or its nuisance block singular (the
        nuisance parameters are not identified, and the efficient information is not defined).

    Examples
    --------
    Normal(loc, scale): loc and scale are orthogonal, so not knowing the scale costs nothing.

    >>> import torch
    >>> efficient_information(torch.tensor([[0.25, 0.0], [0.0, 0.5]]), 0)
    tensor([[0.2500]], dtype=torch.float64)

    Correlated parameters: the Schur complement is :math:`2 - 1 \cdot 1 / 1 = 1`.

    >>> efficient_information(torch.tensor([[2.0, 1.0], [1.0, 1.0]]), [0])
    tensor([[1.]], dtype=torch.float64)
    """
    mat = check_tensor(info, "info", dtype=_DTYPE)
    check_symmetric_psd(mat, "info")  # square (ShapeError), finite, symmetric, PSD
    k = mat.shape[-1]
    idx = _interest_indices(interest, k)
    rest = tuple(i for i in range(k) if i not in idx)
    a = torch.tensor(idx)
    i11 = mat[..., a[:, None], a[None, :]]
    if not rest:
        return i11.clone()
    b = torch.tensor(rest)
    i12 = mat[..., a[:, None], b[None, :]]
    i22 = mat[..., b[:, None], b[None, :]]
    chol, bad = torch.linalg.cholesky_ex(i22)
    scale = i22.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(torch.finfo(_DTYPE).tiny)
    tiny = chol.diagonal(dim1=-2, dim2=-1).amin(-1) ** 2 <= 1e3 * torch.finfo(_DTYPE).eps * scale
    if bool((bad != 0).any()) or bool(tiny.any()):
        raise NotPositiveDefiniteError(
            f"info: the nuisance block (indices {list(rest)}) must be positive definite; it is singular, "
            "so the nuisance parameters are not identified and the efficient information is not defined"
        )
    solved = torch.cholesky_solve(i12.transpose(-1, -2), chol)
    out = i11 - i12 @ solved
    return 0.5 * (out + out.transpose(-1, -2))
