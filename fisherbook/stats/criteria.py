r"""Information criteria of a maximum-likelihood fit: AIC and Takeuchi's TIC (the misspecified AIC).

Chapter 3. Both estimate :math:`-2` times the expected log-likelihood of new data at the fitted
parameters; AIC's penalty :math:`2k` assumes the model is correct, TIC's penalty
:math:`2\operatorname{tr}(J^{-1}K)` (with :math:`K` the outer product of the scores) does not.
"""

from __future__ import annotations

from torch import Tensor

from .._numerics import spd_inverse
from ..errors import ArgumentTypeError
from .mle import MLEResult

__all__ = ["aic", "tic", "tic_penalty"]


def _check(result: object) -> MLEResult:
    if not isinstance(result, MLEResult):
        raise ArgumentTypeError(f"result must be an MLEResult from fisherbook.mle, got {type(result).__name__}")
    return result


def aic(result: MLEResult) -> Tensor:
    r"""Akaike's criterion :math:`-2\ell(\hat\theta) + 2k` of a fit, shape ``(*batch)``.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> from fisherbook.stats.mle import mle
    >>> fit = mle(Normal, torch.tensor([0.1, 1.9, 1.2, 0.8], dtype=torch.float64), init={"loc": 0.0, "scale": 1.0})
    >>> bool(torch.isclose(aic(fit), -2 * fit.log_likelihood + 4))
    True
    """
    r = _check(result)
    return -2 * r.log_likelihood + 2 * len(r.names)


def tic_penalty(result: MLEResult) -> Tensor:
    r"""Takeuchi's penalty :math:`\operatorname{tr}(\hat J^{-1}\hat K)`, shape ``(*batch)``.

    :math:`\hat J = -\nabla^2\ell(\hat\theta)` is the observed information and
    :math:`\hat K = \sum_i s_i s_i^\top` the outer product of the per-observation scores, the
    "bread" and "meat" of the sandwich. Under the model :math:`J \approx K` and the penalty is
    about :math:`k`, the number of parameters; under misspecification it is the trace of the
    Godambe-information correction :math:`\operatorname{tr}(A^{-1}B)`.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Poisson
    >>> from fisherbook.stats.mle import mle
    >>> x = torch.tensor([0.0, 1.0, 1.0, 5.0], dtype=torch.float64)
    >>> fit = mle(Poisson, x, init={"rate": 1.0})
    >>> round(float(tic_penalty(fit)), 6), round(float(((x - x.mean()) ** 2).mean() / x.mean()), 6)  # dispersion index
    (2.107143, 2.107143)
    """
    r = _check(result)
    S = r.scores()
    K = S.transpose(-1, -2) @ S
    return (spd_inverse(r.observed_information, "observed information") @ K).diagonal(dim1=-2, dim2=-1).sum(-1)


def tic(result: MLEResult) -> Tensor:
    r"""Takeuchi's criterion :math:`-2\ell(\hat\theta) + 2\operatorname{tr}(\hat J^{-1}\hat K)`, shape ``(*batch)``.

    The model-robust version of :func:`aic` (Takeuchi 1976; Burnham and Anderson 2002, §7.3):
    under the model the two penalties agree to :math:`O_p(n^{-1/2})`.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Poisson
    >>> from fisherbook.stats.mle import mle
    >>> fit = mle(Poisson, torch.tensor([0.0, 1.0, 1.0, 5.0], dtype=torch.float64), init={"rate": 1.0})
    >>> bool(torch.isclose(tic(fit) - aic(fit), 2 * (tic_penalty(fit) - 1)))
    True
    """
    r = _check(result)
    return -2 * r.log_likelihood + 2 * tic_penalty(r)
