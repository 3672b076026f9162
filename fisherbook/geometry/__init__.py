r"""Information geometry (chapter 7).

- :mod:`~fisherbook.geometry.riemannian`: the Fisher–Rao metric, distances, exponential and log maps,
  geodesics, Christoffel symbols, pull-backs, Jeffreys priors, the local KL expansion;
- :mod:`~fisherbook.geometry.dualflat`: natural and expectation parameters, log-partition and dual
  potential, Bregman divergences, m-projections;
- :mod:`~fisherbook.geometry.mirror`: mirror descent on the mean parameters and natural gradient in the
  natural parameters, the same iteration (chapter 4).

Every name is re-exported at the top level (``fb.fisher_rao_distance``).
"""

from __future__ import annotations

from .dualflat import (
    bregman_divergence,
    dual_potential,
    expectation_parameters,
    from_expectation,
    from_natural,
    kl_bregman,
    log_partition,
    m_projection,
    natural_parameters,
)
from .mirror import mirror_descent, natural_gradient_descent
from .riemannian import (
    Geodesic,
    christoffel_symbols,
    exp_map,
    fisher_metric,
    fisher_rao_distance,
    geodesic,
    jeffreys_log_density,
    jeffreys_prior,
    kl_quadratic,
    log_map,
    pullback_metric,
)

__all__ = [
    "bregman_divergence", "dual_potential", "expectation_parameters", "from_expectation", "from_natural",
    "kl_bregman", "log_partition", "m_projection", "natural_parameters",
    "Geodesic", "christoffel_symbols", "exp_map", "fisher_metric", "fisher_rao_distance", "geodesic",
    "jeffreys_log_density", "jeffreys_prior", "kl_quadratic", "log_map", "pullback_metric",
    "mirror_descent", "natural_gradient_descent",
]
