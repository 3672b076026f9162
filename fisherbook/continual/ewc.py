r"""Elastic weight consolidation and its baselines: every name of ``fisherbook.continual``.

This module keeps the import path ``from fisherbook.continual.ewc import ...`` that chapter 6 and
user code use. The code lives in modules of one idea each:

- ``fisherbook.continual.penalties``: :func:`ewc_penalty`, :func:`l2_penalty`,
  :func:`online_fisher_update`;
- ``fisherbook.continual.fisher``: :func:`diagonal_fisher`, :func:`fisher_overlap`;
- ``fisherbook.continual.strategies``: :class:`Strategy`, :class:`FineTuning`, :class:`L2`,
  :class:`EWC`;
- ``fisherbook.continual.metrics``: :func:`average_accuracy`, :func:`backward_transfer`,
  :func:`forgetting`;
- ``fisherbook.continual.training``: :func:`make_mlp`, :func:`evaluate`,
  :class:`ContinualResult`, :func:`train_sequence`.
"""

from __future__ import annotations

from .fisher import batched_empirical_fisher, diagonal_fisher, fisher_overlap
from .importance import mas_importance, si_importance
from .kfac_laplace import KFACLaplace, kfac_penalty
from .metrics import average_accuracy, backward_transfer, forgetting
from .penalties import ewc_penalty, l2_penalty, online_fisher_update
from .regularisers import MAS, SI
from .replay import Replay
from .scenarios import HeadTask, Scenario, split_digits_scenario
from .strategies import EWC, L2, FineTuning, Strategy
from .training import ContinualResult, HeadView, evaluate, make_mlp, train_sequence

__all__ = [
    "ewc_penalty",
    "l2_penalty",
    "online_fisher_update",
    "diagonal_fisher",
    "fisher_overlap",
    "make_mlp",
    "evaluate",
    "Strategy",
    "FineTuning",
    "L2",
    "EWC",
    "ContinualResult",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "train_sequence",
    "batched_empirical_fisher",
    "mas_importance",
    "si_importance",
    "kfac_penalty",
    "KFACLaplace",
    "SI",
    "MAS",
    "Replay",
    "HeadTask",
    "Scenario",
    "split_digits_scenario",
    "HeadView",
]
