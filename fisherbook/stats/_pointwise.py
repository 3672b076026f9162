r"""Vectorised log-density derivatives at many points, and their expectations by adaptive cubature.

Private helper of :mod:`~fisherbook.stats.coarsened` and :mod:`~fisherbook.stats.bartlett`: each
point gets its own copy of the parameter, so one backward pass gives the derivative at every point,
and ``scipy.integrate.cubature`` (which evaluates whole batches of nodes) integrates them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from . import _params

__all__: list[str] = []

_DTYPE = torch.float64


def derivatives(r: _params._Resolved, x: Tensor, order: int) -> list[Tensor]:
    """``[log p, d1, d2, d3][: order + 1]`` at the points ``x`` (shape (N,)).

    ``d1`` has shape (N, k); ``d2`` and ``d3`` (one-parameter families only, ``r.k == 1``) shape (N,).
    """
    n = x.shape[0]
    theta = r.coords().expand(n, r.k).clone().requires_grad_(True)
    out: list[Tensor] = []
    with torch.enable_grad():
        lp = r.build(theta, torch.Size([n])).log_prob(x)
        out.append(lp.detach())
        if order >= 1:
            (g,) = torch.autograd.grad(lp.sum(), theta, create_graph=order > 1)
            out.append(g.detach())
            cur = g[:, 0]
            for j in range(2, order + 1):
                if not cur.requires_grad:
                    nxt = torch.zeros_like(cur)
                else:
                    (gg,) = torch.autograd.grad(cur.sum(), theta, create_graph=j < order, allow_unused=True,
                                                materialize_grads=True)
                    nxt = gg[:, 0]
                out.append(nxt.detach())
                cur = nxt
    return out


def support(r: _params._Resolved) -> tuple[float, float]:
    s = r.dist.support
    return (float(torch.as_tensor(getattr(s, "lower_bound", -math.inf))),
            float(torch.as_tensor(getattr(s, "upper_bound", math.inf))))


def centre_scale(r: _params._Resolved) -> tuple[float, float]:
    """A centre (location or mean) and a spread (standard deviation or scale) of the distribution."""
    d = r.dist
    centre = float(torch.as_tensor(getattr(d, "loc", d.mean)))
    if not math.isfinite(centre):
        centre = 0.0
    spread = float(d.stddev) if math.isfinite(float(d.stddev)) else float(torch.as_tensor(getattr(d, "scale", 1.0)))
    return centre, spread if math.isfinite(spread) and spread > 0 else 1.0


def _to_unit(x: float, lower: float, upper: float, centre: float, scale: float) -> float:
    """The node t of the finite interval that the map in :func:`expectation` sends to x."""
    if math.isinf(lower) and math.isinf(upper):
        u = (x - centre) / scale
        return 0.0 if u == 0 else (-1 + math.sqrt(1 + 4 * u * u)) / (2 * u)
    if math.isinf(upper):
        u = (x - lower) / scale
        return u / (1 + u)
    if math.isinf(lower):
        u = (upper - x) / scale
        return u / (1 + u)
    return x


def expectation(fun: Callable[[Tensor], Tensor], lower: float, upper: float, rtol: float,
                points: list[float] | None = None, centre: float = 0.0, scale: float = 1.0) -> np.ndarray:
    r"""``int_lower^upper fun(x) dx`` for ``fun``: (N,) tensor -> (N, q) tensor, by adaptive cubature.

    Infinite ends are mapped to a finite interval here (``x = c + s t/(1-t^2)`` on :math:`(-1, 1)`,
    ``x = a + s t/(1-t)`` or ``x = b - s t/(1-t)`` on :math:`[0, 1)`) rather than by
    ``scipy.integrate.cubature``, whose own map returns the wrong sign for an interval
    :math:`(-\infty, b]` in SciPy 1.17.1 (``cubature(lambda x: x * np.exp(-x**2), [-np.inf], [0.0])``
    gives +0.5). Integrand values where the density underflows are set to 0.
    """
    both, up, down = math.isinf(lower) and math.isinf(upper), math.isinf(upper), math.isinf(lower)

    def f(tt: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(tt[:, 0], dtype=_DTYPE)
        if both:
            x, jac = centre + scale * t / (1 - t**2), scale * (1 + t**2) / (1 - t**2) ** 2
        elif up:
            x, jac = lower + scale * t / (1 - t), scale / (1 - t) ** 2
        elif down:
            x, jac = upper - scale * t / (1 - t), scale / (1 - t) ** 2
        else:
            x, jac = t, torch.ones_like(t)
        val = fun(x) * jac[:, None]
        val = torch.where(torch.isfinite(val), val, torch.zeros_like(val))
        out: np.ndarray = val.numpy()
        return out

    a, b = (-1.0, 1.0) if both else (0.0, 1.0) if (up or down) else (lower, upper)
    inner = sorted({_to_unit(p, lower, upper, centre, scale) for p in (points or []) if lower < p < upper})
    inner = [p for p in inner if a < p < b]
    res = integrate.cubature(f, [a], [b], rtol=rtol, atol=1e-15, points=[[p] for p in inner] or None)
    value: np.ndarray = np.asarray(res.estimate)
    return value
