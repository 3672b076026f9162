r"""The Bartlett identities: the moments of log-likelihood derivatives that regularity forces to vanish.

For a one-parameter regular family write :math:`\ell = \log p(X \mid \theta)` and :math:`\ell', \ell'',
\ell'''` for its derivatives in :math:`\theta`. Differentiating :math:`\int p\, dx = 1` once, twice and
three times under the integral sign gives (Bartlett 1953)

.. math::

    \operatorname{E}\ell' = 0, \qquad
    \operatorname{E}\ell'' + \operatorname{E}\ell'^2 = 0, \qquad
    \operatorname{E}\ell''' + 3\operatorname{E}[\ell''\ell'] + \operatorname{E}\ell'^3 = 0,

because :math:`p'''/p = \ell''' + 3\ell''\ell' + \ell'^3`. The first is the mean-zero score, the second
the information identity; the third links the skewness of the score to the mean third derivative, the
quantity behind the :math:`O(n^{-1/2})` bias and skewness corrections of maximum likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..errors import InvalidArgumentError, ShapeError, UnsupportedError
from . import _params, _pointwise

__all__ = ["BartlettMoments", "bartlett_moments"]

_DTYPE = torch.float64
#: Relative tolerance of the quadrature in :func:`bartlett_moments`.
QUADRATURE_RTOL = 1e-11


@dataclass(frozen=True)
class BartlettMoments:
    r"""Expectations of products of log-likelihood derivatives, and the three Bartlett identities.

    Attributes
    ----------
    d1, d2, d3 : float
        :math:`\operatorname{E}\ell'`, :math:`\operatorname{E}\ell''`, :math:`\operatorname{E}\ell'''`.
    d1_squared, d1_cubed, d2_d1 : float
        :math:`\operatorname{E}\ell'^2` (the Fisher information), :math:`\operatorname{E}\ell'^3`,
        :math:`\operatorname{E}[\ell''\ell']`.
    """

    d1: float
    d2: float
    d3: float
    d1_squared: float
    d1_cubed: float
    d2_d1: float

    @property
    def first(self) -> float:
        r""":math:`\operatorname{E}\ell'` (zero for a regular family)."""
        return self.d1

    @property
    def second(self) -> float:
        r""":math:`\operatorname{E}\ell'' + \operatorname{E}\ell'^2` (zero for a regular family)."""
        return self.d2 + self.d1_squared

    @property
    def third(self) -> float:
        r""":math:`\operatorname{E}\ell''' + 3\operatorname{E}[\ell''\ell'] + \operatorname{E}\ell'^3`.

        Zero for a regular family.
        """
        return self.d3 + 3 * self.d2_d1 + self.d1_cubed


def bartlett_moments(dist: Distribution, param: str | None = None) -> BartlettMoments:
    r"""Moments of the first three log-likelihood derivatives in one parameter, by quadrature.

    Computes :math:`\operatorname{E}\ell', \operatorname{E}\ell'', \operatorname{E}\ell''',
    \operatorname{E}\ell'^2, \operatorname{E}\ell'^3, \operatorname{E}[\ell''\ell']` at the
    distribution's parameter, with the derivatives by automatic differentiation of ``log_prob`` and the
    expectation by adaptive quadrature over the support (``scipy.integrate.cubature``, relative
    tolerance :data:`QUADRATURE_RTOL`). The properties ``first``, ``second`` and ``third`` are the three
    Bartlett identities, zero when :math:`\int p\,dx` can be differentiated three times under the integral.

    Parameters
    ----------
    dist : torch.distributions.Distribution
        A single univariate continuous distribution.
    param : str, optional
        The one parameter to differentiate; may be omitted when the distribution has only one.

    Returns
    -------
    BartlettMoments

    Raises
    ------
    InvalidArgumentError
        ``param`` unknown, or it names more than one coordinate (or is omitted for a family with
        several parameters).
    ShapeError
        ``dist`` batched or multivariate.
    UnsupportedError
        ``dist`` discrete, or a parameter that moves the support.

    Examples
    --------
    Normal scale: :math:`\operatorname{E}\ell'' = -2/\sigma^2`, :math:`\operatorname{E}\ell'^2 = 2/\sigma^2`.

    >>> from torch.distributions import Normal
    >>> m = bartlett_moments(Normal(0.0, 1.0), "scale")
    >>> round(m.d1_squared, 10), round(m.second, 10) + 0.0, round(m.third, 10) + 0.0
    (2.0, 0.0, 0.0)
    """
    r = _params.resolve(dist, param)
    if r.batch_shape != torch.Size() or r.dist.event_shape != torch.Size():
        raise ShapeError(
            f"dist must be a single univariate distribution (batch and event shape ()), got batch shape "
            f"{tuple(r.batch_shape)} and event shape {tuple(r.dist.event_shape)}"
        )
    if r.k != 1:
        raise InvalidArgumentError(
            f"param must name one scalar parameter of {r.cls.__name__}, got {r.names} ({r.k} coordinates)"
        )
    if r.dist.has_enumerate_support or getattr(r.dist.support, "is_discrete", False):
        raise UnsupportedError(f"dist: {r.cls.__name__} is discrete; bartlett_moments integrates a density")
    lower, upper = _pointwise.support(r)

    def integrand(x: Tensor) -> Tensor:
        lp, d1, d2, d3 = _pointwise.derivatives(r, x, 3)
        a = d1[:, 0]
        return lp.exp()[:, None] * torch.stack([a, d2, d3, a * a, a**3, d2 * a], -1)

    centre, spread = _pointwise.centre_scale(r)
    total = _pointwise.expectation(integrand, lower, upper, QUADRATURE_RTOL, points=[centre],
                                   centre=centre, scale=spread)
    return BartlettMoments(*(float(v) for v in total))
