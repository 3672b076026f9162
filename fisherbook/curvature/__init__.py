r"""Fisher information of torch models.

Convention (kept everywhere in this subpackage): the Fisher is the **mean over examples**,

.. math::

    F = \frac{1}{N} \sum_{n=1}^{N} \mathbb{E}_{y \sim p(y \mid x_n, \theta)}
        \left[\nabla_\theta \log p(y \mid x_n, \theta)\, \nabla_\theta \log p(y \mid x_n, \theta)^\top\right],

with the expectation exact (``kind="true"``), sampled (``kind="mc"``) or replaced by the observed
target (``kind="empirical"``). Vectors are flat parameter vectors in
``torch.nn.utils.parameters_to_vector(model.parameters())`` order; ``F.unflatten(vec)`` splits one
into tensors shaped like the parameters. Results follow the model's dtype and device.

Examples
--------
>>> import torch
>>> import fisherbook as fb
>>> model = torch.nn.Linear(2, 3).double()
>>> X = torch.randn(10, 2, dtype=torch.float64)
>>> F = fb.curvature.fisher(model, X, representation="kfac")
>>> [tuple(a.shape) + tuple(g.shape) for a, g in F.factors]
[(3, 3, 3, 3)]
"""

from __future__ import annotations

from .api import REPRESENTATIONS, fisher
from .likelihoods import KINDS, LIKELIHOODS, Bernoulli, Categorical, Gaussian, Likelihood
from .per_example import per_example_grads
from .representations import KFAC, BlockDiagonal, CurvatureMatrix, Dense, Diagonal, MatrixFree

__all__ = [
    "fisher",
    "per_example_grads",
    "CurvatureMatrix",
    "Dense",
    "Diagonal",
    "BlockDiagonal",
    "KFAC",
    "MatrixFree",
    "Likelihood",
    "Categorical",
    "Bernoulli",
    "Gaussian",
    "KINDS",
    "LIKELIHOODS",
    "REPRESENTATIONS",
]
