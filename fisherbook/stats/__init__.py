r"""Fisher information of probability families, and the inference built on it (chapters 1–3).

- :mod:`~fisherbook.stats.families`: closed-form Fisher information of ``torch.distributions`` families;
- :mod:`~fisherbook.stats.estimators`: score, quadrature, Monte-Carlo, observed and empirical information,
  reparameterisation;
- :mod:`~fisherbook.stats.inference`: Cramér–Rao and van Trees bounds, estimator simulation, maximum
  likelihood, Wald/score/likelihood-ratio intervals, coverage, sandwich covariance;
- :mod:`~fisherbook.stats.intervals`: exact coverage of Binomial and Poisson intervals.

Every name is re-exported at the top level (``fb.fisher_information``).
"""

from __future__ import annotations

from .estimators import (
    FisherEstimate, conditional_fisher, coordinate_names, empirical_fisher, fisher_information,
    observed_information, parameter_names, reparameterize, score,
)
from .families import CLOSED_FORMS, ClosedForm, closed_form_fisher
from .inference import (
    CoverageEstimate, EstimatorSummary, MLEResult, coverage, crlb, lr_interval, mle, sample,
    sandwich_covariance, score_interval, simulate_estimator, van_trees, wald_interval,
)
from .intervals import binomial_interval, exact_coverage, poisson_interval

__all__ = [
    "CLOSED_FORMS", "ClosedForm", "closed_form_fisher",
    "FisherEstimate", "conditional_fisher", "coordinate_names", "empirical_fisher", "fisher_information",
    "observed_information", "parameter_names", "reparameterize", "score",
    "CoverageEstimate", "EstimatorSummary", "MLEResult", "coverage", "crlb", "lr_interval", "mle", "sample",
    "sandwich_covariance", "score_interval", "simulate_estimator", "van_trees", "wald_interval",
    "binomial_interval", "exact_coverage", "poisson_interval",
]
