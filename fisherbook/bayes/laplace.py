r"""Last-layer Laplace approximation of a trained network.

The last ``nn.Linear`` layer of a trained classifier, :math:`f(x) = W \phi(x) + b` with fixed
features :math:`\phi`, gets a Gaussian posterior around its trained (MAP) weights
:math:`\hat\theta` (Daxberger et al. 2021, "Laplace Redux"):

.. math::

   q(\theta) = \mathcal N(\hat\theta, \Sigma), \qquad
   \Sigma^{-1} = N F(\hat\theta) + \tau I,

where :math:`F` is the Fisher information (the generalised Gauss–Newton matrix) of the last
layer, mean over the :math:`N` training examples, from ``fisherbook.curvature.fisher`` in a
chosen representation (``"kfac"``, ``"diagonal"``, ``"dense"``, ...), and :math:`\tau` is the
precision of an isotropic Gaussian prior. The logits are then Gaussian,
:math:`f(x) \sim \mathcal N(\hat f(x), J_x \Sigma J_x^\top)` with :math:`J_x = \partial f(x)/\partial\theta`,
and the predictive :math:`\int \operatorname{softmax}(f)\, q(f)\, df` is approximated by the
probit approximation :math:`\operatorname{softmax}\big(\hat f_c / \sqrt{1 + \tfrac\pi8 \Sigma_{f,cc}}\big)`
or by Monte-Carlo sampling of :math:`f`. The prior precision can be chosen by maximising
the Laplace evidence

.. math::

   \log p(D \mid \tau) \approx \log p(D \mid \hat\theta) - \tfrac\tau2 \lVert\hat\theta\rVert^2
   + \tfrac P2 \log\tau - \tfrac12 \log\det(N F + \tau I).

The log-likelihood at the MAP and the Fisher come from the curvature core
(``fisherbook.curvature.likelihoods``, :func:`fisherbook.curvature.fisher`). The calibration
metrics that measure how well the predictive's confidences match accuracies,
``expected_calibration_error`` and ``calibration_curve``, live in ``fisherbook.bayes.calibration``
(and can still be imported from here).

Bad arguments raise the :mod:`fisherbook.errors` classes; a model in training mode with dropout or
batch normalisation gets a :class:`~fisherbook.errors.ModelModeWarning` (its features, and so the
Fisher and the predictive, would change from call to call).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .._validate import check_int, check_option, check_real, check_tensor
from ..curvature import fisher as _fisher
from ..curvature.batches import as_batches
from ..curvature.likelihoods import get_likelihood
from ..curvature.representations import CurvatureMatrix
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    NotFittedError,
    ShapeError,
    SizeLimitError,
    UnsupportedError,
)
from ._checks import check_inputs, check_model_mode, check_outputs, check_targets

# re-exported for ``from fisherbook.bayes.laplace import calibration_curve`` (their home is calibration.py)
from .calibration import calibration_curve as calibration_curve
from .calibration import expected_calibration_error as expected_calibration_error

__all__ = ["LastLayerLaplace"]

_LIKELIHOODS = ("categorical", "bernoulli")
_METHODS = ("probit", "mc", "map")
_REPRESENTATIONS = ("kfac", "diagonal", "dense", "block_diagonal")
_MAX_MC_ENTRIES = 2**27  # predict(method="mc"): n_samples x n x C draws, 1 GiB of float64


def _positive(value: Any, name: str) -> float:
    return check_real(value, name, low=0.0, open_low=True)


class LastLayerLaplace:
    r"""Laplace approximation over the last ``nn.Linear`` layer of a trained classifier.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network whose output is the output of its last registered ``nn.Linear`` module
        applied to the features (``nn.Sequential(..., nn.Linear)`` for example); outputs are
        ``C`` logits for ``"categorical"``, one logit for ``"bernoulli"``.
    likelihood : str
        ``"categorical"`` (softmax cross-entropy) or ``"bernoulli"`` (a single sigmoid output).
    representation : str
        Representation of the last-layer Fisher passed to ``fisherbook.curvature.fisher``
        (``"kfac"``, ``"diagonal"``, ``"dense"``, ``"block_diagonal"``); it needs ``solve`` and
        ``logdet``.
    prior_precision : float
        :math:`\tau > 0`.

    Notes
    -----
    After :meth:`fit`, the attribute ``fisher`` holds the mean last-layer Fisher over the
    training data (a curvature-engine matrix with ``solve`` and ``logdet``) and ``n_data`` the
    number :math:`N` of training examples.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    >>> X = torch.randn(40, 2, dtype=torch.float64); y = torch.randint(0, 3, (40,))
    >>> la = LastLayerLaplace(net, representation="kfac", prior_precision=1.0).fit(X, y)
    >>> p = la.predict(X[:5])
    >>> p.shape, bool(torch.allclose(p.sum(1), torch.ones(5, dtype=torch.float64)))
    (torch.Size([5, 3]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        likelihood: str = "categorical",
        representation: str = "kfac",
        prior_precision: float = 1.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        likelihood = check_option(likelihood, "likelihood", _LIKELIHOODS)
        if not isinstance(representation, str):
            raise ArgumentTypeError(f"representation must be one of {_REPRESENTATIONS}, got "
                                    f"{type(representation).__name__}")
        if representation == "matrix_free":
            raise UnsupportedError("representation 'matrix_free' has no logdet; use 'kfac', 'diagonal', 'dense' "
                                   "or 'block_diagonal'")
        representation = check_option(representation, "representation", _REPRESENTATIONS)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UnsupportedError("model must contain an nn.Linear layer (its last one is made Bayesian)")
        self.model = model
        self.last = linears[-1]
        self.likelihood = likelihood
        self.representation = representation
        self.prior_precision = prior_precision
        self.fisher: CurvatureMatrix | None = None
        self.n_data = 0
        self._map_loglik: Tensor | None = None

    @property
    def prior_precision(self) -> float:
        r"""The prior precision :math:`\tau > 0` (validated when set)."""
        return self._prior_precision

    @prior_precision.setter
    def prior_precision(self, value: float) -> None:
        self._prior_precision = _positive(value, "prior_precision")

    # -- features and last-layer parameters -------------------------------------------------
    @property
    def theta_map(self) -> Tensor:
        """The trained last-layer parameters, flat in ``last.parameters()`` order."""
        return torch.cat([p.detach().reshape(-1) for p in self.last.parameters()])

    @property
    def num_params(self) -> int:
        """Number :math:`P` of last-layer parameters."""
        return self.theta_map.numel()

    def features(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs to the last layer and the model's outputs, without gradient tracking."""
        check_inputs(inputs)
        check_model_mode(self.model, "the features", per_example=False, stacklevel=4)
        p0 = next(self.last.parameters())
        if inputs.is_floating_point():
            inputs = inputs.to(dtype=p0.dtype, device=p0.device)
        captured: list[Tensor] = []
        handle = self.last.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        try:
            with torch.no_grad():
                out = self.model(inputs)
        finally:
            handle.remove()
        if not captured:
            raise UnsupportedError("the model's last nn.Linear was not called in forward")
        phi = captured[-1]
        with torch.no_grad():
            direct = self.last(phi)
        if direct.shape != out.shape or not torch.allclose(direct, out):
            raise UnsupportedError("the model's output must be its last nn.Linear applied to the features")
        check_outputs(out, inputs.shape[0])
        if self.likelihood == "bernoulli" and out.reshape(out.shape[0], -1).shape[1] != 1:
            raise ShapeError(f"likelihood 'bernoulli' needs one output per example, got shape {tuple(out.shape)}")
        return phi, out

    def _check_fitted(self) -> CurvatureMatrix:
        if self.fisher is None:
            raise NotFittedError("call fit(inputs, targets) first")
        return self.fisher

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, inputs: Any, targets: Tensor | None = None) -> LastLayerLaplace:
        r"""Compute the last-layer Fisher :math:`F` (mean over the training data) and :math:`\log p(D \mid \hat\theta)`.

        Parameters
        ----------
        inputs : Tensor, torch.utils.data.DataLoader or iterable of batches
            Training inputs, ``N`` examples along dim 0; or a ``DataLoader`` (or any iterable)
            yielding ``(inputs, targets)`` batches, read once. With batches, :math:`F` is the exact
            mean over all examples (each batch contributes its sum) and memory holds one batch's
            features at a time.
        targets : Tensor, optional
            Class indices (``"categorical"``) or 0/1 labels (``"bernoulli"``), ``N`` of them;
            required with a tensor of inputs, and ``None`` with batches (they carry their own).

        Returns
        -------
        LastLayerLaplace
            ``self``.

        Raises
        ------
        ShapeError
            If ``inputs`` is empty, ``targets`` does not hold one entry per input, or a batch has no
            targets.
        NonFiniteError
            If ``inputs``, ``targets`` or the model's outputs hold NaN or infinite values.
        InvalidArgumentError
            If ``targets`` are not class indices in range (``"categorical"``) or 0/1 labels
            (``"bernoulli"``), or if ``targets`` is given together with batches.

        Warns
        -----
        ModelModeWarning
            If the model is in training mode with dropout or batch normalisation (the features,
            and so the Fisher, would change from call to call).

        Examples
        --------
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
        >>> X = torch.randn(40, 2, dtype=torch.float64); y = torch.randint(0, 3, (40,))
        >>> whole = LastLayerLaplace(net, representation="dense").fit(X, y)
        >>> streamed = LastLayerLaplace(net, representation="dense").fit(DataLoader(TensorDataset(X, y), batch_size=7))
        >>> bool(torch.allclose(whole.fisher.to_dense(), streamed.fisher.to_dense()))
        True
        """
        if isinstance(inputs, Tensor):
            if targets is None:
                raise ArgumentTypeError("targets must be a torch.Tensor when inputs is a tensor, got None")
            source: Any = [(inputs, targets)]
        else:
            if targets is not None:
                raise InvalidArgumentError("targets must be None when inputs is a DataLoader or an iterable of "
                                           "batches: each batch carries its own (inputs, targets)")
            source = as_batches(inputs, None, store=False, progress=False)
        loglik: list[Tensor] = []
        count = 0

        def feature_batches() -> Iterator[Tensor]:
            nonlocal count
            for index, (x, t) in enumerate(source):
                phi, out = self.features(x)
                where = "targets" if isinstance(inputs, Tensor) else f"batch {index} of inputs"
                if t is None:
                    raise ShapeError(f"{where} has no targets: fit needs (inputs, targets) batches")
                loglik.append(self._loglik(phi, out, t, where))
                count += int(phi.shape[0])
                yield phi

        self.fisher = _fisher(self.last, feature_batches(), likelihood=self.likelihood, kind="true",
                              representation=self.representation)
        self.n_data = count
        self._map_loglik = torch.stack(loglik).sum().detach()
        return self

    def _loglik(self, phi: Tensor, out: Tensor, targets: Tensor, where: str) -> Tensor:
        r""":math:`\sum_n \log p(y_n \mid x_n, \hat\theta)` over one batch, after checking its targets."""
        if not isinstance(targets, Tensor):
            raise ArgumentTypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
        if targets.ndim == 0 or targets.shape[0] != phi.shape[0]:
            name = "targets" if where == "targets" else f"the targets of {where}"
            raise ShapeError(f"{name} must be a tensor with {phi.shape[0]} entries (one per input), got shape "
                             f"{tuple(targets.shape)}")
        check_tensor(targets, "targets")
        out = out.reshape(out.shape[0], -1)
        check_targets(self.likelihood, out, targets)
        lik = get_likelihood(self.likelihood)
        t = targets.to(out.device)
        t = t.reshape(-1) if self.likelihood == "categorical" else t.reshape(out.shape).to(out.dtype)
        return lik.log_prob(out, t).sum()

    def log_marginal_likelihood(self, prior_precision: float | None = None) -> Tensor:
        r"""Laplace approximation of :math:`\log p(D \mid \tau)` for the last layer.

        .. math::

           \log p(D \mid \hat\theta) - \tfrac\tau2 \lVert\hat\theta\rVert^2 + \tfrac P2 \log\tau
           - \tfrac12 \log\det(N F + \tau I)

        (the Gaussian normalising constants :math:`(2\pi)^{\pm P/2}` cancel). Exact up to the
        quadratic expansion around :math:`\hat\theta`, which is the MAP only when :math:`\tau`
        equals the weight decay used in training.

        Parameters
        ----------
        prior_precision : float, optional
            :math:`\tau`; defaults to ``self.prior_precision``.

        Returns
        -------
        Tensor
            A scalar in the model's dtype.
        """
        fisher = self._check_fitted()
        assert self._map_loglik is not None
        tau = self.prior_precision if prior_precision is None else _positive(prior_precision, "prior_precision")
        n, theta = self.n_data, self.theta_map
        P = theta.numel()
        logdet = P * math.log(n) + fisher.logdet(damping=tau / n)
        return self._map_loglik - 0.5 * tau * (theta @ theta) + 0.5 * P * math.log(tau) - 0.5 * logdet

    def optimize_prior_precision(self, grid: Tensor | None = None) -> float:
        r"""Set :math:`\tau` to the maximiser of :meth:`log_marginal_likelihood` over a grid.

        Parameters
        ----------
        grid : Tensor, optional
            Positive candidate values; default ``logspace(-4, 4, 81)``.

        Returns
        -------
        float
            The chosen :math:`\tau` (also stored in ``self.prior_precision``).
        """
        self._check_fitted()
        if grid is None:
            grid = torch.logspace(-4, 4, 81, dtype=torch.float64)
        grid = check_tensor(grid, "grid", ndim=1)
        if not bool((grid > 0).all()):
            raise InvalidArgumentError("grid must hold finite values > 0")
        values = torch.stack([self.log_marginal_likelihood(float(t)) for t in grid])
        self.prior_precision = float(grid[int(values.argmax())])
        return self.prior_precision

    # -- prediction -------------------------------------------------------------------------------
    def _jacobian(self, phi: Tensor) -> Tensor:
        params = {k: v.detach() for k, v in self.last.named_parameters()}

        def single(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.last, p, (x.unsqueeze(0),)).reshape(-1)

        jac = vmap(jacrev(single), in_dims=(None, 0))(params, phi)
        return torch.cat([jac[k].reshape(phi.shape[0], jac[k].shape[1], -1) for k in params], dim=-1)

    def logit_distribution(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\hat f(x)` and covariance :math:`J_x \Sigma J_x^\top` of the logits.

        Parameters
        ----------
        inputs : Tensor
            ``n`` examples along dim 0.

        Returns
        -------
        tuple of Tensor
            Means of shape ``(n, C)`` and covariances of shape ``(n, C, C)``.
        """
        fisher = self._check_fitted()
        phi, out = self.features(inputs)
        out = out.reshape(out.shape[0], -1)
        J = self._jacobian(phi)  # (n, C, P)
        n, C, P = J.shape
        tau = self.prior_precision
        cols = J.reshape(n * C, P).T  # (P, nC)
        sol = fisher.solve(cols, damping=tau / self.n_data) / self.n_data
        cov = torch.einsum("ncp,ndp->ncd", J, sol.T.reshape(n, C, P))
        return out, 0.5 * (cov + cov.transpose(1, 2))

    def predict(
        self,
        inputs: Tensor,
        *,
        method: str = "probit",
        n_samples: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Predictive class probabilities.

        ``"probit"``: :math:`\operatorname{softmax}_c\big(\hat f_c / \sqrt{1 + \tfrac\pi8 \Sigma_{f,cc}}\big)`
        (for ``"bernoulli"``, :math:`\sigma(\hat f / \sqrt{1 + \pi\sigma_f^2/8})`);
        ``"mc"``: the average of :math:`\operatorname{softmax}(f^{(s)})` over ``n_samples`` draws
        :math:`f^{(s)} \sim \mathcal N(\hat f, \Sigma_f)`; ``"map"``: :math:`\operatorname{softmax}(\hat f)`.

        Parameters
        ----------
        inputs : Tensor
            ``n`` examples along dim 0.
        method : str
            Approximation of the predictive integral: ``"probit"``, ``"mc"`` or ``"map"``.
        n_samples : int
            Draws for ``"mc"``; ``n_samples`` times the number of logits is limited to
            :math:`2^{27}` (:class:`~fisherbook.errors.SizeLimitError`: predict in batches).
        generator : torch.Generator, optional
            Random generator for ``"mc"``.

        Returns
        -------
        Tensor
            ``(n, C)`` probabilities for ``"categorical"``, ``(n,)`` probabilities of class 1 for
            ``"bernoulli"``.
        """
        method = check_option(method, "method", _METHODS)
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        link = (lambda f: torch.softmax(f, -1)) if self.likelihood == "categorical" else torch.sigmoid
        if method == "map":
            _, out = self.features(inputs)
            probs = link(out.reshape(out.shape[0], -1))
        else:
            mean, cov = self.logit_distribution(inputs)
            if method == "probit":
                var = torch.diagonal(cov, dim1=1, dim2=2)
                probs = link(mean / torch.sqrt(1 + math.pi / 8 * var))
            else:
                if n_samples * mean.numel() > _MAX_MC_ENTRIES:
                    raise SizeLimitError(
                        f"method='mc' would draw {n_samples} x {mean.shape[0]} x {mean.shape[1]} logits, more than the "
                        f"limit of {_MAX_MC_ENTRIES}; use fewer n_samples or predict on smaller batches of inputs")
                evals, evecs = torch.linalg.eigh(cov)
                root = evecs * evals.clamp_min(0).sqrt().unsqueeze(1)  # (n, C, C): cov = root root^T
                z = torch.randn((n_samples,) + mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
                f = mean + torch.einsum("ncd,snd->snc", root, z)
                probs = link(f).mean(0)
        return probs if self.likelihood == "categorical" else probs[:, 0]
