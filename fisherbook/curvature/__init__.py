r"""Fisher information of torch models.

Convention (kept everywhere in this subpackage): the Fisher is the **mean over examples**,

.. math::

    F = \frac{1}{N} \sum_{n=1}^{N} \mathbb{E}_{y \sim p(y \mid x_n, \theta)}
        \left[\nabla_\theta \log p(y \mid x_n, \theta)\, \nabla_\theta \log p(y \mid x_n, \theta)^\top\right],

with the expectation exact (``kind="true"``), sampled (``kind="mc"``) or replaced by the observed
target (``kind="empirical"``). Vectors are flat parameter vectors in
``torch.nn.utils.parameters_to_vector(model.parameters())`` order; ``F.unflatten(vec)`` splits one
into tensors shaped like the parameters. Results follow the model's dtype and device.

Data may come as one tensor or in batches (a ``DataLoader`` or any iterable of batches): the
result is the same mean over all examples, with memory for one batch's statistics. Every
representation is an operator: ``F @ v``, ``v @ F``, ``F + G``, ``c * F``, ``F.T``,
``F.to_scipy()`` (a ``scipy.sparse.linalg.LinearOperator``), ``vTMv``, ``frobenius_norm``,
``trace``, ``solve(v, damping=...)`` and, where cheap, ``inverse`` and ``logdet``.

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

from . import distributed, spectrum  # noqa: F401
from .api import REPRESENTATIONS, fisher
from .checks import check_model
from .distributed import reduce_fisher  # noqa: F401
from .eigencorrection import EKFAC, ekfac, kfac_statistics
from .likelihoods import KINDS, LIKELIHOODS, Bernoulli, Categorical, Gaussian, Likelihood
from .operators import Inverse, Scaled, Sum
from .per_example import UnstructuredError, per_example_grads
from .representations import KFAC, BlockDiagonal, CurvatureMatrix, Dense, Diagonal, MatrixFree

# spectrum tools (chapter 9) and the distributed reducer are reachable as fb.curvature.lanczos etc.;
# they stay out of __all__ so the API page documents them once, in their own modules
from .spectrum import (  # noqa: F401
    Eigenpairs,
    Lanczos,
    Operator,
    SpectralDensity,
    TraceEstimate,
    as_linear_operator,
    as_operator,
    hutchinson_trace,
    lanczos,
    spectral_density,
    top_eigenpairs,
)

__all__ = [
    "fisher",
    "per_example_grads",
    "CurvatureMatrix",
    "Dense",
    "Diagonal",
    "BlockDiagonal",
    "KFAC",
    "MatrixFree",
    "Sum",
    "Scaled",
    "Inverse",
    "check_model",
    "UnstructuredError",
    "Likelihood",
    "Categorical",
    "Bernoulli",
    "Gaussian",
    "KINDS",
    "LIKELIHOODS",
    "REPRESENTATIONS",
    "EKFAC",
    "ekfac",
    "kfac_statistics",
]
