"""fisherbook: Fisher information, computed and tested.

The helper package behind the *fisherbook* textbook. Each module owns one idea
(see ``DESIGN.md``): closed-form and estimated Fisher information of probability
families, Cramér–Rao and asymptotic inference tools, Fisher matrices of torch
models, natural-gradient and K-FAC optimisers, EWC and information geometry.

Examples
--------
>>> import fisherbook as fb
>>> fb.__version__
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import continual, curvature, data, optim, plotting
from .dualflat import (
    bregman_divergence, dual_potential, expectation_parameters, from_expectation, from_natural,
    kl_bregman, log_partition, m_projection, natural_parameters,
)
from .estimators import (
    FisherEstimate, conditional_fisher, coordinate_names, empirical_fisher, fisher_information,
    observed_information, parameter_names, reparameterize, score,
)
from .families import CLOSED_FORMS, ClosedForm, closed_form_fisher
from .geometry import (
    Geodesic, GeodesicError, OffManifoldError, christoffel_symbols, exp_map, fisher_metric,
    fisher_rao_distance, geodesic, jeffreys_log_density, jeffreys_prior, kl_quadratic, log_map,
    pullback_metric,
)
from .inference import (
    ConvergenceError, CoverageEstimate, EstimatorSummary, MLEResult, coverage, crlb, lr_interval, mle,
    sandwich_covariance, score_interval, simulate_estimator, van_trees, wald_interval,
)
from .influence import fit_newton, influence_scores, leave_one_out, objective_curvature, per_example_loss
from .intervals import binomial_interval, exact_coverage, poisson_interval
from .laplace import LastLayerLaplace, calibration_curve, expected_calibration_error
from .selection import (
    bic, gaussian_linear_log_evidence, laplace_log_evidence, nig_linear_log_evidence, polynomial_design,
)

__all__ = [
    "__version__",
    "plotting",
    "curvature",
    "optim",
    "continual",
    "data",
    "coordinate_names",
    "parameter_names",
    "CLOSED_FORMS",
    "ClosedForm",
    "closed_form_fisher",
    "FisherEstimate",
    "conditional_fisher",
    "empirical_fisher",
    "fisher_information",
    "observed_information",
    "reparameterize",
    "score",
    "ConvergenceError",
    "CoverageEstimate",
    "EstimatorSummary",
    "MLEResult",
    "coverage",
    "crlb",
    "lr_interval",
    "mle",
    "sandwich_covariance",
    "score_interval",
    "simulate_estimator",
    "van_trees",
    "wald_interval",
    "binomial_interval",
    "exact_coverage",
    "poisson_interval",
    "bic",
    "gaussian_linear_log_evidence",
    "laplace_log_evidence",
    "nig_linear_log_evidence",
    "polynomial_design",
    "fit_newton",
    "influence_scores",
    "leave_one_out",
    "objective_curvature",
    "per_example_loss",
    "LastLayerLaplace",
    "calibration_curve",
    "expected_calibration_error",
    "OffManifoldError",
    "GeodesicError",
    "Geodesic",
    "fisher_rao_distance",
    "exp_map",
    "log_map",
    "fisher_metric",
    "pullback_metric",
    "christoffel_symbols",
    "geodesic",
    "jeffreys_prior",
    "jeffreys_log_density",
    "kl_quadratic",
    "natural_parameters",
    "expectation_parameters",
    "log_partition",
    "dual_potential",
    "from_natural",
    "from_expectation",
    "bregman_divergence",
    "kl_bregman",
    "m_projection",
]
