r"""Compatibility module: the inference tools of chapters 2 and 3, re-exported from their modules.

The code lives in modules of one idea each:

* :mod:`fisherbook.stats.bounds` — :func:`crlb`, :func:`van_trees`;
* :mod:`fisherbook.stats.simulation` — :func:`sample`, :func:`simulate_estimator`,
  :func:`coverage` and their result classes;
* :mod:`fisherbook.stats.mle` — :func:`mle`, :class:`MLEResult`, :func:`sandwich_covariance`;
* :mod:`fisherbook.stats.likelihood_intervals` — :func:`wald_interval`, :func:`score_interval`,
  :func:`lr_interval`.

``from fisherbook.stats import inference`` keeps working for existing code and notebooks.
Exact coverage of Binomial and Poisson intervals lives in :mod:`fisherbook.stats.intervals`.
"""

from __future__ import annotations

from ..errors import ConvergenceError
from .bounds import crlb, van_trees
from .likelihood_intervals import lr_interval, score_interval, wald_interval
from .mle import MLEResult, mle, sandwich_covariance
from .simulation import CoverageEstimate, EstimatorSummary, coverage, sample, simulate_estimator

__all__ = [
    "ConvergenceError",
    "CoverageEstimate",
    "EstimatorSummary",
    "MLEResult",
    "coverage",
    "crlb",
    "lr_interval",
    "mle",
    "sample",
    "sandwich_covariance",
    "score_interval",
    "simulate_estimator",
    "van_trees",
    "wald_interval",
]
