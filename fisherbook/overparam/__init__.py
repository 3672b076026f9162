r"""The Fisher geometry of over-parameterised networks (chapter 9).

- :mod:`~fisherbook.overparam.ntk`: per-example Jacobians, the factor :math:`A` with
  :math:`F = A^\top A/N`, its dual Gram matrix (the :math:`\Lambda`-weighted NTK) and natural-gradient
  steps computed in function space;
- :mod:`~fisherbook.overparam.norms`: the Fisher–Rao norm;
- :mod:`~fisherbook.overparam.pruning`: Optimal Brain Damage saliencies with the Fisher diagonal,
  magnitude saliencies and pruning at a given sparsity;
- :mod:`~fisherbook.overparam.merging`: plain and Fisher-weighted model merging.
"""

from __future__ import annotations

from .merging import average_merge, fisher_merge
from .norms import fisher_rao_norm
from .ntk import FisherFactor, fisher_factor, function_space_natural_gradient, jacobian
from .pruning import magnitude_saliency, obd_saliency, prune

__all__ = [
    "jacobian", "FisherFactor", "fisher_factor", "function_space_natural_gradient",
    "fisher_rao_norm",
    "obd_saliency", "magnitude_saliency", "prune",
    "average_merge", "fisher_merge",
]
