r"""Continual learning with Fisher-weighted penalties (chapter 6).

- ``fisherbook.continual.penalties``: the EWC and L2 penalties, the online-EWC Fisher update;
- ``fisherbook.continual.fisher``: the diagonal Fisher of a task, the Fisher overlap of two tasks;
- ``fisherbook.continual.strategies``: fine-tuning, L2 and EWC (separate and online) strategies;
- ``fisherbook.continual.metrics``: average accuracy, backward transfer and forgetting of an
  accuracy matrix;
- ``fisherbook.continual.training``: the training loop that runs a strategy over a task sequence,
  the MLPs and the evaluation it uses.
- ``fisherbook.continual.scenarios``: task-, domain- and class-incremental split digits;
- ``fisherbook.continual.importance``: the MAS and Synaptic-Intelligence importances;
- ``fisherbook.continual.regularisers``: the SI and MAS strategies;
- ``fisherbook.continual.kfac_laplace``: the K-FAC Laplace penalty and strategy;
- ``fisherbook.continual.replay``: experience replay from a small buffer.

``fisherbook.continual.ewc`` re-exports every name (the import path of chapter 6).
Bad arguments raise the :mod:`fisherbook.errors` classes. The model-mode rule, wherever a
Fisher is computed: dropout in training mode gives a :class:`~fisherbook.errors.ModelModeWarning`
(the Fisher would change from call to call); batch normalisation in training mode is refused with
:class:`~fisherbook.errors.UnsupportedError` (it uses the batch's statistics, so there is no
per-example gradient). Call ``model.eval()`` first.
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
