r"""Information geometry (chapter 7).

- :mod:`~fisherbook.geometry.riemannian`: the Fisher–Rao metric, distances, exponential and log maps,
  geodesics, Christoffel symbols, pull-backs, Jeffreys priors, the local KL expansion;
- :mod:`~fisherbook.geometry.dualflat`: natural and expectation parameters, log-partition and dual
  potential, Bregman divergences, m-projections;
- :mod:`~fisherbook.geometry.connections`: the α-connections, the Amari–Chentsov tensor, the Riemann
  tensor and Gaussian curvature computed from a metric;
- :mod:`~fisherbook.geometry.divergences`: Amari's α-divergences;
- :mod:`~fisherbook.geometry.gaussian_spd`: the multivariate normal family and the SPD matrices;
- :mod:`~fisherbook.geometry.em`: the EM algorithm as alternating e- and m-projections.
- :mod:`~fisherbook.geometry.mirror`: mirror descent on the mean parameters and natural gradient in the
  natural parameters, the same iteration (chapter 4).

Every name is re-exported at the top level (``fb.fisher_rao_distance``).
"""

from __future__ import annotations

from .connections import (
    alpha_connection,
    amari_chentsov_tensor,
    exponential_family_tensor,
    gaussian_curvature,
    levi_civita_lowered,
    riemann_tensor,
)
from .divergences import alpha_divergence
from .dualflat import (
    bregman_divergence,
    canonical_divergence,
    dual_potential,
    e_projection,
    expectation_parameters,
    from_expectation,
    from_natural,
    kl_bregman,
    log_partition,
    m_projection,
    natural_parameters,
)
from .em import MixtureTrace, gaussian_mixture_em
from .gaussian_spd import mvn_coordinates, mvn_fisher_metric, mvn_from_coordinates, spd_fisher_distance, spd_geodesic
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
    "alpha_connection",
    "amari_chentsov_tensor",
    "levi_civita_lowered",
    "exponential_family_tensor",
    "riemann_tensor",
    "gaussian_curvature",
    "alpha_divergence",
    "spd_fisher_distance",
    "spd_geodesic",
    "mvn_fisher_metric",
    "mvn_coordinates",
    "mvn_from_coordinates",
    "MixtureTrace",
    "gaussian_mixture_em",
    "e_projection",
    "canonical_divergence",
    "mirror_descent", "natural_gradient_descent",
]
