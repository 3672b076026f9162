"""Optimisers that precondition with the Fisher information: natural gradient and K-FAC.

``fisherbook.optim.policy_gradient`` adds the exact policy gradient, the policy's Fisher, natural policy
gradient and TRPO's KL-constrained step on tabular MDPs (chapter 4).

Both follow the :class:`torch.optim.Optimizer` protocol (``param_groups``, ``step(closure)``,
``state_dict``), so they drop into an ordinary training loop.
"""

from ..linalg import CGResult, conjugate_gradient
from .kfac import KFAC
from .natural_gradient import NaturalGradient, natural_gradient_path
from .policy_gradient import (
    TabularMDP,
    TRPOStep,
    exact_policy_gradient,
    expected_return,
    natural_policy_gradient,
    optimal_values,
    policy_fisher,
    policy_kl,
    policy_optimization_path,
    policy_values,
    random_mdp,
    softmax_policy,
    state_visitation,
    trpo_step,
)
from .shampoo import Shampoo

__all__ = ["CGResult", "KFAC", "NaturalGradient", "conjugate_gradient", "natural_gradient_path", "Shampoo"]
__all__ += [  # natural policy gradient and TRPO on tabular MDPs (chapter 4)
    "TabularMDP", "TRPOStep", "expected_return", "natural_policy_gradient", "optimal_values", "policy_fisher",
    "exact_policy_gradient", "policy_kl", "policy_optimization_path", "policy_values", "random_mdp", "softmax_policy",
    "state_visitation", "trpo_step",
]
