r"""Bayesian and post-hoc uses of the curvature of trained models (chapter 8).

- ``fisherbook.bayes.selection``: BIC, the Laplace evidence and exact Gaussian linear-model evidences;
- ``fisherbook.bayes.influence``: influence functions with Hessian, GGN or empirical-Fisher curvature,
  against leave-one-out retraining;
- ``fisherbook.bayes.laplace``: the last-layer Laplace approximation and its predictive;
- ``fisherbook.bayes.calibration``: reliability curves and the expected calibration error;
- ``fisherbook.bayes.singular``: singular learning theory: the free energy, WBIC and an RLCT estimate (chapter 9);
- ``fisherbook.bayes.ngvi``: natural-gradient variational inference with a Gaussian family (the Bayesian
  learning rule) and its ordinary-gradient baseline (chapter 4).

Every name is re-exported at the top level (``fb.influence_scores``). Losses, Fishers and
Gauss–Newton matrices come from :mod:`fisherbook.curvature`.

Bad arguments raise the :mod:`fisherbook.errors` classes. The model-mode rule: dropout in training
mode gives a :class:`~fisherbook.errors.ModelModeWarning` (results would change from call to call);
batch normalisation in training mode is refused with :class:`~fisherbook.errors.UnsupportedError`
where per-example derivatives are needed (influence functions), since it couples the examples
through the batch's statistics, and gives the warning otherwise (:class:`.LastLayerLaplace`).
"""

from __future__ import annotations

from .calibration import calibration_curve, expected_calibration_error
from .influence import fit_newton, influence_scores, leave_one_out, objective_curvature, per_example_loss
from .laplace import LastLayerLaplace
from .ngvi import blr_step, gaussian_elbo, gaussian_linear_posterior, glm_expectations, gradient_vi, natural_gradient_vi
from .selection import (
    bic,
    gaussian_linear_log_evidence,
    laplace_log_evidence,
    nig_linear_log_evidence,
    polynomial_design,
)
from .singular import free_energy, rlct_estimate, tempered_mean, wbic, wbic_temperature

__all__ = [
    "fit_newton", "influence_scores", "leave_one_out", "objective_curvature", "per_example_loss",
    "LastLayerLaplace", "calibration_curve", "expected_calibration_error",
    "bic", "gaussian_linear_log_evidence", "laplace_log_evidence", "nig_linear_log_evidence", "polynomial_design",
    "free_energy", "rlct_estimate", "tempered_mean", "wbic", "wbic_temperature",
    "blr_step", "gaussian_elbo", "gaussian_linear_posterior", "glm_expectations", "gradient_vi", "natural_gradient_vi",
]
