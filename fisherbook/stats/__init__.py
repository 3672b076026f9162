r"""Fisher information of probability families, and the inference built on it (chapters 1–3).

- :mod:`~fisherbook.stats.families`: closed-form Fisher information of ``torch.distributions`` families;
- :mod:`~fisherbook.stats.estimators`: score, quadrature, Monte-Carlo, observed and empirical information,
  reparameterisation;
- :mod:`~fisherbook.stats.bounds`: Cramér–Rao, van Trees, Bhattacharyya and Hammersley–Chapman–Robbins bounds;
- :mod:`~fisherbook.stats.shrinkage`: Hodges' and James–Stein estimators and their exact and Monte-Carlo risks;
- :mod:`~fisherbook.stats.simulation`: reproducible sampling, estimator simulation, interval coverage;
- :mod:`~fisherbook.stats.mle`: maximum likelihood and the sandwich covariance;
- :mod:`~fisherbook.stats.likelihood_intervals`: Wald, score and likelihood-ratio intervals
  (``fisherbook.stats.inference`` re-exports these four for compatibility);
- :mod:`~fisherbook.stats.intervals`: exact coverage of Binomial and Poisson intervals;
- :mod:`~fisherbook.stats.coarsened`: information of a binned or censored observation;
- :mod:`~fisherbook.stats.nuisance`: the efficient information (Schur complement) under nuisance parameters;
- :mod:`~fisherbook.stats.missing_information`: Louis's formula, observed = complete - missing information;
- :mod:`~fisherbook.stats.bartlett`: moments of log-likelihood derivatives and the Bartlett identities.
- :mod:`~fisherbook.stats.likelihood_tests`: Wald, score and likelihood-ratio tests, Bartlett factors,
  chi-bar-squared tails;
- :mod:`~fisherbook.stats.asymptotics`: delta method, variance-stabilising intervals, Le Cam's one-step estimator;
- :mod:`~fisherbook.stats.profile`: profile likelihood and its interval, the Cox–Reid adjustment, REML;
- :mod:`~fisherbook.stats.criteria`: AIC and Takeuchi's TIC.

Every name is re-exported at the top level (``fb.fisher_information``).
"""

from __future__ import annotations

from . import inference as inference  # compatibility: fb.stats.inference.mle etc. keep working
from .asymptotics import STABILISED_FAMILIES, delta_method, one_step, stabilised_interval
from .bartlett import BartlettMoments, bartlett_moments
from .bounds import bhattacharyya_bound, bhattacharyya_matrix, chi_square_divergence, crlb, hcr_bound, van_trees
from .coarsened import binned_information, censored_information
from .criteria import aic, tic, tic_penalty
from .estimators import (
    FisherEstimate,
    conditional_fisher,
    coordinate_names,
    empirical_fisher,
    fisher_information,
    observed_information,
    parameter_names,
    reparameterize,
    score,
)
from .families import CLOSED_FORMS, ClosedForm, closed_form_fisher
from .intervals import binomial_interval, exact_coverage, poisson_interval
from .likelihood_intervals import lr_interval, score_interval, wald_interval
from .likelihood_tests import (
    BARTLETT_MODELS,
    LikelihoodTests,
    bartlett_factor,
    bartlett_factor_mc,
    chibar2_sf,
    likelihood_tests,
    lr_statistic,
    variance_component_lr,
)
from .missing_information import MissingInformation, louis_information
from .mle import MLEResult, mle, sandwich_covariance
from .nuisance import efficient_information
from .profile import profile_interval, profile_loglik, reml_variance
from .shrinkage import hodges_estimator, hodges_risk, james_stein, james_stein_risk, simulate_risk
from .simulation import CoverageEstimate, EstimatorSummary, coverage, sample, simulate_estimator

__all__ = [
    "CLOSED_FORMS", "ClosedForm", "closed_form_fisher",
    "FisherEstimate", "conditional_fisher", "coordinate_names", "empirical_fisher", "fisher_information",
    "observed_information", "parameter_names", "reparameterize", "score",
    "CoverageEstimate", "EstimatorSummary", "MLEResult", "coverage", "crlb", "lr_interval", "mle", "sample",
    "sandwich_covariance", "score_interval", "simulate_estimator", "van_trees", "wald_interval",
    "binomial_interval", "exact_coverage", "poisson_interval",
    "bhattacharyya_bound", "bhattacharyya_matrix", "chi_square_divergence", "hcr_bound",
    "hodges_estimator", "hodges_risk", "james_stein", "james_stein_risk", "simulate_risk",
    "binned_information", "censored_information", "efficient_information", "MissingInformation",
    "louis_information", "BartlettMoments", "bartlett_moments",
    "BARTLETT_MODELS", "LikelihoodTests", "bartlett_factor", "bartlett_factor_mc", "chibar2_sf", "likelihood_tests",
    "variance_component_lr",
    "lr_statistic", "STABILISED_FAMILIES", "delta_method", "one_step", "stabilised_interval",
    "profile_interval", "profile_loglik", "reml_variance", "aic", "tic", "tic_penalty",
]
