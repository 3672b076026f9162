"""fisherbook: Fisher information, computed and tested.

The helper package behind the *fisherbook* textbook. Its subpackages follow the
two halves of the subject (see ``docs/architecture.md``): :mod:`~fisherbook.stats` and
:mod:`~fisherbook.geometry` for probability families; :mod:`~fisherbook.curvature` (the one core for
torch models), :mod:`~fisherbook.optim`, :mod:`~fisherbook.continual` and :mod:`~fisherbook.bayes`
for models, and :mod:`~fisherbook.overparam` for over-parameterised networks;
:mod:`~fisherbook.errors` is the error vocabulary. It covers closed-form and estimated Fisher
information of probability families, Cramér–Rao and asymptotic inference tools, Fisher matrices
of torch models, natural-gradient and K-FAC optimisers, EWC, information geometry and singular
learning.

Examples
--------
>>> import fisherbook as fb
>>> fb.__version__
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import bayes, continual, curvature, data, errors, geometry, optim, overparam, plotting, stats
from .bayes import (
    LastLayerLaplace,
    bic,
    calibration_curve,
    expected_calibration_error,
    fit_newton,
    gaussian_linear_log_evidence,
    influence_scores,
    laplace_log_evidence,
    leave_one_out,
    nig_linear_log_evidence,
    objective_curvature,
    per_example_loss,
    polynomial_design,
)
from .errors import ConvergenceError, FisherbookError, GeodesicError, OffManifoldError
from .geometry import (
    Geodesic,
    bregman_divergence,
    christoffel_symbols,
    dual_potential,
    exp_map,
    expectation_parameters,
    fisher_metric,
    fisher_rao_distance,
    from_expectation,
    from_natural,
    geodesic,
    jeffreys_log_density,
    jeffreys_prior,
    kl_bregman,
    kl_quadratic,
    log_map,
    log_partition,
    m_projection,
    mirror_descent,
    natural_gradient_descent,
    natural_parameters,
    pullback_metric,
)
from .stats import (
    CLOSED_FORMS,
    ClosedForm,
    CoverageEstimate,
    EstimatorSummary,
    FisherEstimate,
    MLEResult,
    binomial_interval,
    closed_form_fisher,
    conditional_fisher,
    coordinate_names,
    coverage,
    crlb,
    empirical_fisher,
    exact_coverage,
    fisher_information,
    lr_interval,
    mle,
    observed_information,
    parameter_names,
    poisson_interval,
    reparameterize,
    sandwich_covariance,
    score,
    score_interval,
    simulate_estimator,
    van_trees,
    wald_interval,
)

__all__ = [
    "__version__",
    "plotting",
    "curvature",
    "optim",
    "continual",
    "data",
    "errors",
    "stats",
    "geometry",
    "bayes",
    "overparam",
    "FisherbookError",
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
    "mirror_descent",
    "natural_gradient_descent",
]
