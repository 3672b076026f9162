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

from .fisher import diagonal_fisher, fisher_overlap
from .metrics import average_accuracy, backward_transfer, forgetting
from .penalties import ewc_penalty, l2_penalty, online_fisher_update
from .strategies import EWC, L2, FineTuning, Strategy
from .training import ContinualResult, evaluate, make_mlp, train_sequence

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
]
