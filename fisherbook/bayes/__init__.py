r"""Bayesian and post-hoc uses of the curvature of trained models (chapter 8).

- :mod:`~fisherbook.bayes.selection`: BIC, the Laplace evidence and exact Gaussian linear-model evidences;
- :mod:`~fisherbook.bayes.influence`: influence functions with Hessian, GGN or empirical-Fisher curvature,
  against leave-one-out retraining;
- :mod:`~fisherbook.bayes.laplace`: the last-layer Laplace approximation and its predictive.

Every name is re-exported at the top level (``fb.influence_scores``).
"""

from __future__ import annotations

from .influence import fit_newton, influence_scores, leave_one_out, objective_curvature, per_example_loss
from .laplace import LastLayerLaplace, calibration_curve, expected_calibration_error
from .selection import (
    bic, gaussian_linear_log_evidence, laplace_log_evidence, nig_linear_log_evidence, polynomial_design,
)

__all__ = [
    "fit_newton", "influence_scores", "leave_one_out", "objective_curvature", "per_example_loss",
    "LastLayerLaplace", "calibration_curve", "expected_calibration_error",
    "bic", "gaussian_linear_log_evidence", "laplace_log_evidence", "nig_linear_log_evidence", "polynomial_design",
]
