"""Optimisers that precondition with the Fisher information: natural gradient and K-FAC.

Both follow the :class:`torch.optim.Optimizer` protocol (``param_groups``, ``step(closure)``,
``state_dict``), so they drop into an ordinary training loop.
"""

from ..linalg import CGResult, conjugate_gradient
from .kfac import KFAC
from .natural_gradient import NaturalGradient, natural_gradient_path
from .shampoo import Shampoo

__all__ = ["CGResult", "KFAC", "NaturalGradient", "conjugate_gradient", "natural_gradient_path", "Shampoo"]
