"""Bad and extreme inputs to every public name of fisherbook.continual and fisherbook.bayes.

Each case is (public name, id, the call, the error type, words the message must contain). Every
raised error must also be a ``fisherbook.errors.FisherbookError`` of the type the errors rule
prescribes (TypeError for a wrong type, ValueError for a wrong value). A walk over both
subpackages' ``__all__`` checks that every public name has at least one case (names from
``fisherbook/bayes/singular.py``, which its own suite covers, are left out). Further tables check
the model-mode warning and that NumPy scalars are accepted where Python numbers are.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fisherbook.bayes as bayes
import fisherbook.continual as continual
from fisherbook.bayes import (
    LastLayerLaplace,
    bic,
    calibration_curve,
    expected_calibration_error,
    fit_newton,
    gaussian_linear_log_evidence,
    influence_scores,
    laplace_log_evidence,
    leave_one_out,
    nig_linear_log_evidence,
    objective_curvature,
    per_example_loss,
    polynomial_design,
)
from fisherbook.continual import (
    EWC,
    L2,
    MAS,
    SI,
    ContinualResult,
    FineTuning,
    HeadTask,
    HeadView,
    KFACLaplace,
    Replay,
    Scenario,
    Strategy,
    average_accuracy,
    backward_transfer,
    batched_empirical_fisher,
    diagonal_fisher,
    evaluate,
    ewc_penalty,
    fisher_overlap,
    forgetting,
    kfac_penalty,
    l2_penalty,
    make_mlp,
    mas_importance,
    online_fisher_update,
    si_importance,
    split_digits_scenario,
    train_sequence,
)
from fisherbook.curvature import fisher
from fisherbook.data import Task
from fisherbook.errors import (
    ArgumentTypeError,
    ConvergenceError,
    FisherbookError,
    InvalidArgumentError,
    ModelModeWarning,
    NonFiniteError,
    NotPositiveDefiniteError,
    ShapeError,
    SizeLimitError,
    UnsupportedError,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64
NAN = float("nan")


# --------------------------------------------------------------------------- small inputs, built lazily
def _lin(i=3, o=2):
    torch.manual_seed(0)
    return nn.Linear(i, o).double()


def _params(net):
    return list(net.parameters())


def _anchor(net):
    return [p.detach().clone() for p in net.parameters()]


def _ones(net):
    return [torch.ones_like(p) for p in net.parameters()]


def _cls(n=12, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D), torch.randint(0, k, (n,), generator=g)


def _task(n=12, d=3, k=2):
    x, y = _cls(n, d, k)
    return Task("t", x, y, x, y)


def _with_nan(x):
    x = x.clone()
    x[0, 0] = NAN
    return x


def _anchored(strategy, net):
    strategy.after_task(net, _task() if isinstance(strategy, EWC) else None)
    return strategy


def _anchored_mas(strategy):
    strategy.after_task(_lin(), _task())
    return strategy


def _kfac(net):
    return fisher(net, _cls(d=net.in_features)[0], representation="kfac")


def _fitted_laplace():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = _cls()
    return LastLayerLaplace(net, representation="dense").fit(x, y)


def _laplace_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _pd_precision():
    return torch.eye(2, dtype=D)


X1, Y1 = (torch.ones(3, 1, dtype=D), torch.zeros(3, dtype=D))


class _NaNPenalty(Strategy):
    """A strategy whose penalty is NaN: the first step makes every parameter NaN."""

    name = "nan"

    def penalty(self, model):
        return torch.tensor(NAN, dtype=D) * sum(p.sum() for p in model.parameters())


def _set_prior(la, value):
    la.prior_precision = value


# --------------------------------------------------------------------------- the table
# (public name, id, call, error type, words the message must contain)
CASES = [
    # penalties --------------------------------------------------------------------------------
    ("ewc_penalty", "fisher shape", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), [torch.ones(3, 2), torch.ones(2)], 1.0),
     ShapeError, ["fisher[0]", "(3, 2)", "parameter 0"]),
    ("ewc_penalty", "anchor count", lambda: ewc_penalty(_params(_lin()), _anchor(_lin())[:1], _ones(_lin()), 1.0),
     ShapeError, ["anchor has 1 tensors", "2"]),
    ("ewc_penalty", "negative lam", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), _ones(_lin()), -1.0),
     InvalidArgumentError, ["lam", ">= 0"]),
    ("ewc_penalty", "string lam", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), _ones(_lin()), "1"),
     ArgumentTypeError, ["lam", "str"]),
    ("ewc_penalty", "nan lam", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), _ones(_lin()), NAN),
     NonFiniteError, ["lam", "finite"]),
    ("ewc_penalty", "nan fisher", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), [torch.full((2, 3), NAN, dtype=D),
                                                                                         torch.ones(2, dtype=D)], 1.0),
     NonFiniteError, ["fisher[0]", "finite"]),
    ("ewc_penalty", "negative fisher", lambda: ewc_penalty(_params(_lin()), _anchor(_lin()), [-torch.ones(2, 3), torch.ones(2)], 1.0),
     InvalidArgumentError, ["fisher[0]", "non-negative"]),
    ("ewc_penalty", "params not tensors", lambda: ewc_penalty([1.0, 2.0], [torch.zeros(1)], [torch.ones(1)], 1.0),
     ArgumentTypeError, ["params", "float"]),
    ("ewc_penalty", "a tensor, not a list", lambda: ewc_penalty(torch.zeros(2), [torch.zeros(2)], [torch.ones(2)], 1.0),
     ArgumentTypeError, ["params", "sequence of tensors"]),
    ("ewc_penalty", "no params", lambda: ewc_penalty([], [], [], 1.0), InvalidArgumentError, ["params", "at least one"]),
    ("l2_penalty", "anchor shape", lambda: l2_penalty(_params(_lin()), [torch.zeros(6), torch.zeros(2)], 1.0),
     ShapeError, ["anchor[0]", "(6,)", "(2, 3)"]),
    ("l2_penalty", "inf lam", lambda: l2_penalty(_params(_lin()), _anchor(_lin()), float("inf")), NonFiniteError, ["lam"]),
    ("online_fisher_update", "negative new fisher", lambda: online_fisher_update(None, [torch.tensor([1.0, -0.5])], 1.0),
     InvalidArgumentError, ["fisher_new[0]", "non-negative", "-0.5"]),
    ("online_fisher_update", "negative running fisher",
     lambda: online_fisher_update([torch.tensor([-1.0, 0.5])], [torch.ones(2)], 1.0),
     InvalidArgumentError, ["fisher[0]", "non-negative"]),
    ("online_fisher_update", "nan fisher", lambda: online_fisher_update(None, [torch.tensor([NAN])], 1.0),
     NonFiniteError, ["fisher_new[0]", "finite"]),
    ("online_fisher_update", "gamma above 1", lambda: online_fisher_update(None, [torch.ones(2)], 1.5),
     InvalidArgumentError, ["gamma", "[0.0, 1.0]"]),
    ("online_fisher_update", "gamma a string", lambda: online_fisher_update(None, [torch.ones(2)], "0.5"),
     ArgumentTypeError, ["gamma"]),
    ("online_fisher_update", "shape mismatch", lambda: online_fisher_update([torch.ones(2)], [torch.ones(3)], 1.0),
     ShapeError, ["fisher_new[0]", "(3,)", "(2,)"]),
    # diagonal Fisher and overlap ------------------------------------------------------------------
    ("diagonal_fisher", "bad kind", lambda: diagonal_fisher(_lin(), _cls()[0], kind="ggn"),
     InvalidArgumentError, ["kind", "'true'", "'ggn'"]),
    ("diagonal_fisher", "kind not a string", lambda: diagonal_fisher(_lin(), _cls()[0], kind=1),
     ArgumentTypeError, ["kind"]),
    ("diagonal_fisher", "missing targets", lambda: diagonal_fisher(_lin(), _cls()[0], kind="empirical"),
     InvalidArgumentError, ["targets", "empirical"]),
    ("diagonal_fisher", "mis-shaped targets", lambda: diagonal_fisher(_lin(), _cls()[0], kind="empirical",
                                                                     targets=torch.zeros(5, dtype=torch.long)),
     ShapeError, ["targets", "12"]),
    ("diagonal_fisher", "nan inputs", lambda: diagonal_fisher(_lin(), _with_nan(_cls()[0]), kind="true"),
     NonFiniteError, ["inputs", "NaN"]),
    ("diagonal_fisher", "empty inputs", lambda: diagonal_fisher(_lin(), torch.zeros(0, 3, dtype=D), kind="true"),
     ShapeError, ["inputs", "empty"]),
    ("diagonal_fisher", "inputs not a tensor", lambda: diagonal_fisher(_lin(), [[1.0, 2.0, 3.0]], kind="true"),
     ArgumentTypeError, ["inputs", "list"]),
    ("diagonal_fisher", "model not a module", lambda: diagonal_fisher("net", _cls()[0], kind="true"),
     ArgumentTypeError, ["model", "nn.Module"]),
    ("diagonal_fisher", "n_samples 0", lambda: diagonal_fisher(_lin(), _cls()[0], kind="mc", n_samples=0),
     InvalidArgumentError, ["n_samples", ">= 1"]),
    ("fisher_overlap", "zero trace", lambda: fisher_overlap(torch.zeros(3), torch.ones(3)),
     InvalidArgumentError, ["fisher_a", "positive trace"]),
    ("fisher_overlap", "negative", lambda: fisher_overlap(torch.ones(3), torch.tensor([1.0, -1.0, 1.0])),
     InvalidArgumentError, ["fisher_b", "non-negative"]),
    ("fisher_overlap", "nan", lambda: fisher_overlap(torch.tensor([NAN, 1.0]), torch.ones(2)),
     NonFiniteError, ["fisher_a", "finite"]),
    ("fisher_overlap", "sizes differ", lambda: fisher_overlap(torch.ones(3), torch.ones(4)),
     ShapeError, ["3 entries", "4"]),
    ("fisher_overlap", "empty", lambda: fisher_overlap(torch.ones(0), torch.ones(0)), ShapeError, ["fisher_a", "empty"]),
    # strategies -----------------------------------------------------------------------------------
    ("Strategy", "model not a module", lambda: Strategy().after_task("net", None), ArgumentTypeError, ["model"]),
    ("FineTuning", "model not a module", lambda: FineTuning().penalty(3), ArgumentTypeError, ["model", "int"]),
    ("L2", "negative lam", lambda: L2(-1.0), InvalidArgumentError, ["lam"]),
    ("L2", "model with other shapes", lambda: _anchored(L2(1.0), _lin(3, 2)).penalty(_lin(4, 2)),
     ShapeError, ["'weight'", "(2, 4)", "(2, 3)"]),
    ("L2", "model with fewer parameters", lambda: _anchored(L2(1.0), _lin(3, 2)).penalty(nn.Linear(3, 2, bias=False)),
     ShapeError, ["1 parameter tensors", "'bias' is missing"]),
    ("L2", "model with more parameters", lambda: _anchored(L2(1.0), _lin(3, 2)).penalty(
        nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))), ShapeError, ["4 parameter tensors", "has no anchor"]),
    ("EWC", "no kind", lambda: EWC(1.0, kind="fisher"), InvalidArgumentError, ["kind", "'empirical'"]),
    ("EWC", "gamma", lambda: EWC(1.0, kind="true", online=True, gamma=2.0), InvalidArgumentError, ["gamma"]),
    ("EWC", "max_examples", lambda: EWC(1.0, kind="true", max_examples=0), InvalidArgumentError, ["max_examples"]),
    ("EWC", "generator", lambda: EWC(1.0, kind="mc", generator=0), ArgumentTypeError, ["generator"]),
    ("EWC", "task not a Task", lambda: EWC(1.0, kind="true").after_task(_lin(), (1, 2)), ArgumentTypeError, ["task"]),
    ("EWC", "model with other shapes", lambda: _anchored(EWC(1.0, kind="true"), _lin(3, 2)).penalty(_lin(3, 3)),
     ShapeError, ["'weight'", "(3, 3)", "(2, 3)"]),
    ("EWC", "online, model with other shapes", lambda: _anchored(EWC(1.0, kind="true", online=True), _lin(3, 2)).penalty(
        _lin(3, 3)), ShapeError, ["'weight'", "(3, 3)"]),
    # metrics --------------------------------------------------------------------------------------
    ("average_accuracy", "not square", lambda: average_accuracy(torch.zeros(2, 3)), ShapeError, ["R", "square", "(2, 3)"]),
    ("average_accuracy", "nan", lambda: average_accuracy(torch.tensor([[NAN]])), NonFiniteError, ["R", "finite"]),
    ("average_accuracy", "not numbers", lambda: average_accuracy("R"), ArgumentTypeError, ["R", "str"]),
    ("backward_transfer", "one task", lambda: backward_transfer(torch.ones(1, 1)), ShapeError, ["at least 2 tasks"]),
    ("forgetting", "one task", lambda: forgetting(torch.ones(1, 1)), ShapeError, ["at least 2 tasks", "forgetting"]),
    ("forgetting", "empty", lambda: forgetting(torch.ones(0, 0)), ShapeError, ["R", "square"]),
    # training -------------------------------------------------------------------------------------
    ("make_mlp", "zero width", lambda: make_mlp(5, (0,), 2), InvalidArgumentError, ["hidden[0]", ">= 1"]),
    ("make_mlp", "float width", lambda: make_mlp(5, (2.5,), 2), ArgumentTypeError, ["hidden[0]", "float"]),
    ("make_mlp", "hidden an int", lambda: make_mlp(5, 3, 2), ArgumentTypeError, ["hidden", "sequence"]),
    ("make_mlp", "negative seed", lambda: make_mlp(5, (3,), 2, seed=-1), InvalidArgumentError, ["seed"]),
    ("make_mlp", "integer dtype", lambda: make_mlp(5, (3,), 2, dtype=torch.int64), ArgumentTypeError, ["dtype"]),
    ("evaluate", "model not a module", lambda: evaluate("net", [_task()]), ArgumentTypeError, ["model"]),
    ("evaluate", "no tasks", lambda: evaluate(_lin(), []), InvalidArgumentError, ["tasks", "empty"]),
    ("evaluate", "not a task", lambda: evaluate(_lin(), [_task(), "P2"]), ArgumentTypeError, ["tasks[1]", "str"]),
    ("evaluate", "model output not (n, K)", lambda: evaluate(nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)).double(),
                                                             [_task()]), ShapeError, ["logits", "(24,)"]),
    ("train_sequence", "task with other features", lambda: train_sequence(_lin(5, 2), [_task()]),
     ShapeError, ["task 't'", "3 features"]),
    ("evaluate", "task with other features", lambda: evaluate(_lin(5, 2), [_task()]), ShapeError, ["task 't'", "(12, 3)"]),
    ("ContinualResult", "R not square", lambda: ContinualResult(torch.zeros(2, 3), ["a", "b"], "x"),
     ShapeError, ["R", "square"]),
    ("ContinualResult", "names", lambda: ContinualResult(torch.zeros(2, 2), ["a"], "x"), ShapeError, ["names", "2"]),
    ("train_sequence", "epochs 0", lambda: train_sequence(_lin(3, 2), [_task()], epochs=0), InvalidArgumentError, ["epochs"]),
    ("train_sequence", "float batch size", lambda: train_sequence(_lin(3, 2), [_task()], batch_size=1.5),
     ArgumentTypeError, ["batch_size", "float"]),
    ("train_sequence", "nan lr", lambda: train_sequence(_lin(3, 2), [_task()], lr=NAN), NonFiniteError, ["lr"]),
    ("train_sequence", "strategy a string", lambda: train_sequence(_lin(3, 2), [_task()], strategy="ewc"),
     ArgumentTypeError, ["strategy", "Strategy"]),
    ("train_sequence", "no tasks", lambda: train_sequence(_lin(3, 2), []), InvalidArgumentError, ["tasks"]),
    ("train_sequence", "callback", lambda: train_sequence(_lin(3, 2), [_task()], callback=1), ArgumentTypeError, ["callback"]),
    ("train_sequence", "diverging", lambda: train_sequence(_lin(3, 2), [_task()], _NaNPenalty(), batch_size=4),
     ConvergenceError, ["diverged", "lower lr"]),
    # influence ------------------------------------------------------------------------------------
    ("per_example_loss", "unknown name", lambda: per_example_loss("poisson"), InvalidArgumentError, ["loss", "'gaussian'"]),
    ("per_example_loss", "not a name", lambda: per_example_loss(3), ArgumentTypeError, ["loss", "int"]),
    ("per_example_loss", "targets of another size", lambda: per_example_loss("gaussian")(torch.zeros(3, 2), torch.zeros(3)),
     ShapeError, ["targets", "(3, 2)"]),
    ("objective_curvature", "bad kind", lambda: objective_curvature(_lin(), "categorical", *_cls(), kind="fisherish"),
     InvalidArgumentError, ["kind", "'ggn'"]),
    ("objective_curvature", "nan inputs", lambda: objective_curvature(_lin(), "categorical", _with_nan(_cls()[0]), _cls()[1]),
     NonFiniteError, ["inputs", "NaN"]),
    ("objective_curvature", "empty", lambda: objective_curvature(_lin(), "categorical", torch.zeros(0, 3, dtype=D),
                                                                 torch.zeros(0, dtype=torch.long)),
     ShapeError, ["non-zero number of rows"]),
    ("objective_curvature", "class index out of range", lambda: objective_curvature(_lin(), "categorical", _cls()[0],
                                                                                    _cls()[1] + 2),
     InvalidArgumentError, ["class indices", "[0, 1]"]),
    ("objective_curvature", "float class targets", lambda: objective_curvature(_lin(), "categorical", _cls()[0],
                                                                               _cls()[1].double()),
     ArgumentTypeError, ["targets", "integer class indices"]),
    ("objective_curvature", "bernoulli labels", lambda: objective_curvature(_lin(3, 1), "bernoulli", _cls()[0],
                                                                            torch.full((12, 1), 0.5, dtype=D)),
     InvalidArgumentError, ["0/1"]),
    ("objective_curvature", "gaussian targets mis-shaped", lambda: objective_curvature(_lin(3, 2), "gaussian", _cls()[0],
                                                                                       torch.zeros(12, 3, dtype=D)),
     ShapeError, ["targets", "(12, 3)", "2 outputs"]),
    ("objective_curvature", "nan targets", lambda: objective_curvature(_lin(3, 1), "gaussian", _cls()[0],
                                                                       torch.full((12, 1), NAN, dtype=D)),
     NonFiniteError, ["targets", "NaN"]),
    ("objective_curvature", "frozen model", lambda: objective_curvature(_lin().requires_grad_(False), "categorical", *_cls()),
     InvalidArgumentError, ["no trainable parameters"]),
    ("objective_curvature", "non-convex callable loss, ggn",
     lambda: objective_curvature(_lin(), lambda o, t: -(o ** 2).sum(1), *_cls(), kind="ggn"),
     NotPositiveDefiniteError, ["convex in the model outputs", "hessian"]),
    ("fit_newton", "tol 0", lambda: fit_newton(_lin(), "categorical", *_cls(), tol=0.0), InvalidArgumentError, ["tol"]),
    ("fit_newton", "max_steps 0", lambda: fit_newton(_lin(), "categorical", *_cls(), max_steps=0),
     InvalidArgumentError, ["max_steps"]),
    ("fit_newton", "negative l2", lambda: fit_newton(_lin(), "categorical", *_cls(), l2=-1.0), InvalidArgumentError, ["l2"]),
    ("fit_newton", "does not converge", lambda: fit_newton(_lin(), "categorical", *_cls(), l2=1.0, max_steps=1, tol=1e-14),
     ConvergenceError, ["did not reach", "max_steps"]),
    ("influence_scores", "model not a module", lambda: influence_scores("m", "categorical", _cls(), _cls()),
     ArgumentTypeError, ["model"]),
    ("influence_scores", "loss not a name or callable", lambda: influence_scores(_lin(), 5, _cls(), _cls()),
     ArgumentTypeError, ["loss", "callable"]),
    ("influence_scores", "train not a pair", lambda: influence_scores(_lin(), "categorical", _cls()[0], _cls()),
     ArgumentTypeError, ["train", "pair"]),
    ("influence_scores", "nan train inputs", lambda: influence_scores(_lin(), "categorical", (_with_nan(_cls()[0]), _cls()[1]),
                                                                      _cls(), l2=1.0),
     NonFiniteError, ["train inputs", "NaN"]),
    ("influence_scores", "empty test", lambda: influence_scores(_lin(), "categorical", _cls(), (torch.zeros(0, 3, dtype=D),
                                                                                              torch.zeros(0, dtype=torch.long))),
     ShapeError, ["test", "non-zero"]),
    ("influence_scores", "rows differ", lambda: influence_scores(_lin(), "categorical", _cls(), (_cls()[0][:3], _cls()[1][:2])),
     ShapeError, ["test", "(3, 3)", "(2,)"]),
    ("influence_scores", "targets mis-shaped", lambda: influence_scores(_lin(), "categorical", _cls(),
                                                                        (_cls()[0], _cls()[1].reshape(12, 1))),
     ShapeError, ["test targets", "(12,)"]),
    ("influence_scores", "curvature shape", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(), curvature=torch.eye(3)),
     ShapeError, ["curvature", "(8, 8)"]),
    ("influence_scores", "nan curvature", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(),
                                                                   curvature=torch.full((8, 8), NAN, dtype=D)),
     NonFiniteError, ["curvature"]),
    ("influence_scores", "curvature name", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(), curvature="fisher"),
     InvalidArgumentError, ["curvature", "'empirical'"]),
    ("influence_scores", "curvature type", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(), curvature=1.0),
     ArgumentTypeError, ["curvature", "float"]),
    ("influence_scores", "not positive definite", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(),
                                                                           curvature=-torch.eye(8, dtype=D)),
     NotPositiveDefiniteError, ["positive definite", "damping"]),
    ("influence_scores", "negative damping", lambda: influence_scores(_lin(), "categorical", _cls(), _cls(), damping=-1.0),
     InvalidArgumentError, ["damping"]),
    ("leave_one_out", "train-mode batch norm", lambda: leave_one_out(_bn_net(), "categorical", _cls(), _cls(), [0]),
     UnsupportedError, ["batch normalisation", "model.eval()"]),
    ("diagonal_fisher", "train-mode batch norm", lambda: diagonal_fisher(_bn_net(), _cls()[0], kind="true"),
     UnsupportedError, ["batch normalisation", "per-example"]),
    ("leave_one_out", "index out of range", lambda: leave_one_out(_lin(), "categorical", _cls(), _cls(), [12], l2=1.0),
     InvalidArgumentError, ["indices", "[0, 12)"]),
    ("leave_one_out", "float indices", lambda: leave_one_out(_lin(), "categorical", _cls(), _cls(), [0.5], l2=1.0),
     ArgumentTypeError, ["indices", "integers"]),
    ("leave_one_out", "no indices", lambda: leave_one_out(_lin(), "categorical", _cls(), _cls(), [], l2=1.0),
     ShapeError, ["indices", "empty"]),
    ("leave_one_out", "tol a string", lambda: leave_one_out(_lin(), "categorical", _cls(), _cls(), [0], tol="small"),
     ArgumentTypeError, ["tol"]),
    # Laplace and calibration ------------------------------------------------------------------------
    ("LastLayerLaplace", "model not a module", lambda: LastLayerLaplace("net"), ArgumentTypeError, ["model"]),
    ("LastLayerLaplace", "likelihood", lambda: LastLayerLaplace(_laplace_net(), likelihood="poisson"),
     InvalidArgumentError, ["likelihood", "'bernoulli'"]),
    ("LastLayerLaplace", "prior precision 0", lambda: LastLayerLaplace(_laplace_net(), prior_precision=0.0),
     InvalidArgumentError, ["prior_precision", "> 0"]),
    ("LastLayerLaplace", "prior precision set negative", lambda: _set_prior(_fitted_laplace(), -1.0),
     InvalidArgumentError, ["prior_precision"]),
    ("LastLayerLaplace", "matrix_free", lambda: LastLayerLaplace(_laplace_net(), representation="matrix_free"),
     UnsupportedError, ["matrix_free", "logdet"]),
    ("LastLayerLaplace", "no Linear", lambda: LastLayerLaplace(nn.Tanh()), UnsupportedError, ["nn.Linear"]),
    ("LastLayerLaplace", "nan inputs", lambda: LastLayerLaplace(_laplace_net()).fit(_with_nan(_cls()[0]), _cls()[1]),
     NonFiniteError, ["inputs", "NaN"]),
    ("LastLayerLaplace", "empty inputs", lambda: LastLayerLaplace(_laplace_net()).fit(torch.zeros(0, 3, dtype=D),
                                                                                      torch.zeros(0, dtype=torch.long)),
     ShapeError, ["inputs", "at least one example"]),
    ("LastLayerLaplace", "targets count", lambda: LastLayerLaplace(_laplace_net()).fit(_cls()[0], _cls()[1][:3]),
     ShapeError, ["targets", "12 entries"]),
    ("LastLayerLaplace", "targets out of range", lambda: LastLayerLaplace(_laplace_net()).fit(_cls()[0], _cls()[1] + 5),
     InvalidArgumentError, ["class indices"]),
    ("LastLayerLaplace", "tensor inputs without targets", lambda: LastLayerLaplace(_laplace_net()).fit(_cls()[0]),
     ArgumentTypeError, ["targets", "tensor"]),
    ("LastLayerLaplace", "targets beside batches", lambda: LastLayerLaplace(_laplace_net()).fit([_cls()], _cls()[1]),
     InvalidArgumentError, ["targets must be None", "batch"]),
    ("LastLayerLaplace", "batch without targets", lambda: LastLayerLaplace(_laplace_net()).fit([_cls()[0]]),
     ShapeError, ["batch 0", "no targets"]),
    ("LastLayerLaplace", "batch targets count", lambda: LastLayerLaplace(_laplace_net()).fit([(_cls()[0], _cls()[1][:3])]),
     ShapeError, ["batch 0", "12 entries"]),
    ("LastLayerLaplace", "predict before fit", lambda: LastLayerLaplace(_laplace_net()).predict(_cls()[0]),
     RuntimeError, ["fit"]),
    ("LastLayerLaplace", "predict method", lambda: _fitted_laplace().predict(_cls()[0], method="exact"),
     InvalidArgumentError, ["method", "'probit'"]),
    ("LastLayerLaplace", "grid", lambda: _fitted_laplace().optimize_prior_precision(torch.tensor([-1.0])),
     InvalidArgumentError, ["grid", "> 0"]),
    ("calibration_curve", "targets shape", lambda: calibration_curve(torch.tensor([[0.3, 0.7]]), torch.tensor([1, 0])),
     ShapeError, ["targets", "(1,)"]),
    ("calibration_curve", "n_bins 0", lambda: calibration_curve(torch.tensor([[0.3, 0.7]]), torch.tensor([1]), n_bins=0),
     InvalidArgumentError, ["n_bins"]),
    ("expected_calibration_error", "rows do not sum to 1", lambda: expected_calibration_error(torch.tensor([[0.7, 0.7]]),
                                                                                              torch.tensor([0])),
     InvalidArgumentError, ["probs", "sum to 1"]),
    ("expected_calibration_error", "nan probs", lambda: expected_calibration_error(torch.tensor([[NAN, 0.5]]), torch.tensor([0])),
     NonFiniteError, ["probs", "NaN"]),
    ("expected_calibration_error", "empty", lambda: expected_calibration_error(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
     ShapeError, ["probs", "n >= 1"]),
    # evidences -------------------------------------------------------------------------------------
    ("bic", "n_obs 0", lambda: bic(-1.0, 2, 0), InvalidArgumentError, ["n_obs", ">= 1"]),
    ("bic", "nan log-likelihood", lambda: bic(NAN, 2, 10), NonFiniteError, ["log_likelihood"]),
    ("bic", "n_params a float", lambda: bic(-1.0, 2.5, 10), ArgumentTypeError, ["n_params", "integer"]),
    ("laplace_log_evidence", "mode 2-D", lambda: laplace_log_evidence(lambda t: -(t ** 2).sum(), torch.zeros(1, 1)),
     ShapeError, ["mode", "1-D"]),
    ("laplace_log_evidence", "nan mode", lambda: laplace_log_evidence(lambda t: -(t ** 2).sum(), torch.tensor([NAN])),
     NonFiniteError, ["mode"]),
    ("laplace_log_evidence", "log_joint not callable", lambda: laplace_log_evidence(1.0, torch.zeros(1)),
     ArgumentTypeError, ["log_joint", "callable"]),
    ("laplace_log_evidence", "non-symmetric precision", lambda: laplace_log_evidence(
        lambda t: -(t ** 2).sum(), torch.zeros(2), precision=torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=D)),
     NotPositiveDefiniteError, ["precision", "symmetric"]),
    ("laplace_log_evidence", "not at a maximum", lambda: laplace_log_evidence(lambda t: (t ** 2).sum(), torch.zeros(1)),
     NotPositiveDefiniteError, ["positive definite"]),
    ("laplace_log_evidence", "precision shape", lambda: laplace_log_evidence(lambda t: -(t ** 2).sum(), torch.zeros(2),
                                                                             precision=torch.eye(3)),
     ShapeError, ["precision", "(2, 2)"]),
    ("gaussian_linear_log_evidence", "noise 0", lambda: gaussian_linear_log_evidence(X1, Y1, prior_precision=1.0, noise_scale=0.0),
     InvalidArgumentError, ["noise_scale", "> 0"]),
    ("gaussian_linear_log_evidence", "X 1-D", lambda: gaussian_linear_log_evidence(Y1, Y1, prior_precision=1.0, noise_scale=1.0),
     ShapeError, ["X", "2-D"]),
    ("gaussian_linear_log_evidence", "nan y", lambda: gaussian_linear_log_evidence(X1, torch.tensor([0.0, NAN, 1.0], dtype=D),
                                                                                   prior_precision=1.0, noise_scale=1.0),
     NonFiniteError, ["y"]),
    ("gaussian_linear_log_evidence", "prior precision shape", lambda: gaussian_linear_log_evidence(
        X1, Y1, prior_precision=torch.ones(2), noise_scale=1.0), ShapeError, ["prior_precision", "(1,)"]),
    ("gaussian_linear_log_evidence", "empty", lambda: gaussian_linear_log_evidence(
        torch.zeros(0, 1, dtype=D), torch.zeros(0, dtype=D), prior_precision=1.0, noise_scale=1.0),
     ShapeError, ["at least one row"]),
    ("nig_linear_log_evidence", "rate 0", lambda: nig_linear_log_evidence(X1, Y1, prior_precision=1.0, concentration=1.0, rate=0.0),
     InvalidArgumentError, ["rate"]),
    ("nig_linear_log_evidence", "concentration nan", lambda: nig_linear_log_evidence(X1, Y1, prior_precision=1.0,
                                                                                     concentration=NAN, rate=1.0),
     NonFiniteError, ["concentration"]),
    ("nig_linear_log_evidence", "prior precision negative", lambda: nig_linear_log_evidence(
        X1, Y1, prior_precision=-1.0, concentration=1.0, rate=1.0), InvalidArgumentError, ["prior_precision"]),
    ("polynomial_design", "huge degree", lambda: polynomial_design(torch.zeros(3), 10**9), SizeLimitError,
     ["3 x 1000000001", "smaller degree"]),
    ("calibration_curve", "huge n_bins", lambda: calibration_curve(torch.tensor([[0.3, 0.7]]), torch.tensor([1]), n_bins=10**10),
     SizeLimitError, ["n_bins", "at most"]),
    ("LastLayerLaplace", "huge n_samples", lambda: _fitted_laplace().predict(_cls()[0], method="mc", n_samples=10**8),
     SizeLimitError, ["n_samples", "smaller batches"]),
    ("polynomial_design", "negative degree", lambda: polynomial_design(torch.zeros(3), -1), InvalidArgumentError, ["degree"]),
    ("polynomial_design", "float degree", lambda: polynomial_design(torch.zeros(3), 1.5), ArgumentTypeError, ["degree"]),
    ("polynomial_design", "empty x", lambda: polynomial_design(torch.zeros(0), 2), ShapeError, ["x", "non-empty"]),
    ("polynomial_design", "x not a tensor", lambda: polynomial_design([1.0, 2.0], 2), ArgumentTypeError, ["x", "list"]),
    # chapter 6 extensions: loaders, other importances, K-FAC Laplace, scenarios, replay -----------
    ("diagonal_fisher", "Dataset, not a loader", lambda: diagonal_fisher(
        _lin(), torch.utils.data.TensorDataset(_cls()[0]), kind="true"), ArgumentTypeError, ["DataLoader", "TensorDataset"]),
    ("diagonal_fisher", "targets with a loader", lambda: diagonal_fisher(
        _lin(), [_cls()[0]], kind="true", targets=_cls()[1]), InvalidArgumentError, ["targets must be None", "pair"]),
    ("diagonal_fisher", "empty loader", lambda: diagonal_fisher(_lin(), [], kind="true"), ShapeError, ["no batches"]),
    ("diagonal_fisher", "string inputs", lambda: diagonal_fisher(_lin(), "data", kind="true"), ArgumentTypeError,
     ["inputs", "str"]),
    ("diagonal_fisher", "empirical batches without targets", lambda: diagonal_fisher(_lin(), [_cls()[0]], kind="empirical"),
     InvalidArgumentError, ["targets", "empirical"]),
    ("EWC", "unknown kind", lambda: EWC(1.0, kind="batched"), InvalidArgumentError, ["kind", "batched_empirical"]),
    ("EWC", "empirical consolidate on one tensor", lambda: EWC(1.0, kind="empirical").consolidate(_lin(), _cls()[0]),
     ArgumentTypeError, ["targets", "batches"]),
    ("EWC", "zero batch_size", lambda: EWC(1.0, kind="batched_empirical", batch_size=0), InvalidArgumentError,
     ["batch_size"]),
    ("batched_empirical_fisher", "no batch_size", lambda: batched_empirical_fisher(_lin(), *_cls()), InvalidArgumentError,
     ["batch_size", "required"]),
    ("batched_empirical_fisher", "targets of another length", lambda: batched_empirical_fisher(
        _lin(), _cls()[0], _cls()[1][:5], batch_size=4), ShapeError, ["targets", "12"]),
    ("batched_empirical_fisher", "batches without targets", lambda: batched_empirical_fisher(_lin(), [_cls()[0]]),
     ArgumentTypeError, ["batch 0", "pair"]),
    ("batched_empirical_fisher", "nan inputs", lambda: batched_empirical_fisher(_lin(), _with_nan(_cls()[0]), _cls()[1],
                                                                                batch_size=4), NonFiniteError, ["inputs"]),
    ("batched_empirical_fisher", "empty loader", lambda: batched_empirical_fisher(_lin(), []), ShapeError, ["no batches"]),
    ("mas_importance", "empty inputs", lambda: mas_importance(_lin(), torch.zeros(0, 3, dtype=D)), ShapeError,
     ["inputs", "at least one"]),
    ("mas_importance", "nan inputs", lambda: mas_importance(_lin(), _with_nan(_cls()[0])), NonFiniteError, ["inputs"]),
    ("mas_importance", "not a model", lambda: mas_importance("net", _cls()[0]), ArgumentTypeError, ["model"]),
    ("mas_importance", "batch of strings", lambda: mas_importance(_lin(), [("a", "b")]), ArgumentTypeError,
     ["batches", "str"]),
    ("si_importance", "zero xi", lambda: si_importance([torch.ones(2)], [torch.ones(2)], 0.0), InvalidArgumentError, ["xi"]),
    ("si_importance", "shape mismatch", lambda: si_importance([torch.ones(2)], [torch.ones(3)], 0.1), ShapeError,
     ["path_integral[0]", "(2,)"]),
    ("si_importance", "nan path integral", lambda: si_importance([torch.tensor([NAN])], [torch.ones(1)], 0.1),
     NonFiniteError, ["path_integral[0]"]),
    ("si_importance", "tensor, not a list", lambda: si_importance(torch.ones(2), [torch.ones(2)], 0.1), ArgumentTypeError,
     ["path_integral", "sequence of tensors"]),
    ("SI", "negative xi", lambda: SI(1.0, xi=-0.1), InvalidArgumentError, ["xi"]),
    ("SI", "negative lam", lambda: SI(-1.0), InvalidArgumentError, ["lam"]),
    ("SI", "after_step without before_step", lambda: SI(1.0).after_step(_lin()), InvalidArgumentError,
     ["before_step"]),
    ("MAS", "task not a Task", lambda: MAS(1.0).after_task(_lin(), "task"), ArgumentTypeError, ["task", "Task"]),
    ("MAS", "zero max_examples", lambda: MAS(1.0, max_examples=0), InvalidArgumentError, ["max_examples"]),
    ("MAS", "penalty on another model", lambda: _anchored_mas(MAS(1.0)).penalty(_lin(4, 2)), ShapeError,
     ["weight", "(2, 4)", "(2, 3)"]),
    ("kfac_penalty", "diagonal, not K-FAC", lambda: kfac_penalty(_params(_lin()), _anchor(_lin()), _ones(_lin()), 1.0),
     ArgumentTypeError, ["fisher", "KFAC"]),
    ("kfac_penalty", "K-FAC of another model", lambda: kfac_penalty(_params(_lin()), _anchor(_lin()), _kfac(_lin(4, 2)),
                                                                   1.0), ShapeError, ["fisher[0]", "(2, 4)"]),
    ("kfac_penalty", "anchor count", lambda: kfac_penalty(_params(_lin()), _anchor(_lin())[:1], _kfac(_lin()), 1.0),
     ShapeError, ["anchor has 1 tensors"]),
    ("kfac_penalty", "negative lam", lambda: kfac_penalty(_params(_lin()), _anchor(_lin()), _kfac(_lin()), -2.0),
     InvalidArgumentError, ["lam"]),
    ("kfac_penalty", "empty list", lambda: kfac_penalty(_params(_lin()), _anchor(_lin()), [], 1.0), ArgumentTypeError,
     ["non-empty"]),
    ("KFACLaplace", "no kind", lambda: KFACLaplace(1.0, kind="diagonal"), InvalidArgumentError, ["kind", "true"]),
    ("KFACLaplace", "task not a Task", lambda: KFACLaplace(1.0, kind="true").after_task(_lin(), None), ArgumentTypeError,
     ["task", "NoneType"]),
    ("KFACLaplace", "layer K-FAC does not cover", lambda: KFACLaplace(1.0, kind="true").after_task(
        nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2)).double(), _task()), UnsupportedError, ["kfac"]),
    ("KFACLaplace", "bad generator", lambda: KFACLaplace(1.0, kind="mc", generator=0), ArgumentTypeError, ["generator"]),
    ("Replay", "zero per_class", lambda: Replay(0), InvalidArgumentError, ["per_class"]),
    ("Replay", "negative weight", lambda: Replay(2, weight=-1.0), InvalidArgumentError, ["weight"]),
    ("Replay", "task not a Task", lambda: Replay(2).after_task(_lin(), [1, 2]), ArgumentTypeError, ["task", "list"]),
    ("HeadTask", "repeated head", lambda: HeadTask("t", *_cls(k=2), *_cls(k=2), head=(1, 1)), InvalidArgumentError,
     ["head", "distinct"]),
    ("HeadTask", "label outside the head", lambda: HeadTask("t", *_cls(k=3), *_cls(k=3), head=(4, 5)),
     InvalidArgumentError, ["y_train", "0..1"]),
    ("HeadTask", "head a string", lambda: HeadTask("t", *_cls(k=2), *_cls(k=2), head="01"), ArgumentTypeError, ["head"]),
    ("HeadTask", "negative unit", lambda: HeadTask("t", *_cls(k=2), *_cls(k=2), head=(-1, 0)), InvalidArgumentError,
     ["head entry"]),
    ("Scenario", "unknown name", lambda: Scenario("online", [_task()], 2), InvalidArgumentError, ["name", "class"]),
    ("Scenario", "no tasks", lambda: Scenario("class", [], 2), ArgumentTypeError, ["tasks"]),
    ("Scenario", "zero outputs", lambda: Scenario("class", [_task()], 0), InvalidArgumentError, ["n_out"]),
    ("split_digits_scenario", "unknown scenario", lambda: split_digits_scenario("instance"), InvalidArgumentError,
     ["scenario", "domain"]),
    ("split_digits_scenario", "six tasks", lambda: split_digits_scenario("class", n_tasks=6), InvalidArgumentError,
     ["n_tasks"]),
    ("split_digits_scenario", "float n_tasks", lambda: split_digits_scenario("class", n_tasks=2.5), ArgumentTypeError,
     ["n_tasks"]),
    ("HeadView", "head past the outputs", lambda: HeadView(_lin(), (1, 2))(_cls()[0]), ShapeError, ["head", "(12, 2)"]),
    ("HeadView", "not a model", lambda: HeadView("net", (0,)), ArgumentTypeError, ["model"]),
    # natural-gradient VI (chapter 4) ------------------------------------------------------------
    ("gaussian_linear_posterior", "y of the wrong length", lambda: bayes.gaussian_linear_posterior(
        torch.ones(3, 2, dtype=D), torch.ones(4, dtype=D), noise_scale=1.0, prior_precision=1.0), ShapeError, ["y", "3"]),
    ("gaussian_linear_posterior", "zero noise", lambda: bayes.gaussian_linear_posterior(
        torch.ones(3, 2, dtype=D), torch.ones(3, dtype=D), noise_scale=0.0, prior_precision=1.0), InvalidArgumentError,
     ["noise_scale"]),
    ("gaussian_linear_posterior", "prior matrix of the wrong shape", lambda: bayes.gaussian_linear_posterior(
        torch.ones(3, 2, dtype=D), torch.ones(3, dtype=D), noise_scale=1.0, prior_precision=torch.eye(3, dtype=D)),
     ShapeError, ["prior_precision", "(2, 2)"]),
    ("glm_expectations", "labels not 0/1", lambda: bayes.glm_expectations(
        torch.ones(2, 1, dtype=D), torch.tensor([0.0, 2.0], dtype=D), torch.zeros(1, dtype=D), torch.eye(1, dtype=D)),
     InvalidArgumentError, ["0/1"]),
    ("glm_expectations", "indefinite precision", lambda: bayes.glm_expectations(
        torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D), torch.zeros(1, dtype=D), -torch.eye(1, dtype=D)),
     NotPositiveDefiniteError, ["precision", "positive definite"]),
    ("glm_expectations", "unknown likelihood", lambda: bayes.glm_expectations(
        torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D), torch.zeros(1, dtype=D), torch.eye(1, dtype=D),
        likelihood="poisson"), InvalidArgumentError, ["likelihood", "bernoulli"]),
    ("gaussian_elbo", "mean of the wrong shape", lambda: bayes.gaussian_elbo(
        torch.ones(2, 2, dtype=D), torch.zeros(2, dtype=D), torch.zeros(3, dtype=D), torch.eye(2, dtype=D),
        prior_precision=1.0), ShapeError, ["mean", "(2,)"]),
    ("gaussian_elbo", "one quadrature node", lambda: bayes.gaussian_elbo(
        torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D), torch.zeros(1, dtype=D), torch.eye(1, dtype=D),
        prior_precision=1.0, n_quad=1), InvalidArgumentError, ["n_quad"]),
    ("blr_step", "negative rho", lambda: bayes.blr_step(torch.zeros(1, dtype=D), torch.eye(1, dtype=D),
                                                       torch.zeros(1, dtype=D), torch.eye(1, dtype=D),
                                                       prior_precision=1.0, rho=-0.5), InvalidArgumentError, ["rho"]),
    ("blr_step", "Hessian of the wrong shape", lambda: bayes.blr_step(
        torch.zeros(1, dtype=D), torch.eye(1, dtype=D), torch.zeros(1, dtype=D), torch.eye(2, dtype=D),
        prior_precision=1.0), ShapeError, ["expected_hess"]),
    ("blr_step", "step to an indefinite precision", lambda: bayes.blr_step(
        torch.zeros(1, dtype=D), 3 * torch.eye(1, dtype=D), torch.zeros(1, dtype=D), torch.zeros(1, 1, dtype=D),
        prior_precision=1.0, rho=2.0), NotPositiveDefiniteError, ["rho"]),
    ("natural_gradient_vi", "zero steps", lambda: bayes.natural_gradient_vi(torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D), prior_precision=1.0,
                                             n_steps=0), InvalidArgumentError, ["n_steps"]),
    ("natural_gradient_vi", "string prior precision", lambda: bayes.natural_gradient_vi(torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D),
                                                         prior_precision="1"), ArgumentTypeError, ["prior_precision"]),
    ("natural_gradient_vi", "NaN inputs", lambda: bayes.natural_gradient_vi(torch.full((2, 1), float("nan"), dtype=D), torch.zeros(2, dtype=D),
                                             prior_precision=1.0), NonFiniteError, ["X"]),
    ("gradient_vi", "unknown optimiser", lambda: bayes.gradient_vi(torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D),
                                                                  prior_precision=1.0, optimizer="lbfgs"),
     InvalidArgumentError, ["optimizer", "adam"]),
    ("gradient_vi", "zero learning rate", lambda: bayes.gradient_vi(torch.ones(2, 1, dtype=D), torch.zeros(2, dtype=D),
                                                                   prior_precision=1.0, lr=0.0), InvalidArgumentError,
     ["lr"]),
]


@pytest.mark.parametrize("name, case, call, error, words", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_raises_a_named_error(name, case, call, error, words):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelModeWarning)
        with pytest.raises(error) as info:
            call()
    err = info.value
    assert isinstance(err, FisherbookError), f"{type(err).__name__} is not a fisherbook.errors class"
    # the rule: a wrong type is a TypeError, a wrong value a ValueError, an algorithm's failure a RuntimeError
    assert isinstance(err, TypeError | ValueError | RuntimeError)
    assert not (isinstance(err, TypeError) and isinstance(err, ValueError))
    for word in words:
        assert word in str(err), f"{word!r} not in message {str(err)!r}"


def _public_names() -> set[str]:
    names = set(continual.__all__) | set(bayes.__all__)
    if importlib.util.find_spec("fisherbook.bayes.singular") is not None:
        singular = importlib.import_module("fisherbook.bayes.singular")
        names -= set(getattr(singular, "__all__", ()))
    return names


def test_every_public_name_has_a_bad_input_case():
    covered = {c[0] for c in CASES}
    missing = _public_names() - covered
    assert not missing, f"public names without a bad-input case: {sorted(missing)}"
    assert covered <= set(continual.__all__) | set(bayes.__all__)  # no case for a name that is not public


# --------------------------------------------------------------------------- training mode
def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double()


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


# (name, call, needs per-example derivatives)
MODE_CASES = [
    ("diagonal_fisher", lambda net: diagonal_fisher(net, _cls()[0], kind="true"), True),
    ("EWC.after_task", lambda net: EWC(1.0, kind="true").after_task(net, _task()), True),
    ("objective_curvature", lambda net: objective_curvature(net, "categorical", *_cls(), kind="ggn"), True),
    ("fit_newton", lambda net: fit_newton(net, "categorical", *_cls(), l2=1.0, max_steps=1, tol=1e300), True),
    ("influence_scores", lambda net: influence_scores(net, "categorical", _cls(), _cls(), curvature="ggn", l2=1.0), True),
    ("LastLayerLaplace.fit", lambda net: LastLayerLaplace(net).fit(*_cls()), False),
]


@pytest.mark.parametrize("make", [_dropout_net, _bn_net], ids=["dropout", "batchnorm"])
@pytest.mark.parametrize("name, call, per_example", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_training_mode_with_stochastic_layers_warns_or_is_refused(name, call, per_example, make):
    # the documented rule: dropout (or batch norm where no per-example derivative is needed) in
    # training mode warns; batch norm in training mode where one is needed is refused
    net = make()
    if make is _bn_net and per_example:
        state = {k: v.clone() for k, v in net.state_dict().items()}
        with pytest.raises(UnsupportedError, match="batch normalisation"):
            call(net)
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # refused before any forward pass
    else:
        with pytest.warns(ModelModeWarning, match="training mode"):
            call(net)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelModeWarning)
        call(net)  # eval mode: no warning
    net.train()
    net[1].eval()  # the stochastic layer itself in eval mode: nothing random left, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelModeWarning)
        call(net)


def test_train_mode_without_stochastic_layers_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelModeWarning)
        diagonal_fisher(_lin().train(), _cls()[0], kind="true")
        LastLayerLaplace(_laplace_net().train()).fit(*_cls())


def test_dropout_in_train_mode_is_what_the_warning_says():
    # the warning is not spurious: two calls in training mode differ, two in eval mode agree
    net = _dropout_net()
    x = _cls()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelModeWarning)
        a, b = diagonal_fisher(net, x, kind="true"), diagonal_fisher(net, x, kind="true")
    assert not all(torch.equal(p, q) for p, q in zip(a, b))
    net.eval()
    a, b = diagonal_fisher(net, x, kind="true"), diagonal_fisher(net, x, kind="true")
    assert all(torch.equal(p, q) for p, q in zip(a, b))


# --------------------------------------------------------------------------- NumPy scalars
def _same(a, b):
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b))
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # bit-identical, NaN where NaN
        return True
    return a == b

NUMPY_CASES = [
    ("ewc_penalty lam", lambda v: ewc_penalty(_params(_lin()), [p + 1 for p in _anchor(_lin())], _ones(_lin()), v), 2.0,
     np.float32(2.0)),
    ("l2_penalty lam", lambda v: l2_penalty(_params(_lin()), [p + 1 for p in _anchor(_lin())], v), 0.5, np.float64(0.5)),
    ("online gamma", lambda v: online_fisher_update([torch.ones(2)], [torch.ones(2)], v), 0.5, np.float64(0.5)),
    ("EWC lam, n_samples", lambda v: EWC(v, kind="mc", n_samples=v).n_samples, 2, np.int64(2)),
    ("make_mlp sizes and seed", lambda v: [p.detach() for p in make_mlp(v, (v,), v, seed=v).parameters()], 3, np.int32(3)),
    ("forgetting of a NumPy matrix", lambda v: forgetting(v), torch.tensor([[0.9, 0.1], [0.5, 0.8]], dtype=D),
     np.array([[0.9, 0.1], [0.5, 0.8]])),
    ("influence l2 and damping", lambda v: influence_scores(_lin(), "categorical", _cls(), _cls(), l2=v, damping=v), 0.5,
     np.float64(0.5)),
    ("leave_one_out tol, max_steps, indices", lambda v: leave_one_out(_lin(), "categorical", _cls(), _cls(), v[0], l2=1.0,
                                                                     tol=v[1], max_steps=v[2]),
     ([0, 1], 1e-9, 50), (np.array([0, 1]), np.float64(1e-9), np.int64(50))),
    ("Laplace prior precision, n_samples", lambda v: LastLayerLaplace(_laplace_net(), prior_precision=v).fit(*_cls()).predict(
        _cls()[0], method="mc", n_samples=int(v) if isinstance(v, float) else np.int64(v), generator=torch.Generator().manual_seed(0)),
     2.0, np.float64(2.0)),
    ("calibration n_bins", lambda v: calibration_curve(torch.tensor([[0.3, 0.7]]), torch.tensor([1]), n_bins=v), 5, np.int64(5)),
    ("bic counts", lambda v: bic(-3.0, v, v + 1), 4, np.int64(4)),
    ("polynomial_design degree", lambda v: polynomial_design(torch.tensor([2.0]), v), 3, np.int16(3)),
    ("evidence scales", lambda v: nig_linear_log_evidence(X1, Y1, prior_precision=v, concentration=v, rate=v), 2.0,
     np.float32(2.0)),
]


@pytest.mark.parametrize("case, call, python, numpy", NUMPY_CASES, ids=[c[0] for c in NUMPY_CASES])
def test_numpy_scalars_are_accepted_where_python_numbers_are(case, call, python, numpy):
    assert _same(call(python), call(numpy))


def test_core_target_errors_reach_the_caller_in_the_vocabulary():
    # diagonal_fisher leaves target-against-output checks to the curvature core; its plain errors come back as ours
    x, y = _cls()
    with pytest.raises(InvalidArgumentError, match="class indices"):
        diagonal_fisher(_lin(), x, kind="empirical", targets=y + 5)
    with pytest.raises(ArgumentTypeError, match="integer class indices"):
        diagonal_fisher(_lin(), x, kind="empirical", targets=y.double())
    with pytest.raises(InvalidArgumentError, match="likelihood"):
        diagonal_fisher(_lin(), x, kind="true", likelihood="poisson")
