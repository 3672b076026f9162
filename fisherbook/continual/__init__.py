r"""Continual learning with Fisher-weighted penalties (chapter 6).

- :mod:`~fisherbook.continual.ewc`: EWC (separate and online), L2 and fine-tuning baselines, the diagonal
  Fisher of a task, the accuracy matrix and its summaries.
"""

from __future__ import annotations

from .ewc import (
    ewc_penalty, l2_penalty, online_fisher_update, diagonal_fisher, fisher_overlap, make_mlp, evaluate, Strategy, FineTuning, L2, EWC, ContinualResult, average_accuracy, backward_transfer, forgetting, train_sequence,
)

__all__ = ['ewc_penalty', 'l2_penalty', 'online_fisher_update', 'diagonal_fisher', 'fisher_overlap', 'make_mlp', 'evaluate', 'Strategy', 'FineTuning', 'L2', 'EWC', 'ContinualResult', 'average_accuracy', 'backward_transfer', 'forgetting', 'train_sequence']
